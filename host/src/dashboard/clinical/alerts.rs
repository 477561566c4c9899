//! The alerts of one day (`section#day-alerts`): which day is shown (the
//! `?day=YYYY-MM-DD` the page was asked for, else the last day with data),
//! its alerts newest first, and links to the other days with alerts.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use maud::{Markup, html};

use super::calendar::{clock, day_label, day_of, parse_day};
use super::{SensorAlert, SensorRecord, number};

/// The day whose alerts the page lists, and a note when it is not the one
/// asked for.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Selection {
    /// The day (index since the epoch); `None` when the sensor has no data
    /// and no alerts at all.
    pub day: Option<i64>,
    /// Why the day asked for is not shown.
    pub note: Option<String>,
}

/// The days with alerts (only named days) and how many each has.
fn alert_days(alerts: &[SensorAlert]) -> BTreeMap<i64, usize> {
    let mut days = BTreeMap::new();
    for alert in alerts {
        let day = day_of(alert.ts);
        if day_label(day).is_some() {
            *days.entry(day).or_insert(0) += 1;
        }
    }
    days
}

/// The day to show for `requested`: that day if it has data or alerts,
/// else the last day with data (or with alerts, without data).
pub(super) fn select(record: &SensorRecord, days_with_data: &BTreeSet<i64>, requested: Option<&str>) -> Selection {
    let alert_days = alert_days(&record.alerts);
    let default = days_with_data.last().or(alert_days.keys().last()).copied();
    let showing = match default.and_then(day_label) {
        Some(label) => format!("showing {label}"),
        None => "showing the latest day".to_owned(),
    };
    let Some(requested) = requested else {
        return Selection {
            day: default,
            note: None,
        };
    };
    match parse_day(requested) {
        Some(day) if days_with_data.contains(&day) || alert_days.contains_key(&day) => Selection {
            day: Some(day),
            note: None,
        },
        // A real date: safe (and useful) to name; the page escapes it anyway.
        Some(_) => Selection {
            day: default,
            note: Some(format!("No data and no alerts on {requested}; {showing}.")),
        },
        None => Selection {
            day: default,
            note: Some(format!("The day asked for is not a date (YYYY-MM-DD); {showing}.")),
        },
    }
}

/// The class of a known severity; an unknown one gets none (its text is
/// still shown, escaped).
fn severity_class(severity: &str) -> Option<&'static str> {
    match severity {
        "critical" => Some("severity-critical"),
        "warning" => Some("severity-warning"),
        "info" => Some("severity-info"),
        _ => None,
    }
}

/// The section of the selected day's alerts.
pub(super) fn section(record: &SensorRecord, selection: &Selection) -> Markup {
    let label = selection.day.and_then(day_label);
    let mut alerts: Vec<&SensorAlert> = match selection.day {
        Some(day) => record.alerts.iter().filter(|alert| day_of(alert.ts) == day).collect(),
        None => Vec::new(),
    };
    alerts.sort_by_key(|alert| Reverse(alert.ts));
    let others = alert_days(&record.alerts);
    html! {
        section #day-alerts data-day=[label.as_deref()] {
            h2 { "Alerts" @if let Some(label) = &label { " on " (label) " (UTC)" } }
            @if let Some(note) = &selection.note { p.note { (note) } }
            @if alerts.is_empty() {
                p.muted { "No alerts on this day." }
            } @else {
                table.alerts {
                    thead { tr { th { "Time" } th { "Severity" } th { "Code" } th { "Message" } th.num { "Value" } th { "Plugin" } } }
                    tbody {
                        @for alert in &alerts {
                            tr.alert data-ts=(alert.ts) {
                                td { (clock(alert.ts)) }
                                td { span class=[severity_class(&alert.severity)] { (alert.severity) } }
                                td { code { (alert.code) } }
                                td { (alert.message) }
                                td.num { (number(alert.value.unwrap_or(f64::NAN), 0)) }
                                // Which plugin says so: any plugin may raise
                                // an alert about any sensor.
                                td.muted { (alert.plugin) }
                            }
                        }
                    }
                }
            }
            @if !others.is_empty() {
                p.alert-days {
                    "Days with alerts: "
                    @for (day, count) in &others {
                        @if let Some(other) = day_label(*day) {
                            a href={ "?day=" (other) }
                                aria-current=[(selection.day == Some(*day)).then_some("date")] {
                                (other) " (" (count) ")"
                            }
                            " "
                        }
                    }
                }
            }
        }
    }
}
