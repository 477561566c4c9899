//! Decoding sensor payloads (DESIGN "Bus: subjects and payloads").
//!
//! A payload is a JSON object `{"ts": <ms since epoch or RFC 3339>, "value":
//! <number>, "unit": "mg/dL", "sensor": <optional>}` or a JSON array of such
//! objects. A missing `sensor` defaults to the subject without its first
//! token (`sensors.cgm-1` -> `cgm-1`).
//!
//! Decoding takes a typed fast path first (integer `ts`, borrowed strings, no
//! intermediate JSON tree: the common payload, decoded at every reading). Anything
//! it does not accept goes through the general path, which alone
//! decides what is refused and why; both give the same readings for
//! every payload the fast path accepts (a property test checks it).

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::model::Reading;

/// Payloads larger than this are refused before parsing.
pub const MAX_PAYLOAD_BYTES: usize = 64 << 10;

/// Longest sensor id, from the payload or the subject. Ingest keeps the ids
/// of every plugin's sensors (up to its `max_sensors`) and plugins keep state
/// per id: without this, ids as long as a payload would make that memory
/// 64 KiB times the sensor cap.
pub const MAX_SENSOR_BYTES: usize = 256;

/// Why a payload was refused. Each reason names the offending field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PayloadError {
    /// Over [`MAX_PAYLOAD_BYTES`].
    #[error("payload of {0} bytes is over the {MAX_PAYLOAD_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not JSON at all.
    #[error("payload is not JSON: {0}")]
    NotJson(String),
    /// JSON, but neither an object nor an array of objects.
    #[error("payload must be a JSON object or an array of objects")]
    NotAnObject,
    /// An empty array.
    #[error("payload is an empty array")]
    Empty,
    /// No `value`.
    #[error("reading {index}: missing `value`")]
    MissingValue {
        /// Position in the array (0 for an object).
        index: usize,
    },
    /// `value` is not a finite number.
    #[error("reading {index}: `value` must be a number, found {found}")]
    BadValue {
        /// Position in the array.
        index: usize,
        /// What was there instead.
        found: String,
    },
    /// No `ts`.
    #[error("reading {index}: missing `ts`")]
    MissingTimestamp {
        /// Position in the array.
        index: usize,
    },
    /// `ts` neither integer milliseconds nor RFC 3339.
    #[error("reading {index}: `ts` must be milliseconds since the epoch or an RFC 3339 time, found {found}")]
    BadTimestamp {
        /// Position in the array.
        index: usize,
        /// What was there instead.
        found: String,
    },
    /// `sensor` or `unit` present but not a string, or no sensor at all.
    #[error("reading {index}: {reason}")]
    BadField {
        /// Position in the array.
        index: usize,
        /// What is wrong.
        reason: String,
    },
}

/// Decode a raw payload received on `subject`.
pub fn decode(subject: &str, bytes: &[u8]) -> Result<Vec<Reading>, PayloadError> {
    let mut readings = Vec::new();
    decode_into(subject, bytes, &mut readings)?;
    Ok(readings)
}

/// Decode a raw payload received on `subject`, appending its readings to
/// `readings` (left as it was on an error): ingest decodes a whole batch of
/// messages into one vector.
pub fn decode_into(subject: &str, bytes: &[u8], readings: &mut Vec<Reading>) -> Result<(), PayloadError> {
    if bytes.len() > MAX_PAYLOAD_BYTES {
        return Err(PayloadError::TooLarge(bytes.len()));
    }
    let before = readings.len();
    if decode_fast(subject, bytes, readings).is_some() {
        return Ok(());
    }
    readings.truncate(before);
    readings.extend(decode_general(subject, bytes)?);
    Ok(())
}

/// The general path: parse into a JSON tree (refusing a key given twice),
/// then check each field.
fn decode_general(subject: &str, bytes: &[u8]) -> Result<Vec<Reading>, PayloadError> {
    let value = parse_distinct(bytes).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    decode_value(subject, &value)
}

/// `bytes` as a JSON tree, refused if any object in it has a key twice
/// ([`DistinctKeys`]): what ingest decodes, and what replay reads of a
/// recorded message, so that a recording replays as the host took it live.
pub fn parse_distinct(bytes: &[u8]) -> serde_json::Result<Value> {
    serde_json::from_slice(bytes).map(|DistinctKeys(value)| value)
}

/// A JSON value in which no object has the same key twice, at any depth.
/// serde_json keeps the last of them, another reader may take the first: a
/// reading `{"value":45,"value":120}` must not be a 120 here and a 45 to
/// whoever else reads the bus (the fast path's derive refuses it already).
struct DistinctKeys(Value);

impl<'de> Deserialize<'de> for DistinctKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<DistinctKeys, D::Error> {
        deserializer.deserialize_any(DistinctKeysVisitor)
    }
}

struct DistinctKeysVisitor;

impl<'de> Visitor<'de> for DistinctKeysVisitor {
    type Value = DistinctKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<DistinctKeys, E> {
        Ok(DistinctKeys(Value::Bool(v)))
    }

    fn visit_i64<E>(self, v: i64) -> Result<DistinctKeys, E> {
        Ok(DistinctKeys(Value::from(v)))
    }

    fn visit_u64<E>(self, v: u64) -> Result<DistinctKeys, E> {
        Ok(DistinctKeys(Value::from(v)))
    }

    fn visit_f64<E>(self, v: f64) -> Result<DistinctKeys, E> {
        Ok(DistinctKeys(Value::from(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<DistinctKeys, E> {
        Ok(DistinctKeys(Value::String(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<DistinctKeys, E> {
        Ok(DistinctKeys(Value::String(v)))
    }

    fn visit_unit<E>(self) -> Result<DistinctKeys, E> {
        Ok(DistinctKeys(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DistinctKeys, A::Error> {
        let mut items = Vec::new();
        while let Some(DistinctKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(DistinctKeys(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<DistinctKeys, A::Error> {
        let mut fields = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let DistinctKeys(value) = map.next_value()?;
            if fields.contains_key(&key) {
                return Err(serde::de::Error::custom(format_args!("duplicate key `{key}`")));
            }
            fields.insert(key, value);
        }
        Ok(DistinctKeys(Value::Object(fields)))
    }
}

/// One reading as the fast path takes it: `ts` in integer milliseconds.
#[derive(Deserialize)]
struct FastReading<'a> {
    ts: i64,
    value: f64,
    #[serde(borrow, default)]
    sensor: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    unit: Option<Cow<'a, str>>,
}

/// The fast path, appending to `readings`: `None` (with some readings
/// perhaps appended, for the caller to remove) when the payload is anything
/// but an object, or a non-empty array of objects, with integer `ts`,
/// numeric `value`, and string or absent `sensor` (non-empty) and `unit`.
fn decode_fast(subject: &str, bytes: &[u8], readings: &mut Vec<Reading>) -> Option<()> {
    let first = bytes.iter().find(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t'))?;
    match first {
        b'{' => readings.push(fast_reading(subject, serde_json::from_slice(bytes).ok()?)?),
        b'[' => {
            let items: Vec<FastReading> = serde_json::from_slice(bytes).ok()?;
            if items.is_empty() {
                return None;
            }
            for item in items {
                readings.push(fast_reading(subject, item)?);
            }
        }
        _ => return None,
    }
    Some(())
}

fn fast_reading(subject: &str, item: FastReading) -> Option<Reading> {
    let sensor = match item.sensor {
        None => subject_tail(subject)?,
        Some(sensor) if sensor.is_empty() => return None,
        Some(sensor) => sensor.into_owned(),
    };
    if sensor.len() > MAX_SENSOR_BYTES {
        return None;
    }
    Some(Reading {
        sensor,
        timestamp_ms: item.ts,
        value: Some(item.value).filter(|v| v.is_finite())?,
        unit: item.unit.map(Cow::into_owned).unwrap_or_default(),
    })
}

/// Decode a payload already parsed as JSON (as in recorded-message files).
pub fn decode_value(subject: &str, payload: &Value) -> Result<Vec<Reading>, PayloadError> {
    match payload {
        Value::Object(_) => Ok(vec![decode_one(subject, 0, payload)?]),
        Value::Array(items) if items.is_empty() => Err(PayloadError::Empty),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(index, item)| decode_one(subject, index, item))
            .collect(),
        _ => Err(PayloadError::NotAnObject),
    }
}

fn decode_one(subject: &str, index: usize, item: &Value) -> Result<Reading, PayloadError> {
    let Value::Object(fields) = item else {
        return Err(PayloadError::NotAnObject);
    };
    let value = match fields.get("value") {
        None | Some(Value::Null) => return Err(PayloadError::MissingValue { index }),
        Some(Value::Number(number)) => {
            number
                .as_f64()
                .filter(|v| v.is_finite())
                .ok_or_else(|| PayloadError::BadValue {
                    index,
                    found: number.to_string(),
                })?
        }
        Some(other) => {
            return Err(PayloadError::BadValue {
                index,
                found: describe(other),
            });
        }
    };
    let timestamp_ms = match fields.get("ts") {
        None | Some(Value::Null) => return Err(PayloadError::MissingTimestamp { index }),
        Some(ts) => parse_timestamp(ts).ok_or_else(|| PayloadError::BadTimestamp {
            index,
            found: describe(ts),
        })?,
    };
    let sensor = match fields.get("sensor") {
        None | Some(Value::Null) => subject_tail(subject).ok_or_else(|| PayloadError::BadField {
            index,
            reason: format!("no `sensor` field and subject `{subject}` has no sensor token"),
        })?,
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(other) => {
            return Err(PayloadError::BadField {
                index,
                reason: format!("`sensor` must be a non-empty string, found {}", describe(other)),
            });
        }
    };
    if sensor.len() > MAX_SENSOR_BYTES {
        return Err(PayloadError::BadField {
            index,
            reason: format!(
                "the sensor id is {} bytes long, over the {MAX_SENSOR_BYTES}-byte limit",
                sensor.len()
            ),
        });
    }
    let unit = match fields.get("unit") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(PayloadError::BadField {
                index,
                reason: format!("`unit` must be a string, found {}", describe(other)),
            });
        }
    };
    Ok(Reading {
        sensor,
        timestamp_ms,
        value,
        unit,
    })
}

/// `ts` as integer milliseconds, or an RFC 3339 string.
fn parse_timestamp(ts: &Value) -> Option<i64> {
    match ts {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => {
            let time = OffsetDateTime::parse(s, &Rfc3339).ok()?;
            i64::try_from(time.unix_timestamp_nanos() / 1_000_000).ok()
        }
        _ => None,
    }
}

/// The subject without its first token: `sensors.ward3.bed7` -> `ward3.bed7`.
fn subject_tail(subject: &str) -> Option<String> {
    subject_sensor(subject).map(str::to_owned)
}

/// The sensor a subject names: the subject without its first token
/// (`sensors.ward3.bed7` -> `ward3.bed7`); `None` for a single token.
pub fn subject_sensor(subject: &str) -> Option<&str> {
    subject.split_once('.').map(|(_, tail)| tail).filter(|t| !t.is_empty())
}

/// A short description of a JSON value for error messages.
fn describe(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 40 {
        format!("{}...", text.chars().take(40).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_and_array_payloads() {
        let one = decode("sensors.cgm-1", br#"{"ts":1434300000000,"value":49,"unit":"mg/dL"}"#).unwrap();
        assert_eq!(
            one,
            vec![Reading {
                sensor: "cgm-1".into(),
                timestamp_ms: 1434300000000,
                value: 49.0,
                unit: "mg/dL".into()
            }]
        );
        let many = decode(
            "sensors.x",
            br#"[{"ts":"2015-06-14T16:40:00Z","value":100.5,"sensor":"a"},{"ts":1,"value":2}]"#,
        )
        .unwrap();
        assert_eq!(many[0].timestamp_ms, 1434300000000);
        assert_eq!(many[0].sensor, "a");
        assert_eq!(many[1].sensor, "x");
        assert_eq!(many[1].unit, "");
    }

    #[test]
    fn every_kind_of_bad_payload_has_its_reason() {
        let cases: &[(&[u8], &str)] = &[
            (b"not json", "payload is not JSON"),
            (b"42", "payload must be a JSON object"),
            (b"[]", "payload is an empty array"),
            (br#"{"ts":1}"#, "reading 0: missing `value`"),
            (
                br#"{"ts":1,"value":"49"}"#,
                "reading 0: `value` must be a number, found \"49\"",
            ),
            (br#"{"value":1}"#, "reading 0: missing `ts`"),
            (
                br#"{"ts":"yesterday","value":1}"#,
                "reading 0: `ts` must be milliseconds",
            ),
            (br#"{"ts":1.5,"value":1}"#, "reading 0: `ts` must be milliseconds"),
            (
                br#"[{"ts":1,"value":1},{"ts":1,"value":1,"sensor":7}]"#,
                "reading 1: `sensor` must be a non-empty string",
            ),
            (br#"{"ts":1,"value":1,"unit":5}"#, "reading 0: `unit` must be a string"),
            // A key twice: which one a reader takes is up to the reader (the
            // last, here, before); a 45 mg/dL must not pass as 120.
            (
                br#"{"ts":1,"value":45,"value":120}"#,
                "payload is not JSON: duplicate key `value`",
            ),
            (
                br#"[{"ts":1,"value":100},{"ts":2,"ts":3,"value":100}]"#,
                "payload is not JSON: duplicate key `ts`",
            ),
        ];
        for (payload, expected) in cases {
            let error = decode("sensors.cgm", payload).unwrap_err().to_string();
            assert!(
                error.starts_with(expected),
                "{:?}: {error}",
                String::from_utf8_lossy(payload)
            );
        }
        let big = vec![b' '; MAX_PAYLOAD_BYTES + 1];
        assert_eq!(
            decode("sensors.cgm", &big),
            Err(PayloadError::TooLarge(MAX_PAYLOAD_BYTES + 1))
        );
        assert!(matches!(
            decode("sensors", br#"{"ts":1,"value":1}"#),
            Err(PayloadError::BadField { .. })
        ));
    }

    #[test]
    fn sensor_ids_are_bounded_from_the_payload_and_from_the_subject() {
        let longest = "s".repeat(MAX_SENSOR_BYTES);
        let payload = format!(r#"{{"ts":1,"value":1,"sensor":"{longest}"}}"#);
        assert_eq!(decode("sensors.a", payload.as_bytes()).unwrap()[0].sensor, longest);
        let payload = format!(r#"{{"ts":1,"value":1,"sensor":"{longest}x"}}"#);
        let error = decode("sensors.a", payload.as_bytes()).unwrap_err().to_string();
        assert!(error.contains("257 bytes long, over the 256-byte limit"), "{error}");
        let subject = format!("sensors.{longest}x");
        let error = decode(&subject, br#"{"ts":1,"value":1}"#).unwrap_err().to_string();
        assert!(error.contains("over the 256-byte limit"), "{error}");
        assert_eq!(subject_sensor("sensors.cgm.p1"), Some("cgm.p1"));
        assert_eq!(subject_sensor("sensors"), None);
        assert_eq!(subject_sensor("sensors."), None);
    }

    mod fast_path {
        use super::*;
        use proptest::prelude::*;

        /// JSON text for a field's value, of every type the fields may get.
        fn json_value() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<i64>().prop_map(|n| n.to_string()),
                (i64::MAX as u64..=u64::MAX).prop_map(|n| n.to_string()),
                any::<f64>()
                    .prop_filter("finite", |v| v.is_finite())
                    .prop_map(|v| format!("{v:?}")),
                Just("1e400".to_owned()),
                Just("-0.0".to_owned()),
                Just("null".to_owned()),
                Just("true".to_owned()),
                Just("\"\"".to_owned()),
                Just("\"cgm-7\"".to_owned()),
                Just("\"mg\\/dL \\u00e9\"".to_owned()),
                Just("\"2015-06-14T16:40:00Z\"".to_owned()),
                Just("[1,2]".to_owned()),
                Just("{\"a\":{}}".to_owned()),
            ]
        }

        fn object() -> impl Strategy<Value = String> {
            let key = prop_oneof![
                Just("ts"),
                Just("value"),
                Just("sensor"),
                Just("unit"),
                Just("\\u0074s"),
                Just("extra")
            ];
            prop::collection::vec((key, json_value()), 0..6).prop_map(|fields| {
                let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\": {v}")).collect();
                format!("{{{}}}", body.join(", "))
            })
        }

        fn payload() -> impl Strategy<Value = String> {
            prop_oneof![
                object(),
                prop::collection::vec(object(), 0..4).prop_map(|items| format!(" [{}]\n", items.join(","))),
                json_value(),
                object().prop_map(|o| format!("{o} trailing")),
            ]
        }

        /// A well-formed reading, so that the fast path is taken often.
        fn good_object() -> impl Strategy<Value = String> {
            (
                any::<i64>(),
                -1e6f64..1e6,
                prop::option::of("[a-z0-9-]{0,8}"),
                prop::option::of("[a-zA-Z/]{0,6}"),
            )
                .prop_map(|(ts, value, sensor, unit)| {
                    let mut text = format!("{{\"ts\":{ts},\"value\":{value:?}");
                    if let Some(sensor) = sensor {
                        text.push_str(&format!(",\"sensor\":\"{sensor}\""));
                    }
                    if let Some(unit) = unit {
                        text.push_str(&format!(",\"unit\":\"{unit}\""));
                    }
                    text.push('}');
                    text
                })
        }

        proptest! {
            #[test]
            fn gives_what_the_general_path_gives(
                text in prop_oneof![payload(), good_object(), prop::collection::vec(good_object(), 1..4).prop_map(|v| format!("[{}]", v.join(",")))],
                subject in prop_oneof![Just("sensors.cgm-1"), Just("sensors")],
            ) {
                prop_assert_eq!(decode(subject, text.as_bytes()), decode_general(subject, text.as_bytes()), "{}", text);
            }
        }

        #[test]
        fn takes_the_common_payloads() {
            let fast = |subject: &str, text: &[u8]| {
                let mut readings = Vec::new();
                decode_fast(subject, text, &mut readings).map(|()| readings)
            };
            for text in [
                r#"{"ts":1434300000000,"value":49,"unit":"mg/dL"}"#,
                r#"[{"ts":1,"value":2.5,"sensor":"a"},{"value":3,"ts":2,"extra":[1]}]"#,
            ] {
                let readings = fast("sensors.cgm-1", text.as_bytes());
                assert!(readings.is_some(), "{text}");
                assert_eq!(readings.map(Ok), Some(decode_general("sensors.cgm-1", text.as_bytes())));
            }
            // RFC 3339 times and refused payloads take the general path.
            assert!(fast("sensors.x", br#"{"ts":"2015-06-14T16:40:00Z","value":1}"#).is_none());
            assert!(fast("sensors.x", br#"{"ts":1,"value":1,"sensor":""}"#).is_none());
            assert!(fast("sensors.x", b"[]").is_none());
        }

        #[test]
        fn decoding_into_a_batch_appends_or_leaves_it_as_it_was() {
            let mut batch = decode("sensors.a", br#"{"ts":1,"value":1}"#).unwrap();
            // The second reading fails the fast path after the first was taken.
            let mixed = br#"[{"ts":2,"value":2},{"ts":"2015-06-14T16:40:00Z","value":3}]"#;
            decode_into("sensors.a", mixed, &mut batch).unwrap();
            assert_eq!(batch.iter().map(|r| r.value).collect::<Vec<_>>(), [1.0, 2.0, 3.0]);
            let refused = br#"[{"ts":4,"value":4},{"ts":5,"value":"x"}]"#;
            assert!(decode_into("sensors.a", refused, &mut batch).is_err());
            assert_eq!(batch.len(), 3);
        }
    }
}
