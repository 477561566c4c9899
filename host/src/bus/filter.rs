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

/// Whether every subject that matches `inner` matches `outer` too (a
/// stream on `outer` stores everything published on `inner`).
pub fn covers(outer: &str, inner: &str) -> bool {
    let (mut outer, mut inner) = (outer.split('.'), inner.split('.'));
    loop {
        match (outer.next(), inner.next()) {
            (None, None) => return true,
            (Some(">"), Some(_)) => return true,
            // `*` takes one token of any name, never the many of `>`.
            (Some("*"), Some(token)) if token != ">" => {}
            (Some(x), Some(y)) if x == y && x != "*" && x != ">" => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{covers, matches, overlaps};

    #[test]
    fn a_filter_covers_another_only_if_it_takes_every_subject_of_it() {
        for (outer, inner) in [
            (">", "edgewise.d.up.>"),
            ("edgewise.*.up.>", "edgewise.d.up.>"),
            ("edgewise.d.up.>", "edgewise.d.up.>"),
            ("edgewise.d.up.*", "edgewise.d.up.x"),
            ("edgewise.*.up.>", "edgewise.*.up.>"),
        ] {
            assert!(covers(outer, inner), "{outer} covers {inner}");
        }
        for (outer, inner) in [
            ("edgewise.e.up.>", "edgewise.d.up.>"),
            ("edgewise.d.up.alerts.>", "edgewise.d.up.>"),
            ("edgewise.d.up.*", "edgewise.d.up.>"),
            ("edgewise.d.up", "edgewise.d.up.>"),
            ("edgewise.d.up.>", "edgewise.*.up.>"),
        ] {
            assert!(!covers(outer, inner), "{outer} does not cover {inner}");
        }
    }

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
