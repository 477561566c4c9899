//! The recording the demo plays: one subject of an iglu CSV file
//! (read by [`crate::cgm`]), a few days of it, in time order.

use std::path::Path;

use anyhow::bail;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// One glucose reading.
#[derive(Debug, Clone, Copy)]
pub struct Reading {
    /// Time, ms since the epoch.
    pub ts_ms: i64,
    /// Glucose, mg/dL.
    pub value: f64,
}

/// The readings of one subject, sorted, one per timestamp.
#[derive(Debug, Clone)]
pub struct Recording {
    /// The subject as the file names it (`Subject 4`).
    pub subject: String,
    /// The readings, non-empty.
    pub readings: Vec<Reading>,
}

impl Recording {
    /// The first reading's time.
    pub fn first_ms(&self) -> i64 {
        self.readings.first().map_or(0, |r| r.ts_ms)
    }

    /// The last reading's time.
    pub fn last_ms(&self) -> i64 {
        self.readings.last().map_or(0, |r| r.ts_ms)
    }

    /// The subject token of a NATS subject: spaces become dashes.
    pub fn sensor_token(&self) -> String {
        self.subject.replace(' ', "-")
    }
}

/// The readings of `subject` in `path`, from its first reading to the end of
/// the UTC day `days - 1` days later.
pub fn load(path: &Path, subject: &str, days: i64) -> anyhow::Result<Recording> {
    let mut readings: Vec<Reading> = crate::cgm::rows(path)?
        .into_iter()
        .filter(|row| row.id == subject)
        .map(|row| Reading {
            ts_ms: row.ts_ms,
            value: row.value,
        })
        .collect();
    // Time order; for a repeated timestamp the last row wins (as in replay).
    readings.reverse();
    readings.sort_by_key(|r| r.ts_ms);
    readings.dedup_by_key(|r| r.ts_ms);
    let Some(first) = readings.first().map(|r| r.ts_ms) else {
        bail!("{}: no reading of `{subject}`", path.display());
    };
    let end = first - first.rem_euclid(DAY_MS) + days * DAY_MS;
    readings.retain(|r| r.ts_ms < end);
    Ok(Recording {
        subject: subject.to_owned(),
        readings,
    })
}
