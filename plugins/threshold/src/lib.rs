//! `threshold`: a generic Edgewise plugin for any scalar sensor.
//!
//! For each sensor it raises an alert when the value leaves the band
//! `[low, high]` or changes too fast, repeats a persisting alert at most every
//! `repeat`, sends an "all clear" when the condition ends, and summarises each
//! UTC hour once it has closed. See `README.md` for the configuration keys.
//!
//! Layout, one job per module:
//! - `settings`: read and validate the configuration;
//! - `sensor`: the state of one sensor and the handling of one reading;
//! - `alerts`: the three conditions, their suppression and their messages;
//! - `rate`: least-squares rate of change over a time window;
//! - `hourly`: which hour is open, its figures, and when it closes;
//! - `format`: deterministic number text for messages.
//!
//! Time comes only from reading timestamps and ticks, and sensors are kept in
//! a [`BTreeMap`], so the same input always gives the same output, in the
//! same order.

mod alerts;
mod format;
mod hourly;
mod rate;
mod sensor;
mod settings;

use std::collections::BTreeMap;

use edgewise_sdk::time::HOUR_MS;
use edgewise_sdk::{Config, LogLevel, Outputs, Plugin, Reading};

pub use alerts::{
    ABOVE_HIGH, ABOVE_HIGH_RESOLVED, BELOW_LOW, BELOW_LOW_RESOLVED, RATE_OF_CHANGE, RATE_OF_CHANGE_RESOLVED,
};

use sensor::SensorState;
use settings::Settings;

/// The plugin: validated settings (from the configuration) and the state of
/// every sensor heard from within `forget_after` (what a snapshot holds). It
/// ticks every five minutes (the SDK's default wake): a tick closes hours,
/// marks the hour it falls in as started for every sensor, and forgets the
/// sensors silent for `forget_after`.
#[derive(Debug, Clone)]
pub struct Threshold {
    settings: Settings,
    sensors: BTreeMap<String, SensorState>,
}

impl Plugin for Threshold {
    edgewise_sdk::snapshot_state!(sensors);

    fn init(config: Config) -> Result<Self, String> {
        Ok(Threshold {
            settings: Settings::from_config(config)?,
            sensors: BTreeMap::new(),
        })
    }

    /// Handle the readings one by one, in arrival order. Never fails: bad
    /// readings are counted as invalid, not refused.
    fn on_readings(&mut self, readings: &[Reading<'_>], out: &mut Outputs) -> Result<(), String> {
        for reading in readings {
            let settings = &self.settings;
            let state = match self.sensors.get_mut(reading.sensor) {
                Some(state) => state,
                None => self
                    .sensors
                    .entry(reading.sensor.to_owned())
                    .or_insert_with(|| SensorState::new(settings)),
            };
            state.observe(reading, settings, out);
        }
        Ok(())
    }

    /// Send the summaries of the hours that have ended by `now_ms`, sensors
    /// in sorted order, then forget the sensors silent for `forget_after`.
    fn on_tick(&mut self, now_ms: i64, out: &mut Outputs) -> Result<(), String> {
        let settings = &self.settings;
        let before = self.sensors.len();
        // `retain` visits the sensors in sorted order, as the summaries need.
        self.sensors.retain(|sensor, state| {
            state.tick(sensor, now_ms, out);
            !state.is_forgotten_at(now_ms, settings)
        });
        let forgotten = before - self.sensors.len();
        if forgotten > 0 {
            out.log(
                LogLevel::Info,
                format!(
                    "forgot {forgotten} sensor(s) silent for `forget_after` ({} h); {} remain",
                    settings.forget_after_ms / HOUR_MS,
                    self.sensors.len()
                ),
            );
        }
        Ok(())
    }
}

edgewise_sdk::export_plugin!(Threshold);
