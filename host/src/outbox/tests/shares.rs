//! Each plugin's share of the outbox: a flooding plugin evicts its own
//! entries, never the alerts of a plugin within its share.

use super::*;
use crate::outbox::DropCounts;

/// An alert of `plugin` with a payload of `len` bytes.
fn big(plugin: &str, seq: u64, len: usize) -> NewEntry {
    entry(Kind::Alert, plugin, seq, &vec![b'x'; len])
}

fn of(outbox: &Outbox, plugin: &str) -> Vec<String> {
    all(outbox)
        .into_iter()
        .filter(|e| e.plugin == plugin)
        .map(|e| e.msg_id)
        .collect()
}

#[test]
fn a_flooding_plugin_evicts_its_own_alerts_never_another_plugins() {
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = 20_000;
    let mut outbox = open_max_bytes(dir.path(), max_bytes);
    // glucose-monitor: three small alerts and a summary, well within its share.
    append(&mut outbox, alert("glucose-monitor", 1));
    append(&mut outbox, summary("glucose-monitor", 2));
    append(&mut outbox, alert("glucose-monitor", 3));
    append(&mut outbox, alert("glucose-monitor", 4));
    // The flood: 100 alerts of 1,000 bytes, five times the whole outbox.
    for seq in 0..100 {
        append(&mut outbox, big("flood", seq, 1_000));
        assert!(outbox.depth().unwrap().bytes <= max_bytes);
    }
    assert_eq!(
        of(&outbox, "glucose-monitor"),
        [
            "edge-01/glucose-monitor/1",
            "edge-01/glucose-monitor/3",
            "edge-01/glucose-monitor/4",
            "edge-01/glucose-monitor/2"
        ],
        "every glucose-monitor entry kept, its summary too"
    );
    // The flood kept its newest alerts, as many as fit.
    let flood = of(&outbox, "flood");
    assert!(flood.len() >= 15, "{}", flood.len());
    assert_eq!(flood.last().unwrap(), "edge-01/flood/99");
    let seqs: Vec<u64> = flood
        .iter()
        .map(|id| id.rsplit('/').next().unwrap().parse().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "newest kept, in order: {seqs:?}"
    );
    assert_eq!(outbox.dropped().alerts_for_space, 100 - flood.len() as u64);
    assert_eq!(outbox.dropped().summaries_for_space, 0);

    // glucose-monitor can still add alerts: the flood, over its share, pays.
    append(&mut outbox, alert("glucose-monitor", 5));
    assert_eq!(of(&outbox, "glucose-monitor").len(), 5);
    // Not a summary: alerts never go for a summary, not even the flood's.
    assert_eq!(outbox.append(summary("glucose-monitor", 6)).unwrap(), None);
    assert_eq!(outbox.dropped().summaries_refused, 1);
    assert_eq!(outbox.depth().unwrap(), outbox.recount().unwrap());

    // The tally per plugin is rebuilt from the file.
    drop(outbox);
    let mut outbox = open_max_bytes(dir.path(), max_bytes);
    append(&mut outbox, big("flood", 100, 1_000));
    assert_eq!(of(&outbox, "glucose-monitor").len(), 5);
}

#[test]
fn a_plugin_within_its_share_may_use_the_room_others_leave() {
    let dir = tempfile::tempdir().unwrap();
    let max_bytes = 10_000;
    let mut outbox = open_max_bytes(dir.path(), max_bytes);
    // Alone, a plugin may fill the whole outbox.
    for seq in 0..9 {
        append(&mut outbox, big("a", seq, 1_000));
    }
    assert_eq!(outbox.dropped(), DropCounts::default());
    // A second plugin arrives: `a` is over its half now, and pays for b's alerts.
    for seq in 0..4 {
        append(&mut outbox, big("b", seq, 1_000));
    }
    assert_eq!(of(&outbox, "b").len(), 4);
    assert_eq!(outbox.dropped().alerts_for_space, 4);
    // A summary of `b` never evicts an alert, not even one of `a` over its share.
    assert_eq!(outbox.append(entry(Kind::Summary, "b", 9, &[0; 1_000])).unwrap(), None);
    assert_eq!(outbox.dropped().summaries_refused, 1);
    // `b` at its share: its next alert evicts its own oldest, and `a` keeps its half.
    append(&mut outbox, big("b", 4, 1_000));
    append(&mut outbox, big("b", 5, 1_000));
    let (a, b) = (of(&outbox, "a"), of(&outbox, "b"));
    assert!(b.len() >= 4 && a.len() >= 4, "a {a:?} b {b:?}");
    assert_eq!(b.last().unwrap(), "edge-01/b/5");
    assert!(outbox.depth().unwrap().bytes <= max_bytes);
}

#[test]
fn summaries_of_the_plugin_furthest_over_its_share_go_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open_max_bytes(dir.path(), 10_000);
    for seq in 0..3 {
        append(&mut outbox, entry(Kind::Summary, "quiet", seq, &[0; 500]));
    }
    for seq in 0..4 {
        append(&mut outbox, entry(Kind::Summary, "loud", seq, &[0; 1_000]));
        append(&mut outbox, big("loud", 10 + seq, 1_000));
    }
    // Full enough; a new alert of `quiet` evicts loud's oldest summaries, not quiet's.
    append(&mut outbox, big("quiet", 20, 1_400));
    assert_eq!(of(&outbox, "quiet").len(), 4, "{:?}", of(&outbox, "quiet"));
    assert!(outbox.dropped().summaries_for_space >= 1);
    assert_eq!(outbox.dropped().alerts_for_space, 0, "summaries go before alerts");
    assert!(!of(&outbox, "loud").contains(&"edge-01/loud/0".to_owned()));
}
