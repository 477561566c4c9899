//! The README example (vaccine fridge, 2–8 °C), reading by reading.

use edgewise_sdk::{Reading, Severity};

use crate::*;

#[test]
fn the_readme_example() {
    let mut p = plugin(&[("low", "2"), ("high", "8"), ("unit", "degC")]);
    let ten = T0 + 12 * HOUR; // 10:00 UTC
    let door_open = [5.0, 5.6, 6.2, 6.8, 7.4, 8.0, 8.3, 8.4, 8.1, 7.8, 7.5];
    let mut alerts = Vec::new();
    for (minute, value) in (0..).zip(door_open) {
        let out = feed(&mut p, &[Reading::new("fridge-1", ten + minute * MIN, value, "degC")]);
        assert!(out.summaries().is_empty());
        alerts.extend(
            out.alerts()
                .iter()
                .map(|a| (minute, a.severity, a.code.clone(), a.message.clone())),
        );
    }
    let expected = [
        (
            2,
            Severity::Warning,
            "rate-of-change",
            "Value 6.2 degC is changing at +0.6 degC per minute; the limit is 0.5 degC per minute.",
        ),
        (
            6,
            Severity::Warning,
            "above-high",
            "Value 8.3 degC is above the high limit 8 degC.",
        ),
        (
            8,
            Severity::Info,
            "rate-of-change-resolved",
            "Value 8.1 degC is changing at +0.437 degC per minute, within the limit of 0.5 degC per minute.",
        ),
        (
            9,
            Severity::Info,
            "above-high-resolved",
            "Value 7.8 degC is back at or below the high limit 8 degC.",
        ),
    ];
    let expected: Vec<_> = expected
        .iter()
        .map(|(m, s, c, t)| (*m, *s, c.to_string(), t.to_string()))
        .collect();
    assert_eq!(alerts, expected);

    // 11:00 closes the 10:00 hour.
    let out = feed(&mut p, &[Reading::new("fridge-1", ten + HOUR, 5.1, "degC")]);
    assert!(out.alerts().is_empty());
    let n = door_open.len() as f64;
    let mean = door_open.iter().sum::<f64>() / n;
    let sd = (door_open.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    assert_summary(
        &out.summaries()[0],
        "fridge-1",
        ten,
        &[
            ("n", 11.0),
            ("mean", mean),
            ("min", 5.0),
            ("max", 8.4),
            ("sd", sd),
            ("invalid", 0.0),
        ],
    );

    // A sensor error and a reading in the wrong unit: no alert, counted as invalid.
    let out = feed(
        &mut p,
        &[
            Reading::new("fridge-1", ten + HOUR + 7 * MIN, f64::NAN, "degC"),
            Reading::new("fridge-1", ten + HOUR + 8 * MIN, 41.2, "degF"),
        ],
    );
    assert!(out.alerts().is_empty());

    // The 12:00 tick closes the 11:00 hour.
    let out = tick(&mut p, ten + 2 * HOUR);
    assert_summary(
        &out.summaries()[0],
        "fridge-1",
        ten + HOUR,
        &[
            ("n", 1.0),
            ("mean", 5.1),
            ("min", 5.1),
            ("max", 5.1),
            ("sd", 0.0),
            ("invalid", 2.0),
        ],
    );
}
