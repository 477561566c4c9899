//! The JSON envelope of an output (DESIGN "Output envelope"): one object per
//! line in replay, per message on the bus. Field order is fixed, so the same
//! output always serialises to the same bytes.

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::model::{Alert, Output, Severity};
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

/// The line of a plugin's `alert` (as [`plugin_output_line`] makes it) cut
/// to at most `max_bytes`, for a bus that carries no more (the local
/// server's `max_payload`): its message cut on a character boundary and
/// marked, every other member as made. `full_bytes` is the size of the line
/// in full, said in the mark. `None` when even the mark alone does not fit.
pub fn shortened_alert_line(
    provenance: &Provenance,
    seq: u64,
    alert: &Alert,
    full_bytes: usize,
    max_bytes: usize,
) -> Option<String> {
    // Where the rest is is not said: the full line is in the outbox and goes
    // upstream only when it could be stored and there is an upstream.
    let mark = format!("… [shortened for the local bus: {full_bytes} bytes in full]");
    let with_message = |message: String| {
        let output = Output::Alert(Alert {
            message,
            ..alert.clone()
        });
        plugin_output_line(provenance, seq, &output).0
    };
    let bare = with_message(mark.clone()).len();
    let mut room = max_bytes.checked_sub(bare)?;
    // A character's bytes in the line: escaped, a control character takes
    // up to six (`\u0001`), a quote two.
    let escaped = |c: char| serde_json::to_string(&c).map_or(6, |quoted| quoted.len() - 2);
    let mut kept = 0;
    for c in alert.message.chars() {
        let Some(left) = room.checked_sub(escaped(c)) else {
            break;
        };
        room = left;
        kept += c.len_utf8();
    }
    Some(with_message(format!("{}{mark}", &alert.message[..kept])))
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

    /// An alert whose message is `message`, its line in full, and that line
    /// shortened to `max_bytes`.
    fn shortened(message: &str, max_bytes: usize) -> (Alert, String, Option<String>) {
        let alert = Alert {
            sensor: "Subject 1".into(),
            timestamp_ms: 1434300000000,
            severity: Severity::Critical,
            code: "urgent-low".into(),
            message: message.into(),
            value: Some(49.0),
        };
        let (full, _) = plugin_output_line(&provenance(), 17, &Output::Alert(alert.clone()));
        let short = shortened_alert_line(&provenance(), 17, &alert, full.len(), max_bytes);
        (alert, full, short)
    }

    #[test]
    fn a_shortened_alert_fits_keeps_every_member_but_the_message_and_says_its_size() {
        for message in [
            "b".repeat(4000),
            "\u{1}".repeat(4000),
            "é\"".repeat(1500),
            "水".repeat(1300),
        ] {
            for max_bytes in [400, 1024, 2048] {
                let (alert, full, short) = shortened(&message, max_bytes);
                let short = short.unwrap_or_else(|| panic!("{max_bytes} bytes leave room"));
                assert!(short.len() <= max_bytes, "{} > {max_bytes}: {short}", short.len());
                let parsed: serde_json::Value = serde_json::from_str(&short).unwrap();
                let whole: serde_json::Value = serde_json::from_str(&full).unwrap();
                for member in [
                    "type", "device", "plugin", "seq", "sensor", "ts", "severity", "code", "value",
                ] {
                    assert_eq!(parsed[member], whole[member], "{member}");
                }
                let text = parsed["message"].as_str().unwrap();
                let (kept, mark) = text.split_once('…').unwrap();
                assert!(alert.message.starts_with(kept), "a prefix of the message is kept");
                assert!(!kept.is_empty(), "as much of it as fits: {short}");
                assert_eq!(
                    mark,
                    format!(" [shortened for the local bus: {} bytes in full]", full.len())
                );
                // No room wasted: one more character of the message would not fit.
                let next = alert.message[kept.len()..].chars().next().unwrap();
                let escaped = serde_json::to_string(&next).unwrap().len() - 2;
                assert!(
                    short.len() + escaped > max_bytes,
                    "{} + {escaped} fits {max_bytes}",
                    short.len()
                );
            }
        }
    }

    #[test]
    fn an_alert_is_not_shortened_below_its_mark() {
        let (_, _, short) = shortened(&"b".repeat(4000), 200);
        assert_eq!(short, None, "the members and the mark alone take more than 200 bytes");
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
