//! Alert rules: thresholds on each valid reading and on its recent trend,
//! with repeat suppression and an "all clear" (`<code>-resolved`).

use serde::{Deserialize, Serialize};
use std::fmt;

use edgewise_sdk::suppress::{Suppressor, Transition};
use edgewise_sdk::time::MINUTE_MS;
use edgewise_sdk::{Alert, Outputs, Reading, Severity};

use crate::config::Settings;
use crate::recent::Recent;

/// A glucose value (or threshold) for a message: whole numbers without
/// decimals, others with one.
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

/// A duration for a message: `20 min`, or seconds / milliseconds when not whole.
struct Span(i64);

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ms if ms % MINUTE_MS == 0 => write!(f, "{} min", ms / MINUTE_MS),
            ms if ms % 1000 == 0 => write!(f, "{} s", ms / 1000),
            ms => write!(f, "{ms} ms"),
        }
    }
}

/// The alert codes with the code of their "all clear".
#[derive(Debug, Clone, Copy)]
struct Code {
    raise: &'static str,
    resolve: &'static str,
    severity: Severity,
}

const URGENT_LOW: Code = Code {
    raise: "urgent-low",
    resolve: "urgent-low-resolved",
    severity: Severity::Critical,
};
const LOW: Code = Code {
    raise: "low",
    resolve: "low-resolved",
    severity: Severity::Warning,
};
const URGENT_LOW_SOON: Code = Code {
    raise: "urgent-low-soon",
    resolve: "urgent-low-soon-resolved",
    severity: Severity::Critical,
};
const HIGH: Code = Code {
    raise: "high",
    resolve: "high-resolved",
    severity: Severity::Warning,
};
const RISING_FAST: Code = Code {
    raise: "rising-fast",
    resolve: "rising-fast-resolved",
    severity: Severity::Warning,
};
const FALLING_FAST: Code = Code {
    raise: "falling-fast",
    resolve: "falling-fast-resolved",
    severity: Severity::Warning,
};

/// Code of the signal-loss alert.
pub const SIGNAL_LOSS: &str = "signal-loss";
/// Code of its "all clear".
pub const SIGNAL_LOSS_RESOLVED: &str = "signal-loss-resolved";

/// Send what `transition` calls for; messages are only formatted when sent.
fn send(
    out: &mut Outputs,
    reading: &Reading,
    code: Code,
    transition: Transition,
    raised: impl FnOnce() -> String,
    resolved: impl FnOnce() -> String,
) {
    match transition {
        Transition::Raise | Transition::Repeat => out.alert(Alert::new(reading, code.severity, code.raise, &raised())),
        Transition::Resolve => out.alert(Alert::new(reading, Severity::Info, code.resolve, &resolved())),
        Transition::Quiet => {}
    }
}

/// The state of the reading-driven alerts of one sensor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AlertRules {
    urgent_low: Suppressor,
    low: Suppressor,
    urgent_low_soon: Suppressor,
    high: Suppressor,
    rising_fast: Suppressor,
    falling_fast: Suppressor,
}

impl AlertRules {
    /// No alert active.
    pub fn new(settings: &Settings) -> AlertRules {
        let gate = Suppressor::new(settings.repeat_ms);
        AlertRules {
            urgent_low: gate,
            low: gate,
            urgent_low_soon: gate,
            high: gate,
            rising_fast: gate,
            falling_fast: gate,
        }
    }

    /// Evaluate every rule on a valid in-order reading, already pushed into
    /// `recent`, in the documented order.
    pub fn evaluate(&mut self, reading: &Reading, recent: &Recent, s: &Settings, out: &mut Outputs) {
        let (ts, v) = (reading.timestamp_ms, reading.value);

        let transition = self.urgent_low.update(ts, v < s.urgent_low);
        send(
            out,
            reading,
            URGENT_LOW,
            transition,
            || format!("Glucose {} mg/dL is below {} mg/dL", Mgdl(v), Mgdl(s.urgent_low)),
            || {
                format!(
                    "Glucose {} mg/dL is no longer below {} mg/dL",
                    Mgdl(v),
                    Mgdl(s.urgent_low)
                )
            },
        );

        // `low` stays active below `low` even while urgent-low has taken over,
        // but is only raised or repeated while urgent-low is not active.
        let transition = if v >= s.low {
            self.low.update(ts, false)
        } else if self.urgent_low.is_active() {
            Transition::Quiet
        } else {
            self.low.update(ts, true)
        };
        send(
            out,
            reading,
            LOW,
            transition,
            || format!("Glucose {} mg/dL is below {} mg/dL", Mgdl(v), Mgdl(s.low)),
            || format!("Glucose {} mg/dL is no longer below {} mg/dL", Mgdl(v), Mgdl(s.low)),
        );

        let predicted = recent.predicted(s);
        let soon = v >= s.urgent_low_soon && predicted.is_some_and(|p| p < s.urgent_low_soon);
        let transition = self.urgent_low_soon.update(ts, soon);
        send(
            out,
            reading,
            URGENT_LOW_SOON,
            transition,
            || {
                format!(
                    "Glucose {} mg/dL is predicted to fall to {:.1} mg/dL, below {} mg/dL, within {}",
                    Mgdl(v),
                    predicted.unwrap_or(f64::NAN),
                    Mgdl(s.urgent_low_soon),
                    Span(s.urgent_low_soon_horizon_ms)
                )
            },
            || {
                format!(
                    "Glucose {} mg/dL is no longer predicted to fall below {} mg/dL within {}",
                    Mgdl(v),
                    Mgdl(s.urgent_low_soon),
                    Span(s.urgent_low_soon_horizon_ms)
                )
            },
        );

        let transition = self.high.update(ts, v > s.high);
        send(
            out,
            reading,
            HIGH,
            transition,
            || format!("Glucose {} mg/dL is above {} mg/dL", Mgdl(v), Mgdl(s.high)),
            || format!("Glucose {} mg/dL is no longer above {} mg/dL", Mgdl(v), Mgdl(s.high)),
        );

        let slope = recent.rate(s);
        let transition = self.rising_fast.update(ts, slope.is_some_and(|r| r >= s.rate_limit));
        send(
            out,
            reading,
            RISING_FAST,
            transition,
            || format!("Glucose rising {:.1} mg/dL/min", slope.unwrap_or(f64::NAN)),
            || format!("Glucose {} mg/dL is no longer rising fast", Mgdl(v)),
        );
        let transition = self.falling_fast.update(ts, slope.is_some_and(|r| r <= -s.rate_limit));
        send(
            out,
            reading,
            FALLING_FAST,
            transition,
            || format!("Glucose falling {:.1} mg/dL/min", -slope.unwrap_or(f64::NAN)),
            || format!("Glucose {} mg/dL is no longer falling fast", Mgdl(v)),
        );
    }
}

/// The signal-loss alert: no valid reading since `last_valid_ms`. Its time is
/// the moment the outage became long enough, not the tick that noticed it.
pub fn signal_loss(sensor: &str, last_valid_ms: i64, settings: &Settings) -> Alert {
    Alert {
        sensor: sensor.to_owned(),
        timestamp_ms: last_valid_ms.saturating_add(settings.signal_loss_ms),
        severity: Severity::Warning,
        code: SIGNAL_LOSS.to_owned(),
        message: format!("No glucose reading for {}", Span(settings.signal_loss_ms)),
        value: None,
    }
}

/// The signal-loss "all clear", on the first valid reading after the outage.
pub fn signal_restored(reading: &Reading) -> Alert {
    let message = format!("Glucose readings are back: {} mg/dL", Mgdl(reading.value));
    Alert::new(reading, Severity::Info, SIGNAL_LOSS_RESOLVED, &message)
}
