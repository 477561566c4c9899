//! Settings: every threshold and duration of the plugin, read from the host configuration.

use edgewise_sdk::Config;
use edgewise_sdk::time::{DAY_MS, MINUTE_MS};

/// The longest accepted duration setting. Bounding durations (and timestamps,
/// see [`crate::sensor::MAX_ABS_TIMESTAMP_MS`]) keeps every timestamp sum and
/// difference far from `i64` overflow.
pub const MAX_DURATION_MS: i64 = 366 * DAY_MS;

/// The plugin settings, with the defaults of the README table.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Values below this are sensor errors (mg/dL).
    pub invalid_below: f64,
    /// Values above this are sensor errors (mg/dL).
    pub invalid_above: f64,
    /// `urgent-low` while the value is below this.
    pub urgent_low: f64,
    /// `low` while the value is below this.
    pub low: f64,
    /// `high` while the value is above this.
    pub high: f64,
    /// `urgent-low-soon` when the trend predicts a value below this.
    pub urgent_low_soon: f64,
    /// How far ahead of the newest reading `urgent-low-soon` looks.
    pub urgent_low_soon_horizon_ms: i64,
    /// Readings this recent (relative to the newest) feed the `urgent-low-soon` fit.
    pub trend_window_ms: i64,
    /// The `urgent-low-soon` fit needs readings spanning at least this long.
    pub trend_min_span_ms: i64,
    /// The `urgent-low-soon` fit needs at least this many readings.
    pub trend_min_readings: usize,
    /// `rising-fast` / `falling-fast` at this slope (mg/dL/min) or steeper.
    pub rate_limit: f64,
    /// Readings this recent feed the rate-of-change fit.
    pub rate_window_ms: i64,
    /// The rate-of-change fit needs at least this many readings.
    pub rate_min_readings: usize,
    /// A persisting alert is repeated at most this often.
    pub repeat_ms: i64,
    /// `signal-loss` after this long without a valid reading.
    pub signal_loss_ms: i64,
    /// A run must last this long to start (or end) an episode.
    pub episode_duration_ms: i64,
    /// A gap longer than this between valid readings ends episodes and runs.
    pub episode_gap_ms: i64,
    /// Level 1 hypoglycaemia below this (also the bottom of `tir_70_180`).
    pub hypo_l1: f64,
    /// Level 2 hypoglycaemia below this (also the top of `tbr_below_54`).
    pub hypo_l2: f64,
    /// Level 1 hyperglycaemia above this (also the top of `tir_70_180`).
    pub hyper_l1: f64,
    /// Level 2 hyperglycaemia above this (also the bottom of `tar_above_250`).
    pub hyper_l2: f64,
    /// The sensor interval assumed until `interval_min_spacings` spacings are known.
    pub default_interval_ms: i64,
    /// Spacings needed before their median replaces `default_interval`.
    pub interval_min_spacings: u64,
    /// A reading further than this (or one tick step, if longer) ahead of the
    /// latest tick is ignored: one outlier timestamp must not make every real
    /// reading after it "late".
    pub max_ahead_ms: i64,
    /// A sensor silent this long (no reading, valid or not, with a later
    /// timestamp) is forgotten: its state dropped, so that sensors that come
    /// and go (patients discharged, CGMs replaced) never fill the plugin's
    /// memory. The manifest's `forgets_sensors_after_h` promises the host no
    /// more than this.
    pub forget_after_ms: i64,
}

/// The shortest `forget_after`: two days, so that a silent sensor's daily
/// window has closed and been emitted long before it is forgotten.
pub const MIN_FORGET_AFTER_MS: i64 = 2 * 24 * 60 * MINUTE_MS;

impl Settings {
    /// Read every key (defaults for the missing ones) and refuse unknown keys.
    pub fn from_config(mut config: Config) -> Result<Settings, String> {
        let c = &mut config;
        let settings = Settings {
            invalid_below: c.f64("invalid_below", 39.0)?,
            invalid_above: c.f64("invalid_above", 401.0)?,
            urgent_low: c.f64("urgent_low", 54.0)?,
            low: c.f64("low", 70.0)?,
            high: c.f64("high", 250.0)?,
            urgent_low_soon: c.f64("urgent_low_soon", 55.0)?,
            urgent_low_soon_horizon_ms: duration(c, "urgent_low_soon_horizon", 20)?,
            trend_window_ms: duration(c, "trend_window", 20)?,
            trend_min_span_ms: duration(c, "trend_min_span", 10)?,
            trend_min_readings: min_readings(c, "trend_min_readings", 3)?,
            rate_limit: positive(c, "rate_limit", 3.0)?,
            rate_window_ms: duration(c, "rate_window", 15)?,
            rate_min_readings: min_readings(c, "rate_min_readings", 3)?,
            repeat_ms: duration(c, "repeat", 30)?,
            signal_loss_ms: duration(c, "signal_loss", 20)?,
            episode_duration_ms: duration(c, "episode_duration", 15)?,
            episode_gap_ms: duration(c, "episode_gap", 45)?,
            hypo_l1: c.f64("hypo_l1", 70.0)?,
            hypo_l2: c.f64("hypo_l2", 54.0)?,
            hyper_l1: c.f64("hyper_l1", 180.0)?,
            hyper_l2: c.f64("hyper_l2", 250.0)?,
            default_interval_ms: duration(c, "default_interval", 5)?,
            interval_min_spacings: c.u64("interval_min_spacings", 12)?,
            max_ahead_ms: max_ahead(c)?,
            forget_after_ms: forget_after(c)?,
        };
        config.finish()?;
        Ok(settings)
    }

    /// Whether `value` is a usable glucose value (finite and within the valid range).
    pub fn is_valid(&self, value: f64) -> bool {
        value.is_finite() && value >= self.invalid_below && value <= self.invalid_above
    }
}

/// A duration key with a default in minutes, at most [`MAX_DURATION_MS`].
fn duration(config: &mut Config, key: &str, default_minutes: i64) -> Result<i64, String> {
    let ms = config.duration_ms(key, default_minutes * MINUTE_MS)?;
    if ms > MAX_DURATION_MS {
        return Err(format!("config key `{key}`: durations are limited to 366 days"));
    }
    Ok(ms)
}

/// `max_ahead`: positive, and (unlike the other durations) up to the whole
/// timestamp range, so that a load test whose synthetic readings run years
/// ahead of the clock can turn the rule off. It is only ever added with
/// saturation.
fn max_ahead(config: &mut Config) -> Result<i64, String> {
    let ms = config.duration_ms("max_ahead", 60 * MINUTE_MS)?;
    if ms <= 0 || ms > crate::sensor::MAX_ABS_TIMESTAMP_MS {
        return Err(format!(
            "config key `max_ahead`: must be above 0 and at most {} hours",
            crate::sensor::MAX_ABS_TIMESTAMP_MS / (60 * MINUTE_MS)
        ));
    }
    Ok(ms)
}

/// The longest `forget_after`, and its default: 7 days, what the manifest's
/// `forgets_sensors_after_h` (168) promises the host. Longer, the host would
/// free a silent sensor's place while the plugin still kept its state.
pub const MAX_FORGET_AFTER_MS: i64 = 7 * 24 * 60 * MINUTE_MS;

/// `forget_after`: from [`MIN_FORGET_AFTER_MS`] to [`MAX_FORGET_AFTER_MS`],
/// the default.
fn forget_after(config: &mut Config) -> Result<i64, String> {
    let ms = config.duration_ms("forget_after", MAX_FORGET_AFTER_MS)?;
    if !(MIN_FORGET_AFTER_MS..=MAX_FORGET_AFTER_MS).contains(&ms) {
        return Err(
            "config key `forget_after`: must be from 48h to 168h (the manifest's `forgets_sensors_after_h`)".to_owned(),
        );
    }
    Ok(ms)
}

/// A reading count of at least 2 (a line needs two points).
fn min_readings(config: &mut Config, key: &str, default: u64) -> Result<usize, String> {
    let count = config.u64(key, default)?;
    if count < 2 {
        return Err(format!(
            "config key `{key}`: `{count}` is too small, a trend needs at least 2 readings"
        ));
    }
    usize::try_from(count).map_err(|_| format!("config key `{key}`: `{count}` is too large"))
}

/// A number greater than zero.
fn positive(config: &mut Config, key: &str, default: f64) -> Result<f64, String> {
    let value = config.f64(key, default)?;
    if value <= 0.0 {
        return Err(format!("config key `{key}`: `{value}` must be greater than 0"));
    }
    Ok(value)
}
