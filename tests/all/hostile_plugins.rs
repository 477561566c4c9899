//! Hostile plugins beside glucose-monitor in `edgewise run`, on real NATS: the
//! host stays up, glucose-monitor's alerts still arrive, the failure is
//! reported as a `plugin-degraded` alert (locally and upstream) with the right
//! reason, the status counts it, and quarantine comes when it should.

use serde_json::Value;

use crate::device::{Device, now_ms, reading};
use crate::support::{
    collect_until, find_plugin, host_status, next_json, next_where, plugin, status_until, upstream_alerts,
};
use edgewise_tests::nats::NatsServer;

/// One hostile plugin and what the host must make of it.
struct Case {
    /// The faulty plugin's `fail` mode.
    mode: &'static str,
    /// Extra `[plugins.config]` and `[plugins.limits]` lines of the faulty plugin.
    config: &'static str,
    limits: &'static str,
    /// Readings published to the hostile plugin.
    readings: usize,
    /// The failure reason expected in `plugin-degraded` and the status.
    reason: &'static str,
    /// Failures expected before the test looks at the status.
    failures: usize,
    /// Whether those failures must put the plugin in quarantine.
    quarantined: bool,
}

/// Quarantine after 3 failures within a minute, for an hour (so the test sees it).
const SUPERVISOR: &str = "[supervisor]\nbackoff_initial = \"50ms\"\nbackoff_max = \"200ms\"\n\
    quarantine_after = 3\nquarantine_window = \"1m\"\nquarantine_cooldown = \"1h\"\nbuffer_readings = 50\n";

async fn hostile_beside_glucose_monitor(case: Case) {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let plugins = format!(
        "{SUPERVISOR}[[plugins]]\nbundle = \"faulty-plugin.wasm\"\n[plugins.config]\nfail = \"{}\"\n{}\
         [plugins.limits]\ncall_deadline_ms = 200\n{}",
        case.mode, case.config, case.limits
    );
    let mut device = Device::with_tick(&local, Some(&cloud), "100ms", &plugins);
    let (client, mut alerts) = device.start_watching(&local, ">").await;

    for taken in 1..=case.readings {
        client
            .publish("sensors.hostile.h1", reading(now_ms(), 100.0))
            .await
            .unwrap();
        // One reading per call: the next is published only once the worker has
        // this one (delivered, held or dropped), so ingest never batches two.
        worker_has_taken(&client, taken as u64, case.mode).await;
    }
    client.publish("sensors.cgm.p1", reading(now_ms(), 45.0)).await.unwrap();

    // Collect alerts until glucose-monitor's has come and the failures are reported.
    let degraded = |seen: &[(String, Value)]| -> Vec<Value> {
        seen.iter()
            .filter(|(subject, alert)| subject.ends_with(".faulty-plugin") && alert["code"] == "plugin-degraded")
            .map(|(_, alert)| alert.clone())
            .collect()
    };
    let what = format!(
        "[{}] glucose-monitor's alert and {} plugin-degraded (quarantined: {})",
        case.mode, case.failures, case.quarantined
    );
    let seen = collect_until(&mut alerts, &what, |seen| {
        let degraded = degraded(seen);
        seen.iter()
            .any(|(subject, alert)| subject.ends_with(".glucose-monitor") && alert["code"] == "urgent-low")
            && degraded.len() >= case.failures
            && (!case.quarantined || degraded.iter().any(|a| message(a).contains("quarantined")))
    })
    .await;
    for alert in &degraded(&seen) {
        assert_eq!(alert["severity"], "critical", "{alert}");
        assert_eq!(alert["plugin"], "faulty-plugin", "{alert}");
        assert!(
            message(alert).starts_with(&format!("{}: plugin `faulty-plugin`", case.reason)),
            "[{}] expected reason `{}`: {alert}",
            case.mode,
            case.reason
        );
    }

    // The status counts it; glucose-monitor is untouched.
    let status = host_status(&client).await;
    let (faulty, glucose) = (plugin(&status, "faulty-plugin"), plugin(&status, "glucose-monitor"));
    assert!(
        faulty["failures"][case.reason].as_u64().unwrap_or(0) >= case.failures as u64,
        "[{}] {faulty}",
        case.mode
    );
    assert_eq!(
        faulty["state"] == "quarantined",
        case.quarantined,
        "[{}] {faulty}",
        case.mode
    );
    assert_eq!(
        faulty["quarantines"].as_u64().unwrap() >= 1,
        case.quarantined,
        "[{}] {faulty}",
        case.mode
    );
    assert!(
        faulty["last_error"].as_str().unwrap().contains("faulty-plugin"),
        "{faulty}"
    );
    assert_eq!(glucose["state"], "running", "{glucose}");
    assert_eq!(glucose["errors"], 0, "{glucose}");
    assert_eq!(glucose["readings_in"], 1, "{glucose}");

    // glucose-monitor still answers after the hostile plugin's failures.
    client.publish("sensors.cgm.p2", reading(now_ms(), 45.0)).await.unwrap();
    let what = format!("[{}] alert for p2 from glucose-monitor", case.mode);
    next_where(&mut alerts, &what, |_, alert| {
        alert["sensor"] == "cgm.p2" && alert["code"] == "urgent-low"
    })
    .await;

    // The degraded alerts also went upstream, through the outbox.
    let upstream = upstream_alerts(&cloud, case.failures + 1).await;
    assert!(
        upstream
            .iter()
            .any(|(subject, alert)| subject.ends_with(".faulty-plugin") && alert["code"] == "plugin-degraded"),
        "{upstream:?}"
    );

    let (code, stderr) = device.terminate().await;
    assert_eq!(code, Some(0), "[{}] the host must exit cleanly:\n{stderr}", case.mode);
    assert!(!stderr.contains("panicked at host/"), "the host panicked:\n{stderr}");
}

/// Wait until the faulty plugin's worker has taken `count` readings.
async fn worker_has_taken(client: &async_nats::Client, count: u64, mode: &str) {
    let what = format!("[{mode}] the worker to take reading {count}");
    status_until(client, &what, |status| {
        let faulty = find_plugin(status, "faulty-plugin").cloned().unwrap_or_default();
        let field = |name: &str| faulty[name].as_u64().unwrap_or(0);
        field("readings_in") + field("readings_held") + field("readings_dropped") >= count
    })
    .await;
}

fn message(alert: &Value) -> &str {
    alert["message"].as_str().unwrap_or_default()
}

/// A failure on every reading: three readings, three failures, quarantine.
fn every_call(mode: &'static str, reason: &'static str) -> Case {
    Case {
        mode,
        config: "",
        limits: "",
        readings: 3,
        reason,
        failures: 3,
        quarantined: true,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_in_on_readings() {
    hostile_beside_glucose_monitor(every_call("loop", "deadline")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn infinite_loop_in_init() {
    // It never starts: the first start and every restart fail, no readings needed.
    hostile_beside_glucose_monitor(Case {
        readings: 0,
        ..every_call("init-loop", "deadline")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn memory_growth_until_the_limit() {
    hostile_beside_glucose_monitor(Case {
        limits: "memory_mb = 16\n",
        ..every_call("memory", "memory-limit")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unbounded_recursion() {
    hostile_beside_glucose_monitor(every_call("recursion", "trap")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn panic() {
    hostile_beside_glucose_monitor(every_call("panic", "trap")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_million_alerts_in_one_call() {
    hostile_beside_glucose_monitor(every_call("alerts", "output-limit")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_strings() {
    hostile_beside_glucose_monitor(every_call("huge-string", "output-size")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_state_values() {
    hostile_beside_glucose_monitor(every_call("huge-state", "state-limit")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn err_on_every_call() {
    // Every tick fails too: quarantine comes without readings.
    hostile_beside_glucose_monitor(Case {
        readings: 0,
        ..every_call("err", "returned-error")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_outputs_per_second() {
    hostile_beside_glucose_monitor(Case {
        config: "burst = 100\n",
        limits: "outputs_per_second = 50\n",
        ..every_call("chatty", "output-rate")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_that_sometimes_take_five_times_the_deadline() {
    // Every third call spins 1 s against a 200 ms deadline: one failure in
    // four readings, a restart, and no quarantine.
    hostile_beside_glucose_monitor(Case {
        mode: "slow",
        config: "spin_ms = 1000\nevery = 3\n",
        limits: "",
        readings: 4,
        reason: "deadline",
        failures: 1,
        quarantined: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_flood_is_dropped_not_fatal() {
    let local = NatsServer::start();
    let plugins = "[[plugins]]\nbundle = \"faulty-plugin.wasm\"\n[plugins.config]\nfail = \"log-flood\"\n";
    let mut device = Device::with_tick(&local, None, "100ms", plugins);
    let (client, mut alerts) = device.start_watching(&local, "faulty-plugin").await;
    for _ in 0..3 {
        client
            .publish("sensors.hostile.h1", reading(now_ms(), 100.0))
            .await
            .unwrap();
        let alert = next_json(&mut alerts, "alert").await;
        assert_eq!(alert["code"], "seen", "the plugin keeps working: {alert}");
    }
    let status = host_status(&client).await;
    let faulty = &status["plugins"][1];
    assert_eq!(faulty["name"], "faulty-plugin");
    assert_eq!(faulty["state"], "running", "{faulty}");
    assert_eq!(faulty["errors"], 0, "{faulty}");
    assert!(faulty["logs_dropped"].as_u64().unwrap() >= 2, "{faulty}");
    assert_eq!(device.terminate().await.0, Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn readings_wait_for_the_restart_in_a_bounded_buffer() {
    // Every second call overruns the deadline; the restart waits 1 s; the
    // buffer holds 2 readings.
    let local = NatsServer::start();
    let plugins = "[supervisor]\nbackoff_initial = \"1s\"\nbuffer_readings = 2\n\
        [[plugins]]\nbundle = \"faulty-plugin.wasm\"\n[plugins.config]\nfail = \"slow\"\nevery = 2\nspin_ms = 1000\n\
        [plugins.limits]\ncall_deadline_ms = 200\n";
    let mut device = Device::with_tick(&local, None, "1h", plugins);
    let (client, mut alerts) = device.start_watching(&local, "faulty-plugin").await;
    let t0 = now_ms();
    client.publish("sensors.hostile.h1", reading(t0, 100.0)).await.unwrap();
    assert_eq!(next_json(&mut alerts, "alert").await["code"], "seen");
    client
        .publish("sensors.hostile.h1", reading(t0 + 1, 100.0))
        .await
        .unwrap();
    let degraded = next_json(&mut alerts, "alert").await;
    assert_eq!(degraded["code"], "plugin-degraded", "{degraded}");
    assert!(message(&degraded).starts_with("deadline: "), "{degraded}");
    // While it is down: five readings, one message each; the oldest three are dropped.
    for k in 2..7 {
        client
            .publish("sensors.hostile.h1", reading(t0 + k, 100.0))
            .await
            .unwrap();
        // One message per reading: the next is published once the worker has this one.
        worker_has_taken(&client, k as u64 + 1, "slow").await;
    }
    let status = host_status(&client).await;
    let faulty = &status["plugins"][1];
    assert_eq!(faulty["state"], "restarting", "{faulty}");
    assert_eq!(faulty["readings_held"], 2, "{faulty}");
    assert_eq!(faulty["readings_dropped"], 3, "{faulty}");
    // After the restart the two held readings are delivered, oldest first:
    // the first passes (a new instance's first call), the second overruns.
    let seen = next_json(&mut alerts, "alert").await;
    assert_eq!(seen["code"], "seen", "{seen}");
    assert_eq!(seen["ts"], t0 + 5, "the oldest held reading comes first: {seen}");
    let again = next_json(&mut alerts, "alert").await;
    assert_eq!(again["code"], "plugin-degraded", "{again}");
    let status = host_status(&client).await;
    let faulty = &status["plugins"][1];
    assert_eq!(faulty["restarts"], 1, "{faulty}");
    assert_eq!(faulty["readings_in"], 4, "{faulty}");
    assert_eq!(faulty["readings_held"], 0, "{faulty}");
    assert_eq!(device.terminate().await.0, Some(0));
}
