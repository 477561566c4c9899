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

/// The line with its `"digest":"..."` member removed (text-level, so key order is kept).
fn without_digest(line: &str) -> Option<String> {
    let start = line.find(",\"digest\":\"")?;
    let value_start = start + ",\"digest\":\"".len();
    let value_len = line[value_start..].find('"')?;
    Some(format!("{}{}", &line[..start], &line[value_start + value_len + 1..]))
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
