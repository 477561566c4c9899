//! glucose-monitor's summaries checked against an independent, offline
//! implementation of the consensus metrics written here from the issue's
//! definitions (two passes over each window, no shared code with the plugin
//! or the host's CSV reader), on a real recording.

use std::collections::BTreeMap;

use edgewise_tests::{data_file, edgewise, plugin_wasm};
use serde_json::Value;

const MINUTE: i64 = 60_000;
const HOUR: i64 = 60 * MINUTE;
const DAY: i64 = 24 * HOUR;

/// An episode level: its metric name and the condition a reading meets inside it.
type Level = (&'static str, fn(f64) -> bool);

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// `"id",YYYY-MM-DD HH:MM:SS,gl` rows into per-sensor sorted (ts, value) lists; NA dropped.
pub(crate) fn read_recording(text: &str) -> BTreeMap<String, Vec<(i64, f64)>> {
    let mut sensors: BTreeMap<String, Vec<(i64, f64)>> = BTreeMap::new();
    for line in text.lines().skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let (id, time, gl) = (fields[0].trim_matches('"'), fields[1], fields[2]);
        if gl == "NA" {
            continue;
        }
        let number = |range: std::ops::Range<usize>| time[range].parse::<i64>().unwrap();
        let days = days_from_civil(number(0..4), number(5..7), number(8..10));
        let ts = days * DAY + number(11..13) * HOUR + number(14..16) * MINUTE + number(17..19) * 1000;
        sensors
            .entry(id.to_owned())
            .or_default()
            .push((ts, gl.parse().unwrap()));
    }
    for readings in sensors.values_mut() {
        readings.sort_by_key(|r| r.0);
        readings.dedup_by_key(|r| r.0);
    }
    sensors
}

/// The sensor interval: median spacing rounded to whole minutes (as iglu's dt0).
fn interval_minutes(readings: &[(i64, f64)]) -> i64 {
    let mut gaps: Vec<i64> = readings.windows(2).map(|w| w[1].0 - w[0].0).collect();
    gaps.sort_unstable();
    ((gaps[(gaps.len() - 1) / 2] as f64 / MINUTE as f64).round() as i64).max(1)
}

/// Episode starts (timestamp of the first reading) for one level: an episode
/// starts after at least 15 min of readings meeting `inside` and ends after
/// at least 15 min not meeting it; a gap over 45 min ends everything.
fn episode_starts(readings: &[(i64, f64)], interval: i64, inside: impl Fn(f64) -> bool) -> Vec<i64> {
    let mut starts = Vec::new();
    let (mut in_episode, mut run, mut run_start, mut recovery) = (false, 0, 0, 0);
    let mut last: Option<i64> = None;
    for &(ts, value) in readings {
        if last.is_some_and(|l| ts - l > 45 * MINUTE) {
            (in_episode, run, recovery) = (false, 0, 0);
        }
        last = Some(ts);
        if inside(value) {
            recovery = 0;
            if !in_episode {
                if run == 0 {
                    run_start = ts;
                }
                run += 1;
                if run * interval >= 15 {
                    starts.push(run_start);
                    (in_episode, run) = (true, 0);
                }
            }
        } else {
            run = 0;
            if in_episode {
                recovery += 1;
                if recovery * interval >= 15 {
                    (in_episode, recovery) = (false, 0);
                }
            }
        }
    }
    starts
}

/// Expected metrics of every window of `length` holding data, keyed by (sensor, start).
fn expected_summaries(
    sensors: &BTreeMap<String, Vec<(i64, f64)>>,
    length: i64,
) -> BTreeMap<(String, i64), BTreeMap<&'static str, f64>> {
    let mut expected = BTreeMap::new();
    for (sensor, readings) in sensors {
        let interval = interval_minutes(readings);
        let levels: [Level; 4] = [
            ("hypo_l1_episodes", |v| v < 70.0),
            ("hypo_l2_episodes", |v| v < 54.0),
            ("hyper_l1_episodes", |v| v > 180.0),
            ("hyper_l2_episodes", |v| v > 250.0),
        ];
        let episodes: Vec<(&str, Vec<i64>)> = levels
            .iter()
            .map(|(name, inside)| (*name, episode_starts(readings, interval, inside)))
            .collect();
        let mut windows: BTreeMap<i64, Vec<f64>> = BTreeMap::new();
        for &(ts, value) in readings {
            windows.entry(ts - ts.rem_euclid(length)).or_default().push(value);
        }
        for (start, values) in windows {
            let n = values.len() as f64;
            let mean = values.iter().sum::<f64>() / n;
            let sd = if values.len() > 1 {
                (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
            } else {
                0.0
            };
            let pct = |f: &dyn Fn(f64) -> bool| 100.0 * values.iter().filter(|v| f(**v)).count() as f64 / n;
            let mut metrics = BTreeMap::new();
            metrics.insert("n", n);
            metrics.insert("mean", mean);
            metrics.insert("sd", sd);
            metrics.insert("cv", 100.0 * sd / mean);
            metrics.insert("gmi", 3.31 + 0.02392 * mean);
            metrics.insert("min", values.iter().copied().fold(f64::INFINITY, f64::min));
            metrics.insert("max", values.iter().copied().fold(f64::NEG_INFINITY, f64::max));
            metrics.insert("tir_70_180", pct(&|v| (70.0..=180.0).contains(&v)));
            metrics.insert("tbr_below_54", pct(&|v| v < 54.0));
            metrics.insert("tbr_54_69", pct(&|v| (54.0..70.0).contains(&v)));
            metrics.insert("tar_181_250", pct(&|v| v > 180.0 && v <= 250.0));
            metrics.insert("tar_above_250", pct(&|v| v > 250.0));
            metrics.insert(
                "active_pct",
                (100.0 * n / (length as f64 / (interval * MINUTE) as f64)).min(100.0),
            );
            metrics.insert("invalid", 0.0);
            for (name, starts) in &episodes {
                let count = starts.iter().filter(|s| **s >= start && **s < start + length).count();
                metrics.insert(name, count as f64);
            }
            expected.insert((sensor.clone(), start), metrics);
        }
    }
    expected
}

#[test]
fn summaries_match_an_independent_implementation() {
    let input = data_file("cgm/ExampleData5Subjects.csv");
    let run = edgewise([
        "replay".as_ref(),
        "--plugin".as_ref(),
        plugin_wasm("glucose-monitor").as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let sensors = read_recording(&std::fs::read_to_string(&input).unwrap());
    // ExampleData holds no sensor errors (all values are 40-400).
    assert!(sensors.values().flatten().all(|(_, v)| (40.0..=400.0).contains(v)));

    for length in [HOUR, DAY] {
        let expected = expected_summaries(&sensors, length);
        let mut actual: BTreeMap<(String, i64), Value> = BTreeMap::new();
        for line in run.stdout.lines() {
            let output: Value = serde_json::from_str(line).unwrap();
            let (start, end) = (output["window_start"].as_i64(), output["window_end"].as_i64());
            if output["type"] == "summary" && end.zip(start).is_some_and(|(e, s)| e - s == length) {
                let key = (output["sensor"].as_str().unwrap().to_owned(), start.unwrap());
                assert!(
                    actual.insert(key.clone(), output["metrics"].clone()).is_none(),
                    "duplicate {key:?}"
                );
            }
        }
        assert_eq!(
            actual.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "the windows summarised (length {length} ms)"
        );
        let mut mismatches = Vec::new();
        for (key, metrics) in &expected {
            for (name, want) in metrics {
                let got = actual[key][*name].as_f64().unwrap_or(f64::NAN);
                if (got - want).abs() > 1e-9 * want.abs().max(1.0) {
                    mismatches.push(format!("{key:?} {name}: plugin {got}, independent {want}"));
                }
            }
        }
        assert!(
            mismatches.is_empty(),
            "{} mismatches, first:\n{}",
            mismatches.len(),
            mismatches[..mismatches.len().min(20)].join("\n")
        );
    }
}
