//! File modes of what the host keeps on disk: the data directory is 0700 and
//! every file in it (outbox database and its WAL, keys, records, sequence
//! state) 0600, whatever the process umask. Whoever else can read them can
//! read what the device queued (with the key) or rewind its records.

use std::fs::{DirBuilder, OpenOptions, Permissions};
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

#[cfg(test)]
mod tests {
    use super::*;

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
