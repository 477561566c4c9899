//! Issue #11, the runtime's part: a plugin cannot block the host through WASI,
//! reads the host's clock, cannot grow host memory through WASI resources,
//! cannot push an unbounded string into an alert, and gets no more than the
//! operator's host ceilings. Each test runs the real `edgewise run` on real
//! NATS with the hostile fixture beside glucose-monitor.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::device::{Device, WAIT, now_ms, reading};
use crate::support::{assert_contains, upstream_alerts_where};
use edgewise_tests::edgewise;
use edgewise_tests::nats::NatsServer;

/// How long SIGTERM may take before the test calls it a hang. Generous: the
/// host's own bound is a few seconds (the call deadline plus shutdown).
const TERMINATE_WAIT: Duration = Duration::from_secs(30);

/// The faulty plugin in `mode` with `config` lines and a 200 ms deadline.
fn faulty(mode: &str, config: &str) -> String {
    format!(
        "[[plugins]]\nbundle = \"faulty-plugin.wasm\"\n[plugins.config]\nfail = \"{mode}\"\n{config}\
         [plugins.limits]\ncall_deadline_ms = 200\n"
    )
}

/// Publish `readings` (subject, payload), then collect the device's alerts
/// until `done` says enough, or panic after [`WAIT`]. The readings are
/// published again whenever half a second passes without an alert: the
/// host answers status requests before its ingest has surely subscribed.
async fn publish_until(
    client: &async_nats::Client,
    readings: &[(&str, bytes::Bytes)],
    alerts: &mut async_nats::Subscriber,
    what: &str,
    mut done: impl FnMut(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let publish = || async {
        for (subject, payload) in readings {
            client.publish(subject.to_string(), payload.clone()).await.unwrap();
        }
    };
    publish().await;
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(&seen) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}; alerts so far: {seen:?}"
        );
        match tokio::time::timeout(Duration::from_millis(500), alerts.next()).await {
            Ok(Some(message)) => {
                let alert: Value = serde_json::from_slice(&message.payload).unwrap();
                seen.push((message.subject.to_string(), alert));
            }
            Ok(None) => panic!("the alert subscription ended"),
            Err(_) => publish().await,
        }
    }
    seen
}

fn is_degraded(subject: &str, alert: &Value) -> bool {
    subject.ends_with(".faulty-plugin") && alert["code"] == "plugin-degraded"
}

fn is_urgent_low(subject: &str, alert: &Value) -> bool {
    subject.ends_with(".glucose-monitor") && alert["code"] == "urgent-low"
}

/// SIGTERM the host and wait at most [`TERMINATE_WAIT`] for it to exit; a
/// host that hangs is killed and the test fails.
async fn terminate_within(mut device: Device) -> (Option<i32>, String) {
    device
        .terminate_within(TERMINATE_WAIT)
        .await
        .unwrap_or_else(|| panic!("edgewise run did not exit within {TERMINATE_WAIT:?} of SIGTERM"))
}

/// Publish a reading to the faulty plugin until its `plugin-degraded` has
/// come: the message of that alert.
async fn degraded_message(client: &async_nats::Client, alerts: &mut async_nats::Subscriber) -> String {
    let readings = [("sensors.hostile.h1", reading(now_ms(), 100.0))];
    let seen = publish_until(client, &readings, alerts, "plugin-degraded", |seen| {
        seen.iter().any(|(s, a)| is_degraded(s, a))
    })
    .await;
    let degraded = &seen.iter().find(|(s, a)| is_degraded(s, a)).unwrap().1;
    degraded["message"].as_str().unwrap().to_owned()
}

/// Publish a reading to the faulty plugin and a low one to glucose-monitor
/// until its `plugin-degraded` and glucose-monitor's `urgent-low` have come:
/// the message of the degraded alert.
async fn degraded_beside_an_urgent_low(client: &async_nats::Client, alerts: &mut async_nats::Subscriber) -> String {
    let readings = [
        ("sensors.hostile.h1", reading(now_ms(), 100.0)),
        ("sensors.cgm.p1", reading(now_ms(), 45.0)),
    ];
    let seen = publish_until(client, &readings, alerts, "plugin-degraded and urgent-low", |seen| {
        seen.iter().any(|(s, a)| is_degraded(s, a)) && seen.iter().any(|(s, a)| is_urgent_low(s, a))
    })
    .await;
    let degraded = &seen.iter().find(|(s, a)| is_degraded(s, a)).unwrap().1;
    degraded["message"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_sleeps_is_stopped_and_sigterm_still_exits() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, &faulty("sleep", "sleep_ms = 60000\n"));
    let (client, mut alerts) = device.start_watching(&local, ">").await;

    let message = degraded_beside_an_urgent_low(&client, &mut alerts).await;
    assert!(message.starts_with("blocking-call: "), "{message}");
    assert!(message.contains("would block"), "{message}");

    // The hostile plugin keeps failing that way (restarted, then
    // quarantined); glucose-monitor keeps alerting meanwhile.
    let readings = [
        ("sensors.hostile.h1", reading(now_ms(), 100.0)),
        ("sensors.cgm.p2", reading(now_ms(), 45.0)),
    ];
    publish_until(&client, &readings, &mut alerts, "a second urgent-low", |seen| {
        seen.iter()
            .any(|(_, a)| a["sensor"] == "cgm.p2" && a["code"] == "urgent-low")
    })
    .await;

    let (code, stderr) = terminate_within(device).await;
    assert_eq!(code, Some(0), "the host must exit cleanly:\n{stderr}");
    assert!(!stderr.contains("panicked"), "the host panicked:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_error_text_is_truncated_and_delivered_upstream() {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let mut device = Device::new(&local, Some(&cloud), &faulty("huge-error", ""));
    let (client, mut alerts) = device.start_watching(&local, ">").await;

    let message = degraded_message(&client, &mut alerts).await;
    assert!(
        message.starts_with("returned-error: "),
        "{}",
        &message[..200.min(message.len())]
    );
    assert!(
        message.len() < 4096,
        "the plugin's 2 MiB error text must be bounded, got {} bytes",
        message.len()
    );
    assert!(message.contains("[truncated"), "{message}");

    // The degraded alert does not block the outbox: it and a later
    // glucose-monitor alert both reach the cloud.
    let readings = [("sensors.cgm.p1", reading(now_ms(), 45.0))];
    publish_until(&client, &readings, &mut alerts, "urgent-low", |seen| {
        seen.iter().any(|(s, a)| is_urgent_low(s, a))
    })
    .await;
    upstream_alerts_where(&cloud, "the degraded and the glucose alert upstream", |upstream| {
        let degraded_up = upstream
            .iter()
            .any(|(s, a)| s.ends_with(".faulty-plugin") && a["code"] == "plugin-degraded");
        let glucose_up = upstream
            .iter()
            .any(|(s, a)| s.ends_with(".glucose-monitor") && a["code"] == "urgent-low");
        degraded_up && glucose_up
    })
    .await;
    let (code, stderr) = terminate_within(device).await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_reads_the_simulated_clock_through_wasi() {
    // 2031-01-01T00:00:00Z: years from the real clock of any test run.
    const START_MS: i64 = 1_924_992_000_000;
    let local = NatsServer::start();
    let extra = format!(
        "{}[clock]\nstart = \"2031-01-01T00:00:00Z\"\nspeed = 1\n",
        faulty("read-clock", "")
    );
    let mut device = Device::new(&local, None, &extra);
    let (client, mut alerts) = device.start_watching(&local, "faulty-plugin").await;

    let readings = [("sensors.hostile.h1", reading(START_MS, 100.0))];
    let seen = publish_until(&client, &readings, &mut alerts, "the clock alert", |seen| {
        seen.iter().any(|(_, a)| a["code"] == "clock")
    })
    .await;
    let alert = &seen.iter().find(|(_, a)| a["code"] == "clock").unwrap().1;
    let plugin_now = alert["value"].as_f64().unwrap() as i64;
    // The simulated clock started at START_MS (2031), after the real date,
    // and runs at real speed: the plugin sees a time at or after its start and
    // within its first year, nowhere near the machine's clock.
    const YEAR_MS: i64 = 365 * 86_400_000;
    assert!(
        (START_MS..START_MS + YEAR_MS).contains(&plugin_now),
        "the plugin saw {plugin_now}, not the simulated clock (start {START_MS})"
    );
    let (code, stderr) = terminate_within(device).await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_pollables_hits_the_resource_limit() {
    let local = NatsServer::start();
    // A deadline long enough that the flood, not the CPU deadline, ends the call.
    let plugins = "[[plugins]]\nbundle = \"faulty-plugin.wasm\"\n[plugins.config]\nfail = \"pollables\"\n\
                   [plugins.limits]\ncall_deadline_ms = 5000\n";
    let mut device = Device::new(&local, None, plugins);
    let (client, mut alerts) = device.start_watching(&local, ">").await;

    let message = degraded_beside_an_urgent_low(&client, &mut alerts).await;
    assert!(message.starts_with("resource-limit: "), "{message}");
    let (code, stderr) = terminate_within(device).await;
    assert_eq!(code, Some(0), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn host_ceilings_clamp_what_a_manifest_asks() {
    let local = NatsServer::start();
    // A bundle whose manifest asks for 1 GiB of memory, on a device whose
    // ceiling is 16 MiB.
    let plugins = "[[plugins]]\nbundle = \"greedy.wasm\"\n[host_limits]\nmemory_mb = 16\n";
    let mut device = Device::new(&local, None, plugins);
    let manifest = device.path("greedy.toml");
    std::fs::write(
        &manifest,
        "name = \"faulty-plugin\"\nversion = \"0.1.0\"\nsubscriptions = [\"sensors.hostile.>\"]\n\
         [config]\nfail = \"memory\"\n[limits]\nmemory_mb = 1024\n",
    )
    .unwrap();
    device.sign_bundle(&manifest, "faulty-plugin", "greedy.wasm");
    let (client, mut alerts) = device.start_watching(&local, ">").await;

    let message = degraded_message(&client, &mut alerts).await;
    assert!(
        message.starts_with(&format!(
            "memory-limit: plugin `faulty-plugin` exceeded its memory limit of {} bytes",
            16 << 20
        )),
        "{message}"
    );
    let (code, stderr) = terminate_within(device).await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("memory_mb"), "the clamp is logged:\n{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_limit_beyond_the_host_ceiling_is_refused_at_start() {
    let local = NatsServer::start();
    let plugins = "[[plugins]]\nbundle = \"faulty-plugin.wasm\"\n[plugins.limits]\ncall_deadline_ms = 20000\n\
                   [host_limits]\ncall_deadline_ms = 5000\n";
    let device = Device::new(&local, None, plugins);
    let run = edgewise([
        "run".as_ref(),
        "--config".as_ref(),
        device.path("edgewise.toml").as_os_str(),
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(&run.stderr, "plugins[1].limits.call_deadline_ms");
    assert_contains(&run.stderr, "5000");
}

/// `edgewise replay` of the clock-reading plugin over `cgm/ExampleData5Subjects.csv`.
fn replay_read_clock() -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let run = edgewise([
        "replay".to_owned(),
        "--plugin".to_owned(),
        edgewise_tests::plugin_wasm("faulty-plugin").display().to_string(),
        "--input".to_owned(),
        edgewise_tests::data_file("cgm/ExampleData5Subjects.csv")
            .display()
            .to_string(),
        "--config".to_owned(),
        "fail=read-clock".to_owned(),
        "--out".to_owned(),
        out.display().to_string(),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    std::fs::read_to_string(&out).unwrap()
}

#[test]
fn in_replay_a_plugin_reads_virtual_time_and_replays_stay_identical() {
    let first = replay_read_clock();
    assert_eq!(first, replay_read_clock(), "two replays differ");
    let alerts: Vec<Value> = first.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(alerts.len() > 1000, "{} alerts", alerts.len());
    for alert in &alerts {
        let (clock, ts) = (alert["value"].as_f64().unwrap() as i64, alert["ts"].as_i64().unwrap());
        // The virtual clock stands at the latest reading of the call's batch:
        // at or after this reading, and never the real date.
        assert!(
            clock >= ts && clock - ts < 7 * 86_400_000,
            "clock {clock} for a reading at {ts}"
        );
    }
}

#[test]
fn a_plugin_that_panics_inside_a_tokio_runtime_traps_and_does_not_panic_the_host() {
    use edgewise_host::model::Reading;
    use edgewise_host::runtime::{Limits, PluginErrorKind, PluginInstance, Runtime, RuntimeOptions};
    // The host's `run` calls `init` on a tokio thread: wasmtime-wasi's
    // blocking stderr write (the panic message) used to call
    // `Handle::block_on` there, which panics the host.
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let bytes = std::fs::read(edgewise_tests::plugin_wasm("faulty-plugin")).unwrap();
    let compiled = runtime.compile("faulty", &bytes).unwrap();
    let tokio = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let error = tokio.block_on(async {
        let mut instance = PluginInstance::new(&runtime, &compiled, Limits::default()).unwrap();
        instance.init(&[("fail".into(), "panic".into())]).unwrap();
        let reading = Reading {
            sensor: "s".into(),
            timestamp_ms: 1,
            value: 1.0,
            unit: "mg/dL".into(),
        };
        instance.on_readings(&[reading]).unwrap_err()
    });
    match error.kind {
        PluginErrorKind::Trapped { stderr, .. } => {
            assert!(stderr.contains("faulty plugin panicked on purpose"), "{stderr}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[test]
fn through_the_runtime_api_sleeping_is_a_blocking_call_and_a_pollable_flood_a_resource_limit() {
    use edgewise_host::model::Reading;
    use edgewise_host::runtime::{
        LimitExceeded, Limits, MAX_WASI_RESOURCES, PluginErrorKind, PluginInstance, Runtime, RuntimeOptions,
    };
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let bytes = std::fs::read(edgewise_tests::plugin_wasm("faulty-plugin")).unwrap();
    let compiled = runtime.compile("faulty", &bytes).unwrap();
    let reading = Reading {
        sensor: "s".into(),
        timestamp_ms: 1,
        value: 1.0,
        unit: "mg/dL".into(),
    };
    let fail = |mode: &str| {
        let mut instance = PluginInstance::new(&runtime, &compiled, Limits::default()).unwrap();
        instance.init(&[("fail".into(), mode.into())]).unwrap();
        instance.on_readings(std::slice::from_ref(&reading)).unwrap_err().kind
    };
    // A blocking call, not the deadline: it failed at the sleep itself.
    assert_eq!(
        fail("sleep"),
        PluginErrorKind::Blocking("wasi:io/poll.pollable.block".into())
    );
    let kind = fail("pollables");
    assert_eq!(
        kind,
        PluginErrorKind::Limit(LimitExceeded::Resources(MAX_WASI_RESOURCES))
    );
}

#[test]
fn a_plugin_may_write_to_stderr_without_end_and_its_panic_is_still_reported() {
    use edgewise_host::model::Reading;
    use edgewise_host::runtime::{Limits, PluginErrorKind, PluginInstance, Runtime, RuntimeOptions};
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let bytes = std::fs::read(edgewise_tests::plugin_wasm("faulty-plugin")).unwrap();
    let compiled = runtime.compile("faulty", &bytes).unwrap();
    let mut instance = PluginInstance::new(&runtime, &compiled, Limits::default()).unwrap();
    instance
        .init(&[("fail".into(), "stderr-flood".into()), ("every".into(), "10".into())])
        .unwrap();
    let reading = Reading {
        sensor: "s".into(),
        timestamp_ms: 1,
        value: 1.0,
        unit: "mg/dL".into(),
    };
    // 9 calls of 32 KiB each: far beyond what the host keeps of stderr.
    for call in 1..10 {
        instance
            .on_readings(std::slice::from_ref(&reading))
            .unwrap_or_else(|e| panic!("call {call}: {e}"));
    }
    match instance.on_readings(std::slice::from_ref(&reading)).unwrap_err().kind {
        PluginErrorKind::Trapped { stderr, .. } => {
            assert!(stderr.contains("panicked after its stderr flood"), "{stderr}");
            assert!(stderr.len() <= 1024, "{}", stderr.len());
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}
