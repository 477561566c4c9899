//! `edgewise replay --snapshot-every N` (issue #13): the replay stops every N
//! readings, takes the plugin's snapshot, starts a fresh instance from it and
//! goes on; its output must be byte-identical to the uninterrupted replay's,
//! or the command fails naming the first output that differs and the restore
//! point before it. Real binary, real plugins, real recordings.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use edgewise_tests::{
    data_file, edgewise, golden_file, plugin_manifest, plugin_wasm, run_key, signed_bundle, workspace_root,
};

use crate::support::assert_contains;

/// 2015-06-15 23:00 UTC: the replay clock runs on to 01:00 the next day.
const T0: i64 = 1_434_409_200_000;
const MINUTE: i64 = 60_000;

/// A recording (JSON lines) of one sensor's readings at `times`.
fn recording(dir: &Path, times: &[i64]) -> PathBuf {
    let path = dir.join("recording.jsonl");
    let lines: Vec<String> = times
        .iter()
        .map(|ts| format!(r#"{{"subject":"sensors.echo.e1","payload":{{"ts":{ts},"value":100,"unit":"mg/dL"}}}}"#))
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// Three readings five minutes apart from T0.
const THREE: [i64; 3] = [T0, T0 + 5 * MINUTE, T0 + 10 * MINUTE];

/// What one `edgewise replay` did: its exit code, standard error, and the
/// output file's bytes (empty if it wrote none).
pub(crate) struct Replayed {
    pub(crate) code: Option<i32>,
    pub(crate) stderr: String,
    pub(crate) output: Vec<u8>,
}

/// `edgewise replay` of the bundle `plugin` (verified by the run's key) over
/// `input`, with `extra` arguments, into a fresh output file.
pub(crate) fn replay(plugin: &Path, input: &Path, extra: &[impl AsRef<OsStr>]) -> Replayed {
    replay_trusting(Some(&run_key().trust_dir()), plugin, input, extra)
}

/// [`replay`], verified against the trust store `trust` (none: a plain
/// component, not verified).
fn replay_trusting(trust: Option<&Path>, plugin: &Path, input: &Path, extra: &[impl AsRef<OsStr>]) -> Replayed {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let mut args: Vec<OsString> = vec!["replay".into()];
    if let Some(trust) = trust {
        args.extend(["--trust".into(), trust.into()]);
    }
    args.extend([Path::new("--plugin"), plugin, Path::new("--input"), input].map(OsString::from));
    args.extend(["--out".into(), out.clone().into_os_string()]);
    args.extend(extra.iter().map(|arg| arg.as_ref().to_owned()));
    let run = edgewise(&args);
    Replayed {
        code: run.code,
        stderr: run.stderr,
        output: std::fs::read(&out).unwrap_or_default(),
    }
}

/// `--snapshot-every n` followed by `extra`.
pub(crate) fn every(n: usize, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["--snapshot-every".to_owned(), n.to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// echo-v02 (signed, verified) over a recording at `times`, stopped every
/// `n` readings, with `extra` arguments.
fn echo_every(n: usize, times: &[i64], extra: &[&str]) -> Replayed {
    let dir = tempfile::tempdir().unwrap();
    replay(
        &signed_bundle("echo-v02"),
        &recording(dir.path(), times),
        &every(n, extra),
    )
}

/// echo-v02 signed with a manifest whose `[snapshot]` table is `snapshot`
/// (none if empty), in `dir`.
fn echo_signed_with(dir: &Path, snapshot: &str) -> PathBuf {
    let manifest = dir.join("edgewise.toml");
    let head = "name = \"echo-v02\"\nversion = \"0.2.0\"\nsubscriptions = [\"sensors.echo.>\"]";
    std::fs::write(&manifest, format!("{head}\n{snapshot}\n")).unwrap();
    let bundle = dir.join("echo-v02.wasm");
    run_key().sign(&manifest, &plugin_wasm("echo-v02"), &bundle).unwrap();
    bundle
}

/// The messages of echo-v02's `seen` alerts in `output`.
fn seen(output: &[u8]) -> Vec<String> {
    std::str::from_utf8(output)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap())
        .filter(|line| line["code"] == "seen")
        .map(|line| line["message"].as_str().unwrap().to_owned())
        .collect()
}

/// echo-v02 signed with its own manifest (and asset) but subscribed to the
/// CGM subjects, in `dir`: replayed over an iglu CSV recording, whose rows
/// are on `sensors.cgm.<id>`.
fn echo_for_cgm(dir: &Path) -> PathBuf {
    let fixture = plugin_manifest("echo-v02");
    let text = std::fs::read_to_string(&fixture).unwrap();
    let text = text.replace("[\"sensors.echo.>\"]", "[\"sensors.cgm.>\"]");
    assert!(text.contains("sensors.cgm.>"), "{text}");
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    let table = fixture.parent().unwrap().join("assets/table.txt");
    std::fs::copy(table, dir.join("assets/table.txt")).unwrap();
    let manifest = dir.join("edgewise.toml");
    std::fs::write(&manifest, text).unwrap();
    let bundle = dir.join("echo-v02.wasm");
    run_key().sign(&manifest, &plugin_wasm("echo-v02"), &bundle).unwrap();
    bundle
}

#[test]
fn echo_v02_snapshotted_every_n_readings_gives_the_uninterrupted_output_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let echo = echo_for_cgm(dir.path());
    let input = data_file("cgm/ExampleData5Subjects.csv");
    // Its whole state: the readings so far and the tick it asked for.
    let config = ["--config", "snapshot_wake=yes"];
    let readings = 13_866;
    let every_reading: Vec<String> = (1..=readings).map(|n| format!("unit=mg/dL n={n}")).collect();
    for n in [1, 7, 1_000] {
        let snapshotted = replay(&echo, &input, &every(n, &config));
        assert_eq!(snapshotted.code, Some(0), "every {n}: {}", snapshotted.stderr);
        assert_contains(
            &snapshotted.stderr,
            &format!("snapshots: {} (every {n} readings)", readings / n),
        );
        assert_contains(&snapshotted.stderr, "output identical to the uninterrupted replay");
        // Each fresh instance counts on from its snapshot.
        assert!(seen(&snapshotted.output) == every_reading, "every {n}");
    }

    // No stop within the recording: the plain replay's bytes, and the
    // golden comparison is the snapshotting run's.
    let plain = replay(&echo, &input, &config);
    assert_eq!(plain.code, Some(0), "{}", plain.stderr);
    let dir = tempfile::tempdir().unwrap();
    let golden = dir.path().join("golden.jsonl");
    std::fs::write(&golden, &plain.output).unwrap();
    let golden = golden.display().to_string();
    let checked = replay(
        &echo,
        &input,
        &every(readings + 1, &[&config[..], &["--expect", &golden]].concat()),
    );
    assert_eq!(checked.code, Some(0), "{}", checked.stderr);
    assert_contains(&checked.stderr, "snapshots: 0 (every 13867 readings)");
    assert_contains(&checked.stderr, "output matches");
}

#[test]
fn the_report_counts_the_snapshots_and_their_sizes() {
    let run = echo_every(1, &THREE, &["--config", "snapshot_wake=yes"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // After each reading: the count and the pending wake, 16 bytes.
    assert_contains(
        &run.stderr,
        "snapshots: 3 (every 1 readings), 48 bytes in all, 16 at most; output identical to the uninterrupted replay",
    );
}

#[test]
fn the_one_second_floor_of_wakes_carries_over_a_restore() {
    // Every answer asks for a tick a millisecond later: the host holds it to
    // one a second after the last tick, across restores as without them.
    // The second reading comes half a second after a tick: its answer is
    // moved to a second after that tick, by the host, not the plugin.
    let times = [T0, T0 + 5 * MINUTE + 500, T0 + 10 * MINUTE];
    let run = echo_every(
        1,
        &times,
        &["--config", "snapshot_wake=yes", "--config", "wake=every-ms"],
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_contains(&run.stderr, "output identical to the uninterrupted replay");
    // Ticks a second apart from a millisecond past the first reading to
    // 01:00; every tick's answer deferred, and the second reading's.
    assert_contains(&run.stderr, "ticks: 7200\n");
    assert_contains(&run.stderr, "wakes deferred: 7201 ");
}

#[test]
fn a_state_left_out_of_the_snapshot_is_caught_naming_the_first_output_that_differs() {
    // By default echo-v02's snapshot holds its readings so far, not the tick
    // it asked for: a fresh instance started from it waits for a reading.
    let run = echo_every(1, &THREE, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    // Uninterrupted: seen (23:00), tick (23:01), seen (23:05)...; restored
    // after reading 1, the tick is never asked for: the outputs aligned, the
    // snapshotted replay lacks that one.
    let heading = "output 2 differs from the uninterrupted replay (restored after reading 1 before it): \
                   - uninterrupted line 2: ";
    let line = run
        .stderr
        .lines()
        .find(|line| line.starts_with(heading))
        .unwrap_or_else(|| panic!("no `{heading}` in:\n{}", run.stderr));
    assert_contains(
        line,
        &format!(r#""ts":{},"severity":"info","code":"tick""#, T0 + MINUTE),
    );
    assert_contains(
        &run.stderr,
        "error: the output with snapshots every 1 readings differs from the uninterrupted replay",
    );
    // The outputs written are the snapshotting run's.
    assert_eq!(String::from_utf8(run.output).unwrap().lines().count(), 3);
}

#[test]
fn a_plugin_without_snapshots_is_refused_before_any_replay() {
    let dir = tempfile::tempdir().unwrap();
    let input = recording(dir.path(), &THREE);
    // Contract 0.1 (signed before 0.2 existed): no `snapshot` at all.
    let frozen = workspace_root().join("tests/fixtures/bundles/v0.1");
    let run = replay_trusting(
        Some(&frozen.join("trust")),
        &frozen.join("glucose-monitor-0.1.0.wasm"),
        &input,
        &every(5, &[]),
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(
        &run.stderr,
        "--snapshot-every: glucose-monitor targets edgewise:plugin/sensor-plugin@0.1.0, which has no snapshot",
    );
    assert!(run.output.is_empty() && !run.stderr.contains("readings replayed"));

    // Contract 0.2, but its manifest declares no `[snapshot]`.
    let run = replay(&echo_signed_with(dir.path(), ""), &input, &every(5, &[]));
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(
        &run.stderr,
        "--snapshot-every: echo-v02: takes no snapshot: its manifest declares no snapshot schema",
    );
    assert!(run.output.is_empty() && !run.stderr.contains("readings replayed"));

    // N counts readings: at least one.
    let run = echo_every(0, &THREE, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(&run.stderr, "--snapshot-every");
}

#[test]
fn a_refused_snapshot_or_restore_is_a_reported_failure_naming_the_reading() {
    let cases: [(&[&str], &str, &str); 3] = [
        // Over the state limit: the runtime refuses it.
        (
            &["--limit", "state_bytes=100", "--config", "snapshot_bytes=101"],
            "the snapshot after reading 2 was refused",
            "snapshot of 101 bytes, over its state limit of 100",
        ),
        // The plugin's own `err`.
        (
            &["--config", "snapshot_refuse=yes"],
            "the snapshot after reading 2 was refused",
            "returned an error: asked to refuse its snapshot",
        ),
        // A snapshot the plugin cannot start from (3 bytes): `init` says `err`.
        (
            &["--config", "snapshot_bytes=3"],
            "no fresh instance could be started from the snapshot taken after reading 2",
            "cannot resume from a snapshot of schema 1 or that length",
        ),
    ];
    for (extra, failure, reason) in cases {
        let run = echo_every(2, &THREE, extra);
        assert_eq!(run.code, Some(1), "{extra:?}: {}", run.stderr);
        assert_contains(&run.stderr, &format!("error: {failure}"));
        assert_contains(&run.stderr, reason);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }

    // A snapshot in another schema than the manifest writes.
    let dir = tempfile::tempdir().unwrap();
    let bundle = echo_signed_with(dir.path(), "[snapshot]\nwrites = 2\nreads = [1, 2]");
    let input = recording(dir.path(), &THREE);
    let run = replay(&bundle, &input, &every(2, &[]));
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_contains(&run.stderr, "error: the snapshot after reading 2 was refused");
    assert_contains(
        &run.stderr,
        "handed over a snapshot of schema 1, but its manifest writes schema 2",
    );
}

// ---------------------------------------------------------------------------
// glucose-monitor (contract 0.2, through the SDK): the round trip is exact
// ---------------------------------------------------------------------------

/// glucose-monitor (the plain component) over the recording `input`,
/// snapshotted every `n` readings, with `extra` arguments: it succeeds,
/// identical to the uninterrupted replay, having restored `readings / n`
/// times.
fn glucose_every(n: usize, input: &Path, readings: usize, extra: &[&str]) -> Replayed {
    let run = replay_trusting(None, &plugin_wasm("glucose-monitor"), input, &every(n, extra));
    assert_eq!(run.code, Some(0), "every {n}: {}", run.stderr);
    assert_contains(
        &run.stderr,
        &format!("snapshots: {} (every {n} readings)", readings / n),
    );
    assert_contains(&run.stderr, "output identical to the uninterrupted replay");
    run
}

#[test]
fn glucose_monitor_snapshotted_every_n_readings_of_example_data_gives_the_golden_output() {
    let input = data_file("cgm/ExampleData5Subjects.csv");
    let golden = golden_file("glucose-monitor.ExampleData5Subjects.jsonl");
    let golden = golden.display().to_string();
    // Every reading (13,866 restores), a prime, and a round number.
    for n in [1, 97, 1_000] {
        let run = glucose_every(n, &input, 13_866, &["--expect", &golden]);
        assert_contains(&run.stderr, "output matches");
    }
}

#[test]
fn glucose_monitor_snapshotted_every_n_readings_of_hall2018_gives_the_plain_replays_bytes() {
    let input = data_file("cgm/Hall2018_processed.csv");
    let plain = replay_trusting(None, &plugin_wasm("glucose-monitor"), &input, &[] as &[&str]);
    assert_eq!(plain.code, Some(0), "{}", plain.stderr);
    assert!(plain.output.len() > 1_000_000, "glucose-monitor said almost nothing");
    for n in [97, 1_000] {
        let run = glucose_every(n, &input, 105_417, &[]);
        assert!(run.output == plain.output, "every {n}: not the plain replay's output");
    }
}
