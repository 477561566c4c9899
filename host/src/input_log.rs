//! The inputs a plugin is given, as its input log keeps them (issue #14):
//! a batch of readings with the host clock it was given at, or a tick. One
//! encoded input is one row of the log (`outbox::Record::Input`), sealed
//! there; the encoding names each (sensor, unit) once per batch and keeps the
//! samples as scalars, so a reading costs about 20 bytes. For JetStream ingest it also keeps
//! each reading's stream sequence (as runs), to know a message that comes
//! again after a crash.
//!
//! The encoding is postcard (serde, a stable 1.x wire format) of a versioned
//! enum: a row from a newer build is refused ([`DecodeError`]), never
//! misread.

use serde::{Deserialize, Serialize};

use crate::model::Reading;

/// One input a plugin was given.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A batch of readings, given when the host clock read `now_ms`.
    Readings {
        /// The host clock when the batch was given.
        now_ms: i64,
        /// The readings, in order.
        readings: Vec<Reading>,
        /// The JetStream stream sequence of each reading's message (empty
        /// for core NATS): what recognises a message that comes again.
        sources: Vec<u64>,
    },
    /// A tick of the host clock.
    Tick(i64),
}

/// A logged input that is not one this build can read.
#[derive(Debug, thiserror::Error)]
#[error("not an input this build can read: {0}")]
pub struct DecodeError(#[source] postcard::Error);

/// The wire form (version 1). New forms are new variants, appended.
#[derive(Serialize, Deserialize)]
enum Wire {
    V1Readings {
        now_ms: i64,
        /// (sensor, unit), each once.
        sensors: Vec<(String, String)>,
        /// (index into `sensors`, timestamp, value).
        samples: Vec<(u32, i64, f64)>,
        /// The readings' stream sequences as runs: (sequence, readings).
        sources: Vec<(u64, u32)>,
    },
    V1Tick {
        now_ms: i64,
    },
}

impl Input {
    /// Readings in it (0 for a tick).
    pub fn readings(&self) -> usize {
        match self {
            Input::Readings { readings, .. } => readings.len(),
            Input::Tick(_) => 0,
        }
    }

    /// About the bytes the input holds in memory: per reading its sensor id
    /// and unit, its timestamp and value; per source its sequence. (The log
    /// keeps fewer: each sensor once per input.)
    pub fn held_bytes(&self) -> usize {
        const FIXED: usize = 16;
        match self {
            Input::Readings { readings, sources, .. } => {
                let readings: usize = readings.iter().map(|r| r.sensor.len() + r.unit.len() + 16).sum();
                FIXED + readings + 8 * sources.len()
            }
            Input::Tick(_) => FIXED,
        }
    }

    /// The bytes the log keeps.
    pub fn encode(&self) -> Vec<u8> {
        let wire = match self {
            Input::Readings {
                now_ms,
                readings,
                sources,
            } => {
                let mut sensors: Vec<(String, String)> = Vec::new();
                let mut samples = Vec::with_capacity(readings.len());
                for reading in readings {
                    // Batches hold few sensors: a linear search beats hashing.
                    let index = match sensors
                        .iter()
                        .position(|(sensor, unit)| *sensor == reading.sensor && *unit == reading.unit)
                    {
                        Some(index) => index,
                        None => {
                            sensors.push((reading.sensor.clone(), reading.unit.clone()));
                            sensors.len() - 1
                        }
                    };
                    samples.push((index as u32, reading.timestamp_ms, reading.value));
                }
                let mut runs: Vec<(u64, u32)> = Vec::new();
                for source in sources {
                    match runs.last_mut() {
                        Some((last, count)) if last == source => *count += 1,
                        _ => runs.push((*source, 1)),
                    }
                }
                Wire::V1Readings {
                    now_ms: *now_ms,
                    sensors,
                    samples,
                    sources: runs,
                }
            }
            Input::Tick(now_ms) => Wire::V1Tick { now_ms: *now_ms },
        };
        // Plain data into a Vec: cannot fail.
        postcard::to_allocvec(&wire).unwrap_or_default()
    }

    /// The input `bytes` encode.
    pub fn decode(bytes: &[u8]) -> Result<Input, DecodeError> {
        match postcard::from_bytes(bytes).map_err(DecodeError)? {
            Wire::V1Readings {
                now_ms,
                sensors,
                samples,
                sources: runs,
            } => {
                let mut readings = Vec::with_capacity(samples.len());
                for (index, timestamp_ms, value) in samples {
                    let (sensor, unit) = sensors
                        .get(index as usize)
                        .ok_or(DecodeError(postcard::Error::DeserializeBadEncoding))?;
                    readings.push(Reading {
                        sensor: sensor.clone(),
                        timestamp_ms,
                        value,
                        unit: unit.clone(),
                    });
                }
                let mut sources = Vec::new();
                for (source, count) in runs {
                    if sources.len() + count as usize > readings.len() {
                        return Err(DecodeError(postcard::Error::DeserializeBadEncoding));
                    }
                    sources.extend(std::iter::repeat_n(source, count as usize));
                }
                Ok(Input::Readings {
                    now_ms,
                    readings,
                    sources,
                })
            }
            Wire::V1Tick { now_ms } => Ok(Input::Tick(now_ms)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(sensor: &str, timestamp_ms: i64, value: f64) -> Reading {
        Reading {
            sensor: sensor.to_owned(),
            timestamp_ms,
            value,
            unit: "mg/dL".to_owned(),
        }
    }

    #[test]
    fn inputs_round_trip_and_a_reading_costs_little() {
        let readings: Vec<Reading> = (0..256)
            .map(|k| {
                reading(
                    &format!("cgm.subject-{}", k % 4),
                    1_700_000_000_000 + k * 300_000,
                    100.5,
                )
            })
            .collect();
        let sources = (0..256).map(|k| 1000 + k / 3).collect();
        let batch = Input::Readings {
            now_ms: 1_700_000_000_000,
            readings,
            sources,
        };
        let bytes = batch.encode();
        assert_eq!(Input::decode(&bytes).unwrap(), batch);
        assert!(bytes.len() < 256 * 20, "{} bytes for 256 readings", bytes.len());
        let tick = Input::Tick(-5);
        assert_eq!(Input::decode(&tick.encode()).unwrap(), tick);
    }

    #[test]
    fn damaged_or_unknown_bytes_are_refused() {
        let bytes = Input::Readings {
            now_ms: 1,
            readings: vec![reading("a", 1, 1.0)],
            sources: vec![],
        }
        .encode();
        for cut in 0..bytes.len() {
            assert!(Input::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert!(Input::decode(&[9, 0, 0]).is_err(), "a variant from a newer build");
        // A sample naming a sensor the batch does not have.
        let wire = Wire::V1Readings {
            now_ms: 0,
            sensors: vec![],
            samples: vec![(3, 0, 0.0)],
            sources: vec![],
        };
        assert!(Input::decode(&postcard::to_allocvec(&wire).unwrap()).is_err());
        // More sources than readings.
        let wire = Wire::V1Readings {
            now_ms: 0,
            sensors: vec![("a".into(), "u".into())],
            samples: vec![(0, 0, 0.0)],
            sources: vec![(7, 2)],
        };
        assert!(Input::decode(&postcard::to_allocvec(&wire).unwrap()).is_err());
    }
}
