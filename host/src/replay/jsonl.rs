//! Reader for JSON lines of recorded bus messages.

use serde_json::Value;

use super::recording::{RecordingBuilder, RecordingError, RowError};
use crate::bus::payload;

/// Read every line into `builder`. Blank lines are ignored.
pub(crate) fn read(text: &[u8], builder: &mut RecordingBuilder) -> Result<(), RecordingError> {
    for (index, line) in text.split(|b| *b == b'\n').enumerate() {
        let line_number = index as u64 + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        builder.row();
        match parse_line(line, builder) {
            Ok(readings) => readings.into_iter().for_each(|r| builder.reading(r)),
            Err(reason) => builder.bad_row(line_number, reason)?,
        }
    }
    Ok(())
}

/// The readings of one line; none when no subscription takes its subject
/// (its payload not decoded: the host would never have received it).
fn parse_line(line: &[u8], builder: &mut RecordingBuilder) -> Result<Vec<crate::model::Reading>, RowError> {
    let message: Value = serde_json::from_slice(line).map_err(RowError::Json)?;
    let subject = message
        .get("subject")
        .and_then(Value::as_str)
        .ok_or("missing string field `subject`")?;
    let payload = message.get("payload").ok_or("missing field `payload`")?;
    // A message carries one reading, or an array of them.
    let readings = || payload.as_array().map_or(1, |items| items.len() as u64);
    if !builder.subscribed(subject, readings) {
        return Ok(Vec::new());
    }
    Ok(payload::decode_value(subject, payload)?)
}
