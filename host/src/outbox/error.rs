//! `OutboxError`: every way the outbox can fail, with the file and the
//! operation that failed.

use std::path::{Path, PathBuf};

/// Why an outbox operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// SQLite refused an operation.
    #[error("outbox {path}: cannot {operation}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What the outbox was doing.
        operation: &'static str,
        /// The SQLite error.
        #[source]
        source: rusqlite::Error,
    },
    /// A file or directory operation failed.
    #[error("outbox {path}: cannot {operation}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the outbox was doing.
        operation: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The device key file exists but is not a key.
    #[error("outbox key file {path}: {reason}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The system random generator or the cipher failed.
    #[error("outbox: cannot {operation}: the system cryptography failed")]
    Crypto {
        /// What the outbox was doing.
        operation: &'static str,
    },
    /// Another connection (another process) holds the outbox.
    #[error(
        "outbox {path}: the database is locked by another process; one Edgewise process may use a data directory at a time"
    )]
    Locked {
        /// The database file.
        path: PathBuf,
    },
    /// The file was written by a newer (or unknown) version of Edgewise.
    #[error(
        "outbox {path}: schema version {found} is not one this build knows (it knows 1 to {supported}); \
         refusing to open it: run a newer Edgewise, or move the file aside"
    )]
    UnknownSchema {
        /// The database file.
        path: PathBuf,
        /// The `user_version` found in the file.
        found: i64,
        /// The newest schema version this build knows.
        supported: i64,
    },
    /// The file is an SQLite database, but not one the outbox can use.
    #[error("outbox {path}: not a usable outbox: {reason}")]
    NotAnOutbox {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The outbox was created under another device key.
    #[error("outbox {path}: the device key is not the key this outbox was created with")]
    WrongKey {
        /// The database file.
        path: PathBuf,
    },
    /// A row failed authenticated decryption: it was tampered with or corrupted.
    #[error(
        "outbox {path}: row {id} (msg id `{msg_id}`) failed to decrypt: its bytes were changed after it was written"
    )]
    Decrypt {
        /// The database file.
        path: PathBuf,
        /// The row id.
        id: u64,
        /// The row's `Nats-Msg-Id`, as stored (itself unauthenticated if the row was tampered with).
        msg_id: String,
    },
    /// A row holds a value the schema does not allow.
    #[error("outbox {path}: row {id}: {reason}")]
    CorruptRow {
        /// The database file.
        path: PathBuf,
        /// The row id.
        id: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// An entry that could never fit, even in an empty outbox.
    #[error(
        "outbox {path}: entry `{msg_id}` takes {size} bytes, more than the whole outbox may hold ({max_bytes} bytes); nothing of this batch was stored"
    )]
    EntryTooLarge {
        /// The database file.
        path: PathBuf,
        /// The entry's `Nats-Msg-Id`.
        msg_id: String,
        /// Bytes it would take.
        size: u64,
        /// The limit.
        max_bytes: u64,
    },
    /// A thread panicked while it held the outbox: it is not used again.
    #[error("the outbox lock is poisoned (a thread panicked while writing to it)")]
    Poisoned,
    /// The blocking task that used the outbox for an async caller failed
    /// (panicked, or was cancelled as the runtime stopped).
    #[error("the outbox task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
}

impl OutboxError {
    /// Whether the file itself is unusable (not an SQLite database, or
    /// damaged), as opposed to busy, locked, or refused by the disk.
    pub fn is_damaged_file(&self) -> bool {
        match self {
            OutboxError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(rusqlite::ErrorCode::NotADatabase | rusqlite::ErrorCode::DatabaseCorrupt)
            ),
            _ => false,
        }
    }

    /// Whether the same write may succeed when tried again: the disk or the
    /// system refused it (full, an I/O error, out of memory, busy), not the
    /// write itself. The outbox writer keeps such writes and tries them again
    /// (`writer`); any other failure is final for the write that met it.
    pub fn is_transient(&self) -> bool {
        match self {
            OutboxError::Sqlite { source, .. } => matches!(
                source.sqlite_error_code(),
                Some(
                    rusqlite::ErrorCode::DiskFull
                        | rusqlite::ErrorCode::SystemIoFailure
                        | rusqlite::ErrorCode::OutOfMemory
                        | rusqlite::ErrorCode::DatabaseBusy
                        | rusqlite::ErrorCode::DatabaseLocked
                )
            ),
            OutboxError::Io { .. } => true,
            _ => false,
        }
    }

    /// A `map_err` adapter for SQLite errors of `operation` on the file at `path`.
    pub(crate) fn sql(path: &Path, operation: &'static str) -> impl FnOnce(rusqlite::Error) -> OutboxError {
        move |source| OutboxError::Sqlite {
            path: path.to_owned(),
            operation,
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::ffi;

    fn sqlite(code: std::ffi::c_int) -> OutboxError {
        OutboxError::sql(Path::new("outbox.db"), "append")(rusqlite::Error::SqliteFailure(ffi::Error::new(code), None))
    }

    /// What the writer keeps and tries again (the disk's refusals) and what
    /// it fails at once (the write's own fault, or a damaged file).
    #[test]
    fn the_disks_refusals_are_transient_a_bad_write_or_a_damaged_file_is_not() {
        for code in [
            ffi::SQLITE_FULL,
            ffi::SQLITE_IOERR,
            ffi::SQLITE_IOERR_WRITE,
            ffi::SQLITE_IOERR_FSYNC,
            ffi::SQLITE_NOMEM,
            ffi::SQLITE_BUSY,
            ffi::SQLITE_LOCKED,
        ] {
            assert!(sqlite(code).is_transient(), "code {code}");
        }
        for code in [
            ffi::SQLITE_CONSTRAINT,
            ffi::SQLITE_CORRUPT,
            ffi::SQLITE_NOTADB,
            ffi::SQLITE_TOOBIG,
        ] {
            assert!(!sqlite(code).is_transient(), "code {code}");
        }
        let io = OutboxError::Io {
            path: "outbox.db".into(),
            operation: "sync the directory",
            source: std::io::Error::from_raw_os_error(28), // ENOSPC
        };
        assert!(io.is_transient());
        let too_large = OutboxError::EntryTooLarge {
            path: "outbox.db".into(),
            msg_id: "edge-01/p/1".into(),
            size: 2 << 20,
            max_bytes: 1 << 20,
        };
        assert!(!too_large.is_transient());
        assert!(sqlite(ffi::SQLITE_CORRUPT).is_damaged_file());
        assert!(!sqlite(ffi::SQLITE_IOERR).is_damaged_file());
    }
}
