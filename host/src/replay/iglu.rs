//! Reader for the iglu CSV layout (`id,time,gl`): CGM readings in mg/dL,
//! each on the subject [`iglu_subject`] of its `id`.

use time::PrimitiveDateTime;
use time::macros::format_description;

use super::recording::{RecordingBuilder, RecordingError, RowError, iglu_subject};
use crate::model::Reading;

const EXPECTED_HEADER: &str = "`id,time,gl`";

/// Read every row into `builder`.
pub(crate) fn read(text: &[u8], builder: &mut RecordingBuilder) -> Result<(), RecordingError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(text);
    let header: Vec<String> = match reader.headers() {
        Ok(record) => record.iter().map(|f| f.trim().to_owned()).collect(),
        Err(source) => {
            return Err(RecordingError::HeaderUnreadable {
                path: builder.path().to_owned(),
                expected: EXPECTED_HEADER,
                source,
            });
        }
    };
    if header != ["id", "time", "gl"] {
        return Err(RecordingError::Header {
            path: builder.path().to_owned(),
            expected: EXPECTED_HEADER,
            found: header.join(","),
        });
    }
    for result in reader.records() {
        builder.row();
        let record = match result {
            Ok(record) => record,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                builder.bad_row(line, RowError::Csv(e))?;
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line());
        // A row's subject is its id's (`iglu_subject`); a row with no id is
        // refused below.
        if let Some(id) = record.get(0).map(str::trim).filter(|id| !id.is_empty())
            && !builder.subscribed(&iglu_subject(id), || 1)
        {
            continue;
        }
        match parse_row(&record) {
            Ok(Some(reading)) => builder.reading(reading),
            Ok(None) => builder.na(),
            Err(reason) => builder.bad_row(line, RowError::Field(reason))?,
        }
    }
    Ok(())
}

/// One row: `Ok(None)` for an `NA` value.
fn parse_row(record: &csv::StringRecord) -> Result<Option<Reading>, String> {
    let [id, time, gl] = [0, 1, 2].map(|i| record.get(i).map(str::trim));
    let (Some(id), Some(time), Some(gl)) = (id, time, gl) else {
        return Err(format!("expected 3 fields (id,time,gl), found {}", record.len()));
    };
    if record.len() > 3 {
        return Err(format!("expected 3 fields (id,time,gl), found {}", record.len()));
    }
    if id.is_empty() {
        return Err("empty `id`".to_owned());
    }
    let timestamp_ms = parse_time(time).ok_or_else(|| format!("bad time `{time}`: expected YYYY-MM-DD HH:MM:SS"))?;
    if gl == "NA" {
        return Ok(None);
    }
    let value: f64 = gl
        .parse()
        .ok()
        .filter(|v: &f64| v.is_finite())
        .ok_or_else(|| format!("bad glucose value `{gl}`: expected a number or NA"))?;
    Ok(Some(Reading {
        sensor: id.to_owned(),
        timestamp_ms,
        value,
        unit: "mg/dL".to_owned(),
    }))
}

/// `YYYY-MM-DD HH:MM:SS` (or `HH:MM`), read as UTC, to ms since the epoch.
fn parse_time(text: &str) -> Option<i64> {
    let with_seconds = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let without_seconds = format_description!("[year]-[month]-[day] [hour]:[minute]");
    let time = PrimitiveDateTime::parse(text, with_seconds)
        .or_else(|_| PrimitiveDateTime::parse(text, without_seconds))
        .ok()?;
    i64::try_from(time.assume_utc().unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc() {
        assert_eq!(parse_time("2015-06-14 16:40:00"), Some(1_434_300_000_000));
        assert_eq!(parse_time("2015-06-14 16:40"), Some(1_434_300_000_000));
        assert_eq!(parse_time("2015-06-14T16:40:00"), None);
        assert_eq!(parse_time("2015-02-30 00:00:00"), None);
    }
}
