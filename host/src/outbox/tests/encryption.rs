//! Payloads are encrypted at rest; tampering and wrong keys are caught.

use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::outbox::{FILE_NAME, OutboxError};

const CANARY: &[u8] = b"PLAINTEXT-CANARY glucose 49 mg/dL urgent-low";

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Every byte of every file in `dir` (database, WAL, anything else).
fn files_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for file in std::fs::read_dir(dir).unwrap() {
        let path = file.unwrap().path();
        if path.is_file() {
            bytes.extend(std::fs::read(path).unwrap());
        }
    }
    bytes
}

#[test]
fn the_files_never_contain_a_payload_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    for seq in 0..20 {
        append(&mut outbox, entry(Kind::Alert, "p", seq, CANARY));
    }
    // While open (the WAL holds the commits) and after closing.
    assert!(!contains(&files_bytes(dir.path()), CANARY));
    assert!(contains(&files_bytes(dir.path()), b"edge-01/p/7"), "the search works");
    drop(outbox);
    assert!(!contains(&files_bytes(dir.path()), CANARY));
    let outbox = open(dir.path());
    assert!(all(&outbox).iter().all(|e| e.payload == CANARY));
}

#[test]
fn a_tampered_row_is_named_counted_and_skipped_and_the_others_are_delivered() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    let a = append(&mut outbox, alert("p", 1));
    let b = append(&mut outbox, alert("p", 2));
    let c = append(&mut outbox, alert("p", 3));
    let s = append(&mut outbox, summary("p", 4));
    let t = append(&mut outbox, summary("p", 5));
    drop(outbox);

    let raw = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
    // Flip one ciphertext byte of b.
    let mut ciphertext: Vec<u8> = raw
        .query_row("SELECT ciphertext FROM entries WHERE id = ?1", [b as i64], |r| r.get(0))
        .unwrap();
    ciphertext[3] ^= 0x01;
    raw.execute(
        "UPDATE entries SET ciphertext = ?1 WHERE id = ?2",
        rusqlite::params![ciphertext, b as i64],
    )
    .unwrap();
    // Swap the sealed payloads of the two summaries: each is bound to its row.
    raw.execute_batch(&format!(
        "UPDATE entries SET nonce = (SELECT nonce FROM entries WHERE id = {t}), \
                            ciphertext = (SELECT ciphertext FROM entries WHERE id = {t}) WHERE id = {s};"
    ))
    .unwrap();
    drop(raw);

    let mut outbox = open(dir.path());
    // s now holds t's nonce and ciphertext: t is intact, s is not.
    assert_eq!(ids(&all(&outbox)), [a, c, t]);
    assert_eq!(outbox.undecryptable(), [b, s]);
    assert_eq!(outbox.dropped().undecryptable, 2);
    // Counted once per row, however often they are skipped.
    assert_eq!(ids(&outbox.next_batch(2).unwrap()), [a, c]);
    assert_eq!(outbox.dropped().undecryptable, 2);
    let err = outbox.get(b).unwrap_err();
    assert!(matches!(err, OutboxError::Decrypt { id, .. } if id == b), "{err}");
    assert!(err.to_string().contains(&format!("row {b} ")), "{err}");
    assert!(err.to_string().contains("edge-01/p/2"), "{err}");
    // The row stays until it is deleted (or evicted, or expired).
    assert_eq!(outbox.depth().unwrap().alerts, 3);
    outbox.delete(&[b]).unwrap();
    assert_eq!(outbox.depth().unwrap().alerts, 2);
    assert_eq!(outbox.get(b).unwrap(), None);
    // The count never goes down.
    assert_eq!(outbox.dropped().undecryptable, 2);
}

#[test]
fn a_row_with_a_wrong_column_type_is_skipped_and_counted_like_a_tampered_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    let a = append(&mut outbox, alert("p", 1));
    let b = append(&mut outbox, alert("p", 2));
    let c = append(&mut outbox, alert("p", 3));
    drop(outbox);
    let raw = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
    raw.execute("UPDATE entries SET nonce = 'x' WHERE id = ?1", [a as i64])
        .unwrap();
    drop(raw);

    let outbox = open(dir.path());
    assert_eq!(ids(&outbox.next_batch(10).unwrap()), [b, c]);
    assert_eq!(outbox.undecryptable(), [a]);
    assert_eq!(outbox.dropped().undecryptable, 1);
    let err = outbox.get(a).unwrap_err();
    assert!(matches!(err, OutboxError::CorruptRow { .. }), "{err}");
}

#[test]
fn a_wrong_key_is_refused_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    append(&mut outbox, alert("p", 1));
    drop(outbox);
    let other = OutboxKey::from_bytes(&[0xa5; 32]).unwrap();
    let err = Outbox::open(dir.path(), &other, OutboxLimits::default()).unwrap_err();
    assert!(matches!(err, OutboxError::WrongKey { .. }), "{err}");
    // The right key still reads everything.
    assert_eq!(all(&open(dir.path())).len(), 1);
}

#[test]
fn a_wrong_key_fails_to_decrypt_rows_even_past_the_key_check() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    let a = append(&mut outbox, alert("p", 1));
    drop(outbox);
    // Someone replaces the key check with one sealed under another key.
    let other_dir = tempfile::tempdir().unwrap();
    let other = OutboxKey::from_bytes(&[0xa5; 32]).unwrap();
    drop(Outbox::open(other_dir.path(), &other, OutboxLimits::default()).unwrap());
    let raw = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
    raw.execute(
        "ATTACH DATABASE ?1 AS other",
        [other_dir.path().join(FILE_NAME).to_str().unwrap()],
    )
    .unwrap();
    raw.execute_batch(
        "UPDATE main.key_check SET nonce = (SELECT nonce FROM other.key_check), \
         ciphertext = (SELECT ciphertext FROM other.key_check);",
    )
    .unwrap();
    drop(raw);
    let outbox = Outbox::open(dir.path(), &other, OutboxLimits::default()).unwrap();
    assert!(all(&outbox).is_empty());
    assert_eq!(outbox.undecryptable(), [a]);
}

#[test]
fn the_key_file_is_created_once_with_mode_0600_and_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys").join("outbox.key");
    let first = OutboxKey::load_or_create(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len(), 32);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    // No temporary file left behind.
    assert_eq!(std::fs::read_dir(path.parent().unwrap()).unwrap().count(), 1);

    let data = dir.path().join("data");
    let mut outbox = Outbox::open(&data, &first, OutboxLimits::default()).unwrap();
    append(&mut outbox, alert("p", 1));
    drop(outbox);
    let again = OutboxKey::load_or_create(&path).unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    let outbox = Outbox::open(&data, &again, OutboxLimits::default()).unwrap();
    assert_eq!(all(&outbox).len(), 1);
    assert_eq!(format!("{again:?}"), "OutboxKey(AES-256-GCM, redacted)");

    std::fs::write(&path, b"short").unwrap();
    let err = OutboxKey::load_or_create(&path).unwrap_err();
    assert!(matches!(err, OutboxError::KeyFile { .. }), "{err}");
    assert!(err.to_string().contains("expected 32 bytes, found 5"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"short", "never replaced");
}
