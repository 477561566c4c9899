//! The alerts on the 30-minute forecast: `predicted-urgent-low` and
//! `predicted-low`, with glucose-monitor's rules for `urgent-low` and `low`
//! (repeat suppression, an "all clear" `<code>-resolved`, and a low that
//! stays quiet while the urgent one is active).

use std::fmt;

use edgewise_sdk::suppress::{Suppressor, Transition};
use edgewise_sdk::{Alert, Outputs, Reading, Severity};
use serde::{Deserialize, Serialize};

use crate::config::Settings;

/// A glucose value (or threshold) for a message: whole numbers without
/// decimals, others with one (glucose-monitor's style).
struct Mgdl(f64);

impl fmt::Display for Mgdl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.fract() == 0.0 {
            write!(f, "{:.0}", self.0)
        } else {
            write!(f, "{:.1}", self.0)
        }
    }
}

/// An alert code with the code of its "all clear".
#[derive(Debug, Clone, Copy)]
struct Code {
    raise: &'static str,
    resolve: &'static str,
    severity: Severity,
}

/// Code of the urgent alert.
pub const PREDICTED_URGENT_LOW: &str = "predicted-urgent-low";
/// Code of the low alert.
pub const PREDICTED_LOW: &str = "predicted-low";

const URGENT_LOW: Code = Code {
    raise: PREDICTED_URGENT_LOW,
    resolve: "predicted-urgent-low-resolved",
    severity: Severity::Critical,
};
const LOW: Code = Code {
    raise: PREDICTED_LOW,
    resolve: "predicted-low-resolved",
    severity: Severity::Warning,
};

/// The forecast an alert is about.
#[derive(Debug, Clone, Copy)]
pub struct Forecast {
    /// mg/dL.
    pub value: f64,
    /// Minutes ahead of the reading.
    pub horizon_min: u32,
}

/// The alert state of one sensor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PredictedLow {
    urgent_low: Suppressor,
    low: Suppressor,
}

impl PredictedLow {
    /// No alert active.
    pub fn new(settings: &Settings) -> PredictedLow {
        let gate = Suppressor::new(settings.repeat_ms);
        PredictedLow {
            urgent_low: gate,
            low: gate,
        }
    }

    /// Evaluate both rules on the forecast made for `reading` (urgent first).
    pub fn evaluate(&mut self, reading: &Reading<'_>, forecast: Forecast, s: &Settings, out: &mut Outputs) {
        let ts = reading.timestamp_ms;
        let transition = self.urgent_low.update(ts, forecast.value < s.urgent_low);
        send(out, reading, forecast, URGENT_LOW, s.urgent_low, transition);

        // `predicted-low` stays active below `low` while the urgent alert has
        // taken over, but is only raised or repeated while it is not active.
        let transition = if forecast.value >= s.low {
            self.low.update(ts, false)
        } else if self.urgent_low.is_active() {
            Transition::Quiet
        } else {
            self.low.update(ts, true)
        };
        send(out, reading, forecast, LOW, s.low, transition);
    }
}

/// Send what `transition` calls for: the alert carries the reading's sensor
/// and time and the forecast as its value; messages are only formatted when
/// sent.
fn send(out: &mut Outputs, reading: &Reading<'_>, forecast: Forecast, code: Code, below: f64, transition: Transition) {
    let (severity, code, message) = match transition {
        Transition::Raise | Transition::Repeat => (
            code.severity,
            code.raise,
            format!(
                "Glucose {} mg/dL is forecast to be {:.1} mg/dL in {} min, below {} mg/dL",
                Mgdl(reading.value),
                forecast.value,
                forecast.horizon_min,
                Mgdl(below)
            ),
        ),
        Transition::Resolve => (
            Severity::Info,
            code.resolve,
            format!(
                "Glucose {} mg/dL is no longer forecast below {} mg/dL in {} min ({:.1} mg/dL)",
                Mgdl(reading.value),
                Mgdl(below),
                forecast.horizon_min,
                forecast.value
            ),
        ),
        Transition::Quiet => return,
    };
    out.alert(Alert {
        sensor: reading.sensor.to_owned(),
        timestamp_ms: reading.timestamp_ms,
        severity,
        code: code.to_owned(),
        message,
        value: Some(forecast.value),
    });
}
