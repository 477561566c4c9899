//! Sensors come and go (patients discharged, a CGM replaced every ten days):
//! one silent for `forget_after` is forgotten, by then at the latest, so the
//! plugin's memory and the host's `max_sensors` places hold the sensors in
//! use, not every sensor ever seen.

use edgewise_sdk::time::{DAY_MS, MINUTE_MS};
use edgewise_sdk::{Config, LogLevel, Outputs, Plugin, Wake};

use super::{Harness, at};

fn sensors(h: &Harness) -> usize {
    h.plugin.state.sensors.len()
}

#[test]
fn a_silent_sensor_is_forgotten_by_forget_after_and_one_reading_on_is_kept() {
    let mut h = Harness::with(&[("forget_after", "48h")]);
    h.read_at("gone", at(0), 100.0);
    // `stays` reads every five minutes; the host ticks on the same grid.
    let mut minute = 0;
    let mut forgotten_at = None;
    while minute <= 2 * 24 * 60 + 60 {
        h.read_at("stays", at(minute), 100.0);
        h.tick(minute);
        if forgotten_at.is_none() && sensors(&h) == 1 {
            forgotten_at = Some(minute);
        }
        minute += 5;
    }
    // Forgotten by `forget_after` after its reading, not an hour sooner.
    let forgotten_at = forgotten_at.expect("`gone` is forgotten");
    assert!(
        (2 * 24 * 60 - 60..=2 * 24 * 60).contains(&forgotten_at),
        "forgotten at minute {forgotten_at}"
    );
    // What it had to say was said first: its outage, its first day's summary.
    assert!(h.alerts.iter().any(|a| a.sensor == "gone" && a.code == "signal-loss"));
    assert!(
        h.summaries
            .iter()
            .any(|s| s.sensor == "gone" && s.window_start_ms == at(0) && s.window_end_ms == at(0) + DAY_MS)
    );
    // Back after that: a new sensor, with a new state.
    h.read_at("gone", at(minute), 100.0);
    assert_eq!(sensors(&h), 2);
}

/// A device whose sensors all fell silent wakes the plugin to forget them
/// (contract 0.2 ticks only when the plugin asks), logs it, and then asks
/// for no tick at all.
#[test]
fn the_plugin_asks_for_the_tick_that_forgets_and_then_for_none() {
    let mut h = Harness::new();
    h.read_at("a", at(0), 100.0).read_at("b", at(3), 100.0);
    let mut logs = Vec::new();
    let mut last_tick = at(0);
    for _ in 0..10_000 {
        match h.plugin.next_wake() {
            Wake::At(when) => {
                assert!(when > last_tick || when == at(0), "the wake moves on");
                last_tick = when;
                let mut out = Outputs::default();
                h.plugin.on_tick(when, &mut out).unwrap();
                logs.extend(out.logs().to_vec());
            }
            Wake::Idle | Wake::Every(_) => break,
        }
    }
    assert_eq!(h.plugin.next_wake(), Wake::Idle);
    assert_eq!(sensors(&h), 0);
    // The default is 7 days: `b`, 3 minutes younger, went on the same tick
    // or the next, both by 7 days after its reading.
    assert!(last_tick <= at(3) + 7 * DAY_MS, "{}", (last_tick - at(0)) / MINUTE_MS);
    let forgetting: Vec<_> = logs.iter().filter(|(_, line)| line.starts_with("forgot ")).collect();
    assert!(!forgetting.is_empty(), "{logs:?}");
    assert!(forgetting.iter().all(|(level, _)| *level == LogLevel::Info));
}

#[test]
fn forget_after_is_from_two_days_to_the_manifests_seven() {
    for too_short in ["24h", "47h", "0m", "169h", "8784h"] {
        assert!(
            edgewise_sdk::Plugin::init(edgewise_sdk::Config::from_pairs(&[("forget_after", too_short)]))
                .map(|_: crate::GlucoseMonitor| ())
                .is_err(),
            "{too_short}"
        );
    }
    assert!(crate::GlucoseMonitor::init(edgewise_sdk::Config::from_pairs(&[("forget_after", "48h")])).is_ok());
}

/// A state saved by 0.2.1 (before forgetting) has no tick due for a silent
/// sensor: restored, the sensor is due to be forgotten all the same.
#[test]
fn a_silent_sensor_of_a_state_saved_before_forgetting_is_forgotten_too() {
    let mut h = Harness::new();
    h.read_at("old", at(0), 100.0).tick(3 * 24 * 60);
    h.plugin
        .state
        .sensors
        .for_each_in_name_order(|_, sensor| sensor.as_saved_before_forgetting());
    h.plugin.state.next_due_ms = i64::MAX;
    assert_eq!(h.plugin.next_wake(), Wake::Idle, "as 0.2.1 saved it");
    let saved = h.plugin.snapshot().unwrap();

    let mut restored = crate::GlucoseMonitor::init(Config::from_pairs(&[])).unwrap();
    restored
        .restore(<crate::GlucoseMonitor as Plugin>::SNAPSHOT_SCHEMA, &saved)
        .unwrap();
    let forget_at = at(0) + 7 * DAY_MS - 5 * MINUTE_MS;
    assert_eq!(restored.next_wake(), Wake::At(forget_at));
    restored.on_tick(forget_at, &mut Outputs::default()).unwrap();
    assert_eq!(restored.state.sensors.len(), 0);
    assert_eq!(restored.next_wake(), Wake::Idle);
}
