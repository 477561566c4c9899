//! Damaged storage never stops alerting: a plugin whose journal row is
//! damaged is refused (reported) and the others run; a damaged host sequence
//! file starts a new incarnation; an outbox row whose columns have the wrong
//! types is skipped and counted like an undecryptable one, and the entries
//! behind it are delivered.

use serde_json::Value;

use edgewise_tests::nats::NatsServer;

use crate::device::{Device, WAIT, now_ms, reading};
use crate::support::{assert_contains, cli_status_until, collect_until, plugin, status_until, upstream_alerts};

/// The outbox file of a stopped `device`, opened directly.
fn database(device: &Device) -> rusqlite::Connection {
    rusqlite::Connection::open(device.path("data/outbox.sqlite3")).unwrap()
}

/// The first alert with `code` among `seen`.
fn first_with<'a>(seen: &'a [(String, Value)], code: &str) -> &'a Value {
    &seen.iter().find(|(_, alert)| alert["code"] == code).unwrap().1
}

fn has(seen: &[(String, Value)], code: &str) -> bool {
    seen.iter().any(|(_, alert)| alert["code"] == code)
}

/// A journal row of threshold with a value its check refuses (a negative
/// output number): threshold is refused with the reason, in the status and
/// in a critical `plugin-degraded` host alert; glucose-monitor still raises
/// its urgent-low. Before, start-up failed and the device exited 1.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_whose_journal_row_is_damaged_is_refused_and_the_others_alert() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "[[plugins]]\nbundle = \"threshold.wasm\"\n");
    device.start(&local).await;
    device.terminate_cleanly().await;
    let changed = database(&device)
        .execute(
            "UPDATE journal_plugins SET high_seq = -1 WHERE plugin = 'threshold'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1, "threshold has a journal row after its first run");

    let (client, mut alerts) = device.start_watching(&local, ">").await;
    client.publish("sensors.cgm.p1", reading(now_ms(), 45.0)).await.unwrap();
    let seen = collect_until(&mut alerts, "the urgent-low and the refusal", |seen| {
        has(seen, "urgent-low") && has(seen, "plugin-degraded")
    })
    .await;
    assert_eq!(first_with(&seen, "urgent-low")["plugin"], "glucose-monitor");
    let refusal = first_with(&seen, "plugin-degraded");
    assert_eq!(refusal["plugin"], "_host", "{refusal}");
    assert_eq!(refusal["severity"], "critical", "{refusal}");
    let message = refusal["message"].as_str().unwrap();
    assert!(
        message.contains("threshold") && message.contains("negative output number"),
        "{message}"
    );
    let status = status_until(&client, "threshold shown refused", |status| {
        crate::support::find_plugin(status, "threshold").is_some_and(|p| p["state"] == "refused")
    })
    .await;
    let threshold = plugin(&status, "threshold");
    assert!(
        threshold["last_error"]
            .as_str()
            .unwrap()
            .contains("negative output number"),
        "{status}"
    );
    assert_eq!(plugin(&status, "glucose-monitor")["state"], "running", "{status}");
    device.terminate_cleanly().await;
}

/// Garbage in the host's sequence file (`data/seq-_host`): the host starts a
/// new incarnation of its numbers (no number can be reused under a name no
/// earlier alert had), keeps the damaged file aside, and alerts as before:
/// a plugin's urgent-low, and the host's own alerts, numbered and stored.
/// It says so with a critical `host-degraded`. Before, start-up failed and
/// the device exited 1.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_host_sequence_file_starts_a_new_incarnation_and_alerting_goes_on() {
    let local = NatsServer::start();
    // A bundle that is not one: refused at every start, with a host alert.
    let mut device = Device::new(&local, None, "[[plugins]]\nbundle = \"broken.wasm\"\n");
    std::fs::write(device.path("broken.wasm"), b"not a bundle").unwrap();
    let (client, mut alerts) = device.start_watching(&local, ">").await;
    let seen = collect_until(&mut alerts, "the first refusal", |seen| has(seen, "plugin-degraded")).await;
    let first_seq = first_with(&seen, "plugin-degraded")["seq"].as_u64().unwrap();
    assert!(first_seq >= 1);
    device.terminate_cleanly().await;
    let sequence = device.path("data/seq-_host");
    let before = std::fs::read_to_string(&sequence).unwrap();
    std::fs::write(&sequence, "garbage\n").unwrap();

    device.start_with(&client).await;
    client.publish("sensors.cgm.p1", reading(now_ms(), 45.0)).await.unwrap();
    let seen = collect_until(
        &mut alerts,
        "the urgent-low, the refusal again and the renewal",
        |seen| has(seen, "urgent-low") && has(seen, "plugin-degraded") && has(seen, "host-degraded"),
    )
    .await;
    // Said, not only logged: someone should look at that disk.
    let renewed = first_with(&seen, "host-degraded");
    assert_eq!(renewed["severity"], "critical", "{renewed}");
    let message = renewed["message"].as_str().unwrap();
    assert_contains(message, "seq-_host");
    assert_contains(message, "new incarnation");
    let refusal = first_with(&seen, "plugin-degraded");
    assert_eq!(refusal["plugin"], "_host", "{refusal}");
    assert!(
        refusal["seq"].as_u64().unwrap() >= 1,
        "numbered, so stored for upstream: {refusal}"
    );
    // A new incarnation, written; the damaged file kept for the operator.
    let after = std::fs::read_to_string(&sequence).unwrap();
    let incarnation = |state: &str| state.split_whitespace().next().unwrap_or("").to_owned();
    assert_eq!(incarnation(&after).len(), 32, "{after}");
    assert_ne!(incarnation(&after), incarnation(&before), "{after}");
    assert_eq!(
        std::fs::read_to_string(device.path("data/seq-_host.damaged")).unwrap(),
        "garbage\n"
    );
    device.terminate_cleanly().await;
}

/// An outbox row whose `nonce` is text (the file damaged or edited): that
/// row is skipped and counted as undecryptable, the two entries behind it
/// are delivered. Before, every delivery round failed on it ("Invalid column
/// type Text") and nothing went upstream.
#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_row_with_a_wrong_column_type_is_skipped_and_the_rest_are_delivered() {
    let local = NatsServer::start();
    let mut cloud = NatsServer::start_with_jetstream();
    cloud.stop();
    let mut device = Device::new(&local, Some(&cloud), "");
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    for sensor in ["a", "b", "c"] {
        client
            .publish(format!("sensors.cgm.{sensor}"), reading(now_ms(), 45.0))
            .await
            .unwrap();
        // One at a time: the entries are stored in this order.
        collect_until(&mut alerts, "the urgent-low", |seen| has(seen, "urgent-low")).await;
    }
    cli_status_until(&local, WAIT, "the three alerts kept in the outbox", |s| {
        s["outbox"]["alerts"] == 3
    })
    .await;
    device.terminate_cleanly().await;
    let changed = database(&device)
        .execute(
            "UPDATE entries SET nonce = 'x' WHERE id = (SELECT min(id) FROM entries WHERE plugin = 'glucose-monitor')",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);

    cloud.start_again();
    device.start_with(&client).await;
    let upstream = upstream_alerts(&cloud, 2).await;
    let mut sensors: Vec<&str> = upstream.iter().map(|(_, m)| m["sensor"].as_str().unwrap()).collect();
    sensors.sort();
    assert_eq!(sensors, ["cgm.b", "cgm.c"], "the two behind the damaged row");
    let status = status_until(&client, "the damaged row counted", |status| {
        status["outbox"]["dropped"]["undecryptable"] == 1
    })
    .await;
    assert_eq!(
        status["outbox"]["alerts"], 1,
        "the damaged row is left in place: {status}"
    );
    device.terminate_cleanly().await;
}
