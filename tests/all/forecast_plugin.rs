//! glucose-forecast (issue #16), its signed bundle through `edgewise replay`:
//! golden output over the example data, deterministic; its forecasts are the
//! trainer's own predictions (`forecast-model`, run natively here, adapting
//! to each sensor as the plugin does) to 1e-9,
//! and its hourly accuracy adds up to the trainer's evaluation of the same
//! forecasts; snapshots anywhere give the uninterrupted output; a hostile
//! recording (gaps, duplicates, disorder, a lone reading, absurd values, a
//! burst) is taken without a trap; and at its busiest (`max_sensors`
//! sensors with the longest ids, a reading a minute) it keeps within its
//! manifest's memory and state limits with the margin they claim.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use edgewise_host::replay::{self, Format};
use edgewise_tests::{data_file, golden_file, run_key, signed_bundle, workspace_root};
use forecast_model::{MINUTE_MS, Model, Pushed, SensorModel, actual_at};
use serde_json::Value;

use crate::replay_golden::check_golden;
use crate::replay_snapshot::{Replayed, every, replay};
use crate::support::assert_contains;

const PLUGIN: &str = "glucose-forecast";
const EXAMPLE: &str = "cgm/ExampleData5Subjects.csv";
const GOLDEN: &str = "glucose-forecast.ExampleData5Subjects.jsonl";
const EMIT_FORECASTS: [&str; 2] = ["--config", "emit_forecasts=true"];
/// The plugin's default valid range (`invalid_below`, `invalid_above`).
const VALID: RangeInclusive<f64> = 39.0..=401.0;

/// The model the bundle carries.
fn model() -> Model {
    let path = workspace_root().join("plugins/glucose-forecast/model/forecast.json");
    Model::parse(&std::fs::read(path).unwrap()).unwrap()
}

/// The signed bundle replayed over `input` with `extra` arguments; it must
/// succeed.
fn replayed(input: &Path, extra: &[impl AsRef<OsStr>]) -> Replayed {
    let run = replay(&signed_bundle(PLUGIN), input, extra);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stderr.contains("trap"), "{}", run.stderr);
    run
}

/// Every output line, parsed.
fn lines(output: &[u8]) -> Vec<Value> {
    std::str::from_utf8(output)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// The forecast summaries: `(sensor, reading time, horizon) -> forecast`;
/// each window must end at its reading plus the horizon.
fn forecasts(lines: &[Value]) -> HashMap<(String, i64, u32), f64> {
    let mut forecasts = HashMap::new();
    for line in lines.iter().filter(|l| l["metrics"].get("forecast").is_some()) {
        let metrics = &line["metrics"];
        assert_eq!(metrics.as_object().unwrap().len(), 2, "{line}");
        let start = line["window_start"].as_i64().unwrap();
        let horizon = metrics["horizon_min"].as_f64().unwrap() as u32;
        assert_eq!(
            line["window_end"].as_i64().unwrap(),
            start + i64::from(horizon) * MINUTE_MS
        );
        let key = (line["sensor"].as_str().unwrap().to_owned(), start, horizon);
        let forecast = metrics["forecast"].as_f64().unwrap();
        assert!(forecasts.insert(key, forecast).is_none(), "twice: {line}");
    }
    forecasts
}

/// The valid readings of a recording per sensor, in time order, as replay
/// reads them.
fn valid_readings(input: &Path, format: Format) -> BTreeMap<String, Vec<(i64, f64)>> {
    let recording = replay::load(input, format, false).unwrap();
    let mut by_sensor: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for reading in recording.readings.iter().filter(|r| VALID.contains(&r.value)) {
        by_sensor
            .entry(reading.sensor.clone())
            .or_default()
            .push((reading.timestamp_ms, reading.value));
    }
    by_sensor
}

#[test]
fn glucose_forecast_over_example_data_matches_golden() {
    let trust = run_key().trust_dir().display().to_string();
    check_golden(
        &signed_bundle(PLUGIN),
        &data_file(EXAMPLE),
        GOLDEN,
        &["--trust", &trust],
    );
}

#[test]
fn replays_are_byte_identical_run_to_run_with_and_without_forecasts() {
    for extra in [&[][..], &EMIT_FORECASTS[..]] as [&[&str]; 2] {
        let first = replayed(&data_file(EXAMPLE), extra);
        let second = replayed(&data_file(EXAMPLE), extra);
        assert!(first.output.len() > 100_000, "replay produced almost nothing");
        assert!(first.output == second.output, "two replays differ ({extra:?})");
    }
}

#[test]
fn the_replayed_forecasts_are_the_trainers_predictions_to_1e_9() {
    let run = replayed(&data_file(EXAMPLE), &EMIT_FORECASTS);
    let emitted = forecasts(&lines(&run.output));
    let model = model();
    assert!(
        model.horizons.iter().all(|h| h.adaptation.is_some()),
        "the shipped model adapts"
    );
    let mut compared = 0;
    let (mut features, mut forecasts) = (Vec::new(), Vec::new());
    for (sensor, readings) in valid_readings(&data_file(EXAMPLE), Format::IgluCsv) {
        let mut state = SensorModel::default();
        for (ts, value) in readings {
            assert_eq!(
                state.observe(&model, (ts, value), &mut features, &mut forecasts),
                Pushed::Taken
            );
            for (horizon, expected) in model.horizons.iter().zip(&forecasts) {
                let key = (sensor.clone(), ts, horizon.minutes);
                let forecast = emitted.get(&key).unwrap_or_else(|| panic!("no forecast for {key:?}"));
                assert!((forecast - expected).abs() <= 1e-9, "{key:?}: {forecast} vs {expected}");
                compared += 1;
            }
        }
    }
    // Every reading of the example data is valid: two forecasts each, and
    // no other.
    assert_eq!(compared, 2 * 13_866);
    assert_eq!(emitted.len(), compared);
}

#[test]
fn the_hourly_accuracy_adds_up_to_the_trainers_evaluation_of_the_same_forecasts() {
    let run = replayed(&data_file(EXAMPLE), &[] as &[&str]);
    let lines = lines(&run.output);
    let model = model();
    // Per horizon, from the hourly summaries: n, Σ error, Σ |error|, Σ error².
    let mut from_plugin = vec![[0.0; 4]; model.horizons.len()];
    for line in lines.iter().filter(|l| l["type"] == "summary") {
        let start = line["window_start"].as_i64().unwrap();
        assert_eq!(start % (60 * MINUTE_MS), 0, "{line}");
        assert_eq!(line["window_end"].as_i64().unwrap(), start + 60 * MINUTE_MS, "{line}");
        let metric = |name: String| line["metrics"][name].as_f64();
        for (sums, horizon) in from_plugin.iter_mut().zip(&model.horizons) {
            let n = metric(format!("n_{}", horizon.minutes)).unwrap();
            if n > 0.0 {
                sums[0] += n;
                sums[1] += n * metric(format!("bias_{}", horizon.minutes)).unwrap();
                sums[2] += n * metric(format!("mae_{}", horizon.minutes)).unwrap();
                sums[3] += n * metric(format!("rmse_{}", horizon.minutes)).unwrap().powi(2);
            }
        }
    }
    // The trainer's evaluation: every forecast with a reading within half a
    // step of its target (`actual_at`), over the same readings.
    let tolerance = model.features.tolerance_ms();
    let mut from_trainer = vec![[0.0; 4]; model.horizons.len()];
    let (mut features, mut forecasts) = (Vec::new(), Vec::new());
    for readings in valid_readings(&data_file(EXAMPLE), Format::IgluCsv).values() {
        let mut state = SensorModel::default();
        for &(ts, value) in readings {
            state.observe(&model, (ts, value), &mut features, &mut forecasts);
            for ((sums, horizon), forecast) in from_trainer.iter_mut().zip(&model.horizons).zip(&forecasts) {
                let target = ts + i64::from(horizon.minutes) * MINUTE_MS;
                if let Some(actual) = actual_at(readings, target, tolerance) {
                    let error = forecast - actual;
                    sums[0] += 1.0;
                    sums[1] += error;
                    sums[2] += error.abs();
                    sums[3] += error * error;
                }
            }
        }
    }
    for (plugin, trainer) in from_plugin.iter().zip(&from_trainer) {
        assert_eq!(plugin[0], trainer[0], "forecasts judged");
        assert!(trainer[0] > 10_000.0, "{trainer:?}");
        for (a, b) in plugin.iter().zip(trainer).skip(1) {
            assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{plugin:?} vs {trainer:?}");
        }
    }
}

#[test]
fn snapshotted_every_n_readings_gives_the_golden_output() {
    let golden = golden_file(GOLDEN).display().to_string();
    // Every reading (13,866 restores), a prime, and a round number.
    for n in [1, 97, 1_000] {
        let run = replayed(&data_file(EXAMPLE), &every(n, &["--expect", &golden]));
        assert_contains(&run.stderr, &format!("snapshots: {} (every {n} readings)", 13_866 / n));
        assert_contains(&run.stderr, "output identical to the uninterrupted replay");
        assert_contains(&run.stderr, "output matches");
    }
    // And with every forecast in the output.
    let run = replayed(&data_file(EXAMPLE), &every(97, &EMIT_FORECASTS));
    assert_contains(&run.stderr, "output identical to the uninterrupted replay");
}

/// 2015-06-15 00:00 UTC.
const T0: i64 = 1_434_326_400_000;

/// One line of a recording of bus messages: the reading of CGM `sensor`.
fn write_reading(text: &mut String, sensor: &str, ts: i64, value: f64) {
    writeln!(
        text,
        r#"{{"subject":"sensors.cgm.{sensor}","payload":{{"ts":{ts},"value":{value},"unit":"mg/dL"}}}}"#
    )
    .unwrap();
}

/// A recording hostile to a forecaster, as JSON lines, and the readings
/// replay keeps of it, `(sensor, ts, value)`:
/// - `gappy`: steady, three hours of silence, then a fall to 40 and back;
/// - `dup`: every reading twice, the second (kept) one 50 higher;
/// - `shuffled`: readings in a scrambled order;
/// - `once`: one reading;
/// - `wild`: values out of range (0, -5, 38.9, 401.1, 1000, 1e300) between
///   valid ones, none of them 30 or 60 minutes after a valid one;
/// - `burst`: 600 readings a second apart, a sawtooth of 40 s.
fn hostile_recording(dir: &Path) -> (PathBuf, Vec<(String, i64, f64)>) {
    let mut written: Vec<(&str, i64, f64)> = Vec::new();
    let mut kept: Vec<(&str, i64, f64)> = Vec::new();
    let mut both = |sensor, ts, value| {
        written.push((sensor, ts, value));
        kept.push((sensor, ts, value));
    };
    for k in 0..25 {
        both("gappy", T0 + k * 5 * MINUTE_MS, 150.0);
    }
    // 150 down to 54 by 8 every 5 minutes, 40 for 15 minutes, up again.
    let fall = (0..13).map(|k| 150.0 - 8.0 * k as f64);
    let rise = (0..12).map(|k| 48.0 + 8.0 * k as f64);
    for (k, value) in fall.chain([40.0; 3]).chain(rise).enumerate() {
        both("gappy", T0 + (300 + 5 * k as i64) * MINUTE_MS, value);
    }
    both("once", T0 + 60 * MINUTE_MS, 95.0);
    let wild = [0.0, -5.0, 38.9, 1000.0, 401.1, 1e300, 120.0, 125.0, 130.0];
    for k in 0..27 {
        both("wild", T0 + k * 5 * MINUTE_MS, wild[k as usize % wild.len()]);
    }
    for k in 0..600 {
        both("burst", T0 + 2 * 60 * MINUTE_MS + k * 1000, 100.0 + (k % 40) as f64);
    }
    for k in 0..24 {
        let ts = T0 + k * 5 * MINUTE_MS;
        written.push(("dup", ts, 100.0));
        written.push(("dup", ts, 150.0));
        kept.push(("dup", ts, 150.0));
    }
    // 24 readings written in the order 7k mod 24 (7 and 24 are coprime).
    for k in 0..24i64 {
        let j = (7 * k) % 24;
        written.push(("shuffled", T0 + j * 5 * MINUTE_MS, 130.0 + (j % 5) as f64));
        kept.push(("shuffled", T0 + j * 5 * MINUTE_MS, 130.0 + (j % 5) as f64));
    }
    let mut text = String::new();
    for (sensor, ts, value) in &written {
        write_reading(&mut text, sensor, *ts, *value);
    }
    let path = dir.join("hostile.jsonl");
    std::fs::write(&path, text).unwrap();
    let kept = kept
        .into_iter()
        .map(|(sensor, ts, value)| (format!("cgm.{sensor}"), ts, value))
        .collect();
    (path, kept)
}

#[test]
fn a_hostile_recording_is_replayed_without_a_trap_and_gives_the_expected_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let (input, kept) = hostile_recording(dir.path());
    let run = replayed(&input, &EMIT_FORECASTS);
    assert_contains(&run.stderr, "duplicate timestamp: 24");
    assert_contains(&run.stderr, "out of order (sorted): ");
    assert!(!run.stderr.contains("out of order (sorted): 0"), "{}", run.stderr);
    let lines = lines(&run.output);

    // Two forecasts for every valid reading, and for no other.
    let emitted = forecasts(&lines);
    let valid: Vec<&(String, i64, f64)> = kept.iter().filter(|(_, _, v)| VALID.contains(v)).collect();
    assert_eq!(emitted.len(), 2 * valid.len());
    for (sensor, ts, _) in &valid {
        assert!(emitted.contains_key(&(sensor.clone(), *ts, 30)), "{sensor} at {ts}");
    }

    // The fall after the gap is forecast low, and the rise resolves it;
    // nothing else alerts but the burst. A sensor read more often than every
    // 30 s is forecast from the newest reading of each 30-s slot (its
    // history is bounded so): the burst's sawtooth, sampled so, swings by
    // up to 30 mg/dL from slot to slot, and the model extrapolates falls.
    let alerts: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["type"] == "alert")
        .map(|l| (l["sensor"].as_str().unwrap(), l["code"].as_str().unwrap()))
        .collect();
    assert!(
        alerts
            .iter()
            .all(|(sensor, _)| ["cgm.gappy", "cgm.burst"].contains(sensor)),
        "{alerts:?}"
    );
    for code in [
        "predicted-low",
        "predicted-urgent-low",
        "predicted-urgent-low-resolved",
        "predicted-low-resolved",
    ] {
        assert!(alerts.iter().any(|(_, c)| *c == code), "no {code}: {alerts:?}");
    }

    // Accuracy for the sensors with forecasts judged; none for the lone
    // reading, for `wild`, whose invalid values judge nothing, nor for the
    // burst, over before any target.
    let accuracy: BTreeMap<&str, f64> =
        lines
            .iter()
            .filter(|l| l["metrics"].get("n_30").is_some())
            .fold(BTreeMap::new(), |mut n, l| {
                *n.entry(l["sensor"].as_str().unwrap()).or_default() += l["metrics"]["n_30"].as_f64().unwrap();
                n
            });
    assert_eq!(
        accuracy.keys().copied().collect::<Vec<_>>(),
        ["cgm.dup", "cgm.gappy", "cgm.shuffled"]
    );
    // `dup` and `shuffled`: 2 hours of 5-minute readings, the first 18
    // forecasts of each met their reading.
    assert_eq!((accuracy["cgm.dup"], accuracy["cgm.shuffled"]), (18.0, 18.0));
}

/// The plugin's `[limits]` as its manifest declares them.
fn declared_limits() -> edgewise_host::bundle::ManifestLimits {
    let path = workspace_root().join("plugins/glucose-forecast/edgewise.toml");
    edgewise_host::bundle::ManifestSource::from_toml(&std::fs::read_to_string(path).unwrap())
        .unwrap()
        .limits
}

/// The worst load the manifest's limits are sized for: `max_sensors`
/// sensors with ids of the longest a bus accepts (256 bytes), reading every
/// minute (the fastest CGMs) for two hours, as JSON lines. A sensor's
/// state stops growing after an hour (its history, the forecasts waiting
/// for their reading); the values swing between 60 and 180 mg/dL so that
/// every sensor adapts and alerts.
fn busiest_recording(dir: &Path, sensors: u32) -> (PathBuf, usize) {
    let minutes = 120;
    let mut text = String::new();
    for minute in 0..minutes {
        for sensor in 0..sensors {
            // 252 characters after `cgm.`: a 256-byte sensor id.
            let id = format!("{sensor:x>252}");
            let phase = f64::from(sensor) * 0.37 + f64::from(minute) * std::f64::consts::TAU / 90.0;
            let value = (120.0 + 60.0 * phase.sin() + f64::from((sensor * 7 + minute * 13) % 5)).round();
            let ts = T0 + i64::from(minute) * MINUTE_MS + i64::from(sensor);
            write_reading(&mut text, &id, ts, value);
        }
    }
    let path = dir.join("busiest.jsonl");
    std::fs::write(&path, text).unwrap();
    (path, (minutes * sensors) as usize)
}

/// The manifest's limits hold, with the margin its comments claim: at its
/// busiest (`max_sensors` sensors, 256-byte ids, a reading a minute), the
/// plugin runs in half its `memory_mb`, through a snapshot taken and
/// restored once every sensor's state is full (the peak: the snapshot
/// written and read back next to the state), and that snapshot fits in its
/// `state_bytes`.
#[test]
fn at_its_busiest_the_plugin_runs_in_half_its_declared_memory_and_its_snapshot_fits() {
    let limits = declared_limits();
    let (memory_mb, state_bytes, sensors) = (
        limits.memory_mb.unwrap(),
        limits.state_bytes.unwrap(),
        limits.max_sensors.unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let (input, readings) = busiest_recording(dir.path(), sensors);
    // One stop, at 1 h 50 min: the state of every sensor is full.
    let stop = readings - 10 * sensors as usize;
    let half = format!("memory_mb={}", memory_mb / 2);
    let run = replayed(&input, &every(stop, &["--limit", &half]));
    assert_contains(&run.stderr, "output identical to the uninterrupted replay");
    let largest: u64 = run
        .stderr
        .split(" at most;")
        .next()
        .and_then(|before| before.rsplit(", ").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no snapshot size in: {}", run.stderr));
    assert!(
        largest <= u64::from(state_bytes),
        "a {largest}-byte snapshot, over the declared {state_bytes}: {}",
        run.stderr
    );
    // Every sensor was forecast and judged (its state is what was measured).
    let judged: std::collections::BTreeSet<String> = lines(&run.output)
        .iter()
        .filter(|l| l["metrics"].get("n_30").is_some())
        .map(|l| l["sensor"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(judged.len(), sensors as usize);
}

/// A sensor read every second (no CGM is; anyone who can publish on the bus
/// can make one) takes no more than its share of the declared state,
/// `state_bytes / max_sensors`, with a 256-byte id, for as long as it reads:
/// its history keeps one reading per 30-s slot. Before (0.2.3) it kept up to
/// 2,048 readings, a snapshot of about 40 KB: 1,000 such sensors passed the
/// plugin's state and memory limits.
#[test]
fn a_sensor_read_every_second_stays_within_its_share_of_the_declared_state() {
    let limits = declared_limits();
    let share = limits.state_bytes.unwrap() / limits.max_sensors.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let id = format!("{:x>252}", 0);
    let seconds = 70 * 60;
    let mut text = String::new();
    for second in 0..seconds {
        let phase = f64::from(second) * std::f64::consts::TAU / 5400.0;
        write_reading(
            &mut text,
            &id,
            T0 + i64::from(second) * 1000,
            (120.0 + 60.0 * phase.sin()).round(),
        );
    }
    let input = dir.path().join("every-second.jsonl");
    std::fs::write(&input, text).unwrap();
    // One stop, after the last reading: the sensor's state is full.
    let limit = format!("state_bytes={share}");
    let run = replayed(&input, &every(seconds as usize - 1, &["--limit", &limit]));
    assert_contains(&run.stderr, "output identical to the uninterrupted replay");
}

/// Live, through `edgewise run` on a real nats-server (where, unlike in a
/// replay, readings reach the plugin in arrival order): duplicates, a late
/// reading, an absurd value, a gap and a sensor heard from once are taken
/// without a trap, a failure or a restart, and a patient falling fast is
/// warned before the low: `predicted-low` on the 30-minute forecast while
/// the reading is still above 70.
#[tokio::test(flavor = "multi_thread")]
async fn live_hostile_arrivals_do_not_trap_and_a_fast_fall_is_warned_ahead() {
    use crate::device::{Device, now_ms, reading};
    use crate::support::{next_where, status_until, subscribe_alerts};
    use edgewise_tests::nats::NatsServer;

    let local = NatsServer::start();
    let plugins = format!("[[plugins]]\nbundle = \"{PLUGIN}.wasm\"\n");
    let mut device = Device::with_plugins(&local, None, "100ms", &plugins);
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut alerts = subscribe_alerts(&client, PLUGIN).await;
    device.start_with(&client).await;

    let start = now_ms() - 60 * MINUTE_MS;
    let at = |step: i64| start + step * 5 * MINUTE_MS;
    // An hour of steady glucose with a 15-minute gap, each reading sent
    // twice, one sent again after the next (late), and one absurd value.
    let mut sent = 0u64;
    for step in 0..8 {
        if (3..6).contains(&step) {
            continue;
        }
        for _ in 0..2 {
            client
                .publish("sensors.cgm.p1", reading(at(step), 130.0))
                .await
                .unwrap();
            sent += 1;
        }
        if step > 0 {
            client
                .publish("sensors.cgm.p1", reading(at(step - 1), 131.0))
                .await
                .unwrap();
            sent += 1;
        }
    }
    client.publish("sensors.cgm.p1", reading(at(8), 5000.0)).await.unwrap();
    client.publish("sensors.cgm.once", reading(at(8), 100.0)).await.unwrap();
    sent += 2;
    // Then a fall of about 4 mg/dL a minute, still above 70 at its end.
    for (step, value) in [(9, 110.0), (10, 90.0), (11, 72.0)] {
        client
            .publish("sensors.cgm.p1", reading(at(step), value))
            .await
            .unwrap();
        sent += 1;
    }
    client.flush().await.unwrap();

    let status = status_until(&client, "every reading taken by glucose-forecast", |status| {
        status["plugins"][0]["readings_in"].as_u64() == Some(sent)
    })
    .await;
    let plugin = &status["plugins"][0];
    assert_eq!(plugin["restarts"], 0, "{plugin}");
    assert!(plugin["failures"].as_object().is_none_or(|f| f.is_empty()), "{plugin}");
    let alert = next_where(&mut alerts, "predicted-low for p1", |_, alert| {
        alert["code"] == "predicted-low"
    })
    .await;
    assert_eq!(alert["sensor"], "cgm.p1", "{alert}");
    // Raised on the reading of 72: a warning ahead of the low, not after it.
    assert_eq!(alert["ts"], at(11), "{alert}");
    assert!(alert["value"].as_f64().unwrap() < 70.0, "{alert}");
    assert_contains(alert["message"].as_str().unwrap(), "Glucose 72 mg/dL is forecast to be");
    device.terminate_cleanly().await;
}
