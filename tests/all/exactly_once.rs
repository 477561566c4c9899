//! Issue #11, item 7: upstream exactly-once without holes. `Nats-Msg-Id`
//! names the incarnation of a plugin's numbers (made at each start), so a
//! reset outbox, a cloned device or a restored backup cannot have its alerts
//! dropped as duplicates; the stream's duplicate window is configurable; what
//! a retry after the window does. (Since issue #14 an output's number is its
//! count among the plugin's outputs, stored with it: numbering cannot fail.)

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use edgewise_tests::nats::NatsServer;

use crate::device::{DEVICE, Device, WAIT, now_ms, reading};
use crate::support::{UP, cli_status, cli_status_until, collect_until, poll_until, stream_messages, subscribe_alerts};

/// One message stored upstream: its subject, `Nats-Msg-Id` and envelope.
#[derive(Debug, Clone)]
struct Stored {
    subject: String,
    msg_id: String,
    envelope: Value,
}

/// Every message of the upstream stream.
async fn stored_upstream(cloud: &NatsServer) -> Vec<Stored> {
    let client = async_nats::connect(cloud.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let Ok(mut stream) = jetstream.get_stream(UP).await else {
        return Vec::new();
    };
    stream_messages(&mut stream)
        .await
        .into_iter()
        .map(|message| Stored {
            subject: message.subject.to_string(),
            msg_id: message
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default(),
            envelope: serde_json::from_slice(&message.payload).unwrap(),
        })
        .collect()
}

/// One `urgent-low` per new sensor: publish a low reading for each of
/// `sensors`, wait for their local alerts and for the outbox to be empty
/// (every entry acknowledged by upstream, stored or dropped as a duplicate).
async fn alert_and_drain(local: &NatsServer, sensors: &[&str]) {
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    client.flush().await.unwrap();
    for sensor in sensors {
        client
            .publish(format!("sensors.cgm.{sensor}"), reading(now_ms(), 45.0))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let seen = collect_until(&mut alerts, "a local alert for each sensor", |seen| {
        let alerted: BTreeSet<&str> = seen.iter().filter_map(|(_, alert)| alert["sensor"].as_str()).collect();
        alerted.len() >= sensors.len()
    })
    .await;
    for (_, alert) in &seen {
        assert_eq!(alert["code"], "urgent-low", "{alert}");
    }
    // An alert is published locally before the outbox commits it (and
    // `alerts_out` counts it): an outbox still empty of it is not drained.
    let raised = sensors.len() as u64;
    cli_status_until(local, WAIT, "every alert committed, and the outbox empty", |s| {
        s["plugins"][0]["alerts_out"].as_u64() >= Some(raised)
            && s["upstream_connected"] == true
            && s["outbox"]["alerts"] == 0
    })
    .await;
}

/// The `<incarnation>` of `<device>/<incarnation>/<plugin>/<seq>`, checking the form.
fn incarnation(stored: &Stored) -> String {
    let parts: Vec<&str> = stored.msg_id.split('/').collect();
    assert_eq!(parts.len(), 4, "{}", stored.msg_id);
    assert_eq!(parts[0], DEVICE);
    assert!(
        parts[1].len() == 32
            && parts[1]
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()),
        "128 random bits in lowercase hex: {}",
        stored.msg_id
    );
    assert_eq!(parts[2], "glucose-monitor");
    assert_eq!(parts[3], stored.envelope["seq"].to_string(), "{}", stored.msg_id);
    parts[1].to_owned()
}

/// A device whose journal (in the outbox file) is reset (deleted), or a clone of it (a new
/// data directory, the same device id), numbers its outputs from 1 again:
/// with ids `<device>/<plugin>/<seq>` upstream dropped the new alerts as
/// duplicates inside its window. With the incarnation in the id they are stored.
async fn alerts_after_a_restart_are_stored(clone: bool) {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let mut device = Device::new(&local, Some(&cloud), "");
    device.start(&local).await;
    alert_and_drain(&local, &["a1", "a2", "a3"]).await;
    device.terminate_cleanly().await;
    let first = stored_upstream(&cloud).await;
    assert_eq!(first.len(), 3, "{first:#?}");

    if clone {
        device.edit_config(|config| config.replace("data_dir = \"data\"", "data_dir = \"clone-data\""));
    } else {
        let removed = std::fs::read_dir(device.path("data"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("outbox.sqlite3"))
            .inspect(|p| std::fs::remove_file(p).unwrap())
            .count();
        assert!(removed > 0, "no outbox (with the plugins' journal) found to delete");
    }
    device.start(&local).await;
    alert_and_drain(&local, &["b1", "b2", "b3"]).await;
    device.terminate_cleanly().await;

    let stored = stored_upstream(&cloud).await;
    let sensors: BTreeSet<&str> = stored.iter().filter_map(|s| s.envelope["sensor"].as_str()).collect();
    assert_eq!(
        sensors,
        BTreeSet::from(["cgm.a1", "cgm.a2", "cgm.a3", "cgm.b1", "cgm.b2", "cgm.b3"]),
        "every alert is stored upstream once: {stored:#?}"
    );
    assert_eq!(stored.len(), 6, "{stored:#?}");
    let ids: BTreeSet<&str> = stored.iter().map(|s| s.msg_id.as_str()).collect();
    assert_eq!(ids.len(), 6, "distinct ids: {stored:#?}");
    let incarnations: Vec<String> = stored.iter().map(incarnation).collect();
    assert_eq!(incarnations[0], incarnations[2], "one incarnation per run");
    assert_ne!(incarnations[0], incarnations[3], "a new incarnation in the next run");
    assert!(stored.iter().all(|s| s.subject.ends_with(".up.alerts.glucose-monitor")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reset_sequence_state_never_reuses_message_ids() {
    alerts_after_a_restart_are_stored(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clone_with_a_new_data_dir_never_reuses_message_ids() {
    alerts_after_a_restart_are_stored(true).await;
}

/// Copy the directory `from` (files and folders) to `to`, which must not exist.
fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A data directory restored from a backup (made while the host was
/// stopped) holds the journal's numbers as they were then: the outputs made
/// after the backup were numbered on from there, and so are the outputs made
/// after the restore. With the journal's incarnation in the id both had the
/// same ids, and upstream dropped the later alerts as duplicates inside its
/// window. The incarnation is made anew by each run of the host: the ids differ.
#[tokio::test(flavor = "multi_thread")]
async fn a_restored_backup_of_the_data_dir_never_reuses_message_ids() {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let mut device = Device::new(&local, Some(&cloud), "");
    device.start(&local).await;
    alert_and_drain(&local, &["a1"]).await;
    device.terminate_cleanly().await;
    copy_dir(&device.path("data"), &device.path("backup"));

    device.start(&local).await;
    alert_and_drain(&local, &["b1", "b2"]).await;
    device.terminate_cleanly().await;
    assert_eq!(stored_upstream(&cloud).await.len(), 3);

    std::fs::remove_dir_all(device.path("data")).unwrap();
    copy_dir(&device.path("backup"), &device.path("data"));
    device.start(&local).await;
    alert_and_drain(&local, &["c1", "c2"]).await;
    device.terminate_cleanly().await;

    let stored = stored_upstream(&cloud).await;
    let sensors: BTreeSet<&str> = stored.iter().filter_map(|s| s.envelope["sensor"].as_str()).collect();
    assert_eq!(
        sensors,
        BTreeSet::from(["cgm.a1", "cgm.b1", "cgm.b2", "cgm.c1", "cgm.c2"]),
        "every alert is stored upstream once: {stored:#?}"
    );
    assert_eq!(stored.len(), 5, "{stored:#?}");
    // The restored journal numbers on from the backup: b1 and c1 share a number.
    let seq = |sensor: &str| {
        let stored = stored.iter().find(|s| s.envelope["sensor"] == sensor).unwrap();
        (stored.envelope["seq"].as_u64().unwrap(), incarnation(stored))
    };
    assert_eq!(seq("cgm.b1").0, seq("cgm.c1").0, "{stored:#?}");
    assert_ne!(seq("cgm.b1").1, seq("cgm.c1").1, "{stored:#?}");
}

/// `[upstream] duplicate_window` is the window of the stream the host creates.
#[tokio::test(flavor = "multi_thread")]
async fn the_host_creates_the_upstream_stream_with_the_configured_duplicate_window() {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let mut device = Device::new(&local, Some(&cloud), "");
    device.edit_config(|config| {
        config.replace(
            "create_stream = true\n",
            "create_stream = true\nduplicate_window = \"7m\"\n",
        )
    });
    device.start(&local).await;
    cli_status_until(&local, WAIT, "connected upstream", |s| s["upstream_connected"] == true).await;
    let jetstream = async_nats::jetstream::new(async_nats::connect(cloud.url()).await.unwrap());
    let window = poll_until("the upstream stream", WAIT, || async {
        match jetstream.get_stream(UP).await {
            Ok(mut stream) => Ok(stream.info().await.unwrap().config.duplicate_window),
            Err(error) => Err(error.to_string()),
        }
    })
    .await;
    assert_eq!(window, Duration::from_secs(7 * 60));
    device.terminate_cleanly().await;
}

/// What a retry after the window does. The cloud stream (made by the test)
/// never acknowledges (`no_ack`) and forgets ids after 1 s: the host retries
/// the entry, so it is stored again; every copy carries the same
/// `Nats-Msg-Id` and envelope `seq` (what a consumer deduplicates on), and the
/// entry stays in the outbox, never acknowledged.
#[tokio::test(flavor = "multi_thread")]
async fn an_unacknowledged_entry_retried_after_the_window_is_stored_again_with_the_same_id() {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let jetstream = async_nats::jetstream::new(async_nats::connect(cloud.url()).await.unwrap());
    jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: UP.into(),
            subjects: vec![format!("edgewise.{DEVICE}.up.>")],
            no_ack: true,
            duplicate_window: Duration::from_secs(1),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut device = Device::new(&local, Some(&cloud), "");
    let client = device.start(&local).await;
    client
        .publish("sensors.cgm.never-acked", reading(now_ms(), 45.0))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let copies = poll_until("the entry retried", Duration::from_secs(60), || async {
        let stored = stored_upstream(&cloud).await;
        if stored.len() >= 2 {
            Ok(stored)
        } else {
            Err(format!("{stored:#?}"))
        }
    })
    .await;
    let first = &copies[0];
    assert_eq!(first.envelope["sensor"], "cgm.never-acked");
    for copy in &copies {
        assert_eq!(copy.msg_id, first.msg_id, "{copies:#?}");
        assert_eq!(copy.envelope["seq"], first.envelope["seq"], "{copies:#?}");
        assert_eq!(copy.envelope, first.envelope);
    }
    let status = cli_status(&local);
    assert_eq!(
        status["outbox"]["alerts"], 1,
        "never acknowledged, still queued: {status}"
    );
    device.terminate_cleanly().await;
}
