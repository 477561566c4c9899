//! Opening the outbox so that it never stops local alerting: a missing or
//! wrong device key, or an outbox that cannot be used (not an SQLite file, a
//! newer schema, corrupt), is moved aside under a dated name
//! (`outbox.sqlite3.<time>.aside`, also `-wal`, `-shm` and the key), reported
//! loudly, and a new outbox is started. An outbox that can be neither opened
//! nor started afresh (a read-only or failing disk at boot) is replaced by
//! one in memory, as loudly: outputs are still published locally and sent
//! upstream while the process runs, and only what is not sent before it
//! stops is lost. An outbox locked by another running host is still an
//! error: two hosts must not share a data directory.

use std::path::Path;

use super::{FILE_NAME, Outbox, OutboxError, OutboxKey, OutboxLimits};

/// The code of the host alert raised when the outbox was reset.
pub const RESET_CODE: &str = "outbox-reset";

/// The device key's file name in the data directory.
pub const KEY_FILE: &str = "outbox.key";

/// Why no outbox could be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The outbox cannot be used and a new one would not help (another host
    /// holds it, the disk refuses).
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// An unusable outbox file could not be moved aside.
    #[error("cannot move the unusable outbox file {} aside", path.display())]
    MoveAside {
        /// The file.
        path: std::path::PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The code of the host alert raised when the outbox is in memory.
pub const IN_MEMORY_CODE: &str = "outbox-in-memory";

/// An open outbox, and why it is new, if it was reset.
pub struct Opened {
    /// The outbox.
    pub outbox: Outbox,
    /// Set when the old one was moved aside: what happened, for the log, the
    /// status and the `outbox-reset` alert.
    pub reset: Option<String>,
    /// Set when the outbox is in memory (no file could be used): why, for
    /// the log, the status and the `outbox-in-memory` alert.
    pub in_memory: Option<String>,
}

/// Open the outbox of `data_dir`, moving an unusable one aside. Every
/// plugin's journal is read as its worker will read it at start (up to
/// `journal_inputs` inputs after its saved state): damage there makes the
/// outbox unusable too.
///
/// When no file can be used because the disk refuses it (read-only,
/// failing, full: [`disk_refuses`]), the outbox is in memory
/// ([`Outbox::open_in_memory`]): a device whose disk went read-only (a
/// worn-out SD card) still alerts. Any other error is still an error: another
/// host holding the file, files another user owns (a second host run by
/// hand as another user must not run beside the first), a passing failure
/// (a start that fails is started again by its supervisor, with its file).
pub fn open_outbox(data_dir: &Path, limits: OutboxLimits, journal_inputs: usize) -> Result<Opened, OpenError> {
    let error = match open_file(data_dir, limits, journal_inputs) {
        Ok(opened) => return Ok(opened),
        Err(error) if !disk_refuses(&error) => return Err(error),
        Err(error) => error,
    };
    let reason = format!(
        "no outbox file can be used ({}); outputs are kept in memory: published locally and sent upstream \
         as before, but what is not sent before this process stops is lost, and plugins start without their \
         saved state. Make the data directory writable and restart",
        crate::error_chain(&error)
    );
    tracing::error!(%reason, "Outbox in memory");
    let outbox = Outbox::open_in_memory(&data_dir.join(FILE_NAME), limits)?;
    Ok(Opened {
        outbox,
        reset: None,
        in_memory: Some(reason),
    })
}

/// [`open_outbox`] on the file only: an unusable file moved aside and a new
/// one started.
fn open_file(data_dir: &Path, limits: OutboxLimits, journal_inputs: usize) -> Result<Opened, OpenError> {
    let key_path = data_dir.join(KEY_FILE);
    let attempt = OutboxKey::load_or_create(&key_path).and_then(|key| {
        let mut outbox = Outbox::open(data_dir, &key, limits)?;
        outbox.check_journals(journal_inputs)?;
        Ok(outbox)
    });
    let error = match attempt {
        Ok(outbox) => {
            return Ok(Opened {
                outbox,
                reset: None,
                in_memory: None,
            });
        }
        Err(error) if !can_reset(&error) => return Err(error.into()),
        Err(error) => error,
    };
    let mut stamp = crate::files::aside_stamp();
    if data_dir.join(format!("{FILE_NAME}.{stamp}.aside")).exists() {
        // A second reset within the same second: never overwrite the first.
        stamp = format!("{stamp}-{}", std::process::id());
    }
    let mut moved = Vec::new();
    for name in [
        FILE_NAME.to_owned(),
        format!("{FILE_NAME}-wal"),
        format!("{FILE_NAME}-shm"),
        KEY_FILE.to_owned(),
    ] {
        let from = data_dir.join(&name);
        if !from.exists() {
            continue;
        }
        let to = data_dir.join(format!("{name}.{stamp}.aside"));
        std::fs::rename(&from, &to).map_err(|source| OpenError::MoveAside {
            path: from.clone(),
            source,
        })?;
        moved.push(to.display().to_string());
    }
    let reason = format!(
        "the outbox could not be used ({error}); moved aside as {} and a new outbox started: \
         undelivered outputs of the old one are not sent",
        moved.join(", ")
    );
    tracing::error!(%reason, "Outbox reset");
    let key = OutboxKey::load_or_create(&key_path)?;
    let outbox = Outbox::open(data_dir, &key, limits)?;
    Ok(Opened {
        outbox,
        reset: Some(reason),
        in_memory: None,
    })
}

/// Whether `error` is the disk refusing the data directory: a read-only file
/// system, an I/O error, no space (an operating system error so, anywhere in
/// the error's sources, or SQLite's own code for it).
fn disk_refuses(error: &OpenError) -> bool {
    const EIO: i32 = 5;
    const ENOSPC: i32 = 28;
    const EROFS: i32 = 30;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>()
            && matches!(io.raw_os_error(), Some(EIO | ENOSPC | EROFS))
        {
            return true;
        }
        if let Some(sqlite) = cause.downcast_ref::<rusqlite::Error>()
            && matches!(
                sqlite.sqlite_error_code(),
                Some(
                    rusqlite::ErrorCode::ReadOnly
                        | rusqlite::ErrorCode::SystemIoFailure
                        | rusqlite::ErrorCode::DiskFull
                )
            )
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Whether a fresh outbox is the answer to `error`: the files are unusable,
/// not busy (another host), and not a disk or system failure that a new file
/// would meet again.
fn can_reset(error: &OutboxError) -> bool {
    match error {
        OutboxError::KeyFile { .. }
        | OutboxError::WrongKey { .. }
        | OutboxError::UnknownSchema { .. }
        | OutboxError::NotAnOutbox { .. }
        | OutboxError::Decrypt { .. }
        | OutboxError::CorruptRow { .. } => true,
        // Not an SQLite file, or damaged; never busy or locked (another
        // host), nor an I/O error that a new file would meet again.
        OutboxError::Sqlite { .. } => error.is_damaged_file(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io(errno: i32) -> OpenError {
        OpenError::Outbox(OutboxError::Io {
            path: "outbox.sqlite3".into(),
            operation: "make the database private (mode 0600)",
            source: std::io::Error::from_raw_os_error(errno),
        })
    }

    fn sqlite(code: std::ffi::c_int) -> OpenError {
        OpenError::Outbox(OutboxError::sql(
            std::path::Path::new("outbox.sqlite3"),
            "open the database",
        )(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        )))
    }

    /// Only the disk refusing the data directory gives an outbox in memory;
    /// another host, another user's files, a passing failure stay errors.
    #[test]
    fn only_a_disk_that_refuses_gives_an_outbox_in_memory() {
        for errno in [5, 28, 30] {
            assert!(disk_refuses(&io(errno)), "errno {errno}");
        }
        for code in [
            rusqlite::ffi::SQLITE_READONLY,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_FULL,
        ] {
            assert!(disk_refuses(&sqlite(code)), "SQLite {code}");
        }
        let moved = OpenError::MoveAside {
            path: "outbox.sqlite3".into(),
            source: std::io::Error::from_raw_os_error(30),
        };
        assert!(disk_refuses(&moved), "a damaged file on a read-only disk");
        assert!(!disk_refuses(&io(13)), "EACCES: another user's files");
        assert!(!disk_refuses(&io(12)), "ENOMEM: passes");
        for code in [
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_NOMEM,
            rusqlite::ffi::SQLITE_CANTOPEN,
        ] {
            assert!(!disk_refuses(&sqlite(code)), "SQLite {code}");
        }
        let locked = OpenError::Outbox(OutboxError::Locked {
            path: "outbox.sqlite3".into(),
        });
        assert!(!disk_refuses(&locked));
    }
}
