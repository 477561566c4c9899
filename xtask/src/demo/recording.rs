//! The recording the demo plays: one subject of an iglu CSV file
//! (`"id",time,gl`, time in UTC), a few days of it, in time order.

use std::path::Path;

use anyhow::{Context, bail};
use time::PrimitiveDateTime;
use time::macros::format_description;

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
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines().enumerate();
    let header = lines.next().map(|(_, l)| l.replace('"', "")).unwrap_or_default();
    if header.trim() != "id,time,gl" {
        bail!("{}: the header is `{header}`, expected `id,time,gl`", path.display());
    }
    let time_format = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let mut readings = Vec::new();
    for (index, line) in lines {
        let fields: Vec<&str> = line.split(',').map(|f| f.trim().trim_matches('"')).collect();
        let [id, time, gl] = fields.as_slice() else {
            bail!("{}:{}: expected 3 fields: {line}", path.display(), index + 1);
        };
        if *id != subject || gl.eq_ignore_ascii_case("NA") {
            continue;
        }
        let at = PrimitiveDateTime::parse(time, &time_format)
            .with_context(|| format!("{}:{}: bad time `{time}`", path.display(), index + 1))?
            .assume_utc();
        let value: f64 = gl
            .parse()
            .with_context(|| format!("{}:{}: bad glucose `{gl}`", path.display(), index + 1))?;
        let ts_ms = i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
            .with_context(|| format!("{}:{}: time out of range", path.display(), index + 1))?;
        readings.push(Reading { ts_ms, value });
    }
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
