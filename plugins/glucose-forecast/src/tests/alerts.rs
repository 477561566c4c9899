//! `predicted-low` and `predicted-urgent-low`: raise, repeat after `repeat`,
//! resolve, and the hand-over between them, as glucose-monitor's `low` and
//! `urgent-low`. The last-value model forecasts the newest reading, so a
//! reading of 65 is a 30-minute forecast of 65.

use edgewise_sdk::Severity;
use forecast_model::Model;

use super::{Harness, SENSOR, assert_close, at, ev};

fn events(h: &Harness, family: &str) -> Vec<(i64, String)> {
    let resolved = format!("{family}-resolved");
    h.codes()
        .into_iter()
        .filter(|(_, code)| *code == family || *code == resolved)
        .collect()
}

#[test]
fn predicted_low_raises_repeats_after_repeat_and_resolves() {
    let mut h = Harness::new(&[]);
    h.read(0, 100.0).read(5, 69.5);
    let alert = &h.alerts[0];
    assert_eq!(alert.code, "predicted-low");
    assert_eq!(alert.severity, Severity::Warning);
    assert_eq!((alert.sensor.as_str(), alert.timestamp_ms), (SENSOR, at(5)));
    assert_eq!(alert.value, Some(69.5), "the forecast");
    assert_eq!(
        alert.message,
        "Glucose 69.5 mg/dL is forecast to be 69.5 mg/dL in 30 min, below 70 mg/dL"
    );
    h.series(10, 5, &[65.0; 5]).read(34, 56.0);
    assert_eq!(events(&h, "predicted-low").len(), 1, "no repeat before 30 min");
    h.read(35, 60.0).read(40, 69.0).read(45, 70.0);
    assert_eq!(
        events(&h, "predicted-low"),
        ev(&[
            (5, "predicted-low"),
            (35, "predicted-low"),
            (45, "predicted-low-resolved")
        ])
    );
    let resolved = h.alerts.last().unwrap();
    assert_eq!(resolved.severity, Severity::Info);
    assert_eq!(resolved.value, Some(70.0));
    assert_eq!(
        resolved.message,
        "Glucose 70 mg/dL is no longer forecast below 70 mg/dL in 30 min (70.0 mg/dL)"
    );
}

#[test]
fn predicted_urgent_low_raises_repeats_and_resolves() {
    let mut h = Harness::new(&[("repeat", "15m")]);
    h.read(0, 100.0).read(5, 50.0);
    let alert = &h.alerts[0];
    assert_eq!(
        (alert.code.as_str(), alert.severity),
        ("predicted-urgent-low", Severity::Critical)
    );
    assert_eq!(
        alert.message,
        "Glucose 50 mg/dL is forecast to be 50.0 mg/dL in 30 min, below 55 mg/dL"
    );
    h.read(10, 50.0).read(19, 50.0).read(20, 54.9).read(25, 55.0);
    assert_eq!(
        events(&h, "predicted-urgent-low"),
        ev(&[
            (5, "predicted-urgent-low"),
            (20, "predicted-urgent-low"),
            (25, "predicted-urgent-low-resolved")
        ])
    );
}

#[test]
fn predicted_low_hands_over_to_urgent_low_without_resolving() {
    let mut h = Harness::new(&[]);
    // 60 -> 50 -> 60: predicted-low stays active under the urgent alert and
    // is not repeated early; it resolves only at 70.
    h.read(0, 100.0)
        .read(5, 60.0)
        .read(10, 50.0)
        .read(15, 50.0)
        .read(20, 60.0)
        .read(25, 65.0)
        .read(35, 65.0)
        .read(40, 80.0);
    assert_eq!(
        h.codes(),
        ev(&[
            (5, "predicted-low"),
            (10, "predicted-urgent-low"),
            (20, "predicted-urgent-low-resolved"),
            (35, "predicted-low"),
            (40, "predicted-low-resolved"),
        ])
    );
}

#[test]
fn thresholds_come_from_the_configuration() {
    let mut h = Harness::new(&[("low", "90"), ("urgent_low", "80")]);
    h.read(0, 95.0).read(5, 85.0).read(10, 75.0);
    assert_eq!(h.codes(), ev(&[(5, "predicted-low"), (10, "predicted-urgent-low")]));
}

#[test]
fn the_alert_is_about_the_forecast_not_the_reading() {
    // Falling 2 mg/dL a minute: at 90 mg/dL the line reaches 30 in 30
    // minutes, so both alerts could fire; the urgent one does, while the
    // reading itself is far from low.
    let mut h = Harness::with_model(&Model::linear_extrapolation(&[30, 60]).to_bytes().unwrap(), &[]);
    h.series(0, 5, &[120.0, 110.0, 100.0, 90.0]);
    let alert = h.alerts.iter().find(|a| a.code == "predicted-urgent-low").unwrap();
    assert_eq!(alert.timestamp_ms, at(15));
    assert_close(alert.value.unwrap(), 30.0);
    assert_eq!(
        alert.message,
        "Glucose 90 mg/dL is forecast to be 30.0 mg/dL in 30 min, below 55 mg/dL"
    );
}

#[test]
fn duplicates_late_and_invalid_readings_raise_nothing() {
    let mut h = Harness::new(&[]);
    h.read(0, 100.0).read(10, 100.0);
    // A duplicate, a late reading and an invalid one, all low.
    h.read(10, 50.0).read(5, 50.0).read(15, 30.0).read(20, 402.0);
    assert!(h.alerts.is_empty(), "{:?}", h.alerts);
    // A valid low reading after them still alerts.
    h.read(25, 60.0);
    assert_eq!(h.codes(), ev(&[(25, "predicted-low")]));
}

#[test]
fn predicted_low_is_not_repeated_while_the_urgent_alert_is_active() {
    let mut h = Harness::new(&[]);
    // Low at 5, urgent from 10 to 40: the low's repeat, due at 35, waits
    // for the urgent alert to resolve (45).
    h.read(0, 100.0).read(5, 60.0).series(10, 5, &[50.0; 7]).read(45, 60.0);
    assert_eq!(
        h.codes(),
        ev(&[
            (5, "predicted-low"),
            (10, "predicted-urgent-low"),
            (40, "predicted-urgent-low"),
            (45, "predicted-urgent-low-resolved"),
            (45, "predicted-low"),
        ])
    );
}
