//! Glucose monitor: the Edgewise plugin for continuous glucose monitors (CGM).
//!
//! Per sensor it raises alerts (urgent low, low, urgent low soon, high,
//! rising / falling fast, signal loss) and emits hourly and daily summaries
//! with the consensus CGM metrics and hypo- / hyperglycaemia episode counts.
//! See `README.md` for the configuration keys and the clinical rules.
//!
//! Modules, one job each: `config` settings, `sensor` per-sensor
//! orchestration, `alerts` alert rules, `recent` trend buffer and fits,
//! `episodes` episode state machines, `interval` median sensor interval,
//! `windows` window closing / holding / emitting, `summary` window metrics.

use std::collections::BTreeMap;

use edgewise_sdk::{Config, Outputs, Plugin, Reading};

mod alerts;
mod config;
mod episodes;
mod interval;
mod recent;
mod sensor;
mod summary;
mod windows;

#[cfg(test)]
mod tests;

use config::Settings;
use sensor::SensorState;

/// The plugin: settings plus the state of every sensor seen, in sensor order
/// (a `BTreeMap`, so ticks handle sensors deterministically).
#[derive(Debug, Clone)]
pub struct GlucoseMonitor {
    settings: Settings,
    sensors: BTreeMap<String, SensorState>,
}

impl Plugin for GlucoseMonitor {
    fn init(config: Config) -> Result<Self, String> {
        Ok(GlucoseMonitor {
            settings: Settings::from_config(config)?,
            sensors: BTreeMap::new(),
        })
    }

    fn on_readings(&mut self, readings: &[Reading], out: &mut Outputs) -> Result<(), String> {
        for reading in readings {
            // Checked before creating a sensor, so such readings leave no trace.
            if !sensor::timestamp_in_range(reading.timestamp_ms) {
                continue;
            }
            let state = match self.sensors.get_mut(&reading.sensor) {
                Some(state) => state,
                None => self
                    .sensors
                    .entry(reading.sensor.clone())
                    .or_insert_with(|| SensorState::new(&self.settings)),
            };
            state.on_reading(reading, &self.settings, out);
        }
        Ok(())
    }

    fn on_tick(&mut self, now_ms: i64, out: &mut Outputs) -> Result<(), String> {
        for (sensor, state) in &mut self.sensors {
            state.on_tick(sensor, now_ms, &self.settings, out);
        }
        Ok(())
    }
}

edgewise_sdk::export_plugin!(GlucoseMonitor);
