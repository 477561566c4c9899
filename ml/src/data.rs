//! Recordings as the trainer and the evaluation see them: per subject, its
//! valid readings in time order, read by the same code as `edgewise replay`,
//! and which subjects are held out.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use edgewise_host::replay::{self, Format};

/// Readings outside this range (mg/dL) are not glucose values (the
/// `invalid_below` / `invalid_above` defaults of both glucose plugins): the
/// plugin ignores them, so training does too.
pub const VALID_MGDL: std::ops::RangeInclusive<f64> = 39.0..=401.0;

/// The rule that keeps subjects out of training, for the model file.
pub const HELD_OUT_RULE: &str =
    "a subject is held out (never trained on) when the last byte of SHA-256 of its id is a multiple of 4";

/// Whether `subject` is held out of training ([`HELD_OUT_RULE`]).
pub fn is_held_out(subject: &str) -> bool {
    let digest = ring::digest::digest(&ring::digest::SHA256, subject.as_bytes());
    digest.as_ref().last().is_some_and(|byte| byte % 4 == 0)
}

/// One subject (sensor) of a recording.
#[derive(Debug, Clone)]
pub struct Subject {
    /// The `id` column: the sensor's name in a replay.
    pub id: String,
    /// `(timestamp ms, mg/dL)`, valid readings only, in time order.
    pub readings: Vec<(i64, f64)>,
}

/// A recording, by subject.
#[derive(Debug, Clone)]
pub struct DataSet {
    /// The file name (no folder: the same on every machine).
    pub name: String,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    /// Subjects in the order they first appear in the file.
    pub subjects: Vec<Subject>,
}

impl DataSet {
    /// Read a recording as `edgewise replay` does: JSON lines (what
    /// `edgewise record` and `edgewise export` write) for a `*.jsonl` file,
    /// else iglu CSV.
    pub fn load(path: &Path) -> anyhow::Result<DataSet> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes));
        let format = match path.extension() {
            Some(extension) if extension == "jsonl" => Format::Jsonl,
            _ => Format::IgluCsv,
        };
        let recording = replay::load(path, format, false)?;
        let mut subjects: Vec<Subject> = Vec::new();
        let mut index: HashMap<&str, usize> = HashMap::new();
        // Replay order is by time across sensors; group by sensor, keeping
        // each one's order (time order: the loader sorts within a sensor).
        for reading in &recording.readings {
            if !VALID_MGDL.contains(&reading.value) {
                continue;
            }
            let at = *index.entry(reading.sensor.as_str()).or_insert_with(|| {
                subjects.push(Subject {
                    id: reading.sensor.clone(),
                    readings: Vec::new(),
                });
                subjects.len() - 1
            });
            subjects[at].readings.push((reading.timestamp_ms, reading.value));
        }
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(DataSet { name, sha256, subjects })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_a_quarter_of_the_shipped_subjects_are_held_out() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data/cgm/Hall2018_processed.csv");
        let hall = DataSet::load(&path).unwrap();
        let held_out = hall.subjects.iter().filter(|s| is_held_out(&s.id)).count();
        assert_eq!((hall.subjects.len(), held_out), (57, 11));
        for subject in &hall.subjects {
            assert!(subject.readings.windows(2).all(|w| w[0].0 < w[1].0), "{}", subject.id);
        }
    }

    #[test]
    fn a_recording_of_bus_messages_reads_as_its_sensors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("export.jsonl");
        let lines = [
            r#"{"subject":"sensors.cgm.ward-1","payload":{"sensor":"ward-1","ts":600000,"value":101,"unit":"mg/dL"}}"#,
            r#"{"subject":"sensors.cgm.ward-1","payload":{"sensor":"ward-1","ts":300000,"value":100,"unit":"mg/dL"}}"#,
            r#"{"subject":"sensors.cgm.ward-2","payload":{"sensor":"ward-2","ts":300000,"value":500,"unit":"mg/dL"}}"#,
        ];
        std::fs::write(&path, lines.join("\n")).unwrap();
        let set = DataSet::load(&path).unwrap();
        assert_eq!(set.name, "export.jsonl");
        // ward-2's only reading is out of the valid range.
        assert_eq!(set.subjects.len(), 1);
        assert_eq!(set.subjects[0].readings, vec![(300_000, 100.0), (600_000, 101.0)]);
    }
}
