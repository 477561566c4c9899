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
    // As ingest parses a payload: a key twice is refused, live and here alike.
    let message = payload::parse_distinct(line).map_err(RowError::Json)?;
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

#[cfg(test)]
mod tests {
    use crate::replay::recording::{Format, load};

    /// A recorded message with a key twice is a bad row, as ingest refuses
    /// it live: a replay must not take a reading the host never took.
    #[test]
    fn a_recorded_message_with_a_key_twice_is_a_bad_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bus.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"subject":"sensors.cgm.a","payload":{"ts":1434300000000,"value":120}}"#,
                "\n",
                r#"{"subject":"sensors.cgm.a","payload":{"ts":1434300300000,"value":45,"value":120}}"#,
                "\n",
            ),
        )
        .unwrap();
        let error = load(&path, Format::Jsonl, false).err().map(|e| e.to_string());
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.contains(":2") && e.contains("duplicate key `value`")),
            "{error:?}"
        );
        let recording = load(&path, Format::Jsonl, true).unwrap();
        assert_eq!(recording.stats.invalid, 1);
        assert_eq!(recording.readings.len(), 1);
    }
}
