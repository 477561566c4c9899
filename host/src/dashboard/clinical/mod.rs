//! The page of one sensor: the clinical views people expect from a CGM
//! report, built from what the device's plugins sent upstream (their hourly
//! and daily summaries, and their alerts).

use std::collections::BTreeMap;

use maud::{Markup, html};

use super::html::{Nav, page};

/// A closed summary window of one sensor, as a plugin sent it upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// The plugin that made it.
    pub plugin: String,
    /// Start, ms since the epoch (inclusive).
    pub start_ms: i64,
    /// End, ms since the epoch (exclusive).
    pub end_ms: i64,
    /// Its metrics by name (glucose-monitor: `n`, `mean`, `sd`, `cv`, `min`,
    /// `max`, `tir_70_180`, `tbr_below_54`, `tbr_54_69`, `tar_181_250`,
    /// `tar_above_250`, `active_pct`, ...).
    pub metrics: BTreeMap<String, f64>,
}

/// An alert about one sensor, as a plugin sent it upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct SensorAlert {
    /// The plugin that raised it.
    pub plugin: String,
    /// When (the reading's or tick's time), ms since the epoch.
    pub ts: i64,
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// Machine-readable code (`urgent-low`, `predicted-low`, ...).
    pub code: String,
    /// Text for people.
    pub message: String,
    /// The value it is about, if any.
    pub value: Option<f64>,
}

/// Everything the dashboard holds about one sensor of one device.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SensorRecord {
    /// The device.
    pub device: String,
    /// The sensor id (as the plugin names it).
    pub sensor: String,
    /// Hourly windows (one hour long), ascending by start, at most one per
    /// (plugin, start).
    pub hourly: Vec<Window>,
    /// Daily windows (one UTC day long), ascending by start, at most one per
    /// (plugin, start).
    pub daily: Vec<Window>,
    /// Alerts, ascending by time.
    pub alerts: Vec<SensorAlert>,
}

/// The page of `record`; `day` (`YYYY-MM-DD`, UTC) picks the day whose
/// alerts are listed (default: the last day with data).
pub fn sensor_page(record: &SensorRecord, day: Option<&str>) -> Markup {
    let _ = day;
    page(
        &record.sensor,
        Nav::Sensor,
        html! { h1 { (record.sensor) " on " (record.device) } },
    )
}
