//! Behaviour of the `threshold` plugin through its `Plugin` interface, on
//! hand-made reading sequences with hand-computed expectations.

mod alerts;
mod cold_chain;
mod config;
mod forgetting;
mod invalid;
mod ordering;
mod rate;
mod robustness;
mod sensors;
mod summaries;

use edgewise_sdk::{Config, Outputs, Plugin, Reading, Summary};
use threshold::Threshold;

/// One minute in milliseconds.
pub const MIN: i64 = 60_000;
/// One hour in milliseconds.
pub const HOUR: i64 = 60 * MIN;
/// 2023-11-14T22:00:00Z, the start of a UTC hour.
pub const T0: i64 = 472_222 * HOUR;

/// `minutes` after [`T0`].
pub fn at(minutes: i64) -> i64 {
    T0 + minutes * MIN
}

/// A reading of the probe used by most tests, in degC.
pub fn probe(timestamp_ms: i64, value: f64) -> Reading<'static> {
    Reading::new("probe-1", timestamp_ms, value, "degC")
}

/// A plugin configured with `pairs` over the defaults.
pub fn plugin(pairs: &[(&str, &str)]) -> Threshold {
    Threshold::init(Config::from_pairs(pairs)).unwrap_or_else(|e| panic!("config {pairs:?}: {e}"))
}

/// The `init` error for `pairs`.
pub fn init_error(pairs: &[(&str, &str)]) -> String {
    match Threshold::init(Config::from_pairs(pairs)) {
        Ok(_) => panic!("config {pairs:?} was accepted"),
        Err(error) => error,
    }
}

/// Feed a batch of readings and return what the plugin produced.
pub fn feed(plugin: &mut Threshold, readings: &[Reading]) -> Outputs {
    let mut out = Outputs::default();
    if let Err(e) = plugin.on_readings(readings, &mut out) {
        panic!("on_readings failed: {e}");
    }
    out
}

/// Feed one probe reading and return the codes of the alerts it raised.
pub fn step(plugin: &mut Threshold, timestamp_ms: i64, value: f64) -> Vec<String> {
    codes(&feed(plugin, &[probe(timestamp_ms, value)]))
}

/// Tick the plugin at `now_ms` and return what it produced.
pub fn tick(plugin: &mut Threshold, now_ms: i64) -> Outputs {
    let mut out = Outputs::default();
    if let Err(e) = plugin.on_tick(now_ms, &mut out) {
        panic!("on_tick failed: {e}");
    }
    out
}

/// The codes of the alerts, in order.
pub fn codes(out: &Outputs) -> Vec<String> {
    out.alerts().iter().map(|a| a.code.clone()).collect()
}

/// Assert a summary's window and its metrics: exactly these names, in this
/// order, with these values (to 1e-12).
pub fn assert_summary(summary: &Summary, sensor: &str, start: i64, metrics: &[(&str, f64)]) {
    assert_eq!(summary.sensor, sensor);
    assert_eq!(summary.window_start_ms, start);
    assert_eq!(summary.window_end_ms, start + HOUR);
    let names: Vec<&str> = summary.metrics.iter().map(|m| m.name.as_str()).collect();
    let expected: Vec<&str> = metrics.iter().map(|m| m.0).collect();
    assert_eq!(names, expected);
    for (metric, (name, value)) in summary.metrics.iter().zip(metrics) {
        assert!(
            (metric.value - value).abs() < 1e-12,
            "{name}: got {}, expected {value}",
            metric.value
        );
    }
}
