//! Hostile input never panics, and outputs are deterministic.

use edgewise_sdk::{Config, Outputs, Plugin, Reading};

use super::{BASE, Harness, at};
use crate::GlucoseMonitor;

#[test]
fn extreme_timestamps_and_values_do_not_panic() {
    let mut h = Harness::new();
    let times = [
        i64::MIN,
        i64::MIN + 1,
        -(1 << 53),
        -1,
        0,
        1,
        BASE,
        1 << 53,
        (1 << 53) + 1,
        i64::MAX - 1,
        i64::MAX,
    ];
    let values = [
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        0.0,
        -1e300,
        1e300,
        50.0,
        300.0,
    ];
    for (i, t) in times.iter().enumerate() {
        for (j, v) in values.iter().enumerate() {
            let sensor = format!("s{}", (i + j) % 3);
            h.read_at(&sensor, *t, *v);
            h.tick_at(t.wrapping_add(j as i64));
        }
    }
    for t in [i64::MIN, -1, 0, i64::MAX, i64::MAX] {
        h.tick_at(t);
    }
    h.read_at("", 0, 100.0).read_at("", 1, 100.0);
}

#[test]
fn out_of_range_timestamps_are_dropped() {
    let mut h = Harness::new();
    h.read_at("x", i64::MAX, 30.0)
        .read_at("x", i64::MIN, 30.0)
        .tick_at(i64::MAX);
    assert!(h.alerts.is_empty());
    assert!(h.summaries.is_empty());
}

/// A deterministic pseudo-random stream of awkward readings and ticks.
fn scramble(seed: u64) -> Vec<(Option<Reading<'static>>, i64)> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let mut clock = at(0);
    let mut events = Vec::new();
    for _ in 0..20_000 {
        let r = next();
        clock += (r % 11) as i64 * 60_000 - 2 * 60_000 + (r % 7) as i64 * 1000;
        if r % 23 == 0 {
            clock += 3 * 3_600_000;
        }
        let value = match r % 41 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => 20.0,
            3 => 450.0,
            _ => 40.0 + (next() % 360) as f64,
        };
        let sensor = ["b", "a", "c"][(r % 3) as usize];
        if r % 13 == 0 {
            events.push((None, clock));
        } else {
            events.push((Some(Reading::new(sensor, clock, value, "mg/dL")), clock));
        }
    }
    events
}

fn run(events: &[(Option<Reading>, i64)], batch: usize) -> Outputs {
    let mut plugin = GlucoseMonitor::init(Config::default()).unwrap();
    let mut out = Outputs::default();
    let mut pending: Vec<Reading<'_>> = Vec::new();
    for (reading, now) in events {
        match reading {
            Some(reading) => {
                pending.push(*reading);
                if pending.len() >= batch {
                    plugin.on_readings(&pending, &mut out).unwrap();
                    pending.clear();
                }
            }
            None => {
                plugin.on_readings(&pending, &mut out).unwrap();
                pending.clear();
                plugin.on_tick(*now, &mut out).unwrap();
            }
        }
    }
    plugin.on_readings(&pending, &mut out).unwrap();
    plugin.on_tick(i64::MAX, &mut out).unwrap();
    out
}

#[test]
fn scrambled_input_is_deterministic_and_batching_does_not_matter() {
    let events = scramble(7);
    let one = run(&events, 1);
    let again = run(&events, 1);
    let batched = run(&events, 64);
    assert_eq!(one.alerts(), again.alerts());
    assert_eq!(one.alerts(), batched.alerts());
    assert_eq!(one.summaries().len(), batched.summaries().len());
    for (a, b) in one.summaries().iter().zip(batched.summaries()) {
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "NaN-safe comparison");
    }
    assert!(!one.alerts().is_empty());
    assert!(!one.summaries().is_empty());
    // Windows of one sensor and length come out in ascending order, never twice.
    for sensor in ["a", "b", "c"] {
        for length in [3_600_000, 86_400_000] {
            let starts: Vec<i64> = one
                .summaries()
                .iter()
                .filter(|s| s.sensor == sensor && s.window_end_ms - s.window_start_ms == length)
                .map(|s| s.window_start_ms)
                .collect();
            assert!(starts.windows(2).all(|w| w[0] < w[1]), "{sensor} {length}");
        }
    }
    // No NaN or infinite metric ever.
    for summary in one.summaries() {
        for m in &summary.metrics {
            assert!(m.value.is_finite(), "{} {:?}", m.name, summary);
        }
    }
}
