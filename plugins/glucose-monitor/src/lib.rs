//! Glucose monitor: the Edgewise plugin for continuous glucose monitors (CGM).
//!
//! Per sensor it raises alerts (urgent low, low, urgent low soon, high,
//! rising / falling fast, signal loss) and emits hourly and daily summaries
//! with the consensus CGM metrics and hypo- / hyperglycaemia episode counts.
//! See `README.md` for the configuration keys and the clinical rules.
//!
//! Modules, one job each: `config` settings, `registry` sensors by name,
//! `sensor` per-sensor orchestration (and when its tick is due), `alerts`
//! alert rules, `recent` trend buffer and fits, `episodes` episode state
//! machines, `interval` median sensor interval, `windows` window closing /
//! holding / emitting, `summary` window metrics.

use edgewise_sdk::{Config, Outputs, Plugin, Reading};

mod alerts;
mod config;
mod episodes;
mod interval;
mod recent;
mod registry;
mod sensor;
mod summary;
mod windows;

#[cfg(test)]
mod tests;

use config::Settings;
use registry::Sensors;
use sensor::SensorState;

/// The plugin: settings plus the state of every sensor seen (ticks handle
/// sensors in name order, deterministically).
#[derive(Debug, Clone)]
pub struct GlucoseMonitor {
    settings: Settings,
    sensors: Sensors,
    /// The latest tick seen (`i64::MIN` before the first).
    tick_horizon_ms: i64,
    /// No sensor's tick is due before this (may be early, never late).
    next_due_ms: i64,
}

impl Plugin for GlucoseMonitor {
    fn init(config: Config) -> Result<Self, String> {
        Ok(GlucoseMonitor {
            settings: Settings::from_config(config)?,
            sensors: Sensors::default(),
            tick_horizon_ms: i64::MIN,
            next_due_ms: i64::MAX,
        })
    }

    fn on_readings(&mut self, readings: &[Reading], out: &mut Outputs) -> Result<(), String> {
        for reading in readings {
            // Checked before creating a sensor, so such readings leave no trace.
            if !sensor::timestamp_in_range(reading.timestamp_ms) {
                continue;
            }
            let settings = &self.settings;
            let Some(state) = self
                .sensors
                .get_or_insert(&reading.sensor, || SensorState::new(settings))
            else {
                continue;
            };
            state.catch_up(self.tick_horizon_ms);
            state.on_reading(reading, &self.settings, out);
            let due = state.refresh_tick_due(&self.settings);
            self.next_due_ms = self.next_due_ms.min(due);
        }
        Ok(())
    }

    fn on_tick(&mut self, now_ms: i64, out: &mut Outputs) -> Result<(), String> {
        // Most ticks (every 5 min over years of a recording) find nothing to
        // do: skip them in O(1), and visit only the sensors that are due.
        // A skipped sensor catches up on the horizon at its next visit.
        let horizon = self.tick_horizon_ms;
        self.tick_horizon_ms = horizon.max(now_ms);
        if now_ms < self.next_due_ms {
            return Ok(());
        }
        let settings = &self.settings;
        let mut next_due = i64::MAX;
        self.sensors.for_each_in_name_order(|sensor, state| {
            if now_ms >= state.tick_due_ms() {
                state.catch_up(horizon);
                state.on_tick(sensor, now_ms, settings, out);
                state.refresh_tick_due(settings);
            }
            next_due = next_due.min(state.tick_due_ms());
        });
        self.next_due_ms = next_due;
        Ok(())
    }
}

edgewise_sdk::export_plugin!(GlucoseMonitor);
