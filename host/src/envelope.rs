//! The JSON envelope of an output (DESIGN "Output envelope"): one object per
//! line in replay, per message on the bus. Field order is fixed, so the same
//! output always serialises to the same bytes.

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::model::{Output, Severity};
use crate::output_check::{Problem, Problems};

/// Where an output came from: stamped on every output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// Device id (`replay` in replays).
    pub device: String,
    /// Plugin name.
    pub plugin: String,
    /// Plugin version.
    pub version: String,
    /// `sha256:<hex>` of the plugin's code.
    pub digest: String,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Envelope<'a> {
    Alert {
        #[serde(flatten)]
        head: Head<'a>,
        sensor: &'a str,
        ts: i64,
        severity: Severity,
        code: &'a str,
        message: &'a str,
        value: Option<f64>,
        #[serde(skip_serializing_if = "Problems::is_empty")]
        problems: Problems,
    },
    Summary {
        #[serde(flatten)]
        head: Head<'a>,
        sensor: &'a str,
        window_start: i64,
        window_end: i64,
        metrics: Metrics<'a>,
        #[serde(skip_serializing_if = "Problems::is_empty")]
        problems: Problems,
    },
}

#[derive(Serialize)]
struct Head<'a> {
    device: &'a str,
    plugin: &'a str,
    version: &'a str,
    digest: &'a str,
    seq: u64,
}

/// Metrics as a JSON object in the plugin's order (not sorted). With
/// `distinct`, a name given again is left out: the object keeps the first.
struct Metrics<'a> {
    metrics: &'a [(String, f64)],
    distinct: bool,
}

impl Serialize for Metrics<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.metrics.len()))?;
        let mut written = std::collections::HashSet::new();
        for (name, value) in self.metrics {
            if self.distinct && !written.insert(name.as_str()) {
                continue;
            }
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Serialise one output of the host's own as a single line of JSON (no
/// trailing newline). Non-finite numbers become `null`. The host's alerts
/// about a plugin name no sensor, so they are not checked.
pub fn to_json_line(provenance: &Provenance, seq: u64, output: &Output) -> String {
    line(provenance, seq, output, Problems::default())
}

/// Serialise one output a plugin made, as [`to_json_line`], checked
/// (`output_check`): the envelope of an output with problems names them in
/// `problems`, after every other member. Returns the line and its problems.
pub fn plugin_output_line(provenance: &Provenance, seq: u64, output: &Output) -> (String, Problems) {
    let problems = Problems::of(output);
    (line(provenance, seq, output, problems), problems)
}

fn line(provenance: &Provenance, seq: u64, output: &Output, problems: Problems) -> String {
    let head = Head {
        device: &provenance.device,
        plugin: &provenance.plugin,
        version: &provenance.version,
        digest: &provenance.digest,
        seq,
    };
    let envelope = match output {
        Output::Alert(alert) => Envelope::Alert {
            head,
            sensor: &alert.sensor,
            ts: alert.timestamp_ms,
            severity: alert.severity,
            code: &alert.code,
            message: &alert.message,
            value: alert.value,
            problems,
        },
        Output::Summary(summary) => Envelope::Summary {
            head,
            sensor: &summary.sensor,
            window_start: summary.window_start_ms,
            window_end: summary.window_end_ms,
            metrics: Metrics {
                metrics: &summary.metrics,
                distinct: problems.contains(Problem::DuplicateMetricName),
            },
            problems,
        },
    };
    // Serialising these plain structs to a String cannot fail: every map key
    // is a string and no custom Serialize returns an error.
    serde_json::to_string(&envelope).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Alert, Summary};

    fn provenance() -> Provenance {
        Provenance {
            device: "edge-01".into(),
            plugin: "glucose-monitor".into(),
            version: "0.1.0".into(),
            digest: "sha256:ab".into(),
        }
    }

    #[test]
    fn alert_has_the_design_field_order() {
        let alert = Output::Alert(Alert {
            sensor: "Subject 1".into(),
            timestamp_ms: 1434300000000,
            severity: Severity::Critical,
            code: "urgent-low".into(),
            message: "low".into(),
            value: Some(49.0),
        });
        assert_eq!(
            to_json_line(&provenance(), 17, &alert),
            r#"{"type":"alert","device":"edge-01","plugin":"glucose-monitor","version":"0.1.0","digest":"sha256:ab","seq":17,"sensor":"Subject 1","ts":1434300000000,"severity":"critical","code":"urgent-low","message":"low","value":49.0}"#
        );
    }

    #[test]
    fn summary_keeps_metric_order_and_nulls_non_finite() {
        let summary = Output::Summary(Summary {
            sensor: "s".into(),
            window_start_ms: 0,
            window_end_ms: 3_600_000,
            metrics: vec![("n".into(), 2.0), ("mean".into(), f64::NAN), ("cv".into(), 1.5)],
        });
        assert_eq!(
            to_json_line(&provenance(), 1, &summary),
            r#"{"type":"summary","device":"edge-01","plugin":"glucose-monitor","version":"0.1.0","digest":"sha256:ab","seq":1,"sensor":"s","window_start":0,"window_end":3600000,"metrics":{"n":2.0,"mean":null,"cv":1.5}}"#
        );
        let (line, problems) = plugin_output_line(&provenance(), 1, &summary);
        assert!(problems.is_empty());
        assert_eq!(line, to_json_line(&provenance(), 1, &summary));
    }

    #[test]
    fn a_plugin_output_with_problems_names_them_last_and_keeps_the_first_of_a_metric_given_twice() {
        let alert = Output::Alert(Alert {
            sensor: "Subject 1".into(),
            timestamp_ms: -5,
            severity: Severity::Critical,
            code: String::new(),
            message: "low".into(),
            value: Some(49.0),
        });
        let (line, problems) = plugin_output_line(&provenance(), 2, &alert);
        assert_eq!(problems.names(), "empty-code, negative-time");
        assert_eq!(
            line,
            r#"{"type":"alert","device":"edge-01","plugin":"glucose-monitor","version":"0.1.0","digest":"sha256:ab","seq":2,"sensor":"Subject 1","ts":-5,"severity":"critical","code":"","message":"low","value":49.0,"problems":["empty-code","negative-time"]}"#
        );
        // The host's own alerts are not checked.
        assert!(!to_json_line(&provenance(), 0, &alert).contains("problems"));

        let summary = Output::Summary(Summary {
            sensor: "s".into(),
            window_start_ms: 10,
            window_end_ms: 0,
            metrics: vec![("mean".into(), 1.0), ("cv".into(), 2.0), ("mean".into(), 3.0)],
        });
        let (line, _) = plugin_output_line(&provenance(), 3, &summary);
        assert!(
            line.ends_with(r#""window_start":10,"window_end":0,"metrics":{"mean":1.0,"cv":2.0},"problems":["empty-window","duplicate-metric-name"]}"#),
            "{line}"
        );
    }
}
