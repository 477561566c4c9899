//! The plugin's configuration: read, defaulted and validated once at `init`.

use edgewise_sdk::Config;
use edgewise_sdk::time::{HOUR_MS, MINUTE_MS};

/// Default `low` limit (2.0: the bottom of the 2–8 °C cold chain).
pub(crate) const DEFAULT_LOW: f64 = 2.0;
/// Default `high` limit (8.0: the top of the 2–8 °C cold chain).
pub(crate) const DEFAULT_HIGH: f64 = 8.0;
/// Default `rate_limit`, in value units per minute.
pub(crate) const DEFAULT_RATE_LIMIT: f64 = 0.5;
/// Default `rate_window`: 10 minutes.
pub(crate) const DEFAULT_RATE_WINDOW_MS: i64 = 10 * MINUTE_MS;
/// Default `rate_min_readings`.
pub(crate) const DEFAULT_RATE_MIN_READINGS: u64 = 3;
/// Default `repeat`: 30 minutes.
pub(crate) const DEFAULT_REPEAT_MS: i64 = 30 * MINUTE_MS;
/// The longest `forget_after`, and its default: 7 days, the manifest's
/// `forgets_sensors_after_h` (168), after which the host frees a silent
/// sensor's place among `max_sensors`. The plugin may forget sooner, never
/// later: it would then hold more sensors than its memory was measured for.
pub(crate) const MAX_FORGET_AFTER_MS: i64 = 168 * HOUR_MS;
/// The shortest `forget_after`: a day, so that a probe read hourly or daily
/// keeps its alerts' state (a condition raised before a silence is resolved
/// after it), and its last hour is summarised long before it is forgotten.
pub(crate) const MIN_FORGET_AFTER_MS: i64 = 24 * HOUR_MS;

/// Validated settings of one plugin instance.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// A value strictly below this raises `below-low`.
    pub(crate) low: f64,
    /// A value strictly above this raises `above-high`.
    pub(crate) high: f64,
    /// An absolute slope at or above this (units per minute) raises `rate-of-change`.
    pub(crate) rate_limit: f64,
    /// How far back, from the newest reading, the slope looks (inclusive).
    pub(crate) rate_window_ms: i64,
    /// The fewest readings in the rate window for a slope to be judged (at least 2).
    pub(crate) rate_min_readings: usize,
    /// The shortest interval between two raises of a persisting condition.
    pub(crate) repeat_ms: i64,
    /// The expected unit; empty accepts any unit.
    pub(crate) unit: String,
    /// A sensor with no reading for this long is forgotten (its state
    /// dropped), so that probes replaced over the years never fill
    /// `max_sensors`.
    pub(crate) forget_after_ms: i64,
}

impl Settings {
    /// Read every key, refuse unknown keys, then check the values make sense
    /// together. Every error names the key(s) at fault.
    ///
    /// Unknown keys are refused before the cross-key checks, so that a typo
    /// (`hihg = 12`) is reported as such rather than as a consequence of the
    /// default it left in place.
    pub(crate) fn from_config(mut config: Config) -> Result<Settings, String> {
        let low = config.f64("low", DEFAULT_LOW)?;
        let high = config.f64("high", DEFAULT_HIGH)?;
        let rate_limit = config.f64("rate_limit", DEFAULT_RATE_LIMIT)?;
        let rate_window_ms = config.duration_ms("rate_window", DEFAULT_RATE_WINDOW_MS)?;
        let rate_min_readings = config.u64("rate_min_readings", DEFAULT_RATE_MIN_READINGS)?;
        let repeat_ms = config.duration_ms("repeat", DEFAULT_REPEAT_MS)?;
        let unit = config.string("unit", "");
        let forget_after_ms = config.duration_ms("forget_after", MAX_FORGET_AFTER_MS)?;
        config.finish()?;

        if low >= high {
            return Err(format!(
                "config keys `low` and `high`: `low` ({low}) must be below `high` ({high})"
            ));
        }
        if rate_limit <= 0.0 {
            return Err(format!(
                "config key `rate_limit`: `{rate_limit}` must be greater than 0"
            ));
        }
        if rate_min_readings < 2 {
            return Err(format!(
                "config key `rate_min_readings`: `{rate_min_readings}` must be at least 2 \
                 (a slope needs two readings)"
            ));
        }
        if rate_min_readings > crate::rate::RATE_WINDOW_SLOTS as u64 {
            return Err(format!(
                "config key `rate_min_readings`: `{rate_min_readings}` must be at most {} (the rate window \
                 keeps the newest reading of each of {} slots)",
                crate::rate::RATE_WINDOW_SLOTS,
                crate::rate::RATE_WINDOW_SLOTS
            ));
        }
        if !(MIN_FORGET_AFTER_MS..=MAX_FORGET_AFTER_MS).contains(&forget_after_ms) {
            return Err(
                "config key `forget_after`: must be from 24h to 168h (the manifest's `forgets_sensors_after_h`)"
                    .to_owned(),
            );
        }
        Ok(Settings {
            low,
            high,
            rate_limit,
            rate_window_ms,
            // At most RATE_WINDOW_SLOTS (checked above).
            rate_min_readings: usize::try_from(rate_min_readings).unwrap_or(usize::MAX),
            repeat_ms,
            unit,
            forget_after_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration a device gives the signed bundle when the operator
    /// sets nothing: `edgewise.toml`'s `[config]`. It must start the plugin
    /// with the same settings as none, and no key may have a default both
    /// there and in the code (docs/manifest.md, "Config defaults: one place").
    #[test]
    fn the_manifest_config_gives_each_default_in_one_place() {
        let manifest = Config::from_manifest(include_str!("../edgewise.toml")).unwrap();
        assert_eq!(
            Settings::from_config(manifest),
            Settings::from_config(Config::default())
        );
    }

    #[test]
    fn defaults() {
        let settings = Settings::from_config(Config::default()).unwrap();
        assert_eq!(
            settings,
            Settings {
                low: 2.0,
                high: 8.0,
                rate_limit: 0.5,
                rate_window_ms: 600_000,
                rate_min_readings: 3,
                repeat_ms: 1_800_000,
                unit: String::new(),
                forget_after_ms: 604_800_000,
            }
        );
    }

    #[test]
    fn every_key_is_read() {
        let config = Config::from_pairs(&[
            ("low", "-20"),
            ("high", "-15.5"),
            ("rate_limit", "0.25"),
            ("rate_window", "15m"),
            ("rate_min_readings", "5"),
            ("repeat", "1h"),
            ("unit", " degC "),
            ("forget_after", "36h"),
        ]);
        let settings = Settings::from_config(config).unwrap();
        assert_eq!(settings.low, -20.0);
        assert_eq!(settings.high, -15.5);
        assert_eq!(settings.rate_limit, 0.25);
        assert_eq!(settings.rate_window_ms, 900_000);
        assert_eq!(settings.rate_min_readings, 5);
        assert_eq!(settings.repeat_ms, 3_600_000);
        assert_eq!(settings.unit, "degC");
        assert_eq!(settings.forget_after_ms, 36 * 3_600_000);
    }

    #[test]
    fn more_readings_than_the_rate_window_keeps_are_refused() {
        assert!(Settings::from_config(Config::from_pairs(&[("rate_min_readings", "120")])).is_ok());
        let err = Settings::from_config(Config::from_pairs(&[("rate_min_readings", "121")])).unwrap_err();
        assert!(err.contains("`rate_min_readings`: `121` must be at most 120"), "{err}");
    }

    #[test]
    fn forget_after_is_from_a_day_to_the_manifests_week() {
        for (value, ok) in [
            ("23h", false),
            ("24h", true),
            ("168h", true),
            ("169h", false),
            ("0s", false),
        ] {
            let result = Settings::from_config(Config::from_pairs(&[("forget_after", value)]));
            assert_eq!(result.is_ok(), ok, "{value}: {result:?}");
        }
        let err = Settings::from_config(Config::from_pairs(&[("forget_after", "720h")])).unwrap_err();
        assert!(err.contains("`forget_after`: must be from 24h to 168h"), "{err}");
    }

    #[test]
    fn a_typo_is_reported_before_cross_key_checks() {
        let config = Config::from_pairs(&[("low", "9"), ("hihg", "12")]);
        assert_eq!(
            Settings::from_config(config),
            Err("unknown config key(s): hihg".to_string())
        );
    }
}
