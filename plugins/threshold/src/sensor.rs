//! Everything the plugin remembers about one sensor, and how one reading
//! moves it forward.

use edgewise_sdk::wake::DEFAULT_TICK_MS;
use edgewise_sdk::{Outputs, Reading};
use serde::{Deserialize, Serialize};

use crate::alerts::Conditions;
use crate::hourly::HourBook;
use crate::rate::RateWindow;
use crate::settings::Settings;

/// Where a reading falls relative to the newest one seen for its sensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// Newer than every reading before it (or the first one).
    InOrder,
    /// Same timestamp as the newest: a duplicate, ignored.
    Duplicate,
    /// Older than the newest: summarised if its hour is open, never alerted on.
    Late,
}

/// The state of one sensor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SensorState {
    /// Timestamp of the newest reading seen, valid or not.
    newest_ms: Option<i64>,
    hours: HourBook,
    rate: RateWindow,
    conditions: Conditions,
}

impl SensorState {
    /// A sensor seen for the first time.
    pub(crate) fn new(settings: &Settings) -> SensorState {
        SensorState {
            newest_ms: None,
            hours: HourBook::default(),
            rate: RateWindow::new(settings.rate_window_ms, settings.rate_min_readings),
            conditions: Conditions::new(settings.repeat_ms),
        }
    }

    /// Handle one reading of this sensor: close the hour it ends, count it in
    /// its hour, and judge it for alerts if it is valid and in order.
    ///
    /// Invalid readings (non-finite value, wrong unit) still carry a good
    /// timestamp: they advance the sensor's clock (so they close hours and
    /// make older readings late) but never touch the alert conditions.
    pub(crate) fn observe(&mut self, reading: &Reading, settings: &Settings, out: &mut Outputs) {
        let timestamp_ms = reading.timestamp_ms;
        let value = valid_value(reading, settings);
        match self.arrival_of(timestamp_ms) {
            Arrival::Duplicate => {}
            Arrival::Late => {
                self.hours.record_late(timestamp_ms, value);
            }
            Arrival::InOrder => {
                self.newest_ms = Some(timestamp_ms);
                let (_, closed) = self.hours.record_in_order(reading.sensor, timestamp_ms, value);
                if let Some(summary) = closed {
                    out.summary(summary);
                }
                if let Some(value) = value {
                    let slope = self.rate.push(timestamp_ms, value);
                    self.conditions.judge(reading, slope, settings, out);
                }
            }
        }
    }

    /// Handle a clock tick: send the summary of an hour that has ended by `now_ms`.
    pub(crate) fn tick(&mut self, sensor: &str, now_ms: i64, out: &mut Outputs) {
        if let Some(summary) = self.hours.close_ended(sensor, now_ms) {
            out.summary(summary);
        }
    }

    /// Whether a tick at `now_ms`, after [`SensorState::tick`], forgets this
    /// sensor: from `forget_after` after its newest reading, less one tick
    /// step, so that the tick that forgets it comes no later than
    /// `forget_after` (the host frees its place among `max_sensors` a little
    /// after that). Its last hour, which ends within an hour of its newest
    /// reading, was closed and summarised by this tick or an earlier one.
    pub(crate) fn is_forgotten_at(&self, now_ms: i64, settings: &Settings) -> bool {
        // A sensor read within `forget_after` of the end of time is never
        // due: saturating there would forget it at once.
        let due = self
            .newest_ms
            .and_then(|newest| newest.checked_add(settings.forget_after_ms))
            .map(|end| end.saturating_sub(DEFAULT_TICK_MS));
        due.is_some_and(|due| now_ms >= due)
    }

    fn arrival_of(&self, timestamp_ms: i64) -> Arrival {
        match self.newest_ms {
            Some(newest) if timestamp_ms == newest => Arrival::Duplicate,
            Some(newest) if timestamp_ms < newest => Arrival::Late,
            _ => Arrival::InOrder,
        }
    }
}

/// The reading's value if it may be judged: finite, and in the configured
/// unit (an empty reading unit is taken to be the configured one).
fn valid_value(reading: &Reading, settings: &Settings) -> Option<f64> {
    let unit_ok = settings.unit.is_empty() || reading.unit.is_empty() || reading.unit == settings.unit;
    (unit_ok && reading.value.is_finite()).then_some(reading.value)
}
