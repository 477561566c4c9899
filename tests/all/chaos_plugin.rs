//! glucose-chaos, the test plugin for recovery after traps (issue #14): it
//! is glucose-monitor exactly, except that it traps on a random
//! `trap_percent` of its `on-readings` and `on-tick` calls, half before the
//! call reaches glucose-monitor and half after its outputs went to the host.
//! Without traps its output is glucose-monitor's golden one; `edgewise
//! replay` (fixed WASI random numbers) traps at the same call every time; a
//! live runtime (real random numbers) traps on a share of the calls.

use std::path::Path;

use serde_json::Value;

use edgewise_host::model::{Output, Reading};
use edgewise_host::runtime::{CompiledPlugin, Limits, PluginErrorKind, PluginInstance, Runtime, RuntimeOptions};
use edgewise_tests::nats::NatsServer;
use edgewise_tests::{Run, golden_file, plugin_wasm, run_key, signed_bundle};

use crate::device::{Device, glucose_chaos, now_ms, reading};
use crate::support::{assert_contains, next_json, replay_example_with};

/// glucose-monitor's golden replay of the example recording.
const GOLDEN: &str = "glucose-monitor.ExampleData5Subjects.jsonl";

/// What `edgewise replay` of the example recording through `plugin`
/// (verified against `trust` if given, with `extra`) did, and its output lines.
fn replay(plugin: &Path, trust: Option<&Path>, extra: &[&str]) -> (Run, Vec<Value>) {
    let run = replay_example_with(plugin, trust, extra);
    let lines = run
        .stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    (run, lines)
}

/// `edgewise replay` of the example recording through glucose-chaos with
/// `trap_percent`, which must trap: the trapped call's number and the output
/// lines before the trap.
fn replay_trapping(trap_percent: &str) -> (u64, Vec<Value>) {
    let config = format!("trap_percent={trap_percent}");
    let (run, written) = replay(&plugin_wasm("glucose-chaos"), None, &["--config", &config]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_contains(&run.stderr, "error: plugin `glucose-chaos` trapped");
    let (_, call) = trapped_call(&run.stderr);
    (call, written)
}

/// An output line without what names the plugin (`plugin`, `version`, `digest`).
fn without_plugin(line: &Value) -> Value {
    let mut line = line.clone();
    for key in ["plugin", "version", "digest"] {
        line.as_object_mut().unwrap().remove(key);
    }
    line
}

/// Check that `written` is glucose-monitor's golden output or the start of
/// it, apart from [`without_plugin`]'s fields; the golden output's length.
fn assert_golden_start(written: &[Value]) -> usize {
    let golden = std::fs::read_to_string(golden_file(GOLDEN)).unwrap();
    let golden: Vec<Value> = golden.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert!(written.len() <= golden.len(), "{} lines", written.len());
    for (index, (line, expected)) in written.iter().zip(&golden).enumerate() {
        assert_eq!(without_plugin(line), without_plugin(expected), "line {}", index + 1);
    }
    golden.len()
}

/// Where and at which call glucose-chaos trapped, from its panic message in
/// `text` (`... trapping on purpose before on-tick call 93`): (`before
/// on-tick`, 93).
fn trapped_call(text: &str) -> (String, u64) {
    let (_, rest) = text
        .split_once("glucose-chaos: trapping on purpose ")
        .unwrap_or_else(|| panic!("no trap message in:\n{text}"));
    let words: Vec<&str> = rest.split_whitespace().take(4).collect();
    assert_eq!(words.get(2), Some(&"call"), "{rest}");
    let number = words[3].trim_end_matches(|c: char| !c.is_ascii_digit());
    (format!("{} {}", words[0], words[1]), number.parse().unwrap())
}

#[test]
fn without_traps_the_bundle_is_glucose_monitor_output_and_snapshots_included() {
    // The signed bundle: its manifest (name, `[snapshot]`) and config
    // defaults, `trap_percent` overridden. A fresh instance from a snapshot
    // every 500 readings, checked against the uninterrupted replay.
    let (run, written) = replay(
        &signed_bundle("glucose-chaos"),
        Some(&run_key().trust_dir()),
        &["--config", "trap_percent=0", "--snapshot-every", "500"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_contains(&run.stderr, "output identical to the uninterrupted replay");
    assert_eq!(assert_golden_start(&written), written.len(), "{}", run.stderr);
    assert!(written.iter().all(|line| line["plugin"] == "glucose-chaos"));
}

#[test]
fn at_a_hundred_percent_the_first_call_traps_before_or_after_it() {
    let (call, written) = replay_trapping("100");
    assert_eq!(call, 1);
    // The recording's first call emits nothing: no output, before or after it.
    assert!(written.is_empty(), "{written:?}");
}

#[test]
fn at_a_few_percent_calls_pass_until_one_traps_and_their_outputs_are_glucose_monitors() {
    // Replay's fixed random numbers: the same call traps every time.
    let (call, written) = replay_trapping("2");
    assert!(call > 1, "call {call}");
    assert!(!written.is_empty(), "the {call} calls before the trap emitted nothing");
    assert!(assert_golden_start(&written) > written.len());
}

#[test]
fn a_bad_trap_percent_is_refused_at_init() {
    for bad in ["-1", "101", "lots"] {
        let config = format!("trap_percent={bad}");
        let (run, _) = replay(&plugin_wasm("glucose-chaos"), None, &["--config", &config]);
        assert_eq!(run.code, Some(2), "{bad}: {}", run.stderr);
        assert_contains(
            &run.stderr,
            &format!("trap_percent: `{bad}` is not a percentage from 0 to 100"),
        );
    }
}

/// One `on-readings` call in a live runtime: the trap's place and call
/// number if it trapped, and the outputs the host got.
struct Call {
    trap: Option<(String, u64)>,
    outputs: Vec<Output>,
}

/// `calls` calls of one urgent-low reading each (five minutes apart) to
/// glucose-chaos with `trap_percent` in a live runtime (real WASI random
/// numbers), a fresh instance after each trap.
fn live_calls(trap_percent: &str, calls: usize) -> Vec<Call> {
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let bytes = std::fs::read(plugin_wasm("glucose-chaos")).unwrap();
    let compiled = runtime.compile("glucose-chaos", &bytes).unwrap();
    let start = |compiled: &CompiledPlugin| {
        let mut instance = PluginInstance::new(&runtime, compiled, Limits::default()).unwrap();
        instance
            .init(&[("trap_percent".to_owned(), trap_percent.to_owned())])
            .unwrap();
        instance
    };
    let mut instance = start(&compiled);
    (0..calls)
        .map(|index| {
            let low = Reading {
                sensor: "p1".into(),
                timestamp_ms: 1_700_000_000_000 + index as i64 * 300_000,
                value: 45.0,
                unit: "mg/dL".into(),
            };
            let result = instance.on_readings(&[low]);
            let outputs = instance.take_outputs();
            let trap = match result {
                Ok(()) => None,
                Err(error) => match error.kind {
                    PluginErrorKind::Trapped { stderr, .. } => {
                        instance = start(&compiled);
                        Some(trapped_call(&stderr))
                    }
                    other => panic!("call {index}: {other}"),
                },
            };
            Call { trap, outputs }
        })
        .collect()
}

#[test]
fn live_a_share_of_calls_traps_at_random_before_and_after_their_outputs() {
    assert!(live_calls("0", 200).iter().all(|call| call.trap.is_none()));
    assert!(live_calls("100", 50).iter().all(|call| call.trap.is_some()));

    // 400 calls at 50%: 200 traps expected, standard deviation 10.
    let calls = live_calls("50", 400);
    let traps: Vec<&(String, u64)> = calls.iter().filter_map(|call| call.trap.as_ref()).collect();
    assert!((100..300).contains(&traps.len()), "{} traps", traps.len());
    let before = traps.iter().filter(|(place, _)| place == "before on-readings").count();
    assert!(
        (20..traps.len() - 20).contains(&before),
        "{before} of {} before",
        traps.len()
    );
    // Drawn anew by each instance: fixed numbers would trap every instance at the same call.
    let first_calls = traps.iter().filter(|(_, call)| *call == 1).count();
    assert!(0 < first_calls && first_calls < traps.len(), "{traps:?}");

    // The first call of an instance raises urgent-low: a trap after it has
    // handed its alert to the host, a trap before it has not.
    for call in &calls {
        if let Some((place, 1)) = &call.trap {
            let alerted = call
                .outputs
                .iter()
                .any(|o| matches!(o, Output::Alert(a) if a.code == "urgent-low"));
            assert_eq!(
                alerted,
                place == "after on-readings",
                "{place}: {} outputs",
                call.outputs.len()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn live_a_device_runs_the_bundle_as_glucose_monitor() {
    // The helper the kill and trap tests start from: a device with
    // glucose-chaos alone, here never trapping.
    let local = NatsServer::start();
    let mut device = Device::with_plugins(&local, None, "100ms", &glucose_chaos("0"));
    let (client, mut alerts) = device.start_watching(&local, "glucose-chaos").await;
    client.publish("sensors.cgm.p1", reading(now_ms(), 45.0)).await.unwrap();
    let alert = next_json(&mut alerts, "glucose-chaos's urgent-low").await;
    assert_eq!(alert["code"], "urgent-low", "{alert}");
    assert_eq!(alert["plugin"], "glucose-chaos", "{alert}");
    device.terminate_cleanly().await;
}
