//! Telemetry in the outbox: best-effort, after every alert and summary,
//! within its own small bound, never at the cost of an alert or a summary.

use super::*;
use crate::outbox::entry::stored_size;
use crate::outbox::{TELEMETRY_MAX_ENTRIES, TELEMETRY_SHARE};

/// Bytes `e` counts for.
fn size(e: &NewEntry) -> u64 {
    stored_size(&e.subject, &e.msg_id, e.payload.len())
}

/// Telemetry number `seq` with a payload of `len` bytes.
fn telemetry_of(seq: u64, len: usize) -> NewEntry {
    let mut e = telemetry(seq);
    e.payload = vec![b't'; len];
    e
}

fn msg_ids(outbox: &Outbox, kind: Kind) -> Vec<String> {
    all(outbox)
        .into_iter()
        .filter(|e| e.kind == kind)
        .map(|e| e.msg_id)
        .collect()
}

#[test]
fn telemetry_is_delivered_after_every_alert_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    append(&mut outbox, telemetry(1));
    append(&mut outbox, summary("threshold", 2));
    append(&mut outbox, telemetry(3));
    append(&mut outbox, alert("threshold", 4));
    let kinds: Vec<(Kind, String)> = all(&outbox).into_iter().map(|e| (e.kind, e.msg_id)).collect();
    assert_eq!(
        kinds,
        [
            (Kind::Alert, "edge-01/threshold/4".to_owned()),
            (Kind::Summary, "edge-01/threshold/2".to_owned()),
            (Kind::Telemetry, "edge-01/telemetry/0123/1".to_owned()),
            (Kind::Telemetry, "edge-01/telemetry/0123/3".to_owned()),
        ]
    );
    let depth = outbox.depth().unwrap();
    assert_eq!((depth.alerts, depth.summaries, depth.telemetry), (1, 1, 2));
    assert_eq!(depth, outbox.recount().unwrap());
}

#[test]
fn at_most_the_bound_is_kept_the_oldest_dropped_and_counted_across_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    let extra = 5;
    for seq in 1..=TELEMETRY_MAX_ENTRIES + extra {
        append(&mut outbox, telemetry(seq));
    }
    assert_eq!(outbox.depth().unwrap().telemetry, TELEMETRY_MAX_ENTRIES);
    assert_eq!(outbox.dropped().telemetry, extra);
    let kept = msg_ids(&outbox, Kind::Telemetry);
    assert_eq!(kept.first().unwrap(), &format!("edge-01/telemetry/0123/{}", extra + 1));
    assert_eq!(
        kept.last().unwrap(),
        &format!("edge-01/telemetry/0123/{}", TELEMETRY_MAX_ENTRIES + extra)
    );
    drop(outbox);
    let outbox = open(dir.path());
    assert_eq!(outbox.dropped().telemetry, extra, "the count is kept in the file");
    assert_eq!(outbox.depth().unwrap().telemetry, TELEMETRY_MAX_ENTRIES);
}

#[test]
fn telemetry_stays_within_its_share_of_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = 16 * 1024;
    let share = max_bytes / TELEMETRY_SHARE;
    let mut outbox = open_max_bytes(dir.path(), max_bytes);
    for seq in 1..=10 {
        append(&mut outbox, telemetry_of(seq, 300));
        assert!(outbox.depth().unwrap().bytes <= share);
    }
    let kept = outbox.depth().unwrap().telemetry;
    assert!((1..10).contains(&kept), "{kept}");
    assert_eq!(outbox.dropped().telemetry, 10 - kept);
    // One larger than the whole share is refused, and counted.
    assert_eq!(outbox.append(telemetry_of(11, share as usize)).unwrap(), None);
    assert_eq!(outbox.dropped().telemetry, 11 - kept);
    assert_eq!(outbox.depth().unwrap().telemetry, kept, "nothing dropped for it");
}

#[test]
fn telemetry_never_takes_the_room_of_an_alert_or_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = 4_800;
    let mut outbox = open_max_bytes(dir.path(), max_bytes);
    let mut seq = 0;
    // Alerts and summaries up to the brim.
    loop {
        seq += 1;
        let next = if seq % 2 == 0 {
            alert("threshold", seq)
        } else {
            summary("threshold", seq)
        };
        if outbox.depth().unwrap().bytes + size(&next) > max_bytes {
            break;
        }
        append(&mut outbox, next);
    }
    let before = all(&outbox);
    assert_eq!(outbox.append(telemetry(seq)).unwrap(), None);
    assert_eq!(all(&outbox), before, "nothing evicted for telemetry");
    let dropped = outbox.dropped();
    assert_eq!(dropped.telemetry, 1);
    assert_eq!((dropped.alerts_for_space, dropped.summaries_for_space), (0, 0));
}

#[test]
fn telemetry_is_evicted_first_when_an_alert_or_a_summary_needs_room() {
    for kind in [Kind::Alert, Kind::Summary] {
        let dir = tempfile::tempdir().unwrap();
        let max_bytes = 4_800;
        let mut outbox = open_max_bytes(dir.path(), max_bytes);
        for seq in 1..=3 {
            append(&mut outbox, telemetry(seq));
        }
        assert_eq!(outbox.depth().unwrap().telemetry, 3);
        // Outputs of two plugins until their own start to go.
        let mut seq = 3;
        while outbox.dropped().alerts_for_space + outbox.dropped().summaries_for_space == 0 {
            seq += 1;
            let plugin = if seq % 2 == 0 { "threshold" } else { "glucose-monitor" };
            append(
                &mut outbox,
                entry(kind, plugin, seq, format!("output {seq}").as_bytes()),
            );
            let (depth, dropped) = (outbox.depth().unwrap(), outbox.dropped());
            assert_eq!(
                depth.telemetry + dropped.telemetry,
                3,
                "{kind:?}: telemetry goes, oldest first"
            );
            if dropped.alerts_for_space + dropped.summaries_for_space > 0 {
                assert_eq!(
                    depth.telemetry, 0,
                    "{kind:?}: an output evicted while telemetry was left"
                );
            }
        }
        assert_eq!(outbox.dropped().telemetry, 3);
        assert!(outbox.depth().unwrap().bytes <= max_bytes);
    }
}

#[test]
fn a_refused_summary_leaves_the_telemetry_it_could_not_use() {
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = 4_800;
    let mut outbox = open_max_bytes(dir.path(), max_bytes);
    for seq in 1..=3 {
        append(&mut outbox, telemetry(seq));
    }
    let mut seq = 3;
    while outbox.dropped().telemetry == 0 {
        seq += 1;
        append(&mut outbox, alert("threshold", seq));
    }
    let before = all(&outbox);
    let dropped = outbox.dropped();
    // Larger than the room all the telemetry would leave: alerts only left to evict.
    let big = entry(Kind::Summary, "glucose-monitor", seq + 1, &vec![b's'; 1_000]);
    assert_eq!(outbox.append(big).unwrap(), None);
    assert_eq!(all(&outbox), before, "the telemetry evicted for it is put back");
    assert_eq!(outbox.dropped().telemetry, dropped.telemetry);
    assert_eq!(outbox.dropped().summaries_refused, dropped.summaries_refused + 1);
}

#[test]
fn telemetry_expires_with_the_age_limit_and_counts_as_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open_with(
        dir.path(),
        OutboxLimits {
            max_age_ms: 1_000,
            ..OutboxLimits::default()
        },
    );
    let old = telemetry(1);
    let now = old.created_ms + 5_000;
    append(&mut outbox, old);
    assert_eq!(outbox.expire(now).unwrap(), 1);
    assert_eq!(outbox.dropped().telemetry, 1);
    assert_eq!(outbox.depth().unwrap().telemetry, 0);
}
