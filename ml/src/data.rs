//! Recordings as the trainer and the evaluation see them: per subject, its
//! valid readings in time order, read by the same code as `edgewise replay`,
//! and which subjects are held out.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, bail};
use edgewise_host::replay::{self, Format};

/// Readings outside this range (mg/dL) are not glucose values (the
/// `invalid_below` / `invalid_above` defaults of both glucose plugins): the
/// plugin ignores them, so training does too.
pub const VALID_MGDL: std::ops::RangeInclusive<f64> = 39.0..=401.0;

/// The rule that keeps subjects out of training, for the model file.
pub const HELD_OUT_RULE: &str =
    "a subject is held out (never trained on) when the last byte of SHA-256 of its id is a multiple of 4";

/// `edgewise replay`'s default `--tick` (5 minutes), which the report
/// replays with.
const REPLAY_TICK_MS: i64 = 5 * 60 * 1000;

/// Whether `subject` is held out of training ([`HELD_OUT_RULE`]).
pub fn is_held_out(subject: &str) -> bool {
    let digest = ring::digest::digest(&ring::digest::SHA256, subject.as_bytes());
    digest.as_ref().last().is_some_and(|byte| byte % 4 == 0)
}

/// How the model file names a subject: `sha256:` and the hex SHA-256 of its
/// id's bytes ([`forecast_model::Training`]). The file is signed into the
/// plugin's bundle and goes to every device of a fleet, and a subject's id is
/// a patient's sensor id: the digest tells whether a subject was trained on
/// to whoever has its id, and names nobody to anyone else (unless they can
/// guess the id and check it).
pub fn subject_digest(subject: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, subject.as_bytes());
    format!("{}{}", forecast_model::SUBJECT_DIGEST_PREFIX, hex::encode(digest))
}

/// The format of the recording at `path`, as `edgewise replay` reads it
/// without `--format`: JSON lines for `*.jsonl` (any case: `EDGE.JSONL`
/// too), else iglu CSV. The report passes it to `edgewise replay` as
/// `--format`, so both read a file alike whatever the case of its name.
pub fn format_of(path: &Path) -> Format {
    match path.extension() {
        Some(extension) if extension.eq_ignore_ascii_case("jsonl") => Format::Jsonl,
        _ => Format::IgluCsv,
    }
}

/// Refuse two recordings of one file name: the model file and the report
/// know a recording by its file name only (a folder is not the same on every
/// machine), so the figures of one would be taken for the other's.
pub fn refuse_same_names<'a>(sets: impl IntoIterator<Item = &'a DataSet>) -> anyhow::Result<()> {
    let mut names: Vec<&str> = sets.into_iter().map(|set| set.name.as_str()).collect();
    names.sort_unstable();
    if let Some(window) = names.windows(2).find(|w| w[0] == w[1]) {
        bail!(
            "two recordings are named `{}`: a recording is known by its file name (in the model file and \
             the report), so rename one of them",
            window[0]
        );
    }
    Ok(())
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
    /// The file name (no folder: the same on every machine); the trainer and
    /// the report refuse two recordings of one name ([`refuse_same_names`]).
    pub name: String,
    /// SHA-256 of the file's bytes, hex.
    pub sha256: String,
    /// Subjects in the order they first appear in the file.
    pub subjects: Vec<Subject>,
}

impl DataSet {
    /// Read a recording as `edgewise replay` does: JSON lines (what
    /// `edgewise record` and `edgewise export` write) for a `*.jsonl` file,
    /// else iglu CSV ([`format_of`]). A recording `edgewise replay` refuses
    /// at its default tick (its readings span more ticks than it makes) is
    /// refused here too: the report could not judge a model trained on it.
    pub fn load(path: &Path) -> anyhow::Result<DataSet> {
        let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let sha256 = hex::encode(ring::digest::digest(&ring::digest::SHA256, &bytes));
        let recording = replay::load(path, format_of(path), false)?;
        // The bound of `edgewise replay` (`load_recording` in the host's
        // CLI), over every reading it loads, valid or not.
        let first = recording.readings.iter().map(|r| r.timestamp_ms).min();
        let last = recording.readings.iter().map(|r| r.timestamp_ms).max();
        if let (Some(first), Some(last)) = (first, last) {
            let span = last.saturating_sub(first);
            if span / REPLAY_TICK_MS > i64::try_from(replay::MAX_TICKS).unwrap_or(i64::MAX) {
                bail!(
                    "{}: its readings span {} days, more than `edgewise replay` takes at its {}-minute tick \
                     ({} ticks): check the recording's timestamps",
                    path.display(),
                    span / 86_400_000,
                    REPLAY_TICK_MS / 60_000,
                    replay::MAX_TICKS
                );
            }
        }
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

    #[test]
    fn a_jsonl_extension_in_capitals_is_json_lines_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("EDGE.JSONL");
        let line =
            r#"{"subject":"sensors.cgm.ward-1","payload":{"sensor":"ward-1","ts":300000,"value":100,"unit":"mg/dL"}}"#;
        std::fs::write(&path, line).unwrap();
        let set = DataSet::load(&path).unwrap();
        assert_eq!(set.subjects[0].readings, vec![(300_000, 100.0)]);
    }

    #[test]
    fn a_recording_spanning_more_than_edgewise_replay_takes_is_refused_as_it_refuses_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge.jsonl");
        let line = |ts: i64| {
            format!(
                r#"{{"subject":"sensors.cgm.ward-1","payload":{{"sensor":"ward-1","ts":{ts},"value":100,"unit":"mg/dL"}}}}"#
            )
        };
        std::fs::write(&path, [line(i64::MIN), line(i64::MAX)].join("\n")).unwrap();
        let error = DataSet::load(&path).unwrap_err().to_string();
        assert!(
            error.contains("edge.jsonl") && error.contains("106751991167 days"),
            "{error}"
        );
        // Within the bound (a replay at a 5-minute tick for 950 years) it
        // is taken, as `edgewise replay` takes it.
        let span = 300_000 * i64::try_from(replay::MAX_TICKS).unwrap();
        std::fs::write(&path, [line(0), line(span)].join("\n")).unwrap();
        assert!(DataSet::load(&path).is_ok());
    }
}
