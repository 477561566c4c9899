//! Level alerts: raise, repeat, resolve, boundaries, messages.

use edgewise_sdk::Severity;

use crate::*;

#[test]
fn below_low_raises_once_repeats_at_the_interval_and_resolves() {
    let mut p = plugin(&[]);
    let out = feed(&mut p, &[probe(at(0), 1.5)]);
    assert_eq!(out.alerts().len(), 1);
    let alert = &out.alerts()[0];
    assert_eq!(alert.sensor, "probe-1");
    assert_eq!(alert.timestamp_ms, at(0));
    assert_eq!(alert.severity, Severity::Warning);
    assert_eq!(alert.code, threshold::BELOW_LOW);
    assert_eq!(alert.value, Some(1.5));
    assert_eq!(alert.message, "Value 1.5 degC is below the low limit 2 degC.");

    // The condition persists: quiet until `repeat` (30m) has passed...
    assert!(step(&mut p, at(10), 1.4).is_empty());
    assert!(step(&mut p, at(20), 1.4).is_empty());
    assert!(step(&mut p, at(30) - 1, 1.4).is_empty());
    // ...raised again exactly at it, and the repeat clock restarts.
    let out = feed(&mut p, &[probe(at(30), 1.3)]);
    assert_eq!(codes(&out), ["below-low"]);
    assert_eq!(out.alerts()[0].severity, Severity::Warning);
    assert_eq!(out.alerts()[0].value, Some(1.3));
    assert!(step(&mut p, at(40), 1.3).is_empty());
    assert!(step(&mut p, at(60) - 1, 1.3).is_empty());

    // Back at the limit: resolved once, as Info, on that reading.
    let out = feed(&mut p, &[probe(at(61), 2.0)]);
    assert_eq!(codes(&out), ["below-low-resolved"]);
    let resolved = &out.alerts()[0];
    assert_eq!(resolved.severity, Severity::Info);
    assert_eq!(resolved.timestamp_ms, at(61));
    assert_eq!(resolved.value, Some(2.0));
    assert_eq!(
        resolved.message,
        "Value 2 degC is back at or above the low limit 2 degC."
    );
    assert!(step(&mut p, at(71), 2.5).is_empty());

    // A new excursion is raised at once, whatever the time since the last one.
    assert_eq!(step(&mut p, at(81), 1.9), ["below-low"]);
}

#[test]
fn above_high_raises_once_repeats_at_the_interval_and_resolves() {
    let mut p = plugin(&[]);
    let out = feed(&mut p, &[probe(at(0), 8.5)]);
    assert_eq!(codes(&out), ["above-high"]);
    assert_eq!(out.alerts()[0].severity, Severity::Warning);
    assert_eq!(
        out.alerts()[0].message,
        "Value 8.5 degC is above the high limit 8 degC."
    );

    assert!(step(&mut p, at(10), 9.0).is_empty());
    assert!(step(&mut p, at(20), 9.0).is_empty());
    assert!(step(&mut p, at(30) - 1, 9.0).is_empty());
    assert_eq!(step(&mut p, at(30), 9.0), ["above-high"]);
    assert!(step(&mut p, at(40), 9.0).is_empty());

    let out = feed(&mut p, &[probe(at(50), 7.9)]);
    assert_eq!(codes(&out), ["above-high-resolved"]);
    assert_eq!(out.alerts()[0].severity, Severity::Info);
    assert_eq!(
        out.alerts()[0].message,
        "Value 7.9 degC is back at or below the high limit 8 degC."
    );
    assert!(step(&mut p, at(60), 7.9).is_empty());
}

#[test]
fn values_at_the_limits_do_not_alert() {
    let mut p = plugin(&[]);
    for (minute, value) in [(0, 2.0), (10, 8.0), (20, 5.0), (30, 2.0), (40, 8.0)] {
        assert!(step(&mut p, at(minute), value).is_empty(), "{value} at {minute}m");
    }
    assert_eq!(step(&mut p, at(50), 1.999), ["below-low"]);
    // Straight from below low to above high: the all clear comes first.
    assert_eq!(step(&mut p, at(60), 8.001), ["below-low-resolved", "above-high"]);
    // Exactly at high resolves.
    assert_eq!(step(&mut p, at(70), 8.0), ["above-high-resolved"]);
}

#[test]
fn messages_use_the_reading_unit_else_the_configured_one_else_none() {
    let mut p = plugin(&[]);
    let out = feed(&mut p, &[Reading::new("bare", at(0), 9.5, "")]);
    assert_eq!(out.alerts()[0].message, "Value 9.5 is above the high limit 8.");

    let mut p = plugin(&[("unit", "degC")]);
    let out = feed(&mut p, &[Reading::new("bare", at(0), 9.5, "")]);
    assert_eq!(
        out.alerts()[0].message,
        "Value 9.5 degC is above the high limit 8 degC."
    );
}

#[test]
fn overridden_limits_and_repeat_change_behaviour() {
    // A freezer: -25..-15 °C, repeat every 5 minutes.
    let mut p = plugin(&[("low", "-25"), ("high", "-15"), ("repeat", "5m")]);
    assert!(step(&mut p, at(0), -20.0).is_empty());
    let out = feed(&mut p, &[probe(at(10), -14.5)]);
    assert_eq!(codes(&out), ["above-high"]);
    assert_eq!(
        out.alerts()[0].message,
        "Value -14.5 degC is above the high limit -15 degC."
    );
    assert!(step(&mut p, at(15) - 1, -14.5).is_empty());
    assert_eq!(step(&mut p, at(15), -14.5), ["above-high"]);
    assert_eq!(step(&mut p, at(25), -26.0), ["above-high-resolved", "below-low"]);

    // The same readings under the defaults: 5.0 is in range, 2–8 °C.
    let mut p = plugin(&[]);
    assert!(step(&mut p, at(0), 5.0).is_empty());
    assert_eq!(step(&mut p, at(10), -14.5), ["below-low"]);
    assert!(step(&mut p, at(15), -14.5).is_empty());
}

use edgewise_sdk::Reading;
