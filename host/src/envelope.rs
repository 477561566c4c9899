//! The JSON envelope of an output (DESIGN "Output envelope"): one object per
//! line in replay, per message on the bus. Field order is fixed, so the same
//! output always serialises to the same bytes.

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::model::{Output, Severity};

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
    },
    Summary {
        #[serde(flatten)]
        head: Head<'a>,
        sensor: &'a str,
        window_start: i64,
        window_end: i64,
        metrics: Metrics<'a>,
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

/// Metrics as a JSON object in the plugin's order (not sorted).
struct Metrics<'a>(&'a [(String, f64)]);

impl Serialize for Metrics<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, value) in self.0 {
            map.serialize_entry(name, value)?;
        }
        map.end()
    }
}

/// Serialise one output as a single line of JSON (no trailing newline).
/// Non-finite numbers become `null`.
pub fn to_json_line(provenance: &Provenance, seq: u64, output: &Output) -> String {
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
        },
        Output::Summary(summary) => Envelope::Summary {
            head,
            sensor: &summary.sensor,
            window_start: summary.window_start_ms,
            window_end: summary.window_end_ms,
            metrics: Metrics(&summary.metrics),
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
    }
}
