//! A recording loaded into memory: readings in replay order, plus what was
//! skipped while reading it and why.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::bus::filter;
use crate::bus::payload::PayloadError;
use crate::model::Reading;

/// The formats `edgewise replay --format` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The iglu CSV layout: header `id,time,gl`, one row per reading; each
    /// `id` is one sensor and `time` (`YYYY-MM-DD HH:MM:SS`) is read as UTC.
    IgluCsv,
    /// JSON lines of recorded bus messages: `{"subject": "...", "payload": <payload>}`,
    /// the payload as on the bus (object or array).
    Jsonl,
}

/// Counts of what was read and skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Data rows (or lines) read, excluding the header.
    pub rows: u64,
    /// Rows whose value was `NA`.
    pub na: u64,
    /// Readings dropped because a later row had the same sensor and timestamp.
    pub duplicates: u64,
    /// Unparsable rows skipped under `--skip-invalid`.
    pub invalid: u64,
    /// Rows that were out of timestamp order for their sensor (and were sorted).
    pub out_of_order: u64,
    /// Readings on a subject no subscription matches ([`Subscriptions`]):
    /// the live host would never have received them.
    pub unsubscribed: u64,
}

/// Which of a recording's subjects a replay takes: a bundle's manifest
/// subscriptions, matched as the NATS server matches them
/// ([`crate::bus::filter::matches`]); all of them for a plain component.
///
/// An iglu CSV row has no subject: it is the reading a CGM publishes on
/// [`iglu_subject`] (`sensors.cgm.<id>`).
#[derive(Debug, Clone, Copy)]
pub enum Subscriptions<'a> {
    /// Every reading (a plain component: no manifest).
    All,
    /// The readings on a subject one of these filters matches.
    Filters(&'a [String]),
}

impl Subscriptions<'_> {
    /// Whether a reading on `subject` goes to the plugin.
    pub fn takes(&self, subject: &str) -> bool {
        match self {
            Subscriptions::All => true,
            Subscriptions::Filters(filters) => filters.iter().any(|filter| filter::matches(filter, subject)),
        }
    }
}

/// The subject an iglu CSV reading of the CGM `id` would have had on the
/// bus: `sensors.cgm.<id>`, the id as it is (a `.` in it makes more tokens).
pub fn iglu_subject(id: &str) -> String {
    format!("sensors.cgm.{id}")
}

/// Readings in replay order: by timestamp, ties by the order in which
/// sensors first appear in the file, so a replay is deterministic.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    /// The readings to replay.
    pub readings: Vec<Reading>,
    /// What was skipped and why.
    pub stats: ReadStats,
}

/// Why a recording could not be read. Each is one clear line.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// The file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file holds nothing (or only a header).
    #[error("{0}: the recording is empty")]
    Empty(PathBuf),
    /// The header could not be read at all.
    #[error("{path}:1: wrong header: expected {expected}, found `{source}`")]
    HeaderUnreadable {
        /// The file.
        path: PathBuf,
        /// What the header must be.
        expected: &'static str,
        /// Why it could not be read.
        #[source]
        source: csv::Error,
    },
    /// The header is not the format's header.
    #[error("{path}:1: wrong header: expected {expected}, found `{found}`")]
    Header {
        /// The file.
        path: PathBuf,
        /// What the header must be.
        expected: &'static str,
        /// What it was.
        found: String,
    },
    /// A row could not be parsed (and `--skip-invalid` was not given).
    #[error("{location}: {reason}")]
    Row {
        /// `file:line`.
        location: Location,
        /// What was wrong.
        #[source]
        reason: RowError,
    },
}

/// Why one row of a recording was refused.
#[derive(Debug, thiserror::Error)]
pub enum RowError {
    /// Not a CSV record.
    #[error("not valid CSV: {0}")]
    Csv(#[source] csv::Error),
    /// A line of a JSON-lines recording that is not JSON.
    #[error("not JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// A recorded message whose payload the live host would refuse too.
    #[error("{0}")]
    Payload(#[from] PayloadError),
    /// A field missing or with a value the format does not allow.
    #[error("{0}")]
    Field(String),
}

impl From<&str> for RowError {
    fn from(reason: &str) -> RowError {
        RowError::Field(reason.to_owned())
    }
}

/// A `file:line` position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number.
    pub line: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

/// Load a recording, every reading. With `skip_invalid`, unparsable rows are
/// counted in [`ReadStats::invalid`] instead of failing the load.
pub fn load(path: &Path, format: Format, skip_invalid: bool) -> Result<Recording, RecordingError> {
    load_subscribed(path, format, skip_invalid, Subscriptions::All)
}

/// Load the readings of a recording on the subjects `subscriptions` takes;
/// the others are counted in [`ReadStats::unsubscribed`] (and a row on such
/// a subject is never parsed further: the host would not have seen it).
pub fn load_subscribed(
    path: &Path,
    format: Format,
    skip_invalid: bool,
    subscriptions: Subscriptions<'_>,
) -> Result<Recording, RecordingError> {
    let text = std::fs::read(path).map_err(|source| RecordingError::Io {
        path: path.to_owned(),
        source,
    })?;
    if text.iter().all(u8::is_ascii_whitespace) {
        return Err(RecordingError::Empty(path.to_owned()));
    }
    let mut builder = RecordingBuilder::new(path, skip_invalid, subscriptions);
    match format {
        Format::IgluCsv => super::iglu::read(&text, &mut builder)?,
        Format::Jsonl => super::jsonl::read(&text, &mut builder)?,
    }
    builder.finish()
}

/// Collects readings from a reader, applying the shared rules: bad rows fail
/// or are counted, duplicates keep the last value, order is restored.
pub(crate) struct RecordingBuilder<'a> {
    path: PathBuf,
    skip_invalid: bool,
    subscriptions: Subscriptions<'a>,
    stats: ReadStats,
    /// Sensor name -> index in order of first appearance.
    sensors: HashMap<String, usize>,
    /// (sensor index, file order, reading).
    rows: Vec<(usize, u64, Reading)>,
    last_ts: Vec<i64>,
}

impl<'a> RecordingBuilder<'a> {
    fn new(path: &Path, skip_invalid: bool, subscriptions: Subscriptions<'a>) -> RecordingBuilder<'a> {
        RecordingBuilder {
            path: path.to_owned(),
            skip_invalid,
            subscriptions,
            stats: ReadStats::default(),
            sensors: HashMap::new(),
            rows: Vec::new(),
            last_ts: Vec::new(),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Count a data row (called once per row, whatever becomes of it).
    pub(crate) fn row(&mut self) {
        self.stats.rows += 1;
    }

    /// Whether the row on `subject` goes on; when not, its `readings`
    /// (counted by the caller) are counted as unsubscribed.
    pub(crate) fn subscribed(&mut self, subject: &str, readings: impl FnOnce() -> u64) -> bool {
        let takes = self.subscriptions.takes(subject);
        if !takes {
            self.stats.unsubscribed += readings();
        }
        takes
    }

    /// A row with a missing (`NA`) value.
    pub(crate) fn na(&mut self) {
        self.stats.na += 1;
    }

    /// A row that could not be parsed.
    pub(crate) fn bad_row(&mut self, line: u64, reason: RowError) -> Result<(), RecordingError> {
        if self.skip_invalid {
            self.stats.invalid += 1;
            Ok(())
        } else {
            Err(RecordingError::Row {
                location: Location {
                    path: self.path.clone(),
                    line,
                },
                reason,
            })
        }
    }

    /// A good reading.
    pub(crate) fn reading(&mut self, reading: Reading) {
        let next_index = self.sensors.len();
        let sensor_index = *self.sensors.entry(reading.sensor.clone()).or_insert(next_index);
        if sensor_index == self.last_ts.len() {
            self.last_ts.push(i64::MIN);
        }
        if let Some(last) = self.last_ts.get_mut(sensor_index) {
            if reading.timestamp_ms < *last {
                self.stats.out_of_order += 1;
            }
            *last = (*last).max(reading.timestamp_ms);
        }
        let order = self.rows.len() as u64;
        self.rows.push((sensor_index, order, reading));
    }

    fn finish(mut self) -> Result<Recording, RecordingError> {
        if self.stats.rows == 0 {
            return Err(RecordingError::Empty(self.path));
        }
        // Timestamp, then sensor first-appearance, then file order: the last
        // row of a duplicate group sorts last and is the one kept.
        self.rows
            .sort_by_key(|(sensor, order, r)| (r.timestamp_ms, *sensor, *order));
        let mut readings: Vec<Reading> = Vec::with_capacity(self.rows.len());
        let mut previous: Option<(usize, i64)> = None;
        for (sensor, _, reading) in self.rows {
            if previous == Some((sensor, reading.timestamp_ms)) {
                self.stats.duplicates += 1;
                readings.pop();
            }
            previous = Some((sensor, reading.timestamp_ms));
            readings.push(reading);
        }
        Ok(Recording {
            readings,
            stats: self.stats,
        })
    }
}
