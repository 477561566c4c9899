//! Group commit: `Outbox::append_groups` and the `Writer` thread.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use super::super::{NewEntry, Outbox, OutboxError, Writer, WriterHandle};
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

/// Make the outbox's file refuse to grow (as a full disk does: SQLite's
/// "database or disk is full"), or let it grow again.
fn disk_full(outbox: &Mutex<Outbox>, full: bool) {
    let outbox = outbox.lock().unwrap();
    let pages: i64 = if full {
        outbox
            .conn
            .query_row("PRAGMA page_count", [], |row| row.get(0))
            .unwrap()
    } else {
        i64::from(u32::MAX)
    };
    outbox.conn.pragma_update(None, "max_page_count", pages).unwrap();
}

/// The next `n` outcomes told (a minute at most for each).
fn next_told(outcomes: &mpsc::Receiver<(u64, bool)>, n: usize) -> Vec<(u64, bool)> {
    (0..n)
        .map(|_| {
            outcomes
                .recv_timeout(std::time::Duration::from_secs(60))
                .expect("an outcome told within a minute")
        })
        .collect()
}

/// Wait until `done` holds (a minute at most: then the test fails, saying `what`).
fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "waited a minute for: {what}");
        std::thread::yield_now();
    }
}

/// An alert too large to fit in the pages the file has.
fn big_alert(seq: u64) -> NewEntry {
    let mut entry = alert("p", seq);
    entry.payload = vec![b'x'; 8192];
    entry
}

/// Submit alert `seq`, its continuation reporting `(seq, stored)` on `told`.
fn submit_told(handle: &WriterHandle, seq: u64, told: &mpsc::Sender<(u64, bool)>) {
    let told = told.clone();
    handle
        .submit(
            vec![big_alert(seq)],
            Box::new(move |outcome| told.send((seq, outcome.is_ok())).unwrap()),
        )
        .unwrap();
}

/// A writer (queue of 4) on a new outbox, and a channel for continuations
/// to report on.
struct Fixture {
    _dir: tempfile::TempDir,
    outbox: Arc<Mutex<Outbox>>,
    writer: Writer,
    handle: WriterHandle,
    told: mpsc::Sender<(u64, bool)>,
    outcomes: mpsc::Receiver<(u64, bool)>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Mutex::new(open(dir.path())));
    let writer = Writer::start(outbox.clone(), 4, || {}).unwrap();
    let handle = writer.handle();
    let (told, outcomes) = mpsc::channel();
    Fixture {
        _dir: dir,
        outbox,
        writer,
        handle,
        told,
        outcomes,
    }
}

#[test]
fn writes_the_disk_refuses_wait_in_order_and_are_stored_once_it_takes_them_again() {
    let f = fixture();
    let stats = f.writer.stats();
    submit_told(&f.handle, 1, &f.told);
    assert_eq!(next_told(&f.outcomes, 1), [(1, true)]);

    disk_full(&f.outbox, true);
    // More than the writer's queue: producers are not held up by the disk.
    for seq in 2..=11 {
        submit_told(&f.handle, seq, &f.told);
    }
    let waiting = || stats.waiting_entries.load(std::sync::atomic::Ordering::Relaxed);
    until("10 entries waiting", || waiting() == 10);
    assert!(f.outcomes.try_recv().is_err(), "nothing told while the disk refuses");
    assert_eq!(all(&f.outbox.lock().unwrap()).len(), 1);

    disk_full(&f.outbox, false);
    let stored = next_told(&f.outcomes, 10);
    assert_eq!(stored, (2..=11).map(|seq| (seq, true)).collect::<Vec<_>>());
    until("nothing waiting", || waiting() == 0);
    let ids: Vec<String> = all(&f.outbox.lock().unwrap()).into_iter().map(|e| e.msg_id).collect();
    assert_eq!(ids, (1..=11).map(|seq| format!("edge-01/p/{seq}")).collect::<Vec<_>>());
    drop(f.handle);
    f.writer.join();
}

#[test]
fn writes_still_refused_when_the_host_stops_are_given_up_and_told() {
    let f = fixture();
    disk_full(&f.outbox, true);
    for seq in 1..=3 {
        submit_told(&f.handle, seq, &f.told);
    }
    drop(f.handle);
    f.writer.join();
    drop(f.told);
    let outcomes: Vec<(u64, bool)> = f.outcomes.iter().collect();
    assert_eq!(outcomes, [(1, false), (2, false), (3, false)]);
}

#[test]
fn writes_waiting_for_the_disk_are_bounded_in_memory_the_oldest_given_up() {
    let f = fixture();
    let stats = f.writer.stats();
    disk_full(&f.outbox, true);
    // 80 appends of nearly 1 MiB: more than the 64 MiB kept.
    for seq in 1..=80u64 {
        let told = f.told.clone();
        let mut entry = alert("p", seq);
        entry.payload = vec![b'x'; (1 << 20) - 4096];
        f.handle
            .submit(
                vec![entry],
                Box::new(move |outcome| told.send((seq, outcome.is_ok())).unwrap()),
            )
            .unwrap();
    }
    let given_up = next_told(&f.outcomes, 16);
    assert_eq!(
        given_up,
        (1..=16).map(|seq| (seq, false)).collect::<Vec<_>>(),
        "the oldest first"
    );
    let kept = stats.waiting_bytes.load(std::sync::atomic::Ordering::Relaxed);
    assert!(kept <= 64 << 20, "{kept} bytes kept");
    disk_full(&f.outbox, false);
    let stored = next_told(&f.outcomes, 64);
    assert_eq!(stored, (17..=80).map(|seq| (seq, true)).collect::<Vec<_>>());
    drop(f.handle);
    f.writer.join();
}

/// Hold `writer` in the continuation of an append of `plugin`'s, committed:
/// it takes nothing from its queue until the sender returned is sent to.
fn hold(writer: &Writer, plugin: &str) -> mpsc::Sender<()> {
    let (started, writer_held) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    writer
        .handle()
        .submit(
            vec![alert(plugin, 1)],
            Box::new(move |_| {
                started.send(()).unwrap();
                released.recv().unwrap();
            }),
        )
        .unwrap();
    writer_held.recv().unwrap();
    release
}

#[test]
fn a_producer_with_a_budget_waits_alone_and_the_others_do_not_queue_behind_it() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Mutex::new(open(dir.path())));
    // Room in the writer's queue for the fat producer's budget and one more.
    let writer = Writer::start(outbox.clone(), 5, || {}).unwrap();
    // Hold the writer in a continuation: nothing is taken from its queue.
    let release = hold(&writer, "plug");

    // The fat producer: appends of 256 KiB, a budget of four of them.
    let fat = writer.handle().with_budget(1 << 20);
    let submitted = Arc::new(AtomicUsize::new(0));
    let fat_thread = {
        let submitted = submitted.clone();
        // Made beforehand: the submits come back to back, as a plugin's do.
        let appends: Vec<Vec<NewEntry>> = (1..=12u64)
            .map(|seq| {
                (0..4)
                    .map(|k| {
                        let mut entry = alert("fat", (seq - 1) * 4 + k + 1);
                        entry.payload = vec![b'x'; (64 << 10) - 1000];
                        entry
                    })
                    .collect()
            })
            .collect();
        std::thread::spawn(move || {
            for entries in appends {
                fat.submit(entries, Box::new(|_| {})).unwrap();
                submitted.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while submitted.load(Ordering::SeqCst) < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "the fat producer's budget took fewer than 4"
        );
        std::thread::yield_now();
    }
    // Another producer's append is taken at once: the fat one waits on its
    // budget, not in the queue everyone shares.
    let (returned, small_returned) = mpsc::channel();
    let small = writer.handle().with_budget(1 << 20);
    let small_thread = std::thread::spawn(move || {
        small.submit(vec![alert("small", 1)], Box::new(|_| {})).unwrap();
        returned.send(()).unwrap();
    });
    small_returned
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("the small producer waited behind the fat one");
    assert_eq!(
        submitted.load(Ordering::SeqCst),
        4,
        "the fat producer queued past its budget"
    );

    release.send(()).unwrap();
    fat_thread.join().unwrap();
    small_thread.join().unwrap();
    writer.join();
    let stored = all(&outbox.lock().unwrap());
    let fat_ids: Vec<String> = stored
        .iter()
        .filter(|entry| entry.plugin == "fat")
        .map(|entry| entry.msg_id.clone())
        .collect();
    assert_eq!(
        fat_ids,
        (1..=48).map(|seq| format!("edge-01/fat/{seq}")).collect::<Vec<_>>()
    );
    assert!(stored.iter().any(|entry| entry.plugin == "small"));
}

#[test]
fn a_plugin_keeps_submitting_while_one_commit_takes_long() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Mutex::new(open(dir.path())));
    let writer = Writer::start(outbox.clone(), crate::outbox::QUEUE_APPENDS, || {}).unwrap();
    // A commit that takes long (the disk's fsync): the writer is held in its
    // continuation and takes nothing from its queue meanwhile.
    let release = hold(&writer, "slow");

    // A plugin taking 10,000 readings/s a few at a time makes thousands of
    // small appends a second: 2,000 is a fifth of a second of it.
    const APPENDS: u64 = 2_000;
    let plugin = writer.handle().with_budget(crate::outbox::PRODUCER_QUEUED_MAX_BYTES);
    let submitted = Arc::new(AtomicUsize::new(0));
    let plugin_thread = {
        let submitted = submitted.clone();
        std::thread::spawn(move || {
            for seq in 1..=APPENDS {
                plugin.submit(vec![alert("p", seq)], Box::new(|_| {})).unwrap();
                submitted.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while submitted.load(Ordering::SeqCst) < APPENDS as usize {
        assert!(
            std::time::Instant::now() < deadline,
            "the plugin waited for the commit after {} appends",
            submitted.load(Ordering::SeqCst)
        );
        std::thread::yield_now();
    }
    release.send(()).unwrap();
    plugin_thread.join().unwrap();
    writer.join();
    let stored = all(&outbox.lock().unwrap());
    assert_eq!(
        stored.iter().filter(|entry| entry.plugin == "p").count(),
        APPENDS as usize
    );
}
