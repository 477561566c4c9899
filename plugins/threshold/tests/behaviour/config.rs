//! Configuration errors name the key at fault.

use crate::*;

#[test]
fn unknown_keys_are_refused_by_name() {
    assert_eq!(init_error(&[("hihg", "12")]), "unknown config key(s): hihg");
    assert_eq!(
        init_error(&[("low", "1"), ("treshold", "3"), ("window", "5m")]),
        "unknown config key(s): treshold, window"
    );
}

#[test]
fn bad_numbers_name_the_key() {
    assert_eq!(
        init_error(&[("low", "cold")]),
        "config key `low`: `cold` is not a finite number"
    );
    assert!(init_error(&[("high", "inf")]).contains("`high`"));
    assert!(init_error(&[("rate_limit", "fast")]).contains("`rate_limit`"));
    assert!(init_error(&[("rate_min_readings", "2.5")]).contains("`rate_min_readings`"));
    assert!(init_error(&[("rate_min_readings", "-3")]).contains("`rate_min_readings`"));
}

#[test]
fn bad_durations_name_the_key() {
    assert!(init_error(&[("rate_window", "10")]).contains("`rate_window`"));
    assert!(init_error(&[("rate_window", "0m")]).contains("`rate_window`"));
    assert!(init_error(&[("repeat", "half an hour")]).contains("`repeat`"));
}

#[test]
fn low_must_be_below_high() {
    assert_eq!(
        init_error(&[("low", "8"), ("high", "2")]),
        "config keys `low` and `high`: `low` (8) must be below `high` (2)"
    );
    let equal = init_error(&[("low", "5"), ("high", "5")]);
    assert!(equal.contains("`low`") && equal.contains("`high`"), "{equal}");
    // Against a default: low 9 with the default high of 8.
    let against_default = init_error(&[("low", "9")]);
    assert!(against_default.contains("`low` (9)") && against_default.contains("`high` (8)"));
}

#[test]
fn rate_settings_must_make_sense() {
    assert!(init_error(&[("rate_limit", "0")]).contains("`rate_limit`"));
    assert!(init_error(&[("rate_limit", "-0.5")]).contains("`rate_limit`"));
    assert!(init_error(&[("rate_min_readings", "1")]).contains("`rate_min_readings`"));
    assert!(init_error(&[("rate_min_readings", "0")]).contains("`rate_min_readings`"));
}

#[test]
fn every_documented_key_is_accepted() {
    plugin(&[
        ("low", "-25"),
        ("high", "-15"),
        ("rate_limit", "1"),
        ("rate_window", "15m"),
        ("rate_min_readings", "4"),
        ("repeat", "1h"),
        ("unit", "degC"),
    ]);
}
