//! What the host checks in each output a plugin makes, before anyone reads it.
//!
//! A plugin's alerts reach a clinician at once and the cloud later, so the
//! host does not pass nonsense on in silence. Nor does it drop it: a
//! malformed alert may still be a real one (an `urgent-low` without a code
//! or with a time before 1970 still says that someone is low). An output with a problem goes
//! out as the plugin made it, its envelope naming each problem (`problems`,
//! see `envelope`), and the host counts it and tells the operator (the
//! worker's `plugin-output-flagged` alert, `outputs_flagged` in the status).
//!
//! The checks are those whose answer is certain from the output alone: no
//! code, a time before 1970, a window that ends before it starts, a metric
//! name that is empty or given twice. An empty sensor is not one: it says
//! that the output is about the plugin or the device as a whole, as the
//! host's own alerts about a plugin are. Whether the sensor is one the
//! plugin was given is not checked either: a restarted plugin may report on
//! a sensor from its saved state before any reading of it arrives.

use serde::Serialize;
use serde::ser::SerializeSeq;

use crate::model::{Output, Summary};

/// One thing wrong with an output a plugin made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The alert has no code.
    EmptyCode,
    /// A time (the alert's, or a window's start or end) before the Unix epoch.
    NegativeTime,
    /// The summary's window ends before it starts, or where it starts:
    /// `[start, end)` holds nothing.
    EmptyWindow,
    /// A metric of the summary has no name.
    EmptyMetricName,
    /// Two metrics of the summary have one name. A JSON object keeps one
    /// value per name, so the envelope keeps the first and leaves the rest.
    DuplicateMetricName,
}

impl Problem {
    /// Every problem, in the order the envelope lists them.
    pub const ALL: [Problem; 5] = [
        Problem::EmptyCode,
        Problem::NegativeTime,
        Problem::EmptyWindow,
        Problem::EmptyMetricName,
        Problem::DuplicateMetricName,
    ];

    /// Its name in the envelope and in the host's alert.
    pub fn code(self) -> &'static str {
        match self {
            Problem::EmptyCode => "empty-code",
            Problem::NegativeTime => "negative-time",
            Problem::EmptyWindow => "empty-window",
            Problem::EmptyMetricName => "empty-metric-name",
            Problem::DuplicateMetricName => "duplicate-metric-name",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

/// The problems of one output (or, united, of several), each at most once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Problems(u8);

impl Problems {
    /// The problems of `output`.
    pub fn of(output: &Output) -> Problems {
        let mut found = Problems::default();
        match output {
            Output::Alert(alert) => {
                found.add_if(alert.code.is_empty(), Problem::EmptyCode);
                found.add_if(alert.timestamp_ms < 0, Problem::NegativeTime);
            }
            Output::Summary(summary) => {
                found.add_if(
                    summary.window_start_ms < 0 || summary.window_end_ms < 0,
                    Problem::NegativeTime,
                );
                found.add_if(summary.window_end_ms <= summary.window_start_ms, Problem::EmptyWindow);
                found.add_if(
                    summary.metrics.iter().any(|(name, _)| name.is_empty()),
                    Problem::EmptyMetricName,
                );
                found.add_if(has_duplicate_names(summary), Problem::DuplicateMetricName);
            }
        }
        found
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0 == 0
    }

    /// Whether `problem` is one of them.
    pub fn contains(&self, problem: Problem) -> bool {
        self.0 & problem.bit() != 0
    }

    /// These and `other`'s.
    pub fn union(self, other: Problems) -> Problems {
        Problems(self.0 | other.0)
    }

    /// Each problem, in [`Problem::ALL`]'s order.
    pub fn iter(&self) -> impl Iterator<Item = Problem> + '_ {
        Problem::ALL.into_iter().filter(|problem| self.contains(*problem))
    }

    /// Their codes joined by `, ` (for a person).
    pub fn names(&self) -> String {
        self.iter().map(Problem::code).collect::<Vec<_>>().join(", ")
    }

    fn add_if(&mut self, condition: bool, problem: Problem) {
        if condition {
            self.0 |= problem.bit();
        }
    }
}

/// A JSON array of the codes.
impl Serialize for Problems {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(None)?;
        for problem in self.iter() {
            seq.serialize_element(problem.code())?;
        }
        seq.end()
    }
}

/// Whether two metrics of `summary` have one name. Summaries carry a few
/// metrics; beyond a few dozen a set is cheaper than comparing every pair.
fn has_duplicate_names(summary: &Summary) -> bool {
    let names = &summary.metrics;
    if names.len() <= 32 {
        return names
            .iter()
            .enumerate()
            .any(|(i, (name, _))| names[..i].iter().any(|(earlier, _)| earlier == name));
    }
    let mut seen = std::collections::HashSet::with_capacity(names.len());
    !names.iter().all(|(name, _)| seen.insert(name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Alert, Severity};

    fn alert(sensor: &str, timestamp_ms: i64, code: &str) -> Output {
        Output::Alert(Alert {
            sensor: sensor.into(),
            timestamp_ms,
            severity: Severity::Critical,
            code: code.into(),
            message: "low".into(),
            value: Some(50.0),
        })
    }

    fn summary(start: i64, end: i64, names: &[&str]) -> Output {
        Output::Summary(Summary {
            sensor: "cgm-1".into(),
            window_start_ms: start,
            window_end_ms: end,
            metrics: names.iter().map(|name| ((*name).to_owned(), 1.0)).collect(),
        })
    }

    fn codes(output: &Output) -> Vec<&'static str> {
        Problems::of(output).iter().map(Problem::code).collect()
    }

    #[test]
    fn a_well_formed_output_has_no_problem() {
        assert!(Problems::of(&alert("cgm-1", 0, "urgent-low")).is_empty());
        assert!(Problems::of(&summary(0, 1, &["mean", "cv"])).is_empty());
        assert!(Problems::of(&summary(0, 1, &[])).is_empty());
    }

    #[test]
    fn each_problem_of_an_alert_is_named() {
        assert_eq!(codes(&alert("cgm-1", 1, "")), ["empty-code"]);
        assert_eq!(codes(&alert("cgm-1", -1, "low")), ["negative-time"]);
        assert_eq!(codes(&alert("cgm-1", i64::MIN, "")), ["empty-code", "negative-time"]);
        // About the plugin or the device, not one sensor: as the host's own.
        assert!(Problems::of(&alert("", 1, "model-expired")).is_empty());
    }

    #[test]
    fn each_problem_of_a_summary_is_named() {
        assert_eq!(codes(&summary(10, 5, &["mean"])), ["empty-window"]);
        assert_eq!(codes(&summary(10, 10, &["mean"])), ["empty-window"]);
        assert_eq!(codes(&summary(-10, 5, &["mean"])), ["negative-time"]);
        assert_eq!(codes(&summary(0, 5, &["mean", ""])), ["empty-metric-name"]);
        assert_eq!(
            codes(&summary(0, 5, &["mean", "cv", "mean"])),
            ["duplicate-metric-name"]
        );
        let Output::Summary(mut unnamed) = summary(5, 0, &["", ""]) else {
            unreachable!()
        };
        unnamed.sensor.clear();
        assert_eq!(
            codes(&Output::Summary(unnamed)),
            ["empty-window", "empty-metric-name", "duplicate-metric-name"]
        );
    }

    #[test]
    fn duplicates_are_found_among_many_metrics_too() {
        let many: Vec<String> = (0..100).map(|i| format!("m{i}")).collect();
        let names: Vec<&str> = many.iter().map(String::as_str).collect();
        assert!(Problems::of(&summary(0, 1, &names)).is_empty());
        let mut twice = names.clone();
        twice.push("m42");
        assert_eq!(codes(&summary(0, 1, &twice)), ["duplicate-metric-name"]);
    }

    #[test]
    fn problems_serialise_as_an_array_of_codes_and_unite() {
        let both = Problems::of(&alert("s", 1, "")).union(Problems::of(&summary(2, 1, &["m"])));
        assert_eq!(
            serde_json::to_string(&both).unwrap(),
            r#"["empty-code","empty-window"]"#
        );
        assert_eq!(both.names(), "empty-code, empty-window");
    }
}
