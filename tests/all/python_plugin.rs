//! The Python sample plugin (`plugins/band-py`, built with the Python SDK and
//! componentize-py) against its Rust twin (`plugins/band`): the same golden
//! output in replay, plain and signed, and the same outputs live in
//! `edgewise run` as in a replay of the same readings.
//!
//! The golden comparison ignores packaging (`version`, `digest`), so both
//! twins meet the same golden file; two replays are compared without those
//! fields likewise.

use std::fmt::Display;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::device::Device;
use crate::replay_golden::check_golden;
use crate::support::{replay_run, status_until, upstream_messages};
use edgewise_tests::nats::NatsServer;
use edgewise_tests::{data_file, edgewise, golden_file, plugin_manifest, plugin_wasm, run_key, signed_bundle};

const GOLDEN: &str = "band.ExampleData5Subjects.jsonl";

/// `edgewise replay` of `input` through `plugin` (then `extra`): its output
/// lines, without what names the build (`version`, `digest`).
fn replay(plugin: &Path, input: &Path, extra: &[&str]) -> Vec<String> {
    let run = replay_run(plugin, input, extra);
    assert_eq!(
        run.code,
        Some(0),
        "replay of {} failed:\n{}",
        plugin.display(),
        run.stderr
    );
    run.stdout.lines().map(without_build).collect()
}

/// The subject every recording of this module is on.
const SUBJECT: &str = "sensors.cgm.p1";

/// The message of a reading of `SUBJECT` in mg/dL.
fn payload(ts: i64, value: impl Display) -> String {
    format!(r#"{{"ts":{ts},"value":{value},"unit":"mg/dL"}}"#)
}

/// A JSON-lines recording of `readings` (timestamp, value) on `SUBJECT`.
fn recording_of<V: Display>(readings: impl IntoIterator<Item = (i64, V)>) -> String {
    readings
        .into_iter()
        .map(|(ts, value)| format!("{{\"subject\":\"{SUBJECT}\",\"payload\":{}}}\n", payload(ts, value)))
        .collect()
}

/// An output line without `version` and `digest`, in its order otherwise.
fn without_build(line: &str) -> String {
    let mut output: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
    output.remove("version");
    output.remove("digest");
    serde_json::to_string(&output).unwrap()
}

#[test]
fn the_python_sample_replays_to_the_golden_of_its_rust_twin() {
    let input = data_file("cgm/ExampleData5Subjects.csv");
    let golden = std::fs::read_to_string(golden_file(GOLDEN)).unwrap();
    assert!(golden.lines().count() > 1000, "the golden has outputs");
    check_golden(&plugin_wasm("band"), &input, GOLDEN, &[]);
    check_golden(&plugin_wasm("band-py"), &input, GOLDEN, &["--name", "band"]);
}

/// Numbers Python's `repr` writes otherwise than Rust's `{}` (exponents,
/// `.0`, round-trip digits), in messages built from readings and config.
#[test]
fn the_python_sample_writes_numbers_as_its_rust_twin() {
    let dir = tempfile::tempdir().unwrap();
    let recording = dir.path().join("numbers.jsonl");
    let values = [
        "100",
        "0.1",
        "1e-7",
        "120",
        "1e21",
        "120",
        "0.30000000000000004",
        "150",
        "123456789.125",
        "-0.0",
        "2.5e-5",
        "180.00000000000003",
        "5e-324",
        "170",
        "1.7976931348623157e308",
    ];
    let lines = recording_of(
        values
            .iter()
            .enumerate()
            .map(|(i, value)| (1_700_000_000_000_i64 + i as i64 * 700_000, value)),
    );
    std::fs::write(&recording, lines).unwrap();
    for config in [&["--config", "low=0.1", "--config", "high=180.00000000000003"][..], &[]] {
        let rust = replay(&plugin_wasm("band"), &recording, config);
        let mut name = vec!["--name", "band"];
        name.extend_from_slice(config);
        let python = replay(&plugin_wasm("band-py"), &recording, &name);
        assert!(rust.len() > 10, "alerts on most readings: {rust:#?}");
        assert_eq!(python, rust);
    }
}

#[test]
fn the_python_sample_refuses_bad_config_as_its_rust_twin() {
    let input = data_file("cgm/ExampleData5Subjects.csv");
    for config in ["low=200", "hgih=3", "low=1_0", "high=inf", "low=seventy"] {
        let errors: Vec<String> = ["band", "band-py"]
            .into_iter()
            .map(|plugin| {
                let run = edgewise([
                    "replay",
                    "--plugin",
                    &plugin_wasm(plugin).display().to_string(),
                    "--input",
                    &input.display().to_string(),
                    "--config",
                    config,
                ]);
                assert_ne!(run.code, Some(0), "{plugin} took {config}");
                run.stderr
            })
            .collect();
        let key = config.split('=').next().unwrap();
        assert!(errors.iter().all(|e| e.contains(key)), "{config}: {errors:#?}");
    }
}

/// A tight memory limit for band-py: CPython starts at 12.6 MiB of linear
/// memory (pre-initialised at build), so 3.4 MiB are left for its state and
/// what its calls allocate. Its manifest asks for 32.
const TIGHT_MEMORY: &str = "memory_mb=16";

/// Replays `input` through band, then through band-py held to
/// `TIGHT_MEMORY`: band makes more than `min_outputs` outputs, and band-py
/// the same ones.
fn assert_python_twin_within_tight_memory(input: &Path, min_outputs: usize) {
    let rust = replay(&plugin_wasm("band"), input, &[]);
    assert!(rust.len() > min_outputs, "only {} outputs", rust.len());
    let python = replay(
        &plugin_wasm("band-py"),
        input,
        &["--name", "band", "--limit", TIGHT_MEMORY],
    );
    assert!(python == rust, "band-py's outputs differ from band's");
}

/// componentize-py before 0.19 leaked every call's arguments (a reference
/// too many on the batch and on each of its samples and sensors, and the
/// buffers the host lifted them into): band-py, built with 0.17.2, grew by
/// ~1,140 bytes a call of one reading, used up 16 MiB after ~6,500 such
/// calls and its manifest's 32 MiB after ~21,000. Here every reading is a
/// call of its own (the next reading closes its hour before the wake), with
/// a summary and often an alert out of each: 30,000 calls within
/// `TIGHT_MEMORY`.
#[test]
fn the_python_sample_takes_a_reading_per_call_without_its_memory_growing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hourly.jsonl");
    let values = [100.0, 65.5, 60.0, 90.0, 185.25, 200.0, 150.0, 69.0];
    let readings = (0..30_000).map(|i| (START_MS + i * HOUR_MS, values[i as usize % values.len()]));
    std::fs::write(&path, recording_of(readings)).unwrap();
    assert_python_twin_within_tight_memory(&path, 50_000);
}

/// All of Hall2018 (105,426 rows, batches cut at each hour's end) within
/// `TIGHT_MEMORY`, half its manifest's limit, with the outputs of the Rust
/// twin: with componentize-py 0.17.2 band-py exhausted 16 MiB a third of the
/// way through.
#[test]
fn the_python_sample_replays_all_of_hall2018_within_half_its_memory_limit() {
    assert_python_twin_within_tight_memory(&data_file("cgm/Hall2018_processed.csv"), 10_000);
}

#[test]
fn the_signed_python_sample_verifies_and_replays_to_the_same_golden() {
    let input = data_file("cgm/ExampleData5Subjects.csv");
    let trust = tempfile::tempdir().unwrap();
    run_key().trust(trust.path()).unwrap();
    let bundle = signed_bundle("band-py");
    let signed = replay(&bundle, &input, &["--trust", &trust.path().display().to_string()]);
    let plain = replay(&plugin_wasm("band-py"), &input, &["--name", "band-py"]);
    assert!(signed.len() > 1000);
    assert_eq!(signed, plain);
}

/// Readings two and a half hours long, starting ten minutes before the
/// device's simulated clock (which runs at real speed, so no tick of its
/// reaches the end of the first hour during the test): hours close by
/// readings, as in a replay, where the plugin's wake comes before them.
fn readings() -> Vec<(i64, f64)> {
    let values = [100.0, 65.5, 60.0, 90.0, 185.25, 200.0, 150.0, 69.0];
    (0..30)
        .map(|i| (START_MS + i * 300_000, values[i as usize % values.len()]))
        .collect()
}

/// 2026-01-01T00:00:00Z.
const START_MS: i64 = 1_767_225_600_000;

/// An hour in milliseconds.
const HOUR_MS: i64 = 3_600_000;

#[tokio::test(flavor = "multi_thread")]
async fn the_python_sample_runs_live_with_the_outputs_of_its_replay_and_of_its_rust_twin() {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let plugins = "[[plugins]]\nbundle = \"band.wasm\"\n[[plugins]]\nbundle = \"band-py.wasm\"\n\
                   [ingest]\nmax_future = \"7d\"\n[clock]\nstart = \"2026-01-01T00:10:00Z\"\nspeed = 1.0\n";
    let mut device = Device::with_plugins(&local, Some(&cloud), "100ms", plugins);
    device.sign_bundle(&plugin_manifest("band-py"), "band-py", "band-py.wasm");
    // Compiling CPython (~7 s of CPU) while other tests run.
    let client = device.start_within(&local, Duration::from_secs(120)).await;
    let recording = recording_of(readings());
    for (ts, value) in readings() {
        client.publish(SUBJECT, payload(ts, value).into()).await.unwrap();
    }
    client.flush().await.unwrap();

    let path = device.path("readings.jsonl");
    std::fs::write(&path, recording).unwrap();
    let replayed = replay(
        &device.path("band-py.wasm"),
        &path,
        &["--trust", &device.path("trust").display().to_string()],
    );
    assert!(replayed.len() > 10, "the readings make outputs: {replayed:#?}");

    // A replay closes the hour still open at the end of the recording; the
    // live clock does not get there during the test.
    let last_ts = readings().last().unwrap().0;
    let mut replayed: Vec<String> = replayed
        .iter()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .filter(|output| output["window_end"].as_i64().is_none_or(|end| end <= last_ts))
        .map(|output| comparable(&output))
        .collect();
    replayed.sort();

    // Every reading taken by both plugins, as many outputs committed by
    // each as the replay made (a plugin's outputs are counted after the
    // outbox commits them: an outbox empty before that is not drained), and
    // every output sent upstream.
    let count = readings().len();
    let made = replayed.len() as u64;
    status_until(
        &client,
        "both plugins to take every reading and make their outputs, and the outbox to drain",
        |status| {
            let plugins = status["plugins"].as_array().unwrap().iter();
            plugins
                .filter(|p| {
                    let outputs = p["alerts_out"].as_u64().unwrap_or(0) + p["summaries_out"].as_u64().unwrap_or(0);
                    p["readings_in"].as_u64() == Some(count as u64) && outputs >= made
                })
                .count()
                == 2
                && status["outbox"]["alerts"] == 0
                && status["outbox"]["summaries"] == 0
        },
    )
    .await;
    let live = upstream_messages(&cloud, 1).await;
    device.terminate_cleanly().await;
    let of = |plugin: &str| -> Vec<String> {
        let mut outputs: Vec<String> = live
            .iter()
            .filter(|(_, output)| output["plugin"] == plugin)
            .map(|(_, output)| comparable(output))
            .collect();
        outputs.sort();
        outputs
    };
    assert_eq!(of("band-py"), replayed);
    let rust: Vec<String> = of("band")
        .into_iter()
        .map(|o| o.replace("\"plugin\":\"band\"", "\"plugin\":\"band-py\""))
        .collect();
    assert_eq!(rust, replayed);
}

/// An output without what differs between a live run and a replay of it
/// (`device`, `seq`) and what names the build (`version`, `digest`).
fn comparable(output: &Value) -> String {
    let mut output = output.as_object().unwrap().clone();
    for key in ["device", "seq", "version", "digest"] {
        output.remove(key);
    }
    serde_json::to_string(&output).unwrap()
}
