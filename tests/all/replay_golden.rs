//! Golden replays: real recordings through real plugins, compared with
//! committed output. Set `EDGEWISE_BLESS=1` to rewrite the golden files,
//! then review the diff before committing.

use std::fmt::Write as _;

use edgewise_tests::{data_file, edgewise, golden_file, plugin_wasm, run_key, signed_bundle};

use crate::support::{assert_contains, replay_run};

fn bless() -> bool {
    std::env::var_os("EDGEWISE_BLESS").is_some()
}

/// Replay the component or bundle `plugin` and compare with a golden file
/// (or rewrite it when blessing).
pub(crate) fn check_golden(plugin: &std::path::Path, input: &std::path::Path, golden: &str, extra: &[&str]) {
    let golden_path = golden_file(golden);
    let mut args = vec!["--expect", golden_path.to_str().unwrap()];
    args.extend(extra);
    if bless() {
        args.push("--update");
    }
    let run = replay_run(plugin, input, &args);
    assert_eq!(run.code, Some(0), "replay against {golden} failed:\n{}", run.stderr);
    if !bless() {
        assert_contains(&run.stderr, "output matches");
    }
}

#[test]
fn glucose_monitor_over_example_data_matches_golden() {
    check_golden(
        &plugin_wasm("glucose-monitor"),
        &data_file("cgm/ExampleData5Subjects.csv"),
        "glucose-monitor.ExampleData5Subjects.jsonl",
        &[],
    );
}

#[test]
fn the_signed_bundle_passes_the_golden_made_from_the_plain_build() {
    // The golden file is the plain component's: `"version":"unsigned"` and
    // its digest on every line. The bundle says its version and applies its
    // manifest (subscriptions `sensors.cgm.>`, which the CSV rows are on).
    let golden = golden_file("glucose-monitor.ExampleData5Subjects.jsonl");
    let text = std::fs::read_to_string(&golden).unwrap();
    assert!(text.lines().all(|line| line.contains("\"version\":\"unsigned\"")));
    let trust = run_key().trust_dir().display().to_string();
    check_golden(
        &signed_bundle("glucose-monitor"),
        &data_file("cgm/ExampleData5Subjects.csv"),
        "glucose-monitor.ExampleData5Subjects.jsonl",
        &["--trust", &trust],
    );
}

#[test]
fn replay_is_byte_identical_run_to_run() {
    let dir = tempfile::tempdir().unwrap();
    let mut outputs = Vec::new();
    for run_index in 0..2 {
        let out = dir.path().join(format!("run{run_index}.jsonl"));
        let run = edgewise([
            "replay".as_ref(),
            "--plugin".as_ref(),
            plugin_wasm("glucose-monitor").as_os_str(),
            "--input".as_ref(),
            data_file("cgm/ExampleData5Subjects.csv").as_os_str(),
            "--out".as_ref(),
            out.as_os_str(),
        ]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        outputs.push(std::fs::read(&out).unwrap());
    }
    assert!(outputs[0].len() > 1000, "replay produced almost nothing");
    assert!(outputs[0] == outputs[1], "two replays of the same recording differ");
}

#[test]
fn hall2018_completes_and_reports_the_na_rows() {
    let run = edgewise([
        "replay".as_ref(),
        "--plugin".as_ref(),
        plugin_wasm("glucose-monitor").as_os_str(),
        "--input".as_ref(),
        data_file("cgm/Hall2018_processed.csv").as_os_str(),
        "--out".as_ref(),
        std::env::temp_dir().join("edgewise-hall2018.jsonl").as_os_str(),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_contains(&run.stderr, "105426 rows read, 105417 readings replayed");
    assert_contains(
        &run.stderr,
        "skipped: 9 (NA: 9, duplicate timestamp: 0, invalid row: 0)",
    );
    assert_contains(&run.stderr, "readings/s");
}

/// A cold-chain recording made up by the test, deterministic: two vaccine
/// fridges sampled every minute for six hours; fridge-a drifts above 8 °C
/// for over half an hour when its door is left open (a repeat) and cools fast
/// when it is shut (a rate alert); fridge-b freezes briefly below 2 °C.
pub(crate) fn cold_chain_recording() -> String {
    let start_ms: i64 = 1_700_000_000_000 - 1_700_000_000_000 % 3_600_000;
    let mut text = String::new();
    for minute in 0..360i64 {
        let ts = start_ms + minute * 60_000;
        let wobble = ((minute * 7919) % 13) as f64 / 20.0 - 0.3;
        let fridge_a = match minute {
            100..=150 => 5.0 + (minute - 100) as f64 * 0.2,
            151..=160 => 15.0 - (minute - 150) as f64,
            _ => 5.0 + wobble,
        };
        let fridge_b = match minute {
            200..=215 => 1.5 - (minute - 200) as f64 * 0.05,
            _ => 4.0 + wobble,
        };
        writeln!(
            text,
            r#"{{"subject":"sensors.fridge-a","payload":{{"ts":{ts},"value":{fridge_a:.2},"unit":"degC"}}}}"#
        )
        .unwrap();
        writeln!(
            text,
            r#"{{"subject":"sensors.fridge-b","payload":{{"ts":{ts},"value":{fridge_b:.2},"unit":"degC"}}}}"#
        )
        .unwrap();
    }
    text
}

#[test]
fn threshold_over_generated_cold_chain_data_matches_golden() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("cold-chain.jsonl");
    std::fs::write(&input, cold_chain_recording()).unwrap();
    check_golden(
        &plugin_wasm("threshold"),
        &input,
        "threshold.cold-chain.jsonl",
        &["--tick", "1m"],
    );
}

#[test]
fn a_manifests_outputs_per_second_does_not_apply_to_replay() {
    // The key bounds a live device's outputs per second of wall-clock time
    // (docs/manifest.md); replay runs on virtual time as fast as the CPU
    // goes, so enforcing it there made a golden check depend on the machine.
    let dir = tempfile::tempdir().unwrap();
    let manifest = std::fs::read_to_string(edgewise_tests::plugin_manifest("threshold")).unwrap();
    let limited = manifest.replace("[limits]\n", "[limits]\noutputs_per_second = 1\n");
    assert_ne!(limited, manifest, "the manifest has a [limits] table");
    let limited_path = dir.path().join("edgewise.toml");
    std::fs::write(&limited_path, limited).unwrap();
    let limited_bundle = run_key().bundle(&limited_path, &plugin_wasm("threshold")).unwrap();
    // Fifteen fridges too warm, one reading each within a second: an alert each.
    let mut recording = String::new();
    for fridge in 0..15 {
        writeln!(
            recording,
            "{{\"subject\":\"sensors.temperature.f{fridge}\",\"payload\":{{\"ts\":{},\"value\":20}}}}",
            1_767_225_600_000_i64 + fridge * 10
        )
        .unwrap();
    }
    let input = dir.path().join("warm.jsonl");
    std::fs::write(&input, recording).unwrap();
    let unlimited = replay_run(&signed_bundle("threshold"), &input, &[] as &[&str]);
    let lines = unlimited.json_lines();
    assert!(lines.len() > 10, "{}", unlimited.stdout);
    let limited = replay_run(&limited_bundle, &input, &[] as &[&str]);
    assert_eq!(limited.code, Some(0), "{}", limited.stderr);
    assert_eq!(limited.stdout, unlimited.stdout);
}
