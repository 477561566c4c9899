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
    pub fn new(reading: &Reading<'_>, severity: Severity, code: &str, message: &str) -> Alert {
        Alert {
            sensor: reading.sensor.to_owned(),
            timestamp_ms: reading.timestamp_ms,
            severity,
            code: code.to_owned(),
            message: message.to_owned(),
            value: Some(reading.value),
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
    pub fn new(sensor: &str, window_start_ms: i64, window_end_ms: i64) -> Summary {
        Summary {
            sensor: sensor.to_owned(),
            window_start_ms,
            window_end_ms,
            metrics: Vec::new(),
        }
    }

    /// Add a figure (builder style).
    pub fn metric(mut self, name: &str, value: f64) -> Summary {
        self.metrics.push(Metric {
            name: name.to_owned(),
            value,
        });
        self
    }

    /// The value of the figure called `name`, if present.
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
