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

use edgewise_sdk::{Config, LogLevel, Outputs, Plugin, Reading};

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
    /// The latest tick seen (`i64::MIN` before the first): the plugin's notion of now.
    tick_horizon_ms: i64,
    /// How far the latest tick moved the horizon (0 before the second tick).
    tick_step_ms: i64,
    /// Readings ignored for being too far ahead of the horizon.
    ahead_ignored: u64,
    /// No sensor's tick is due before this (may be early, never late).
    next_due_ms: i64,
}

impl Plugin for GlucoseMonitor {
    fn init(config: Config) -> Result<Self, String> {
        Ok(GlucoseMonitor {
            settings: Settings::from_config(config)?,
            sensors: Sensors::default(),
            tick_horizon_ms: i64::MIN,
            tick_step_ms: 0,
            ahead_ignored: 0,
            next_due_ms: i64::MAX,
        })
    }

    fn on_readings(&mut self, readings: &[Reading], out: &mut Outputs) -> Result<(), String> {
        for reading in readings {
            // Checked before creating a sensor, so such readings leave no trace.
            if !sensor::timestamp_in_range(reading.timestamp_ms) {
                continue;
            }
            if self.is_ahead(reading.timestamp_ms) {
                self.ignore_ahead(reading, out);
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
        if horizon != i64::MIN && now_ms > horizon {
            self.tick_step_ms = now_ms.saturating_sub(horizon);
        }
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

impl GlucoseMonitor {
    /// Whether a reading at `timestamp_ms` is too far ahead of now (the latest
    /// tick) to be believed: by more than `max_ahead`, or one tick step if
    /// that is longer. Without the step, a replay with ticks further apart
    /// than `max_ahead` would lose the readings between them, and replays
    /// would depend on `--tick`; with it, a replay (whose readings are never
    /// more than a step ahead of the latest tick) ignores nothing, and its
    /// outputs are those of a plugin without this rule. Before the first tick
    /// there is no now, and every reading is taken (the host refuses readings
    /// ahead of its clock before they reach a plugin).
    fn is_ahead(&self, timestamp_ms: i64) -> bool {
        self.tick_horizon_ms != i64::MIN
            && timestamp_ms
                > self
                    .tick_horizon_ms
                    .saturating_add(self.settings.max_ahead_ms.max(self.tick_step_ms))
    }

    /// Drop an outlier reading, logging the 1st, 10th, 100th... (a stream of
    /// them must not flood the log).
    fn ignore_ahead(&mut self, reading: &Reading, out: &mut Outputs) {
        self.ahead_ignored = self.ahead_ignored.saturating_add(1);
        let count = self.ahead_ignored;
        if count == 10u64.saturating_pow(count.ilog10()) {
            out.log(
                LogLevel::Warn,
                format!(
                    "ignored a reading of sensor `{}` at {} ms: over max_ahead ahead of the latest tick ({} ms);                      {count} such readings so far",
                    reading.sensor, reading.timestamp_ms, self.tick_horizon_ms
                ),
            );
        }
    }
}

edgewise_sdk::export_plugin!(GlucoseMonitor);
