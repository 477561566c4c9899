//! Group commit: `Outbox::append_groups` and the `Writer` thread.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::super::{OutboxError, Writer};
use super::{alert, all, open, open_max_bytes, summary};

#[test]
fn a_failed_group_is_undone_alone_and_the_others_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut outbox = open_max_bytes(dir.path(), 4096);
    let mut huge = alert("p", 3);
    huge.payload = vec![b'x'; 8192];
    let results = outbox
        .append_groups(vec![
            vec![alert("p", 1), summary("p", 2)],
            vec![alert("p", 4), huge],
            vec![],
            vec![alert("q", 1)],
        ])
        .unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(results[0].as_ref().unwrap().len(), 2);
    assert!(matches!(results[1], Err(OutboxError::EntryTooLarge { .. })));
    assert!(results[2].as_ref().unwrap().is_empty());
    assert_eq!(results[3].as_ref().unwrap().len(), 1);
    let stored: Vec<String> = all(&outbox).into_iter().map(|e| e.msg_id).collect();
    assert_eq!(stored, ["edge-01/p/1", "edge-01/q/1", "edge-01/p/2"]);
    assert_eq!(outbox.recount().unwrap(), outbox.depth().unwrap());
}

#[test]
fn the_writer_commits_in_order_and_runs_continuations_after_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Mutex::new(open(dir.path())));
    let (commits, committed) = mpsc::channel();
    let writer = Writer::start(outbox.clone(), 4, move || commits.send(()).unwrap()).unwrap();
    let handle = writer.handle();
    let (seen, order) = mpsc::channel();
    for seq in 1..=20u64 {
        let (seen, outbox) = (seen.clone(), outbox.clone());
        handle
            .submit(
                vec![alert("p", seq)],
                Box::new(move |outcome| {
                    let ids = outcome.unwrap().to_vec();
                    // Durable before told: the entry is in the outbox already.
                    // (The writer holds no lock while continuations run.)
                    let stored = outbox.lock().unwrap().get(ids[0].unwrap()).unwrap();
                    assert!(stored.is_some());
                    seen.send(seq).unwrap();
                }),
            )
            .unwrap();
    }
    // A continuation with no entries runs after every earlier commit.
    let last = seen.clone();
    handle
        .submit(
            Vec::new(),
            Box::new(move |outcome| {
                assert!(outcome.unwrap().is_empty());
                last.send(0).unwrap();
            }),
        )
        .unwrap();
    drop(handle);
    writer.join();
    drop(seen);
    let order: Vec<u64> = order.iter().collect();
    assert_eq!(order, (1..=20).chain([0]).collect::<Vec<_>>());
    assert_eq!(all(&outbox.lock().unwrap()).len(), 20);
    assert!(committed.try_iter().count() >= 1);
}
