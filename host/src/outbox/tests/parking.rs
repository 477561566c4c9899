//! Entries upstream refuses for good: counted attempts, moved aside with a
//! report in one transaction, kept (sealed) in a bounded side table.

use super::*;
use crate::outbox::{ParkedCounts, Refusal};

/// The host's small report about `refused`, as the publisher makes it.
fn report(refused: &Entry) -> NewEntry {
    NewEntry {
        kind: Kind::Alert,
        plugin: refused.plugin.clone(),
        subject: format!("edgewise.edge-01.up.alerts.{}", refused.plugin),
        msg_id: format!("{}/refused", refused.msg_id),
        payload: b"upstream refused it".to_vec(),
        created_ms: refused.created_ms,
    }
}

#[test]
fn an_entry_refused_for_good_moves_aside_with_its_report_and_the_rest_stays_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    append(&mut outbox, entry(Kind::Alert, "faulty", 1, &[b'b'; 5_000]));
    append(&mut outbox, alert("glucose-monitor", 1));
    append(&mut outbox, alert("glucose-monitor", 2));
    let head = all(&outbox).remove(0);
    assert_eq!(head.plugin, "faulty");
    for attempt in 1..=3 {
        assert_eq!(outbox.refused(head.id).unwrap(), attempt);
    }
    assert!(
        outbox
            .park(head.id, Refusal::TooLarge, 1_234, Some(report(&head)))
            .unwrap()
    );
    let msg_ids: Vec<String> = all(&outbox).into_iter().map(|e| e.msg_id).collect();
    assert_eq!(
        msg_ids,
        [
            "edge-01/glucose-monitor/1",
            "edge-01/glucose-monitor/2",
            "edge-01/faulty/1/refused"
        ]
    );
    let expect = ParkedCounts {
        too_large: 1,
        entries: 1,
        ..ParkedCounts::default()
    };
    assert_eq!(outbox.parked_counts(), expect);
    let parked = outbox.parked().unwrap();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].entry, head, "kept whole, and it still decrypts");
    assert_eq!((parked[0].reason.as_str(), parked[0].parked_ms), ("too-large", 1_234));
    assert_eq!(outbox.depth().unwrap(), outbox.recount().unwrap());
    assert_eq!(outbox.depth().unwrap().alerts, 3);

    // Gone from the outbox: a second park or refusal of it does nothing.
    assert!(
        !outbox
            .park(head.id, Refusal::TooLarge, 1_235, Some(report(&head)))
            .unwrap()
    );
    assert_eq!(outbox.refused(head.id).unwrap(), 0);
    assert_eq!(all(&outbox).len(), 3);

    // Everything is in the file.
    drop(outbox);
    let outbox = open(dir.path());
    assert_eq!(outbox.parked_counts(), expect);
    assert_eq!(outbox.parked().unwrap()[0].entry, head);
    assert_eq!(all(&outbox).len(), 3);
}

#[test]
fn refusals_are_counted_in_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open(dir.path());
    let id = append(&mut outbox, alert("glucose-monitor", 1));
    assert_eq!(outbox.refused(id).unwrap(), 1);
    drop(outbox);
    let mut outbox = open(dir.path());
    assert_eq!(
        outbox.refused(id).unwrap(),
        2,
        "a restart does not start the count again"
    );
    assert_eq!(outbox.refused(id + 1).unwrap(), 0);
}

#[test]
fn the_side_table_is_bounded_its_oldest_go_first_counted() {
    let dir = tempfile::tempdir().unwrap();
    // The side table keeps a quarter: 1,500 bytes, two of these entries.
    let mut outbox = open_max_bytes(dir.path(), 6_000);
    let ids: Vec<u64> = (0..4)
        .map(|seq| append(&mut outbox, entry(Kind::Summary, "p", seq, &[0; 600])))
        .collect();
    for (n, id) in ids.iter().enumerate() {
        let reason = if n % 2 == 0 {
            Refusal::PermissionDenied
        } else {
            Refusal::Refused
        };
        assert!(outbox.park(*id, reason, n as i64, None).unwrap());
    }
    let parked: Vec<String> = outbox.parked().unwrap().into_iter().map(|p| p.entry.msg_id).collect();
    assert_eq!(parked, ["edge-01/p/2", "edge-01/p/3"], "the newest kept");
    let counts = outbox.parked_counts();
    assert_eq!((counts.permission_denied, counts.refused, counts.entries), (2, 2, 2));
    assert_eq!(outbox.dropped().parked_discarded, 2);
    assert_eq!(outbox.depth().unwrap().summaries, 0);
    drop(outbox);
    let outbox = open_max_bytes(dir.path(), 6_000);
    assert_eq!(outbox.dropped().parked_discarded, 2);
    assert_eq!(outbox.parked_counts(), counts);
}
