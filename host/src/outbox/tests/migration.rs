//! An outbox file written by the first schema (version 1) is migrated at open:
//! every entry kept, in order, named after its plugin, still delivered.

use rusqlite::{Connection, params};

use super::*;
use crate::outbox::crypto;
use crate::outbox::{FILE_NAME, OutboxError};

/// The schema of version 1 exactly as the first release wrote it (frozen here:
/// this is what files in the field look like).
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

/// Write a version-1 file as the old code did: WAL, key check, sealed rows.
fn write_v1(dir: &std::path::Path, entries: &[NewEntry]) {
    let conn = Connection::open(dir.join(FILE_NAME)).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch(SCHEMA_V1).unwrap();
    let key = key();
    let rng = ring::rand::SystemRandom::new();
    let check = b"edgewise-outbox-key-check-v1";
    let (nonce, sealed) = crypto::seal(key.aead(), &rng, check, check.to_vec()).unwrap();
    conn.execute(
        "INSERT INTO key_check (id, nonce, ciphertext) VALUES (1, ?1, ?2)",
        params![&nonce[..], sealed],
    )
    .unwrap();
    for e in entries {
        let aad = crypto::row_aad(e.kind, &e.subject, &e.msg_id, e.created_ms);
        let (nonce, sealed) = crypto::seal(key.aead(), &rng, &aad, e.payload.clone()).unwrap();
        conn.execute(
            "INSERT INTO entries (kind, subject, msg_id, created_ms, nonce, ciphertext) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![e.kind.to_sql(), e.subject, e.msg_id, e.created_ms, &nonce[..], sealed],
        )
        .unwrap();
    }
    conn.execute("INSERT INTO drops (reason, count) VALUES ('alerts_for_space', 7)", [])
        .unwrap();
    conn.pragma_update(None, "user_version", 1).unwrap();
}

#[test]
fn a_version_1_file_is_migrated_and_keeps_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let old = [
        alert("glucose-monitor", 1),
        summary("threshold", 2),
        alert("threshold", 3),
        summary("glucose-monitor", 4),
    ];
    write_v1(dir.path(), &old);

    let mut outbox = open(dir.path());
    let got = all(&outbox);
    let msg_ids: Vec<&str> = got.iter().map(|e| e.msg_id.as_str()).collect();
    assert_eq!(
        msg_ids,
        [
            "edge-01/glucose-monitor/1",
            "edge-01/threshold/3",
            "edge-01/threshold/2",
            "edge-01/glucose-monitor/4"
        ]
    );
    for e in &got {
        let source = old.iter().find(|o| o.msg_id == e.msg_id).unwrap();
        assert_eq!(e.plugin, source.plugin, "the plugin is named from the subject");
        assert_eq!((&e.payload, e.created_ms), (&source.payload, source.created_ms));
    }
    assert_eq!(outbox.dropped().alerts_for_space, 7, "the counters are kept");
    assert_eq!(outbox.depth().unwrap(), outbox.recount().unwrap());
    // The migrated file works as a new one: appends, parking, reopen.
    let id = append(&mut outbox, alert("glucose-monitor", 5));
    assert!(id > got.iter().map(|e| e.id).max().unwrap());
    drop(outbox);
    let version: i64 = Connection::open(dir.path().join(FILE_NAME))
        .unwrap()
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(version, crate::outbox::schema::SCHEMA_VERSION);
    let outbox = open(dir.path());
    assert_eq!(all(&outbox).len(), 5);
}

#[test]
fn a_version_1_file_under_another_key_is_still_refused() {
    let dir = tempfile::tempdir().unwrap();
    write_v1(dir.path(), &[alert("glucose-monitor", 1)]);
    let other = OutboxKey::from_bytes(&[0x11; 32]).unwrap();
    let err = Outbox::open(dir.path(), &other, OutboxLimits::default()).unwrap_err();
    assert!(matches!(err, OutboxError::WrongKey { .. }), "{err}");
    // And nothing was migrated: the right key still opens it.
    assert_eq!(all(&open(dir.path())).len(), 1);
}

#[test]
fn a_migrated_file_takes_telemetry_and_never_reuses_an_id() {
    let dir = tempfile::tempdir().unwrap();
    write_v1(dir.path(), &[alert("glucose-monitor", 1), alert("glucose-monitor", 2)]);
    // The newest row acknowledged and deleted: its id stays used.
    let conn = Connection::open(dir.path().join(FILE_NAME)).unwrap();
    let last: i64 = conn
        .query_row("SELECT max(id) FROM entries", [], |row| row.get(0))
        .unwrap();
    conn.execute("DELETE FROM entries WHERE id = ?1", [last]).unwrap();
    drop(conn);

    let mut outbox = open(dir.path());
    let id = append(&mut outbox, telemetry(3));
    assert!(id > u64::try_from(last).unwrap(), "{id} reuses an id up to {last}");
    let kinds: Vec<Kind> = all(&outbox).into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [Kind::Alert, Kind::Telemetry]);
    drop(outbox);
    let outbox = open(dir.path());
    assert_eq!(outbox.depth().unwrap().telemetry, 1);
    assert_eq!(outbox.depth().unwrap(), outbox.recount().unwrap());
}
