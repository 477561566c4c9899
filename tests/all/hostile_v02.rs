//! What only a contract 0.2 plugin can do to its host, with faulty-v02:
//! hostile wakes (every millisecond, the far past, the far future) in
//! `edgewise run` beside glucose-monitor, and hostile snapshots and resumes
//! through the runtime API. Each is contained and reported: a typed error, the
//! instance either still usable or poisoned (then supervised like any trap),
//! the neighbour untouched. The scenarios 0.1 and 0.2 share are in
//! `hostile_plugins.rs`.

use std::time::Duration;

use serde_json::Value;

use edgewise_host::model::{Output, Reading};
use edgewise_host::runtime::{
    Call, LimitExceeded, Limits, MIN_WAKE_INTERVAL_MS, PluginError, PluginErrorKind, PluginInstance, Runtime,
    RuntimeOptions, SchemaRefused, Snapshot, SnapshotSchemas, Wake,
};
use edgewise_tests::nats::NatsServer;
use edgewise_tests::plugin_wasm;

use crate::device::{Device, now_ms, reading};
use crate::hostile_plugins::V0_2;
use crate::support::{collect_until, host_status, plugin, status_until};

// ---------------------------------------------------------------------------
// Hostile wakes, live: `edgewise run` ticking every 100 ms
// ---------------------------------------------------------------------------

/// A device (ticking every 100 ms) with glucose-monitor and faulty-v02
/// passing every reading through and answering every call with `wake`;
/// started, watching every alert, with one reading published to faulty-v02
/// and a low one to glucose-monitor.
async fn wake_device(local: &NatsServer, wake: &str) -> (Device, async_nats::Client, async_nats::Subscriber) {
    let plugins = V0_2.plugin_table("pass", &format!("wake = \"{wake}\"\n"), "");
    let mut device = Device::new(local, None, &plugins);
    let (client, alerts) = device.start_watching(local, ">").await;
    V0_2.publish(&client, now_ms()).await;
    client.publish("sensors.cgm.p1", reading(now_ms(), 45.0)).await.unwrap();
    (device, client, alerts)
}

/// faulty-v02's alerts among `seen` with `code`.
fn faulty_alerts<'a>(seen: &'a [(String, Value)], code: &str) -> Vec<&'a Value> {
    seen.iter()
        .filter(|(subject, alert)| V0_2.raised(subject) && alert["code"] == code)
        .map(|(_, alert)| alert)
        .collect()
}

fn glucose_answered(seen: &[(String, Value)]) -> bool {
    seen.iter()
        .any(|(subject, alert)| subject.ends_with(".glucose-monitor") && alert["code"] == "urgent-low")
}

/// The plugin `name` runs and has not failed.
fn assert_running(status: &Value, name: &str) {
    let plugin = plugin(status, name);
    assert_eq!(plugin["state"], "running", "{plugin}");
    assert_eq!(plugin["errors"], 0, "{plugin}");
}

fn counter(status: &Value, field: &str) -> u64 {
    plugin(status, V0_2.name)[field].as_u64().unwrap_or(0)
}

/// faulty-v02 answering `wake`, a wake always due at once or sooner than a
/// second away: ticked without waiting for a reading, then at most once a
/// second of the host clock (not at each of its ten ticks a second), each
/// such wake counted in the status; glucose-monitor answers meanwhile.
async fn held_to_one_tick_a_second(wake: &str) {
    let local = NatsServer::start();
    let (mut device, client, mut alerts) = wake_device(&local, wake).await;
    let what = format!("[{wake}] faulty-v02's reading, its first ticks and glucose-monitor's alert");
    let seen = collect_until(&mut alerts, &what, |seen| {
        faulty_alerts(seen, "seen").len() == 1 && faulty_alerts(seen, "tick").len() >= 2 && glucose_answered(seen)
    })
    .await;
    // Its outputs so far are the reading and ticks: from here on, ticks only.
    let before = status_until(&client, &what, |status| counter(status, "alerts_out") >= 3).await;
    let what = format!("[{wake}] three more deferred wakes");
    let after = status_until(&client, &what, |status| {
        counter(status, "wakes_deferred") >= counter(&before, "wakes_deferred") + 3
    })
    .await;

    let ticks = counter(&after, "alerts_out") - counter(&before, "alerts_out");
    let clock = after["clock_ms"].as_i64().unwrap() - before["clock_ms"].as_i64().unwrap();
    // One tick a second of the host clock (the host ticks ten): at most the
    // seconds that passed, and one more at each end.
    let bound = u64::try_from(clock / MIN_WAKE_INTERVAL_MS).unwrap() + 2;
    assert!(
        ticks <= bound,
        "[{wake}] {ticks} ticks in {clock} ms of host clock (at most {bound})"
    );
    let times: Vec<i64> = faulty_alerts(&seen, "tick")
        .iter()
        .map(|tick| tick["ts"].as_i64().unwrap())
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[1] - pair[0] >= MIN_WAKE_INTERVAL_MS),
        "[{wake}] {times:?}"
    );
    assert_running(&after, V0_2.name);
    assert_running(&after, "glucose-monitor");

    // glucose-monitor still answers while faulty-v02 keeps asking.
    client.publish("sensors.cgm.p2", reading(now_ms(), 45.0)).await.unwrap();
    collect_until(&mut alerts, "glucose-monitor's alert for p2", |seen| {
        seen.iter()
            .any(|(_, alert)| alert["sensor"] == "cgm.p2" && alert["code"] == "urgent-low")
    })
    .await;
    let log = device.terminate_cleanly().await;
    assert!(!log.contains("panicked"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wake_every_millisecond_is_held_to_one_tick_a_second_of_the_host_clock() {
    held_to_one_tick_a_second("every-ms").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wake_always_now_is_held_to_one_tick_a_second_of_the_host_clock() {
    held_to_one_tick_a_second("now").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wake_in_the_far_past_is_due_at_once_and_the_host_does_not_spin() {
    held_to_one_tick_a_second("far-past").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wake_at_the_end_of_time_is_never_ticked_and_overflows_nothing() {
    let local = NatsServer::start();
    let (mut device, client, mut alerts) = wake_device(&local, "far-future").await;
    collect_until(
        &mut alerts,
        "faulty-v02's reading and glucose-monitor's alert",
        |seen| faulty_alerts(seen, "seen").len() == 1 && glucose_answered(seen),
    )
    .await;
    // Two more readings (each answered `i64::MAX` again), then two seconds of
    // the host's clock: twenty host ticks, not one for faulty-v02.
    for _ in 0..2 {
        V0_2.publish(&client, now_ms()).await;
    }
    let start = host_status(&client).await["clock_ms"].as_i64().unwrap();
    let status = status_until(&client, "three readings and two seconds of host clock", |status| {
        status["clock_ms"].as_i64().unwrap() >= start + 2 * MIN_WAKE_INTERVAL_MS && counter(status, "alerts_out") >= 3
    })
    .await;
    let faulty = plugin(&status, V0_2.name);
    assert_eq!(faulty["alerts_out"], 3, "one alert per reading, no tick: {faulty}");
    assert_eq!(faulty["wakes_deferred"], 0, "{faulty}");
    assert_running(&status, V0_2.name);
    let log = device.terminate_cleanly().await;
    assert!(!log.contains("panicked"), "{log}");
}

// ---------------------------------------------------------------------------
// Hostile wakes, through the runtime API: what the worker and replay see
// ---------------------------------------------------------------------------

const T0: i64 = 1_434_409_200_000;

fn readings(count: usize) -> Vec<Reading> {
    (0..count)
        .map(|i| Reading {
            sensor: "h1".into(),
            timestamp_ms: T0 + i as i64 * 60_000,
            value: 100.0,
            unit: "mg/dL".into(),
        })
        .collect()
}

/// faulty-v02 compiled once, with the snapshot schemas of its manifest
/// (writes 1, reads 1).
fn compiled(runtime: &Runtime) -> edgewise_host::runtime::CompiledPlugin {
    let bytes = std::fs::read(plugin_wasm("faulty-v02")).unwrap();
    runtime
        .compile("faulty-v02", &bytes)
        .unwrap()
        .with_snapshot_schemas(SnapshotSchemas::Declared {
            writes: 1,
            reads: vec![1],
        })
}

/// An instance of `plugin` under `limits`, `init` with `fail = pass` and
/// `config`, resuming from `resume`.
fn start(
    runtime: &Runtime,
    plugin: &edgewise_host::runtime::CompiledPlugin,
    limits: &Limits,
    config: &[(&str, &str)],
    resume: Option<&Snapshot>,
) -> (PluginInstance, Result<(), PluginError>) {
    let mut instance = PluginInstance::new(runtime, plugin, limits.clone()).unwrap();
    let result = instance.init_from(&passing(config), resume);
    (instance, result)
}

/// faulty-v02's configuration: every reading passes through, then `config`.
fn passing(config: &[(&str, &str)]) -> Vec<(String, String)> {
    [("fail", "pass")]
        .iter()
        .chain(config)
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// `start`, which must succeed.
fn running(
    runtime: &Runtime,
    plugin: &edgewise_host::runtime::CompiledPlugin,
    config: &[(&str, &str)],
) -> PluginInstance {
    let (instance, result) = start(runtime, plugin, &Limits::default(), config, None);
    result.unwrap();
    instance
}

#[test]
fn hostile_wakes_reach_the_host_floored_at_a_second_after_the_last_tick_and_saturated() {
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let plugin = compiled(&runtime);
    let floor = T0 + MIN_WAKE_INTERVAL_MS;

    // The far past: due at any time; after a tick, at the floor, counted.
    let mut past = running(&runtime, &plugin, &[("wake", "far-past")]);
    assert_eq!(past.wake(), Wake::At(i64::MIN));
    assert!(past.wake().due(i64::MIN));
    past.on_tick(T0).unwrap();
    assert_eq!((past.wake(), past.wakes_deferred()), (Wake::At(floor), 1));
    past.on_readings(&readings(1)).unwrap();
    assert_eq!((past.wake(), past.wakes_deferred()), (Wake::At(floor), 2));

    // Every millisecond and now: the same floor, counted at every answer.
    for wake in ["every-ms", "now"] {
        let mut eager = running(&runtime, &plugin, &[("wake", wake)]);
        for (k, now) in [T0, floor, floor + MIN_WAKE_INTERVAL_MS].into_iter().enumerate() {
            eager.on_tick(now).unwrap();
            assert_eq!(eager.wake(), Wake::At(now + MIN_WAKE_INTERVAL_MS), "[{wake}]");
            assert_eq!(eager.wakes_deferred(), k as u64 + 1, "[{wake}]");
        }
    }

    // The end of time: never due on any clock before it, nothing overflows
    // when the floor is added to a tick at the end of time either.
    let mut future = running(&runtime, &plugin, &[("wake", "far-future")]);
    assert_eq!(future.wake(), Wake::At(i64::MAX));
    future.on_readings(&readings(2)).unwrap();
    assert!(!future.wake().due(i64::MAX - 1));
    future.on_tick(i64::MAX - 1).unwrap();
    assert_eq!((future.wake(), future.wakes_deferred()), (Wake::At(i64::MAX), 0));
}

#[test]
fn a_clock_stepped_back_does_not_hold_ticks_back_for_as_long_as_the_step() {
    // A device clock an hour ahead, then corrected by NTP: the last tick was
    // at the clock's wrong time. The floor of a second after it held every
    // tick back for the hour, though the plugin's own wake (answering a
    // reading, at its time) was due: a sensor that fell off raised no
    // signal-loss for an hour.
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let plugin = compiled(&runtime);
    let hour = 3_600_000;
    let mut instance = running(&runtime, &plugin, &[("wake", "now")]);
    instance.on_tick(T0 + hour).unwrap();
    instance.on_readings(&readings(1)).unwrap();
    assert_eq!(
        instance.wake(),
        Wake::At(T0 + hour + MIN_WAKE_INTERVAL_MS),
        "floored while the clock reads ahead"
    );
    let corrected = T0 + 10_000;
    instance.clock_at(corrected);
    assert!(instance.wake().due(corrected), "{:?}", instance.wake());
    instance.on_tick(corrected).unwrap();
    // The floor counts from this tick again.
    assert_eq!(instance.wake(), Wake::At(corrected + MIN_WAKE_INTERVAL_MS));
    // A clock that reads on, as it should, changes nothing.
    instance.clock_at(corrected + 500);
    assert!(!instance.wake().due(corrected + 500));
}

// ---------------------------------------------------------------------------
// Hostile snapshots and resumes, through the runtime API
// ---------------------------------------------------------------------------

/// faulty-v02's `seen` alerts: the value is its readings so far.
fn readings_so_far(outputs: &[Output]) -> Vec<f64> {
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Alert(alert) if alert.code == "seen" => alert.value,
            _ => None,
        })
        .collect()
}

/// Whether an error's kind is the one expected.
type Expected = fn(&PluginErrorKind) -> bool;

/// A hostile `snapshot` mode and what it must come to.
struct SnapshotCase {
    mode: &'static str,
    /// The reason reported (`PluginErrorKind::tag`).
    tag: &'static str,
    kind: Expected,
}

const SNAPSHOT_CASES: [SnapshotCase; 5] = [
    // Twice the state limit: refused, the Store intact.
    SnapshotCase {
        mode: "huge",
        tag: "snapshot-limit",
        kind: |kind| matches!(kind, PluginErrorKind::Limit(LimitExceeded::Snapshot { limit, size }) if *size == 2 * *limit),
    },
    SnapshotCase {
        mode: "err",
        tag: "returned-error",
        kind: |kind| matches!(kind, PluginErrorKind::Returned(m) if m.ends_with("snapshot=err")),
    },
    SnapshotCase {
        mode: "wrong-schema",
        tag: "snapshot-schema",
        kind: |kind| *kind == PluginErrorKind::Schema(SchemaRefused::NotWritten { schema: 2, writes: 1 }),
    },
    // A trap and a loop poison the instance, as in any other call.
    SnapshotCase {
        mode: "trap",
        tag: "trap",
        kind: |kind| matches!(kind, PluginErrorKind::Trapped { stderr, .. } if stderr.contains("panicked in snapshot on purpose")),
    },
    SnapshotCase {
        mode: "loop",
        tag: "deadline",
        kind: |kind| matches!(kind, PluginErrorKind::Deadline(_)),
    },
];

#[test]
fn a_hostile_snapshot_is_a_typed_error_and_the_instance_goes_on_unless_it_trapped() {
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let plugin = compiled(&runtime);
    let limits = Limits {
        call_deadline: Duration::from_millis(200),
        ..Limits::default()
    };
    for case in SNAPSHOT_CASES {
        let (mut instance, started) = start(&runtime, &plugin, &limits, &[("snapshot", case.mode)], None);
        started.unwrap();
        instance.on_readings(&readings(2)).unwrap();
        instance.take_outputs();
        let error = instance.snapshot().unwrap_err();
        assert_eq!((error.call, error.kind.tag()), (Call::Snapshot, case.tag), "{error}");
        assert!((case.kind)(&error.kind), "[{}] {error:?}", case.mode);
        assert!(error.to_string().len() < 4096, "[{}] bounded: {error}", case.mode);
        if error.kind.poisons() {
            // The usual trap: the instance is done, the worker builds another.
            assert!(matches!(case.mode, "trap" | "loop"), "{error}");
            let after = instance.on_readings(&readings(1)).unwrap_err();
            assert_eq!(after.kind, PluginErrorKind::Poisoned, "[{}]", case.mode);
        } else {
            // Refused, nothing harmed: its state goes on where it stood.
            instance.on_readings(&readings(1)).unwrap();
            assert_eq!(readings_so_far(&instance.take_outputs()), [3.0], "[{}]", case.mode);
        }
    }
}

#[test]
fn huge_snapshots_again_and_again_stay_within_the_memory_limit() {
    // Each refused snapshot's bytes are freed (in the plugin as in the host):
    // 32 snapshots of 2 MiB in a plugin limited to 16 MiB.
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let plugin = compiled(&runtime);
    let limits = Limits {
        max_memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let (mut instance, started) = start(&runtime, &plugin, &limits, &[("snapshot", "huge")], None);
    started.unwrap();
    for _ in 0..32 {
        let error = instance.snapshot().unwrap_err();
        assert_eq!(error.kind.tag(), "snapshot-limit", "{error}");
    }
    instance.on_readings(&readings(1)).unwrap();

    // Larger than its memory limit: it cannot even build it, and that is
    // its memory limit (a trap), not the host's allocation.
    let (mut hoarder, started) = start(
        &runtime,
        &plugin,
        &limits,
        &[("snapshot", "huge"), ("snapshot_bytes", "33554432")],
        None,
    );
    started.unwrap();
    let error = hoarder.snapshot().unwrap_err();
    assert_eq!(error.kind.tag(), "memory-limit", "{error}");
    assert!(error.kind.poisons());
}

/// A snapshot to resume from, with faulty-v02's `config`, and the refusal expected.
struct Refusal {
    config: &'static [(&'static str, &'static str)],
    snapshot: Snapshot,
    kind: Expected,
}

#[test]
fn a_malformed_or_refused_resume_is_a_typed_error_and_the_instance_starts_fresh() {
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let plugin = compiled(&runtime);
    let limits = Limits::default();

    // Malformed: the host cannot tell (schema 1, opaque bytes), the plugin's
    // own `init` refuses it.
    let mut writer = running(&runtime, &plugin, &[("snapshot", "malformed")]);
    let malformed = writer.snapshot().unwrap();
    assert_eq!((malformed.schema, malformed.data.len()), (1, 3));
    // A good one, of two readings.
    let mut writer = running(&runtime, &plugin, &[]);
    writer.on_readings(&readings(2)).unwrap();
    let good = writer.snapshot().unwrap();

    let refusals = [
        Refusal {
            config: &[],
            snapshot: malformed,
            kind: |kind| matches!(kind, PluginErrorKind::Returned(m) if m.starts_with("cannot resume")),
        },
        Refusal {
            config: &[("resume", "refuse")],
            snapshot: good.clone(),
            kind: |kind| matches!(kind, PluginErrorKind::Returned(m) if m.ends_with("resume=refuse")),
        },
        // Over the state limit, or in a schema its manifest does not read:
        // refused by the host before the plugin sees it.
        Refusal {
            config: &[],
            snapshot: Snapshot {
                schema: 1,
                data: vec![0; limits.max_state_bytes + 1],
            },
            kind: |kind| matches!(kind, PluginErrorKind::Limit(LimitExceeded::Snapshot { .. })),
        },
        Refusal {
            config: &[],
            snapshot: Snapshot {
                schema: 2,
                data: good.data.clone(),
            },
            kind: |kind| matches!(kind, PluginErrorKind::Schema(SchemaRefused::NotRead { schema: 2, .. })),
        },
    ];
    for Refusal { config, snapshot, kind } in refusals {
        let (mut instance, refused) = start(&runtime, &plugin, &limits, config, Some(&snapshot));
        let error = refused.unwrap_err();
        assert_eq!(error.call, Call::Init);
        assert!(kind(&error.kind), "{snapshot:?}: {error:?}");
        assert!(!error.kind.poisons(), "{error}");
        // The host's policy: start it without the snapshot.
        instance.init(&passing(config)).unwrap();
        instance.on_readings(&readings(1)).unwrap();
        assert_eq!(readings_so_far(&instance.take_outputs()), [1.0], "{snapshot:?}");
    }

    // The good one resumes where the writer stood.
    let (mut resumed, started) = start(&runtime, &plugin, &limits, &[], Some(&good));
    started.unwrap();
    resumed.on_readings(&readings(1)).unwrap();
    assert_eq!(readings_so_far(&resumed.take_outputs()), [3.0]);
}
