//! Append, read in delivery order, delete, reopen.

use super::*;
use crate::outbox::{Depth, FILE_NAME, OutboxError};

#[test]
fn round_trip_keeps_order_alerts_first_and_per_subject_order_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    // Interleaved kinds and subjects, as plugins would emit them.
    let emitted = [
        summary("glucose-monitor", 1),
        alert("glucose-monitor", 2),
        summary("threshold", 1),
        alert("threshold", 2),
        alert("glucose-monitor", 3),
        summary("glucose-monitor", 4),
        alert("threshold", 3),
        summary("threshold", 4),
    ];
    let mut stored = Vec::new();
    for e in emitted.iter().cloned() {
        stored.push((append(&mut outbox, e.clone()), e));
    }
    assert!(stored.windows(2).all(|w| w[0].0 < w[1].0), "ids follow append order");

    let check = |outbox: &Outbox, expect: &[&(u64, NewEntry)]| {
        let got = all(outbox);
        assert_eq!(got.len(), expect.len());
        for (g, (id, e)) in got.iter().zip(expect) {
            assert_eq!(g.id, *id);
            assert_eq!((&g.kind, &g.subject, &g.msg_id), (&e.kind, &e.subject, &e.msg_id));
            assert_eq!((&g.payload, g.created_ms), (&e.payload, e.created_ms));
        }
    };
    let in_order = |stored: &[(u64, NewEntry)]| {
        let mut v: Vec<&(u64, NewEntry)> = stored.iter().collect();
        v.sort_by_key(|(id, e)| (e.kind, *id));
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    let expect = in_order(&stored);
    check(&outbox, &expect.iter().collect::<Vec<_>>());
    let kinds: Vec<Kind> = all(&outbox).iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [[Kind::Alert; 4], [Kind::Summary; 4]].concat());

    // A batch of three, acknowledged: the rest keeps its order.
    let batch = outbox.next_batch(3).unwrap();
    assert_eq!(ids(&batch), ids(&all(&outbox))[..3]);
    outbox.delete(&ids(&batch)).unwrap();
    stored.retain(|(id, _)| !ids(&batch).contains(id));
    let expect = in_order(&stored);
    check(&outbox, &expect.iter().collect::<Vec<_>>());

    // Reopen: the same entries, same order, and per-subject order holds.
    drop(outbox);
    let mut outbox = open(dir.path());
    check(&outbox, &expect.iter().collect::<Vec<_>>());
    for subject in [
        "alerts.glucose-monitor",
        "alerts.threshold",
        "summaries.glucose-monitor",
    ] {
        let seqs: Vec<u64> = all(&outbox)
            .iter()
            .filter(|e| e.subject.ends_with(subject))
            .map(|e| e.msg_id.rsplit('/').next().unwrap().parse().unwrap())
            .collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{subject}: {seqs:?}");
    }

    // Ids are never reused, even once the newest entries are gone.
    let last = stored.iter().map(|(id, _)| *id).max().unwrap();
    outbox.delete(&ids(&all(&outbox))).unwrap();
    assert_eq!(outbox.depth().unwrap(), Depth::default());
    drop(outbox);
    let mut outbox = open(dir.path());
    assert!(append(&mut outbox, alert("threshold", 9)) > last);
}

#[test]
fn next_batch_respects_max_and_delete_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    let a = append(&mut outbox, alert("p", 1));
    let b = append(&mut outbox, alert("p", 2));
    assert!(outbox.next_batch(0).unwrap().is_empty());
    assert_eq!(ids(&outbox.next_batch(1).unwrap()), [a]);
    // Reading does not consume.
    assert_eq!(ids(&outbox.next_batch(1).unwrap()), [a]);
    outbox.delete(&[a]).unwrap();
    outbox.delete(&[a, 999, u64::MAX]).unwrap();
    outbox.delete(&[]).unwrap();
    assert_eq!(ids(&all(&outbox)), [b]);
    assert_eq!(outbox.depth().unwrap().alerts, 1);
    assert_eq!(outbox.get(a).unwrap(), None);
    assert_eq!(outbox.get(b).unwrap().unwrap().payload, b"alert p 2");
}

/// Of the subjects upstream has no stream for, only the oldest entry each
/// (a probe); what is behind the rest comes, in delivery order, up to `max`.
#[test]
fn next_batch_probing_takes_the_oldest_entry_of_each_subject_probed() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    let p: Vec<u64> = (1..=3).map(|seq| append(&mut outbox, alert("p", seq))).collect();
    let q1 = append(&mut outbox, alert("q", 1));
    let p_summary = append(&mut outbox, summary("p", 4));
    let q2 = append(&mut outbox, alert("q", 2));
    let probing = std::collections::BTreeSet::from(["edgewise.edge-01.up.alerts.p".to_owned()]);
    assert_eq!(ids(&outbox.next_batch_probing(2, &probing).unwrap()), [p[0], q1]);
    assert_eq!(
        ids(&outbox.next_batch_probing(usize::MAX, &probing).unwrap()),
        [p[0], q1, q2, p_summary]
    );
    // Nothing probed: the oldest first, as ever.
    let none = std::collections::BTreeSet::new();
    assert_eq!(ids(&outbox.next_batch_probing(3, &none).unwrap()), p);
}

#[test]
fn append_batch_stores_all_in_order_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    let batch = vec![summary("p", 1), alert("p", 2), alert("p", 3)];
    let got = outbox.append_batch(batch.clone()).unwrap();
    let got: Vec<u64> = got.into_iter().map(Option::unwrap).collect();
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(ids(&all(&outbox)), [got[1], got[2], got[0]]);
    assert!(outbox.append_batch(Vec::new()).unwrap().is_empty());

    // One entry that can never fit: nothing of the batch is stored.
    let mut small = open_with(
        tempfile::tempdir().unwrap().path(),
        OutboxLimits {
            max_bytes: 200,
            ..OutboxLimits::default()
        },
    );
    let huge = entry(Kind::Alert, "p", 9, &[0; 500]);
    let err = small.append_batch(vec![alert("p", 1), huge]).unwrap_err();
    assert!(matches!(err, OutboxError::EntryTooLarge { ref msg_id, .. } if msg_id == "edge-01/p/9"));
    assert_eq!(small.depth().unwrap(), Depth::default());
}

#[test]
fn depth_and_oldest_follow_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    assert_eq!(outbox.depth().unwrap(), Depth::default());
    assert_eq!(outbox.oldest_created_ms().unwrap(), None);
    let a = append(&mut outbox, alert("p", 5));
    append(&mut outbox, summary("p", 3));
    let depth = outbox.depth().unwrap();
    assert_eq!((depth.alerts, depth.summaries), (1, 1));
    let expect_bytes: u64 = all(&outbox)
        .iter()
        .map(|e| (e.subject.len() + e.msg_id.len() + 12 + e.payload.len() + 16) as u64)
        .sum();
    assert_eq!(depth.bytes, expect_bytes);
    assert_eq!(outbox.recount().unwrap(), depth);
    assert_eq!(outbox.oldest_created_ms().unwrap(), Some(1_700_000_000_003));
    outbox.delete(&[a]).unwrap();
    drop(outbox);
    let outbox = open(dir.path());
    assert_eq!(outbox.depth().unwrap().alerts, 0);
    assert_eq!(outbox.depth().unwrap(), outbox.recount().unwrap());
}

#[test]
fn the_file_is_wal_with_full_sync_and_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = open(dir.path());
    assert_eq!(outbox.path(), dir.path().join(FILE_NAME));
    drop(outbox);
    let raw = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
    let mode: String = raw.query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
    raw.pragma_update(None, "user_version", 6).unwrap();
    drop(raw);
    let err = Outbox::open(dir.path(), &key(), OutboxLimits::default()).unwrap_err();
    assert!(
        matches!(
            err,
            OutboxError::UnknownSchema {
                found: 6,
                supported: 5,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("schema version 6"), "{err}");
}

#[test]
fn a_foreign_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(FILE_NAME), b"not a database, not at all, no").unwrap();
    assert!(Outbox::open(dir.path(), &key(), OutboxLimits::default()).is_err());

    let dir = tempfile::tempdir().unwrap();
    let raw = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
    raw.execute_batch("CREATE TABLE other (x)").unwrap();
    drop(raw);
    let err = Outbox::open(dir.path(), &key(), OutboxLimits::default()).unwrap_err();
    assert!(matches!(err, OutboxError::NotAnOutbox { .. }), "{err}");
}

#[test]
fn a_second_opener_is_refused_while_the_outbox_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut first = open(dir.path());
    // Waits out SQLite's 5 s busy timeout.
    let err = Outbox::open(dir.path(), &key(), OutboxLimits::default()).unwrap_err();
    assert!(matches!(err, OutboxError::Locked { .. }), "{err}");
    append(&mut first, alert("p", 1));
    drop(first);
    assert_eq!(all(&open(dir.path())).len(), 1);
}

/// Another host holding the outbox is still an error at start: an outbox in
/// memory is for a disk that refuses, never for two hosts sharing a data
/// directory.
#[test]
fn a_second_host_is_refused_rather_than_given_an_outbox_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path());
    // Waits out SQLite's 5 s busy timeout.
    let refused = crate::outbox::reset::open_outbox(dir.path(), OutboxLimits::default(), 0).err();
    assert!(
        matches!(
            refused,
            Some(crate::outbox::reset::OpenError::Outbox(OutboxError::Locked { .. }))
        ),
        "{refused:?}"
    );
}

/// An outbox in memory stores, numbers and gives back entries as the file
/// does.
#[test]
fn an_outbox_in_memory_keeps_entries_as_the_file_does() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = Outbox::open_in_memory(&dir.path().join(FILE_NAME), OutboxLimits::default()).unwrap();
    append(&mut outbox, alert("p", 1));
    append(&mut outbox, alert("p", 2));
    assert_eq!(all(&outbox).len(), 2);
    assert!(!dir.path().join(FILE_NAME).exists(), "no file is made");
}

/// Passing over a subject's backlog reads none of it: the subjects and
/// each one's first entries come from `entries_by_subject` alone (a
/// covering index), never from a walk of the table. Before, every round
/// walked every row: 25 ms for 100,000 entries waiting, every 200 ms.
#[test]
fn next_batch_probing_reads_the_index_not_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    let backlog: Vec<NewEntry> = (1..=2000).map(|seq| alert("p", seq)).collect();
    let first = outbox.append_batch(backlog).unwrap()[0].unwrap();
    let q = append(&mut outbox, alert("q", 1));
    let probing = std::collections::BTreeSet::from(["edgewise.edge-01.up.alerts.p".to_owned()]);
    assert_eq!(ids(&outbox.next_batch_probing(256, &probing).unwrap()), [first, q]);
    drop(outbox);

    // The plans of the two statements, on the file as the outbox left it.
    let raw = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
    let plan = |sql: &str| -> String {
        let mut stmt = raw.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let details: Vec<String> = stmt
            .query_map([], |row| row.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        details.join("; ")
    };
    let subject = plan("SELECT kind, id FROM entries WHERE subject = 'x' ORDER BY kind, id");
    assert!(subject.contains("USING COVERING INDEX entries_by_subject"), "{subject}");
    assert!(!subject.contains("TEMP B-TREE"), "no sort: {subject}");
    let next = plan("SELECT (SELECT min(subject) FROM entries WHERE subject > 'x')");
    assert!(next.contains("USING COVERING INDEX entries_by_subject"), "{next}");
}

/// A row that cannot be opened is passed over while probing too, and the
/// others of its subject still come.
#[test]
fn next_batch_probing_skips_a_tampered_row_and_delivers_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    let p = append(&mut outbox, alert("p", 1));
    let q: Vec<u64> = (1..=3).map(|seq| append(&mut outbox, alert("q", seq))).collect();
    drop(outbox);
    let raw = rusqlite::Connection::open(dir.path().join(FILE_NAME)).unwrap();
    raw.execute("UPDATE entries SET nonce = 'x' WHERE id = ?1", [q[0] as i64])
        .unwrap();
    drop(raw);
    let outbox = open(dir.path());
    let probing = std::collections::BTreeSet::from(["edgewise.edge-01.up.alerts.p".to_owned()]);
    assert_eq!(ids(&outbox.next_batch_probing(10, &probing).unwrap()), [p, q[1], q[2]]);
    assert_eq!(ids(&outbox.next_batch_probing(2, &probing).unwrap()), [p, q[1]]);
}
