//! Rate-of-change alerts: least-squares slope over the rate window.

use edgewise_sdk::Severity;

use crate::*;

#[test]
fn a_rise_at_the_limit_or_faster_alerts_once_enough_readings() {
    let mut p = plugin(&[]);
    assert!(step(&mut p, at(0), 4.0).is_empty());
    // Two readings give a slope, but 3 are required by default.
    assert!(step(&mut p, at(1), 4.6).is_empty());
    let out = feed(&mut p, &[probe(at(2), 5.2)]);
    assert_eq!(codes(&out), ["rate-of-change"]);
    let alert = &out.alerts()[0];
    assert_eq!(alert.severity, Severity::Warning);
    assert_eq!(alert.value, Some(5.2));
    assert_eq!(
        alert.message,
        "Value 5.2 degC is changing at +0.6 degC per minute; the limit is 0.5 degC per minute."
    );
}

#[test]
fn a_fall_alerts_too() {
    let mut p = plugin(&[]);
    assert!(step(&mut p, at(0), 6.0).is_empty());
    assert!(step(&mut p, at(1), 5.4).is_empty());
    let out = feed(&mut p, &[probe(at(2), 4.8)]);
    assert_eq!(codes(&out), ["rate-of-change"]);
    assert_eq!(
        out.alerts()[0].message,
        "Value 4.8 degC is changing at -0.6 degC per minute; the limit is 0.5 degC per minute."
    );
}

#[test]
fn exactly_the_limit_alerts_and_just_below_does_not() {
    // Slope (0,4) (1,4.5) (2,5): exactly 0.5 per minute.
    let mut p = plugin(&[]);
    step(&mut p, at(0), 4.0);
    step(&mut p, at(1), 4.5);
    assert_eq!(step(&mut p, at(2), 5.0), ["rate-of-change"]);

    // Slope 0.49 per minute, rising and falling.
    let mut p = plugin(&[]);
    for (minute, value) in [(0, 4.0), (1, 4.49), (2, 4.98)] {
        assert!(step(&mut p, at(minute), value).is_empty());
    }
    let mut p = plugin(&[]);
    for (minute, value) in [(0, 4.98), (1, 4.49), (2, 4.0)] {
        assert!(step(&mut p, at(minute), value).is_empty());
    }
}

#[test]
fn fewer_than_min_readings_never_alert() {
    // 4 degC per minute between two readings: not judged with the default of 3...
    let mut p = plugin(&[]);
    assert!(step(&mut p, at(0), 3.0).is_empty());
    assert!(step(&mut p, at(1), 7.0).is_empty());
    // ...but judged when 2 are enough.
    let mut p = plugin(&[("rate_min_readings", "2")]);
    assert!(step(&mut p, at(0), 3.0).is_empty());
    assert_eq!(step(&mut p, at(1), 7.0), ["rate-of-change"]);
}

#[test]
fn the_window_is_inclusive_of_its_oldest_edge() {
    // (0, 3) (5, 5.5) (10, 8): 0.5 per minute; the first reading is exactly 10m old.
    let mut p = plugin(&[]);
    step(&mut p, at(0), 3.0);
    step(&mut p, at(5), 5.5);
    assert_eq!(step(&mut p, at(10), 8.0), ["rate-of-change"]);

    // One millisecond later the first reading has left: two readings, not judged.
    let mut p = plugin(&[]);
    step(&mut p, at(0), 3.0);
    step(&mut p, at(5), 5.5);
    assert!(step(&mut p, at(10) + 1, 8.0).is_empty());
}

#[test]
fn slowing_down_resolves() {
    let mut p = plugin(&[]);
    step(&mut p, at(0), 4.0);
    step(&mut p, at(1), 4.6);
    assert_eq!(step(&mut p, at(2), 5.2), ["rate-of-change"]);
    // (0,4) (1,4.6) (2,5.2) (3,5.2): sxy 2.1 / sxx 5 = 0.42 per minute.
    let out = feed(&mut p, &[probe(at(3), 5.2)]);
    assert_eq!(codes(&out), ["rate-of-change-resolved"]);
    assert_eq!(out.alerts()[0].severity, Severity::Info);
    assert_eq!(
        out.alerts()[0].message,
        "Value 5.2 degC is changing at +0.42 degC per minute, within the limit of 0.5 degC per minute."
    );
    assert!(step(&mut p, at(4), 5.2).is_empty());
}

#[test]
fn a_persisting_rate_repeats_at_the_interval() {
    // 0.6 per minute for 33 minutes (high raised out of the way).
    let mut p = plugin(&[("high", "100")]);
    let mut raised = Vec::new();
    for minute in 0..=33 {
        if !step(&mut p, at(minute), 4.0 + 0.6 * minute as f64).is_empty() {
            raised.push(minute);
        }
    }
    assert_eq!(raised, [2, 32]);
}

#[test]
fn an_unjudgeable_rate_neither_repeats_nor_resolves() {
    let mut p = plugin(&[]);
    step(&mut p, at(0), 4.0);
    step(&mut p, at(1), 4.6);
    assert_eq!(step(&mut p, at(2), 5.2), ["rate-of-change"]);
    // After a gap the window holds too few readings to say anything: no change,
    // even past the repeat interval.
    assert!(step(&mut p, at(40), 5.2).is_empty());
    assert!(step(&mut p, at(41), 5.2).is_empty());
    // Three flat readings: judged, and resolved.
    assert_eq!(step(&mut p, at(42), 5.2), ["rate-of-change-resolved"]);
}

#[test]
fn overridden_rate_settings_change_behaviour() {
    // 0.2 per minute: quiet by default, an alert with rate_limit = 0.1.
    let readings = [(0, 4.0), (1, 4.2), (2, 4.4)];
    let mut p = plugin(&[]);
    for (minute, value) in readings {
        assert!(step(&mut p, at(minute), value).is_empty());
    }
    let mut p = plugin(&[("rate_limit", "0.1")]);
    let raised: Vec<_> = readings.iter().flat_map(|(m, v)| step(&mut p, at(*m), *v)).collect();
    assert_eq!(raised, ["rate-of-change"]);

    // Readings 2 minutes apart at 1 per minute: judged in a 10m window, never in a 3m one.
    let readings = [(0, 3.0), (2, 5.0), (4, 7.0)];
    let mut p = plugin(&[]);
    let raised: Vec<_> = readings.iter().flat_map(|(m, v)| step(&mut p, at(*m), *v)).collect();
    assert_eq!(raised, ["rate-of-change"]);
    let mut p = plugin(&[("rate_window", "3m")]);
    let raised: Vec<_> = readings.iter().flat_map(|(m, v)| step(&mut p, at(*m), *v)).collect();
    assert!(raised.is_empty());
}
