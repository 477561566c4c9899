//! Records for the tests, built from the golden output of glucose-monitor
//! on a real recording (`tests/golden/glucose-monitor.ExampleData5Subjects.jsonl`).

use serde_json::Value;

use super::{SensorAlert, SensorRecord, Window};

const GOLDEN: &str = include_str!("../../../../tests/golden/glucose-monitor.ExampleData5Subjects.jsonl");

/// Adds one line of the golden file (a summary or an alert) to `record`.
fn add_line(record: &mut SensorRecord, line: &str) {
    let value: Value = serde_json::from_str(line).unwrap();
    let text = |key: &str| value[key].as_str().unwrap().to_owned();
    record.device = text("device");
    record.sensor = text("sensor");
    match value["type"].as_str().unwrap() {
        "summary" => {
            let window = Window {
                plugin: text("plugin"),
                start_ms: value["window_start"].as_i64().unwrap(),
                end_ms: value["window_end"].as_i64().unwrap(),
                metrics: value["metrics"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(name, v)| (name.clone(), v.as_f64().unwrap()))
                    .collect(),
            };
            if window.end_ms - window.start_ms == 3_600_000 {
                record.hourly.push(window);
            } else {
                record.daily.push(window);
            }
        }
        "alert" => record.alerts.push(SensorAlert {
            plugin: text("plugin"),
            ts: value["ts"].as_i64().unwrap(),
            severity: text("severity"),
            code: text("code"),
            message: text("message"),
            value: value["value"].as_f64(),
            arrival: 0,
        }),
        other => panic!("unexpected line type {other}"),
    }
}

/// The golden file's lines about `sensor`.
fn golden_lines(sensor: &str) -> Vec<&'static str> {
    let needle = format!("\"sensor\":\"{sensor}\"");
    GOLDEN.lines().filter(|line| line.contains(&needle)).collect()
}

/// The whole record of `sensor` in the golden file.
pub(super) fn golden_record(sensor: &str) -> SensorRecord {
    let mut record = SensorRecord::default();
    for line in golden_lines(sensor) {
        add_line(&mut record, line);
    }
    record
}
