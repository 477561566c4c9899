//! Comparing replay output with a golden file: what the plugin computed,
//! not how it was packaged.
//!
//! Rules (docs/operators.md, "Replay a signed bundle"):
//! - `version` and `digest` are packaging and never compared: a golden file
//!   made from the plain build passes for the signed bundle of the same code,
//!   and a rebuild by another compiler passes too.
//! - Every other member counts. Lines are compared as JSON objects: the same
//!   members with the same values, whatever their order or spacing; a line
//!   that is not a JSON object is compared as text.
//! - The outputs are aligned first (`similar`'s Myers diff, with bounded work
//!   on hostile input), on everything but `seq`, which numbers the outputs
//!   1, 2, 3... and so shifts after an inserted or removed output: such an
//!   output is one [`Change::Removed`] or [`Change::Added`] line, and the lines
//!   after it still match. Two aligned lines agree on `seq` when the numbers
//!   are equal or each is its own line's number.
//! - Aligned lines that still differ, and lines of a changed stretch that
//!   are the same output (the same `type`, `sensor`, `ts`, `code`,
//!   `window_start`, `window_end`) with other values, are
//!   [`Change::Changed`], naming the members that differ (`metrics.mean`).

use serde_json::{Map, Value};
use similar::{Algorithm, DiffOp, capture_diff_slices};

/// Members that are packaging, not what the plugin computed.
pub const IGNORED: [&str; 2] = ["version", "digest"];

/// The member numbering the outputs, compared by alignment (see the module).
const SEQ: &str = "seq";

/// Members that say which output a line is: two lines of a changed stretch
/// with the same values of these are one output computed differently.
const IDENTITY: [&str; 6] = ["type", "sensor", "ts", "code", "window_start", "window_end"];

/// One line of a file, numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberedLine {
    /// 1-based line number.
    pub line: usize,
    /// The line.
    pub text: String,
}

/// What differs between the golden file and the output at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A golden line the output does not have (`-`).
    Removed,
    /// An output line the golden file does not have (`+`).
    Added,
    /// The same output with other values.
    Changed(Vec<FieldDifference>),
}

/// A member whose value differs between two aligned lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldDifference {
    /// The member, nested ones joined by `.` (`metrics.mean`).
    pub field: String,
    /// Its value in the golden line, as JSON (`(absent)` if missing).
    pub expected: String,
    /// Its value in the output line.
    pub actual: String,
}

/// One difference, in output order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineDiff {
    /// What differs.
    pub change: Change,
    /// The golden line (`None` for [`Change::Added`]).
    pub expected: Option<NumberedLine>,
    /// The output line (`None` for [`Change::Removed`]).
    pub actual: Option<NumberedLine>,
    /// The 1-based output line where the difference is: the output line, or
    /// for a removed golden line the one that stands in its place (one past
    /// the last when at the end).
    pub output_line: usize,
}

/// One line parsed once: its alignment keys and, for a JSON object, its members.
struct Parsed<'a> {
    text: &'a str,
    object: Option<Map<String, Value>>,
    /// Everything compared but `seq`.
    content: Key,
    /// What says which output it is.
    identity: Key,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Json(String),
    Text(String),
}

impl<'a> Parsed<'a> {
    fn new(text: &'a str) -> Parsed<'a> {
        let object = match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(object)) => Some(object),
            _ => None,
        };
        let (content, identity) = match &object {
            Some(object) => {
                let content: Map<String, Value> = object
                    .iter()
                    .filter(|(key, _)| key.as_str() != SEQ && !IGNORED.contains(&key.as_str()))
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect();
                let identity: Map<String, Value> = IDENTITY
                    .iter()
                    .filter_map(|key| Some(((*key).to_owned(), object.get(*key)?.clone())))
                    .collect();
                // A map's JSON is in key order: the same members give the same text.
                (
                    Key::Json(Value::Object(content).to_string()),
                    Key::Json(Value::Object(identity).to_string()),
                )
            }
            None => (Key::Text(text.to_owned()), Key::Text(text.to_owned())),
        };
        Parsed {
            text,
            object,
            content,
            identity,
        }
    }
}

/// Every difference between the golden lines `expected` and the output
/// lines `actual`, aligned (see the module); empty when they agree.
pub fn diff(expected: &[&str], actual: &[&str]) -> Vec<LineDiff> {
    let expected: Vec<Parsed> = expected.iter().map(|line| Parsed::new(line)).collect();
    let actual: Vec<Parsed> = actual.iter().map(|line| Parsed::new(line)).collect();
    let content = |lines: &[Parsed]| lines.iter().map(|p| p.content.clone()).collect::<Vec<_>>();
    let mut diffs = Vec::new();
    for op in capture_diff_slices(Algorithm::Myers, &content(&expected), &content(&actual)) {
        match op {
            DiffOp::Equal {
                old_index,
                new_index,
                len,
            } => {
                for i in 0..len {
                    let (e, a) = (old_index + i, new_index + i);
                    let fields = seq_difference(&expected[e], e, &actual[a], a);
                    if !fields.is_empty() {
                        diffs.push(changed(&expected[e], e, &actual[a], a, fields));
                    }
                }
            }
            other => stretch(&expected, other.old_range(), &actual, other.new_range(), &mut diffs),
        }
    }
    diffs
}

/// A stretch where no line agrees: its lines that are the same output (by
/// identity, aligned again) are changed, the others removed or added.
fn stretch(
    expected: &[Parsed],
    old: std::ops::Range<usize>,
    actual: &[Parsed],
    new: std::ops::Range<usize>,
    diffs: &mut Vec<LineDiff>,
) {
    let identity = |lines: &[Parsed]| lines.iter().map(|p| p.identity.clone()).collect::<Vec<_>>();
    let (old_start, new_start) = (old.start, new.start);
    let ops = capture_diff_slices(Algorithm::Myers, &identity(&expected[old]), &identity(&actual[new]));
    for op in ops {
        let (old_range, new_range) = (op.old_range(), op.new_range());
        if let DiffOp::Equal { .. } = op {
            for (e, a) in old_range.zip(new_range) {
                let (e, a) = (old_start + e, new_start + a);
                let fields = field_differences(&expected[e], e, &actual[a], a);
                diffs.push(changed(&expected[e], e, &actual[a], a, fields));
            }
            continue;
        }
        for e in old_range {
            let e = old_start + e;
            diffs.push(LineDiff {
                change: Change::Removed,
                expected: Some(numbered(&expected[e], e)),
                actual: None,
                output_line: new_start + op.new_range().start + 1,
            });
        }
        for a in new_range {
            let a = new_start + a;
            diffs.push(LineDiff {
                change: Change::Added,
                expected: None,
                actual: Some(numbered(&actual[a], a)),
                output_line: a + 1,
            });
        }
    }
}

fn numbered(parsed: &Parsed, index: usize) -> NumberedLine {
    NumberedLine {
        line: index + 1,
        text: parsed.text.to_owned(),
    }
}

fn changed(expected: &Parsed, e: usize, actual: &Parsed, a: usize, fields: Vec<FieldDifference>) -> LineDiff {
    LineDiff {
        change: Change::Changed(fields),
        expected: Some(numbered(expected, e)),
        actual: Some(numbered(actual, a)),
        output_line: a + 1,
    }
}

/// `seq` of two aligned lines (at 0-based `e` and `a`): they agree when equal
/// or when each is its own line's number.
fn seq_difference(expected: &Parsed, e: usize, actual: &Parsed, a: usize) -> Vec<FieldDifference> {
    let (Some(expected_object), Some(actual_object)) = (&expected.object, &actual.object) else {
        return Vec::new();
    };
    let (expected_seq, actual_seq) = (expected_object.get(SEQ), actual_object.get(SEQ));
    let positional = |seq: Option<&Value>, index: usize| seq.and_then(Value::as_u64) == Some(index as u64 + 1);
    if expected_seq == actual_seq || (positional(expected_seq, e) && positional(actual_seq, a)) {
        return Vec::new();
    }
    vec![FieldDifference {
        field: SEQ.to_owned(),
        expected: show(expected_seq),
        actual: show(actual_seq),
    }]
}

/// The members of two lines that differ, nested ones by path, `seq` as in
/// [`seq_difference`]; none for lines that are not both JSON objects.
fn field_differences(expected: &Parsed, e: usize, actual: &Parsed, a: usize) -> Vec<FieldDifference> {
    let (Some(expected_object), Some(actual_object)) = (&expected.object, &actual.object) else {
        return Vec::new();
    };
    let mut fields = seq_difference(expected, e, actual, a);
    object_differences("", expected_object, actual_object, &mut fields);
    fields
}

fn object_differences(
    prefix: &str,
    expected: &Map<String, Value>,
    actual: &Map<String, Value>,
    fields: &mut Vec<FieldDifference>,
) {
    let extra = actual.keys().filter(|key| !expected.contains_key(*key));
    for key in expected.keys().chain(extra) {
        if prefix.is_empty() && (key == SEQ || IGNORED.contains(&key.as_str())) {
            continue;
        }
        let path = format!("{prefix}{key}");
        match (expected.get(key), actual.get(key)) {
            (Some(Value::Object(e)), Some(Value::Object(a))) => {
                object_differences(&format!("{path}."), e, a, fields);
            }
            (e, a) if e != a => fields.push(FieldDifference {
                field: path,
                expected: show(e),
                actual: show(a),
            }),
            _ => {}
        }
    }
}

fn show(value: Option<&Value>) -> String {
    value.map_or("(absent)".to_owned(), Value::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output line as the host writes it.
    fn line(seq: usize, version: &str, sensor: &str, mean: f64) -> String {
        format!(
            r#"{{"type":"summary","device":"replay","plugin":"p","version":"{version}","digest":"sha256:{version}","seq":{seq},"sensor":"{sensor}","window_start":0,"window_end":1,"metrics":{{"n":1.0,"mean":{mean:?}}}}}"#
        )
    }

    fn lines(specs: &[(&str, f64)], version: &str) -> Vec<String> {
        specs
            .iter()
            .enumerate()
            .map(|(i, (sensor, mean))| line(i + 1, version, sensor, *mean))
            .collect()
    }

    fn refs(lines: &[String]) -> Vec<&str> {
        lines.iter().map(String::as_str).collect()
    }

    const SENSORS: [(&str, f64); 4] = [("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 4.0)];

    #[test]
    fn version_and_digest_are_packaging_everything_else_counts() {
        let plain = lines(&SENSORS, "unsigned");
        let signed = lines(&SENSORS, "0.2.0");
        assert_eq!(diff(&refs(&plain), &refs(&signed)), vec![]);
        let other_device = signed[1].replace("\"replay\"", "\"dev-1\"");
        let changes = diff(&[&plain[1]], &[&other_device]);
        assert_eq!(
            changes[0].change,
            Change::Changed(vec![FieldDifference {
                field: "device".into(),
                expected: "\"replay\"".into(),
                actual: "\"dev-1\"".into()
            }])
        );
    }

    #[test]
    fn a_removed_output_is_one_line_and_the_rest_still_match() {
        let golden = lines(&SENSORS, "unsigned");
        let output = lines(&[SENSORS[0], SENSORS[2], SENSORS[3]], "unsigned");
        let changes = diff(&refs(&golden), &refs(&output));
        assert_eq!(changes.len(), 1, "{changes:#?}");
        assert_eq!(changes[0].change, Change::Removed);
        assert_eq!(changes[0].expected.as_ref().map(|l| l.line), Some(2));
        assert_eq!(changes[0].output_line, 2);
    }

    #[test]
    fn an_added_output_is_one_line() {
        let golden = lines(&[SENSORS[0], SENSORS[1], SENSORS[3]], "unsigned");
        let output = lines(&SENSORS, "unsigned");
        let changes = diff(&refs(&golden), &refs(&output));
        assert_eq!(changes.len(), 1, "{changes:#?}");
        assert_eq!(changes[0].change, Change::Added);
        assert_eq!(changes[0].actual.as_ref().map(|l| l.line), Some(3));
    }

    #[test]
    fn a_changed_value_names_its_nested_field_even_next_to_an_insertion() {
        let golden = lines(&[SENSORS[0], SENSORS[1], SENSORS[3]], "unsigned");
        let output = lines(&[SENSORS[0], ("b", 2.5), SENSORS[2], SENSORS[3]], "unsigned");
        let changes = diff(&refs(&golden), &refs(&output));
        assert_eq!(changes.len(), 2, "{changes:#?}");
        assert_eq!(
            changes[0].change,
            Change::Changed(vec![FieldDifference {
                field: "metrics.mean".into(),
                expected: "2.0".into(),
                actual: "2.5".into()
            }])
        );
        assert_eq!(changes[1].change, Change::Added);
        assert_eq!(changes[1].actual.as_ref().map(|l| l.line), Some(3));
    }

    #[test]
    fn a_sequence_number_edited_in_the_golden_file_counts() {
        let golden = lines(&SENSORS, "unsigned");
        let mut edited = golden.clone();
        edited[1] = edited[1].replace("\"seq\":2", "\"seq\":99");
        let changes = diff(&refs(&edited), &refs(&golden));
        assert_eq!(changes.len(), 1, "{changes:#?}");
        let Change::Changed(fields) = &changes[0].change else {
            panic!("{changes:#?}")
        };
        assert_eq!((fields[0].field.as_str(), fields[0].expected.as_str()), ("seq", "99"));
    }

    #[test]
    fn member_order_and_spacing_do_not_count_text_lines_are_compared_whole() {
        let a = r#"{"type":"alert","seq":1,"code":"low"}"#;
        let b = r#"{ "code": "low", "seq": 1, "type": "alert" }"#;
        assert_eq!(diff(&[a], &[b]), vec![]);
        assert_eq!(diff(&["x"], &["x"]), vec![]);
        let changes = diff(&["x"], &["y"]);
        assert_eq!(
            changes.iter().map(|c| c.change.clone()).collect::<Vec<_>>(),
            vec![Change::Removed, Change::Added]
        );
    }

    #[test]
    fn every_line_against_nothing() {
        let golden = lines(&SENSORS, "unsigned");
        let changes = diff(&refs(&golden), &[]);
        assert_eq!(changes.len(), 4);
        assert!(
            changes
                .iter()
                .all(|c| c.change == Change::Removed && c.output_line == 1)
        );
    }
}
