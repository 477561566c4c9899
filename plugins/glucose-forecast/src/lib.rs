//! Glucose forecast: the Edgewise plugin that forecasts each CGM sensor's
//! glucose 30 and 60 minutes ahead with a model trained in the cloud (`ml/`)
//! and shipped as a signed asset of its bundle (`model.json`).
//!
//! Per sensor it raises `predicted-low` and `predicted-urgent-low` on the
//! 30-minute forecast, emits an hourly summary of the model's own accuracy
//! (forecasts against the readings that arrived at their target times) and,
//! when configured, every forecast. See `README.md` for the configuration
//! keys and the outputs.
//!
//! Modules, one job each: `config` settings, `forecaster` the model asset
//! and inference (the trainer's code, `forecast-model`), `sensor` what a
//! reading or a tick does to one sensor, `alerts` the alert rules,
//! `accuracy` pending forecasts and the hourly accuracy.

use std::collections::BTreeMap;

use edgewise_sdk::{Config, LogLevel, Outputs, Plugin, Reading, Wake};
use glucose_units::in_mg_dl;
use serde::{Deserialize, Serialize};

mod accuracy;
mod alerts;
mod config;
mod forecaster;
mod sensor;

#[cfg(test)]
mod tests;

pub use forecaster::MODEL_ASSET;

use config::Settings;
use forecaster::Forecaster;
use sensor::{Outcome, SensorState, SensorStateV1};

/// The plugin: settings (from the configuration), the model (from the
/// bundle's asset) and state (in snapshots).
#[derive(Debug, Clone)]
pub struct GlucoseForecast {
    settings: Settings,
    forecaster: Forecaster,
    state: State,
}

/// Everything that shapes the plugin's future outputs: what a snapshot holds.
/// Ticks handle sensors in name order, deterministically.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    sensors: BTreeMap<String, SensorState>,
    /// No sensor's tick is due before this (may be early, never late).
    next_due_ms: i64,
    ignored: Ignored,
}

/// The state as a snapshot of schema 1 (version 0.1.0) keeps it: the same,
/// but for each sensor's layout ([`SensorStateV1`]).
// Written only by the tests of the upgrade; a device reads it.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
struct StateV1 {
    sensors: BTreeMap<String, SensorStateV1>,
    next_due_ms: i64,
    ignored: Ignored,
}

impl From<StateV1> for State {
    fn from(old: StateV1) -> State {
        State {
            sensors: old.sensors.into_iter().map(|(id, s)| (id, s.into())).collect(),
            next_due_ms: old.next_due_ms,
            ignored: old.ignored,
        }
    }
}

/// Readings that made no forecast, and forecasts left unscored, by reason:
/// counted, and logged at the 1st, 10th, 100th... of each.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Ignored {
    /// Values outside `[invalid_below, invalid_above]`.
    invalid: u64,
    /// Timestamps further than 2^53 ms from the epoch.
    out_of_range: u64,
    /// Duplicates and late readings (not after the sensor's newest).
    not_newer: u64,
    /// Forecasts not kept for scoring: their horizon's queue was full.
    left_out: u64,
}

impl Plugin for GlucoseForecast {
    /// 2: each sensor's model state (adaptation) where 1 had its history.
    const SNAPSHOT_SCHEMA: u32 = 2;

    fn snapshot(&self) -> Result<Vec<u8>, String> {
        edgewise_sdk::snapshot::encode(&self.state)
    }

    /// Takes schema 2, and schema 1 of version 0.1.0: its sensors go on
    /// with their history, alert state and pending forecasts, and adapt
    /// from then on (an upgrade keeps the alert suppression).
    fn restore(&mut self, schema: u32, data: &[u8]) -> Result<(), String> {
        self.state = match schema {
            1 => edgewise_sdk::snapshot::decode::<StateV1>(data)?.into(),
            _ => {
                edgewise_sdk::snapshot::expect_schema(schema, Self::SNAPSHOT_SCHEMA)?;
                edgewise_sdk::snapshot::decode(data)?
            }
        };
        // A state saved before sensors were forgotten (0.2.2 or earlier) may
        // hold silent sensors with no tick due: the tick that forgets them
        // is due too.
        let settings = &self.settings;
        let state = &mut self.state;
        state.next_due_ms = state
            .sensors
            .values()
            .map(|sensor| sensor.due_ms().min(sensor.forget_due_ms(settings)))
            .fold(state.next_due_ms, i64::min);
        Ok(())
    }

    fn init(config: Config) -> Result<Self, String> {
        let settings = Settings::from_config(config)?;
        let forecaster = Forecaster::load()?;
        Ok(GlucoseForecast {
            settings,
            forecaster,
            state: State {
                sensors: BTreeMap::new(),
                next_due_ms: i64::MAX,
                ignored: Ignored::default(),
            },
        })
    }

    fn on_readings(&mut self, readings: &[Reading<'_>], out: &mut Outputs) -> Result<(), String> {
        for reading in readings {
            self.on_reading(&in_mg_dl(reading), out);
        }
        Ok(())
    }

    fn on_tick(&mut self, now_ms: i64, out: &mut Outputs) -> Result<(), String> {
        let state = &mut self.state;
        if now_ms < state.next_due_ms {
            return Ok(());
        }
        let settings = &self.settings;
        let mut next_due = i64::MAX;
        let mut forgotten = 0usize;
        for (sensor, sensor_state) in &mut state.sensors {
            if now_ms >= sensor_state.due_ms() {
                sensor_state.on_tick(sensor, now_ms, &self.forecaster, out);
            }
            let forget_due = sensor_state.forget_due_ms(settings);
            if now_ms >= forget_due {
                forgotten += 1;
                continue;
            }
            next_due = next_due.min(sensor_state.due_ms()).min(forget_due);
        }
        state.next_due_ms = next_due;
        if forgotten > 0 {
            // Sensors come and go (patients discharged, CGMs replaced): one
            // silent for `forget_after` is dropped, and the host frees its
            // place among `max_sensors` (`forgets_sensors_after_h`).
            state
                .sensors
                .retain(|_, sensor_state| now_ms < sensor_state.forget_due_ms(settings));
            out.log(
                LogLevel::Info,
                format!(
                    "forgot {forgotten} sensor(s) silent for `forget_after` ({} h); {} remain",
                    settings.forget_after_ms / (60 * edgewise_sdk::time::MINUTE_MS),
                    state.sensors.len()
                ),
            );
        }
        Ok(())
    }

    /// Woken only when an hour of a silent sensor is over.
    fn next_wake(&self) -> Wake {
        match self.state.next_due_ms {
            i64::MAX => Wake::Idle,
            due => Wake::At(due),
        }
    }
}

impl GlucoseForecast {
    fn on_reading(&mut self, reading: &Reading<'_>, out: &mut Outputs) {
        let ignored = &mut self.state.ignored;
        // Checked before creating a sensor: such readings leave no trace.
        if !sensor::timestamp_in_range(reading.timestamp_ms) {
            note(&mut ignored.out_of_range, out, |count| {
                format!(
                    "ignored a reading of sensor `{}` at {} ms: further than 2^53 ms from the epoch; {count} such \
                     readings so far",
                    reading.sensor, reading.timestamp_ms
                )
            });
            return;
        }
        if !self.settings.is_valid(reading.value) {
            note(&mut ignored.invalid, out, |count| {
                format!(
                    "no forecast for a reading of sensor `{}` at {} ms: {} mg/dL is outside [{}, {}]; {count} such \
                     readings so far",
                    reading.sensor,
                    reading.timestamp_ms,
                    reading.value,
                    self.settings.invalid_below,
                    self.settings.invalid_above
                )
            });
            return;
        }
        let state = &mut self.state;
        let sensor = match state.sensors.get_mut(reading.sensor) {
            Some(sensor) => sensor,
            None => state
                .sensors
                .entry(reading.sensor.to_owned())
                .or_insert_with(|| SensorState::new(&self.settings, &self.forecaster)),
        };
        match sensor.on_reading(reading, &self.settings, &mut self.forecaster, out) {
            Outcome::NotNewer => note(&mut state.ignored.not_newer, out, |count| {
                format!(
                    "no forecast for a reading of sensor `{}` at {} ms: not after its newest (a duplicate or a late \
                     reading); {count} such readings so far",
                    reading.sensor, reading.timestamp_ms
                )
            }),
            Outcome::Forecast { left_out: 0 } => {}
            Outcome::Forecast { left_out } => note(&mut state.ignored.left_out, out, |count| {
                format!(
                    "{left_out} forecasts of sensor `{}` at {} ms will not be scored: readings come faster than once \
                     a minute; {count} such readings so far",
                    reading.sensor, reading.timestamp_ms
                )
            }),
        }
        state.next_due_ms = state
            .next_due_ms
            .min(sensor.due_ms())
            .min(sensor.forget_due_ms(&self.settings));
    }
}

/// Count one more of something ignored, logging the 1st, 10th, 100th... (a
/// stream of them must not flood the log).
fn note(count: &mut u64, out: &mut Outputs, message: impl FnOnce(u64) -> String) {
    *count = count.saturating_add(1);
    let count = *count;
    if count == 10u64.saturating_pow(count.ilog10()) {
        out.log(LogLevel::Warn, message(count));
    }
}

edgewise_sdk::export_plugin!(GlucoseForecast);
