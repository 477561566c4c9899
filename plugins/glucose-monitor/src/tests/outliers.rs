//! One outlier timestamp cannot silence a sensor: a reading further ahead of
//! the plugin's notion of now (the latest tick) than `max_ahead` is ignored,
//! so the readings after it are not "late".

use edgewise_sdk::time::{DAY_MS, HOUR_MS};
use edgewise_sdk::{LogLevel, Outputs, Plugin, Reading};

use super::{Harness, SENSOR, at, ev};

#[test]
fn a_far_future_reading_does_not_suppress_a_real_urgent_low() {
    let mut h = Harness::new();
    h.read(0, 120.0).tick(0);
    // A bridge sending microseconds, then the real reading at the right time.
    h.read_at(SENSOR, at(2) * 1000, 120.0).read(5, 45.0);
    assert_eq!(h.codes(), ev(&[(5, "urgent-low")]));
}

#[test]
fn a_reading_days_ahead_does_not_suppress_either_and_is_logged() {
    let mut h = Harness::new();
    h.tick(0).read(0, 120.0);
    let mut plugin_out = Outputs::default();
    h.plugin
        .on_readings(
            &[Reading::new(SENSOR, at(0) + 3 * DAY_MS, 120.0, "mg/dL")],
            &mut plugin_out,
        )
        .unwrap();
    let logs = plugin_out.logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    assert_eq!(logs[0].0, LogLevel::Warn);
    assert!(logs[0].1.contains("ahead of the latest tick"), "{logs:?}");
    h.read(5, 45.0).tick(10).read(10, 46.0);
    assert_eq!(h.events("urgent-low"), ev(&[(5, "urgent-low")]));
    // Nothing of it in the summaries either: the day closes with the three real readings.
    h.tick(24 * 60 + 60);
    assert_eq!(super::metric(h.day(0), "n"), 3.0);
}

#[test]
fn readings_within_max_ahead_of_the_latest_tick_are_taken() {
    // Ticks trail the readings: the host's tick lags its clock, and a
    // simulated clock makes that lag long.
    let mut h = Harness::new();
    h.tick(0).read(59, 45.0);
    assert_eq!(h.codes(), ev(&[(59, "urgent-low")]));
    let mut h = Harness::with(&[("max_ahead", "10m")]);
    h.tick(0).read(11, 45.0).read(12, 45.0);
    assert!(h.codes().is_empty(), "{:?}", h.codes());
    h.tick(5).read(14, 45.0);
    assert_eq!(h.codes(), ev(&[(14, "urgent-low")]));
}

#[test]
fn coarse_ticks_widen_the_margin_to_one_tick_step() {
    // A replay with `--tick 1d` delivers readings up to a day ahead of the
    // latest tick: none of them is an outlier.
    let mut h = Harness::new();
    h.tick_at(at(0) - DAY_MS).tick(0).read(23 * 60, 45.0);
    assert_eq!(h.codes(), ev(&[(23 * 60, "urgent-low")]));
    h.read_at(SENSOR, at(0) + DAY_MS + 2 * HOUR_MS, 45.0);
    assert_eq!(h.codes().len(), 1, "over a day and max_ahead ahead: ignored");
}

#[test]
fn before_the_first_tick_there_is_no_now_and_every_reading_is_taken() {
    let mut h = Harness::new();
    h.read(0, 120.0).read(3 * 24 * 60, 45.0);
    assert_eq!(h.events("urgent-low"), ev(&[(3 * 24 * 60, "urgent-low")]));
}

#[test]
fn ticks_going_back_do_not_change_the_step() {
    let mut h = Harness::new();
    h.tick(0).tick(5).tick_at(at(0) - 10 * DAY_MS).read(66, 45.0);
    assert!(h.codes().is_empty(), "over an hour ahead of minute 5: {:?}", h.codes());
    h.read(60, 45.0);
    assert_eq!(h.codes(), ev(&[(60, "urgent-low")]));
}

#[test]
fn the_host_clock_is_now_when_ticks_are_rare() {
    // Contract 0.2 ticks only when a sensor is due; the clock that comes with
    // each batch keeps now current. A sensor a month ahead is an outlier...
    let mut h = Harness::new();
    h.plugin.on_clock(at(0));
    h.read_at(SENSOR, at(0) + 30 * DAY_MS, 100.0).read(0, 45.0);
    assert_eq!(h.events("urgent-low"), ev(&[(0, "urgent-low")]));
    // ... while a sensor back after hours of silence, untouched by ticks, is
    // heard once the clock has moved on with it.
    h.plugin.on_clock(at(10 * 60));
    h.read(10 * 60, 45.0);
    assert_eq!(
        h.events("urgent-low"),
        ev(&[(0, "urgent-low"), (10 * 60, "urgent-low")])
    );
}
