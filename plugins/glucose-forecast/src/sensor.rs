//! Everything the plugin knows about one sensor, and what a reading or a
//! tick does to it.

use edgewise_sdk::{Outputs, Reading, Summary};
use forecast_model::{History, SensorModel};
use serde::{Deserialize, Serialize};

use crate::accuracy::Accuracy;
use crate::alerts::{Forecast, PredictedLow};
use crate::config::Settings;
use crate::forecaster::Forecaster;

/// Readings further than this from the epoch (2^53 ms, about 285,000 years)
/// are dropped, as glucose-monitor drops them: within it every timestamp sum
/// and difference fits in `i64` and converts exactly to `f64`.
pub const MAX_ABS_TIMESTAMP_MS: i64 = 1 << 53;

/// Whether a reading at `timestamp_ms` is taken at all (see [`MAX_ABS_TIMESTAMP_MS`]).
pub fn timestamp_in_range(timestamp_ms: i64) -> bool {
    (-MAX_ABS_TIMESTAMP_MS..=MAX_ABS_TIMESTAMP_MS).contains(&timestamp_ms)
}

/// What became of a valid reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The sensor's newest: forecast, alerts evaluated. `left_out` forecasts
    /// found their horizon's queue full and will not be scored.
    Forecast {
        /// Forecasts not kept for scoring.
        left_out: u64,
    },
    /// Not after the sensor's newest reading (a duplicate or a late one):
    /// ignored, as the trainer ignores it.
    NotNewer,
}

/// The state of one sensor: bounded (the model state keeps the model's hour
/// or so of readings and a few dozen forecasts to learn from, the accuracy at
/// most a few hundred forecasts).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SensorState {
    /// Its recent readings and, where the model adapts, its own coefficients.
    model: SensorModel,
    alerts: PredictedLow,
    accuracy: Accuracy,
    /// When a tick would emit something (see [`SensorState::due_ms`]).
    due_ms: i64,
}

impl SensorState {
    /// A sensor never seen before.
    pub fn new(settings: &Settings, forecaster: &Forecaster) -> SensorState {
        SensorState {
            model: SensorModel::default(),
            alerts: PredictedLow::new(settings),
            accuracy: Accuracy::new(forecaster.minutes().len()),
            due_ms: i64::MAX,
        }
    }

    /// Handle a valid reading (finite, in range) of this sensor.
    pub fn on_reading(
        &mut self,
        reading: &Reading<'_>,
        settings: &Settings,
        forecaster: &mut Forecaster,
        out: &mut Outputs,
    ) -> Outcome {
        let (ts, value) = (reading.timestamp_ms, reading.value);
        let (step_min, tolerance_ms) = (forecaster.spec().step_min, forecaster.spec().tolerance_ms());
        let Some(forecasts) = forecaster.observe(&mut self.model, (ts, value)) else {
            return Outcome::NotNewer;
        };
        // The past first in the outputs: the forecasts this reading judges,
        // the hours it ends (they do not depend on its forecasts).
        self.accuracy
            .on_reading(reading.sensor, (ts, value), forecasts.minutes, tolerance_ms, out);
        if settings.emit_forecasts {
            for (forecast, horizon_min) in forecasts.iter() {
                let end = ts.saturating_add(i64::from(horizon_min) * edgewise_sdk::time::MINUTE_MS);
                out.summary(
                    Summary::new(reading.sensor, ts, end)
                        .metric("forecast", forecast)
                        .metric("horizon_min", f64::from(horizon_min)),
                );
            }
        }
        if let Some((value, horizon_min)) = forecasts.iter().nth(forecasts.alert_horizon) {
            self.alerts
                .evaluate(reading, Forecast { value, horizon_min }, settings, out);
        }
        let left_out = self.accuracy.add(ts, forecasts.values, forecasts.minutes, step_min);
        self.due_ms = self.accuracy.due_ms(tolerance_ms);
        Outcome::Forecast { left_out }
    }

    /// Handle a tick at `now_ms`: emit the accuracy of hours that are over.
    pub fn on_tick(&mut self, sensor: &str, now_ms: i64, forecaster: &Forecaster, out: &mut Outputs) {
        let tolerance_ms = forecaster.spec().tolerance_ms();
        self.accuracy
            .on_tick(sensor, now_ms, forecaster.minutes(), tolerance_ms, out);
        self.due_ms = self.accuracy.due_ms(tolerance_ms);
    }

    /// The tick time from which this sensor is forgotten: `forget_after`
    /// after its newest valid reading (`i64::MAX` before one).
    pub fn forget_due_ms(&self, settings: &Settings) -> i64 {
        self.model
            .history()
            .newest()
            .map_or(i64::MAX, |(newest, _)| newest.saturating_add(settings.forget_after_ms))
    }

    /// The earliest tick that would emit something (`i64::MAX`: none).
    /// Cached: only readings and ticks change it.
    pub fn due_ms(&self) -> i64 {
        self.due_ms
    }
}

/// A sensor as a snapshot of schema 1 (version 0.1.0, before adaptation)
/// keeps it: the same fields, the history where the model state is now.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(Serialize))]
pub struct SensorStateV1 {
    history: History,
    alerts: PredictedLow,
    accuracy: Accuracy,
    due_ms: i64,
}

impl From<SensorStateV1> for SensorState {
    /// The sensor goes on from its history, alert state and pending
    /// forecasts; it adapts from now on.
    fn from(old: SensorStateV1) -> SensorState {
        SensorState {
            model: SensorModel::resume(old.history),
            alerts: old.alerts,
            accuracy: old.accuracy,
            due_ms: old.due_ms,
        }
    }
}

#[cfg(test)]
impl SensorState {
    /// This sensor as schema 1 kept it (for the tests of the upgrade).
    pub fn to_v1(&self) -> SensorStateV1 {
        SensorStateV1 {
            history: self.model.history().clone(),
            alerts: self.alerts.clone(),
            accuracy: self.accuracy.clone(),
            due_ms: self.due_ms,
        }
    }
}
