//! Plugin-level tests on hand-made sequences, through the `Plugin` API only,
//! the model provided as the asset a bundle would carry.

mod accuracy;
mod alerts;
mod config;
mod forecasts;
mod robustness;

use edgewise_sdk::time::{HOUR_MS, MINUTE_MS};
use edgewise_sdk::{Alert, Config, LogLevel, Outputs, Plugin, Reading, Summary};
use forecast_model::Model;

use crate::{GlucoseForecast, MODEL_ASSET};

/// 2015-06-06T00:00:00Z: a UTC midnight, so minute 0 starts an hour.
pub const BASE: i64 = 1_433_548_800_000;
/// The sensor of the single-sensor tests.
pub const SENSOR: &str = "cgm";

/// Timestamp of `minute` minutes after [`BASE`].
pub fn at(minute: i64) -> i64 {
    BASE + minute * MINUTE_MS
}

/// The model the bundle ships (`model/forecast.json`).
pub fn shipped_model() -> &'static [u8] {
    include_bytes!("../../model/forecast.json")
}

/// Feeds readings and ticks to a plugin and keeps every output.
pub struct Harness {
    pub plugin: GlucoseForecast,
    pub alerts: Vec<Alert>,
    pub summaries: Vec<Summary>,
    pub logs: Vec<(LogLevel, String)>,
}

impl Harness {
    /// The last-value model (every forecast is the newest reading: errors
    /// and alerts are easy to work out by hand), with configuration `pairs`.
    pub fn new(pairs: &[(&str, &str)]) -> Harness {
        Harness::with_model(&Model::last_value(&[30, 60]).to_bytes().unwrap(), pairs)
    }

    /// The model file `model`, with configuration `pairs`.
    pub fn with_model(model: &[u8], pairs: &[(&str, &str)]) -> Harness {
        edgewise_sdk::asset::provide(MODEL_ASSET, model);
        Harness {
            plugin: GlucoseForecast::init(Config::from_pairs(pairs)).unwrap(),
            alerts: Vec::new(),
            summaries: Vec::new(),
            logs: Vec::new(),
        }
    }

    fn keep(&mut self, mut out: Outputs) {
        let (alerts, summaries, logs) = out.take();
        self.alerts.extend(alerts);
        self.summaries.extend(summaries);
        self.logs.extend(logs);
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

    /// The forecast summaries (those with a `forecast` metric), in order.
    pub fn forecasts(&self) -> Vec<&Summary> {
        self.summaries.iter().filter(|s| s.get("forecast").is_some()).collect()
    }

    /// The accuracy summaries (the others), in order.
    pub fn accuracy(&self) -> Vec<&Summary> {
        self.summaries.iter().filter(|s| s.get("forecast").is_none()).collect()
    }

    /// The accuracy summary of [`SENSOR`] for hour `hour` after BASE; panics
    /// when missing.
    pub fn hour(&self, hour: i64) -> &Summary {
        let start = BASE + hour * HOUR_MS;
        self.accuracy()
            .into_iter()
            .find(|s| s.sensor == SENSOR && s.window_start_ms == start && s.window_end_ms == start + HOUR_MS)
            .unwrap_or_else(|| panic!("no accuracy summary for hour {hour}: {:?}", self.summaries))
    }
}

/// `(name, value)` of every metric of a summary, in order.
pub fn metrics(summary: &Summary) -> Vec<(&str, f64)> {
    summary.metrics.iter().map(|m| (m.name.as_str(), m.value)).collect()
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
