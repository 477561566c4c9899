//! Implausible readings never reach a plugin (issue #11, item 1), against the
//! real `edgewise run` on a real nats-server: readings from the future or
//! from too long ago, a payload naming another patient's sensor, and a flood
//! of new sensor ids are dead-lettered with their reason and counted, and
//! glucose-monitor keeps alerting.

use serde_json::Value;

use crate::device::{DEVICE, Device, WAIT, now_ms, reading};
use crate::hostile_plugins::V0_1;
use crate::support::{
    assert_contains, create_sensors_stream, host_status, next_json, next_where, poll_until, publish_acked,
    status_until, subscribe_alerts,
};
use edgewise_tests::nats::NatsServer;

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;

/// A reading whose payload names its sensor.
fn named(sensor: &str, ts: i64, value: f64) -> bytes::Bytes {
    format!(r#"{{"ts":{ts},"value":{value},"unit":"mg/dL","sensor":"{sensor}"}}"#).into()
}

/// The next alert `code` for `sensor`, skipping others, or panic after [`WAIT`].
async fn alert_for(alerts: &mut async_nats::Subscriber, sensor: &str, code: &str) -> Value {
    let what = format!("`{code}` alert for sensor `{sensor}`");
    next_where(alerts, &what, |_, alert| {
        alert["sensor"] == sensor && alert["code"] == code
    })
    .await
}

/// The message of the next critical `plugin-degraded` alert, skipping others.
async fn degraded_message(alerts: &mut async_nats::Subscriber) -> String {
    let alert = next_where(alerts, "the host's plugin-degraded", |_, alert| {
        alert["code"] == "plugin-degraded"
    })
    .await;
    assert_eq!(alert["severity"], "critical", "{alert}");
    alert["message"].as_str().unwrap().to_owned()
}

/// Dead letters counted for `reason` in a status.
fn deadletters(status: &Value, reason: &str) -> u64 {
    status["ingest"]["deadletters_by_reason"][reason].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_far_future_reading_does_not_silence_a_real_low() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "");
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    let mut dead = client.subscribe(format!("edgewise.{DEVICE}.deadletter")).await.unwrap();
    device.start_with(&client).await;

    // A bridge that sends microseconds instead of milliseconds, then the
    // real reading of the same patient, at the right time.
    let now = now_ms();
    client
        .publish("sensors.cgm.p1", reading(now * 1000, 100.0))
        .await
        .unwrap();
    client.publish("sensors.cgm.p1", reading(now, 45.0)).await.unwrap();
    let alert = alert_for(&mut alerts, "cgm.p1", "urgent-low").await;
    assert_eq!(alert["value"], 45.0);
    let letter = next_json(&mut dead, "dead letter for the future reading").await;
    assert_eq!(letter["subject"], "sensors.cgm.p1", "{letter}");
    assert_eq!(letter["kind"], "future", "{letter}");
    assert!(
        letter["reason"].as_str().unwrap().contains("ahead of the host clock"),
        "{letter}"
    );
    let status = host_status(&client).await;
    assert_eq!(deadletters(&status, "future"), 1, "{status}");
    assert_eq!(status["ingest"]["deadlettered"], 1, "{status}");
    assert_eq!(status["plugins"][0]["readings_in"], 1, "{status}");
    let shown = edgewise_tests::edgewise(["status", "--nats", &local.url(), "--device", DEVICE]);
    assert_eq!(shown.code, Some(0), "{}", shown.stderr);
    assert_contains(&shown.stdout, "2 messages, 1 dead-lettered (future 1)");
    device.terminate_cleanly().await;
}

/// Defence in depth: with the host's margin opened wide (an operator's
/// mistake), the far-future reading reaches glucose-monitor, which ignores it
/// (too far ahead of its latest tick) and still raises the real urgent low.
#[tokio::test(flavor = "multi_thread")]
async fn glucose_monitor_ignores_a_far_future_reading_the_host_let_through() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "[ingest]\nmax_future = \"36500d\"\n");
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    // A sensor whose clock is a month ahead.
    let now = now_ms();
    client
        .publish("sensors.cgm.p1", reading(now + 30 * DAY_MS, 100.0))
        .await
        .unwrap();
    client.publish("sensors.cgm.p1", reading(now, 45.0)).await.unwrap();
    alert_for(&mut alerts, "cgm.p1", "urgent-low").await;
    let status = host_status(&client).await;
    assert_eq!(status["ingest"]["deadlettered"], 0, "the host let it through: {status}");
    assert_eq!(status["plugins"][0]["readings_in"], 2, "{status}");
    device.terminate_cleanly().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn too_old_and_future_readings_are_dead_lettered_with_their_reasons() {
    let local = NatsServer::start();
    // Tighter than the defaults, to show the keys are read.
    let ingest = "[ingest]\nmax_future = \"1m\"\nmax_age = \"1h\"\n";
    let mut device = Device::new(&local, None, ingest);
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    let mut dead = client.subscribe(format!("edgewise.{DEVICE}.deadletter")).await.unwrap();
    device.start_with(&client).await;

    let now = now_ms();
    client
        .publish("sensors.cgm.old", reading(now - 2 * 60 * MINUTE_MS, 45.0))
        .await
        .unwrap();
    let letter = next_json(&mut dead, "dead letter for the old reading").await;
    assert_eq!(letter["kind"], "too-old", "{letter}");
    assert_eq!(letter["subject"], "sensors.cgm.old", "{letter}");
    assert_eq!(letter["readings"], serde_json::json!([0]), "{letter}");
    assert!(letter["reason"].as_str().unwrap().contains("max_age"), "{letter}");

    client
        .publish("sensors.cgm.ahead", reading(now + 10 * MINUTE_MS, 45.0))
        .await
        .unwrap();
    let letter = next_json(&mut dead, "dead letter for the future reading").await;
    assert_eq!(letter["kind"], "future", "{letter}");
    assert!(letter["reason"].as_str().unwrap().contains("max_future"), "{letter}");

    // Within the margins: taken. In one array, the old reading is refused and
    // the current one still reaches the plugin.
    client
        .publish("sensors.cgm.skewed", reading(now_ms() + 20_000, 45.0))
        .await
        .unwrap();
    alert_for(&mut alerts, "cgm.skewed", "urgent-low").await;
    let batch = format!(
        r#"[{{"ts":{},"value":100}},{{"ts":{},"value":45}}]"#,
        now - 3 * 60 * MINUTE_MS,
        now_ms()
    );
    client.publish("sensors.cgm.backfill", batch.into()).await.unwrap();
    alert_for(&mut alerts, "cgm.backfill", "urgent-low").await;
    let letter = next_json(&mut dead, "dead letter for the old reading of the array").await;
    assert_eq!(letter["kind"], "too-old", "{letter}");
    assert_eq!(letter["readings"], serde_json::json!([0]), "{letter}");

    let status = status_until(&client, "the dead letters counted", |s| {
        s["ingest"]["deadlettered"] == 3
    })
    .await;
    assert_eq!(deadletters(&status, "too-old"), 2, "{status}");
    assert_eq!(deadletters(&status, "future"), 1, "{status}");
    assert_eq!(status["plugins"][0]["readings_in"], 2, "{status}");
    device.terminate_cleanly().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payload_naming_another_sensor_is_dead_lettered_unless_its_subject_is_a_trusted_gateway() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "payload_sensors = [\"sensors.cgm.gateway.>\"]\n");
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    let mut host_alerts = subscribe_alerts(&client, "_host").await;
    let mut dead = client.subscribe(format!("edgewise.{DEVICE}.deadletter")).await.unwrap();
    device.start_with(&client).await;

    // Someone on p1's subject speaks for p2.
    client
        .publish("sensors.cgm.p1", named("cgm.p2", now_ms(), 45.0))
        .await
        .unwrap();
    let letter = next_json(&mut dead, "dead letter for the foreign sensor").await;
    assert_eq!(letter["kind"], "sensor-mismatch", "{letter}");
    assert_eq!(letter["subject"], "sensors.cgm.p1", "{letter}");
    assert!(letter["reason"].as_str().unwrap().contains("`cgm.p2`"), "{letter}");
    // Said loudly too: a gateway left out of `payload_sensors` looks so,
    // every reading of its patients refused.
    let told = next_where(
        &mut host_alerts,
        "the host's alert about the refused reading",
        |_, alert| alert["code"] == "plugin-degraded",
    )
    .await;
    assert_eq!(told["severity"], "critical", "{told}");
    let message = told["message"].as_str().unwrap();
    assert!(
        message.starts_with("plugin `glucose-monitor` is not given 1 readings whose payload names another sensor")
            && message.contains("`payload_sensors`")
            && message.contains("`cgm.p2`"),
        "{told}"
    );

    // A payload that names its own subject's sensor is fine; a trusted
    // gateway names the sensors it multiplexes.
    client
        .publish("sensors.cgm.p1", named("cgm.p1", now_ms(), 45.0))
        .await
        .unwrap();
    alert_for(&mut alerts, "cgm.p1", "urgent-low").await;
    client
        .publish("sensors.cgm.gateway.ward-3", named("bed-7", now_ms(), 45.0))
        .await
        .unwrap();
    alert_for(&mut alerts, "bed-7", "urgent-low").await;

    // A second refusal is counted (told again within the hour it is not:
    // `Retell`'s unit test).
    client
        .publish("sensors.cgm.p1", named("cgm.p3", now_ms(), 45.0))
        .await
        .unwrap();
    let status = status_until(&client, "two readings in, two refused", |s| {
        s["plugins"][0]["readings_in"] == 2 && deadletters(s, "sensor-mismatch") == 2
    })
    .await;
    assert_eq!(status["ingest"]["deadlettered"], 2, "{status}");
    device.terminate_cleanly().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_new_sensor_ids_leaves_glucose_monitor_running_and_alerting() {
    const FLOOD: usize = 20_000;
    const ROUND: usize = 1_000;
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "");
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;

    // A patient known before the flood.
    client
        .publish("sensors.cgm.known", reading(now_ms(), 120.0))
        .await
        .unwrap();
    status_until(&client, "the known sensor's reading", |s| {
        s["plugins"][0]["readings_in"] == 1
    })
    .await;
    // 20,000 new sensor ids, in rounds the host takes before the next.
    for round in 0..FLOOD / ROUND {
        let now = now_ms();
        for index in 0..ROUND {
            let sensor = round * ROUND + index;
            client
                .publish(format!("sensors.cgm.flood-{sensor}"), reading(now, 120.0))
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
        let sent = 1 + (round + 1) * ROUND;
        status_until(&client, "the flood taken in", |s| s["ingest"]["messages"] == sent).await;
    }
    client
        .publish("sensors.cgm.known", reading(now_ms(), 45.0))
        .await
        .unwrap();
    alert_for(&mut alerts, "cgm.known", "urgent-low").await;

    let status = host_status(&client).await;
    let glucose = &status["plugins"][0];
    assert_eq!(glucose["name"], "glucose-monitor", "{status}");
    assert_eq!(glucose["state"], "running", "{status}");
    assert_eq!(glucose["errors"], 0, "{status}");
    assert_eq!(glucose["restarts"], 0, "{status}");
    let refused = deadletters(&status, "too-many-sensors");
    assert!(refused > 0, "the cap refused nothing: {status}");
    assert_eq!(
        glucose["readings_in"].as_u64().unwrap() + refused,
        FLOOD as u64 + 2,
        "every reading either reached the plugin or was dead-lettered: {status}"
    );
    device.terminate_cleanly().await;
}

/// `[host_limits] max_sensors` caps what a manifest asks (glucose-monitor's
/// 1000): the device takes 3 sensors, dead-letters the rest, and says it
/// lowered the plugin's value.
#[tokio::test(flavor = "multi_thread")]
async fn the_host_ceiling_caps_the_sensors_a_manifest_asks_for() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "\n[host_limits]\nmax_sensors = 3\n");
    let (client, _alerts) = device.start_watching(&local, "glucose-monitor").await;
    for sensor in 0..5 {
        client
            .publish(format!("sensors.cgm.s{sensor}"), reading(now_ms(), 120.0))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    // The ingest counts a message when it routes it, the plugin when it has
    // handled it: wait until all five are accounted for at their ends.
    let status = status_until(&client, "all five readings handled or refused", |s| {
        s["plugins"][0]["readings_in"].as_u64().unwrap_or(0) + deadletters(s, "too-many-sensors") == 5
    })
    .await;
    assert_eq!(status["plugins"][0]["readings_in"], 3, "{status}");
    assert_eq!(deadletters(&status, "too-many-sensors"), 2, "{status}");
    let log = device.terminate_cleanly().await;
    assert_contains(&log, "max_sensors lowered to the ceiling");
}

/// Readings that trail the host clock by a few days (a JetStream source
/// replaying what was stored while the host was down, or CGM backfill) are
/// within the default horizon.
#[tokio::test(flavor = "multi_thread")]
async fn readings_from_a_few_days_ago_are_taken_by_default() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "");
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    client
        .publish("sensors.cgm.back", reading(now_ms() - 6 * DAY_MS, 45.0))
        .await
        .unwrap();
    alert_for(&mut alerts, "cgm.back", "urgent-low").await;
    client
        .publish("sensors.cgm.ancient", reading(now_ms() - 8 * DAY_MS, 45.0))
        .await
        .unwrap();
    let status = status_until(&client, "the ancient reading refused", |s| {
        deadletters(s, "too-old") == 1
    })
    .await;
    assert_eq!(status["plugins"][0]["readings_in"], 1, "{status}");
    device.terminate_cleanly().await;
}

/// glucose-monitor's manifest `max_sensors` fits its other limits: that many
/// sensors with the longest ids, all silent from the same minute, give the
/// heaviest tick there is (at midnight: an hour and a day closed and
/// signal-loss raised for each) within its memory and outputs-per-call
/// limits, replayed through the signed bundle as a device would run it.
#[test]
fn glucose_monitor_holds_its_max_sensors_within_its_limits() {
    let manifest =
        std::fs::read_to_string(edgewise_tests::workspace_root().join("plugins/glucose-monitor/edgewise.toml"))
            .unwrap();
    let limits = edgewise_host::bundle::ManifestSource::from_toml(&manifest)
        .unwrap()
        .limits;
    let max_sensors = limits.max_sensors.expect("glucose-monitor sets max_sensors") as usize;
    let local = NatsServer::start();
    let device = Device::new(&local, None, "");
    // 22:00 to 23:40 UTC, every 5 minutes; signal-loss is due at midnight.
    let midnight: i64 = 1_764_288_000_000 + DAY_MS;
    let mut text = String::new();
    for step in 0..=20 {
        let ts = midnight - 2 * 60 * MINUTE_MS + step * 5 * MINUTE_MS;
        for sensor in 0..max_sensors {
            // On the bundle's subjects (`sensors.cgm.>`): the sensor id is
            // the subject's tail, `cgm.` and 252 digits, 256 bytes.
            let id = format!("cgm.{sensor:0>252}");
            let value = 100 + (sensor * 7 + step as usize * 13) % 150;
            text.push_str(&format!(
                "{{\"subject\":\"sensors.{id}\",\"payload\":{{\"ts\":{ts},\"value\":{value}}}}}\n"
            ));
        }
    }
    let recording = device.path("many-sensors.jsonl");
    std::fs::write(&recording, text).unwrap();
    let out = device.path("out.jsonl");
    let run = device.replay(&recording, &["--out".as_ref(), out.as_os_str()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let outputs = std::fs::read_to_string(device.path("out.jsonl")).unwrap();
    let signal_losses = outputs
        .lines()
        .filter(|l| l.contains("\"code\":\"signal-loss\""))
        .count();
    assert_eq!(signal_losses, max_sensors, "every sensor went silent");
    let days = outputs
        .lines()
        .filter(|l| l.contains(&format!("\"window_end\":{midnight}")) && l.contains("\"type\":\"summary\""))
        .count();
    assert_eq!(days, 2 * max_sensors, "an hour and a day closed for every sensor");
}

/// A running plugin gets every reading of a burst of large messages (a
/// gateway's backfill after an outage), even when one batch of them holds
/// more readings than the buffer kept for a plugin that is down: that bound
/// is for waiting work, not for the work being given. Here every message
/// alone holds more than `buffer_readings`.
#[tokio::test(flavor = "multi_thread")]
async fn a_running_plugin_gets_every_reading_of_a_burst_larger_than_its_buffer() {
    const PATIENTS: usize = 12;
    const HISTORY: usize = 150;
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "[supervisor]\nbuffer_readings = 100\n");
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    // Each patient's last 150 minutes in one message, ending in a low now.
    let now = now_ms();
    for patient in 0..PATIENTS {
        let readings: Vec<String> = (0..HISTORY)
            .map(|minute| {
                let ts = now - (HISTORY - 1 - minute) as i64 * MINUTE_MS;
                let value = if minute == HISTORY - 1 { 45.0 } else { 120.0 };
                format!(r#"{{"ts":{ts},"value":{value}}}"#)
            })
            .collect();
        let payload = format!("[{}]", readings.join(","));
        client
            .publish(format!("sensors.cgm.backfill-{patient}"), payload.into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    for patient in 0..PATIENTS {
        alert_for(&mut alerts, &format!("cgm.backfill-{patient}"), "urgent-low").await;
    }
    let status = host_status(&client).await;
    let glucose = &status["plugins"][0];
    assert_eq!(glucose["readings_dropped"], 0, "{status}");
    assert_eq!(glucose["readings_in"], (PATIENTS * HISTORY) as u64, "{status}");
    device.terminate_cleanly().await;
}

/// A burst of 12,000 small messages, for a plugin whose queue has room, is
/// taken whole: the local bus client's buffer and ingest's pending limits
/// hold what ingest has not decoded yet. With a client buffer of 2048
/// messages, 2,144 of them were lost here (the highest rate the live-ingest
/// benchmark sustained fell by half).
#[tokio::test(flavor = "multi_thread")]
async fn a_burst_of_small_messages_is_taken_whole() {
    const SENSORS: usize = 100;
    const ROUNDS: usize = 120; // 12,000 messages, one reading each.
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "\n[limits]\nqueue_capacity = 65536\n");
    let (client, _alerts) = device.start_watching(&local, "glucose-monitor").await;
    let start = now_ms() - (ROUNDS as i64) * 1_000;
    for round in 0..ROUNDS {
        for sensor in 0..SENSORS {
            client
                .publish(
                    format!("sensors.cgm.burst-{sensor}"),
                    reading(start + round as i64 * 1_000, 120.0),
                )
                .await
                .unwrap();
        }
    }
    client.flush().await.unwrap();
    let total = (SENSORS * ROUNDS) as u64;
    let status = status_until(&client, "every message taken or dropped", |status| {
        let glucose = &status["plugins"][0];
        let accounted = glucose["readings_in"].as_u64().unwrap_or(0)
            + glucose["readings_dropped"].as_u64().unwrap_or(0)
            + status["ingest"]["dropped_by_client"].as_u64().unwrap_or(0);
        accounted >= total
    })
    .await;
    assert_eq!(status["ingest"]["dropped_by_client"], 0, "{status}");
    assert_eq!(status["plugins"][0]["readings_dropped"], 0, "{status}");
    assert_eq!(status["plugins"][0]["readings_in"], total, "{status}");
    device.terminate_cleanly().await;
}

/// A new patient's sensor refused because the plugin has its `max_sensors`
/// is not left to a dead-letter count: the host raises a critical
/// `plugin-degraded` naming the plugin, the sensor and the limit, once (not
/// for every reading after it), so someone sees that a patient is not
/// monitored.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_sensor_refused_for_the_plugins_sensor_cap_raises_an_alert() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "\n[host_limits]\nmax_sensors = 3\n");
    let (client, mut alerts) = device.start_watching(&local, ">").await;
    // A minute back: the whole exchange can take less than a millisecond,
    // and a later reading of s0 stamped with the same millisecond would be
    // a duplicate (ignored).
    let earlier = now_ms() - 60_000;
    for sensor in 0..3 {
        client
            .publish(format!("sensors.cgm.s{sensor}"), reading(earlier, 120.0))
            .await
            .unwrap();
    }
    for _ in 0..3 {
        client
            .publish("sensors.cgm.newcomer", reading(now_ms(), 45.0))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let message = degraded_message(&mut alerts).await;
    let message = message.as_str();
    assert_contains(message, "`glucose-monitor`");
    assert_contains(message, "`cgm.newcomer`");
    assert_contains(message, "`max_sensors` of 3");
    status_until(&client, "the three refusals counted", |s| {
        deadletters(s, "too-many-sensors") == 3
    })
    .await;
    // Once, not for each refused reading: up to a low of a known patient
    // (published after the refusals), no second one.
    client.publish("sensors.cgm.s0", reading(now_ms(), 45.0)).await.unwrap();
    let mut degraded = 0;
    loop {
        let next = next_where(&mut alerts, "s0's urgent-low", |_, _| true).await;
        if next["code"] == "plugin-degraded" {
            degraded += 1;
        }
        if next["sensor"] == "cgm.s0" && next["code"] == "urgent-low" {
            break;
        }
    }
    assert_eq!(degraded, 0, "raised again for a later refusal");
    device.terminate_cleanly().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_clock_ten_minutes_behind_is_raised_not_left_to_dead_letter_counts() {
    // A device without a real-time clock booted offline: its clock is behind
    // the sensors'. Every reading is "from the future" and refused; before,
    // only `deadletters_by_reason.future` said so, and no patient was
    // monitored without anyone being told.
    let behind = time::OffsetDateTime::now_utc() - time::Duration::minutes(10);
    let start = behind.format(&time::format_description::well_known::Rfc3339).unwrap();
    let clock = format!("[clock]\nstart = \"{start}\"\nspeed = 1\n");
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, &clock);
    let (client, mut alerts) = device.start_watching(&local, ">").await;
    for sensor in ["p1", "p2"] {
        client
            .publish(format!("sensors.cgm.{sensor}"), reading(now_ms(), 45.0))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let message = degraded_message(&mut alerts).await;
    let message = message.as_str();
    assert_contains(message, "`glucose-monitor`");
    assert_contains(message, "`future`");
    assert_contains(message, "sensor `cgm.p1`");
    assert_contains(message, "clock is probably behind");
    status_until(&client, "both refusals counted", |s| deadletters(s, "future") == 2).await;
    // Once, not for each refused reading: the next thing on the bus after a
    // third refusal and a reading the device takes is the latter's alert.
    client.publish("sensors.cgm.p3", reading(now_ms(), 45.0)).await.unwrap();
    let behind_ms = behind.unix_timestamp() * 1000;
    client
        .publish("sensors.cgm.p1", reading(behind_ms, 45.0))
        .await
        .unwrap();
    let next = next_where(&mut alerts, "p1's urgent-low", |_, _| true).await;
    assert_eq!(
        (&next["sensor"], &next["code"]),
        (&"cgm.p1".into(), &"urgent-low".into()),
        "{next}"
    );
    device.terminate_cleanly().await;
}

/// A plugin slower than a flood of large messages on core NATS does not take
/// the device's memory: its queue is bounded in readings (`queue_capacity`,
/// 4096), what does not fit is dropped, counted in its `readings_dropped`,
/// and raised as a critical `plugin-degraded` naming the plugin, and
/// glucose-monitor keeps alerting. Before, the queue was bounded in batches
/// of up to 256 messages: this flood (360 MB of JSON, 10.8 M readings) took
/// the host well past a gigabyte.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_large_messages_for_a_slow_plugin_is_dropped_counted_and_raised_in_bounded_memory() {
    const MESSAGES: usize = 6_000;
    const PER_MESSAGE: usize = 1_800;
    let local = NatsServer::start();
    // Slow, not failing: 200 ms a call against a deadline of 5 s.
    let slow = V0_1.plugin_table("slow", "spin_ms = 200\nevery = 1\n", "call_deadline_ms = 5000\n");
    let mut device = Device::new(&local, None, &slow);
    let (client, mut alerts) = device.start_watching(&local, ">").await;
    let mut host_alerts = subscribe_alerts(&client, "_host").await;

    let now = now_ms();
    let readings: Vec<String> = (0..PER_MESSAGE)
        .map(|k| format!(r#"{{"ts":{},"value":100}}"#, now - k as i64 * 1_000))
        .collect();
    let payload = bytes::Bytes::from(format!("[{}]", readings.join(",")));
    assert!(
        payload.len() > 48 << 10 && payload.len() <= 64 << 10,
        "{}",
        payload.len()
    );
    for _ in 0..MESSAGES {
        client.publish(V0_1.subject, payload.clone()).await.unwrap();
    }
    client.flush().await.unwrap();

    let alert = next_where(&mut alerts, "the slow plugin's plugin-degraded", |_, alert| {
        alert["code"] == "plugin-degraded"
            && alert["message"]
                .as_str()
                .unwrap_or_default()
                .contains("slower than its input")
    })
    .await;
    assert_eq!(alert["severity"], "critical", "{alert}");
    assert_contains(alert["message"].as_str().unwrap(), "plugin `faulty-plugin`");
    assert_contains(alert["message"].as_str().unwrap(), "queue of 4096 readings");

    client.publish("sensors.cgm.p1", reading(now_ms(), 45.0)).await.unwrap();
    alert_for(&mut alerts, "cgm.p1", "urgent-low").await;

    let status = host_status(&client).await;
    let slow = crate::support::plugin(&status, V0_1.name);
    assert_eq!(slow["state"], "running", "slow, not failed: {status}");
    let dropped = slow["readings_dropped"].as_u64().unwrap();
    let taken = slow["readings_in"].as_u64().unwrap() + slow["readings_held"].as_u64().unwrap();
    assert!(dropped > 0, "{status}");
    // Every message ingest saw is either given, held, queued (at most 4096
    // readings), dropped for the queue, or in the call under way.
    let seen = status["ingest"]["messages"].as_u64().unwrap() - 1;
    let dropped_by_client = status["ingest"]["dropped_by_client"].as_u64().unwrap();
    assert!(seen + dropped_by_client <= MESSAGES as u64, "{status}");
    assert!(dropped + taken <= seen * PER_MESSAGE as u64, "{status}");
    let peak_mib = crate::safety_compile::proc_kib(device.pid(), "VmHWM:").unwrap() >> 10;
    eprintln!(
        "flood: {seen} messages seen, {dropped_by_client} dropped by the client, {dropped} readings dropped, {taken} taken; peak RSS {peak_mib} MiB"
    );
    assert!(peak_mib < 512, "the host's peak RSS is {peak_mib} MiB");
    if dropped_by_client > 0 {
        // How much the client drops depends on the machine's speed; when it
        // does, it is said loudly too.
        let alert = next_where(
            &mut host_alerts,
            "the host-degraded of the client's drops",
            |_, alert| {
                alert["code"] == "host-degraded"
                    && alert["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("dropped before ingest took them")
            },
        )
        .await;
        assert_eq!(alert["severity"], "critical", "{alert}");
    }
    device.terminate_cleanly().await;
}

/// With readings from a JetStream stream, what comes while the plugin is
/// down waits in the stream, not in the worker's bounded hold: nothing is
/// dropped, and after the restart the plugin is given the readings in the
/// order they came. (The consumer takes the next chunk once the worker has
/// given the last one to the plugin, not once its outputs are stored, so a
/// full disk does not hold readings back; without that wait it would fill
/// the hold: three of these five readings dropped, delivered again late.)
#[tokio::test(flavor = "multi_thread")]
async fn with_jetstream_input_readings_wait_in_the_stream_while_the_plugin_is_down() {
    let local = NatsServer::start_with_jetstream();
    let client = async_nats::connect(local.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client.clone());
    let sensors = crate::support::create_sensors_stream(&jetstream).await;
    // Every second call overruns its deadline; the restart waits 3 s; the hold keeps 2 readings.
    let plugins = format!(
        "[ingest]\nsource = \"jetstream\"\nstream = \"SENSORS\"\n\
         [supervisor]\nbackoff_initial = \"3s\"\nbuffer_readings = 2\n{}",
        V0_1.plugin_table("slow", "every = 2\nspin_ms = 1000\n", "call_deadline_ms = 200\n")
    );
    let mut device = Device::with_tick(&local, None, "1h", &plugins);
    let (client, mut alerts) = device.start_watching(&local, V0_1.name).await;
    let publish = |ts: i64| {
        let jetstream = jetstream.clone();
        async move { crate::support::publish_acked(&jetstream, V0_1.subject, reading(ts, 100.0)).await }
    };
    let t0 = now_ms();
    publish(t0).await;
    assert_eq!(next_json(&mut alerts, "alert").await["code"], "seen");
    publish(t0 + 1).await;
    let degraded = next_json(&mut alerts, "alert").await;
    assert_eq!(degraded["code"], "plugin-degraded", "{degraded}");

    // While it is down: five readings, all delivered to the device.
    for k in 2..7 {
        publish(t0 + k).await;
    }
    crate::support::poll_until("the stream to deliver every reading", crate::device::WAIT, || {
        let sensors = sensors.clone();
        async move {
            use futures::TryStreamExt;
            let names: Vec<String> = sensors.consumer_names().try_collect().await.unwrap();
            let info = sensors.consumer_info(&names[0]).await.unwrap();
            match info.num_pending {
                0 => Ok(()),
                pending => Err(format!("{pending} not delivered")),
            }
        }
    })
    .await;
    // The restart gives the oldest reading first (the new instance's first call passes).
    let seen = next_where(&mut alerts, "the first alert after the restart", |_, alert| {
        alert["code"] == "seen"
    })
    .await;
    assert_eq!(seen["ts"], t0 + 2, "the oldest first: {seen}");
    let status = host_status(&client).await;
    let faulty = &status["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == V0_1.name)
        .cloned()
        .unwrap();
    assert_eq!(faulty["readings_dropped"], 0, "{faulty}");
    assert_eq!(device.terminate().await.0, Some(0));
}

/// Fill a plugin's cap of two sensors (`first`, read once each at the host
/// clock), see `third` refused, then wait for eight days and a half of the
/// clock (a week, `max_future` and the simulated transit allowance of
/// 100,000 s): the host clock then. `publish` sends one reading of a sensor.
async fn fill_the_cap_and_wait_a_week<F, Fut>(
    client: &async_nats::Client,
    publish: &F,
    first: [(&'static str, f64); 2],
    third: (&'static str, f64),
) -> i64
where
    F: Fn(&'static str, f64, i64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let start = clock_ms(&host_status(client).await);
    for (sensor, value) in first {
        publish(sensor, value, start).await;
    }
    status_until(client, "the first two sensors taken", |s| {
        s["plugins"][0]["readings_in"] == 2
    })
    .await;
    publish(third.0, third.1, clock_ms(&host_status(client).await)).await;
    status_until(client, "the third refused", |s| deadletters(s, "too-many-sensors") == 1).await;
    let status = status_until(client, "eight days and a half to pass", |s| {
        clock_ms(s) > start + 8 * DAY_MS + DAY_MS / 2
    })
    .await;
    clock_ms(&status)
}

/// The host clock in a status.
fn clock_ms(status: &Value) -> i64 {
    status["clock_ms"].as_i64().unwrap()
}

/// The codes of `sensor`'s alerts on `alerts`, up to its first `last`.
async fn codes_until(alerts: &mut async_nats::Subscriber, sensor: &str, last: &str) -> Vec<String> {
    let what = format!("`{sensor}`'s {last}");
    let seen = crate::support::collect_until(alerts, &what, |seen| {
        seen.iter().any(|(_, a)| a["sensor"] == sensor && a["code"] == last)
    })
    .await;
    seen.iter()
        .filter(|(_, a)| a["sensor"] == sensor)
        .map(|(_, a)| a["code"].as_str().unwrap().to_owned())
        .collect()
}

/// The sensor `publish` sends now is the one too many (the second refused),
/// and the plugin ran throughout without an error; the device then stops.
async fn one_too_many_again<F, Fut>(mut device: Device, client: &async_nats::Client, publish: F)
where
    F: FnOnce(i64) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    publish(clock_ms(&host_status(client).await)).await;
    let status = status_until(client, "the one too many refused", |s| {
        deadletters(s, "too-many-sensors") == 2
    })
    .await;
    let plugin = &status["plugins"][0];
    assert_eq!(plugin["state"], "running", "{status}");
    assert_eq!(plugin["errors"], 0, "{status}");
    let (code, log) = device.terminate().await;
    assert_eq!(code, Some(0), "{log}");
}

/// Sensors come and go: a ward's patients are discharged, a CGM is replaced
/// every ten days. glucose-monitor forgets a sensor silent for its
/// `forget_after` (7 days) and says so in its manifest, so ingest frees that
/// sensor's place among `max_sensors` for a new patient. Before, every place
/// was held for as long as the host ran: a device running for months filled
/// its cap, and every new patient's readings were dead-lettered
/// (`too-many-sensors`): no alert for them, ever.
///
/// A clock 100,000 times real time runs the week in seconds.
#[tokio::test(flavor = "multi_thread")]
async fn a_sensor_silent_for_a_week_gives_its_place_to_a_new_patient() {
    let local = NatsServer::start();
    let clock = "[clock]\nstart = \"2031-01-01T00:00:00Z\"\nspeed = 100000\n";
    let mut device = Device::with_tick(
        &local,
        None,
        "5m",
        &format!("[plugins.limits]\nmax_sensors = 2\n{clock}"),
    );
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    let mut returning = subscribe_alerts(&client, "glucose-monitor").await;
    client.flush().await.unwrap();
    let publish = |sensor: &'static str, value: f64, at_ms: i64| {
        let client = client.clone();
        async move {
            client
                .publish(format!("sensors.cgm.{sensor}"), reading(at_ms, value))
                .await
                .unwrap();
            client.flush().await.unwrap();
        }
    };

    let now = fill_the_cap_and_wait_a_week(
        &client,
        &publish,
        [("discharged", 120.0), ("discharged-too", 120.0)],
        ("admitted", 45.0),
    )
    .await;
    publish("admitted", 45.0, now).await;
    alert_for(&mut alerts, "cgm.admitted", "urgent-low").await;
    // The second place is free too: one of the old patients comes back, as
    // a new one, and the other, now, is the one too many.
    publish("discharged", 45.0, clock_ms(&host_status(&client).await)).await;
    status_until(&client, "the returning patient taken", |s| {
        s["plugins"][0]["readings_in"] == 4
    })
    .await;
    // The plugin forgot it too: back, it is a new sensor, with no
    // `signal-loss-resolved` for the week-old outage (a remembered one
    // would resolve it at its first reading).
    let codes = codes_until(&mut returning, "cgm.discharged", "urgent-low").await;
    assert_eq!(codes, ["signal-loss", "urgent-low"]);
    one_too_many_again(device, &client, |now| publish("discharged-too", 120.0, now)).await;
}

/// The same for threshold (0.2.3): fridges' probes are replaced and freezers
/// taken out of service. Before, threshold kept every probe it was ever
/// given and its manifest declared no `forgets_sensors_after_h`: once
/// `max_sensors` probes had reported since the host started, every new
/// probe's readings were dead-lettered, and no temperature alert came for it.
#[tokio::test(flavor = "multi_thread")]
async fn a_probe_silent_for_a_week_gives_its_place_to_a_new_one() {
    let local = NatsServer::start();
    let clock = "[clock]\nstart = \"2031-01-01T00:00:00Z\"\nspeed = 100000\n";
    let mut device = Device::with_plugins(
        &local,
        None,
        "5m",
        &format!("[[plugins]]\nbundle = \"threshold.wasm\"\n[plugins.limits]\nmax_sensors = 2\n{clock}"),
    );
    let (client, mut alerts) = device.start_watching(&local, "threshold").await;
    let publish = |probe: &'static str, value: f64, at_ms: i64| {
        let client = client.clone();
        async move {
            let payload = format!(r#"{{"ts":{at_ms},"value":{value},"unit":"degC"}}"#);
            client
                .publish(format!("sensors.temperature.{probe}"), payload.into())
                .await
                .unwrap();
            client.flush().await.unwrap();
        }
    };

    let now =
        fill_the_cap_and_wait_a_week(&client, &publish, [("replaced", 9.0), ("retired", 5.0)], ("new", 9.0)).await;
    publish("new", 9.0, now).await;
    alert_for(&mut alerts, "temperature.new", "above-high").await;
    // The second place is free too. The plugin forgot the probe as well,
    // within the week (it holds no more probes than the places the host
    // gives it): back in range, it has no `above-high-resolved` to send for
    // its week-old alert, as a remembered probe would.
    publish("replaced", 5.0, clock_ms(&host_status(&client).await)).await;
    publish("replaced", 1.0, clock_ms(&host_status(&client).await) + 1).await;
    let codes = codes_until(&mut alerts, "temperature.replaced", "below-low").await;
    assert_eq!(codes, ["below-low"]);
    // A third probe is the one too many.
    one_too_many_again(device, &client, |now| publish("retired", 5.0, now)).await;
}

/// `[clock]` starting `behind` real time, running `speed` times as fast,
/// with JetStream input from the `SENSORS` stream: the clock of a device
/// without a real-time clock (at 61, set right some minutes after it started).
fn clock_behind_with_jetstream(behind: time::Duration, speed: u32) -> String {
    let start = time::OffsetDateTime::now_utc() - behind;
    let start = start.format(&time::format_description::well_known::Rfc3339).unwrap();
    format!("[clock]\nstart = \"{start}\"\nspeed = {speed}\n\n{JETSTREAM_INPUT}")
}

/// Sensor readings from the `SENSORS` stream.
const JETSTREAM_INPUT: &str = "[ingest]\nsource = \"jetstream\"\nstream = \"SENSORS\"\n";

/// A local server with JetStream and the `SENSORS` stream, and a JetStream
/// context to publish to it.
async fn local_with_sensors_stream() -> (NatsServer, async_nats::jetstream::Context) {
    let local = NatsServer::start_with_jetstream();
    let publisher = async_nats::connect(local.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(publisher);
    create_sensors_stream(&jetstream).await;
    (local, jetstream)
}

/// A device whose clock is behind when it starts (no real-time clock, NTP
/// not reached yet) finds its JetStream backlog "from the future". Before,
/// every one of those readings was dead-lettered and acknowledged: gone
/// from the stream, and those patients' lows never alerted once the clock
/// was right. The stream now keeps them while no reading is taken, and they
/// are given once the clock is right (here ten minutes behind, `max_future`
/// five minutes: five minutes of the clock, 5 s of real time). The older
/// part of a backlog, from before the clock the device booted with (a clock
/// saved at shutdown and restored at boot, as `fake-hwclock` does), is
/// taken: that is no sign that the clock is right.
#[tokio::test(flavor = "multi_thread")]
async fn with_jetstream_input_readings_from_the_future_wait_in_the_stream_for_the_clock() {
    let (local, jetstream) = local_with_sensors_stream().await;
    let before_the_boot = now_ms() - 10 * MINUTE_MS;
    publish_acked(&jetstream, "sensors.cgm.p0", reading(before_the_boot, 120.0)).await;
    for patient in ["p1", "p2"] {
        publish_acked(&jetstream, format!("sensors.cgm.{patient}"), reading(now_ms(), 45.0)).await;
    }
    let mut device = Device::new(
        &local,
        None,
        &clock_behind_with_jetstream(time::Duration::minutes(10), 61),
    );
    let (client, mut alerts) = device.start_watching(&local, ">").await;
    let message = degraded_message(&mut alerts).await;
    assert_contains(&message, "held in the stream");
    assert_contains(&message, "clock is probably behind");
    for patient in ["cgm.p1", "cgm.p2"] {
        alert_for(&mut alerts, patient, "urgent-low").await;
    }
    let status = host_status(&client).await;
    assert_eq!(deadletters(&status, "future"), 0, "{status}");
    assert!(status["ingest"]["held_for_clock"].as_u64() >= Some(2), "{status}");
    device.terminate_cleanly().await;
}

/// A low published now, read by a device whose clock is half an hour behind
/// (at 61x): the device, its status once the reading is dead-lettered as
/// `future`, and the consumer's `max_deliver` once it has nothing pending
/// and nothing unacknowledged.
async fn held_then_dead_lettered(
    local: &NatsServer,
    jetstream: &async_nats::jetstream::Context,
) -> (Device, Value, i64) {
    publish_acked(jetstream, "sensors.cgm.p1", reading(now_ms(), 45.0)).await;
    let mut device = Device::new(
        local,
        None,
        &clock_behind_with_jetstream(time::Duration::minutes(30), 61),
    );
    let client = device.start(local).await;
    let status = status_until(&client, "the reading dead-lettered", |s| deadletters(s, "future") == 1).await;
    let stream = jetstream.get_stream("SENSORS").await.unwrap();
    let consumer = format!("edgewise-{DEVICE}-glucose-monitor");
    let max_deliver = poll_until("the message acknowledged", WAIT, || {
        let (stream, consumer) = (&stream, &consumer);
        async move {
            match stream.consumer_info(consumer).await {
                Ok(info) if info.num_ack_pending == 0 && info.num_pending == 0 => Ok(info.config.max_deliver),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    (device, status, max_deliver)
}

/// The stream keeps readings from the future for ten minutes of the clock at
/// most: a clock still behind after that (here half an hour behind) has
/// them dead-lettered, as a plugin's ack-pending messages are bounded.
#[tokio::test(flavor = "multi_thread")]
async fn with_jetstream_input_readings_from_the_future_are_dead_lettered_after_ten_minutes_of_the_clock() {
    let (local, jetstream) = local_with_sensors_stream().await;
    let (mut device, status, _) = held_then_dead_lettered(&local, &jetstream).await;
    assert!(status["ingest"]["held_for_clock"].as_u64() >= Some(20), "{status}");
    device.terminate_cleanly().await;
}

/// A consumer made beforehand (by an operator, or an older host) with its own
/// `max_deliver` of 5: a message from the future is held 4 times, then
/// dead-lettered as `future`. Held as often as the host's own limit (20), it
/// would be delivered no more after its fifth delivery: never given, never
/// dead-lettered, gone without a word.
#[tokio::test(flavor = "multi_thread")]
async fn with_jetstream_input_a_consumers_own_max_deliver_ends_the_holds_before_the_server_gives_up() {
    let (local, jetstream) = local_with_sensors_stream().await;
    let stream = jetstream.get_stream("SENSORS").await.unwrap();
    stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some(format!("edgewise-{DEVICE}-glucose-monitor")),
            filter_subjects: vec!["sensors.cgm.>".into()],
            ack_policy: async_nats::jetstream::consumer::AckPolicy::Explicit,
            max_deliver: 5,
            ..Default::default()
        })
        .await
        .unwrap();
    let (mut device, status, max_deliver) = held_then_dead_lettered(&local, &jetstream).await;
    assert_eq!(status["ingest"]["held_for_clock"], 4, "{status}");
    assert_eq!(max_deliver, 5, "the consumer keeps its own limit");
    device.terminate_cleanly().await;
}

/// Only while no reading is taken: a sensor whose own clock is ahead, among
/// others taken, is dead-lettered at once (its messages would otherwise sit
/// unacknowledged in the consumer for ten minutes each).
#[tokio::test(flavor = "multi_thread")]
async fn with_jetstream_input_a_sensor_from_the_future_among_others_is_dead_lettered_at_once() {
    let (local, jetstream) = local_with_sensors_stream().await;
    let mut device = Device::new(&local, None, JETSTREAM_INPUT);
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    publish_acked(&jetstream, "sensors.cgm.p1", reading(now_ms(), 45.0)).await;
    alert_for(&mut alerts, "cgm.p1", "urgent-low").await;
    let day_ahead = now_ms() + 24 * 3600 * 1000;
    publish_acked(&jetstream, "sensors.cgm.p2", reading(day_ahead, 45.0)).await;
    let status = status_until(&client, "the reading dead-lettered", |s| deadletters(s, "future") == 1).await;
    assert_eq!(status["ingest"]["held_for_clock"], 0, "{status}");
    device.terminate_cleanly().await;
}

/// Readings held for the clock are in the stream, not in the host: after a
/// `kill -9`, the host restarted with its clock set right gives each of
/// them to the plugin, once.
#[tokio::test(flavor = "multi_thread")]
async fn readings_held_for_the_clock_survive_a_crash_and_are_given_once_when_it_is_right() {
    let (local, jetstream) = local_with_sensors_stream().await;
    for patient in ["p1", "p2"] {
        publish_acked(&jetstream, format!("sensors.cgm.{patient}"), reading(now_ms(), 45.0)).await;
    }
    let mut device = Device::new(&local, None, &clock_behind_with_jetstream(time::Duration::hours(2), 1));
    let client = device.start(&local).await;
    status_until(&client, "both readings held", |s| {
        s["ingest"]["held_for_clock"].as_u64() >= Some(2)
    })
    .await;
    device.kill();
    device.edit_config(|config| {
        let (clock, rest) = config.split_once("[clock]").unwrap();
        let (_, input) = rest.split_once("[ingest]").unwrap();
        format!("{clock}[ingest]{input}")
    });
    let (_client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    // After the held ones in the stream: when its alert comes, theirs came.
    publish_acked(&jetstream, "sensors.cgm.p3", reading(now_ms(), 45.0)).await;
    let seen = crate::support::collect_until(&mut alerts, "p3's urgent-low", |seen| {
        seen.iter()
            .any(|(_, a)| a["sensor"] == "cgm.p3" && a["code"] == "urgent-low")
    })
    .await;
    let mut lows: Vec<&str> = seen
        .iter()
        .filter(|(_, a)| a["code"] == "urgent-low")
        .map(|(_, a)| a["sensor"].as_str().unwrap())
        .collect();
    lows.sort_unstable();
    assert_eq!(lows, ["cgm.p1", "cgm.p2", "cgm.p3"]);
    device.terminate_cleanly().await;
}

/// With JetStream input, a plugin's subscriptions changed in the
/// configuration apply from the next start: the durable consumer made for
/// the old ones takes the new filters, and keeps its place in the stream.
/// Before, the consumer kept the filters it was first made with, for good
/// (the client takes an existing consumer as it is): readings on the new
/// subjects never reached the plugin, so those patients' lows were never
/// alerted, while readings on the subjects it no longer reads still were.
#[tokio::test(flavor = "multi_thread")]
async fn with_jetstream_input_changed_subscriptions_apply_from_the_next_start() {
    let (local, jetstream) = local_with_sensors_stream().await;
    let subscribed = format!("subscriptions = [\"sensors.cgm.>\"]\n{JETSTREAM_INPUT}");
    let mut device = Device::new(&local, None, &subscribed);
    let (_client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    publish_acked(&jetstream, "sensors.cgm.p1", reading(now_ms(), 45.0)).await;
    alert_for(&mut alerts, "cgm.p1", "urgent-low").await;
    device.terminate_cleanly().await;

    device.edit_config(|config| config.replace("sensors.cgm.>", "sensors.ward.>"));
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    // The old subject first: were it still read, its alert would come first.
    publish_acked(&jetstream, "sensors.cgm.p2", reading(now_ms(), 45.0)).await;
    publish_acked(&jetstream, "sensors.ward.p3", reading(now_ms(), 45.0)).await;
    let seen = crate::support::collect_until(&mut alerts, "ward.p3's urgent-low", |seen| {
        seen.iter()
            .any(|(_, a)| a["sensor"] == "ward.p3" && a["code"] == "urgent-low")
    })
    .await;
    assert!(!seen.iter().any(|(_, a)| a["sensor"] == "cgm.p2"), "{seen:?}");
    let status = host_status(&client).await;
    assert_eq!(status["plugins"][0]["readings_in"], 1, "{status}");
    let consumer = jetstream
        .get_stream("SENSORS")
        .await
        .unwrap()
        .consumer_info(format!("edgewise-{DEVICE}-glucose-monitor"))
        .await
        .unwrap()
        .clone();
    assert_eq!(consumer.config.filter_subjects, ["sensors.ward.>"]);
    device.terminate_cleanly().await;
}
