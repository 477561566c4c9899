//! Skipping sensors whose tick is not due changes no output: the same
//! streams through a reference that visits every sensor on every tick.

use edgewise_sdk::{Config, Outputs, Plugin, Reading};

use super::at;
use crate::GlucoseMonitor;

/// Readings of four sensors with outages, late and invalid readings, and
/// ticks (regular, early, repeated, going back) in between.
fn stream(seed: u64) -> Vec<(Option<Reading<'static>>, i64)> {
    let mut state = seed;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 33
    };
    let mut clock = at(0);
    let mut next_tick = at(5);
    let mut events = Vec::new();
    for _ in 0..30_000 {
        let r = next();
        clock += match r % 97 {
            0 => 30 * 60_000,
            1 => 4 * 3_600_000,
            2 => 2 * 86_400_000,
            3 => -10 * 60_000,
            _ => (r % 3) as i64 * 60_000 + 30_000,
        };
        while next_tick <= clock {
            events.push((None, next_tick));
            next_tick += 5 * 60_000;
        }
        if r % 89 == 0 {
            // A tick off the grid, possibly behind the latest one.
            events.push((None, clock - (r % 5) as i64 * 60_000));
        }
        let value = match r % 43 {
            0 => f64::NAN,
            1 => 20.0,
            2 => 450.0,
            3..=12 => 40.0 + (r % 30) as f64,
            13..=20 => 200.0 + (r % 150) as f64,
            _ => 60.0 + (next() % 200) as f64,
        };
        let sensor = ["d", "b", "a", "c"][(next() % 4) as usize];
        events.push((Some(Reading::new(sensor, clock, value, "mg/dL")), clock));
    }
    events.push((None, i64::MAX));
    events
}

/// Run `events`; with `every_sensor`, ticks bypass the due times and visit
/// every sensor, as before tick skipping.
fn run(events: &[(Option<Reading>, i64)], config: &[(&str, &str)], every_sensor: bool) -> Outputs {
    let mut plugin = GlucoseMonitor::init(Config::from_pairs(config)).unwrap();
    let mut total = Outputs::default();
    for (reading, now) in events {
        // One call each, as the host makes them.
        let mut out = Outputs::default();
        match reading {
            Some(reading) => plugin.on_readings(std::slice::from_ref(reading), &mut out).unwrap(),
            None if every_sensor => {
                let settings = &plugin.settings;
                plugin
                    .state
                    .sensors
                    .for_each_in_name_order(|sensor, state| state.on_tick(sensor, *now, settings, &mut out));
            }
            None => plugin.on_tick(*now, &mut out).unwrap(),
        }
        let (alerts, summaries, _) = out.take();
        alerts.into_iter().for_each(|alert| total.alert(alert));
        summaries.into_iter().for_each(|summary| total.summary(summary));
    }
    total
}

#[test]
fn skipping_ticks_that_are_not_due_changes_no_output() {
    let configs: [&[(&str, &str)]; 3] = [
        &[],
        &[
            ("signal_loss", "7m"),
            ("episode_gap", "12m"),
            ("episode_duration", "10m"),
        ],
        &[("signal_loss", "3h"), ("episode_gap", "2h"), ("default_interval", "1m")],
    ];
    for seed in [1, 2, 3] {
        let events = stream(seed);
        for config in configs {
            let skipping = run(&events, config, false);
            let reference = run(&events, config, true);
            assert_eq!(skipping.alerts(), reference.alerts(), "seed {seed} {config:?}");
            assert_eq!(
                format!("{:?}", skipping.summaries()),
                format!("{:?}", reference.summaries()),
                "seed {seed} {config:?}"
            );
            assert!(!reference.alerts().is_empty() && !reference.summaries().is_empty());
        }
    }
}
