//! The outbox file: connection settings (WAL, full sync, exclusive lock), the
//! schema and its version, and the key check.

use std::path::Path;

use ring::aead::LessSafeKey;
use ring::rand::SystemRandom;
use rusqlite::{Connection, ErrorCode, OptionalExtension, TransactionBehavior, params};

use super::crypto::{self, KEY_CHECK};
use super::error::OutboxError;

/// Name of the database file inside the data directory.
pub const FILE_NAME: &str = "outbox.sqlite3";

/// The schema this build writes, kept in SQLite's `user_version`. A file with a
/// higher version is refused, never "upgraded" backwards; a file with a lower
/// one is migrated at open, in one transaction.
pub(crate) const SCHEMA_VERSION: i64 = 5;

/// Schema version 1 (kept: a new file is made as version 1, then migrated, so
/// that a file left by an older build takes the same path as a new one).
///
/// - `entries`: `AUTOINCREMENT` so ids follow append order and are never
///   reused (a late delete of an acknowledged id cannot hit a newer row).
///   `kind` 0 is an alert, 1 a summary.
/// - `entries_by_kind` serves the delivery order (kind, id) and eviction;
///   `entries_by_age` serves expiry and the oldest entry.
/// - `drops`: the persisted drop counters, by reason.
/// - `key_check`: a constant sealed under the device key, so that opening
///   with another key fails at once instead of row by row.
const SCHEMA_V1: &str = "
CREATE TABLE entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL CHECK (kind IN (0, 1)),
    subject TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL
);
CREATE INDEX entries_by_kind ON entries (kind, id);
CREATE INDEX entries_by_age ON entries (created_ms);
CREATE TABLE drops (
    reason TEXT PRIMARY KEY,
    count INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE key_check (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL
);
";

/// From version 1 to 2.
///
/// - `entries.plugin`: whose output an entry is (the size rule gives each
///   plugin a share of the outbox); filled for existing rows from the last
///   token of the subject (`edgewise.<device>.up.<kind>.<plugin>`: a plugin
///   name has no dots), by `migrate_v2`.
/// - `entries.refusals`: attempts in which upstream refused the entry for good
///   (see `Outbox::refused`); kept across restarts so that a crash loop cannot
///   keep a refused entry at the head forever.
/// - `entries_by_plugin` serves eviction by plugin.
/// - `parked`: entries upstream refused for good, moved aside (still sealed,
///   with the columns their associated data binds) for an operator to
///   inspect; bounded (see `park`).
const SCHEMA_V2: &str = "
ALTER TABLE entries ADD COLUMN plugin TEXT NOT NULL DEFAULT '';
ALTER TABLE entries ADD COLUMN refusals INTEGER NOT NULL DEFAULT 0;
CREATE INDEX entries_by_plugin ON entries (plugin, kind, id);
CREATE TABLE parked (
    id INTEGER PRIMARY KEY,
    kind INTEGER NOT NULL,
    plugin TEXT NOT NULL,
    subject TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    reason TEXT NOT NULL,
    parked_ms INTEGER NOT NULL
);
";

/// From version 3 to 4: `entries.kind` 2 is telemetry. SQLite cannot change
/// a column's `CHECK`, so the table is made anew (SQLite's "generalized ALTER
/// TABLE" procedure) with every row, id and index as it was; `migrate_v4`
/// keeps the `AUTOINCREMENT` high-water mark, so that no id is ever reused.
const SCHEMA_V4: &str = "
CREATE TABLE entries_v4 (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL CHECK (kind IN (0, 1, 2)),
    subject TEXT NOT NULL,
    msg_id TEXT NOT NULL,
    created_ms INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    plugin TEXT NOT NULL DEFAULT '',
    refusals INTEGER NOT NULL DEFAULT 0
);
INSERT INTO entries_v4 (id, kind, subject, msg_id, created_ms, nonce, ciphertext, plugin, refusals)
    SELECT id, kind, subject, msg_id, created_ms, nonce, ciphertext, plugin, refusals FROM entries;
DROP TABLE entries;
ALTER TABLE entries_v4 RENAME TO entries;
CREATE INDEX entries_by_kind ON entries (kind, id);
CREATE INDEX entries_by_age ON entries (created_ms);
CREATE INDEX entries_by_plugin ON entries (plugin, kind, id);
";

/// Open the database file with the outbox's settings.
///
/// - `locking_mode=EXCLUSIVE`: this connection is the only one; a second
///   process opening the same outbox gets "database is locked". That is what
///   lets the outbox keep its counts in memory.
/// - `journal_mode=WAL`, `synchronous=FULL`: a commit is on stable storage
///   (the WAL is fsynced) when it returns, so it survives `kill -9` and power
///   loss.
pub(crate) fn connect(path: &Path) -> Result<Connection, OutboxError> {
    let sql = |operation| OutboxError::sql(path, operation);
    // Switching to WAL is the first access to the file: it waits up to 5 s
    // (rusqlite's busy timeout, room for a previous process to exit) for the lock.
    let locked_or_sql = |operation| {
        move |source: rusqlite::Error| match source.sqlite_error_code() {
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => OutboxError::Locked { path: path.to_owned() },
            _ => OutboxError::sql(path, operation)(source),
        }
    };
    let conn = Connection::open(path).map_err(sql("open the database"))?;
    let locking: String = conn
        .pragma_update_and_check(None, "locking_mode", "EXCLUSIVE", |row| row.get(0))
        .map_err(locked_or_sql("set locking_mode=EXCLUSIVE"))?;
    let journal: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(locked_or_sql("set journal_mode=WAL"))?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(sql("set synchronous=FULL"))?;
    let synchronous: i64 = conn
        .pragma_query_value(None, "synchronous", |row| row.get(0))
        .map_err(sql("read synchronous"))?;
    // 2 is FULL.
    if !locking.eq_ignore_ascii_case("exclusive") || !journal.eq_ignore_ascii_case("wal") || synchronous != 2 {
        return Err(OutboxError::NotAnOutbox {
            path: path.to_owned(),
            reason: format!(
                "SQLite kept locking_mode={locking}, journal_mode={journal}, synchronous={synchronous} \
                 (the outbox needs exclusive, wal, 2)"
            ),
        });
    }
    Ok(conn)
}

/// Create the schema in a new file, or check the version and the key of an
/// existing one.
pub(crate) fn prepare(conn: &mut Connection, path: &Path, key: &LessSafeKey) -> Result<(), OutboxError> {
    let sql = |operation| OutboxError::sql(path, operation);
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(sql("read the schema version"))?;
    match version {
        0 => {
            create(conn, path, key)?;
            migrate(conn, path, 1)
        }
        1..=4 => {
            check_key(conn, path, key)?;
            migrate(conn, path, version)
        }
        SCHEMA_VERSION => check_key(conn, path, key),
        found => Err(OutboxError::UnknownSchema {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        }),
    }?;
    conn.execute_batch(INDEXES).map_err(sql("create the indexes"))
}

/// Indexes that change nothing a build reads or writes, only how fast: made
/// at every open if missing, without a new schema version, so that an older
/// build of the same version still opens the file (SQLite keeps every index
/// of a table up to date, whichever build writes).
///
/// - `entries_by_subject` serves passing over a subject upstream has no
///   stream for (`Outbox::next_batch_probing`): each subject's first entries
///   in delivery order, without reading the rows of a backlog.
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS entries_by_subject ON entries (subject, kind, id);
";

/// Version 0 is a new, empty file: create everything, and set the version, in
/// one transaction.
fn create(conn: &mut Connection, path: &Path, key: &LessSafeKey) -> Result<(), OutboxError> {
    let sql = |operation| OutboxError::sql(path, operation);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql("begin creating the schema"))?;
    let tables: i64 = tx
        .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
        .map_err(sql("read the schema"))?;
    if tables != 0 {
        return Err(OutboxError::NotAnOutbox {
            path: path.to_owned(),
            reason: "the file has tables but no outbox schema version".to_owned(),
        });
    }
    tx.execute_batch(SCHEMA_V1).map_err(sql("create the schema"))?;
    let (nonce, ciphertext) =
        crypto::seal(key, &SystemRandom::new(), KEY_CHECK, KEY_CHECK.to_vec()).map_err(|_| OutboxError::Crypto {
            operation: "seal the key check",
        })?;
    tx.execute(
        "INSERT INTO key_check (id, nonce, ciphertext) VALUES (1, ?1, ?2)",
        params![&nonce[..], ciphertext],
    )
    .map_err(sql("write the key check"))?;
    tx.pragma_update(None, "user_version", 1)
        .map_err(sql("set the schema version"))?;
    tx.commit().map_err(sql("commit the schema"))
}

/// Bring a file at version `from` to [`SCHEMA_VERSION`], in one transaction:
/// a crash leaves it at `from`, to be migrated again.
fn migrate(conn: &mut Connection, path: &Path, from: i64) -> Result<(), OutboxError> {
    let sql = |operation| OutboxError::sql(path, operation);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(sql("begin a schema migration"))?;
    if from < 2 {
        tx.execute_batch(SCHEMA_V2)
            .map_err(sql("migrate the schema to version 2"))?;
        migrate_v2(&tx).map_err(sql("name the plugin of every entry"))?;
    }
    if from < 3 {
        tx.execute_batch(super::journal::SCHEMA_V3)
            .map_err(sql("migrate the schema to version 3"))?;
    }
    if from < 4 {
        migrate_v4(&tx).map_err(sql("migrate the schema to version 4"))?;
    }
    if from < 5 {
        tx.execute_batch(SCHEMA_V5)
            .map_err(sql("migrate the schema to version 5"))?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)
        .map_err(sql("set the schema version"))?;
    tx.commit().map_err(sql("commit the schema migration"))
}

/// Version 5: the forward jumps of the wall clock seen while entries and
/// logged inputs waited (`expiry::ClockWatch`). Their `created_ms` is sealed
/// into each row (the AEAD's associated data), so a jump is recorded here and
/// their age corrected when it is measured: an entry stamped before
/// `before_ms` is `by_ms` older by its stamp than it is.
const SCHEMA_V5: &str = "
CREATE TABLE clock_jumps (
    before_ms INTEGER NOT NULL,
    by_ms INTEGER NOT NULL
);
";

/// Name the plugin of every existing entry after its subject's last token.
fn migrate_v2(conn: &Connection) -> Result<(), rusqlite::Error> {
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT id, subject FROM entries")?
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut update = conn.prepare("UPDATE entries SET plugin = ?2 WHERE id = ?1")?;
    for (id, subject) in rows {
        let plugin = subject.rsplit('.').next().unwrap_or_default();
        update.execute(params![id, plugin])?;
    }
    Ok(())
}

/// Make `entries` anew with telemetry allowed ([`SCHEMA_V4`]), its
/// `AUTOINCREMENT` high-water mark kept.
fn migrate_v4(conn: &Connection) -> Result<(), rusqlite::Error> {
    // No row in `sqlite_sequence` for a table never written to.
    let high_water: i64 = conn.query_row(
        "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'entries'), 0)",
        [],
        |row| row.get(0),
    )?;
    conn.execute_batch(SCHEMA_V4)?;
    conn.execute("DELETE FROM sqlite_sequence WHERE name = 'entries'", [])?;
    conn.execute(
        "INSERT INTO sqlite_sequence (name, seq) \
         VALUES ('entries', max(?1, coalesce((SELECT max(id) FROM entries), 0)))",
        [high_water],
    )?;
    Ok(())
}

/// Refuse a key other than the one the outbox was created with.
fn check_key(conn: &Connection, path: &Path, key: &LessSafeKey) -> Result<(), OutboxError> {
    let record: Option<(Vec<u8>, Vec<u8>)> = conn
        .query_row("SELECT nonce, ciphertext FROM key_check WHERE id = 1", [], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()
        .map_err(OutboxError::sql(path, "read the key check"))?;
    let Some((nonce, ciphertext)) = record else {
        return Err(OutboxError::NotAnOutbox {
            path: path.to_owned(),
            reason: "the key check record is missing".to_owned(),
        });
    };
    match crypto::open(key, &nonce, KEY_CHECK, ciphertext) {
        Some(plaintext) if plaintext == KEY_CHECK => Ok(()),
        _ => Err(OutboxError::WrongKey { path: path.to_owned() }),
    }
}
