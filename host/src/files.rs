//! How the host writes and protects what it keeps on disk.
//!
//! - **Modes**: the data directory is 0700 and every file in it (outbox
//!   database and its WAL, keys, records, sequence state) 0600, whatever the
//!   process umask. Whoever else can read them can read what the device queued
//!   (with the key) or rewind its records.
//! - **Atomic writes** ([`write_atomic`]): every file the host (or the CLI)
//!   writes whole goes through one function, so that after a crash or a power
//!   cut a reader finds the old content or the new one, never a mix or a torn
//!   file.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Mode of the data directory.
pub const PRIVATE_DIR: u32 = 0o700;
/// Mode of every file the host creates in it.
pub const PRIVATE_FILE: u32 = 0o600;

/// Create `dir` (and missing parents) with mode 0700. An existing directory
/// that group or others can use is narrowed to 0700, with a warning: the
/// device owns its data directory, and leaving it open would expose the
/// outbox and the records.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(PRIVATE_DIR).create(dir)?;
    narrow(dir, PRIVATE_DIR)
}

/// Create `path` empty with mode 0600 if it does not exist (so that a
/// library that creates it with the umask, as SQLite does, finds it there);
/// narrow an existing file that group or others can use to 0600.
pub fn private_file(path: &Path) -> std::io::Result<()> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_FILE)
        .open(path)?;
    narrow(path, PRIVATE_FILE)
}

/// If `path` exists with permissions for group or others, set `mode` and warn.
pub fn narrow(path: &Path, mode: u32) -> std::io::Result<()> {
    let found = match std::fs::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o777,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if found & 0o077 != 0 {
        std::fs::set_permissions(path, Permissions::from_mode(mode))?;
        tracing::warn!(
            path = %path.display(),
            "Narrowed mode {found:o} to {mode:o}: other users could read or change it"
        );
    }
    Ok(())
}

/// A warning if `path` (a file holding secrets) is readable by group or
/// others: the host does not change the operator's files, it says so.
pub fn warn_if_exposed(path: &Path, what: &str) {
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:o}"),
                "{what} holds secrets and is readable by other users (mode {mode:o}); make it 0600"
            );
        }
    }
}

/// Who may read a file that [`write_atomic`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Mode 0600 whatever the umask: keys, records, state, cache entries.
    Private,
    /// Mode 0666 less the umask, as any new file: what is made to be handed on
    /// (a signed bundle, a public key, a golden file).
    Shared,
}

impl Access {
    fn mode(self) -> u32 {
        match self {
            Access::Private => PRIVATE_FILE,
            Access::Shared => 0o666,
        }
    }
}

/// What [`write_atomic`] does when the file already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Replace it whole.
    Replace,
    /// Leave it as it is and fail with [`std::io::ErrorKind::AlreadyExists`]
    /// (a key is never replaced; of two processes racing to create one, the
    /// first wins and the second can read it).
    Keep,
}

/// Write `bytes` to `path` atomically and durably: a temporary file in the
/// same directory (created with the mode of `access`), written, synced, renamed
/// over `path` (or linked without replacing, for [`Existing::Keep`]), then the
/// directory synced so that the rename itself survives a power cut.
///
/// On any failure the temporary file is removed and `path` is untouched. The
/// directory must exist. A temporary file left by a crash is named
/// `.<file name>.<random>.tmp`.
pub fn write_atomic(path: &Path, bytes: &[u8], access: Access, existing: Existing) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|name| name.to_string_lossy()).unwrap_or_default();
    // Dropped on any early return: the temporary file is deleted.
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(Permissions::from_mode(access.mode()))
        .tempfile_in(dir)?;
    file.write_all(bytes)?;
    file.as_file().sync_all()?;
    // A failed persist hands the temporary file back in the error: dropping
    // the error deletes it.
    match existing {
        Existing::Replace => file.persist(path),
        Existing::Keep => file.persist_noclobber(path),
    }
    .map_err(|error| error.error)?;
    sync_dir(dir)
}

/// Sync a directory, so that the entries created, renamed or removed in it
/// survive a power cut (a file's own `sync_all` does not cover its name).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// `20261128T061455Z`-like UTC time for the names of files moved aside:
/// sorts, and is a valid file name everywhere.
pub fn aside_stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What is in `dir` besides `keep`: a temporary file left behind.
    fn others(dir: &Path, keep: &[&str]) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| !keep.contains(&name.as_str()))
            .collect()
    }

    #[test]
    fn an_atomic_write_has_the_content_and_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("key");
        write_atomic(&private, b"secret", Access::Private, Existing::Keep).unwrap();
        assert_eq!(std::fs::read(&private).unwrap(), b"secret");
        assert_eq!(mode(&private), 0o600);
        let shared = dir.path().join("bundle.wasm");
        write_atomic(&shared, b"signed", Access::Shared, Existing::Replace).unwrap();
        assert_eq!(std::fs::read(&shared).unwrap(), b"signed");
        // 0666 less the umask: at least the owner reads and writes, nobody executes.
        assert_eq!(mode(&shared) & 0o700, 0o600);
        assert_eq!(mode(&shared) & 0o111, 0);
        assert!(others(dir.path(), &["key", "bundle.wasm"]).is_empty());
    }

    #[test]
    fn an_existing_file_is_replaced_whole_with_the_new_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        std::fs::write(&path, "a much longer old content\n").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write_atomic(&path, b"new\n", Access::Private, Existing::Replace).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"new\n");
        assert_eq!(mode(&path), 0o600);
        assert!(others(dir.path(), &["state"]).is_empty());
    }

    #[test]
    fn a_kept_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "first").unwrap();
        let error = write_atomic(&path, b"second", Access::Private, Existing::Keep).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AlreadyExists, "{error}");
        assert_eq!(std::fs::read(&path).unwrap(), b"first");
        assert!(others(dir.path(), &["key"]).is_empty(), "temporary file left behind");
    }

    #[test]
    fn a_failed_write_leaves_what_was_there_and_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A directory in the way: the rename fails after the data is written.
        let path = dir.path().join("record");
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("inside"), "old").unwrap();
        write_atomic(&path, b"new", Access::Private, Existing::Replace).unwrap_err();
        assert_eq!(std::fs::read(path.join("inside")).unwrap(), b"old");
        assert!(others(dir.path(), &["record"]).is_empty(), "temporary file left behind");
        // No directory: nothing is created.
        let missing = dir.path().join("missing/record");
        let error = write_atomic(&missing, b"new", Access::Private, Existing::Replace).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::NotFound, "{error}");
        assert!(others(dir.path(), &["record"]).is_empty());
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_and_wide_files_and_dirs_end_private() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/data");
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, Permissions::from_mode(0o755)).unwrap();
        private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("f");
        private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        std::fs::write(&file, b"kept").unwrap();
        std::fs::set_permissions(&file, Permissions::from_mode(0o644)).unwrap();
        private_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(std::fs::read(&file).unwrap(), b"kept", "never truncated");
    }
}
