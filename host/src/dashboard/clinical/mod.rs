//! The page of one sensor: the clinical views people expect from a CGM
//! report, built from what the device's plugins sent upstream (their hourly
//! and daily summaries, and their alerts).
//!
//! Files: `calendar` (UTC days and clock times), `chart` (what the SVG
//! charts share), `trend` (glucose over time), `days` (time in range per
//! day: bars and table), `agp` (the daily pattern: percentiles by hour of
//! day), `alerts` (the selected day's alerts). This file picks the glucose
//! windows out of a record and lays the page out.
//!
//! Every value comes from a device: strings are escaped by maud (never
//! `PreEscaped`), numbers that are not finite are skipped or shown as `–`,
//! and no input makes a view panic.

use std::collections::{BTreeMap, BTreeSet};

use maud::{Markup, html};

use super::html::{Nav, page};

mod agp;
mod alerts;
mod calendar;
mod chart;
mod days;
#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;
mod trend;

use calendar::{day_label, day_of, is_named};

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

impl Window {
    /// The metric `name`, NaN when absent (so that it fails every check
    /// for a finite number).
    fn metric(&self, name: &str) -> f64 {
        self.metrics.get(name).copied().unwrap_or(f64::NAN)
    }
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
    /// Its arrival number at the dashboard: when a sensor has too many, the
    /// first arrived goes.
    pub arrival: u64,
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

/// An hourly glucose summary, as the charts use it.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Hour {
    start_ms: i64,
    end_ms: i64,
    mean: f64,
    /// The lowest and highest reading (the mean when not reported).
    low: f64,
    high: f64,
}

/// A daily glucose summary, as the day views use it.
#[derive(Debug, Clone)]
struct Day<'a> {
    day: i64,
    label: String,
    window: &'a Window,
}

impl Day<'_> {
    fn metric(&self, name: &str) -> f64 {
        self.window.metric(name)
    }
}

/// The glucose windows of a record: those of the glucose plugins only
/// (`plugins`; another plugin's summaries of the sensor are not its glucose,
/// whatever their metrics), hourly windows with a finite `mean`, daily
/// windows with a finite `tir_70_180`. Both are sorted by start, keep one
/// window of each start (hour) or day, the first listed plugin's, and skip
/// empty windows (end not after start) and windows outside the named days.
struct Glucose<'a> {
    hours: Vec<Hour>,
    /// The hourly windows the hours are made of.
    hourly: Vec<&'a Window>,
    days: Vec<Day<'a>>,
}

impl<'a> Glucose<'a> {
    fn of(record: &'a SensorRecord, plugins: &[String]) -> Glucose<'a> {
        let rank = |window: &Window| plugins.iter().position(|plugin| *plugin == window.plugin);
        let usable = |window: &&Window, metric: &str| {
            rank(window).is_some()
                && window.end_ms > window.start_ms
                && window.metric(metric).is_finite()
                && is_named(day_of(window.start_ms))
        };
        let mut hourly: Vec<&Window> = record.hourly.iter().filter(|w| usable(w, "mean")).collect();
        hourly.sort_by_key(|window| (window.start_ms, rank(window)));
        hourly.dedup_by_key(|window| window.start_ms);
        let hours = hourly
            .iter()
            .map(|window| {
                let mean = window.metric("mean");
                let or_mean = |value: f64| if value.is_finite() { value } else { mean };
                let (min, max) = (or_mean(window.metric("min")), or_mean(window.metric("max")));
                Hour {
                    start_ms: window.start_ms,
                    end_ms: window.end_ms,
                    mean,
                    low: min.min(max).min(mean),
                    high: min.max(max).max(mean),
                }
            })
            .collect();
        let mut daily: Vec<&Window> = record.daily.iter().filter(|w| usable(w, "tir_70_180")).collect();
        daily.sort_by_key(|window| (window.start_ms, rank(window)));
        daily.dedup_by_key(|window| day_of(window.start_ms));
        let days = daily
            .into_iter()
            .filter_map(|window| {
                let day = day_of(window.start_ms);
                Some(Day {
                    day,
                    label: day_label(day)?,
                    window,
                })
            })
            .collect();
        Glucose { hours, hourly, days }
    }

    /// The days with any glucose summary, ascending.
    fn days_with_data(&self) -> BTreeSet<i64> {
        let hours = self.hours.iter().map(|hour| day_of(hour.start_ms));
        hours.chain(self.days.iter().map(|day| day.day)).collect()
    }

    /// The mean of `metric` over the daily summaries (the hourly ones while
    /// no day has closed) weighted by their `n`; `None` without a summary
    /// with a positive `n` and a finite value.
    fn weighted_mean(&self, metric: &str) -> Option<f64> {
        let windows: Vec<&Window> = if self.days.is_empty() {
            self.hourly.clone()
        } else {
            self.days.iter().map(|day| day.window).collect()
        };
        let (mut sum, mut weight) = (0.0, 0.0);
        for window in windows {
            let (value, n) = (window.metric(metric), window.metric("n"));
            if value.is_finite() && n.is_finite() && n > 0.0 {
                sum += value * n;
                weight += n;
            }
        }
        let mean = sum / weight;
        (weight > 0.0 && mean.is_finite()).then_some(mean)
    }
}

/// `value` with `decimals` decimals, `–` when it is not a finite number.
fn number(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "–".to_owned()
    }
}

/// The page of `record`; `day` (`YYYY-MM-DD`, UTC) picks the day whose
/// alerts are listed (default: the last day with data).
pub fn sensor_page(record: &SensorRecord, day: Option<&str>, glucose_plugins: &[String]) -> Markup {
    let glucose = Glucose::of(record, glucose_plugins);
    let title = format!("{} on {}", record.sensor, record.device);
    let selection = alerts::select(record, &glucose.days_with_data(), day);
    let body = html! {
        h1 { (record.sensor) span.muted { " on " (record.device) } }
        @if glucose.hours.is_empty() && glucose.days.is_empty() {
            div.card #no-data {
                "No data yet: no hourly or daily glucose summary of this sensor has arrived."
            }
        } @else {
            (summary(record, &glucose))
            h2 { "Glucose over time" }
            div.card { (trend::chart(&glucose.hours)) }
            h2 { "Time in range per day" }
            div.card { (days::chart(&glucose.days)) (days::table(&glucose.days, selection.day)) }
            h2 { "Daily pattern" }
            div.card { (agp::chart(&glucose.hours)) }
        }
        (alerts::section(record, &selection))
    };
    page(&title, Nav::Sensor, body)
}

/// The header: period, days, overall time in range, GMI, mean.
fn summary(record: &SensorRecord, glucose: &Glucose) -> Markup {
    let days = glucose.days_with_data();
    let period = match (days.first(), days.last()) {
        (Some(&first), Some(&last)) => format!(
            "{} – {}",
            day_label(first).unwrap_or_default(),
            day_label(last).unwrap_or_default()
        ),
        _ => String::new(),
    };
    let tir = glucose.weighted_mean("tir_70_180");
    let stat = |label: &str, value: String, unit: &str| {
        html! { div.stat { span.label { (label) } span.value { (value) small { (unit) } } } }
    };
    html! {
        div.card.summary #summary data-days=(days.len())
            data-tir=[tir.map(|tir| tir.to_string())] {
            (stat("Device", record.device.clone(), ""))
            (stat("Period (UTC)", period, ""))
            (stat("Days", days.len().to_string(), ""))
            (stat("Time in range 70–180", number(tir.unwrap_or(f64::NAN), 1), " %"))
            (stat("GMI", number(glucose.weighted_mean("gmi").unwrap_or(f64::NAN), 1), " %"))
            (stat("Mean glucose", number(glucose.weighted_mean("mean").unwrap_or(f64::NAN), 0), " mg/dL"))
        }
    }
}
