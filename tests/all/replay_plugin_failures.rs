//! A failing plugin in `edgewise replay`: a clear error naming the plugin and
//! the reason, exit 1, no hang, and the outputs it made before failing kept.

use edgewise_tests::{Run, data_file, edgewise, plugin_wasm};

use crate::support::assert_contains;

/// Replay ExampleData through the faulty plugin with `fail=<mode>`, passing
/// `after` readings through first.
fn replay_faulty(mode: &str, after: u32) -> (Run, String) {
    replay_faulty_with(mode, after, &[])
}

/// As [`replay_faulty`], with extra arguments.
fn replay_faulty_with(mode: &str, after: u32, extra: &[&str]) -> (Run, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let run = edgewise(
        [
            "replay".to_owned(),
            "--plugin".to_owned(),
            plugin_wasm("faulty-plugin").display().to_string(),
            "--input".to_owned(),
            data_file("cgm/ExampleData5Subjects.csv").display().to_string(),
            "--config".to_owned(),
            format!("fail={mode}"),
            "--config".to_owned(),
            format!("after={after}"),
            "--out".to_owned(),
            out.display().to_string(),
        ]
        .into_iter()
        .chain(extra.iter().map(|a| (*a).to_owned())),
    );
    let written = std::fs::read_to_string(&out).unwrap_or_default();
    (run, written)
}

fn assert_plugin_failure(run: &Run, message: &str) {
    assert_eq!(run.code, Some(1), "stderr:\n{}", run.stderr);
    assert!(run.stderr.contains(message), "expected `{message}` in:\n{}", run.stderr);
    assert!(
        !run.stderr.contains("panicked at host"),
        "the host panicked:\n{}",
        run.stderr
    );
}

#[test]
fn plugin_err_is_reported_with_the_plugin_name() {
    let (run, written) = replay_faulty("err", 3);
    assert_plugin_failure(
        &run,
        "error: plugin `faulty-plugin` returned an error: failing on purpose at reading 3 (tick) (in `on-tick`)",
    );
    assert_eq!(
        written.lines().count(),
        3,
        "outputs before the failure are kept:\n{written}"
    );
}

#[test]
fn plugin_panic_is_a_trap_with_its_message() {
    let (run, _) = replay_faulty("panic", 0);
    assert_plugin_failure(
        &run,
        "error: plugin `faulty-plugin` trapped: wasm `unreachable` instruction executed",
    );
    assert_contains(&run.stderr, "faulty plugin panicked on purpose at reading 0");
}

#[test]
fn infinite_loop_is_stopped_by_the_deadline() {
    let (run, _) = replay_faulty("loop", 0);
    assert_plugin_failure(
        &run,
        "error: plugin `faulty-plugin` exceeded its CPU deadline of 1s (`[limits] call_deadline_ms`) (in `on-readings`)",
    );
}

#[test]
fn memory_growth_hits_the_limit() {
    let (run, _) = replay_faulty("memory", 0);
    assert_plugin_failure(
        &run,
        "error: plugin `faulty-plugin` exceeded its memory limit of 67108864 bytes",
    );
}

#[test]
fn unbounded_recursion_exhausts_the_stack() {
    let (run, _) = replay_faulty("recursion", 0);
    assert_plugin_failure(
        &run,
        "error: plugin `faulty-plugin` trapped: call stack exhausted (in `on-readings`)",
    );
}

#[test]
fn refusing_to_start_is_a_configuration_error() {
    let (run, _) = replay_faulty("init-err", 0);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(
        &run.stderr,
        "plugin `faulty-plugin` returned an error: refusing to start: fail=init-err (in `init`)",
    );
}

#[test]
fn infinite_loop_in_init_is_stopped_by_the_deadline() {
    let (run, _) = replay_faulty_with("init-loop", 0, &["--limit", "call_deadline_ms=200"]);
    assert_plugin_failure(
        &run,
        "error: plugin `faulty-plugin` exceeded its CPU deadline of 200ms (`[limits] call_deadline_ms`) (in `init`)",
    );
}

#[test]
fn a_million_alerts_in_one_call_hit_the_output_limit() {
    let (run, written) = replay_faulty("alerts", 0);
    assert_plugin_failure(
        &run,
        "error: plugin `faulty-plugin` exceeded its limit of 1000 outputs per call (`[limits] outputs_per_call`) (in `on-readings`)",
    );
    assert_eq!(written, "", "a flood is discarded whole");
}

#[test]
fn a_huge_string_hits_the_output_size_limit() {
    let (run, written) = replay_faulty("huge-string", 0);
    assert_plugin_failure(
        &run,
        "error: plugin `faulty-plugin` emitted an output of 16777261 bytes, over its limit of 65536 (`[limits] output_bytes`) (in `on-readings`)",
    );
    assert_eq!(written, "");
}

#[test]
fn a_huge_state_value_hits_the_state_limit() {
    let (run, _) = replay_faulty("huge-state", 0);
    assert_plugin_failure(
        &run,
        "error: plugin `faulty-plugin` exceeded its state limit of 1048576 bytes (`[limits] state_bytes`) (in `on-readings`)",
    );
}

#[test]
fn a_call_five_times_over_the_deadline_is_stopped() {
    // Every third call spins 5x the deadline; the first two pass.
    let (run, written) = replay_faulty_with(
        "slow",
        0,
        &["--limit", "call_deadline_ms=100", "--config", "spin_ms=500"],
    );
    assert_plugin_failure(
        &run,
        "error: plugin `faulty-plugin` exceeded its CPU deadline of 100ms (`[limits] call_deadline_ms`) (in `on-readings`)",
    );
    assert_eq!(written.lines().count(), 2, "{written}");
}

#[test]
fn operator_limits_override_and_bad_ones_are_usage_errors() {
    let (run, _) = replay_faulty_with("memory", 0, &["--limit", "memory_mb=16"]);
    assert_plugin_failure(
        &run,
        "error: plugin `faulty-plugin` exceeded its memory limit of 16777216 bytes",
    );
    for (bad, message) in [
        ("bogus=1", "unknown field `bogus`"),
        ("memory_mb=0", "--limit memory_mb: must be greater than 0"),
        ("memory_mb=lots", "--limit"),
    ] {
        let (run, _) = replay_faulty_with("err", 0, &["--limit", bad]);
        assert_eq!(run.code, Some(2), "{bad}: {}", run.stderr);
        assert!(run.stderr.contains(message), "{bad}: {}", run.stderr);
    }
}

#[test]
fn fuel_is_reported_per_reading_and_is_deterministic() {
    let fuel_line = || {
        let run = edgewise([
            "replay".to_owned(),
            "--plugin".to_owned(),
            plugin_wasm("glucose-monitor").display().to_string(),
            "--input".to_owned(),
            data_file("cgm/ExampleData5Subjects.csv").display().to_string(),
            "--out".to_owned(),
            "/dev/null".to_owned(),
            "--fuel".to_owned(),
        ]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        run.stderr
            .lines()
            .find(|l| l.starts_with("fuel: "))
            .unwrap_or_else(|| panic!("no fuel line in:\n{}", run.stderr))
            .to_owned()
    };
    let first = fuel_line();
    let per_reading: f64 = first
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{first}"));
    assert!(per_reading > 100.0, "{first}");
    assert_eq!(fuel_line(), first, "fuel is deterministic");
}
