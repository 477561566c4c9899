//! The plugin-facing data types, mirroring `edgewise:plugin/types` in `wit/v0.2/plugin.wit`.

/// One measurement from one sensor.
///
/// It borrows its sensor id and unit from the batch, which names each sensor
/// once (contract 0.2): handing a plugin a reading costs no allocation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading<'a> {
    /// Sensor identifier, unique on the device.
    pub sensor: &'a str,
    /// When the sensor took the measurement, in milliseconds since the Unix epoch (UTC).
    pub timestamp_ms: i64,
    /// The measured value in `unit`; always finite from the host (it refuses
    /// a NaN or infinite value before a plugin sees it).
    pub value: f64,
    /// Unit of `value`, empty when the source did not say.
    pub unit: &'a str,
}

impl<'a> Reading<'a> {
    /// A reading, for tests and examples.
    ///
    /// ```
    /// let reading = edgewise_sdk::Reading::new("fridge-1", 60_000, 9.5, "degC");
    /// assert_eq!((reading.sensor, reading.value), ("fridge-1", 9.5));
    /// ```
    pub fn new(sensor: &'a str, timestamp_ms: i64, value: f64, unit: &'a str) -> Reading<'a> {
        Reading {
            sensor,
            timestamp_ms,
            value,
            unit,
        }
    }
}

/// How urgently a person should look at an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// For the record, e.g. a condition has cleared.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

/// A condition a person should know about.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The sensor the alert is about.
    pub sensor: String,
    /// When the condition was met, in milliseconds since the Unix epoch (UTC).
    pub timestamp_ms: i64,
    /// How urgent it is.
    pub severity: Severity,
    /// Machine-readable code, e.g. `urgent-low`.
    pub code: String,
    /// A sentence for a person.
    pub message: String,
    /// The value that triggered the alert, when there is one.
    pub value: Option<f64>,
}

impl Alert {
    /// An alert about `reading`, carrying its sensor, timestamp and value.
    ///
    /// ```
    /// use edgewise_sdk::{Alert, Reading, Severity};
    ///
    /// let reading = Reading::new("fridge-1", 60_000, 9.5, "degC");
    /// let alert = Alert::new(&reading, Severity::Warning, "too-warm", "Above 8 degC");
    /// assert_eq!((alert.timestamp_ms, alert.value), (60_000, Some(9.5)));
    /// ```
    pub fn new(reading: &Reading<'_>, severity: Severity, code: &str, message: &str) -> Alert {
        Alert {
            value: Some(reading.value),
            ..Alert::at(reading.sensor, reading.timestamp_ms, severity, code, message)
        }
    }

    /// An alert about `sensor` at `timestamp_ms` with no reading behind it:
    /// for a condition found in [`Plugin::on_tick`](crate::Plugin::on_tick),
    /// such as a sensor gone silent. Its `value` is `None`; set it when there is one.
    ///
    /// ```
    /// use edgewise_sdk::{Alert, Severity};
    ///
    /// // In `on_tick(now_ms, out)`: the fridge has said nothing for 20 minutes.
    /// let now_ms = 1_200_000;
    /// let alert = Alert::at("fridge-1", now_ms, Severity::Warning, "silent", "No reading for 20 min");
    /// assert_eq!((alert.sensor.as_str(), alert.timestamp_ms, alert.value), ("fridge-1", now_ms, None));
    /// ```
    pub fn at(sensor: &str, timestamp_ms: i64, severity: Severity, code: &str, message: &str) -> Alert {
        Alert {
            sensor: sensor.to_owned(),
            timestamp_ms,
            severity,
            code: code.to_owned(),
            message: message.to_owned(),
            value: None,
        }
    }
}

/// One named figure of a summary.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Metric name, e.g. `mean`.
    pub name: String,
    /// Metric value.
    pub value: f64,
}

/// Figures for one sensor over the closed window `[window_start_ms, window_end_ms)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The sensor the figures describe.
    pub sensor: String,
    /// Start of the window (inclusive), ms since the Unix epoch.
    pub window_start_ms: i64,
    /// End of the window (exclusive), ms since the Unix epoch.
    pub window_end_ms: i64,
    /// The figures, in the order they were added.
    pub metrics: Vec<Metric>,
}

impl Summary {
    /// An empty summary for a window; add figures with [`Summary::metric`].
    ///
    /// ```
    /// use edgewise_sdk::Summary;
    ///
    /// let hour = Summary::new("fridge-1", 0, 3_600_000).metric("mean", 5.2).metric("max", 7.9);
    /// assert_eq!(hour.get("max"), Some(7.9));
    /// assert_eq!(hour.get("min"), None);
    /// ```
    pub fn new(sensor: &str, window_start_ms: i64, window_end_ms: i64) -> Summary {
        Summary {
            sensor: sensor.to_owned(),
            window_start_ms,
            window_end_ms,
            metrics: Vec::new(),
        }
    }

    /// Add a figure (builder style); see [`Summary::new`].
    pub fn metric(mut self, name: &str, value: f64) -> Summary {
        self.metrics.push(Metric {
            name: name.to_owned(),
            value,
        });
        self
    }

    /// The value of the figure called `name`, if present; see [`Summary::new`].
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.name == name).map(|m| m.value)
    }
}

/// Severity of a plugin log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the plugin handled.
    Warn,
    /// Something the plugin could not handle.
    Error,
}
