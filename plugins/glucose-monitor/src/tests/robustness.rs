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

/// The readings of the attack below: 900 sensors read every minute for 200
/// minutes (their interval estimate is then a minute), then 14 readings below
/// 70 each 45 minutes apart (one run below 70, never decided, so every hourly
/// window since its start is held, about 10 hours of them), then nothing; and
/// a real patient's sensor read every 5 minutes for 20 hours. In the order of
/// their times.
fn held_windows_attack() -> Vec<(i64, String, f64)> {
    let mut rows = Vec::new();
    for i in 0..900 {
        let sensor = format!("a{i:04}");
        rows.extend((0..200).map(|minute| (at(minute), sensor.clone(), 100.0)));
        rows.extend((0..14).map(|k| (at(200 + 45 * k), sensor.clone(), 65.0)));
    }
    rows.extend((0..20 * 12).map(|k| (at(5 * k), "zreal".to_owned(), 120.0)));
    rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
    rows
}

/// Drive the plugin over `rows` as a device does (batches of 256 readings,
/// the SDK's driver ticking at the wakes inside them, then the ticks it asks
/// for up to a day after the last reading, no sooner than a second after the
/// last one): every summary (its `Debug` text, in order), and the most
/// alerts plus summaries one call made.
fn drive(rows: &[(i64, String, f64)]) -> (Vec<String>, usize) {
    let mut driver = edgewise_sdk::Driver::<GlucoseMonitor>::start(Config::default(), None).unwrap();
    let mut summaries = Vec::new();
    let mut most = 0;
    let mut keep = |out: &mut Outputs| {
        most = most.max(out.alerts().len() + out.summaries().len());
        summaries.extend(out.take().1.iter().map(|summary| format!("{summary:?}")));
    };
    for chunk in rows.chunks(256) {
        let readings: Vec<Reading> = chunk
            .iter()
            .map(|(ts, sensor, value)| Reading::new(sensor, *ts, *value, "mg/dL"))
            .collect();
        let mut out = Outputs::default();
        driver
            .on_readings(chunk[chunk.len() - 1].0, &readings, &mut out)
            .unwrap();
        keep(&mut out);
    }
    let (mut now, end) = (
        rows[rows.len() - 1].0,
        rows[rows.len() - 1].0 + edgewise_sdk::time::DAY_MS,
    );
    let mut last_tick = i64::MIN;
    while let Some(due) = driver
        .wake()
        .map(|wake| wake.max(now).max(last_tick.saturating_add(1_000)))
        && due <= end
    {
        let mut out = Outputs::default();
        driver.on_tick(due, &mut out).unwrap();
        keep(&mut out);
        (now, last_tick) = (due, due);
    }
    (summaries, most)
}

/// Someone publishing on the local bus held the windows of 900 sensors for
/// hours and had them released together: before, the tick after the gap made
/// about 9,000 summaries in one call, past the manifest's `outputs_per_call`; the
/// host failed that tick, and the next, and quarantined the plugin, and a
/// real patient's urgent low never made an alert. Now no call makes more than
/// the manifest allows, and every summary still comes, as each sensor alone
/// makes it.
#[test]
fn windows_held_by_many_sensors_released_together_stay_within_the_outputs_of_a_call() {
    let manifest = include_str!("../../edgewise.toml");
    let limit: usize = manifest
        .lines()
        .find_map(|line| line.strip_prefix("outputs_per_call = "))
        .and_then(|n| n.trim().parse().ok())
        .expect("the manifest sets outputs_per_call");
    let rows = held_windows_attack();
    let (mut together, most) = drive(&rows);
    assert!(most <= limit, "a call made {most} outputs, over the manifest's {limit}");
    let mut alone = Vec::new();
    let sensors: std::collections::BTreeSet<&str> = rows.iter().map(|(_, sensor, _)| sensor.as_str()).collect();
    for sensor in sensors {
        let own: Vec<_> = rows.iter().filter(|(_, s, _)| s == sensor).cloned().collect();
        alone.extend(drive(&own).0);
    }
    assert!(
        alone.len() > 900 * 10,
        "the attack holds about 10 windows a sensor: {}",
        alone.len()
    );
    together.sort();
    alone.sort();
    assert_eq!(together, alone, "every summary, as each sensor alone makes it");
}

/// A sensor read every millisecond (someone publishing on the bus): the
/// trend buffer keeps at most a point every 5 s of its 20 minutes, so the
/// snapshot, and the fit each reading makes, stay small. Before, 80,000
/// readings made a snapshot of 1.1 MB, past the 1 MiB a snapshot may be,
/// and calls of 256 readings ran past their 200 ms deadline.
#[test]
fn a_sensor_read_every_millisecond_keeps_its_state_small() {
    let mut h = Harness::new();
    for i in 0..80_000 {
        h.read_at("dense", BASE + i, if i % 2 == 0 { 100.0 } else { 101.0 });
    }
    let snapshot = h.plugin.snapshot().unwrap();
    assert!(snapshot.len() < 16 << 10, "{} bytes", snapshot.len());
}

/// Readings faster than the trend buffer keeps (every second, a glucose
/// falling 5 mg/dL a minute): its trend still shows, and `falling-fast` is
/// raised as for a CGM read every minute. (A first version of the buffer
/// kept one sliding point for such a sensor, and never raised it.)
#[test]
fn a_sensor_read_every_second_still_has_its_trend() {
    for step_s in [1, 60] {
        let mut h = Harness::new();
        for k in 0..(15 * 60 / step_s) {
            let value = 200.0 - 5.0 * (k * step_s) as f64 / 60.0;
            h.read_at("fast", BASE + k * step_s * 1_000, value);
        }
        let codes: Vec<&str> = h.alerts.iter().map(|a| a.code.as_str()).collect();
        assert!(codes.contains(&"falling-fast"), "every {step_s} s: {codes:?}");
    }
}
