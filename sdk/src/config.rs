//! Typed access to a plugin's string-to-string configuration.

use std::collections::BTreeMap;

/// A plugin's configuration: the manifest defaults overlaid with operator
/// overrides, as `key = value` strings.
///
/// Read each key with a typed getter that names the default; a value that does
/// not parse is an error naming the key. [`Config::finish`] then refuses keys
/// the plugin never read, so a typo in a key is not silently ignored.
#[derive(Debug, Clone, Default)]
pub struct Config {
    values: BTreeMap<String, String>,
    read: Vec<String>,
}

impl Config {
    /// A configuration from `(key, value)` pairs; a later pair overrides an earlier one.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Config {
        Config {
            values: pairs.into_iter().collect(),
            read: Vec::new(),
        }
    }

    /// A configuration from string pairs, for tests: `Config::from_pairs(&[("low", "70")])`.
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Config {
        Config::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn raw(&mut self, key: &str) -> Option<&str> {
        self.read.push(key.to_owned());
        self.values.get(key).map(|v| v.trim())
    }

    /// The string value of `key`, or `default`.
    pub fn string(&mut self, key: &str, default: &str) -> String {
        self.raw(key).unwrap_or(default).to_owned()
    }

    /// A finite number; e.g. `70` or `2.5`.
    pub fn f64(&mut self, key: &str, default: f64) -> Result<f64, String> {
        match self.raw(key) {
            None => Ok(default),
            Some(text) => match text.parse::<f64>() {
                Ok(value) if value.is_finite() => Ok(value),
                _ => Err(format!("config key `{key}`: `{text}` is not a finite number")),
            },
        }
    }

    /// A whole number.
    pub fn u64(&mut self, key: &str, default: u64) -> Result<u64, String> {
        match self.raw(key) {
            None => Ok(default),
            Some(text) => text
                .parse::<u64>()
                .map_err(|_| format!("config key `{key}`: `{text}` is not a whole number")),
        }
    }

    /// A positive duration in milliseconds, written with a unit: `500ms`,
    /// `90s`, `30m`, `1h` (the default is given in milliseconds).
    pub fn duration_ms(&mut self, key: &str, default_ms: i64) -> Result<i64, String> {
        match self.raw(key) {
            None => Ok(default_ms),
            Some(text) => parse_duration_ms(text)
                .ok_or_else(|| format!("config key `{key}`: `{text}` is not a duration such as `90s`, `30m` or `1h`")),
        }
    }

    /// Refuse every key that no getter has read: returns an error listing them.
    pub fn finish(self) -> Result<(), String> {
        let unknown: Vec<&str> = self
            .values
            .keys()
            .filter(|key| !self.read.iter().any(|read| read == *key))
            .map(String::as_str)
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!("unknown config key(s): {}", unknown.join(", ")))
        }
    }
}

/// Parse `500ms`, `90s`, `30m`, `1h` into milliseconds; `None` if malformed,
/// zero, negative or out of range.
fn parse_duration_ms(text: &str) -> Option<i64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().ok()?;
    let unit_ms = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(unit_ms).filter(|ms| *ms > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_getters_use_defaults_and_parse_values() {
        let mut config = Config::from_pairs(&[("low", "65.5"), ("repeat", "45m"), ("n", "3")]);
        assert_eq!(config.f64("low", 70.0), Ok(65.5));
        assert_eq!(config.f64("high", 250.0), Ok(250.0));
        assert_eq!(config.duration_ms("repeat", 1), Ok(45 * 60_000));
        assert_eq!(config.u64("n", 1), Ok(3));
        assert_eq!(config.finish(), Ok(()));
    }

    #[test]
    fn bad_values_name_the_key() {
        let mut config = Config::from_pairs(&[("low", "seventy"), ("gap", "10 parsecs"), ("x", "NaN")]);
        assert_eq!(
            config.f64("low", 70.0),
            Err("config key `low`: `seventy` is not a finite number".to_string())
        );
        assert!(config.duration_ms("gap", 1).unwrap_err().contains("`gap`"));
        assert!(config.f64("x", 1.0).unwrap_err().contains("`x`"));
    }

    #[test]
    fn durations_accept_units_and_refuse_zero() {
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("90s"), Some(90_000));
        assert_eq!(parse_duration_ms("2h"), Some(7_200_000));
        assert_eq!(parse_duration_ms("0m"), None);
        assert_eq!(parse_duration_ms("m"), None);
        assert_eq!(parse_duration_ms("15"), None);
        assert_eq!(parse_duration_ms("99999999999999999h"), None);
    }

    #[test]
    fn finish_refuses_unknown_keys() {
        let mut config = Config::from_pairs(&[("low", "70"), ("hihg", "250")]);
        let _ = config.f64("low", 70.0);
        assert_eq!(config.finish(), Err("unknown config key(s): hihg".to_string()));
    }
}
