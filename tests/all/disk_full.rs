//! A full disk never stops local alerting (issue #14, item 5): with the data
//! directory on a small tmpfs filled to the last byte, alerts still reach the
//! local bus at once, the status shows what waits for the disk, and once
//! space returns the host stores it and forwards it by itself: nothing lost.
//!
//! Mounting a tmpfs needs root (CI runs as root); the test says so if the
//! mount fails rather than pass without its disk.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use edgewise_tests::nats::NatsServer;

use crate::device::{DEVICE, Device, WAIT, now_ms, reading};
use crate::support::{
    assert_contains, collect_until, host_status, next_where, plugin, publish_acked, status_until, subscribe_alerts,
    upstream_alerts, upstream_alerts_where,
};

/// A tmpfs of `size` mounted on `path` until dropped.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(path).unwrap();
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "this test needs to mount a tmpfs (root): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Tmpfs { path: path.to_owned() }
    }

    /// Mount it again with `options` (`ro`: read-only; `rw`: writable).
    fn remount(&self, options: &str) {
        let output = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.path)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "remount {options}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Fill what is left with one file, until the disk refuses.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while file.write_all(&block).is_ok() {}
        while file.write_all(&block[..1]).is_ok() {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn urgent_lows(seen: &[(String, Value)]) -> Vec<&str> {
    seen.iter()
        .filter(|(_, alert)| alert["code"] == "urgent-low")
        .map(|(_, alert)| alert["sensor"].as_str().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_never_stops_local_alerts_and_the_host_catches_up_when_space_returns() {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let mut device = Device::new(&local, Some(&cloud), "");
    let disk = Tmpfs::mount(&device.path("data"), "8m");
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    let mut host_alerts = subscribe_alerts(&client, "_host").await;

    client
        .publish("sensors.cgm.before", reading(now_ms(), 45.0))
        .await
        .unwrap();
    collect_until(&mut alerts, "the first urgent-low", |seen| {
        urgent_lows(seen) == ["cgm.before"]
    })
    .await;
    upstream_alerts(&cloud, 1).await;

    let filler = disk.fill();
    let publish = |sensor: &'static str| {
        let client = client.clone();
        async move {
            let subject = format!("sensors.cgm.{sensor}");
            client.publish(subject, reading(now_ms(), 45.0)).await.unwrap();
        }
    };
    let status = three_alerts_on_a_full_disk(&client, &mut alerts, publish).await;
    assert_eq!(plugin(&status, "glucose-monitor")["state"], "running", "{status}");
    // Said loudly on the local bus: nothing reaches the cloud meanwhile,
    // and past 64 MiB waiting the oldest would be given up.
    let seen = collect_until(&mut host_alerts, "the host to say the disk refuses writes", |seen| {
        seen.iter().any(|(_, alert)| alert["code"] == "host-degraded")
    })
    .await;
    let (_, told) = seen.iter().find(|(_, alert)| alert["code"] == "host-degraded").unwrap();
    assert_eq!(told["severity"], "critical", "{told}");
    assert_contains(told["message"].as_str().unwrap(), "refuses writes");

    // Stored and forwarded: the cloud gets the alerts made while the disk
    // was full, and the one after, each once.
    let wanted = ["cgm.before", "cgm.full-1", "cgm.full-2", "cgm.full-3", "cgm.after"];
    space_returns(&filler, &client, &mut alerts, &cloud, &wanted).await;
    device.terminate().await;
}

/// Publish (with `publish`) an urgent-low for three sensors while the disk
/// is full: they arrive locally at once, the status shows them waiting for
/// the disk and nothing failed; the status then.
async fn three_alerts_on_a_full_disk<F, Published>(
    client: &async_nats::Client,
    alerts: &mut async_nats::Subscriber,
    publish: F,
) -> Value
where
    F: Fn(&'static str) -> Published,
    Published: std::future::Future<Output = ()>,
{
    for sensor in ["full-1", "full-2", "full-3"] {
        publish(sensor).await;
    }
    let seen = collect_until(alerts, "urgent-lows while the disk is full", |seen| {
        urgent_lows(seen).len() == 3
    })
    .await;
    assert_eq!(urgent_lows(&seen), ["cgm.full-1", "cgm.full-2", "cgm.full-3"]);
    let status = status_until(client, "what waits for the disk, shown", |status| {
        status["outbox"]["waiting_for_disk"].as_u64().unwrap_or(0) >= 3
    })
    .await;
    assert_eq!(plugin(&status, "glucose-monitor")["outbox_failures"], 0, "{status}");
    status
}

/// Free the disk (remove `filler`), publish an urgent-low for the last
/// sensor of `wanted` and wait for it locally, then wait until the
/// urgent-lows upstream are those of `wanted`, each once, in order.
async fn space_returns(
    filler: &Path,
    client: &async_nats::Client,
    alerts: &mut async_nats::Subscriber,
    cloud: &NatsServer,
    wanted: &[&str],
) {
    std::fs::remove_file(filler).unwrap();
    let after = wanted[wanted.len() - 1];
    client
        .publish(format!("sensors.{after}"), reading(now_ms(), 45.0))
        .await
        .unwrap();
    collect_until(alerts, "the urgent-low after space returned", |seen| {
        urgent_lows(seen) == [after]
    })
    .await;
    let upstream = urgent_lows_upstream_until(cloud, wanted).await;
    assert_eq!(upstream, wanted, "each once, in order");
}

/// With readings from a JetStream stream, a full disk neither holds up local
/// alerts (the consumer does not wait for one batch's outputs to be stored
/// before it takes the next) nor loses anything: the messages are
/// acknowledged only once their outputs are stored. Before, the outputs made
/// while the disk was full were failed at once; the stream delivered their
/// messages again, the worker recognised them as given already and
/// acknowledged them: their alerts never reached the cloud.
#[tokio::test(flavor = "multi_thread")]
async fn with_jetstream_input_a_full_disk_delays_acknowledgements_and_loses_nothing() {
    jetstream_input_on_a_full_disk(None).await;
}

/// The stream delivers a message again when its acknowledgement is late (the
/// consumer's ack wait: 30 s by default, 1 s here). One delivered again while
/// its first delivery's outputs still wait for the disk is known as given
/// already; it too is acknowledged only once what it made is stored (before,
/// at once: a crash then lost those outputs, and nothing would bring them
/// back).
#[tokio::test(flavor = "multi_thread")]
async fn a_message_delivered_again_while_its_outputs_wait_for_the_disk_is_acknowledged_once_they_are_stored() {
    jetstream_input_on_a_full_disk(Some(Duration::from_secs(1))).await;
}

/// The server delivers at most the consumer's `max_ack_pending` messages
/// unacknowledged (1000 unless set; 4 here, set by an operator who made the
/// consumer). Messages wait for their outputs to be stored before they are
/// acknowledged, so on a full disk the stream stopped delivering after that
/// many: the next patient's urgent-low was never raised, locally either.
/// Now the oldest waiting acknowledgements are given early, reported, so
/// readings keep flowing; their outputs still wait in memory for the disk.
#[tokio::test(flavor = "multi_thread")]
async fn with_jetstream_input_a_full_disk_does_not_stop_local_alerts_at_the_consumers_ack_pending_limit() {
    let local = NatsServer::start_with_jetstream();
    let cloud = NatsServer::start_with_jetstream();
    let jetstream = async_nats::jetstream::new(async_nats::connect(local.url()).await.unwrap());
    let sensors = crate::support::create_sensors_stream(&jetstream).await;
    let config = async_nats::jetstream::consumer::pull::Config {
        max_ack_pending: 4,
        ..glucose_monitor_consumer()
    };
    sensors.create_consumer(config).await.unwrap();
    let (mut device, disk) = jetstream_device_on_a_tmpfs(&local, &cloud);
    let (_client, mut alerts) = device.start_watching(&local, ">").await;
    let publish = |sensor: String| {
        let jetstream = jetstream.clone();
        async move { publish_acked(&jetstream, format!("sensors.cgm.{sensor}"), reading(now_ms(), 45.0)).await }
    };
    publish("before".to_owned()).await;
    collect_until(&mut alerts, "the first urgent-low", |seen| {
        urgent_lows(seen) == ["cgm.before"]
    })
    .await;
    urgent_lows_upstream_until(&cloud, &["cgm.before"]).await;

    let filler = disk.fill();
    let full: Vec<String> = (1..=10).map(|k| format!("full-{k}")).collect();
    for sensor in &full {
        publish(sensor.clone()).await;
    }
    let seen = collect_until(&mut alerts, "ten urgent-lows while the disk is full", |seen| {
        urgent_lows(seen).len() == 10
    })
    .await;
    let expected: Vec<String> = full.iter().map(|sensor| format!("cgm.{sensor}")).collect();
    assert_eq!(urgent_lows(&seen), expected);
    let early = seen
        .iter()
        .filter(|(_, alert)| alert["code"] == "plugin-degraded")
        .filter_map(|(_, alert)| alert["message"].as_str())
        .find(|message| message.contains("acknowledged before"))
        .map(str::to_owned);
    let early = match early {
        Some(message) => message,
        None => next_where(&mut alerts, "the early acknowledgements raised", |_, alert| {
            alert["code"] == "plugin-degraded"
                && alert["message"].as_str().unwrap_or("").contains("acknowledged before")
        })
        .await["message"]
            .as_str()
            .unwrap()
            .to_owned(),
    };
    assert!(early.contains("`glucose-monitor`"), "{early}");

    // Space returns: the outputs kept in memory are stored and sent, each
    // once, in order; every message is acknowledged.
    std::fs::remove_file(&filler).unwrap();
    let mut wanted = vec!["cgm.before".to_owned()];
    wanted.extend(expected);
    let wanted: Vec<&str> = wanted.iter().map(String::as_str).collect();
    assert_eq!(
        urgent_lows_upstream_until(&cloud, &wanted).await,
        wanted,
        "each once, in order"
    );
    all_acknowledged(&sensors).await;
    device.terminate().await;
}

/// The JetStream full-disk scenario; with `ack_wait`, the device's consumer
/// is made beforehand with that ack wait, and the messages of the alerts made
/// while the disk is full must be delivered again, and stay unacknowledged,
/// before space returns.
async fn jetstream_input_on_a_full_disk(ack_wait: Option<Duration>) {
    let local = NatsServer::start_with_jetstream();
    let cloud = NatsServer::start_with_jetstream();
    let jetstream = async_nats::jetstream::new(async_nats::connect(local.url()).await.unwrap());
    let sensors = crate::support::create_sensors_stream(&jetstream).await;
    if let Some(ack_wait) = ack_wait {
        // The host takes the durable consumer it finds under its name.
        let config = async_nats::jetstream::consumer::pull::Config {
            ack_wait,
            ..glucose_monitor_consumer()
        };
        sensors.create_consumer(config).await.unwrap();
    }
    let (mut device, disk) = jetstream_device_on_a_tmpfs(&local, &cloud);
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    let publish = |sensor: &str| {
        let subject = format!("sensors.cgm.{sensor}");
        let jetstream = jetstream.clone();
        async move { publish_acked(&jetstream, subject, reading(now_ms(), 45.0)).await }
    };
    publish("before").await;
    collect_until(&mut alerts, "the first urgent-low", |seen| {
        urgent_lows(seen) == ["cgm.before"]
    })
    .await;
    urgent_lows_upstream_until(&cloud, &["cgm.before"]).await;

    let filler = disk.fill();
    let publish_full = |sensor: &'static str| {
        let publish = publish(sensor);
        async move {
            publish.await;
        }
    };
    three_alerts_on_a_full_disk(&client, &mut alerts, publish_full).await;
    if ack_wait.is_some() {
        crate::support::poll_until("the waiting messages delivered again", crate::device::WAIT, || {
            let sensors = sensors.clone();
            async move {
                let consumer = consumer_info(&sensors).await;
                match consumer.num_redelivered >= 3 {
                    true => Ok(()),
                    false => Err(format!("{consumer:?}")),
                }
            }
        })
        .await;
    }
    let consumer = consumer_info(&sensors).await;
    assert!(
        consumer.num_ack_pending >= 3,
        "not acknowledged before stored: {consumer:?}"
    );

    std::fs::remove_file(&filler).unwrap();
    let wanted = ["cgm.before", "cgm.full-1", "cgm.full-2", "cgm.full-3"];
    let upstream = urgent_lows_upstream_until(&cloud, &wanted).await;
    assert_eq!(upstream, wanted, "each once, in order");
    all_acknowledged(&sensors).await;
    device.terminate().await;
}

/// glucose-monitor's durable consumer as the device names it (the host takes
/// the one it finds under that name), for a test to make beforehand.
fn glucose_monitor_consumer() -> async_nats::jetstream::consumer::pull::Config {
    async_nats::jetstream::consumer::pull::Config {
        durable_name: Some(format!("edgewise-{DEVICE}-glucose-monitor")),
        filter_subjects: vec!["sensors.cgm.>".to_owned()],
        ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
        ..Default::default()
    }
}

/// A device reading the `SENSORS` stream, its data directory on an 8 MiB tmpfs.
fn jetstream_device_on_a_tmpfs(local: &NatsServer, cloud: &NatsServer) -> (Device, Tmpfs) {
    let device = Device::new(
        local,
        Some(cloud),
        "[ingest]\nsource = \"jetstream\"\nstream = \"SENSORS\"\n",
    );
    let disk = Tmpfs::mount(&device.path("data"), "8m");
    (device, disk)
}

/// Wait until the stream's consumer has every message acknowledged.
async fn all_acknowledged(sensors: &async_nats::jetstream::stream::Stream) {
    crate::support::poll_until("every sensor message acknowledged", WAIT, || {
        let sensors = sensors.clone();
        async move {
            let consumer = consumer_info(&sensors).await;
            match consumer.num_ack_pending + consumer.num_pending as usize {
                0 => Ok(()),
                _ => Err(format!("{consumer:?}")),
            }
        }
    })
    .await;
}

/// The one consumer of `sensors` (the device's).
async fn consumer_info(sensors: &async_nats::jetstream::stream::Stream) -> async_nats::jetstream::consumer::Info {
    use futures::TryStreamExt;
    let names: Vec<String> = sensors.consumer_names().try_collect().await.unwrap();
    assert_eq!(names.len(), 1, "{names:?}");
    sensors.consumer_info(&names[0]).await.unwrap()
}

/// Wait until the urgent-lows stored upstream are those of `wanted` (the
/// sensors), and return them in stream order.
async fn urgent_lows_upstream_until(cloud: &NatsServer, wanted: &[&str]) -> Vec<String> {
    crate::support::poll_until("the urgent-lows upstream", crate::device::WAIT, || {
        let cloud_url = cloud.url();
        async move {
            let client = async_nats::connect(&cloud_url).await.unwrap();
            let lows: Vec<String> = crate::support::upstream_messages_via(client, 0)
                .await
                .into_iter()
                .filter(|(subject, alert)| subject.contains(".up.alerts.") && alert["code"] == "urgent-low")
                .map(|(_, alert)| alert["sensor"].as_str().unwrap_or("").to_owned())
                .collect();
            let mut sorted = lows.clone();
            sorted.sort();
            let mut expected: Vec<String> = wanted.iter().map(|s| s.to_string()).collect();
            expected.sort();
            if sorted == expected {
                Ok(lows)
            } else {
                Err(format!("{lows:?}"))
            }
        }
    })
    .await
}

/// The sensors of the alerts stored upstream now.
async fn upstream_alerts_now(cloud_url: &str) -> Vec<String> {
    let client = async_nats::connect(cloud_url).await.unwrap();
    crate::support::upstream_messages_via(client, 0)
        .await
        .into_iter()
        .filter(|(subject, _)| subject.contains(".up.alerts."))
        .map(|(_, alert)| alert["sensor"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// A device started again on a full disk (a boot after the disk filled up)
/// still alerts locally: nothing at start-up that needs a write may stop it.
/// Before, start-up failed writing the host's sequence file (exit 1, "No
/// space left on device") and nothing alerted.
#[tokio::test(flavor = "multi_thread")]
async fn a_device_started_on_a_full_disk_still_alerts_locally() {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let (mut device, disk) = run_once_on_a_tmpfs(&local, &cloud).await;

    let filler = disk.fill();
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    urgent_low_alerted(&client, &mut alerts, "full-boot").await;
    let status = status_until(&client, "the alert waiting for the disk, shown", |status| {
        status["outbox"]["waiting_for_disk"].as_u64().unwrap_or(0) >= 1
    })
    .await;
    assert_eq!(plugin(&status, "glucose-monitor")["state"], "running", "{status}");

    // Space returns: the host alerts and stores again by itself, and the
    // alert made on the full disk waited for it: stored too, once.
    space_returns(
        &filler,
        &client,
        &mut alerts,
        &cloud,
        &["cgm.full-boot", "cgm.after-boot"],
    )
    .await;
    device.terminate().await;
}

/// An entry acknowledged upstream while the disk is full (its delete
/// refused) is not sent again while its delete waits: past the stream's
/// duplicate window (1 s here) each new send would be stored again. Before,
/// the same batch went out every 200 ms and the cloud stored it again and
/// again. Once space returns the delete goes through and nothing more is sent.
#[tokio::test(flavor = "multi_thread")]
async fn an_entry_acknowledged_while_its_delete_fails_is_not_sent_again() {
    let local = NatsServer::start();
    let mut cloud = NatsServer::start_with_jetstream();
    cloud.stop();
    let mut device = Device::new(&local, Some(&cloud), "");
    device.edit_config(|config| {
        config.replace(
            "create_stream = true\n",
            "create_stream = true\nduplicate_window = \"1s\"\n",
        )
    });
    let disk = Tmpfs::mount(&device.path("data"), "8m");
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    client
        .publish("sensors.cgm.kept", reading(now_ms(), 45.0))
        .await
        .unwrap();
    collect_until(&mut alerts, "the urgent-low", |seen| urgent_lows(seen) == ["cgm.kept"]).await;
    status_until(&client, "the alert kept in the outbox", |status| {
        status["outbox"]["alerts"] == 1
    })
    .await;

    let filler = disk.fill();
    tokio::task::block_in_place(|| cloud.start_again());
    // Delivered, its delete refused: rounds fail, well past the window at
    // 200 ms a round (about 2.4 s).
    crate::support::value_until(
        "a dozen rounds with the delete refused",
        std::time::Duration::from_secs(60),
        || crate::support::host_status(&client),
        |status| status["outbox"]["rounds_failed"].as_u64().unwrap_or(0) >= 12,
    )
    .await;
    std::fs::remove_file(&filler).unwrap();
    status_until(&client, "the entry deleted once space returned", |status| {
        status["outbox"]["alerts"] == 0
    })
    .await;
    device.terminate_cleanly().await;
    let upstream = upstream_alerts_now(&cloud.url()).await;
    assert_eq!(upstream, ["cgm.kept"], "stored upstream once");
}

/// A version that passes its probation while the disk is full goes on
/// alerting at once, and is recorded as the version a restart runs once its
/// state is stored after space returns. Before, the plugin's thread waited
/// up to 10 s for that state at the end of the probation (no reading
/// handled meanwhile), then gave up: the version was reported healthy but
/// never recorded, so a restart ran the one before.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_healthy_while_the_disk_is_full_alerts_meanwhile_and_is_recorded_once_space_returns() {
    use crate::deploy_device::{Edge, PLUGIN, Site, deployment_where, push};
    use edgewise_host::deploy::model::Phase;
    use edgewise_tests::deploy_bundles;

    let site = Site::start().await;
    let mut edge = Edge::new(&site, DEVICE, "100ms", "probation = \"10s\"\n", "").await;
    let disk = Tmpfs::mount(&edge.device.path("data"), "64m");
    edge.start().await;
    let mut alerts = crate::support::subscribe_alerts(&edge.client, PLUGIN).await;
    let v1 = push(&site.operator, &edge.key(), &deploy_bundles().v1.bytes(), &[]).await;
    deployment_where(&site.operator, &edge.id, "1.0.0 healthy", |d| {
        d.generation == v1 && d.phase == Phase::Healthy
    })
    .await;
    let healthy_path = edge.device.path("data").join("deploy").join("healthy.json");
    let healthy = || -> Value { serde_json::from_slice(&std::fs::read(&healthy_path).unwrap()).unwrap() };
    let healthy_v1 = healthy();

    let v2 = push(&site.operator, &edge.key(), &deploy_bundles().v2.bytes(), &[]).await;
    deployment_where(&site.operator, &edge.id, "2.0.0 running", |d| {
        d.generation == v2 && d.phase == Phase::Running
    })
    .await;
    // The state saved at the switch is stored before the disk fills: then
    // the only write (no reading comes) is the state saved at the promotion
    // (10 s after the switch).
    let saved = |s: &Value| plugin(s, PLUGIN)["snapshots_saved"].as_u64().unwrap_or(0);
    let before = status_until(&edge.client, "the state at the switch stored", |s| {
        saved(s) >= 2 && s["outbox"]["waiting_for_disk"] == 0
    })
    .await;
    let filler = disk.fill();
    // (`waiting_for_disk` counts outputs, and a state is none.)
    let log_path = edge.device.path("edgewise.log");
    crate::support::poll_until("the state of the promotion refused by the disk", WAIT, || async {
        let log = std::fs::read_to_string(&log_path).map_err(|e| e.to_string())?;
        match log.contains("The outbox cannot write") {
            true => Ok(()),
            false => Err(log),
        }
    })
    .await;

    // The plugin goes on: a low now is alerted at once (before, its thread
    // was still waiting, and gave the version up before it took this).
    edge.client
        .publish("sensors.cgm.after-probation", reading(now_ms(), 45.0))
        .await
        .unwrap();
    collect_until(&mut alerts, "the urgent-low while the promotion waits", |seen| {
        urgent_lows(seen) == ["cgm.after-probation"]
    })
    .await;
    let (report, waiting) = deployment_where(&site.operator, &edge.id, "2.0.0 reported", |d| d.generation == v2).await;
    assert_eq!(waiting.phase, Phase::Running, "not healthy until recorded: {report:#?}");
    assert_eq!(healthy(), healthy_v1);

    // Space returns: the state is stored, and the version recorded and
    // reported healthy.
    std::fs::remove_file(&filler).unwrap();
    deployment_where(&site.operator, &edge.id, "2.0.0 healthy", |d| {
        d.generation == v2 && d.phase == Phase::Healthy
    })
    .await;
    let status = host_status(&edge.client).await;
    assert!(saved(&status) > saved(&before), "{status}");
    assert_ne!(healthy(), healthy_v1, "2.0.0 recorded as the version a restart runs");
    let log = edge.device.terminate_cleanly().await;
    assert!(!log.contains("Cannot save the healthy version's state"), "{log}");
}

/// A device started again on a read-only data directory (a worn-out SD card
/// turns read-only; a file system is remounted so after an error) still
/// alerts, locally and upstream: its outbox is in memory, and it says so
/// (log, status, a critical `outbox-in-memory` alert). The file is left as it
/// was: once the disk is writable again, a restart uses it. Before, start-up
/// exited 1 (`cannot make the database private`): nothing alerted.
#[tokio::test(flavor = "multi_thread")]
async fn a_device_started_on_a_read_only_disk_still_alerts_locally_and_upstream() {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let (mut device, disk) = run_once_on_a_tmpfs(&local, &cloud).await;
    let outbox = std::fs::read(device.path("data/outbox.sqlite3")).unwrap();
    // Left wider than the host wants by an older version or an operator's
    // copy: the host cannot narrow it on a read-only disk either.
    std::fs::set_permissions(device.path("data"), std::fs::Permissions::from_mode(0o755)).unwrap();

    disk.remount("ro");
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut host_alerts = subscribe_alerts(&client, "_host").await;
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    client.flush().await.unwrap();
    device.start_with(&client).await;
    let in_memory = next_alert(&mut host_alerts, "outbox-in-memory").await;
    assert_eq!(in_memory["severity"], "critical", "{in_memory}");
    assert!(
        in_memory["message"].as_str().unwrap().contains("Read-only file system"),
        "the reason: {in_memory}"
    );
    urgent_low_alerted(&client, &mut alerts, "read-only-boot").await;
    let upstream = urgent_lows_upstream_until(&cloud, &["cgm.read-only-boot"]).await;
    assert_eq!(upstream, ["cgm.read-only-boot"]);
    // The cloud hears it too: numbered in memory, under a new incarnation.
    upstream_alerts_where(&cloud, "the outbox-in-memory alert upstream", |alerts| {
        alerts.iter().any(|(_, alert)| alert["code"] == "outbox-in-memory")
    })
    .await;
    let status = host_status(&client).await;
    assert_eq!(plugin(&status, "glucose-monitor")["state"], "running", "{status}");
    assert!(
        status["outbox"]["in_memory"]
            .as_str()
            .is_some_and(|why| why.contains("in memory")),
        "{status}"
    );
    let (code, stderr) = device.terminate().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("Outbox in memory"), "logged: {stderr}");
    assert_eq!(
        std::fs::read(device.path("data/outbox.sqlite3")).unwrap(),
        outbox,
        "the file is untouched"
    );

    // Writable again: the file is the outbox once more.
    disk.remount("rw");
    device.start_with(&client).await;
    let status = host_status(&client).await;
    assert_eq!(status["outbox"]["in_memory"], Value::Null, "{status}");
    device.terminate().await;
}

/// A device with `cloud` upstream whose data directory is an 8 MiB tmpfs,
/// run once (its data directory then holds an outbox, its key, the
/// sequences) and stopped.
async fn run_once_on_a_tmpfs(local: &NatsServer, cloud: &NatsServer) -> (Device, Tmpfs) {
    let mut device = Device::new(local, Some(cloud), "");
    let disk = Tmpfs::mount(&device.path("data"), "8m");
    device.start(local).await;
    device.terminate_cleanly().await;
    (device, disk)
}

/// Publish an urgent low of sensor `cgm.<sensor>` and wait for its alert,
/// the only urgent-low among `alerts`.
async fn urgent_low_alerted(client: &async_nats::Client, alerts: &mut async_nats::Subscriber, sensor: &str) {
    client
        .publish(format!("sensors.cgm.{sensor}"), reading(now_ms(), 45.0))
        .await
        .unwrap();
    let expected = format!("cgm.{sensor}");
    collect_until(alerts, &format!("the urgent-low of {expected}"), |seen| {
        urgent_lows(seen) == [expected.as_str()]
    })
    .await;
}

/// The next alert of `code` among `alerts`.
async fn next_alert(alerts: &mut async_nats::Subscriber, code: &str) -> Value {
    let seen = collect_until(alerts, code, |seen| seen.iter().any(|(_, alert)| alert["code"] == code)).await;
    seen.into_iter()
        .map(|(_, alert)| alert)
        .find(|alert| alert["code"] == code)
        .unwrap()
}
