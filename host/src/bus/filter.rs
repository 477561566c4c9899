//! NATS subject filters matched against subjects, as the server matches
//! them: dot-separated tokens, `*` one token, `>` one or more final tokens.

/// Whether `subject` (no wildcards) matches `filter`.
pub fn matches(filter: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for filter_token in filter.split('.') {
        match (filter_token, subject_tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (expected, Some(token)) if expected == token => {}
            _ => return false,
        }
    }
    subject_tokens.next().is_none()
}

/// Whether some subject matches both filters `a` and `b`.
pub fn overlaps(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.split('.'), b.split('.'));
    loop {
        match (a.next(), b.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) | (Some(_), Some(">")) => return true,
            (Some(x), Some(y)) if x == y || x == "*" || y == "*" => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{matches, overlaps};

    #[test]
    fn tokens_and_wildcards_match_as_on_the_server() {
        let cases = [
            ("sensors.cgm.p1", "sensors.cgm.p1", true),
            ("sensors.cgm.p1", "sensors.cgm.p2", false),
            ("sensors.cgm.p1", "sensors.cgm.p1.x", false),
            ("sensors.cgm", "sensors.cgm.p1", false),
            ("sensors.*.p1", "sensors.cgm.p1", true),
            ("sensors.*", "sensors.cgm.p1", false),
            ("sensors.*.*", "sensors.cgm.p1", true),
            ("sensors.>", "sensors.cgm.p1", true),
            ("sensors.>", "sensors", false),
            ("gateway.>", "sensors.gateway.x", false),
            (">", "anything.at.all", true),
            ("sensors.cgm.gateway.>", "sensors.cgm.gateway.ward-3", true),
            ("sensors.cgm.gateway.>", "sensors.cgm.gateway", false),
            ("sensors.cgm.gateway.>", "sensors.cgm.p1", false),
        ];
        for (filter, subject, expected) in cases {
            assert_eq!(matches(filter, subject), expected, "{filter} vs {subject}");
        }
    }

    #[test]
    fn overlap_is_symmetric_and_counts_tokens() {
        assert!(overlaps("a.*.c", "a.b.>"));
        assert!(overlaps("a.b.>", "a.*.c"));
        assert!(!overlaps("a.b", "a.b.>"));
        assert!(!overlaps("a.b.c", "a.b"));
        assert!(overlaps("a.b", "a.*"));
    }
}
