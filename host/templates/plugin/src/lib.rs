//! `{{name}}`: an Edgewise plugin, as `edgewise new` wrote it. Make it yours.
//!
//! For each sensor it raises `above-limit` (a warning) when a reading goes
//! above `limit`, repeats it at most every `repeat` while the readings stay
//! above, and says `back-below-limit` (info) when they come back. Every UTC
//! hour that has ended gets a summary: the count, mean and maximum of its
//! readings. Configuration, each default here in the code: `limit` (180, the
//! top of the usual glucose target range in mg/dL; set your own) and `repeat`
//! (`1h`).
//!
//! The SDK guide is the `edgewise-sdk` crate's documentation (`cargo doc
//! --open`); the manifest's keys are in the Edgewise repository's
//! `docs/manifest.md`.

use std::collections::BTreeMap;

use edgewise_sdk::stats::RunningStats;
use edgewise_sdk::suppress::{Suppressor, Transition};
use edgewise_sdk::time::{HOUR_MS, window_start};
use edgewise_sdk::{Alert, Config, Outputs, Plugin, Reading, Severity, Summary, Wake};
use serde::{Deserialize, Serialize};

/// `limit` when the configuration does not set it.
pub const DEFAULT_LIMIT: f64 = 180.0;
/// `repeat` when the configuration does not set it: one hour.
pub const DEFAULT_REPEAT_MS: i64 = HOUR_MS;

/// The plugin: its configuration and what it keeps per sensor.
pub struct {{type}} {
    limit: f64,
    repeat_ms: i64,
    /// In a `BTreeMap`, so that the order of outputs never depends on hashing.
    sensors: BTreeMap<String, Sensor>,
}

/// One sensor's state. It is the plugin's snapshot (`snapshot_state!`
/// below): a restarted or upgraded plugin goes on from it.
#[derive(Serialize, Deserialize)]
struct Sensor {
    above: Suppressor,
    /// The start of the open hour and its readings so far.
    hour_start: i64,
    hour: RunningStats,
}

impl Sensor {
    fn summary(&self, sensor: &str) -> Summary {
        Summary::new(sensor, self.hour_start, self.hour_start.saturating_add(HOUR_MS))
            .metric("count", self.hour.count() as f64)
            .metric("mean", self.hour.mean().unwrap_or(f64::NAN))
            .metric("max", self.hour.max().unwrap_or(f64::NAN))
    }
}

impl Plugin for {{type}} {
    edgewise_sdk::snapshot_state!(sensors);

    fn init(mut config: Config) -> Result<Self, String> {
        let limit = config.f64("limit", DEFAULT_LIMIT)?;
        let repeat_ms = config.duration_ms("repeat", DEFAULT_REPEAT_MS)?;
        config.finish()?; // refuse a key this code never read: a typo is an error
        Ok({{type}} {
            limit,
            repeat_ms,
            sensors: BTreeMap::new(),
        })
    }

    fn on_readings(&mut self, readings: &[Reading<'_>], out: &mut Outputs) -> Result<(), String> {
        for reading in readings {
            let hour_start = window_start(reading.timestamp_ms, HOUR_MS);
            let sensor = self
                .sensors
                .entry(reading.sensor.to_owned())
                .or_insert_with(|| Sensor {
                    above: Suppressor::new(self.repeat_ms),
                    hour_start,
                    hour: RunningStats::new(),
                });
            if hour_start < sensor.hour_start {
                continue; // late: its hour is already summarised
            }
            if hour_start > sensor.hour_start {
                if sensor.hour.count() > 0 {
                    out.summary(sensor.summary(reading.sensor));
                }
                sensor.hour_start = hour_start;
                sensor.hour = RunningStats::new();
            }
            sensor.hour.push(reading.value);
            let (value, limit) = (reading.value, self.limit);
            match sensor.above.update(reading.timestamp_ms, value > limit) {
                Transition::Raise | Transition::Repeat => {
                    let message = format!("{value} is above the limit of {limit}");
                    out.alert(Alert::new(reading, Severity::Warning, "above-limit", &message));
                }
                Transition::Resolve => {
                    let message = format!("{value} is back below the limit of {limit}");
                    out.alert(Alert::new(reading, Severity::Info, "back-below-limit", &message));
                }
                Transition::Quiet => {}
            }
        }
        Ok(())
    }

    /// Summarise every hour that has ended by `now_ms`.
    fn on_tick(&mut self, now_ms: i64, out: &mut Outputs) -> Result<(), String> {
        for (name, sensor) in &mut self.sensors {
            let end = sensor.hour_start.saturating_add(HOUR_MS);
            if sensor.hour.count() > 0 && end <= now_ms {
                out.summary(sensor.summary(name));
                sensor.hour_start = end;
                sensor.hour = RunningStats::new();
            }
        }
        Ok(())
    }

    /// The host ticks the plugin at the end of the earliest open hour.
    fn next_wake(&self) -> Wake {
        let ends = self
            .sensors
            .values()
            .filter(|s| s.hour.count() > 0)
            .map(|s| s.hour_start.saturating_add(HOUR_MS));
        match ends.min() {
            Some(end) => Wake::At(end),
            None => Wake::Idle,
        }
    }
}

edgewise_sdk::export_plugin!({{type}});

#[cfg(test)]
mod tests {
    use edgewise_sdk::Driver;

    use super::*;

    fn readings(values: &[(i64, f64)]) -> Vec<Reading<'static>> {
        values
            .iter()
            .map(|&(minute, value)| Reading::new("s1", minute * 60_000, value, "mg/dL"))
            .collect()
    }

    #[test]
    fn alerts_once_above_the_limit_then_when_back_below() {
        let mut plugin = {{type}}::init(Config::default()).unwrap();
        let mut out = Outputs::default();
        let values = readings(&[(0, 150.0), (5, 190.0), (10, 200.0), (15, 170.0)]);
        plugin.on_readings(&values, &mut out).unwrap();
        let codes: Vec<&str> = out.alerts().iter().map(|a| a.code.as_str()).collect();
        assert_eq!(codes, ["above-limit", "back-below-limit"]);
        assert_eq!(out.alerts()[0].message, "190 is above the limit of 180");
    }

    #[test]
    fn summarises_each_hour_once_it_has_ended() {
        // The Driver runs the plugin as the host does: ticks at its wakes.
        let mut driver = Driver::<{{type}}>::start(Config::from_pairs(&[("limit", "300")]), None).unwrap();
        let mut out = Outputs::default();
        let values = readings(&[(0, 100.0), (30, 120.0), (65, 140.0)]);
        driver.on_readings(65 * 60_000, &values, &mut out).unwrap();
        let summary = &out.summaries()[0];
        assert_eq!((summary.window_start_ms, summary.window_end_ms), (0, HOUR_MS));
        assert_eq!((summary.get("count"), summary.get("mean")), (Some(2.0), Some(110.0)));
        assert_eq!(out.summaries().len(), 1);
    }

    /// Each default lives in one place: the manifest's `[config]` must not
    /// repeat a default of the code (`finish` refuses it).
    #[test]
    fn starts_with_the_signed_manifest_config() {
        let config = Config::from_manifest(include_str!("../edgewise.toml")).unwrap();
        let plugin = {{type}}::init(config).unwrap();
        assert_eq!((plugin.limit, plugin.repeat_ms), (DEFAULT_LIMIT, DEFAULT_REPEAT_MS));
        assert!({{type}}::init(Config::from_pairs(&[("limt", "200")])).is_err());
    }
}
