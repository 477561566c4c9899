//! A plugin's state survives a restart of the host and `kill -9` (issue
//! #14): the host logs every input in the plugin's journal (the outbox file)
//! and saves its snapshot there every 256 inputs (later for a large state)
//! and at shutdown; the next run starts the plugin from the snapshot and
//! gives it the inputs logged after it again. A saved state that cannot be read, or that the plugin
//! refuses, is moved aside (kept) and reported; one whose start fails for a reason that may pass
//! (a CPU deadline) is tried again, and moved aside only after 3 such failures in a row.
//!
//! faulty-v02 passes readings through (`fail = pass`), each answered with a
//! `seen` alert whose value is the readings it has counted: its state.

use edgewise_tests::nats::NatsServer;

use crate::device::{Device, now_ms};
use crate::hostile_plugins::V0_2;
use crate::recovery::give;
use crate::support::{collect_until, plugin, status_until};

fn device(local: &NatsServer) -> Device {
    Device::new(local, None, &V0_2.plugin_table("pass", "", ""))
}

/// The outbox file of a stopped `device`, opened directly.
fn database(device: &Device) -> rusqlite::Connection {
    rusqlite::Connection::open(device.path("data/outbox.sqlite3")).unwrap()
}

/// (position of the last input in it, reason) of each state moved aside.
fn states_aside(device: &Device) -> Vec<(i64, String)> {
    let db = database(device);
    let mut select = db
        .prepare("SELECT position, reason FROM journal_states_aside WHERE plugin = 'faulty-v02' ORDER BY id")
        .unwrap();
    select
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The position of the saved state, if there is one.
fn saved_position(device: &Device) -> Option<i64> {
    database(device)
        .query_row(
            "SELECT position FROM journal_states WHERE plugin = 'faulty-v02'",
            [],
            |row| row.get(0),
        )
        .ok()
}

/// The message of the next `plugin-degraded` alert among `alerts`.
async fn degraded_message(alerts: &mut async_nats::Subscriber, what: &str) -> String {
    let seen = collect_until(alerts, what, |got| {
        got.iter().any(|(_, alert)| alert["code"] == "plugin-degraded")
    })
    .await;
    let report = seen
        .iter()
        .find(|(_, alert)| alert["code"] == "plugin-degraded")
        .unwrap();
    report.1["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_restart_keeps_the_plugins_state() {
    let local = NatsServer::start();
    let mut device = device(&local);
    let (client, mut alerts) = device.start_watching(&local, V0_2.name).await;
    assert_eq!(give(&client, &mut alerts, 3).await, [1, 2, 3]);
    device.terminate_cleanly().await;
    assert_eq!(
        saved_position(&device),
        Some(3),
        "saved at shutdown, after the third input"
    );

    device.start_with(&client).await;
    assert_eq!(
        give(&client, &mut alerts, 1).await,
        [4],
        "counted on from the saved state"
    );
    device.terminate_cleanly().await;
}

/// Give faulty-v02 (configured with `extra` after its table) 300 readings,
/// each answered, `kill -9` the host once they are committed, start it
/// again: what it counts for the next reading. The snapshot of the 256th
/// input is the last saved one.
async fn count_after_kill_at_300(extra: &str) -> u64 {
    let local = NatsServer::start();
    let table = format!("{}{extra}", V0_2.plugin_table("pass", "", ""));
    let mut device = Device::new(&local, None, &table);
    let (client, mut alerts) = device.start_watching(&local, V0_2.name).await;
    give(&client, &mut alerts, 300).await;
    // Every input is durable once its outputs are counted (committed together).
    status_until(&client, "the 300 outputs committed", |status| {
        plugin(status, V0_2.name)["alerts_out"].as_u64() >= Some(300)
    })
    .await;
    device.kill();
    assert_eq!(saved_position(&device), Some(256), "the snapshot of the 256th input");
    device.start_with(&client).await;
    let counted = give(&client, &mut alerts, 1).await;
    device.terminate_cleanly().await;
    counted[0]
}

/// Give faulty-v02 (configured with `config`) `count` readings, each its
/// own input and answered, and `kill -9` the host once they are committed:
/// the position of its last saved state, and what it counts for the next
/// reading after a start.
async fn saved_and_counted_after_kill(config: &str, count: u64) -> (Option<i64>, u64, u64) {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, &V0_2.plugin_table("pass", config, ""));
    let (client, mut alerts) = device.start_watching(&local, V0_2.name).await;
    give(&client, &mut alerts, count).await;
    // Each state is committed after the outputs before it, with the outputs of its input.
    let status = status_until(&client, "every output committed", |status| {
        plugin(status, V0_2.name)["alerts_out"].as_u64() >= Some(count)
    })
    .await;
    let snapshots_saved = plugin(&status, V0_2.name)["snapshots_saved"].as_u64().unwrap();
    device.kill();
    let saved = saved_position(&device);
    device.start_with(&client).await;
    let counted = give(&client, &mut alerts, 1).await;
    device.terminate_cleanly().await;
    (saved, snapshots_saved, counted[0])
}

/// A large state is saved less often: after the first save, not every 256
/// inputs but once the inputs since hold a quarter of its bytes (flash
/// writes: a 9 MB state written every 256 readings wears a device out). A
/// state of 64 KiB waits for 322 one-reading inputs of this sensor (51
/// bytes each, a quarter of it), the save at 578; one of 8 bytes is saved
/// every 256 as before. `kill -9` loses nothing either way: the inputs
/// logged since the save are given again.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_state_is_saved_less_often_and_kill_9_still_loses_nothing() {
    let large = "snapshot = \"padded\"\nsnapshot_bytes = 65536\n";
    assert_eq!(
        saved_and_counted_after_kill(large, 540).await,
        (Some(256), 1, 541),
        "the large state saved at the 256th input only"
    );
    assert_eq!(
        saved_and_counted_after_kill("", 540).await,
        (Some(512), 2, 541),
        "the small state saved every 256 inputs"
    );
    // Not never: by 860 inputs the large state has been saved again.
    let (saved, snapshots_saved, counted) = saved_and_counted_after_kill(large, 860).await;
    assert!(saved.is_some_and(|at| (540..860).contains(&at)), "{saved:?}");
    assert_eq!(snapshots_saved, 2, "the status counts the saves");
    assert_eq!(counted, 861);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_kill_9_the_plugin_resumes_from_its_snapshot_and_the_inputs_logged_since() {
    // The 44 inputs after the snapshot are given again from the log: nothing forgotten.
    assert_eq!(count_after_kill_at_300("").await, 301);
}

/// The same with `[outbox] input_log = false`: the plugin resumes from its
/// last saved state only, the inputs after it forgotten. (What the log adds.)
#[tokio::test(flavor = "multi_thread")]
async fn without_the_input_log_kill_9_forgets_the_inputs_after_the_saved_state() {
    assert_eq!(count_after_kill_at_300("[outbox]\ninput_log = false\n").await, 257);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saved_state_that_cannot_be_read_is_moved_aside_reported_and_the_log_gives_the_state_back() {
    let local = NatsServer::start();
    let mut device = device(&local);
    let (client, mut alerts) = device.start_watching(&local, V0_2.name).await;
    give(&client, &mut alerts, 2).await;
    device.terminate_cleanly().await;
    // One bit of the sealed state flipped.
    let db = database(&device);
    let mut sealed: Vec<u8> = db
        .query_row(
            "SELECT ciphertext FROM journal_states WHERE plugin = 'faulty-v02'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    sealed[0] ^= 0x01;
    db.execute(
        "UPDATE journal_states SET ciphertext = ?1 WHERE plugin = 'faulty-v02'",
        [sealed],
    )
    .unwrap();
    drop(db);

    device.start_with(&client).await;
    let message = degraded_message(&mut alerts, "the report of the unreadable state").await;
    assert!(message.contains("its saved state cannot be read"), "{message}");
    assert_eq!(
        give(&client, &mut alerts, 1).await,
        [3],
        "the logged inputs since the first give the state back"
    );
    let status = status_until(&client, "the state lost, counted", |status| {
        plugin(status, V0_2.name)["state_lost"] == 1
    })
    .await;
    assert_eq!(plugin(&status, V0_2.name)["state"], "running");
    device.terminate_cleanly().await;
    let aside = states_aside(&device);
    assert_eq!(aside.len(), 1, "moved aside: {aside:?}");
    assert!(aside[0].1.contains("does not open"), "{aside:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saved_state_the_new_configuration_refuses_is_kept_aside_and_the_plugin_starts_afresh() {
    let local = NatsServer::start();
    let mut device = device(&local);
    let (client, mut alerts) = device.start_watching(&local, V0_2.name).await;
    give(&client, &mut alerts, 2).await;
    device.terminate_cleanly().await;
    // As a new version that cannot take the old state would: its `init`
    // refuses any snapshot.
    device.edit_config(|config| config.replace("fail = \"pass\"\n", "fail = \"pass\"\nresume = \"refuse\"\n"));

    device.start_with(&client).await;
    let message = degraded_message(&mut alerts, "the report of the refused state").await;
    assert!(message.contains("refused its saved state"), "{message}");
    assert_eq!(give(&client, &mut alerts, 1).await, [1], "afresh");
    // At once: the refusal is not retried as a failure (a refusal comes
    // again whenever the same state is given).
    let status = status_until(&client, "the state lost, counted", |status| {
        plugin(status, V0_2.name)["state_lost"] == 1
    })
    .await;
    let faulty = plugin(&status, V0_2.name);
    assert_eq!(faulty["errors"], 0, "{faulty}");
    assert_eq!(faulty["state"], "running", "{faulty}");
    device.terminate_cleanly().await;
    // Kept, for a version that can take it.
    let aside = states_aside(&device);
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(aside[0].0, 2, "the state after the second input");
    assert!(aside[0].1.contains("refused"), "{aside:?}");
}

/// The `[clock]` table of a simulated clock at real speed starting at
/// `start_ms`: a test then knows what the plugin reads at its start, however
/// long the host took to get there.
fn clock_from(start_ms: i64) -> String {
    let start = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(start_ms) * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    format!("[clock]\nstart = \"{start}\"\nspeed = 1.0\n")
}

/// faulty-v02 counts 3 readings, its state is saved at a clean stop, 2 more
/// are logged after it and the host is killed: the saved state (at 3) and
/// the inputs since (4, 5) are what the next start recovers. The device is
/// stopped, with the client and the alerts of faulty-v02.
async fn state_at_3_and_2_inputs_logged(local: &NatsServer) -> (Device, async_nats::Client, async_nats::Subscriber) {
    let mut device = device(local);
    let (client, mut alerts) = device.start_watching(local, V0_2.name).await;
    assert_eq!(give(&client, &mut alerts, 3).await, [1, 2, 3]);
    device.terminate_cleanly().await;
    device.start_with(&client).await;
    assert_eq!(give(&client, &mut alerts, 2).await, [4, 5]);
    status_until(&client, "the 2 outputs committed", |status| {
        plugin(status, V0_2.name)["alerts_out"].as_u64() >= Some(2)
    })
    .await;
    device.kill();
    assert_eq!(saved_position(&device), Some(3), "the state saved at the clean stop");
    (device, client, alerts)
}

/// A start from the saved state that runs past its CPU deadline once (a
/// loaded device at boot) is a failure like any other: supervised, and the
/// next attempt starts from the same state and the inputs logged since. The
/// state is not lost for a one-off overrun.
///
/// faulty-v02's `init` loops when given a snapshot while the clock reads
/// before `resume_loop_until`; the host clock is simulated from a known
/// start, 4 s before that time: the first attempt (at the host's start)
/// loops, and the next comes after the 1 s deadline and a 4 s backoff, past
/// it.
#[tokio::test(flavor = "multi_thread")]
async fn a_start_from_the_saved_state_past_its_deadline_once_is_retried_from_the_same_state() {
    let local = NatsServer::start();
    let (mut device, client, mut alerts) = state_at_3_and_2_inputs_logged(&local).await;
    let start_ms = now_ms();
    device.edit_config(|config| {
        let config = config.replace(
            "fail = \"pass\"\n",
            &format!("fail = \"pass\"\nresume_loop_until = \"{}\"\n", start_ms + 4_000),
        );
        format!(
            "{config}\n[supervisor]\nbackoff_initial = \"4s\"\n{}",
            clock_from(start_ms)
        )
    });

    device.start_with(&client).await;
    let message = degraded_message(&mut alerts, "the report of the failed start").await;
    assert!(message.contains("deadline"), "{message}");
    assert_eq!(
        give(&client, &mut alerts, 1).await,
        [6],
        "counted on from the saved state and the inputs logged since"
    );
    let status = status_until(&client, "the plugin running again", |status| {
        plugin(status, V0_2.name)["state"] == "running"
    })
    .await;
    let faulty = plugin(&status, V0_2.name);
    assert_eq!(faulty["state_lost"], 0, "{faulty}");
    assert!(faulty["failures"]["deadline"].as_u64() >= Some(1), "{faulty}");
    device.terminate_cleanly().await;
    assert_eq!(states_aside(&device), [], "nothing moved aside");
}

/// A start from the saved state that never gets past its deadline does not
/// hold the plugin down for ever: after 3 attempts in a row the state is
/// moved aside (kept, reported) and the plugin starts afresh.
#[tokio::test(flavor = "multi_thread")]
async fn a_start_from_the_saved_state_past_its_deadline_every_time_sets_it_aside_after_3_attempts() {
    let local = NatsServer::start();
    let (mut device, client, mut alerts) = state_at_3_and_2_inputs_logged(&local).await;
    device.edit_config(|config| {
        let config = config.replace(
            "fail = \"pass\"\n",
            &format!("fail = \"pass\"\nresume_loop_until = \"{}\"\n", i64::MAX),
        );
        format!("{config}\n[supervisor]\nbackoff_initial = \"50ms\"\n")
    });

    device.start_with(&client).await;
    assert_eq!(give(&client, &mut alerts, 1).await, [1], "afresh");
    let status = status_until(&client, "the state lost, counted", |status| {
        plugin(status, V0_2.name)["state_lost"] == 1
    })
    .await;
    let faulty = plugin(&status, V0_2.name);
    // The first two supervised, the third sets the state aside.
    assert_eq!(faulty["failures"]["deadline"], 2, "{faulty}");
    assert_eq!(faulty["state"], "running", "{faulty}");
    device.terminate_cleanly().await;
    let aside = states_aside(&device);
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(aside[0].0, 3, "the state saved at the clean stop");
    assert!(aside[0].1.contains("3 times in a row"), "{aside:?}");
}
