//! Sensors are independent of each other.

use edgewise_sdk::Reading;

use crate::*;

fn reading(sensor: &str, minute: i64, value: f64) -> Reading<'_> {
    Reading::new(sensor, at(minute), value, "degC")
}

#[test]
fn alerts_and_suppression_are_per_sensor() {
    let mut p = plugin(&[]);
    let out = feed(&mut p, &[reading("a", 0, 1.0), reading("b", 0, 5.0)]);
    assert_eq!(codes(&out), ["below-low"]);
    assert_eq!(out.alerts()[0].sensor, "a");
    // b going low is a first raise for b, though a is already active.
    let out = feed(&mut p, &[reading("b", 10, 1.0)]);
    assert_eq!(codes(&out), ["below-low"]);
    assert_eq!(out.alerts()[0].sensor, "b");
    // b recovering does not resolve a.
    let out = feed(&mut p, &[reading("b", 20, 5.0), reading("a", 20, 1.0)]);
    let alerts: Vec<_> = out
        .alerts()
        .iter()
        .map(|a| (a.sensor.as_str(), a.code.as_str()))
        .collect();
    assert_eq!(alerts, [("b", "below-low-resolved")]);
    // a repeats on its own schedule.
    let out = feed(&mut p, &[reading("a", 30, 1.0), reading("b", 30, 5.0)]);
    let alerts: Vec<_> = out
        .alerts()
        .iter()
        .map(|a| (a.sensor.as_str(), a.code.as_str()))
        .collect();
    assert_eq!(alerts, [("a", "below-low")]);
}

#[test]
fn order_and_rate_are_per_sensor() {
    let mut p = plugin(&[]);
    // Interleaved flat series at different levels: mixed, they would give a
    // steep slope; apart, both are flat.
    let out = feed(
        &mut p,
        &[
            reading("a", 0, 3.0),
            reading("b", 0, 7.0),
            reading("a", 1, 3.0),
            reading("b", 1, 7.0),
            reading("a", 2, 3.0),
            reading("b", 2, 7.0),
        ],
    );
    assert!(out.alerts().is_empty());
    // b's clock is its own: a reading of b older than a's newest is not late.
    let out = feed(&mut p, &[reading("a", 30, 5.0), reading("b", 10, 9.0)]);
    assert_eq!(codes(&out), ["above-high"]);
    assert_eq!(out.alerts()[0].sensor, "b");
}

#[test]
fn summaries_are_per_sensor_and_ticks_go_in_sensor_order() {
    let mut p = plugin(&[]);
    feed(
        &mut p,
        &[
            reading("zeta", 5, 4.0),
            reading("alpha", 6, 6.0),
            reading("zeta", 7, 5.0),
        ],
    );
    // A later reading of alpha closes only alpha's hour.
    let out = feed(&mut p, &[reading("alpha", 70, 6.0)]);
    assert_eq!(out.summaries().len(), 1);
    assert_eq!(out.summaries()[0].sensor, "alpha");
    let out = feed(&mut p, &[reading("mid", 65, 5.0)]);
    assert!(out.summaries().is_empty());

    let out = tick(&mut p, at(120));
    let sensors: Vec<_> = out.summaries().iter().map(|s| s.sensor.as_str()).collect();
    assert_eq!(sensors, ["alpha", "mid", "zeta"]);
    assert_summary(
        &out.summaries()[2],
        "zeta",
        T0,
        &[
            ("n", 2.0),
            ("mean", 4.5),
            ("min", 4.0),
            ("max", 5.0),
            ("sd", 0.5f64.sqrt()),
            ("invalid", 0.0),
        ],
    );
    assert_eq!(out.summaries()[0].window_start_ms, at(60));
}
