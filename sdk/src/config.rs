//! Typed access to a plugin's string-to-string configuration.

use std::collections::{BTreeMap, BTreeSet};

/// A plugin's configuration: the manifest's `[config]` overlaid with the
/// operator's values, as `key = value` strings.
///
/// **Each key has its default in one place** (`docs/manifest.md`, "Config
/// defaults: one place"): either in the manifest's `[config]`, read with a
/// `declared_` getter that takes no default ([`Config::declared_f64`]...), or
/// in the code, read with a getter that names the default ([`Config::f64`]...)
/// and left out of `[config]`. A value that does not parse is an error naming
/// the key. [`Config::finish`] then refuses keys the plugin never read, so a
/// typo in a key is not silently ignored, and, in a native test built with
/// [`Config::from_manifest`], a key with a default in both places.
///
/// ```
/// use edgewise_sdk::Config;
///
/// // What the host hands over: the manifest's `limit = 8.0`, the operator's `repeat`.
/// let mut config = Config::from_pairs(&[("limit", "8"), ("repeat", "15m")]);
/// let limit = config.declared_f64("limit")?;          // its default is in the manifest
/// let repeat_ms = config.duration_ms("repeat", 30 * 60_000)?; // its default is here
/// let unit = config.string("unit", "degC");
/// config.finish()?;
/// assert_eq!((limit, repeat_ms, unit.as_str()), (8.0, 15 * 60_000, "degC"));
/// # Ok::<(), String>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Config {
    values: BTreeMap<String, String>,
    read: Vec<String>,
    /// The keys the manifest's `[config]` gives a default: known only to a
    /// configuration built by [`Config::from_manifest`] (the host hands a
    /// component one flat list).
    declared: BTreeSet<String>,
    /// The keys read with a default in the code.
    defaulted: Vec<String>,
}

impl Config {
    /// A configuration from `(key, value)` pairs; a later pair overrides an earlier one.
    ///
    /// ```
    /// let mut config = edgewise_sdk::Config::new([("low".to_owned(), "70".to_owned())]);
    /// assert_eq!(config.f64("low", 54.0), Ok(70.0));
    /// ```
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Config {
        Config {
            values: pairs.into_iter().collect(),
            ..Config::default()
        }
    }

    /// A configuration from string pairs, for tests: `Config::from_pairs(&[("low", "70")])`.
    ///
    /// ```
    /// let mut config = edgewise_sdk::Config::from_pairs(&[("low", "70")]);
    /// assert_eq!(config.f64("low", 54.0), Ok(70.0));
    /// ```
    pub fn from_pairs(pairs: &[(&str, &str)]) -> Config {
        Config::new(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    /// The configuration the host gives a plugin signed with this
    /// `edgewise.toml` when the operator sets nothing: its `[config]`, each
    /// value as the host writes it (a string as it is, a number or boolean as
    /// text, a float in its shortest form: `8.0` is `"8"`). For native tests,
    /// so that they see the defaults a device sees; add the operator's values
    /// with [`Config::with`]. A key of `[config]` that the plugin reads with a
    /// default of its own is then refused by [`Config::finish`].
    ///
    /// ```
    /// let manifest = "name = \"too-warm\"\nversion = \"0.1.0\"\n\
    ///                 subscriptions = [\"sensors.fridge.>\"]\n[config]\nlimit = 8.0\n";
    /// // In a plugin crate: Config::from_manifest(include_str!("../edgewise.toml"))
    /// let mut config = edgewise_sdk::Config::from_manifest(manifest)?;
    /// assert_eq!(config.declared_f64("limit"), Ok(8.0));
    /// config.finish()?;
    /// # Ok::<(), String>(())
    /// ```
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_manifest(edgewise_toml: &str) -> Result<Config, String> {
        let manifest: toml::Table = edgewise_toml
            .parse()
            .map_err(|e| format!("edgewise.toml is not valid TOML: {e}"))?;
        let mut values = BTreeMap::new();
        if let Some(table) = manifest.get("config") {
            let table = table
                .as_table()
                .ok_or("edgewise.toml: `config` must be a table ([config])")?;
            for (key, value) in table {
                let text = match value {
                    toml::Value::String(s) => s.clone(),
                    toml::Value::Integer(i) => i.to_string(),
                    toml::Value::Float(f) => f.to_string(),
                    toml::Value::Boolean(b) => b.to_string(),
                    _ => {
                        return Err(format!(
                            "edgewise.toml: [config] `{key}`: values must be strings, numbers or booleans"
                        ));
                    }
                };
                values.insert(key.clone(), text);
            }
        }
        Ok(Config {
            declared: values.keys().cloned().collect(),
            values,
            ..Config::default()
        })
    }

    /// This configuration with `key` set to `value` (over the manifest's), as
    /// an operator sets it: for tests.
    ///
    /// ```
    /// let mut config = edgewise_sdk::Config::default().with("limit", "7.5");
    /// assert_eq!(config.declared_f64("limit"), Ok(7.5));
    /// ```
    pub fn with(mut self, key: &str, value: &str) -> Config {
        self.values.insert(key.to_owned(), value.to_owned());
        self
    }

    fn raw(&mut self, key: &str) -> Option<&str> {
        self.read.push(key.to_owned());
        self.values.get(key).map(|v| v.trim())
    }

    /// [`Config::raw`] for a getter with a default in the code.
    fn raw_defaulted(&mut self, key: &str) -> Option<&str> {
        self.defaulted.push(key.to_owned());
        self.raw(key)
    }

    /// [`Config::raw`] for a `declared_` getter: the key must be there.
    fn raw_declared(&mut self, key: &str) -> Result<&str, String> {
        self.raw(key).ok_or_else(|| {
            format!(
                "config key `{key}` is missing: the plugin reads it without a default of its own, \
                 so its default belongs in the manifest's [config] (edgewise.toml)"
            )
        })
    }

    /// The string value of `key`, or `default`.
    ///
    /// ```
    /// let mut config = edgewise_sdk::Config::default();
    /// assert_eq!(config.string("unit", "degC"), "degC");
    /// ```
    pub fn string(&mut self, key: &str, default: &str) -> String {
        self.raw_defaulted(key).unwrap_or(default).to_owned()
    }

    /// A finite number; e.g. `70` or `2.5`.
    ///
    /// ```
    /// let mut config = edgewise_sdk::Config::from_pairs(&[("low", "NaN")]);
    /// assert_eq!(config.f64("high", 250.0), Ok(250.0));
    /// assert!(config.f64("low", 70.0).is_err());
    /// ```
    pub fn f64(&mut self, key: &str, default: f64) -> Result<f64, String> {
        self.raw_defaulted(key).map_or(Ok(default), |text| parse_f64(key, text))
    }

    /// A whole number.
    ///
    /// ```
    /// let mut config = edgewise_sdk::Config::from_pairs(&[("min_readings", "4")]);
    /// assert_eq!(config.u64("min_readings", 3), Ok(4));
    /// ```
    pub fn u64(&mut self, key: &str, default: u64) -> Result<u64, String> {
        self.raw_defaulted(key).map_or(Ok(default), |text| parse_u64(key, text))
    }

    /// A positive duration in milliseconds, written with a unit: `500ms`,
    /// `90s`, `30m`, `1h` (the default is given in milliseconds).
    ///
    /// ```
    /// let mut config = edgewise_sdk::Config::from_pairs(&[("repeat", "15m")]);
    /// assert_eq!(config.duration_ms("repeat", 30 * 60_000), Ok(15 * 60_000));
    /// ```
    pub fn duration_ms(&mut self, key: &str, default_ms: i64) -> Result<i64, String> {
        self.raw_defaulted(key)
            .map_or(Ok(default_ms), |text| parse_duration(key, text))
    }

    /// The string value of `key`, whose default is in the manifest's
    /// `[config]`: an error naming the key if the configuration lacks it.
    ///
    /// ```
    /// let mut config = edgewise_sdk::Config::from_pairs(&[("unit", "degC")]);
    /// assert_eq!(config.declared_string("unit"), Ok("degC".to_owned()));
    /// assert!(config.declared_string("mode").unwrap_err().contains("`mode` is missing"));
    /// ```
    pub fn declared_string(&mut self, key: &str) -> Result<String, String> {
        self.raw_declared(key).map(str::to_owned)
    }

    /// [`Config::f64`] for a key whose default is in the manifest's `[config]`.
    ///
    /// ```
    /// let mut config = edgewise_sdk::Config::from_pairs(&[("limit", "8")]);
    /// assert_eq!(config.declared_f64("limit"), Ok(8.0));
    /// ```
    pub fn declared_f64(&mut self, key: &str) -> Result<f64, String> {
        let text = self.raw_declared(key)?;
        parse_f64(key, text)
    }

    /// [`Config::u64`] for a key whose default is in the manifest's `[config]`.
    ///
    /// ```
    /// let mut config = edgewise_sdk::Config::from_pairs(&[("min_readings", "3")]);
    /// assert_eq!(config.declared_u64("min_readings"), Ok(3));
    /// ```
    pub fn declared_u64(&mut self, key: &str) -> Result<u64, String> {
        let text = self.raw_declared(key)?;
        parse_u64(key, text)
    }

    /// [`Config::duration_ms`] for a key whose default is in the manifest's `[config]`.
    ///
    /// ```
    /// let mut config = edgewise_sdk::Config::from_pairs(&[("repeat", "30m")]);
    /// assert_eq!(config.declared_duration_ms("repeat"), Ok(30 * 60_000));
    /// ```
    pub fn declared_duration_ms(&mut self, key: &str) -> Result<i64, String> {
        let text = self.raw_declared(key)?;
        parse_duration(key, text)
    }

    /// Refuse every key that no getter has read: returns an error listing
    /// them. Before that, in a configuration built by
    /// [`Config::from_manifest`], refuse every key of the manifest's
    /// `[config]` that a getter read with a default of the code's.
    ///
    /// ```
    /// let mut config = edgewise_sdk::Config::from_pairs(&[("low", "70"), ("hihg", "250")]);
    /// let _ = config.f64("low", 70.0);
    /// let _ = config.f64("high", 250.0);
    /// assert_eq!(config.finish(), Err("unknown config key(s): hihg".to_owned()));
    /// ```
    pub fn finish(self) -> Result<(), String> {
        let twice: BTreeSet<&str> = self
            .defaulted
            .iter()
            .filter(|key| self.declared.contains(*key))
            .map(String::as_str)
            .collect();
        if !twice.is_empty() {
            return Err(format!(
                "config key(s) with a default both in the manifest's [config] and in the code: {} \
                 (keep one: drop the key from [config], or read it with a `declared_` getter)",
                twice.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
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

fn parse_f64(key: &str, text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(format!("config key `{key}`: `{text}` is not a finite number")),
    }
}

fn parse_u64(key: &str, text: &str) -> Result<u64, String> {
    text.parse::<u64>()
        .map_err(|_| format!("config key `{key}`: `{text}` is not a whole number"))
}

fn parse_duration(key: &str, text: &str) -> Result<i64, String> {
    parse_duration_ms(text)
        .ok_or_else(|| format!("config key `{key}`: `{text}` is not a duration such as `90s`, `30m` or `1h`"))
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

    const MANIFEST: &str = r#"
name = "too-warm"
version = "0.1.0"
subscriptions = ["sensors.fridge.>"]
[config]
limit = 8.0
repeat = "30m"
strict = true
"#;

    #[test]
    fn from_manifest_gives_the_manifest_defaults_as_the_host_does() {
        let mut config = Config::from_manifest(MANIFEST).unwrap();
        // As the host writes them: a float in its shortest form, a boolean as text.
        assert_eq!(config.declared_string("limit"), Ok("8".to_owned()));
        assert_eq!(config.declared_string("strict"), Ok("true".to_owned()));
        assert_eq!(config.declared_duration_ms("repeat"), Ok(30 * 60_000));
        assert_eq!(config.finish(), Ok(()));
        // The operator's value over the manifest's.
        let mut config = Config::from_manifest(MANIFEST).unwrap().with("limit", "7.5");
        assert_eq!(config.declared_f64("limit"), Ok(7.5));
        let error = Config::from_manifest("[config]\nlist = [1, 2]\n").unwrap_err();
        assert!(error.contains("`list`"), "{error}");
        assert!(Config::from_manifest("name = ").is_err());
    }

    #[test]
    fn a_declared_key_missing_from_the_configuration_is_an_error_naming_it() {
        let mut config = Config::from_pairs(&[("limit", "8")]);
        assert_eq!(config.declared_f64("limit"), Ok(8.0));
        let error = config.declared_duration_ms("repeat").unwrap_err();
        assert!(error.contains("`repeat`") && error.contains("[config]"), "{error}");
        assert!(config.declared_u64("count").unwrap_err().contains("`count`"));
    }

    #[test]
    fn a_default_in_the_manifest_and_in_the_code_is_refused() {
        // Accepted: `limit` and `repeat` have their default in the manifest
        // only, `hysteresis` in the code only.
        let mut config = Config::from_manifest(MANIFEST).unwrap();
        let _ = config.declared_f64("limit");
        let _ = config.declared_duration_ms("repeat");
        let _ = config.string("strict", "true");
        let _ = config.f64("hysteresis", 0.5);
        assert_eq!(
            config.finish(),
            Err(
                "config key(s) with a default both in the manifest's [config] and in the code: strict \
                 (keep one: drop the key from [config], or read it with a `declared_` getter)"
                    .to_owned()
            )
        );
        // The same code without `strict` in the manifest is accepted.
        let mut config = Config::from_manifest(&MANIFEST.replace("strict = true", "")).unwrap();
        let _ = config.declared_f64("limit");
        let _ = config.declared_duration_ms("repeat");
        let _ = config.string("strict", "true");
        let _ = config.f64("hysteresis", 0.5);
        assert_eq!(config.finish(), Ok(()));
    }
}
