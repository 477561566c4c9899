//! `edgewise replay` on bad input: each case gets one clear message and the
//! documented exit code (2 for bad input or usage, 1 for a golden mismatch).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use edgewise_procs::child::ChildGuard;
use edgewise_tests::{Run, edgewise, edgewise_bin, plugin_wasm};

use crate::support::assert_contains;

const HEADER: &str = "\"id\",\"time\",\"gl\"\n";

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new() -> Case {
        Case {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Replay `input` through the threshold plugin (glucose-like limits) with extra args.
fn replay(input: &Path, extra: &[&str]) -> Run {
    replay_with(&plugin_wasm("threshold"), input, extra)
}

fn replay_with(plugin: &Path, input: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<String> = vec![
        "replay".into(),
        "--plugin".into(),
        plugin.display().to_string(),
        "--input".into(),
        input.display().to_string(),
        "--config".into(),
        "low=70".into(),
        "--config".into(),
        "high=180".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    edgewise(args)
}

fn assert_fails(run: &Run, code: i32, message: &str) {
    assert_eq!(run.code, Some(code), "exit code; stderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains(message),
        "expected `{message}` in stderr:\n{}",
        run.stderr
    );
}

#[test]
fn missing_recording() {
    let case = Case::new();
    let missing = case.path("nope.csv");
    let run = replay(&missing, &[]);
    assert_fails(
        &run,
        2,
        &format!("error: cannot read {}: No such file or directory", missing.display()),
    );
}

#[test]
fn empty_recording_and_header_only() {
    let case = Case::new();
    let empty = case.file("empty.csv", "");
    assert_fails(
        &replay(&empty, &[]),
        2,
        &format!("error: {}: the recording is empty", empty.display()),
    );
    let header_only = case.file("header.csv", HEADER);
    assert_fails(&replay(&header_only, &[]), 2, "the recording is empty");
}

#[test]
fn wrong_header() {
    let case = Case::new();
    let input = case.file("bad.csv", "subject,when,glucose\na,2015-01-01 00:00:00,100\n");
    let run = replay(&input, &[]);
    assert_fails(
        &run,
        2,
        &format!(
            "{}:1: wrong header: expected `id,time,gl`, found `subject,when,glucose`",
            input.display()
        ),
    );
    assert_eq!(run.stderr.lines().count(), 1, "one clear line: {}", run.stderr);
}

#[test]
fn unparsable_rows_name_file_and_line() {
    let case = Case::new();
    let rows = [
        (
            "\"a\",2015-01-01 00:00:00,100\n\"a\",yesterday,100\n",
            ":3: bad time `yesterday`",
        ),
        (
            "\"a\",2015-01-01 00:00:00,1o0\n",
            ":2: bad glucose value `1o0`: expected a number or NA",
        ),
        (
            "\"a\",2015-01-01 00:00:00\n",
            ":2: expected 3 fields (id,time,gl), found 2",
        ),
        (
            "\"a\",2015-01-01 00:00:00,100,7\n",
            ":2: expected 3 fields (id,time,gl), found 4",
        ),
        ("\"\",2015-01-01 00:00:00,100\n", ":2: empty `id`"),
        ("\"a\",2015-01-01 00:00:00,inf\n", ":2: bad glucose value `inf`"),
    ];
    for (index, (body, message)) in rows.iter().enumerate() {
        let input = case.file(&format!("rows{index}.csv"), &format!("{HEADER}{body}"));
        assert_fails(&replay(&input, &[]), 2, &format!("{}{message}", input.display()));
    }
}

#[test]
fn skip_invalid_counts_and_reports_bad_rows() {
    let case = Case::new();
    let input = case.file(
        "mixed.csv",
        &format!("{HEADER}\"a\",2015-01-01 00:00:00,100\n\"a\",garbage,1\n\"a\",2015-01-01 00:05:00,x\n\"a\",2015-01-01 00:10:00,110\n"),
    );
    let run = replay(&input, &["--skip-invalid"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_contains(&run.stderr, "4 rows read, 2 readings replayed");
    assert_contains(&run.stderr, "invalid row: 2");
}

#[test]
fn na_values_are_skipped_and_counted() {
    let case = Case::new();
    let input = case.file(
        "na.csv",
        &format!("{HEADER}\"a\",2015-01-01 00:00:00,NA\n\"a\",2015-01-01 00:05:00,100\n\"a\",2015-01-01 00:10:00,NA\n"),
    );
    let run = replay(&input, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_contains(
        &run.stderr,
        "skipped: 2 (NA: 2, duplicate timestamp: 0, invalid row: 0)",
    );
    assert_contains(&run.stderr, "1 readings replayed");
}

#[test]
fn duplicate_timestamps_keep_the_last_value() {
    let case = Case::new();
    // The first value is in range, the duplicate above the high limit: only
    // the kept (last) value can raise `above-high`.
    let input = case.file(
        "dup.csv",
        &format!(
            "{HEADER}\"a\",2015-01-01 00:00:00,100\n\"a\",2015-01-01 00:00:00,250\n\"b\",2015-01-01 00:00:00,100\n"
        ),
    );
    let run = replay(&input, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_contains(&run.stderr, "duplicate timestamp: 1");
    let alerts: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.contains("\"type\":\"alert\""))
        .collect();
    assert_eq!(alerts.len(), 1, "{}", run.stdout);
    assert!(
        alerts[0].contains("\"code\":\"above-high\"") && alerts[0].contains("\"value\":250.0"),
        "{}",
        alerts[0]
    );
}

#[test]
fn rows_out_of_order_are_sorted() {
    let case = Case::new();
    let rows: Vec<String> = (0..48)
        .map(|i| {
            format!(
                "\"a\",2015-01-01 {:02}:{:02}:00,{}\n",
                i * 5 / 60,
                i * 5 % 60,
                60 + i * 5
            )
        })
        .collect();
    let sorted = case.file("sorted.csv", &format!("{HEADER}{}", rows.concat()));
    let mut shuffled_rows = rows.clone();
    shuffled_rows.swap(3, 40);
    shuffled_rows.swap(10, 11);
    shuffled_rows.reverse();
    let shuffled = case.file("shuffled.csv", &format!("{HEADER}{}", shuffled_rows.concat()));
    let plugin = plugin_wasm("glucose-monitor");
    let in_order = replay_with(&plugin, &sorted, &[]);
    let out_of_order = replay_with(&plugin, &shuffled, &[]);
    assert_eq!(in_order.code, Some(0), "{}", in_order.stderr);
    assert_eq!(out_of_order.code, Some(0), "{}", out_of_order.stderr);
    assert!(!in_order.stdout.is_empty());
    assert_eq!(in_order.stdout, out_of_order.stdout);
    assert_contains(&out_of_order.stderr, "out of order (sorted): ");
    assert!(
        !out_of_order.stderr.contains("out of order (sorted): 0"),
        "{}",
        out_of_order.stderr
    );
}

#[test]
fn bad_jsonl_line_names_file_and_line() {
    let case = Case::new();
    let input = case.file(
        "rec.jsonl",
        "{\"subject\":\"sensors.a\",\"payload\":{\"ts\":0,\"value\":1}}\n{\"subject\":\"sensors.a\",\"payload\":{\"ts\":1}}\n",
    );
    assert_fails(
        &replay(&input, &[]),
        2,
        &format!("{}:2: reading 0: missing `value`", input.display()),
    );
    let not_json = case.file(
        "junk.jsonl",
        "{\"subject\":\"sensors.a\",\"payload\":{\"ts\":0,\"value\":1}}\nnot json\n",
    );
    assert_fails(
        &replay(&not_json, &[]),
        2,
        &format!("{}:2: not JSON", not_json.display()),
    );
}

#[test]
fn bad_arguments() {
    let case = Case::new();
    let input = case.file("ok.csv", &format!("{HEADER}\"a\",2015-01-01 00:00:00,100\n"));
    assert_fails(&replay(&input, &["--tick", "0s"]), 2, "the tick must be at least 1ms");
    assert_fails(
        &replay(&input, &["--tick", "soon"]),
        2,
        "invalid value 'soon' for '--tick <DURATION>'",
    );
    assert_fails(
        &replay(&input, &["--config", "novalue"]),
        2,
        "`novalue` is not KEY=VALUE",
    );
    assert_fails(&replay(&input, &["--update"]), 2, "--expect <GOLDEN>");
    assert_fails(
        &replay(&input, &["--format", "xml"]),
        2,
        "invalid value 'xml' for '--format <FORMAT>'",
    );
}

#[test]
fn bad_plugin_files() {
    let case = Case::new();
    let input = case.file("ok.csv", &format!("{HEADER}\"a\",2015-01-01 00:00:00,100\n"));
    let missing = case.path("missing.wasm");
    assert_fails(
        &replay_with(&missing, &input, &[]),
        2,
        &format!("cannot read plugin {}", missing.display()),
    );
    let text = case.file("text.wasm", "hello");
    assert_fails(&replay_with(&text, &input, &[]), 2, "`text` is not a WebAssembly file");
    // The smallest valid core module: magic and version 1, no sections.
    let core = case.path("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    assert_fails(
        &replay_with(&core, &input, &[]),
        2,
        "`core` is a core WebAssembly module, not a component",
    );
}

#[test]
fn plugin_refusing_its_configuration() {
    let case = Case::new();
    let input = case.file("ok.csv", &format!("{HEADER}\"a\",2015-01-01 00:00:00,100\n"));
    let run = replay(&input, &["--config", "hihg=300"]);
    assert_fails(
        &run,
        2,
        "plugin `threshold` returned an error: unknown config key(s): hihg (in `init`)",
    );
}

#[test]
fn golden_mismatch_shows_line_numbers_and_update_rewrites() {
    let case = Case::new();
    let input = case.file(
        "g.csv",
        &format!(
            "{HEADER}\"a\",2015-01-01 00:00:00,100\n\"a\",2015-01-01 00:05:00,200\n\"a\",2015-01-01 00:10:00,100\n"
        ),
    );
    let golden = case.path("golden.jsonl");
    let golden_arg = golden.display().to_string();
    assert_fails(
        &replay(&input, &["--expect", &golden_arg]),
        2,
        "run again with --update to write it",
    );

    let update = replay(&input, &["--expect", &golden_arg, "--update"]);
    assert_eq!(update.code, Some(0), "{}", update.stderr);
    let written = std::fs::read_to_string(&golden).unwrap();
    assert!(written.lines().count() >= 2, "{written}");
    let matches = replay(&input, &["--expect", &golden_arg]);
    assert_eq!(matches.code, Some(0), "{}", matches.stderr);

    // Change the second line's sequence number: the diff must point at line 2.
    let mut lines: Vec<String> = written.lines().map(str::to_owned).collect();
    lines[1] = lines[1].replace("\"seq\":2", "\"seq\":99");
    std::fs::write(&golden, lines.join("\n") + "\n").unwrap();
    let run = replay(&input, &["--expect", &golden_arg]);
    assert_fails(&run, 1, "line 2: field `seq`: expected 99, actual 2\n  expected: ");
    assert_contains(&run.stderr, "\"seq\":99");
    assert!(!run.stderr.contains("line 1:"), "{}", run.stderr);
}

/// How long a replay that should end at once may run before the test calls
/// it a hang: a bound on a runaway, far beyond the second it takes.
const RUNAWAY: Duration = Duration::from_secs(60);

/// `edgewise ARGS`, killed (and the test failed) if it has not ended within
/// [`RUNAWAY`]; its output goes to files, so a full pipe cannot stall it.
fn edgewise_ending(case: &Case, args: &[String]) -> Run {
    let (out, err) = (case.path("stdout"), case.path("stderr"));
    let child = std::process::Command::new(edgewise_bin())
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let mut child = ChildGuard::new("edgewise", child);
    let status = child.wait_timeout(RUNAWAY).unwrap();
    let stderr = std::fs::read_to_string(&err).unwrap();
    let Some(status) = status else {
        child.kill();
        panic!(
            "`edgewise {}` still ran after {RUNAWAY:?}; stderr:\n{stderr}",
            args.join(" ")
        );
    };
    Run {
        code: status.code(),
        stdout: std::fs::read_to_string(&out).unwrap(),
        stderr,
    }
}

#[test]
fn a_reading_near_the_end_of_time_replays_and_ends() {
    // Its day ends past i64::MAX ms: the replay's end and the plugin's wake
    // both stop at i64::MAX, where the clock once ticked for ever.
    let case = Case::new();
    let input = case.file(
        "late.jsonl",
        "{\"subject\":\"sensors.temperature.f1\",\"payload\":{\"ts\":9223372036854775000,\"value\":5}}\n",
    );
    let args: Vec<String> = [
        "replay",
        "--plugin",
        &plugin_wasm("threshold").display().to_string(),
        "--input",
        &input.display().to_string(),
        "--config",
        "low=70",
        "--config",
        "high=180",
    ]
    .map(str::to_owned)
    .into();
    let run = edgewise_ending(&case, &args);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_contains(&run.stderr, "1 readings replayed");
    // The reading is below `low`: the alert is there, at its time.
    assert_contains(&run.stdout, "9223372036854775000");
}

#[test]
fn a_plugin_asking_for_more_ticks_than_the_bound_is_stopped_with_a_clear_error() {
    // faulty-v02 asks for a tick a millisecond after every call: ticked once
    // a virtual second, a day of recording is 90,000 ticks (a mistyped
    // year, centuries: billions, hours of CPU). The ticks made are counted
    // and bounded, for a 0.2 plugin as for 0.1.
    let case = Case::new();
    let input = case.file(
        "day.csv",
        &format!("{HEADER}\"a\",2024-01-01 00:00:00,100\n\"a\",2024-01-01 06:00:00,100\n"),
    );
    let faulty = plugin_wasm("faulty-v02");
    let args: Vec<String> = [
        "replay",
        "--plugin",
        &faulty.display().to_string(),
        "--input",
        &input.display().to_string(),
        "--config",
        "wake=every-ms",
        "--config",
        "fail=none",
        "--max-ticks",
        "1000",
    ]
    .map(str::to_owned)
    .into();
    let run = edgewise_ending(&case, &args);
    assert_fails(
        &run,
        2,
        "error: the replay made its 1000 ticks (--max-ticks) by 2024-01-01T00:16:40Z and the plugin asks for more",
    );
    // Within the bound (the default: 100,000,000), the same replay ends.
    let within: Vec<String> = args[..args.len() - 2].to_vec();
    let run = edgewise_ending(&case, &within);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_contains(&run.stderr, "ticks: 90001");
}

/// A recording made to hold the summary windows of 900 sensors for about
/// ten hours and have them released together (each sensor read every minute
/// for 200 minutes, then 14 readings below 70 mg/dL 45 minutes apart, a run
/// never decided; glucose-monitor's unit test
/// `windows_held_by_many_sensors_released_together_stay_within_the_outputs_of_a_call`
/// has the same), beside a real patient's sensor. Replayed under its
/// manifest's limits, glucose-monitor never fails a call and emits every
/// summary. Before, the tick after the gap made more outputs than the
/// manifest allows a call (420 sensors made 5,408, past its 4,000 then): the
/// replay failed (exit 1), as a device failed that tick for ever and
/// quarantined the plugin.
#[test]
fn glucose_monitor_releases_windows_held_by_many_sensors_within_its_outputs_per_call() {
    let case = Case::new();
    let minute = |m: u32| format!("2024-01-01 {:02}:{:02}:00", m / 60, m % 60);
    let mut rows = Vec::new();
    for i in 0..900 {
        rows.extend((0..200).map(|m| (m, format!("a{i:04}"), 100)));
        rows.extend((0..14).map(|k| (200 + 45 * k, format!("a{i:04}"), 65)));
    }
    rows.extend((0..20 * 12).map(|k| (5 * k, "zreal".to_owned(), 120)));
    rows.sort();
    let body: String = rows
        .iter()
        .map(|(m, sensor, value)| format!("\"{sensor}\",{},{value}\n", minute(*m)))
        .collect();
    let input = case.file("held.csv", &format!("{HEADER}{body}"));
    let manifest = edgewise_tests::workspace_root().join("plugins/glucose-monitor/edgewise.toml");
    let run = edgewise([
        "replay".as_ref(),
        "--plugin".as_ref(),
        plugin_wasm("glucose-monitor").as_os_str(),
        "--manifest".as_ref(),
        manifest.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let mut summaries: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for line in run.stdout.lines() {
        let output: serde_json::Value = serde_json::from_str(line).unwrap();
        if output["type"] == "summary" {
            *summaries
                .entry(output["sensor"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    // Hours 0 to 13 of each sensor, and its day.
    let held = summaries.iter().filter(|(sensor, _)| sensor.starts_with('a'));
    assert!(
        held.clone().count() == 900 && held.clone().all(|(_, n)| *n == 15),
        "{summaries:?}"
    );
}

/// 1,001 sensors, one reading each within the same hour: the tick that
/// closes the hour makes a summary for each. threshold, band and band-py
/// took the host's default of 1,000 outputs a call and no sensor cap: that
/// tick failed every time, and on a device every patient's readings after
/// it (the SDK ticks a plugin inside its next calls). Their manifests now
/// cap the sensors at 1,000 (what a device admits) and allow 4,000 outputs a
/// call; replayed under them, the tick of 1,001 passes.
#[test]
fn a_tick_closing_the_hour_of_1001_sensors_stays_within_each_plugins_outputs_per_call() {
    let case = Case::new();
    let start_ms: i64 = 1_704_067_200_000;
    for (plugin, subject, value) in [
        ("threshold", "sensors.temperature", 5.0),
        ("band", "sensors.cgm", 100.0),
        ("band-py", "sensors.cgm", 100.0),
    ] {
        let lines: String = (0..1001)
            .map(|i| {
                format!(
                    "{{\"subject\":\"{subject}.s{i:05}\",\"payload\":{{\"ts\":{},\"value\":{value}}}}}\n",
                    start_ms + i * 100
                )
            })
            .collect();
        let input = case.file(&format!("{plugin}.jsonl"), &lines);
        let manifest = edgewise_tests::plugin_manifest(plugin);
        let run = edgewise([
            "replay".as_ref(),
            "--plugin".as_ref(),
            plugin_wasm(plugin).as_os_str(),
            "--manifest".as_ref(),
            manifest.as_os_str(),
            "--input".as_ref(),
            input.as_os_str(),
        ]);
        assert_eq!(run.code, Some(0), "{plugin}: {}", run.stderr);
        let summaries = run
            .stdout
            .lines()
            .filter(|line| line.contains("\"type\":\"summary\""))
            .count();
        assert_eq!(summaries, 1001, "{plugin}: a summary per sensor");
    }
}

/// threshold replayed under its manifest's limits (and, with
/// `--snapshot-every`, its snapshots under its `state_bytes`).
fn replay_threshold_under_its_manifest(input: &Path, extra: &[&str]) -> Run {
    let manifest = edgewise_tests::plugin_manifest("threshold");
    let mut args: Vec<String> = vec!["replay".into(), "--plugin".into()];
    args.push(plugin_wasm("threshold").display().to_string());
    args.extend(["--manifest".into(), manifest.display().to_string()]);
    args.extend(["--input".into(), input.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    edgewise(args)
}

/// A probe read every millisecond (a broken or hostile publisher), replayed
/// through threshold under its manifest, stopped and restarted from its
/// snapshot halfway: every call stays within its deadline and every
/// snapshot within its state limit, and the probe still alerts when it
/// leaves the band. Before (0.2.1) its rate window kept every reading of the
/// last 10 minutes and its open hour every timestamp: past about 120,000
/// readings a call took longer than its deadline, the replay failed, and a
/// device quarantined the plugin.
#[test]
fn a_probe_read_every_millisecond_keeps_threshold_within_its_limits() {
    let case = Case::new();
    let start_ms: i64 = 1_704_067_200_000;
    let readings = 200_000;
    // 5 degC, then 9 degC (above the default 8) for its last second.
    let lines: String = (0..readings)
        .map(|i| {
            let value = if i < readings - 1000 { 5 } else { 9 };
            format!(
                "{{\"subject\":\"sensors.temperature.fridge\",\"payload\":{{\"ts\":{},\"value\":{value}}}}}\n",
                start_ms + i
            )
        })
        .collect();
    let input = case.file("every-ms.jsonl", &lines);
    let run = replay_threshold_under_its_manifest(&input, &["--snapshot-every", "100000"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_contains(&run.stderr, "output identical to the uninterrupted replay");
    assert!(
        run.stdout.lines().any(|line| line.contains("\"code\":\"above-high\"")),
        "no above-high alert:\n{}",
        run.stdout
    );
}

/// threshold at its busiest: `max_sensors` probes with 256-byte ids, each
/// read every 5 seconds (the fastest its rate window keeps in full) for 11
/// minutes, so that every rate window and every open hour's record of
/// timestamps is full, runs in half its declared memory, and its snapshot
/// fits its `state_bytes`. Before (0.2.1) its state limit, the host's
/// default of 1 MiB, held the state of about 370 such probes, and half its
/// 16 MiB of memory did not take it through a snapshot (about 14 MiB did).
#[test]
fn threshold_at_its_busiest_runs_in_half_its_declared_memory_and_its_snapshot_fits() {
    let case = Case::new();
    let manifest = std::fs::read_to_string(edgewise_tests::plugin_manifest("threshold")).unwrap();
    let limits = edgewise_host::bundle::ManifestSource::from_toml(&manifest)
        .unwrap()
        .limits;
    let (sensors, memory_mb) = (limits.max_sensors.unwrap(), limits.memory_mb.unwrap());
    let start_ms: i64 = 1_704_067_200_000;
    let rounds = 11 * 12;
    let mut lines = String::new();
    for round in 0..rounds {
        for sensor in 0..sensors {
            // 236 characters after `temperature.`: a 256-byte sensor id.
            let id = format!("{sensor:x>236}");
            let ts = start_ms + i64::from(round) * 5_000 + i64::from(sensor);
            let value = 4 + (round + sensor) % 3;
            lines.push_str(&format!(
                "{{\"subject\":\"sensors.temperature.{id}\",\"payload\":{{\"ts\":{ts},\"value\":{value}}}}}\n"
            ));
        }
    }
    let input = case.file("busiest.jsonl", &lines);
    // One stop, in the last round: every sensor's state is full.
    let stop = ((rounds - 1) * sensors).to_string();
    let half = format!("memory_mb={}", memory_mb / 2);
    let run = replay_threshold_under_its_manifest(&input, &["--snapshot-every", &stop, "--limit", &half]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_contains(&run.stderr, "output identical to the uninterrupted replay");
}
