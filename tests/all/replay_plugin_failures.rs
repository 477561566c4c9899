//! A failing plugin in `edgewise replay`: a clear error naming the plugin and
//! the reason, exit 1, no hang, and the outputs it made before failing kept.

use edgewise_tests::{Run, data_file, edgewise, plugin_wasm};

/// Replay ExampleData through the faulty plugin with `fail=<mode>`, passing
/// `after` readings through first.
fn replay_faulty(mode: &str, after: u32) -> (Run, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let run = edgewise([
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
    ]);
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
        "error: plugin `faulty-plugin` returned an error: failing on purpose at reading 3 (in `on-readings`)",
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
    assert!(
        run.stderr.contains("faulty plugin panicked on purpose at reading 0"),
        "{}",
        run.stderr
    );
}

#[test]
fn infinite_loop_is_stopped_by_the_deadline() {
    let (run, _) = replay_faulty("loop", 0);
    assert_plugin_failure(
        &run,
        "error: plugin `faulty-plugin` exceeded its CPU deadline of 1s (in `on-readings`)",
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
    assert!(
        run.stderr
            .contains("plugin `faulty-plugin` returned an error: refusing to start: fail=init-err (in `init`)"),
        "{}",
        run.stderr
    );
}
