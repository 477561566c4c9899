//! Settings: the thresholds and switches of the plugin, read from the host
//! configuration. The defaults live here and only here (the manifest's
//! `[config]` repeats none of them, issue #18).

use edgewise_sdk::Config;
use edgewise_sdk::time::{DAY_MS, MINUTE_MS};

/// The longest accepted `repeat`: as glucose-monitor, it keeps every
/// timestamp sum far from `i64` overflow.
const MAX_REPEAT_MS: i64 = 366 * DAY_MS;

/// The plugin settings, with the defaults of the README table.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Values below this are sensor errors (mg/dL).
    pub invalid_below: f64,
    /// Values above this are sensor errors (mg/dL).
    pub invalid_above: f64,
    /// `predicted-low` while the 30-minute forecast is below this (mg/dL).
    pub low: f64,
    /// `predicted-urgent-low` while the 30-minute forecast is below this (mg/dL).
    pub urgent_low: f64,
    /// A persisting alert is repeated at most this often.
    pub repeat_ms: i64,
    /// Emit one summary per forecast (for evaluation; off by default).
    pub emit_forecasts: bool,
    /// A sensor with no valid reading for this long is forgotten (its state
    /// dropped), as glucose-monitor forgets it: the manifest's
    /// `forgets_sensors_after_h` promises the host no more than this.
    pub forget_after_ms: i64,
}

impl Settings {
    /// Read every key (defaults for the missing ones) and refuse unknown keys.
    pub fn from_config(mut config: Config) -> Result<Settings, String> {
        let c = &mut config;
        let settings = Settings {
            invalid_below: c.f64("invalid_below", 39.0)?,
            invalid_above: c.f64("invalid_above", 401.0)?,
            low: c.f64("low", 70.0)?,
            urgent_low: c.f64("urgent_low", 55.0)?,
            repeat_ms: repeat(c)?,
            emit_forecasts: switch(c, "emit_forecasts", false)?,
            forget_after_ms: forget_after(c)?,
        };
        config.finish()?;
        Ok(settings)
    }

    /// Whether `value` is a usable glucose value (finite and within the
    /// valid range): glucose-monitor's rule.
    pub fn is_valid(&self, value: f64) -> bool {
        value.is_finite() && value >= self.invalid_below && value <= self.invalid_above
    }
}

/// `forget_after`: at least 48 hours (every hour of accuracy of a silent
/// sensor is emitted long before), at most and by default 168 hours (7 days):
/// what the manifest's `forgets_sensors_after_h` promises the host, which
/// frees a silent sensor's place then.
fn forget_after(config: &mut Config) -> Result<i64, String> {
    let ms = config.duration_ms("forget_after", 7 * DAY_MS)?;
    if !(2 * DAY_MS..=7 * DAY_MS).contains(&ms) {
        return Err(
            "config key `forget_after`: must be from 48h to 168h (the manifest's `forgets_sensors_after_h`)".to_owned(),
        );
    }
    Ok(ms)
}

/// `repeat`: 30 minutes by default, at most 366 days.
fn repeat(config: &mut Config) -> Result<i64, String> {
    let ms = config.duration_ms("repeat", 30 * MINUTE_MS)?;
    if ms > MAX_REPEAT_MS {
        return Err("config key `repeat`: durations are limited to 366 days".to_owned());
    }
    Ok(ms)
}

/// A switch: exactly `true` or `false` (a typo must not silently mean off).
fn switch(config: &mut Config, key: &str, default: bool) -> Result<bool, String> {
    match config.string(key, if default { "true" } else { "false" }).as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("config key `{key}`: `{other}` is not `true` or `false`")),
    }
}
