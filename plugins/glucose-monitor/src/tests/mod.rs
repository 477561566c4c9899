//! Plugin-level tests on hand-made sequences, through the `Plugin` API only.

mod alerts;
mod config;
mod episodes;
mod forgetting;
mod outliers;
mod reference;
mod robustness;
mod summaries;
mod tick_skipping;

use edgewise_sdk::time::{DAY_MS, HOUR_MS, MINUTE_MS};
use edgewise_sdk::{Alert, Config, Outputs, Plugin, Reading, Summary};

use crate::GlucoseMonitor;

/// 2015-06-06T00:00:00Z: a UTC midnight, so minute 0 starts an hour and a day.
pub const BASE: i64 = 1_433_548_800_000;
/// The sensor of the single-sensor tests.
pub const SENSOR: &str = "cgm";

/// Timestamp of `minute` minutes after [`BASE`].
pub fn at(minute: i64) -> i64 {
    BASE + minute * MINUTE_MS
}

/// Feeds readings and ticks to a plugin and keeps every output.
pub struct Harness {
    pub plugin: GlucoseMonitor,
    pub alerts: Vec<Alert>,
    pub summaries: Vec<Summary>,
}

impl Harness {
    /// A plugin with the default configuration.
    pub fn new() -> Harness {
        Harness::with(&[])
    }

    /// A plugin with configuration overrides.
    pub fn with(pairs: &[(&str, &str)]) -> Harness {
        Harness {
            plugin: GlucoseMonitor::init(Config::from_pairs(pairs)).unwrap(),
            alerts: Vec::new(),
            summaries: Vec::new(),
        }
    }

    fn keep(&mut self, mut out: Outputs) {
        let (alerts, summaries, _) = out.take();
        self.alerts.extend(alerts);
        self.summaries.extend(summaries);
    }

    /// A batch of readings.
    pub fn batch(&mut self, readings: &[Reading]) -> &mut Harness {
        let mut out = Outputs::default();
        self.plugin.on_readings(readings, &mut out).unwrap();
        self.keep(out);
        self
    }

    /// One reading of `sensor` at `timestamp_ms`.
    pub fn read_at(&mut self, sensor: &str, timestamp_ms: i64, value: f64) -> &mut Harness {
        self.batch(&[Reading::new(sensor, timestamp_ms, value, "mg/dL")])
    }

    /// One reading of [`SENSOR`] at `minute`.
    pub fn read(&mut self, minute: i64, value: f64) -> &mut Harness {
        self.read_at(SENSOR, at(minute), value)
    }

    /// Readings of [`SENSOR`] every `step` minutes from `start`.
    pub fn series(&mut self, start: i64, step: i64, values: &[f64]) -> &mut Harness {
        for (i, value) in values.iter().enumerate() {
            self.read(start + i as i64 * step, *value);
        }
        self
    }

    /// A tick at `timestamp_ms`.
    pub fn tick_at(&mut self, timestamp_ms: i64) -> &mut Harness {
        let mut out = Outputs::default();
        self.plugin.on_tick(timestamp_ms, &mut out).unwrap();
        self.keep(out);
        self
    }

    /// A tick at `minute`.
    pub fn tick(&mut self, minute: i64) -> &mut Harness {
        self.tick_at(at(minute))
    }

    /// `(minute, code)` of every alert.
    pub fn codes(&self) -> Vec<(i64, String)> {
        self.alerts
            .iter()
            .map(|a| ((a.timestamp_ms - BASE).div_euclid(MINUTE_MS), a.code.clone()))
            .collect()
    }

    /// `(minute, code)` of the alerts `family` and `family-resolved`.
    pub fn events(&self, family: &str) -> Vec<(i64, String)> {
        let resolved = format!("{family}-resolved");
        self.codes()
            .into_iter()
            .filter(|(_, code)| *code == family || *code == resolved)
            .collect()
    }

    /// The summary of [`SENSOR`] for the window of `length_ms` starting `minute` after BASE.
    pub fn window(&self, minute: i64, length_ms: i64) -> Option<&Summary> {
        self.summaries.iter().find(|s| {
            s.sensor == SENSOR && s.window_start_ms == at(minute) && s.window_end_ms == at(minute) + length_ms
        })
    }

    /// The summary of hour `hour` (counted from BASE); panics when missing.
    pub fn hour(&self, hour: i64) -> &Summary {
        self.window(hour * 60, HOUR_MS)
            .unwrap_or_else(|| panic!("no summary for hour {hour}: {:?}", self.windows()))
    }

    /// The summary of day `day` (counted from BASE); panics when missing.
    pub fn day(&self, day: i64) -> &Summary {
        self.window(day * 24 * 60, DAY_MS)
            .unwrap_or_else(|| panic!("no summary for day {day}: {:?}", self.windows()))
    }

    /// `(sensor, start minute, length in minutes)` of every summary, in order.
    pub fn windows(&self) -> Vec<(String, i64, i64)> {
        self.summaries
            .iter()
            .map(|s| {
                (
                    s.sensor.clone(),
                    (s.window_start_ms - BASE) / MINUTE_MS,
                    (s.window_end_ms - s.window_start_ms) / MINUTE_MS,
                )
            })
            .collect()
    }
}

/// The value of metric `name`; panics when missing.
pub fn metric(summary: &Summary, name: &str) -> f64 {
    summary
        .get(name)
        .unwrap_or_else(|| panic!("no metric {name} in {summary:?}"))
}

/// The episode counts (hypo l1, hypo l2, hyper l1, hyper l2) of a summary.
pub fn episodes(summary: &Summary) -> [f64; 4] {
    [
        "hypo_l1_episodes",
        "hypo_l2_episodes",
        "hyper_l1_episodes",
        "hyper_l2_episodes",
    ]
    .map(|name| metric(summary, name))
}

/// Assert two floats agree to 1e-9.
#[track_caller]
pub fn assert_close(actual: f64, expected: f64) {
    assert!((actual - expected).abs() < 1e-9, "expected {expected}, got {actual}");
}

/// `(minute, code)` pairs from literals.
pub fn ev(list: &[(i64, &str)]) -> Vec<(i64, String)> {
    list.iter().map(|(m, c)| (*m, c.to_string())).collect()
}
