//! Alert rules: raise, repeat, resolution, ordering, late and invalid readings.

use edgewise_sdk::Severity;
use edgewise_sdk::time::MINUTE_MS;

use edgewise_sdk::Reading;

use super::{BASE, Harness, SENSOR, at, ev};

#[test]
fn urgent_low_raises_repeats_at_30_min_and_resolves() {
    let mut h = Harness::new();
    h.read(0, 100.0).read(5, 50.0);
    assert_eq!(h.events("urgent-low"), ev(&[(5, "urgent-low")]));
    let alert = &h.alerts[0];
    assert_eq!(alert.severity, Severity::Critical);
    assert_eq!(alert.sensor, SENSOR);
    assert_eq!(alert.timestamp_ms, at(5));
    assert_eq!(alert.value, Some(50.0));
    assert_eq!(alert.message, "Glucose 50 mg/dL is below 54 mg/dL");

    h.series(10, 5, &[50.0; 5]).read(34, 53.9);
    assert_eq!(h.events("urgent-low").len(), 1, "no repeat before 30 min");
    h.read(35, 50.0).read(40, 50.0);
    assert_eq!(h.events("urgent-low"), ev(&[(5, "urgent-low"), (35, "urgent-low")]));
    h.read(45, 54.0);
    let resolved = h.alerts.iter().find(|a| a.code == "urgent-low-resolved").unwrap();
    assert_eq!(resolved.severity, Severity::Info);
    assert_eq!(resolved.timestamp_ms, at(45));
    assert_eq!(resolved.value, Some(54.0));
    assert_eq!(
        h.events("urgent-low"),
        ev(&[(5, "urgent-low"), (35, "urgent-low"), (45, "urgent-low-resolved")])
    );
}

#[test]
fn low_raises_repeats_and_resolves_at_70() {
    let mut h = Harness::new();
    h.read(0, 100.0).read(5, 69.9);
    let alert = &h.alerts[0];
    assert_eq!((alert.code.as_str(), alert.severity), ("low", Severity::Warning));
    assert_eq!(alert.message, "Glucose 69.9 mg/dL is below 70 mg/dL");
    h.series(10, 5, &[65.0; 5])
        .read(34, 54.0)
        .read(35, 60.0)
        .read(40, 69.0)
        .read(45, 70.0);
    assert_eq!(h.events("low"), ev(&[(5, "low"), (35, "low"), (45, "low-resolved")]));
}

#[test]
fn low_hands_over_to_urgent_low_without_resolving() {
    let mut h = Harness::new();
    // 60 -> 50 -> 60: low stays active under urgent-low and is not repeated early.
    h.read(0, 100.0)
        .read(5, 60.0)
        .read(10, 50.0)
        .read(15, 50.0)
        .read(20, 60.0)
        .read(25, 65.0);
    let codes: Vec<_> = h
        .codes()
        .into_iter()
        .filter(|(_, c)| c.starts_with("low") || c.starts_with("urgent-low-r") || c == "urgent-low")
        .collect();
    assert_eq!(
        codes,
        ev(&[(5, "low"), (10, "urgent-low"), (20, "urgent-low-resolved")])
    );
    // The repeat is due 30 min after the raise at 5, then >= 70 resolves it.
    h.read(35, 65.0).read(40, 75.0);
    assert_eq!(h.events("low"), ev(&[(5, "low"), (35, "low"), (40, "low-resolved")]));
}

#[test]
fn low_is_not_raised_or_repeated_while_urgent_low_is_active() {
    let mut h = Harness::new();
    h.read(0, 100.0).read(5, 50.0);
    assert!(h.events("low").is_empty());
    h.read(10, 60.0);
    // Resolution of urgent-low first, then low is raised on the same reading
    // (and the steep fall of 100, 50, 60 raises the trend alerts after them).
    assert_eq!(
        h.codes().into_iter().filter(|(m, _)| *m == 10).collect::<Vec<_>>(),
        ev(&[
            (10, "urgent-low-resolved"),
            (10, "low"),
            (10, "urgent-low-soon"),
            (10, "falling-fast")
        ])
    );

    let mut h = Harness::new();
    h.read(0, 60.0).series(5, 5, &[50.0; 9]);
    assert_eq!(
        h.events("low"),
        ev(&[(0, "low")]),
        "no low repeat at 30 or 40 while urgent"
    );
    assert_eq!(h.events("urgent-low"), ev(&[(5, "urgent-low"), (35, "urgent-low")]));
    h.read(50, 60.0);
    assert_eq!(h.events("low"), ev(&[(0, "low"), (50, "low")]));
}

#[test]
fn high_raises_repeats_and_resolves_at_250() {
    let mut h = Harness::new();
    h.read(0, 250.0).read(5, 251.0);
    let alert = h.alerts.iter().find(|a| a.code == "high").unwrap();
    assert_eq!(alert.severity, Severity::Warning);
    assert_eq!(alert.message, "Glucose 251 mg/dL is above 250 mg/dL");
    h.series(10, 5, &[260.0; 5])
        .read(34, 260.0)
        .read(35, 260.0)
        .read(40, 250.0);
    assert_eq!(
        h.events("high"),
        ev(&[(5, "high"), (35, "high"), (40, "high-resolved")])
    );
}

#[test]
fn urgent_low_soon_on_a_falling_trend() {
    let mut h = Harness::new();
    // -2 mg/dL/min: 80 now, 40 predicted in 20 min.
    h.read(0, 100.0).read(5, 90.0).read(10, 80.0);
    assert_eq!(h.events("urgent-low-soon"), ev(&[(10, "urgent-low-soon")]));
    let alert = h.alerts.iter().find(|a| a.code == "urgent-low-soon").unwrap();
    assert_eq!(alert.severity, Severity::Critical);
    assert_eq!(alert.value, Some(80.0));
    assert_eq!(
        alert.message,
        "Glucose 80 mg/dL is predicted to fall to 40.0 mg/dL, below 55 mg/dL, within 20 min"
    );
    // Flattening: at 20 the fit over 0..20 predicts 56 -> resolved.
    h.read(15, 80.0).read(20, 80.0);
    assert_eq!(
        h.events("urgent-low-soon"),
        ev(&[(10, "urgent-low-soon"), (20, "urgent-low-soon-resolved")])
    );
}

#[test]
fn urgent_low_soon_needs_three_readings_over_ten_minutes() {
    let mut h = Harness::new();
    h.read(0, 100.0).read(5, 60.0);
    assert!(h.events("urgent-low-soon").is_empty(), "two readings are too few");

    let mut h = Harness::new();
    h.series(0, 3, &[100.0, 95.0, 90.0, 85.0]);
    assert!(h.events("urgent-low-soon").is_empty(), "9 minutes is too short a span");
    h.read(10, 83.0);
    assert_eq!(h.events("urgent-low-soon"), ev(&[(10, "urgent-low-soon")]));

    // Only readings of the last 20 minutes count: the two old ones are out.
    let mut h = Harness::new();
    h.read(0, 200.0).read(5, 190.0).read(26, 80.0).read(31, 70.0);
    assert!(h.events("urgent-low-soon").is_empty());
}

#[test]
fn urgent_low_soon_only_while_at_or_above_55() {
    let mut h = Harness::new();
    h.read(0, 85.0).read(5, 70.0).read(10, 55.0);
    assert_eq!(h.events("urgent-low-soon"), ev(&[(10, "urgent-low-soon")]));
    h.read(15, 54.9);
    assert_eq!(
        h.events("urgent-low-soon"),
        ev(&[(10, "urgent-low-soon"), (15, "urgent-low-soon-resolved")])
    );
}

#[test]
fn urgent_low_soon_repeats() {
    // -1 mg/dL/min at 1-minute data: holds from 74.5 (predicts 54.5) down to 55.5.
    let mut h = Harness::with(&[("repeat", "10m")]);
    let values: Vec<f64> = (0..50).map(|m| 100.5 - m as f64).collect();
    h.series(0, 1, &values);
    assert_eq!(
        h.events("urgent-low-soon"),
        ev(&[
            (26, "urgent-low-soon"),
            (36, "urgent-low-soon"),
            (46, "urgent-low-soon-resolved")
        ])
    );
}

#[test]
fn rising_and_falling_fast_at_the_3_per_minute_boundary() {
    let mut h = Harness::new();
    h.series(0, 5, &[100.0, 114.5, 129.0]);
    assert!(h.events("rising-fast").is_empty(), "2.9 mg/dL/min is not fast");
    let mut h = Harness::new();
    h.series(0, 5, &[100.0, 115.0]);
    assert!(h.events("rising-fast").is_empty(), "two readings are too few");
    h.read(10, 130.0);
    assert_eq!(h.events("rising-fast"), ev(&[(10, "rising-fast")]));
    let alert = h.alerts.iter().find(|a| a.code == "rising-fast").unwrap();
    assert_eq!(alert.message, "Glucose rising 3.0 mg/dL/min");
    assert_eq!(alert.severity, Severity::Warning);

    let mut h = Harness::new();
    h.series(0, 5, &[200.0, 185.5, 171.0]);
    assert!(h.events("falling-fast").is_empty(), "-2.9 mg/dL/min is not fast");
    let mut h = Harness::new();
    h.series(0, 5, &[200.0, 183.0, 166.0]);
    assert_eq!(h.events("falling-fast"), ev(&[(10, "falling-fast")]));
    assert_eq!(h.alerts[0].message, "Glucose falling 3.4 mg/dL/min");
}

#[test]
fn rising_and_falling_fast_repeat_and_resolve() {
    let mut h = Harness::new();
    let rising: Vec<f64> = (0..9).map(|i| 60.0 + 15.0 * i as f64).collect();
    h.series(0, 5, &rising); // minutes 0..=40, 3 mg/dL/min
    h.read(44, 192.0); // 4 minutes later, still 3 / min
    assert_eq!(h.events("rising-fast"), ev(&[(10, "rising-fast"), (40, "rising-fast")]));
    // Flat: the last 15 minutes (29..=49 -> 30, 35, 40, 44, 49) slope below 3.
    h.read(49, 192.0).read(54, 192.0);
    assert_eq!(
        h.events("rising-fast").last().unwrap(),
        &(49, "rising-fast-resolved".to_string())
    );

    let mut h = Harness::new();
    let falling: Vec<f64> = (0..8).map(|i| 300.0 - 20.0 * i as f64).collect();
    h.series(0, 5, &falling).read(39, 144.0); // minutes 0..=35, then 39: -4 / min
    assert_eq!(
        h.events("falling-fast"),
        ev(&[(10, "falling-fast")]),
        "not before 30 min"
    );
    h.read(40, 140.0);
    assert_eq!(
        h.events("falling-fast"),
        ev(&[(10, "falling-fast"), (40, "falling-fast")])
    );
    // Last 15 min at 45: 180, 160, 144, 140, 140 at 30, 35, 39, 40, 45: about -2.9 / min.
    h.read(45, 140.0).read(50, 140.0);
    assert_eq!(
        h.events("falling-fast"),
        ev(&[
            (10, "falling-fast"),
            (40, "falling-fast"),
            (45, "falling-fast-resolved")
        ])
    );
}

#[test]
fn alerts_of_one_reading_come_in_the_documented_order() {
    let mut h = Harness::new();
    h.series(0, 5, &[120.0, 100.0, 80.0, 50.0]);
    assert_eq!(
        h.codes(),
        ev(&[
            (10, "urgent-low-soon"),
            (10, "falling-fast"),
            (15, "urgent-low"),
            (15, "urgent-low-soon-resolved"),
        ])
    );

    let mut h = Harness::new();
    h.series(0, 5, &[200.0, 230.0, 260.0]).tick(30).read(40, 50.0);
    assert_eq!(
        h.codes(),
        ev(&[
            (10, "high"),
            (10, "rising-fast"),
            (30, "signal-loss"),
            (40, "signal-loss-resolved"),
            (40, "urgent-low"),
            (40, "high-resolved"),
            (40, "rising-fast-resolved"),
        ])
    );
}

#[test]
fn signal_loss_on_tick_once_then_resolved() {
    let mut h = Harness::new();
    h.read(0, 100.0).tick(19).tick_at(at(20) - 1);
    assert!(h.alerts.is_empty(), "not before 20 min");
    h.tick(20);
    let alert = &h.alerts[0];
    assert_eq!(alert.code, "signal-loss");
    assert_eq!(alert.severity, Severity::Warning);
    assert_eq!(alert.timestamp_ms, at(20));
    assert_eq!(alert.value, None);
    assert_eq!(alert.message, "No glucose reading for 20 min");
    h.tick(25).tick(60).tick(24 * 60);
    assert_eq!(h.alerts.len(), 1, "raised once per outage");

    h.read(24 * 60 + 5, 110.0);
    let resolved = &h.alerts[1];
    assert_eq!(resolved.code, "signal-loss-resolved");
    assert_eq!(resolved.severity, Severity::Info);
    assert_eq!(resolved.timestamp_ms, at(24 * 60 + 5));
    assert_eq!(resolved.value, Some(110.0));

    // A later outage is raised again, stamped last valid + 20 min, not at the tick.
    h.tick(24 * 60 + 47);
    assert_eq!(h.alerts[2].code, "signal-loss");
    assert_eq!(h.alerts[2].timestamp_ms, at(24 * 60 + 25));
}

#[test]
fn a_gap_no_tick_saw_is_reported_by_the_reading_that_ends_it() {
    // Ticks every hour (or none): the 25-minute gap is still reported, with
    // the same stamp as on a tick, then resolved at once.
    let mut h = Harness::new();
    h.read(0, 100.0).read(25, 100.0).read(30, 100.0).read(49, 100.0);
    assert_eq!(
        h.events("signal-loss"),
        ev(&[(20, "signal-loss"), (25, "signal-loss-resolved")]),
        "a 19-minute gap is not an outage"
    );
    // Whether a tick saw the gap or not, the outputs are the same.
    let mut ticked = Harness::new();
    ticked
        .read(0, 100.0)
        .tick(21)
        .read(25, 100.0)
        .read(30, 100.0)
        .read(49, 100.0);
    assert_eq!(ticked.events("signal-loss"), h.events("signal-loss"));
}

#[test]
fn signal_loss_ignores_invalid_and_late_readings() {
    let mut h = Harness::new();
    h.read(0, 100.0).read(10, f64::NAN).read(15, 30.0).tick(20);
    assert_eq!(h.events("signal-loss"), ev(&[(20, "signal-loss")]));
    h.read(25, 500.0).read(5, 100.0);
    assert_eq!(
        h.events("signal-loss").len(),
        1,
        "invalid and late readings do not resolve"
    );
    h.read(30, 100.0);
    assert_eq!(
        h.events("signal-loss"),
        ev(&[(20, "signal-loss"), (30, "signal-loss-resolved")])
    );
}

#[test]
fn no_signal_loss_without_a_valid_reading() {
    let mut h = Harness::new();
    h.read(0, f64::NAN).tick(60);
    assert!(h.alerts.is_empty());
}

#[test]
fn late_readings_raise_nothing_and_stay_out_of_trends() {
    let mut h = Harness::new();
    h.series(0, 5, &[100.0, 100.0, 100.0]);
    h.read(7, 40.0).read(8, 300.0).read(2, 40.0);
    assert!(h.alerts.is_empty());
    // Had the late 40s entered the trend buffer, this would be falling/rising.
    h.read(15, 100.0).read(20, 100.0);
    assert!(h.alerts.is_empty(), "{:?}", h.codes());
}

#[test]
fn duplicate_timestamps_are_ignored() {
    let mut h = Harness::new();
    h.read(0, 100.0).read(5, 100.0).read(5, 40.0).read(5, f64::NAN);
    assert!(h.alerts.is_empty());
    h.tick(60);
    assert_eq!(super::metric(h.hour(0), "n"), 2.0);
    assert_eq!(super::metric(h.hour(0), "min"), 100.0);
    assert_eq!(super::metric(h.hour(0), "invalid"), 0.0);
}

#[test]
fn invalid_readings_raise_nothing() {
    let mut h = Harness::new();
    h.read(0, 100.0);
    for (i, v) in [38.9, 402.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -5.0]
        .into_iter()
        .enumerate()
    {
        h.read(5 + i as i64 * 5, v);
    }
    assert!(h.alerts.is_empty(), "{:?}", h.codes());
    // Boundary values are valid and alert.
    h.read(40, 39.0).read(45, 401.0);
    assert_eq!(
        h.codes()
            .into_iter()
            .filter(|(_, c)| c == "urgent-low" || c == "high")
            .collect::<Vec<_>>(),
        ev(&[(40, "urgent-low"), (45, "high")])
    );
    assert_eq!(h.alerts.last().unwrap().timestamp_ms, BASE + 45 * MINUTE_MS);
}

#[test]
fn sensors_are_independent() {
    let mut h = Harness::new();
    h.read_at("a", at(0), 100.0)
        .read_at("b", at(0), 50.0)
        .read_at("a", at(5), 60.0);
    let seen: Vec<_> = h.alerts.iter().map(|a| (a.sensor.as_str(), a.code.as_str())).collect();
    assert_eq!(seen, vec![("b", "urgent-low"), ("a", "low")]);
    // Ticks visit sensors in name order.
    h.tick(30);
    let seen: Vec<_> = h.alerts[2..]
        .iter()
        .map(|a| (a.sensor.as_str(), a.code.as_str()))
        .collect();
    assert_eq!(seen, vec![("a", "signal-loss"), ("b", "signal-loss")]);
}

#[test]
fn a_sensor_in_mmol_per_litre_is_watched_as_the_same_sensor_in_mg_per_decilitre() {
    // Before: 2.8 mmol/L (50 mg/dL, an urgent low) was below the valid
    // range of mg/dL values and ignored: no alert, ever.
    let mmol = [5.6, 4.2, 3.4, 2.8, 2.8, 3.1, 4.4];
    let (mut in_mmol, mut in_mg) = (Harness::new(), Harness::new());
    for (k, value) in mmol.iter().enumerate() {
        let ts = at(5 * k as i64);
        in_mmol.batch(&[Reading::new(SENSOR, ts, *value, "mmol/L")]);
        in_mg.batch(&[Reading::new(
            SENSOR,
            ts,
            value * glucose_units::MG_DL_PER_MMOL_L,
            "mg/dL",
        )]);
    }
    assert!(
        in_mmol.codes().iter().any(|(_, code)| code == "urgent-low"),
        "{:?}",
        in_mmol.codes()
    );
    assert_eq!(in_mmol.alerts, in_mg.alerts);
}
