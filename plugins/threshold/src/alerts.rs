//! The three alert conditions of one sensor and their repeat suppression.

use edgewise_sdk::suppress::{Suppressor, Transition};
use edgewise_sdk::{Alert, Outputs, Reading, Severity};
use serde::{Deserialize, Serialize};

use crate::format;
use crate::settings::Settings;

/// Alert code: the value is below `low`.
pub const BELOW_LOW: &str = "below-low";
/// Alert code: the value is back at or above `low`.
pub const BELOW_LOW_RESOLVED: &str = "below-low-resolved";
/// Alert code: the value is above `high`.
pub const ABOVE_HIGH: &str = "above-high";
/// Alert code: the value is back at or below `high`.
pub const ABOVE_HIGH_RESOLVED: &str = "above-high-resolved";
/// Alert code: the value changes at `rate_limit` or faster.
pub const RATE_OF_CHANGE: &str = "rate-of-change";
/// Alert code: the value changes slower than `rate_limit` again.
pub const RATE_OF_CHANGE_RESOLVED: &str = "rate-of-change-resolved";

/// Clamp a timestamp before handing it to a [`Suppressor`], which subtracts
/// two timestamps: within `±i64::MAX / 2` no difference can overflow. Only
/// timestamps more than 146 million years from 1970 are affected.
fn suppressor_clock(timestamp_ms: i64) -> i64 {
    const BOUND: i64 = i64::MAX / 2;
    timestamp_ms.clamp(-BOUND, BOUND)
}

/// One suppressor per condition, for one sensor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Conditions {
    below_low: Suppressor,
    above_high: Suppressor,
    rate: Suppressor,
}

impl Conditions {
    /// Fresh conditions, none active.
    pub(crate) fn new(repeat_ms: i64) -> Conditions {
        Conditions {
            below_low: Suppressor::new(repeat_ms),
            above_high: Suppressor::new(repeat_ms),
            rate: Suppressor::new(repeat_ms),
        }
    }

    /// Judge a valid in-order reading and write the alerts it calls for:
    /// all clears first, then raises and repeats, each in the fixed order
    /// `below-low`, `above-high`, `rate-of-change` (so a jump from below
    /// `low` to above `high` reads `below-low-resolved`, `above-high`).
    ///
    /// `slope` is the rate of change in units per minute, `None` when it
    /// cannot be judged yet: the rate condition is then left as it was (an
    /// active rate alert is neither repeated nor resolved by a reading that
    /// says nothing about the rate).
    pub(crate) fn judge(&mut self, reading: &Reading, slope: Option<f64>, settings: &Settings, out: &mut Outputs) {
        let now = suppressor_clock(reading.timestamp_ms);
        let value = reading.value;
        let unit = format::unit_suffix(if reading.unit.is_empty() {
            &settings.unit
        } else {
            reading.unit
        });
        let mut alerts = Vec::new();

        let low = settings.low;
        let transition = self.below_low.update(now, value < low);
        alerts.extend(alert(reading, transition, BELOW_LOW, BELOW_LOW_RESOLVED, || {
            if transition.raises() {
                format!("Value {value}{unit} is below the low limit {low}{unit}.")
            } else {
                format!("Value {value}{unit} is back at or above the low limit {low}{unit}.")
            }
        }));

        let high = settings.high;
        let transition = self.above_high.update(now, value > high);
        alerts.extend(alert(reading, transition, ABOVE_HIGH, ABOVE_HIGH_RESOLVED, || {
            if transition.raises() {
                format!("Value {value}{unit} is above the high limit {high}{unit}.")
            } else {
                format!("Value {value}{unit} is back at or below the high limit {high}{unit}.")
            }
        }));

        if let Some(slope) = slope {
            let limit = settings.rate_limit;
            let transition = self.rate.update(now, slope.abs() >= limit);
            let rate = format::rate(slope);
            let raised = alert(reading, transition, RATE_OF_CHANGE, RATE_OF_CHANGE_RESOLVED, || {
                if transition.raises() {
                    format!(
                        "Value {value}{unit} is changing at {rate}{unit} per minute; \
                         the limit is {limit}{unit} per minute."
                    )
                } else {
                    format!(
                        "Value {value}{unit} is changing at {rate}{unit} per minute, \
                         within the limit of {limit}{unit} per minute."
                    )
                }
            });
            alerts.extend(raised);
        }

        // A stable sort: all clears (Info) first, the rest keep their order.
        alerts.sort_by_key(|alert| alert.severity != Severity::Info);
        for alert in alerts {
            out.alert(alert);
        }
    }
}

/// The alert a transition calls for: the condition's code as a Warning on
/// raise and repeat, the resolved code as Info on resolve, none when quiet.
fn alert(
    reading: &Reading,
    transition: Transition,
    code: &str,
    resolved_code: &str,
    message: impl FnOnce() -> String,
) -> Option<Alert> {
    let (severity, code) = match transition {
        Transition::Raise | Transition::Repeat => (Severity::Warning, code),
        Transition::Resolve => (Severity::Info, resolved_code),
        Transition::Quiet => return None,
    };
    Some(Alert::new(reading, severity, code, &message()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suppressor_clock_keeps_differences_representable() {
        assert_eq!(suppressor_clock(42), 42);
        let (lo, hi) = (suppressor_clock(i64::MIN), suppressor_clock(i64::MAX));
        assert!(hi.checked_sub(lo).is_some());
    }
}
