//! `edgewise run` as a device runs it: the real binary, real nats-servers
//! (a local bus and a cloud with JetStream), real signed bundles.

use std::time::Duration;

use futures::StreamExt;

use serde_json::Value;

use crate::device::{DEVICE, Device, WAIT, now_ms, reading, with_credentials};
use crate::hostile_plugins::V0_1;
use crate::support::{
    assert_contains, cli_status, cli_status_until, create_sensors_stream, host_status, next_json, plugin,
    publish_acked, status_until, subscribe_alerts, upstream_alerts, upstream_alerts_where, upstream_messages,
    upstream_messages_via, value_until,
};
use edgewise_tests::edgewise;
use edgewise_tests::nats::NatsServer;

#[tokio::test(flavor = "multi_thread")]
async fn a_low_glucose_reading_alerts_locally_and_upstream_once() {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let mut device = Device::new(&local, Some(&cloud), "");
    let client = device.start(&local).await;
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    client.flush().await.unwrap();
    client
        .publish("sensors.cgm.patient-7", reading(now_ms(), 49.0))
        .await
        .unwrap();
    let alert = next_json(&mut alerts, "local alert").await;
    assert_eq!(alert["code"], "urgent-low");
    // No `sensor` in the payload: the subject without its first token.
    assert_eq!(alert["sensor"], "cgm.patient-7");
    assert_eq!(alert["device"], DEVICE);
    assert_eq!(alert["value"], 49.0);
    let upstream = upstream_alerts(&cloud, 1).await;
    assert_eq!(upstream.len(), 1, "{upstream:?}");
    assert_eq!(upstream[0].0, format!("edgewise.{DEVICE}.up.alerts.glucose-monitor"));
    assert_eq!(upstream[0].1, alert);
    device.terminate_cleanly().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_payloads_are_dead_lettered_while_valid_ones_flow() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "");
    let client = device.start(&local).await;
    let mut dead = client.subscribe(format!("edgewise.{DEVICE}.deadletter")).await.unwrap();
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    client.flush().await.unwrap();
    let oversize = format!(r#"{{"ts":1,"value":1,"pad":"{}"}}"#, "x".repeat(70_000));
    let bad: [(&str, String, &str); 6] = [
        ("not JSON", "hello".into(), "payload is not JSON"),
        ("no value", r#"{"ts":1434300000000}"#.into(), "missing `value`"),
        (
            "NaN",
            r#"{"ts":1434300000000,"value":NaN}"#.into(),
            "payload is not JSON",
        ),
        (
            "string value",
            r#"{"ts":1434300000000,"value":"49"}"#.into(),
            "`value` must be a number",
        ),
        ("oversize", oversize, "over the 65536-byte limit"),
        (
            "bad ts",
            r#"{"ts":"yesterday","value":49}"#.into(),
            "`ts` must be milliseconds",
        ),
    ];
    for (_, payload, _) in &bad {
        client.publish("sensors.cgm.p1", payload.clone().into()).await.unwrap();
    }
    client.publish("sensors.cgm.p1", reading(now_ms(), 49.0)).await.unwrap();
    for (case, _, reason) in &bad {
        let letter = next_json(&mut dead, &format!("dead letter for {case}")).await;
        assert_eq!(letter["subject"], "sensors.cgm.p1", "{case}");
        assert!(letter["reason"].as_str().unwrap().contains(reason), "{case}: {letter}");
    }
    let alert = next_json(&mut alerts, "alert after the bad messages").await;
    assert_eq!(alert["code"], "urgent-low");
    let status = cli_status(&local);
    assert_eq!(status["ingest"]["deadlettered"], 6);
    assert_eq!(status["ingest"]["messages"], 7);
    device.terminate_cleanly().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_plugins_with_overlapping_subscriptions_each_get_their_readings() {
    let local = NatsServer::start();
    let threshold = "[[plugins]]\nbundle = \"threshold.wasm\"\nsubscriptions = [\"sensors.>\"]\n\
                     [plugins.config]\nlow = 70\nhigh = 180\n";
    let mut device = Device::new(&local, None, threshold);
    let client = device.start(&local).await;
    let mut glucose = subscribe_alerts(&client, "glucose-monitor").await;
    let mut generic = subscribe_alerts(&client, "threshold").await;
    client.flush().await.unwrap();
    client.publish("sensors.cgm.p1", reading(now_ms(), 49.0)).await.unwrap();
    assert_eq!(
        next_json(&mut glucose, "glucose-monitor alert").await["code"],
        "urgent-low"
    );
    assert_eq!(next_json(&mut generic, "threshold alert").await["code"], "below-low");
    let status = edgewise(["status", "--nats", &local.url(), "--device", DEVICE]);
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    for name in ["glucose-monitor", "threshold"] {
        assert_contains(&status.stdout, name);
    }
    device.terminate_cleanly().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_with_several_subscriptions_gets_the_readings_of_each_and_no_others() {
    let local = NatsServer::start();
    let threshold = "[[plugins]]\nbundle = \"threshold.wasm\"\n\
                     subscriptions = [\"sensors.ward.a\", \"sensors.ward.b\"]\n\
                     [plugins.config]\nlow = 70\nhigh = 180\n";
    let mut device = Device::new(&local, None, threshold);
    let client = device.start(&local).await;
    let mut alerts = subscribe_alerts(&client, "threshold").await;
    client.flush().await.unwrap();
    // `c` is not subscribed: it must not reach the plugin, though it comes first.
    for subject in ["sensors.ward.c", "sensors.ward.a", "sensors.ward.b"] {
        client.publish(subject, reading(now_ms(), 50.0)).await.unwrap();
    }
    let mut sensors = Vec::new();
    for _ in 0..2 {
        let alert = next_json(&mut alerts, "threshold alert").await;
        assert_eq!(alert["code"], "below-low", "{alert}");
        sensors.push(alert["sensor"].as_str().unwrap_or_default().to_owned());
    }
    sensors.sort();
    assert_eq!(sensors, ["ward.a", "ward.b"]);
    let status = cli_status(&local);
    assert_eq!(plugin(&status, "threshold")["readings_in"], 2, "{status}");
    device.terminate_cleanly().await;
}

/// A low reading from each of three sensors (`cgm.a`, `cgm.b`, `cgm.c`), and
/// the urgent-low alert of each on the local bus.
async fn three_urgent_lows(client: &async_nats::Client, alerts: &mut async_nats::Subscriber) {
    for sensor in ["a", "b", "c"] {
        client
            .publish(format!("sensors.cgm.{sensor}"), reading(now_ms(), 45.0))
            .await
            .unwrap();
    }
    for _ in 0..3 {
        next_json(alerts, "local urgent-low alert").await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_down_at_start_then_up_delivers_everything_once() {
    let local = NatsServer::start();
    let mut cloud = NatsServer::start_with_jetstream();
    cloud.stop();
    let mut device = Device::new(&local, Some(&cloud), "");
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    three_urgent_lows(&client, &mut alerts).await;
    // An alert is published locally before the outbox commits it.
    let status = cli_status_until(&local, WAIT, "the three alerts kept in the outbox", |s| {
        s["outbox"]["alerts"] == 3
    })
    .await;
    assert_eq!(status["upstream_connected"], false);
    cloud.start_again();
    upstream_alerts(&cloud, 3).await;
    // Once the host has stopped, nothing more can arrive: a duplicate would be there.
    let last = device.final_status().await;
    assert_eq!(last["outbox"]["alerts"], 0, "{last}");
    let upstream = upstream_alerts(&cloud, 3).await;
    assert_eq!(upstream.len(), 3, "delivered once: {upstream:?}");
    let mut sensors: Vec<&str> = upstream.iter().map(|(_, m)| m["sensor"].as_str().unwrap()).collect();
    sensors.sort();
    assert_eq!(sensors, ["cgm.a", "cgm.b", "cgm.c"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_zero_and_loses_nothing() {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    // Readings of 2015, on the wall clock: past the default `[ingest] max_age`.
    let mut device = Device::new(&local, Some(&cloud), "[ingest]\nmax_age = \"36500d\"\n");
    let client = device.start(&local).await;
    // Two hours of 5-minute readings for 5 sensors, swinging through every band:
    // alerts and hourly summaries.
    let start = 1_434_300_000_000i64 - 1_434_300_000_000 % 3_600_000;
    for step in 0..24 {
        for sensor in 0..5 {
            let value = [45.0, 60.0, 120.0, 200.0, 300.0][(step / 3 + sensor) % 5];
            client
                .publish(
                    format!("sensors.cgm.s{sensor}"),
                    reading(start + step as i64 * 300_000, value),
                )
                .await
                .unwrap();
        }
    }
    client.flush().await.unwrap();
    // SIGTERM once the host has taken every message off the bus (and is
    // connected upstream): the shutdown must still hand each reading to the
    // plugin, and each output upstream or to the outbox.
    status_until(&client, "the host to take the 120 readings", |s| {
        s["ingest"]["messages"] == 120 && s["upstream_connected"] == true
    })
    .await;
    let last = device.final_status().await;
    // The final status counts what was emitted and what stayed in the outbox.
    let sum = |field: &str| -> u64 {
        last["plugins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[field].as_u64().unwrap())
            .sum()
    };
    assert_eq!(sum("readings_in"), 120, "every reading reached the plugin: {last}");
    let emitted = (sum("alerts_out") + sum("summaries_out")) as usize;
    assert!(emitted > 0, "{last}");
    let kept = (last["outbox"]["alerts"].as_u64().unwrap() + last["outbox"]["summaries"].as_u64().unwrap()) as usize;
    let upstream = upstream_messages(&cloud, emitted - kept).await;
    assert_eq!(upstream.len() + kept, emitted, "delivered + kept = emitted: {last}");
}

/// `[outbox] max_age` is enforced by a running host: entries left by an earlier
/// run expire at start, entries written while it runs expire about `max_age`
/// later, and each is counted by reason in the status.
#[tokio::test(flavor = "multi_thread")]
async fn outbox_entries_older_than_max_age_expire_and_are_counted() {
    let local = NatsServer::start();
    // No upstream: every output stays in the outbox.
    let mut device = Device::new(&local, None, "");
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    three_urgent_lows(&client, &mut alerts).await;
    // The default age limit (30 days) keeps them.
    let status = cli_status_until(&local, WAIT, "3 alerts in the outbox", |s| s["outbox"]["alerts"] == 3).await;
    assert_eq!(status["outbox"]["dropped"]["expired_alerts"], 0, "{status}");
    // Older than the 1 s limit of the restart below, as the host counts age,
    // so they expire at start. The three were stored within moments of each
    // other: 1.5 s for the oldest leaves the youngest over 1 s (one that is
    // not yet would expire a sweep later, which the wait below allows).
    cli_status_until(&local, WAIT, "the outbox entries to be 1.5 s old", |s| {
        s["outbox"]["oldest_age_ms"].as_i64() >= Some(1_500)
    })
    .await;
    device.terminate_cleanly().await;

    // Restart with the shortest age limit: the three are older than it.
    device.edit_config(|config| config + "\n[outbox]\nmax_age = \"1s\"\n");
    device.start(&local).await;
    let status = cli_status_until(&local, Duration::from_secs(5), "expired at start", |s| {
        s["outbox"]["dropped"]["expired_alerts"] == 3
    })
    .await;
    assert_eq!(status["outbox"]["alerts"], 0, "{status}");
    assert_eq!(status["outbox"]["dropped"]["expired_summaries"], 0, "{status}");

    // An alert written now is delivered locally, stored, and expires about a
    // second later (checked every half second), without a restart.
    client.publish("sensors.cgm.d", reading(now_ms(), 45.0)).await.unwrap();
    next_json(&mut alerts, "local alert after the restart").await;
    let status = cli_status_until(&local, Duration::from_secs(5), "expired while running", |s| {
        s["outbox"]["dropped"]["expired_alerts"] == 4
    })
    .await;
    assert_eq!(status["outbox"]["alerts"], 0, "{status}");
    assert_eq!(
        status["plugins"][0]["alerts_out"], 1,
        "stored before it expired: {status}"
    );
    let human = edgewise(["status", "--nats", &local.url(), "--device", DEVICE]);
    assert_contains(&human.stdout, "dropped:    4 alerts, 0 summaries expired;");
    let stderr = device.terminate_cleanly().await;
    assert!(stderr.contains("expired undelivered"), "the expiry is logged: {stderr}");
}

#[test]
fn config_errors_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edgewise.toml");
    let cases = [
        (
            "device = \"d\"\ndata_dir = \"x\"\ntrust_dir = \".\"\ntick = \"soon\"\n[local]\nurl = \"nats://127.0.0.1:4222\"\n[[plugins]]\nbundle = \"missing.wasm\"\n[plugins.config]\nlevels = [1, 2]\n",
            vec![
                "tick: `soon`",
                "plugins[0].config.levels: [1, 2] must be a string, number or boolean",
            ],
        ),
        (
            "data_dir = \"x\"\ntrust_dir = \".\"\n[local]\nurl = \"nats://127.0.0.1:4222\"\n",
            vec!["device: ", "missing field `device`"],
        ),
        (
            "device = \"d e\"\ndata_dir = \"x\"\ntrust_dir = \"nope\"\n[local]\nurl = \"\"\n[[plugins]]\nbundle = \"x.wasm\"\nsubscriptions = [\"a..b\"]\n",
            vec![
                "device: `d e`",
                "trust_dir: ",
                "local.url: is empty",
                "plugins[0].subscriptions: `a..b`",
            ],
        ),
        (
            "device = \"d\"\ndata_dir = \"x\"\ntrust_dir = \".\"\nfrobnicate = 1\n[local]\nurl = \"nats://127.0.0.1:4222\"\n",
            vec!["frobnicate: "],
        ),
        (
            "device = \"d\"\ndata_dir = \"x\"\ntrust_dir = \".\"\n[local]\nurl = \"nats://127.0.0.1:4222\"\n\
             [supervisor]\nbackoff_initial = \"2s\"\nbackoff_max = \"1s\"\nquarantine_after = 0\nquarantine_cooldown = \"later\"\n\
             [[plugins]]\nbundle = \"x.wasm\"\n[plugins.limits]\nmemory_mb = 0\n",
            vec![
                "supervisor.backoff_max: must not be below `backoff_initial`",
                "supervisor.quarantine_after: 0 must be between 1 and 1000",
                "supervisor.quarantine_cooldown: `later`",
                "plugins[0].limits.memory_mb: must be greater than 0",
            ],
        ),
        (
            "device = \"d\"\ndata_dir = \"x\"\ntrust_dir = \".\"\n[local]\nurl = \"nats://127.0.0.1:4222\"\n\
             [[plugins]]\nbundle = \"x.wasm\"\n[plugins.limits]\nheap = 3\n",
            vec!["unknown field `heap`"],
        ),
        (
            "device = \"d\"\ndata_dir = \"x\"\ntrust_dir = \".\"\n[local]\nurl = \"nats://127.0.0.1:4222\"\n\
             [outbox]\nmax_mb = 0\nmax_age = \"a while\"\n[[plugins]]\nbundle = \"x.wasm\"\n",
            vec![
                "outbox.max_mb: 0 must be between 1 and 1048576",
                "outbox.max_age: `a while`",
            ],
        ),
        (
            "device = \"d\"\ndata_dir = \"x\"\ntrust_dir = \".\"\n[local]\nurl = \"nats://127.0.0.1:4222\"\n\
             [outbox]\nmax_mb = -1\nmax_age = \"10ms\"\n[[plugins]]\nbundle = \"x.wasm\"\n",
            vec![
                "outbox.max_mb: -1 must be between 1 and 1048576",
                "outbox.max_age: `10ms` must be at least 1s",
            ],
        ),
        (
            "device = \"d\"\ndata_dir = \"x\"\ntrust_dir = \".\"\n[local]\nurl = \"nats://127.0.0.1:4222\"\n\
             [outbox]\nmax_size = \"1G\"\n[[plugins]]\nbundle = \"x.wasm\"\n",
            vec![
                "max_size: ",
                "unknown field `max_size`, expected one of `max_mb`, `max_age`, `input_log`, `log_max_mb`",
            ],
        ),
    ];
    let summary = dir.path().join("summary.json");
    for (text, expected) in cases {
        std::fs::write(&config, text).unwrap();
        let run = edgewise([
            "run".as_ref(),
            "--config".as_ref(),
            config.as_os_str(),
            "--summary-json".as_ref(),
            summary.as_os_str(),
        ]);
        assert_eq!(run.code, Some(2), "{text}\n{}", run.stderr);
        for key in expected {
            assert_contains(&run.stderr, key);
        }
        assert!(!summary.exists(), "a host that did not run writes no final status");
    }
    // A good configuration (a bundle that is not there is refused at start,
    // not here), but the final status could not be written at the exit:
    // said at once.
    std::fs::write(
        &config,
        "device = \"d\"\ndata_dir = \"x\"\ntrust_dir = \".\"\n[local]\nurl = \"nats://127.0.0.1:1\"\n[[plugins]]\nbundle = \"x.wasm\"\n",
    )
    .unwrap();
    let nowhere = dir.path().join("no-such-folder/summary.json");
    let run = edgewise([
        "run".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
        "--summary-json".as_ref(),
        nowhere.as_os_str(),
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(&run.stderr, "--summary-json");
    assert_contains(&run.stderr, "does not exist");
    assert!(!dir.path().join("x").exists(), "nothing started: {}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn jetstream_source_processes_readings_published_while_the_host_was_down() {
    let local = NatsServer::start_with_jetstream();
    let client = async_nats::connect(local.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client.clone());
    create_sensors_stream(&jetstream).await;
    // Published before the host exists.
    publish_acked(&jetstream, "sensors.cgm.early", reading(now_ms(), 48.0)).await;

    let ingest = "[ingest]\nsource = \"jetstream\"\nstream = \"SENSORS\"\n";
    let mut device = Device::new(&local, None, ingest);
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    client.flush().await.unwrap();
    device.start(&local).await;
    let alert = next_json(&mut alerts, "alert for a reading published before start").await;
    assert_eq!(
        (alert["code"].as_str(), alert["sensor"].as_str()),
        (Some("urgent-low"), Some("cgm.early"))
    );
    device.terminate_cleanly().await;

    // Down again: published now, processed at the next start, and the first
    // reading (acknowledged) is not processed twice.
    publish_acked(&jetstream, "sensors.cgm.late", reading(now_ms(), 47.0)).await;
    device.start(&local).await;
    let alert = next_json(&mut alerts, "alert for a reading published while down").await;
    assert_eq!(alert["sensor"], "cgm.late");
    let status = cli_status(&local);
    assert_eq!(status["plugins"][0]["readings_in"], 1, "only the new reading: {status}");
    device.terminate_cleanly().await;
}

/// Publishing a recording over NATS gives the same alerts and summaries as
/// `edgewise replay` of that recording, ignoring `device`, `seq`, emission
/// order, and what the end of the recording leaves open (windows not yet
/// closed, outages after the last reading). This is what makes replay in CI
/// meaningful.
///
/// The live run plays six days on a simulated clock. Its outputs match the
/// replay's as long as no tick passes a reading the plugin has not had yet,
/// so the test paces the readings on the host: each is published well ahead
/// of the host's clock ([`LEAD_MS`]) and must have reached the plugin before
/// the clock gets to it, which the test checks at every step. A machine too
/// slow for that at the first speed gets the run again on a slower clock:
/// the outcome does not depend on the machine's speed, only the time it takes.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_run_gives_the_same_outputs_as_a_replay() {
    const SUBJECT: &str = "Subject 3";
    let csv = std::fs::read_to_string(edgewise_tests::data_file("cgm/ExampleData5Subjects.csv")).unwrap();
    let readings = crate::metrics_crosscheck::read_recording(&csv).remove(SUBJECT).unwrap();
    let last_ts = readings[readings.len() - 1].0;

    // Six days of data in about 15 s; then 4 and 16 times slower.
    let mut speeds = [36_000.0, 9_000.0, 2_250.0].into_iter();
    let (live, device) = loop {
        let speed = speeds.next().unwrap();
        match live_run(&readings, speed).await {
            Ok(done) => break done,
            Err(behind) if speeds.len() > 0 => eprintln!("at {speed}x: {behind}; again on a slower clock"),
            Err(behind) => panic!("at {speed}x too: {behind}"),
        }
    };

    // The replay of the same recording through the same bundle.
    let recording = device.path("subject-3.csv");
    let rows: String = csv
        .lines()
        .filter(|l| l.starts_with("\"id\"") || l.starts_with(&format!("\"{SUBJECT}\"")))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&recording, rows).unwrap();
    let replay = device.replay(&recording, &[]);
    assert_eq!(replay.code, Some(0), "{}", replay.stderr);
    let replayed = output_lines(&replay.stdout);

    // Compare as multisets, without device and seq, within what both runs closed.
    let comparable = |outputs: &[Value]| -> Vec<String> {
        let mut kept: Vec<String> = outputs
            .iter()
            .filter(|o| match o["type"].as_str() {
                Some("alert") => o["ts"].as_i64().unwrap() <= last_ts,
                _ => o["window_end"].as_i64().unwrap() <= last_ts - 3_600_000,
            })
            .map(|o| {
                let mut o = o.as_object().unwrap().clone();
                o.remove("device");
                o.remove("seq");
                serde_json::to_string(&o).unwrap()
            })
            .collect();
        kept.sort();
        kept
    };
    let (live, replayed) = (comparable(&live), comparable(&replayed));
    assert!(replayed.len() > 100, "the recording makes outputs: {}", replayed.len());
    let only_live: Vec<&String> = live.iter().filter(|l| !replayed.contains(l)).collect();
    let only_replay: Vec<&String> = replayed.iter().filter(|r| !live.contains(r)).collect();
    assert!(
        only_live.is_empty() && only_replay.is_empty() && live.len() == replayed.len(),
        "live {} vs replay {} outputs\nonly live: {only_live:#?}\nonly replay: {only_replay:#?}",
        live.len(),
        replayed.len()
    );
}

/// How far ahead of the host's clock the live run publishes (clock time):
/// at 36,000x, 1.2 s of real time for a reading to reach the plugin.
const LEAD_MS: i64 = 12 * 3_600_000;

/// How far (real time) the host's ticks trail its clock (`run::clock::TICK_LAG`).
const TICK_LAG: Duration = Duration::from_millis(200);

/// The live run of `readings` (sensor `Subject 3`) on a clock `speed` times
/// real time: what the cloud stored, and the device (for the replay). `Err`
/// if the host's clock reached a reading before the plugin had it.
async fn live_run(readings: &[(i64, f64)], speed: f64) -> Result<(Vec<Value>, Device), String> {
    let (first_ts, last_ts) = (readings[0].0, readings[readings.len() - 1].0);
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    // A simulated clock starting LEAD_MS before the first reading: time for
    // the host to start and the first readings to reach the plugin.
    let clock = format!(
        "[clock]\nstart = \"{}\"\nspeed = {speed}\n",
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(first_ts - LEAD_MS) * 1_000_000)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    // The payloads name the sensor as the recording does (`Subject 3`, not a
    // subject token): this subject is a trusted gateway. The readings come up
    // to LEAD_MS ahead of the host's clock, and its ticks trail that clock
    // (200 ms real): the host and glucose-monitor must accept them.
    let plugin = "payload_sensors = [\"sensors.cgm.subject-3\"]\n[plugins.config]\nmax_ahead = \"168h\"\n\
                  [ingest]\nmax_future = \"7d\"\n";
    let mut device = Device::with_tick(&local, Some(&cloud), "5m", &format!("{plugin}{clock}"));
    let client = device.start(&local).await;
    let mut published = 0;
    loop {
        let status = host_status(&client).await;
        let (clock_ms, taken) = (
            status["clock_ms"].as_i64().unwrap(),
            status["plugins"][0]["readings_in"].as_u64().unwrap() as usize,
        );
        // Every reading the ticks may have reached must be the plugin's
        // already: ticks trail the clock by TICK_LAG (real time), and this
        // loop looks more often than that.
        let ticks_ms = clock_ms - (TICK_LAG.as_secs_f64() * 1000.0 * speed) as i64;
        let due = readings.partition_point(|(ts, _)| *ts <= ticks_ms);
        if taken < due {
            return Err(format!(
                "the host's clock reached reading {due} when the plugin had {taken}: {status}"
            ));
        }
        if taken == readings.len() {
            break;
        }
        while published < readings.len() && readings[published].0 <= clock_ms + LEAD_MS {
            let (ts, value) = readings[published];
            let payload = format!(r#"{{"ts":{ts},"value":{value},"unit":"mg/dL","sensor":"Subject 3"}}"#);
            client.publish("sensors.cgm.subject-3", payload.into()).await.unwrap();
            published += 1;
        }
        client.flush().await.unwrap();
        // Pacing: look again once the host's clock has moved on by a step
        // (about 20 ms of real time, well within TICK_LAG), or the plugin has
        // taken more readings.
        let step_ms = (0.02 * 1000.0 * speed) as i64;
        value_until(
            "the host's clock to move on",
            WAIT,
            || host_status(&client),
            |now| {
                now["clock_ms"].as_i64().unwrap() >= clock_ms + step_ms
                    || now["plugins"][0]["readings_in"].as_u64().unwrap() as usize > taken
            },
        )
        .await;
    }
    // Let the clock run an hour past the last reading, then wait for the outbox to drain.
    let clock_time_left = Duration::from_secs_f64((LEAD_MS + 3_600_000) as f64 / speed / 1000.0);
    value_until(
        "the live run to settle",
        WAIT + clock_time_left,
        || host_status(&client),
        |now| {
            now["clock_ms"].as_i64().unwrap() > last_ts + 3_600_000
                && now["outbox"]["alerts"] == 0
                && now["outbox"]["summaries"] == 0
        },
    )
    .await;
    let live: Vec<Value> = upstream_messages(&cloud, 1)
        .await
        .into_iter()
        .map(|(_, message)| message)
        .collect();
    device.terminate_cleanly().await;
    Ok((live, device))
}

#[tokio::test(flavor = "multi_thread")]
async fn user_password_and_token_authentication() {
    let local = NatsServer::start_with_args(false, &["--user", "edge", "--pass", "s3cret"]);
    let cloud = NatsServer::start_with_args(true, &["--auth", "cl0ud-token"]);
    let mut device = Device::new(&local, Some(&cloud), "");
    // Same device, with the credentials each server wants.
    device.edit_config(|config| {
        let config = with_credentials(&config, &local, "user = \"edge\"\npassword = \"s3cret\"\n");
        with_credentials(&config, &cloud, "token = \"cl0ud-token\"\n")
    });
    let client = async_nats::ConnectOptions::with_user_and_password("edge".into(), "s3cret".into())
        .connect(local.url())
        .await
        .unwrap();
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    client.flush().await.unwrap();
    device.start_with(&client).await;
    client.publish("sensors.cgm.p1", reading(now_ms(), 49.0)).await.unwrap();
    assert_eq!(
        next_json(&mut alerts, "alert through an authenticated bus").await["code"],
        "urgent-low"
    );
    let cloud_client = async_nats::ConnectOptions::with_token("cl0ud-token".into())
        .connect(cloud.url())
        .await
        .unwrap();
    // Stored upstream, read through token authentication.
    upstream_messages_via(cloud_client, 1).await;
    device.terminate_cleanly().await;
}

/// The JSON lines of a replay's output.
pub(crate) fn output_lines(stdout: &str) -> Vec<Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The times `line` is in the device's log.
fn logged(device: &Device, line: &str) -> usize {
    std::fs::read_to_string(device.path("edgewise.log"))
        .unwrap_or_default()
        .matches(line)
        .count()
}

async fn logged_until(device: &Device, line: &str, times: usize) {
    crate::support::poll_until(&format!("`{line}` logged {times} times"), WAIT, || async {
        match logged(device, line) {
            n if n >= times => Ok(()),
            n => Err(format!("{n} times")),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_server_missing_at_start_or_lost_later_is_logged_as_an_error_once_and_its_return_resumes_alerts() {
    // The local bus carries the readings and the local alerts: a device
    // without it must say so, not look healthy (before, only the client's
    // own `info` lines, one per attempt, never at the default level).
    const LOST: &str = "The local NATS server cannot be reached";
    const BACK: &str = "The local NATS server is reachable again";
    let mut local = NatsServer::start();
    local.stop();
    let mut device = Device::new(&local, None, "");
    device.spawn();
    logged_until(&device, LOST, 1).await;
    let log = std::fs::read_to_string(device.path("edgewise.log")).unwrap();
    let line = log.lines().find(|l| l.contains(LOST)).unwrap();
    assert!(line.contains("ERROR") && line.contains(&local.url()), "{line}");
    assert!(line.contains("no alert goes out locally"), "{line}");

    local.start_again();
    let client = async_nats::connect(local.url()).await.unwrap();
    device.wait_ready(&client, WAIT).await;
    logged_until(&device, BACK, 1).await;
    urgent_low_alerted(&client, "cgm.a").await;

    // Lost while running (the server stopped), then back.
    local.stop();
    logged_until(&device, LOST, 2).await;
    local.start_again();
    let client = async_nats::connect(local.url()).await.unwrap();
    logged_until(&device, BACK, 2).await;
    urgent_low_alerted(&client, "cgm.b").await;
    // Once per outage, not once per attempt of the client.
    assert_eq!(logged(&device, LOST), 2);
    device.terminate_cleanly().await;
}

/// Publish an urgent low of `sensor` through `client` and wait for its
/// local alert (the host's subscriptions are back after a reconnection).
async fn urgent_low_alerted(client: &async_nats::Client, sensor: &str) {
    let mut alerts = subscribe_alerts(client, "glucose-monitor").await;
    client.flush().await.unwrap();
    // Published again until answered: one published before the host's
    // subscription is back is lost (core NATS), and that is not the point.
    let deadline = tokio::time::Instant::now() + WAIT;
    let alert: Value = loop {
        client
            .publish(format!("sensors.{sensor}"), reading(now_ms(), 49.0))
            .await
            .unwrap();
        if let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(1), alerts.next()).await {
            break serde_json::from_slice(&message.payload).unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no alert of {sensor} within {WAIT:?}"
        );
    };
    assert_eq!(
        (alert["code"].as_str(), alert["sensor"].as_str()),
        (Some("urgent-low"), Some(sensor)),
        "{alert}"
    );
}

/// Before: with no stream upstream for the device's subjects (the cloud's
/// operator had not made one, `create_stream = false`), every alert stayed in
/// the outbox, the status said `upstream: connected`, and nothing was logged.
#[tokio::test(flavor = "multi_thread")]
async fn no_stream_upstream_is_logged_as_an_error_once_and_delivery_starts_when_one_is_made() {
    const NO_STREAM: &str = "No stream upstream takes this device's outputs";
    const AGAIN: &str = "Upstream delivery works again";
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let mut device = Device::new(&local, Some(&cloud), "");
    device.edit_config(|config| config.replace("create_stream = true", "create_stream = false"));
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    client.publish("sensors.cgm.a", reading(now_ms(), 49.0)).await.unwrap();
    next_json(&mut alerts, "the local alert").await;
    logged_until(&device, NO_STREAM, 1).await;
    let log = std::fs::read_to_string(device.path("edgewise.log")).unwrap();
    let line = log.lines().find(|l| l.contains(NO_STREAM)).unwrap();
    for wanted in [
        "ERROR",
        "edgewise.dev-1.up.>",
        "EDGEWISE_UP",
        "edgewise.*.up.>",
        "create_stream = true",
    ] {
        assert!(line.contains(wanted), "`{wanted}` in {line}");
    }

    // The operator makes it, for every device: delivery starts, and says so.
    let cloud_client = async_nats::connect(cloud.url()).await.unwrap();
    async_nats::jetstream::new(cloud_client)
        .create_stream(async_nats::jetstream::stream::Config {
            name: crate::support::UP.to_owned(),
            subjects: vec!["edgewise.*.up.>".to_owned()],
            ..Default::default()
        })
        .await
        .unwrap();
    let upstream = upstream_alerts(&cloud, 1).await;
    assert_eq!(upstream.len(), 1, "{upstream:?}");
    logged_until(&device, AGAIN, 1).await;
    assert_eq!(logged(&device, NO_STREAM), 1, "once per episode, not once per round");
    device.terminate_cleanly().await;
}

/// A cloud stream that takes glucose-monitor's subjects but not another
/// plugin's (the cloud's operator made it so, `create_stream = false`):
/// faulty-plugin's 200 alerts, older, wait in the outbox, and glucose-
/// monitor's urgent-low behind them is delivered. Before, each round sent
/// the oldest 128 entries, found no stream for any of them, and nothing
/// behind them was ever delivered. Once the stream takes the other plugin's
/// subjects too, its alerts are delivered (each round sends the oldest).
#[tokio::test(flavor = "multi_thread")]
async fn outputs_no_stream_upstream_takes_do_not_hold_back_another_plugins_alerts() {
    const NO_STREAM: &str = "No stream upstream takes this subject";
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let jetstream = async_nats::jetstream::new(async_nats::connect(cloud.url()).await.unwrap());
    let mut stream = async_nats::jetstream::stream::Config {
        name: crate::support::UP.to_owned(),
        subjects: vec![format!("edgewise.{DEVICE}.up.*.glucose-monitor")],
        ..Default::default()
    };
    jetstream.create_stream(stream.clone()).await.unwrap();
    let chatty = V0_1.plugin_table("chatty", "burst = 200\n", "");
    let mut device = Device::new(&local, Some(&cloud), &chatty);
    device.edit_config(|config| config.replace("create_stream = true", "create_stream = false"));
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    V0_1.publish(&client, now_ms()).await;
    status_until(&client, "faulty-plugin's alerts waiting in the outbox", |s| {
        s["outbox"]["alerts"].as_u64() >= Some(200)
    })
    .await;
    client
        .publish("sensors.cgm.behind", reading(now_ms(), 45.0))
        .await
        .unwrap();
    next_json(&mut alerts, "the local alert").await;
    let stored = upstream_alerts_where(&cloud, "glucose-monitor's alert upstream", |alerts| {
        alerts.iter().any(|(_, alert)| alert["sensor"] == "cgm.behind")
    })
    .await;
    assert!(
        stored.iter().all(|(subject, _)| subject.ends_with(".glucose-monitor")),
        "{stored:?}"
    );
    let status = host_status(&client).await;
    assert!(
        status["outbox"]["alerts"].as_u64() >= Some(200),
        "faulty-plugin's alerts wait: {status}"
    );
    logged_until(&device, NO_STREAM, 1).await;
    let log = std::fs::read_to_string(device.path("edgewise.log")).unwrap();
    let line = log.lines().find(|l| l.contains(NO_STREAM)).unwrap();
    assert_contains(line, &format!("edgewise.{DEVICE}.up.alerts.{}", V0_1.name));

    // The operator widens the stream: the waiting alerts are delivered.
    stream.subjects = vec!["edgewise.*.up.>".to_owned()];
    jetstream.update_stream(stream).await.unwrap();
    upstream_alerts_where(&cloud, "every alert upstream", |alerts| {
        alerts
            .iter()
            .filter(|(subject, _)| subject.ends_with(V0_1.name))
            .count()
            >= 200
    })
    .await;
    status_until(&client, "the outbox empty of alerts", |s| s["outbox"]["alerts"] == 0).await;
    device.terminate_cleanly().await;
}

/// Any other failing delivery (here: the cloud's stream is full and
/// refuses new messages) is a `WARN`, once per episode, with the server's
/// reason; its end is said too, and nothing waiting is lost.
#[tokio::test(flavor = "multi_thread")]
async fn a_full_upstream_stream_is_logged_as_a_warning_once_and_everything_arrives_when_it_has_room() {
    const FAILS: &str = "Upstream delivery fails";
    const AGAIN: &str = "Upstream delivery works again";
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let jetstream = async_nats::jetstream::new(async_nats::connect(cloud.url()).await.unwrap());
    let full = async_nats::jetstream::stream::Config {
        name: crate::support::UP.to_owned(),
        subjects: vec!["edgewise.*.up.>".to_owned()],
        max_messages: 1,
        discard: async_nats::jetstream::stream::DiscardPolicy::New,
        ..Default::default()
    };
    jetstream.create_stream(full.clone()).await.unwrap();
    let mut device = Device::new(&local, Some(&cloud), "");
    device.edit_config(|config| config.replace("create_stream = true", "create_stream = false"));
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    for sensor in ["a", "b", "c"] {
        client
            .publish(format!("sensors.cgm.{sensor}"), reading(now_ms(), 49.0))
            .await
            .unwrap();
        next_json(&mut alerts, "the local alert").await;
    }
    logged_until(&device, FAILS, 1).await;
    // Many failed rounds later, still said once.
    status_until(&client, "ten failed delivery rounds", |s| {
        s["outbox"]["rounds_failed"].as_u64().unwrap_or(0) >= 10
    })
    .await;
    assert_eq!(logged(&device, FAILS), 1, "once per episode, not once per round");
    let log = std::fs::read_to_string(device.path("edgewise.log")).unwrap();
    let line = log.lines().find(|l| l.contains(FAILS)).unwrap();
    assert!(line.contains("WARN") && line.contains("maximum messages"), "{line}");
    assert_eq!(logged(&device, AGAIN), 0);

    // Room again: every alert arrives, and the end of the episode is said.
    jetstream
        .update_stream(async_nats::jetstream::stream::Config {
            max_messages: -1,
            ..full
        })
        .await
        .unwrap();
    let upstream = upstream_alerts(&cloud, 3).await;
    assert_eq!(upstream.len(), 3, "{upstream:?}");
    logged_until(&device, AGAIN, 1).await;
    assert_eq!(logged(&device, FAILS), 1);
    device.terminate_cleanly().await;
}

/// Before: two devices of one cloud with `create_stream = true` and the
/// same stream name: the first made the stream with its own subjects only,
/// the second found it and took it as it was, and none of its alerts ever
/// reached the cloud (nothing logged either).
#[tokio::test(flavor = "multi_thread")]
async fn two_devices_creating_one_upstream_stream_both_deliver() {
    let cloud = NatsServer::start_with_jetstream();
    let plugins = "[[plugins]]\nbundle = \"glucose-monitor.wasm\"\n";
    let mut devices = Vec::new();
    for id in ["ward-a", "ward-b"] {
        let local = NatsServer::start();
        let upstream = Some((cloud.url(), crate::support::UP.to_owned()));
        let mut device = Device::at(id, &local.url(), upstream, "100ms", plugins);
        let client = device.start(&local).await;
        devices.push((local, device, client));
    }
    for (_, _, client) in &devices {
        client.publish("sensors.cgm.p1", reading(now_ms(), 49.0)).await.unwrap();
        client.flush().await.unwrap();
    }
    let upstream = crate::support::upstream_alerts_where(&cloud, "an alert of each device upstream", |alerts| {
        ["ward-a", "ward-b"]
            .iter()
            .all(|id| alerts.iter().any(|(_, alert)| alert["device"] == *id))
    })
    .await;
    assert_eq!(upstream.len(), 2, "{upstream:?}");
    for (_, device, _) in &mut devices {
        device.terminate_cleanly().await;
    }
}
