//! Contract 0.2 (issue #13) through the real binary and the runtime API,
//! beside 0.1 plugins: `echo-v02` (a raw wit-bindgen plugin that shows every
//! part of the contract in its outputs) signed, verified, replayed and run;
//! wakes honoured (and bounded), batches with a sensor table, signed assets,
//! snapshot and resume (and hostile snapshots, contained).

use std::path::{Path, PathBuf};

use serde_json::Value;

use edgewise_host::model::{Output, Reading};
use edgewise_host::runtime::{
    Call, LimitExceeded, Limits, PluginErrorKind, PluginInstance, Runtime, RuntimeOptions, SchemaRefused, Snapshot,
    Wake, World,
};
use edgewise_host::{bundle, load};
use edgewise_tests::nats::NatsServer;
use edgewise_tests::{edgewise, plugin_wasm, run_key, signed_bundle};

use crate::device::{Device, now_ms, reading};
use crate::frozen_bundles::frozen_glucose_v01;
use crate::support::{assert_contains, collect_until, plugin, status_until, verified};

/// 2015-06-15 23:00 UTC: the recording's readings are at 23:00, 23:05 and
/// 23:10, so the replay's clock runs on to 01:00 the next day.
const T0: i64 = 1_434_409_200_000;
const MINUTE: i64 = 60_000;

/// Three readings of `Subject 1` (mg/dL), five minutes apart from 23:00,
/// each recorded on a CGM subject and on an echo subject: a bundle replays
/// those its manifest subscribes to (glucose-monitor `sensors.cgm.>`,
/// echo-v02 `sensors.echo.>`), the same three readings either way.
fn recording(dir: &Path) -> PathBuf {
    let path = dir.join("three.jsonl");
    let mut text = String::new();
    for (minute, value) in [(0, 150), (5, 140), (10, 130)] {
        let ts = T0 + minute * MINUTE;
        for subject in ["sensors.cgm.subject-1", "sensors.echo.subject-1"] {
            text.push_str(&format!(
                "{{\"subject\":\"{subject}\",\"payload\":{{\"sensor\":\"Subject 1\",\"ts\":{ts},\"value\":{value},\"unit\":\"mg/dL\"}}}}\n"
            ));
        }
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// `edgewise replay` of `plugin` (verified by the run's key) over the
/// three-reading recording: the output lines as JSON, and standard error.
fn replay(plugin: &Path, extra: &[&str]) -> (Vec<Value>, String) {
    replay_trusted(plugin, &run_key().trust_dir(), extra)
}

/// [`replay`] verified against the trust store `trust`.
fn replay_trusted(plugin: &Path, trust: &Path, extra: &[&str]) -> (Vec<Value>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let mut args: Vec<String> = [
        "replay",
        "--trust",
        &trust.display().to_string(),
        "--plugin",
        &plugin.display().to_string(),
        "--input",
        &recording(dir.path()).display().to_string(),
        "--out",
        &out.display().to_string(),
    ]
    .map(str::to_owned)
    .to_vec();
    args.extend(extra.iter().map(|s| s.to_string()));
    let run = edgewise(&args);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let lines = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (lines, run.stderr)
}

/// The times of echo-v02's `tick` alerts.
fn tick_times(lines: &[Value]) -> Vec<i64> {
    lines
        .iter()
        .filter(|line| line["code"] == "tick")
        .map(|line| line["ts"].as_i64().unwrap())
        .collect()
}

fn codes(lines: &[Value]) -> Vec<&str> {
    lines.iter().map(|line| line["code"].as_str().unwrap_or("")).collect()
}

#[test]
fn a_0_2_plugin_is_signed_for_its_world_verified_and_replayed_on_its_wakes_beside_a_0_1_plugin() {
    let echo = signed_bundle("echo-v02");
    let (glucose_v01, v01_trust) = frozen_glucose_v01();
    for (bundle, trust, world) in [
        (&echo, run_key().trust_dir(), World::V0_2),
        (&glucose_v01, v01_trust.clone(), World::V0_1),
    ] {
        let stdout = verified(&trust, bundle);
        assert_contains(&stdout, &format!("world {}", world.name()));
    }

    let (lines, stderr) = replay(&echo, &["--config", "asset=table.txt"]);
    // The asset, each reading (sensor and unit from the batch's table), then
    // one tick a minute after the last reading, as asked: not every 5 minutes.
    assert_eq!(codes(&lines), ["asset", "seen", "seen", "seen", "tick"], "{lines:?}");
    let table =
        std::fs::read(edgewise_tests::workspace_root().join("tests/fixtures/echo-v02/assets/table.txt")).unwrap();
    let sum: u64 = table.iter().map(|&b| u64::from(b)).sum();
    assert_eq!(
        lines[0]["message"],
        format!("table.txt bytes={} sum={sum}", table.len())
    );
    assert_eq!(lines[1]["sensor"], "Subject 1");
    assert_eq!(lines[3]["message"], "unit=mg/dL n=3");
    assert_eq!(lines[3]["value"], 130.0);
    assert_eq!(lines[4]["ts"], T0 + 11 * MINUTE);
    assert_eq!(lines[4]["value"], 3.0);
    assert_contains(&stderr, "ticks: 1\n");

    // glucose-monitor 0.1 (the frozen bundle) on the same recording: on the
    // 5-minute interval from 23:00 to 01:00; glucose-monitor 0.2 only when a
    // sensor is due, with the same outputs.
    let (v01_lines, stderr) = replay_trusted(&glucose_v01, &v01_trust, &[]);
    assert_contains(&stderr, "ticks: 25\n");
    let (v02_lines, stderr) = replay(&signed_bundle("glucose-monitor"), &[]);
    assert_contains(&stderr, "ticks: 3\n");
    let behaviour = |lines: &[Value]| -> Vec<Value> {
        lines
            .iter()
            .map(|line| {
                let mut line = line.clone();
                let object = line.as_object_mut().unwrap();
                object.remove("digest");
                object.remove("version");
                line
            })
            .collect()
    };
    assert_eq!(behaviour(&v01_lines), behaviour(&v02_lines));
}

#[test]
fn a_missing_asset_is_none_to_the_plugin() {
    let (lines, _) = replay(&signed_bundle("echo-v02"), &["--config", "asset=absent.bin"]);
    assert_eq!(lines[0]["message"], "absent.bin missing");
}

#[test]
fn a_wake_every_millisecond_is_held_to_one_tick_a_second_and_reported() {
    let (lines, stderr) = replay(&signed_bundle("echo-v02"), &["--config", "wake=every-ms"]);
    // The first tick a millisecond after the last reading, as asked; then one
    // a second, up to 01:00 (an hour past the end of the recording's day).
    let ticks = tick_times(&lines);
    assert_eq!(ticks.len(), 6_600);
    assert_eq!(ticks[0], T0 + 10 * MINUTE + 1);
    assert!(ticks.windows(2).all(|pair| pair[1] - pair[0] == 1_000));
    assert_contains(&stderr, "ticks: 6600\n");
    assert_contains(&stderr, "wakes deferred: 6600");
}

#[test]
fn a_wake_in_the_far_past_is_due_at_once_and_one_in_the_far_future_never() {
    let (lines, stderr) = replay(&signed_bundle("echo-v02"), &["--config", "wake=past"]);
    let ticks = tick_times(&lines);
    // Due at once (at the clock's time, never back), then held to the floor.
    assert_eq!(ticks.first(), Some(&(T0 + 10 * MINUTE)));
    assert_eq!(ticks.len(), 6_601);
    assert_contains(&stderr, "wakes deferred: 6601");

    let (lines, stderr) = replay(&signed_bundle("echo-v02"), &["--config", "wake=future"]);
    assert_eq!(codes(&lines), ["seen", "seen", "seen"]);
    assert_contains(&stderr, "ticks: 0\n");
}

#[test]
fn a_manifest_naming_another_world_than_the_component_targets_is_refused_at_load() {
    // Signed for 0.1 (bypassing `edgewise sign`, which names the component's
    // own world): verification knows the world, loading finds the code is 0.2.
    let key = bundle::SigningKey::from_pkcs8(&std::fs::read(run_key().private_key()).unwrap()).unwrap();
    let source = bundle::ManifestSource::from_toml(
        "name = \"echo-v02\"\nversion = \"0.2.0\"\nsubscriptions = [\"sensors.echo.>\"]\n",
    )
    .unwrap();
    let component = std::fs::read(plugin_wasm("echo-v02")).unwrap();
    let (signed, _) = bundle::sign(
        &component,
        bundle::WORLD,
        source,
        &[],
        &key,
        time::OffsetDateTime::now_utc(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mislabelled.wasm");
    std::fs::write(&path, signed).unwrap();
    assert_contains(&verified(&run_key().trust_dir(), &path), bundle::WORLD);

    let trust = run_key().trust_dir();
    let input = recording(dir.path());
    let run = edgewise([
        "replay".as_ref(),
        "--trust".as_ref(),
        trust.as_os_str(),
        "--plugin".as_ref(),
        path.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
    ]);
    assert_ne!(run.code, Some(0));
    assert_contains(
        &run.stderr,
        &format!(
            "the manifest names the world `{}`, but the component targets `{}`",
            bundle::WORLD,
            bundle::WORLD_V0_2
        ),
    );
}

// ---------------------------------------------------------------------------
// Snapshot and resume, through the runtime API
// ---------------------------------------------------------------------------

fn readings(count: usize) -> Vec<Reading> {
    (0..count)
        .map(|i| Reading {
            sensor: if i % 2 == 0 { "a" } else { "b" }.into(),
            timestamp_ms: T0 + i as i64 * 5 * MINUTE,
            value: 100.0 + i as f64,
            unit: "mg/dL".into(),
        })
        .collect()
}

fn echo(
    runtime: &Runtime,
    config: &[(&str, &str)],
    resume: Option<&Snapshot>,
) -> Result<PluginInstance, PluginErrorKind> {
    let bytes = std::fs::read(plugin_wasm("echo-v02")).unwrap();
    let compiled = runtime.compile("echo-v02", &bytes).unwrap();
    assert_eq!(compiled.world(), World::V0_2);
    let mut instance = PluginInstance::new(runtime, &compiled, Limits::default()).unwrap();
    let config: Vec<(String, String)> = config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    instance.init_from(&config, resume).map_err(|e| e.kind)?;
    Ok(instance)
}

fn messages(outputs: &[Output]) -> Vec<String> {
    outputs
        .iter()
        .map(|output| match output {
            Output::Alert(alert) => format!("{} {} {}", alert.sensor, alert.code, alert.message),
            Output::Summary(summary) => format!("summary {}", summary.sensor),
        })
        .collect()
}

#[test]
fn a_snapshot_taken_between_calls_resumes_a_fresh_instance_where_the_first_stood() {
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let mut first = echo(&runtime, &[], None).unwrap();
    first.on_readings(&readings(3)).unwrap();
    assert_eq!(first.wake(), Wake::At(T0 + 10 * MINUTE + 60_000));
    assert_eq!(
        messages(&first.take_outputs()),
        [
            "a seen unit=mg/dL n=1",
            "b seen unit=mg/dL n=2",
            "a seen unit=mg/dL n=3"
        ]
    );
    let snapshot = first.snapshot().unwrap();
    assert_eq!(
        (snapshot.schema, snapshot.data.clone()),
        (1, 3u64.to_le_bytes().to_vec())
    );

    // What a plugin emits while handing over its state is not an output.
    let mut chatty = echo(&runtime, &[("snapshot_alert", "yes")], None).unwrap();
    chatty.snapshot().unwrap();
    assert_eq!(messages(&chatty.take_outputs()), Vec::<String>::new());

    let mut resumed = echo(&runtime, &[], Some(&snapshot)).unwrap();
    resumed.on_readings(&readings(1)).unwrap();
    assert_eq!(messages(&resumed.take_outputs()), ["a seen unit=mg/dL n=4"]);
    // Taking a snapshot changes nothing: the first goes on as before.
    first.on_tick(T0 + 11 * MINUTE).unwrap();
    assert_eq!(messages(&first.take_outputs()), [" tick n=3"]);
    assert_eq!(first.wake(), Wake::Idle);
}

#[test]
fn a_malformed_or_huge_snapshot_is_a_contained_reported_failure() {
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    // Malformed (another schema, another length): the plugin refuses it.
    for bad in [
        Snapshot {
            schema: 2,
            data: vec![0; 8],
        },
        Snapshot {
            schema: 1,
            data: vec![1, 2, 3],
        },
    ] {
        let refused = echo(&runtime, &[], Some(&bad)).err().unwrap();
        assert!(
            matches!(refused, PluginErrorKind::Returned(ref m) if m.starts_with("cannot resume")),
            "{refused:?}"
        );
    }
    // Over the state limit: refused before the plugin sees it.
    let huge = Snapshot {
        schema: 1,
        data: vec![0; Limits::default().max_state_bytes + 1],
    };
    let refused = echo(&runtime, &[], Some(&huge)).err().unwrap();
    assert!(
        matches!(refused, PluginErrorKind::Limit(LimitExceeded::Snapshot { .. })),
        "{refused:?}"
    );
    assert_eq!(refused.tag(), "snapshot-limit");

    // A plugin that hands over more than its state limit: refused, and the
    // instance goes on (its Store is intact).
    let size = (2 * Limits::default().max_state_bytes).to_string();
    let mut hoarder = echo(&runtime, &[("snapshot_bytes", &size)], None).unwrap();
    let error = hoarder.snapshot().unwrap_err();
    assert_eq!(error.call, Call::Snapshot);
    assert!(
        matches!(error.kind, PluginErrorKind::Limit(LimitExceeded::Snapshot { size: s, .. }) if s == 2 * Limits::default().max_state_bytes)
    );
    assert!(!error.kind.poisons());
    hoarder.on_readings(&readings(1)).unwrap();
}

#[test]
fn a_0_1_plugin_has_no_snapshot_and_is_ticked_on_the_interval() {
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    // faulty-plugin is written against 0.1, doing nothing with `fail=none`.
    let config = [("fail".to_owned(), "none".to_owned())];
    let bytes = std::fs::read(plugin_wasm("faulty-plugin")).unwrap();
    let compiled = runtime.compile("faulty-plugin", &bytes).unwrap();
    assert_eq!(compiled.world(), World::V0_1);
    let mut instance = PluginInstance::new(&runtime, &compiled, Limits::default()).unwrap();
    let snapshot = Snapshot {
        schema: 1,
        data: Vec::new(),
    };
    let error = instance.init_from(&config, Some(&snapshot)).unwrap_err();
    assert_eq!(error.kind, PluginErrorKind::NoSnapshot(World::V0_1));
    instance.init(&config).unwrap();
    assert_eq!(instance.wake(), Wake::Interval);
    let error = instance.snapshot().unwrap_err();
    assert_eq!(error.kind, PluginErrorKind::NoSnapshot(World::V0_1));
    assert!(!error.kind.poisons());
    instance.on_readings(&readings(1)).unwrap();
}

// ---------------------------------------------------------------------------
// Snapshot schemas: what the manifest declares, the host enforces
// ---------------------------------------------------------------------------

/// echo-v02 signed by `edgewise sign` with a manifest source whose
/// `[snapshot]` table is `snapshot` (none if empty), into `dir`.
fn echo_signed_with(dir: &Path, snapshot: &str) -> PathBuf {
    let source = dir.join("edgewise.toml");
    std::fs::write(
        &source,
        format!("name = \"echo-v02\"\nversion = \"0.2.0\"\nsubscriptions = [\"sensors.echo.>\"]\n{snapshot}\n"),
    )
    .unwrap();
    let out = dir.join("echo-v02.wasm");
    run_key().sign(&source, &plugin_wasm("echo-v02"), &out).unwrap();
    out
}

/// An instance of the bundle at `path`, loaded as a device loads it
/// (verified), not yet initialised.
fn loaded_instance(runtime: &Runtime, path: &Path) -> PluginInstance {
    let store = bundle::TrustStore::load(&run_key().trust_dir()).unwrap();
    let trust = load::Trust::Verified {
        store: &store,
        rollback: None,
    };
    let operator = load::Operator {
        device: "test",
        config: &Default::default(),
        limits: &Default::default(),
        base: Limits::default(),
        ceilings: None,
    };
    let loaded = load::load(path, &trust, &operator).unwrap();
    let (compiled, _) = loaded.compile(runtime, None).unwrap();
    PluginInstance::new(runtime, &compiled, loaded.limits.clone()).unwrap()
}

/// An instance of echo-v02 signed with the `[snapshot]` table `snapshot`
/// (none if empty) and loaded, and echo-v02's snapshot of `count` readings.
fn echo_loaded_with(runtime: &Runtime, snapshot: &str, count: u64) -> (PluginInstance, Snapshot) {
    let dir = tempfile::tempdir().unwrap();
    let path = echo_signed_with(dir.path(), snapshot);
    let written = Snapshot {
        schema: 1,
        data: count.to_le_bytes().to_vec(),
    };
    (loaded_instance(runtime, &path), written)
}

fn schema_refusal(error: edgewise_host::runtime::PluginError) -> SchemaRefused {
    assert!(!error.kind.poisons(), "{error}");
    match error.kind {
        PluginErrorKind::Schema(refused) => refused,
        other => panic!("expected a schema refusal, got {other:?}"),
    }
}

#[test]
fn the_signed_fixture_declares_its_schemas_and_the_host_holds_a_loaded_bundle_to_them() {
    // echo-v02's own edgewise.toml: writes 1, reads 1.
    let echo = signed_bundle("echo-v02");
    let bytes = std::fs::read(&echo).unwrap();
    let manifest = bundle::Manifest::from_json(bundle::format::split(&bytes).unwrap().manifest_json).unwrap();
    assert_eq!(
        manifest.snapshot,
        Some(bundle::ManifestSnapshot {
            writes: 1,
            reads: vec![1]
        })
    );
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let mut first = loaded_instance(&runtime, &echo);
    first.init(&[]).unwrap();
    first.on_readings(&readings(2)).unwrap();
    let snapshot = first.snapshot().unwrap();
    assert_eq!(snapshot.schema, 1);
    let mut resumed = loaded_instance(&runtime, &echo);
    resumed.init_from(&[], Some(&snapshot)).unwrap();
    resumed.on_readings(&readings(1)).unwrap();
    assert_eq!(messages(&resumed.take_outputs()), ["a seen unit=mg/dL n=3"]);

    // A schema the manifest does not read: refused before the plugin sees
    // it (echo-v02 would have said `cannot resume`), naming both.
    let mut refused = loaded_instance(&runtime, &echo);
    let future = Snapshot {
        schema: 2,
        data: snapshot.data.clone(),
    };
    let error = refused.init_from(&[], Some(&future)).unwrap_err();
    assert_eq!(error.call, Call::Init);
    let message = error.to_string();
    assert_eq!(
        schema_refusal(error),
        SchemaRefused::NotRead {
            schema: 2,
            reads: vec![1]
        }
    );
    assert_contains(&message, "snapshot of schema 2: its manifest reads schemas [1]");
    // Refused, the instance starts fresh.
    refused.init(&[]).unwrap();
    refused.on_readings(&readings(1)).unwrap();
    assert_eq!(messages(&refused.take_outputs()), ["a seen unit=mg/dL n=1"]);
}

#[test]
fn a_bundle_that_writes_another_schema_than_its_plugin_hands_over_is_refused_its_snapshot() {
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let (mut instance, old) = echo_loaded_with(&runtime, "[snapshot]\nwrites = 2\nreads = [1, 2]", 5);
    // Reads 1: the plugin takes it.
    instance.init_from(&[], Some(&old)).unwrap();
    // Hands over schema 1 where its manifest writes 2: a contained, reported failure.
    let error = instance.snapshot().unwrap_err();
    assert_eq!(error.call, Call::Snapshot);
    assert_eq!(error.kind.tag(), "snapshot-schema");
    assert_contains(
        &error.to_string(),
        "handed over a snapshot of schema 1, but its manifest writes schema 2",
    );
    assert_eq!(
        schema_refusal(error),
        SchemaRefused::NotWritten { schema: 1, writes: 2 }
    );
    instance.on_readings(&readings(1)).unwrap();
    assert_eq!(messages(&instance.take_outputs()), ["a seen unit=mg/dL n=6"]);
}

#[test]
fn a_0_2_bundle_without_snapshot_schemas_is_given_no_snapshot_and_gives_none() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(echo_signed_with(dir.path(), "")).unwrap();
    let json = bundle::format::split(&bytes).unwrap().manifest_json.to_vec();
    assert!(!String::from_utf8(json).unwrap().contains("snapshot"));
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let (mut instance, snapshot) = echo_loaded_with(&runtime, "", 5);
    let error = instance.init_from(&[], Some(&snapshot)).unwrap_err();
    assert_eq!(schema_refusal(error), SchemaRefused::Undeclared);
    instance.init(&[]).unwrap();
    let error = instance.snapshot().unwrap_err();
    assert_eq!(schema_refusal(error), SchemaRefused::Undeclared);
    instance.on_readings(&readings(1)).unwrap();
    assert_eq!(messages(&instance.take_outputs()), ["a seen unit=mg/dL n=1"]);
}

#[test]
fn sign_refuses_snapshot_schemas_for_a_0_1_plugin_and_schemas_against_the_rules() {
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("edgewise.toml");
    let out = dir.path().join("out.wasm");
    let sign = |text: &str, crate_name: &str| {
        std::fs::write(&source, text).unwrap();
        format!(
            "{:#}",
            run_key().sign(&source, &plugin_wasm(crate_name), &out).unwrap_err()
        )
    };
    let head = "name = \"p\"\nversion = \"1.0.0\"\nsubscriptions = [\"sensors.>\"]\n";
    let error = sign(&format!("{head}[snapshot]\nwrites = 1\nreads = [1]\n"), "faulty-plugin");
    assert_contains(&error, "invalid manifest field `snapshot`: only a plugin of the");
    for (table, expected) in [
        ("writes = 1\nreads = []", "reads no schema"),
        ("writes = 1\nreads = [1, 1]", "schema 1 twice"),
        ("writes = 2\nreads = [1]", "writes 2, which it does not read"),
        ("writes = 1\nreads = [1]\nfrom = 0", "unknown field `from`"),
    ] {
        let error = sign(&format!("{head}[snapshot]\n{table}\n"), "echo-v02");
        assert_contains(&error, expected);
    }
    assert!(!out.exists());
}

// ---------------------------------------------------------------------------
// Live: `edgewise run`
// ---------------------------------------------------------------------------

/// A device (ticking every 100 ms) running glucose-monitor and echo-v02 with
/// the `[plugins.config]` line `config`, started and watching the alerts of
/// `which`; one reading at `ts` published to echo-v02.
async fn echo_device(
    local: &NatsServer,
    config: &str,
    which: &str,
    ts: i64,
) -> (Device, async_nats::Client, async_nats::Subscriber) {
    let plugins = format!("[[plugins]]\nbundle = \"echo-v02.wasm\"\n[plugins.config]\n{config}\n");
    let mut device = Device::new(local, None, &plugins);
    let (client, alerts) = device.start_watching(local, which).await;
    client.publish("sensors.echo.e1", reading(ts, 42.0)).await.unwrap();
    (device, client, alerts)
}

#[tokio::test(flavor = "multi_thread")]
async fn live_a_0_2_plugin_is_ticked_when_the_host_clock_reaches_its_wake_not_every_interval() {
    let local = NatsServer::start();
    // Ticks every 100 ms; echo-v02 asks for one 700 ms after its reading.
    let published = now_ms();
    let (mut device, client, mut alerts) = echo_device(&local, "delay_ms = \"700\"", ">", published).await;
    let echo = |seen: &[(String, Value)]| -> Vec<Value> {
        seen.iter()
            .filter(|(subject, _)| subject.ends_with(".echo-v02"))
            .map(|(_, alert)| alert.clone())
            .collect()
    };
    let seen = collect_until(&mut alerts, "echo-v02's reading and its tick", |seen| {
        echo(seen).iter().any(|alert| alert["code"] == "tick")
    })
    .await;
    let echoed = echo(&seen);
    assert_eq!(echoed[0]["code"], "seen", "{echoed:?}");
    assert_eq!(echoed[0]["sensor"], "echo.e1");
    assert_eq!(echoed[0]["message"], "unit=mg/dL n=1");
    let tick = echoed.iter().find(|alert| alert["code"] == "tick").unwrap();
    assert!(
        tick["ts"].as_i64().unwrap() >= published + 700,
        "ticked before its wake: {tick} (reading at {published})"
    );

    // Nothing more is asked: while glucose-monitor answers a low reading,
    // echo-v02 is not ticked again.
    client.publish("sensors.cgm.p1", reading(now_ms(), 45.0)).await.unwrap();
    let more = collect_until(&mut alerts, "glucose-monitor's urgent-low", |seen| {
        seen.iter()
            .any(|(subject, alert)| subject.ends_with(".glucose-monitor") && alert["code"] == "urgent-low")
    })
    .await;
    assert!(
        echo(&more).is_empty(),
        "echo-v02 ticked without asking: {:?}",
        echo(&more)
    );
    device.terminate().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn live_a_wake_every_millisecond_is_held_to_the_floor_and_counted_in_the_status() {
    let local = NatsServer::start();
    let (mut device, client, mut alerts) = echo_device(&local, "wake = \"every-ms\"", "echo-v02", now_ms()).await;
    // Every answer asks for a tick a millisecond later; the host ticks every
    // 100 ms, but the plugin at most once a second of its clock.
    let seen = collect_until(&mut alerts, "three ticks of echo-v02", |seen| {
        seen.iter().filter(|(_, alert)| alert["code"] == "tick").count() >= 3
    })
    .await;
    let ticks: Vec<i64> = seen
        .iter()
        .filter(|(_, alert)| alert["code"] == "tick")
        .map(|(_, alert)| alert["ts"].as_i64().unwrap())
        .collect();
    assert!(ticks.windows(2).all(|pair| pair[1] - pair[0] >= 1_000), "{ticks:?}");
    let status = status_until(&client, "deferred wakes in the status", |status| {
        plugin(status, "echo-v02")["wakes_deferred"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    assert_eq!(plugin(&status, "echo-v02")["errors"], 0, "{status}");
    device.terminate().await;
}
