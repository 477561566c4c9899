//! Recording live bus traffic in the JSON-lines format `edgewise replay`
//! reads: one message per line, `{"subject": ..., "payload": ...}`, the
//! payload as the JSON it was on the bus.
//!
//! A recording is plaintext: it holds the readings as they crossed the bus
//! (patient data, for a CGM), outside the device's encryption.

use std::io::{self, Write};

use serde::Serialize;
use serde_json::Value;

/// One recorded message, as a line of the recording.
#[derive(Serialize)]
struct Line<'a> {
    subject: &'a str,
    payload: Value,
}

/// Why a message was not recorded: a replay could not read it either.
#[derive(Debug, thiserror::Error)]
pub enum NotRecorded {
    /// The payload is not one JSON value.
    #[error("the payload is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
}

/// Counts of a recording so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecordCounts {
    /// Messages written.
    pub recorded: u64,
    /// Messages left out because their payload is not JSON.
    pub not_json: u64,
}

/// Writes messages as recording lines to `W`, counting them.
#[derive(Debug)]
pub struct Recorder<W: Write> {
    out: W,
    counts: RecordCounts,
}

impl<W: Write> Recorder<W> {
    /// A recorder writing to `out` (buffer it: every message is a small write).
    pub fn new(out: W) -> Recorder<W> {
        Recorder {
            out,
            counts: RecordCounts::default(),
        }
    }

    /// Record one message. A payload that is not JSON is counted and left
    /// out (`Ok(false)`); only a write that fails is an error.
    pub fn record(&mut self, subject: &str, payload: &[u8]) -> io::Result<bool> {
        match line(subject, payload) {
            Ok(line) => {
                self.out.write_all(line.as_bytes())?;
                self.counts.recorded += 1;
                Ok(true)
            }
            Err(NotRecorded::NotJson(_)) => {
                self.counts.not_json += 1;
                Ok(false)
            }
        }
    }

    /// What was recorded so far.
    pub fn counts(&self) -> RecordCounts {
        self.counts
    }

    /// The writer, to flush or sync it.
    pub fn writer(&mut self) -> &mut W {
        &mut self.out
    }
}

/// The recording line of a message, newline included. The payload is
/// written again compactly (one line, whatever its layout on the bus, keys
/// in sorted order); its numbers keep their values exactly.
pub fn line(subject: &str, payload: &[u8]) -> Result<String, NotRecorded> {
    let payload: Value = serde_json::from_slice(payload).map_err(NotRecorded::NotJson)?;
    let mut line = serde_json::to_string(&Line { subject, payload }).map_err(NotRecorded::NotJson)?;
    line.push('\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_becomes_one_line_and_a_payload_that_is_not_json_is_counted_out() {
        let mut recorder = Recorder::new(Vec::new());
        let pretty = b"{\n  \"ts\": 1700000000000,\n  \"value\": 5.25,\n  \"unit\": \"degC\"\n}";
        assert!(recorder.record("sensors.fridge.a", pretty).unwrap());
        assert!(!recorder.record("sensors.fridge.a", b"5.25 degC").unwrap());
        assert!(!recorder.record("sensors.fridge.a", &[0xff, 0xfe]).unwrap());
        assert_eq!(
            recorder.counts(),
            RecordCounts {
                recorded: 1,
                not_json: 2
            }
        );
        let text = String::from_utf8(recorder.writer().clone()).unwrap();
        assert_eq!(
            text,
            "{\"subject\":\"sensors.fridge.a\",\"payload\":{\"ts\":1700000000000,\"unit\":\"degC\",\"value\":5.25}}\n"
        );
    }
}
