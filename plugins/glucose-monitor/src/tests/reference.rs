//! Cross-check of the window metrics against a direct two-pass computation
//! on a long pseudo-random recording, replayed in order with regular ticks.

use std::collections::BTreeMap;

use edgewise_sdk::time::{DAY_MS, HOUR_MS, MINUTE_MS, window_start};
use edgewise_sdk::{Config, Outputs, Plugin, Reading};

use super::{assert_close, at, metric};
use crate::GlucoseMonitor;

/// Sorted readings of two sensors: jittery 5-minute data, gaps, invalid values.
fn recording() -> Vec<Reading<'static>> {
    let mut state = 42u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let mut readings = Vec::new();
    for (sensor, offset) in [("p1", 0), ("p2", 17 * MINUTE_MS)] {
        let (mut t, mut value) = (at(0) + offset, 120.0f64);
        for _ in 0..3000 {
            let r = next();
            t += 5 * MINUTE_MS + (r % 41) as i64 * 1000 - 20_000;
            if r % 97 == 0 {
                t += (r % 300) as i64 * MINUTE_MS;
            }
            value = (value + (next() % 31) as f64 - 15.0).clamp(40.0, 400.0);
            let v = match r % 53 {
                0 => f64::NAN,
                1 => 30.0,
                _ => value,
            };
            readings.push(Reading::new(sensor, t, v, "mg/dL"));
        }
    }
    readings.sort_by_key(|r| r.timestamp_ms);
    readings
}

#[test]
fn window_metrics_match_a_direct_computation() {
    let readings = recording();
    let mut plugin = GlucoseMonitor::init(Config::default()).unwrap();
    let mut out = Outputs::default();
    let tick = 5 * MINUTE_MS;
    let mut next_tick = window_start(readings[0].timestamp_ms, tick) + tick;
    for reading in &readings {
        while next_tick < reading.timestamp_ms {
            plugin.on_tick(next_tick, &mut out).unwrap();
            next_tick += tick;
        }
        plugin.on_readings(std::slice::from_ref(reading), &mut out).unwrap();
    }
    plugin.on_tick(next_tick + 2 * DAY_MS, &mut out).unwrap();

    // (sensor, length, start) -> (valid values, invalid count)
    let mut expected: BTreeMap<(String, i64, i64), (Vec<f64>, u64)> = BTreeMap::new();
    for r in &readings {
        for length in [HOUR_MS, DAY_MS] {
            let key = (r.sensor.to_owned(), length, window_start(r.timestamp_ms, length));
            let entry = expected.entry(key).or_default();
            if r.value.is_finite() && (39.0..=401.0).contains(&r.value) {
                entry.0.push(r.value);
            } else {
                entry.1 += 1;
            }
        }
    }
    expected.retain(|_, (values, _)| !values.is_empty());

    let summaries = out.summaries();
    assert_eq!(summaries.len(), expected.len());
    for s in summaries {
        let length = s.window_end_ms - s.window_start_ms;
        let (values, invalid) = &expected[&(s.sensor.clone(), length, s.window_start_ms)];
        let n = values.len() as f64;
        let mean = values.iter().sum::<f64>() / n;
        let sd = if values.len() > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        let pct = |f: &dyn Fn(f64) -> bool| 100.0 * values.iter().filter(|v| f(**v)).count() as f64 / n;
        assert_eq!(metric(s, "n"), n);
        assert!((metric(s, "mean") - mean).abs() < 1e-9);
        assert!((metric(s, "sd") - sd).abs() < 1e-7);
        assert!((metric(s, "cv") - 100.0 * sd / mean).abs() < 1e-7);
        assert_close(metric(s, "gmi"), 3.31 + 0.02392 * metric(s, "mean"));
        assert_eq!(metric(s, "min"), values.iter().copied().fold(f64::INFINITY, f64::min));
        assert_eq!(
            metric(s, "max"),
            values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        );
        assert_close(metric(s, "tir_70_180"), pct(&|v| (70.0..=180.0).contains(&v)));
        assert_close(metric(s, "tbr_below_54"), pct(&|v| v < 54.0));
        assert_close(metric(s, "tbr_54_69"), pct(&|v| (54.0..70.0).contains(&v)));
        assert_close(metric(s, "tar_181_250"), pct(&|v| v > 180.0 && v <= 250.0));
        assert_close(metric(s, "tar_above_250"), pct(&|v| v > 250.0));
        assert_eq!(metric(s, "invalid"), *invalid as f64);
        let active = metric(s, "active_pct");
        assert!(active > 0.0 && active <= 100.0);
    }

    // Per sensor, hourly and daily windows count the same episodes.
    for sensor in ["p1", "p2"] {
        for name in [
            "hypo_l1_episodes",
            "hypo_l2_episodes",
            "hyper_l1_episodes",
            "hyper_l2_episodes",
        ] {
            let total = |length: i64| -> f64 {
                summaries
                    .iter()
                    .filter(|s| s.sensor == sensor && s.window_end_ms - s.window_start_ms == length)
                    .map(|s| metric(s, name))
                    .sum()
            };
            assert_eq!(total(HOUR_MS), total(DAY_MS), "{sensor} {name}");
            assert!(total(DAY_MS) > 0.0, "{sensor} {name}: the recording has episodes");
        }
    }
}
