//! Comparing replay output with a golden file.
//!
//! Lines are compared as JSON envelopes with the `digest` field left out: a
//! golden file records the plugin's behaviour, and must not break when the
//! same source is rebuilt by another compiler. Everything else must match
//! byte for byte.

/// One line that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineDiff {
    /// 1-based line number.
    pub line: usize,
    /// The golden file's line (`None` past its end).
    pub expected: Option<String>,
    /// The output's line (`None` past its end).
    pub actual: Option<String>,
}

impl LineDiff {
    /// When both lines are JSON objects: the first field (in the golden
    /// line's order, then any extra field) whose value differs, as
    /// `(name, expected, actual)`, ignoring `digest`. Long lines are hard to
    /// compare by eye; this says where to look.
    pub fn first_field_difference(&self) -> Option<(String, String, String)> {
        use serde_json::{Map, Value};
        let parse = |line: &Option<String>| -> Option<Map<String, Value>> {
            serde_json::from_str::<Value>(line.as_deref()?)
                .ok()?
                .as_object()
                .cloned()
        };
        let (expected, actual) = (parse(&self.expected)?, parse(&self.actual)?);
        let show = |value: Option<&Value>| value.map_or("(absent)".to_owned(), Value::to_string);
        expected
            .keys()
            .chain(actual.keys().filter(|k| !expected.contains_key(*k)))
            .filter(|key| *key != "digest")
            .find(|key| expected.get(*key) != actual.get(*key))
            .map(|key| (key.clone(), show(expected.get(key)), show(actual.get(key))))
    }
}

/// Compare `actual` lines with `expected` lines; return up to `max` differences.
pub fn compare(expected: &[&str], actual: &[&str], max: usize) -> Vec<LineDiff> {
    let count = expected.len().max(actual.len());
    (0..count)
        .filter_map(|i| {
            let (e, a) = (expected.get(i).copied(), actual.get(i).copied());
            let same = match (e, a) {
                (Some(e), Some(a)) => e == a || without_digest(e) == without_digest(a),
                _ => false,
            };
            (!same).then(|| LineDiff {
                line: i + 1,
                expected: e.map(str::to_owned),
                actual: a.map(str::to_owned),
            })
        })
        .take(max)
        .collect()
}

/// The line with its `"digest":"..."` member removed (text-level, so key
/// order is kept); the line itself when it has none.
fn without_digest(line: &str) -> std::borrow::Cow<'_, str> {
    const KEY: &str = ",\"digest\":\"";
    let Some(start) = line.find(KEY) else {
        return line.into();
    };
    let value_start = start + KEY.len();
    match line[value_start..].find('"') {
        Some(value_len) => format!("{}{}", &line[..start], &line[value_start + value_len + 1..]).into(),
        None => line.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_is_ignored_everything_else_is_not() {
        let a = r#"{"type":"alert","digest":"sha256:aa","seq":1}"#;
        let b = r#"{"type":"alert","digest":"sha256:bb","seq":1}"#;
        let c = r#"{"type":"alert","digest":"sha256:aa","seq":2}"#;
        assert!(compare(&[a], &[b], 5).is_empty());
        assert_eq!(compare(&[a], &[c], 5)[0].line, 1);
    }

    #[test]
    fn names_the_first_differing_field() {
        let diff = &compare(
            &[r#"{"type":"alert","digest":"a","seq":1,"code":"low"}"#],
            &[r#"{"type":"alert","digest":"b","seq":1,"code":"high"}"#],
            5,
        )[0];
        assert_eq!(
            diff.first_field_difference(),
            Some(("code".into(), "\"low\"".into(), "\"high\"".into()))
        );
        assert_eq!(compare(&["x"], &["y"], 5)[0].first_field_difference(), None);
    }

    #[test]
    fn lines_without_a_digest_are_compared_whole() {
        assert_eq!(compare(&["x"], &["y"], 5).len(), 1);
        assert!(compare(&["x"], &["x"], 5).is_empty());
    }

    #[test]
    fn missing_and_extra_lines() {
        let diffs = compare(&["x", "y"], &["x"], 5);
        assert_eq!(
            diffs,
            vec![LineDiff {
                line: 2,
                expected: Some("y".into()),
                actual: None
            }]
        );
        let diffs = compare(&["x"], &["x", "z", "w"], 1);
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].actual.as_deref(), Some("z"));
    }
}
