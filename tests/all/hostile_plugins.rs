//! Hostile plugins beside glucose-monitor in `edgewise run`, on real NATS: the
//! host stays up, glucose-monitor's alerts still arrive, the failure is
//! reported as a `plugin-degraded` alert (locally and upstream) with the right
//! reason, the status counts it, and quarantine comes when it should.
//!
//! Every scenario runs against both contracts: faulty-plugin (0.1) and
//! faulty-v02 (0.2), which take the same `fail` modes (`v0_1::*`, `v0_2::*`).
//! What only 0.2 has (wakes, snapshots) is in `hostile_v02.rs`.

use serde_json::Value;

use crate::device::{Device, now_ms, reading};
use crate::support::{
    collect_until, find_plugin, host_status, next_json, next_where, plugin, poll_until, status_until,
    upstream_alerts_where,
};
use edgewise_tests::nats::NatsServer;

/// A hostile fixture: its plugin name (that of its bundle file too) and a
/// subject it subscribes to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hostile {
    pub(crate) name: &'static str,
    pub(crate) subject: &'static str,
}

/// faulty-plugin, on contract 0.1.
pub(crate) const V0_1: Hostile = Hostile {
    name: "faulty-plugin",
    subject: "sensors.hostile.h1",
};

/// faulty-v02, on contract 0.2.
pub(crate) const V0_2: Hostile = Hostile {
    name: "faulty-v02",
    subject: "sensors.hostile-v02.h1",
};

impl Hostile {
    /// The device's `[[plugins]]` table of this fixture in `mode`, with extra
    /// `[plugins.config]` lines `config` and `[plugins.limits]` lines `limits`.
    pub(crate) fn plugin_table(self, mode: &str, config: &str, limits: &str) -> String {
        let name = self.name;
        format!(
            "[[plugins]]\nbundle = \"{name}.wasm\"\n[plugins.config]\nfail = \"{mode}\"\n{config}\
             [plugins.limits]\n{limits}"
        )
    }

    /// Whether an alert on `subject` came from this fixture.
    pub(crate) fn raised(self, subject: &str) -> bool {
        subject.ends_with(&format!(".{}", self.name))
    }

    /// Whether the host recovers this fixture's state after a failure
    /// (contract 0.2, `[snapshot]` declared): a restart then first gives it
    /// the inputs since its last snapshot again.
    pub(crate) fn recovers(self) -> bool {
        self.name == V0_2.name
    }

    /// Publish a reading at `ts` to this fixture.
    pub(crate) async fn publish(self, client: &async_nats::Client, ts: i64) {
        client.publish(self.subject, reading(ts, 100.0)).await.unwrap();
    }
}

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
pub(crate) const SUPERVISOR: &str = "[supervisor]\nbackoff_initial = \"50ms\"\nbackoff_max = \"200ms\"\n\
    quarantine_after = 3\nquarantine_window = \"1m\"\nquarantine_cooldown = \"1h\"\nbuffer_readings = 50\n";

async fn beside_glucose_monitor(hostile: Hostile, case: Case) {
    let name = hostile.name;
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let limits = format!("call_deadline_ms = 200\n{}", case.limits);
    let plugins = format!("{SUPERVISOR}{}", hostile.plugin_table(case.mode, case.config, &limits));
    let mut device = Device::with_tick(&local, Some(&cloud), "100ms", &plugins);
    let (client, mut alerts) = device.start_watching(&local, ">").await;

    for taken in 1..=case.readings {
        hostile.publish(&client, now_ms()).await;
        // One reading per call: the next is published only once the worker has
        // this one (delivered, held or dropped), so ingest never batches two.
        worker_has_taken(&client, hostile, taken as u64, case.mode).await;
    }
    client.publish("sensors.cgm.p1", reading(now_ms(), 45.0)).await.unwrap();

    // Collect alerts until glucose-monitor's has come and the failures are reported.
    let degraded = |seen: &[(String, Value)]| -> Vec<Value> {
        seen.iter()
            .filter(|(subject, alert)| hostile.raised(subject) && alert["code"] == "plugin-degraded")
            .map(|(_, alert)| alert.clone())
            .collect()
    };
    let what = format!(
        "[{name} {}] glucose-monitor's alert and {} plugin-degraded (quarantined: {})",
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
        assert_eq!(alert["plugin"], name, "{alert}");
        assert!(
            message(alert).starts_with(&format!("{}: plugin `{name}`", case.reason)),
            "[{name} {}] expected reason `{}`: {alert}",
            case.mode,
            case.reason
        );
    }

    // The status counts it; glucose-monitor is untouched.
    let status = host_status(&client).await;
    let (faulty, glucose) = (plugin(&status, name), plugin(&status, "glucose-monitor"));
    assert!(
        faulty["failures"][case.reason].as_u64().unwrap_or(0) >= case.failures as u64,
        "[{name} {}] {faulty}",
        case.mode
    );
    assert_eq!(
        faulty["state"] == "quarantined",
        case.quarantined,
        "[{name} {}] {faulty}",
        case.mode
    );
    assert_eq!(
        faulty["quarantines"].as_u64().unwrap() >= 1,
        case.quarantined,
        "[{name} {}] {faulty}",
        case.mode
    );
    assert!(faulty["last_error"].as_str().unwrap().contains(name), "{faulty}");
    assert_eq!(glucose["state"], "running", "{glucose}");
    assert_eq!(glucose["errors"], 0, "{glucose}");
    assert_eq!(glucose["readings_in"], 1, "{glucose}");

    // glucose-monitor still answers after the hostile plugin's failures.
    client.publish("sensors.cgm.p2", reading(now_ms(), 45.0)).await.unwrap();
    let what = format!("[{name} {}] alert for p2 from glucose-monitor", case.mode);
    next_where(&mut alerts, &what, |_, alert| {
        alert["sensor"] == "cgm.p2" && alert["code"] == "urgent-low"
    })
    .await;

    // The degraded alerts also went upstream, through the outbox.
    let what = format!("[{name} {}] plugin-degraded upstream", case.mode);
    upstream_alerts_where(&cloud, &what, |upstream| {
        upstream
            .iter()
            .any(|(subject, alert)| hostile.raised(subject) && alert["code"] == "plugin-degraded")
    })
    .await;

    let (code, stderr) = device.terminate().await;
    assert_eq!(
        code,
        Some(0),
        "[{name} {}] the host must exit cleanly:\n{stderr}",
        case.mode
    );
    assert!(!stderr.contains("panicked at host/"), "the host panicked:\n{stderr}");
}

/// Wait until the worker of `hostile` has taken `count` readings.
async fn worker_has_taken(client: &async_nats::Client, hostile: Hostile, count: u64, mode: &str) {
    let what = format!("[{} {mode}] the worker to take reading {count}", hostile.name);
    status_until(client, &what, |status| {
        let faulty = find_plugin(status, hostile.name).cloned().unwrap_or_default();
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

/// The scenarios, each a test against faulty-plugin (`v0_1::NAME`) and one
/// against faulty-v02 (`v0_2::NAME`): `NAME => SCENARIO`, where SCENARIO
/// takes the fixture (`|hostile| ...` or an `async fn(Hostile)`).
macro_rules! on_both_contracts {
    ($($name:ident => $scenario:expr;)*) => {
        mod v0_1 {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    ($scenario)(V0_1).await;
                }
            )*
        }
        mod v0_2 {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread")]
                async fn $name() {
                    ($scenario)(V0_2).await;
                }
            )*
        }
    };
}

on_both_contracts! {
    infinite_loop_in_on_readings => |hostile| beside_glucose_monitor(hostile, every_call("loop", "deadline"));
    // It never starts: the first start and every restart fail, no readings needed.
    infinite_loop_in_init => |hostile| beside_glucose_monitor(hostile, Case {
        readings: 0,
        ..every_call("init-loop", "deadline")
    });
    memory_growth_until_the_limit => |hostile| beside_glucose_monitor(hostile, Case {
        limits: "memory_mb = 16\n",
        ..every_call("memory", "memory-limit")
    });
    unbounded_recursion => |hostile| beside_glucose_monitor(hostile, every_call("recursion", "trap"));
    panic => |hostile| beside_glucose_monitor(hostile, every_call("panic", "trap"));
    a_million_alerts_in_one_call => |hostile| beside_glucose_monitor(hostile, every_call("alerts", "output-limit"));
    huge_strings => |hostile| beside_glucose_monitor(hostile, every_call("huge-string", "output-size"));
    // Every tick fails too: quarantine comes without readings. (0.1 is ticked
    // every interval; faulty-v02 asks to be ticked at once, then is held to
    // one tick a second.)
    err_on_every_call => |hostile| beside_glucose_monitor(hostile, Case {
        config: "wake = \"now\"\n",
        readings: 0,
        ..every_call("err", "returned-error")
    });
    too_many_outputs_per_second => |hostile| beside_glucose_monitor(hostile, Case {
        config: "burst = 100\n",
        limits: "outputs_per_second = 50\n",
        ..every_call("chatty", "output-rate")
    });
    // Every third call spins 1 s against a 200 ms deadline: one failure in
    // four readings, a restart, and no quarantine.
    calls_that_sometimes_take_five_times_the_deadline => |hostile| beside_glucose_monitor(hostile, Case {
        mode: "slow",
        config: "spin_ms = 1000\nevery = 3\n",
        limits: "",
        readings: 4,
        reason: "deadline",
        failures: 1,
        quarantined: false,
    });
    a_log_flood_is_dropped_not_fatal => super::log_flood_is_dropped_not_fatal;
    readings_wait_for_the_restart_in_a_bounded_buffer => super::readings_wait_for_the_restart;
    outputs_with_problems_go_on_naming_them_and_the_operator_is_told => super::outputs_with_problems_go_on_flagged;
}

/// Key-value state is 0.1's only: 0.2 has snapshots instead (`hostile_v02.rs`).
#[tokio::test(flavor = "multi_thread")]
async fn huge_state_values() {
    beside_glucose_monitor(V0_1, every_call("huge-state", "state-limit")).await;
}

async fn log_flood_is_dropped_not_fatal(hostile: Hostile) {
    let local = NatsServer::start();
    let plugins = hostile.plugin_table("log-flood", "", "");
    let mut device = Device::with_tick(&local, None, "100ms", &plugins);
    let (client, mut alerts) = device.start_watching(&local, hostile.name).await;
    for _ in 0..3 {
        hostile.publish(&client, now_ms()).await;
        let alert = next_json(&mut alerts, "alert").await;
        assert_eq!(alert["code"], "seen", "the plugin keeps working: {alert}");
    }
    let status = host_status(&client).await;
    let faulty = plugin(&status, hostile.name);
    assert_eq!(faulty["state"], "running", "{faulty}");
    assert_eq!(faulty["errors"], 0, "{faulty}");
    assert!(faulty["logs_dropped"].as_u64().unwrap() >= 2, "{faulty}");
    assert_eq!(device.terminate().await.0, Some(0));
}

/// An output no one can use as it is (an alert with no code and a time
/// before 1970; a summary whose window ends before it starts, with a
/// metric name given twice) still goes on, locally and upstream: it may be a
/// real alert. Its envelope names its problems, the status counts it, and
/// the operator is told by a warning `plugin-output-flagged`: at the first,
/// then not again within the hour.
async fn outputs_with_problems_go_on_flagged(hostile: Hostile) {
    let name = hostile.name;
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let plugins = hostile.plugin_table("malformed", "", "");
    let mut device = Device::with_tick(&local, Some(&cloud), "1h", &plugins);
    let (client, mut alerts) = device.start_watching(&local, name).await;

    for n in 1..=3 {
        hostile.publish(&client, now_ms()).await;
        let alert = next_json(&mut alerts, &format!("[{name}] the malformed alert of reading {n}")).await;
        assert_eq!(alert["message"], "malformed on purpose", "[{name}] {alert}");
        assert_eq!(
            (&alert["sensor"], &alert["code"], &alert["ts"], &alert["severity"]),
            (
                &Value::from(""),
                &Value::from(""),
                &Value::from(-1),
                &Value::from("critical")
            ),
            "[{name}] sent on as the plugin made it: {alert}"
        );
        // Its empty sensor is no problem: an alert about no one sensor.
        assert_eq!(
            alert["problems"],
            serde_json::json!(["empty-code", "negative-time"]),
            "[{name}] {alert}"
        );
        if n == 1 {
            // The host's alert comes right after the first (the worker
            // tells it once the outputs are handed on); readings 2 and 3
            // bring none (the next alert seen is theirs).
            let told = next_json(&mut alerts, &format!("[{name}] plugin-output-flagged")).await;
            assert_eq!(
                (&told["code"], &told["severity"]),
                (&Value::from("plugin-output-flagged"), &Value::from("warning")),
                "[{name}] {told}"
            );
            assert!(
                message(&told).starts_with(
                    "2 output(s) with problems (empty-code, negative-time, empty-window, duplicate-metric-name)"
                ),
                "[{name}] {told}"
            );
            assert!(
                told.get("problems").is_none(),
                "[{name}] the host's own alert is not flagged: {told}"
            );
        }
    }
    // Counted as each is handed on: the third summary's may come a moment
    // after the third alert.
    let status = status_until(&client, "six outputs flagged", |status| {
        plugin(status, name)["outputs_flagged"] == 6
    })
    .await;
    let faulty = plugin(&status, name);
    assert_eq!(
        (&faulty["state"], &faulty["errors"]),
        (&Value::from("running"), &Value::from(0)),
        "{faulty}"
    );

    // Upstream too, as made and flagged: the summary keeps the first of the
    // metric given twice (a JSON object holds one value per name).
    let what = format!("[{name}] three malformed alerts, one plugin-output-flagged and three summaries upstream");
    let upstream = poll_until(&what, crate::device::WAIT, || async {
        let messages = crate::support::upstream_messages(&cloud, 0).await;
        let count = |kind: &str, code: &str| {
            messages
                .iter()
                .filter(|(subject, m)| subject.contains(kind) && hostile.raised(subject) && m["code"] == code)
                .count()
        };
        let summaries = messages
            .iter()
            .filter(|(s, _)| s.contains(".up.summaries.") && hostile.raised(s))
            .count();
        let counts = (
            count(".up.alerts.", ""),
            count(".up.alerts.", "plugin-output-flagged"),
            summaries,
        );
        if counts == (3, 1, 3) {
            Ok(messages)
        } else {
            Err(format!("{counts:?}: {messages:?}"))
        }
    })
    .await;
    for (_, summary) in upstream
        .iter()
        .filter(|(s, _)| s.contains(".up.summaries.") && hostile.raised(s))
    {
        assert_eq!(summary["metrics"], serde_json::json!({"n": 1.0}), "[{name}] {summary}");
        assert_eq!(
            summary["problems"],
            serde_json::json!(["empty-window", "duplicate-metric-name"]),
            "[{name}] {summary}"
        );
    }
    assert_eq!(device.terminate().await.0, Some(0));
}

async fn readings_wait_for_the_restart(hostile: Hostile) {
    // Every second call overruns the deadline; the restart waits 3 s (the
    // five readings below, each awaited through the status, must arrive
    // while it is down, on a slow machine too); the buffer holds 2 readings.
    let local = NatsServer::start();
    let plugins = format!(
        "[supervisor]\nbackoff_initial = \"3s\"\nbuffer_readings = 2\n{}",
        hostile.plugin_table("slow", "every = 2\nspin_ms = 1000\n", "call_deadline_ms = 200\n")
    );
    let mut device = Device::with_tick(&local, None, "1h", &plugins);
    let (client, mut alerts) = device.start_watching(&local, hostile.name).await;
    let t0 = now_ms();
    hostile.publish(&client, t0).await;
    assert_eq!(next_json(&mut alerts, "alert").await["code"], "seen");
    hostile.publish(&client, t0 + 1).await;
    let degraded = next_json(&mut alerts, "alert").await;
    assert_eq!(degraded["code"], "plugin-degraded", "{degraded}");
    assert!(message(&degraded).starts_with("deadline: "), "{degraded}");
    // While it is down: five readings, one message each; the oldest three are dropped.
    for k in 2..7 {
        hostile.publish(&client, t0 + k).await;
        // One message per reading: the next is published once the worker has this one.
        worker_has_taken(&client, hostile, k as u64 + 1, "slow").await;
    }
    let status = host_status(&client).await;
    let faulty = plugin(&status, hostile.name);
    assert_eq!(faulty["state"], "restarting", "{faulty}");
    assert_eq!(faulty["readings_held"], 2, "{faulty}");
    assert_eq!(faulty["readings_dropped"], 3, "{faulty}");
    if hostile.recovers() {
        // The restart first gives the readings since the last snapshot
        // again: the first passes, the second overruns again (every second
        // call does), is given again at once, overruns a third time: a
        // failure, supervised. The next restart does the same, and the
        // reading, having failed four times in a row, is set aside; the
        // restart then gives the first alone. The oldest held reading is
        // the new instance's second call: it overruns.
        let failed_again = next_json(&mut alerts, "alert").await;
        assert_eq!(failed_again["code"], "plugin-degraded", "{failed_again}");
        let aside = next_json(&mut alerts, "alert").await;
        assert_eq!(aside["code"], "input-set-aside", "{aside}");
        assert!(message(&aside).contains(&format!("at {} ms", t0 + 1)), "{aside}");
        let again = next_json(&mut alerts, "alert").await;
        assert_eq!(again["code"], "plugin-degraded", "{again}");
        let status = host_status(&client).await;
        let faulty = plugin(&status, hostile.name);
        assert_eq!(faulty["restarts"], 1, "{faulty}");
        assert_eq!(faulty["inputs_set_aside"], 1, "{faulty}");
        assert_eq!(faulty["readings_in"], 3, "{faulty}");
        assert_eq!(faulty["readings_held"], 1, "{faulty}");
        assert_eq!(device.terminate().await.0, Some(0));
        return;
    }
    // After the restart the two held readings are delivered, oldest first:
    // the first passes (a new instance's first call), the second overruns.
    let seen = next_json(&mut alerts, "alert").await;
    assert_eq!(seen["code"], "seen", "{seen}");
    assert_eq!(seen["ts"], t0 + 5, "the oldest held reading comes first: {seen}");
    let again = next_json(&mut alerts, "alert").await;
    assert_eq!(again["code"], "plugin-degraded", "{again}");
    let status = host_status(&client).await;
    let faulty = plugin(&status, hostile.name);
    assert_eq!(faulty["restarts"], 1, "{faulty}");
    assert_eq!(faulty["readings_in"], 4, "{faulty}");
    assert_eq!(faulty["readings_held"], 0, "{faulty}");
    assert_eq!(device.terminate().await.0, Some(0));
}
