//! Non-finite values and unit mismatches: never alerted on, counted as `invalid`.

use edgewise_sdk::Reading;

use crate::*;

#[test]
fn non_finite_values_never_alert_and_are_counted() {
    let mut p = plugin(&[]);
    assert!(step(&mut p, at(0), 5.0).is_empty());
    assert!(step(&mut p, at(1), f64::NAN).is_empty());
    assert!(step(&mut p, at(2), f64::INFINITY).is_empty());
    assert!(step(&mut p, at(3), f64::NEG_INFINITY).is_empty());
    assert!(step(&mut p, at(4), 7.0).is_empty());
    let out = tick(&mut p, at(60));
    let sd = 2.0f64.sqrt(); // 5 and 7
    assert_summary(
        &out.summaries()[0],
        "probe-1",
        T0,
        &[
            ("n", 2.0),
            ("mean", 6.0),
            ("min", 5.0),
            ("max", 7.0),
            ("sd", sd),
            ("invalid", 3.0),
        ],
    );
}

#[test]
fn non_finite_values_neither_repeat_nor_resolve() {
    let mut p = plugin(&[]);
    assert_eq!(step(&mut p, at(0), 9.0), ["above-high"]);
    assert!(step(&mut p, at(30), f64::NAN).is_empty());
    assert!(step(&mut p, at(31), f64::NEG_INFINITY).is_empty());
    assert_eq!(step(&mut p, at(32), 9.0), ["above-high"]);
    assert!(step(&mut p, at(33), f64::NAN).is_empty());
    assert_eq!(step(&mut p, at(34), 5.0), ["above-high-resolved"]);
}

#[test]
fn non_finite_values_stay_out_of_the_rate_window() {
    // Valid (0,4) (2,5) (4,6): exactly 0.5 per minute. Were the infinity in
    // the window, the slope would be undefined and nothing would be raised.
    let mut p = plugin(&[]);
    assert!(step(&mut p, at(0), 4.0).is_empty());
    assert!(step(&mut p, at(1), f64::INFINITY).is_empty());
    assert!(step(&mut p, at(2), 5.0).is_empty());
    assert!(step(&mut p, at(3), f64::NAN).is_empty());
    assert_eq!(step(&mut p, at(4), 6.0), ["rate-of-change"]);
}

#[test]
fn an_invalid_reading_still_moves_the_clock() {
    let mut p = plugin(&[]);
    assert!(step(&mut p, at(10), f64::NAN).is_empty());
    // Older than the invalid reading: late, so not judged.
    assert!(step(&mut p, at(5), 9.0).is_empty());
    assert_eq!(step(&mut p, at(15), 9.0), ["above-high"]);
}

#[test]
fn a_unit_mismatch_never_alerts_and_is_counted() {
    let mut p = plugin(&[("unit", "degC")]);
    let out = feed(
        &mut p,
        &[
            Reading::new("probe-1", at(0), 50.0, "degF"), // mismatch: ignored
            Reading::new("probe-1", at(10), 5.0, "degC"),
            Reading::new("probe-1", at(20), 9.0, ""), // no unit: taken as degC
            Reading::new("probe-1", at(30), 10.0, "DEGC"), // units are case-sensitive
        ],
    );
    assert_eq!(codes(&out), ["above-high"]);
    assert_eq!(out.alerts()[0].timestamp_ms, at(20));
    let out = tick(&mut p, at(60));
    assert_summary(
        &out.summaries()[0],
        "probe-1",
        T0,
        &[
            ("n", 2.0),
            ("mean", 7.0),
            ("min", 5.0),
            ("max", 9.0),
            ("sd", 8.0f64.sqrt()),
            ("invalid", 2.0),
        ],
    );
}

#[test]
fn without_a_unit_setting_any_unit_is_accepted() {
    let mut p = plugin(&[]);
    let out = feed(&mut p, &[Reading::new("probe-1", at(0), 50.0, "degF")]);
    assert_eq!(codes(&out), ["above-high"]);
    assert_eq!(out.alerts()[0].message, "Value 50 degF is above the high limit 8 degF.");
}
