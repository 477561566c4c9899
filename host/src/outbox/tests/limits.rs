//! The size limit (eviction order, counters) and expiry.

use super::*;
use crate::outbox::{DropCounts, OutboxError};

/// Stored size of an entry (subject, message id, nonce, payload, tag).
fn size(e: &NewEntry) -> u64 {
    (e.subject.len() + e.msg_id.len() + 12 + e.payload.len() + 16) as u64
}

fn a(seq: u64) -> NewEntry {
    entry(Kind::Alert, "p", seq, &[b'a'; 100])
}

fn s(seq: u64) -> NewEntry {
    entry(Kind::Summary, "p", seq, &[b's'; 100])
}

fn msg_ids(outbox: &Outbox) -> Vec<String> {
    all(outbox).into_iter().map(|e| e.msg_id).collect()
}

#[test]
fn summaries_are_evicted_first_alerts_are_kept_and_drops_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let limits = OutboxLimits {
        max_bytes: 2 * size(&a(1)) + 2 * size(&s(1)),
        ..OutboxLimits::default()
    };
    assert!(size(&s(1)) > size(&a(1)), "the arithmetic below relies on it");
    let mut outbox = open_with(dir.path(), limits);
    for e in [s(1), a(2), s(3), a(4)] {
        append(&mut outbox, e);
    }
    assert_eq!(outbox.depth().unwrap().bytes, limits.max_bytes, "full");

    // A new alert evicts the oldest summary only.
    append(&mut outbox, a(5));
    assert_eq!(
        msg_ids(&outbox),
        ["edge-01/p/2", "edge-01/p/4", "edge-01/p/5", "edge-01/p/3"]
    );
    assert_eq!(outbox.dropped().summaries_for_space, 1);

    // A new summary evicts an older summary.
    append(&mut outbox, s(6));
    assert_eq!(
        msg_ids(&outbox),
        ["edge-01/p/2", "edge-01/p/4", "edge-01/p/5", "edge-01/p/6"]
    );
    assert_eq!(outbox.dropped().summaries_for_space, 2);

    // An alert evicts the last summary.
    append(&mut outbox, a(7));
    assert_eq!(outbox.depth().unwrap().summaries, 0);
    assert_eq!(outbox.dropped().summaries_for_space, 3);

    // Only alerts left: a new summary is refused, nothing is evicted for it.
    let before = msg_ids(&outbox);
    assert_eq!(outbox.append(s(8)).unwrap(), None);
    assert_eq!(msg_ids(&outbox), before);
    assert_eq!(outbox.dropped().summaries_refused, 1);

    // An alert that does not fit once no summary is left evicts the oldest alert.
    append(&mut outbox, a(9));
    assert_eq!(
        msg_ids(&outbox),
        ["edge-01/p/4", "edge-01/p/5", "edge-01/p/7", "edge-01/p/9"]
    );
    let expect = DropCounts {
        summaries_for_space: 3,
        summaries_refused: 1,
        alerts_for_space: 1,
        ..DropCounts::default()
    };
    assert_eq!(outbox.dropped(), expect);
    assert!(outbox.depth().unwrap().bytes <= limits.max_bytes);
    assert_eq!(outbox.depth().unwrap(), outbox.recount().unwrap());

    // The counters are in the file.
    drop(outbox);
    let outbox = open_with(dir.path(), limits);
    assert_eq!(outbox.dropped(), expect);
    assert_eq!(outbox.depth().unwrap(), outbox.recount().unwrap());
}

#[test]
fn a_batch_refuses_a_summary_that_does_not_fit_and_keeps_its_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = 2 * size(&a(1));
    let mut outbox = open_max_bytes(dir.path(), max_bytes);
    let got = outbox.append_batch(vec![a(1), s(2), a(3)]).unwrap();
    assert!(got[0].is_some() && got[1].is_none() && got[2].is_some(), "{got:?}");
    assert_eq!(msg_ids(&outbox), ["edge-01/p/1", "edge-01/p/3"]);
    assert_eq!(outbox.dropped().summaries_refused, 1);
    // Several small summaries make room for a bigger one, oldest first.
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open_max_bytes(dir.path(), max_bytes);
    append(&mut outbox, s(1));
    append(&mut outbox, entry(Kind::Summary, "p", 2, &[0; 10]));
    append(&mut outbox, entry(Kind::Summary, "p", 3, &[0; 10]));
    append(&mut outbox, entry(Kind::Summary, "p", 4, &[0; 150]));
    assert_eq!(msg_ids(&outbox), ["edge-01/p/3", "edge-01/p/4"]);
    assert_eq!(outbox.dropped().summaries_for_space, 2);
}

#[test]
fn an_entry_larger_than_the_limit_is_an_error_and_evicts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open_max_bytes(dir.path(), 2 * size(&s(1)));
    append(&mut outbox, a(1));
    append(&mut outbox, s(2));
    let err = outbox.append(entry(Kind::Alert, "p", 3, &[0; 400])).unwrap_err();
    assert!(matches!(err, OutboxError::EntryTooLarge { .. }), "{err}");
    assert_eq!(msg_ids(&outbox), ["edge-01/p/1", "edge-01/p/2"]);
    assert_eq!(outbox.dropped(), DropCounts::default());
}

/// Limits with an age of a second.
const AGED: OutboxLimits = OutboxLimits {
    max_age_ms: 1_000,
    max_bytes: OutboxLimits::DEFAULT_MAX_BYTES,
    log_max_bytes: OutboxLimits::DEFAULT_LOG_MAX_BYTES,
};

/// `entry` as if written at `created_ms`.
fn at(mut entry: NewEntry, created_ms: i64) -> NewEntry {
    entry.created_ms = created_ms;
    entry
}

/// A device with no real-time clock writes entries at a stale time, then
/// NTP moves its clock a year on: those entries keep the age they really
/// have (across a reopen too), later ones are unaffected, and the jump is
/// forgotten once no stamp before it is left.
#[test]
fn a_forward_jump_of_the_clock_does_not_age_what_waited_through_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open_with(dir.path(), AGED);
    const YEAR: i64 = 365 * 86_400_000;
    append(&mut outbox, at(a(1), 100));
    append(&mut outbox, at(a(2), 200));
    // Seen at 300 by the old clock: it reads a year more.
    outbox.clock_jumped(300, YEAR).unwrap();
    append(&mut outbox, at(a(3), YEAR + 400));
    assert_eq!(
        outbox.expire(YEAR + 900).unwrap(),
        0,
        "a year on the stamps, not in the outbox"
    );
    assert_eq!(
        outbox.oldest_created_ms().unwrap(),
        Some(YEAR + 100),
        "ages as they really are"
    );
    assert_eq!(outbox.first_waiting_created_ms(Kind::Alert).unwrap(), Some(YEAR + 100));
    drop(outbox);
    let mut outbox = open_with(dir.path(), AGED);
    assert_eq!(outbox.expire(YEAR + 1_150).unwrap(), 1, "1 is 1,050 ms old");
    assert_eq!(outbox.expire(YEAR + 1_300).unwrap(), 1, "2 is 1,100 ms old");
    assert_eq!(msg_ids(&outbox), ["edge-01/p/3"]);
    let jumps: i64 = outbox
        .conn
        .query_row("SELECT count(*) FROM clock_jumps", [], |row| row.get(0))
        .unwrap();
    assert_eq!(jumps, 0, "no stamp before the jump is left");
    assert_eq!(outbox.expire(YEAR + 1_400).unwrap(), 0);
    assert_eq!(outbox.expire(YEAR + 1_401).unwrap(), 1);
}

#[test]
fn expire_removes_entries_older_than_max_age_by_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open_with(dir.path(), AGED);
    append(&mut outbox, at(a(1), 0));
    append(&mut outbox, at(s(2), 500));
    append(&mut outbox, at(s(3), 999));
    append(&mut outbox, at(a(4), 1_000));
    append(&mut outbox, at(a(5), 1_500));
    assert_eq!(outbox.oldest_created_ms().unwrap(), Some(0));
    assert_eq!(outbox.expire(1_500).unwrap(), 1);
    // Exactly max_age old stays; older goes.
    assert_eq!(outbox.expire(2_000).unwrap(), 2);
    assert_eq!(msg_ids(&outbox), ["edge-01/p/4", "edge-01/p/5"]);
    assert_eq!(outbox.oldest_created_ms().unwrap(), Some(1_000));
    assert_eq!(outbox.expire(2_000).unwrap(), 0);
    let expect = DropCounts {
        expired_alerts: 1,
        expired_summaries: 2,
        ..DropCounts::default()
    };
    assert_eq!(outbox.dropped(), expect);
    assert_eq!(outbox.depth().unwrap(), outbox.recount().unwrap());
    // No overflow at the edges of time.
    assert_eq!(outbox.expire(i64::MIN).unwrap(), 0);
    drop(outbox);
    let mut outbox = open_with(dir.path(), AGED);
    assert_eq!(outbox.dropped(), expect);
    assert_eq!(outbox.expire(i64::MAX).unwrap(), 2);
    assert_eq!(outbox.depth().unwrap().alerts, 0);
}
