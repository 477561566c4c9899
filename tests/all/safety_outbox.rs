//! Issue #11, item 3: no output can block other outputs. With real
//! nats-servers and the real `edgewise run`:
//!
//! - an alert the cloud refuses for good (larger than its `max_payload`, or on
//!   a subject the device may not publish to) is moved aside after a few
//!   attempts, counted by reason in the status, reported upstream as a small
//!   `upstream-refused` alert, and the outputs behind it still reach the cloud,
//!   in order; the status keeps answering meanwhile;
//! - a plugin flooding a small outbox evicts its own outputs, never another
//!   plugin's alerts.

use serde_json::Value;

use crate::device::{DEVICE, Device, now_ms, reading, with_credentials};
use crate::support::{next_where, plugin, status_until, upstream_alerts, upstream_messages_via};
use edgewise_tests::nats::NatsServer;

/// The next local alert from `plugin` with `code`, skipping others.
async fn local_alert(alerts: &mut async_nats::Subscriber, plugin: &str, code: &str) -> Value {
    let what = format!("local `{code}` alert from {plugin}");
    next_where(alerts, &what, |_, alert| {
        alert["plugin"] == plugin && alert["code"] == code
    })
    .await
}

/// Send one urgent-low reading per sensor, each after the previous alert came
/// back locally (so their order in the outbox is the order of `sensors`).
async fn urgent_lows(client: &async_nats::Client, alerts: &mut async_nats::Subscriber, sensors: &[&str]) {
    for sensor in sensors {
        client
            .publish(format!("sensors.cgm.{sensor}"), reading(now_ms(), 45.0))
            .await
            .unwrap();
        let alert = local_alert(alerts, "glucose-monitor", "urgent-low").await;
        assert_eq!(alert["sensor"], format!("cgm.{sensor}"), "{alert}");
    }
}

/// glucose-monitor's urgent-low alerts stored upstream, as their sensors, in stream order.
fn glucose_sensors(upstream: &[(String, Value)]) -> Vec<String> {
    upstream
        .iter()
        .filter(|(_, alert)| alert["plugin"] == "glucose-monitor" && alert["code"] == "urgent-low")
        .map(|(_, alert)| alert["sensor"].as_str().unwrap().to_owned())
        .collect()
}

/// A cloud nats-server with JetStream whose `max_payload` is 2 KiB: under the
/// largest alert a plugin can make (its message is cut at 4 KiB), over a
/// glucose-monitor alert.
fn small_payload_cloud(dir: &tempfile::TempDir) -> NatsServer {
    let conf = dir.path().join("cloud.conf");
    std::fs::write(&conf, "max_payload: 2KB\n").unwrap();
    NatsServer::start_with_args(true, &["-c", conf.to_str().unwrap()])
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_too_large_for_the_cloud_is_moved_aside_and_the_alerts_behind_it_arrive_in_order() {
    let local = NatsServer::start();
    let conf_dir = tempfile::tempdir().unwrap();
    let cloud = small_payload_cloud(&conf_dir);
    // 4,000 bytes: within the host's bounds (a message is cut at 4 KiB), over the cloud's 2 KiB.
    let plugins =
        "[[plugins]]\nbundle = \"faulty-plugin.wasm\"\n[plugins.config]\nfail = \"big-alert\"\nsize = \"4000\"\n";
    let mut device = Device::new(&local, Some(&cloud), plugins);
    let (client, mut alerts) = device.start_watching(&local, ">").await;

    client
        .publish("sensors.hostile.h1", reading(now_ms(), 100.0))
        .await
        .unwrap();
    let big = local_alert(&mut alerts, "faulty-plugin", "big").await;
    let big_seq = big["seq"].as_u64().unwrap();
    // The big alert is at the head of the outbox; glucose-monitor's come after it.
    urgent_lows(&client, &mut alerts, &["p1", "p2", "p3"]).await;

    // The three alerts and the report of the refused one reach the cloud.
    let status = status_until(&client, "the big alert moved aside and the outbox empty", |s| {
        s["outbox"]["parked"]["too_large"] == 1 && s["outbox"]["alerts"] == 0
    })
    .await;
    assert_eq!(
        status["outbox"]["parked"]["entries"], 1,
        "kept for inspection: {status}"
    );
    assert_eq!(status["outbox"]["parked"]["permission_denied"], 0, "{status}");
    let upstream = upstream_alerts(&cloud, 4).await;
    assert_eq!(
        glucose_sensors(&upstream),
        ["cgm.p1", "cgm.p2", "cgm.p3"],
        "{upstream:?}"
    );
    assert!(
        !upstream.iter().any(|(_, alert)| alert["code"] == "big"),
        "the refused alert itself never got through: {upstream:?}"
    );
    let refused: Vec<&Value> = upstream
        .iter()
        .filter(|(_, alert)| alert["code"] == "upstream-refused")
        .map(|(_, alert)| alert)
        .collect();
    assert_eq!(refused.len(), 1, "{upstream:?}");
    let report = refused[0];
    let (subject, _) = upstream.iter().find(|(_, a)| a == report).unwrap();
    assert_eq!(subject, &format!("edgewise.{DEVICE}.up.alerts.faulty-plugin"));
    assert_eq!(report["plugin"], "faulty-plugin", "{report}");
    assert_eq!(report["severity"], "critical", "{report}");
    let text = report["message"].as_str().unwrap();
    assert!(text.contains(&format!("seq {big_seq}")), "names the seq: {report}");
    assert!(text.contains("too-large"), "names the reason: {report}");
    assert!(report.to_string().len() < 1024, "small, never the payload: {report}");

    // Delivery goes on after it, and the host exits cleanly.
    urgent_lows(&client, &mut alerts, &["p4"]).await;
    let upstream = upstream_alerts(&cloud, 5).await;
    assert_eq!(glucose_sensors(&upstream), ["cgm.p1", "cgm.p2", "cgm.p3", "cgm.p4"]);
    let stderr = device.terminate_cleanly().await;
    assert!(!stderr.contains(&"b".repeat(1000)), "the payload is not logged");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_flooding_a_small_outbox_cannot_evict_another_plugins_alerts() {
    let local = NatsServer::start();
    // The cloud is down while the flood fills the outbox.
    let mut cloud = NatsServer::start_with_jetstream();
    cloud.stop();
    // A 1 MiB outbox; the faulty plugin writes 600 alerts of 4 KiB (over 2 MiB; a
    // message is cut at 4 KiB).
    let plugins = "[outbox]\nmax_mb = 1\n[[plugins]]\nbundle = \"faulty-plugin.wasm\"\n\
        [plugins.config]\nfail = \"big-alert\"\nsize = \"4000\"\n";
    let mut device = Device::new(&local, Some(&cloud), plugins);
    let (client, mut alerts) = device.start_watching(&local, ">").await;
    urgent_lows(&client, &mut alerts, &["a", "b", "c"]).await;
    const FLOOD: u64 = 600;
    for k in 0..FLOOD {
        client
            .publish(
                "sensors.hostile.h1",
                reading(now_ms() + i64::try_from(k).unwrap(), 100.0),
            )
            .await
            .unwrap();
    }
    let status = status_until(&client, "the flood written", |s| {
        plugin(s, "faulty-plugin")["alerts_out"] == FLOOD
    })
    .await;
    assert!(
        status["outbox"]["dropped"]["alerts_for_space"].as_u64().unwrap() > 0,
        "the flood overflowed the outbox: {status}"
    );
    assert_eq!(plugin(&status, "faulty-plugin")["errors"], 0, "{status}");
    // glucose-monitor alerts again during the flood's aftermath.
    urgent_lows(&client, &mut alerts, &["d"]).await;

    // The cloud comes back: glucose-monitor's four alerts are all there, in order.
    cloud.start_again();
    status_until(&client, "the outbox delivered", |s| {
        s["upstream_connected"] == true && s["outbox"]["alerts"] == 0
    })
    .await;
    let upstream = upstream_alerts(&cloud, 4).await;
    assert_eq!(
        glucose_sensors(&upstream),
        ["cgm.a", "cgm.b", "cgm.c", "cgm.d"],
        "{} alerts upstream",
        upstream.len()
    );
    device.terminate_cleanly().await;
}

/// Messages stored in the cloud's `EDGEWISE_UP` stream, as (subject, JSON), read
/// as `user`, waiting until there are `at_least`.
async fn stored_upstream(cloud: &NatsServer, user: &str, password: &str, at_least: usize) -> Vec<(String, Value)> {
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .connect(cloud.url())
        .await
        .unwrap();
    upstream_messages_via(client, at_least).await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_summary_on_a_subject_the_device_may_not_publish_to_is_moved_aside_and_alerts_go_on() {
    let local = NatsServer::start();
    // The cloud account lets the device publish anything but summaries.
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = conf_dir.path().join("cloud.conf");
    std::fs::write(
        &conf,
        format!(
            "accounts {{\n  CLOUD {{\n    jetstream: enabled\n    users: [\n\
             {{ user: device, password: device-pw, permissions: {{ publish: {{ allow: [\">\"], \
             deny: [\"edgewise.{DEVICE}.up.summaries.>\"] }}, subscribe: {{ allow: [\">\"] }} }} }}\n\
             {{ user: reader, password: reader-pw }}\n    ]\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let cloud = NatsServer::start_with_args(true, &["-c", conf.to_str().unwrap()]);
    let mut device = Device::new(&local, Some(&cloud), "[[plugins]]\nbundle = \"threshold.wasm\"\n");
    device.edit_config(|config| with_credentials(&config, &cloud, "user = \"device\"\npassword = \"device-pw\"\n"));
    let (client, mut alerts) = device.start_watching(&local, ">").await;
    status_until(&client, "connected upstream", |s| s["upstream_connected"] == true).await;

    // threshold closes the previous hour: one summary, which the cloud refuses.
    let now = now_ms();
    for ts in [now - 3_600_000, now] {
        client
            .publish("sensors.temperature.f1", reading(ts, 5.0))
            .await
            .unwrap();
    }
    let status = status_until(&client, "the summary moved aside", |s| {
        s["outbox"]["parked"]["permission_denied"] == 1
    })
    .await;
    assert_eq!(status["outbox"]["summaries"], 0, "{status}");
    assert_eq!(plugin(&status, "threshold")["summaries_out"], 1, "{status}");
    urgent_lows(&client, &mut alerts, &["p1"]).await;

    let upstream = stored_upstream(&cloud, "reader", "reader-pw", 2).await;
    assert!(
        !upstream.iter().any(|(subject, _)| subject.contains(".up.summaries.")),
        "{upstream:?}"
    );
    let report = upstream
        .iter()
        .find(|(_, alert)| alert["code"] == "upstream-refused")
        .unwrap_or_else(|| panic!("no report upstream: {upstream:?}"));
    assert_eq!(report.0, format!("edgewise.{DEVICE}.up.alerts.threshold"));
    let text = report.1["message"].as_str().unwrap();
    assert!(text.contains("permission-denied") && text.contains("summary"), "{text}");
    let upstream = if glucose_sensors(&upstream).is_empty() {
        stored_upstream(&cloud, "reader", "reader-pw", upstream.len() + 1).await
    } else {
        upstream
    };
    assert_eq!(glucose_sensors(&upstream), ["cgm.p1"], "{upstream:?}");
    device.terminate_cleanly().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_stream_fails_every_round_and_moves_nothing_aside() {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let mut device = Device::new(&local, Some(&cloud), "");
    // The host does not create the stream: every publish finds no stream.
    device.edit_config(|config| config.replace("create_stream = true", "create_stream = false"));
    let (client, mut alerts) = device.start_watching(&local, ">").await;
    urgent_lows(&client, &mut alerts, &["a", "b"]).await;
    // Many more failed rounds than the attempts that move an entry aside.
    let status = status_until(&client, "ten failed delivery rounds", |s| {
        s["outbox"]["rounds_failed"].as_u64().unwrap_or(0) >= 10
    })
    .await;
    assert_eq!(status["outbox"]["alerts"], 2, "both still waiting: {status}");
    for reason in ["too_large", "permission_denied", "refused", "entries"] {
        assert_eq!(status["outbox"]["parked"][reason], 0, "{status}");
    }
    // The stream appears: both are delivered, in order.
    let jetstream = async_nats::jetstream::new(async_nats::connect(cloud.url()).await.unwrap());
    jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: "EDGEWISE_UP".into(),
            subjects: vec![format!("edgewise.{DEVICE}.up.>")],
            ..Default::default()
        })
        .await
        .unwrap();
    status_until(&client, "the outbox delivered", |s| s["outbox"]["alerts"] == 0).await;
    let upstream = upstream_alerts(&cloud, 2).await;
    assert_eq!(glucose_sensors(&upstream), ["cgm.a", "cgm.b"], "{upstream:?}");
    device.terminate_cleanly().await;
}
