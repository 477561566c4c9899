//! Host-side data types that flow between the bus, the replay, the runtime and
//! the outbox. They mirror the WIT types, but belong to the host: only
//! `runtime` converts them to and from the generated bindings.

use serde::Serialize;

/// One measurement from one sensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Sensor identifier, unique on the device.
    pub sensor: String,
    /// Milliseconds since the Unix epoch (UTC).
    pub timestamp_ms: i64,
    /// The measured value.
    pub value: f64,
    /// Unit of `value`, empty when unknown.
    pub unit: String,
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For the record.
    Info,
    /// Needs attention soon.
    Warning,
    /// Needs attention now.
    Critical,
}

/// An alert raised by a plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The sensor it is about.
    pub sensor: String,
    /// When the condition was met (ms since the Unix epoch).
    pub timestamp_ms: i64,
    /// How urgent it is.
    pub severity: Severity,
    /// Machine-readable code.
    pub code: String,
    /// A sentence for a person.
    pub message: String,
    /// The value that triggered it.
    pub value: Option<f64>,
}

/// A summary of a closed window emitted by a plugin.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The sensor it describes.
    pub sensor: String,
    /// Window start (inclusive), ms since the Unix epoch.
    pub window_start_ms: i64,
    /// Window end (exclusive), ms since the Unix epoch.
    pub window_end_ms: i64,
    /// Named figures, in the plugin's order.
    pub metrics: Vec<(String, f64)>,
}

/// Something a plugin produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// An alert.
    Alert(Alert),
    /// A summary.
    Summary(Summary),
}
