//! Extreme timestamps and values: no panic (tests run with overflow checks),
//! and still sensible behaviour.

use edgewise_sdk::Reading;

use crate::*;

#[test]
fn the_ends_of_time() {
    let mut p = plugin(&[]);
    let x = |ts: i64, value: f64| Reading::new("x", ts, value, "");
    assert_eq!(codes(&feed(&mut p, &[x(i64::MIN, 9.0)])), ["above-high"]);
    assert!(codes(&feed(&mut p, &[x(i64::MIN + 1, 9.0)])).is_empty());
    // An astronomically long persistence repeats, without overflow.
    let out = feed(&mut p, &[x(0, 9.0)]);
    assert_eq!(codes(&out), ["above-high"]);
    // The reading at 0 closed the very first hour, clamped to i64::MIN.
    assert_eq!(out.summaries().len(), 1);
    assert_eq!(out.summaries()[0].window_start_ms, i64::MIN);
    assert_eq!(out.summaries()[0].get("n"), Some(2.0));
    let out = feed(&mut p, &[x(i64::MAX - 1, 1.0), x(i64::MAX, 1.0)]);
    assert_eq!(codes(&out), ["above-high-resolved", "below-low"]);
    assert_eq!(out.summaries().len(), 1);
    // The last hour of time ends at i64::MAX.
    let out = tick(&mut p, i64::MAX);
    assert_eq!(out.summaries().len(), 1);
    assert_eq!(out.summaries()[0].window_end_ms, i64::MAX);
    assert_eq!(out.summaries()[0].get("n"), Some(2.0));
    // Late and duplicate readings at the ends, and ticks anywhere.
    feed(&mut p, &[x(i64::MAX, f64::NAN), x(i64::MIN, 5.0), x(i64::MAX - 1, 5.0)]);
    for now in [i64::MIN, -1, 0, i64::MAX] {
        assert!(tick(&mut p, now).summaries().is_empty());
    }
}

#[test]
fn rate_near_the_ends_of_time() {
    let mut p = plugin(&[("rate_min_readings", "2")]);
    let y = |ts: i64, value: f64| Reading::new("y", ts, value, "");
    // Too close to i64::MIN for a window: not judged.
    assert!(codes(&feed(&mut p, &[y(i64::MIN, 3.0), y(i64::MIN + MIN, 7.0)])).is_empty());
    // At the top end it works: 4 per minute.
    let out = feed(&mut p, &[y(i64::MAX - MIN, 3.0), y(i64::MAX, 7.0)]);
    assert_eq!(codes(&out), ["rate-of-change"]);
}

#[test]
fn huge_finite_values() {
    let mut p = plugin(&[("rate_min_readings", "2")]);
    let out = feed(
        &mut p,
        &[
            probe(at(0), f64::MAX),
            probe(at(1), -f64::MAX),
            probe(at(2), f64::MAX),
            probe(at(3), f64::MIN_POSITIVE),
        ],
    );
    // Level alerts as usual; the slope overflows and is not judged.
    assert_eq!(
        codes(&out),
        [
            "above-high",
            "above-high-resolved",
            "below-low",
            "below-low-resolved",
            "above-high",
            "above-high-resolved",
            "below-low",
        ]
    );
    let out = tick(&mut p, at(60));
    assert_eq!(out.summaries()[0].get("n"), Some(4.0));
    assert_eq!(out.summaries()[0].get("min"), Some(-f64::MAX));
    assert_eq!(out.summaries()[0].get("max"), Some(f64::MAX));
}

#[test]
fn empty_calls_do_nothing() {
    let mut p = plugin(&[]);
    assert!(feed(&mut p, &[]).alerts().is_empty());
    let out = tick(&mut p, 0);
    assert!(out.alerts().is_empty() && out.summaries().is_empty());
}

#[test]
fn the_same_input_gives_the_same_output() {
    let run = || {
        let mut p = plugin(&[]);
        let mut outputs = Vec::new();
        for minute in 0..150 {
            let value = 5.0 + 4.0 * ((minute as f64) / 7.0).sin();
            let sensor = if minute % 3 == 0 { "b" } else { "a" };
            let out = feed(&mut p, &[Reading::new(sensor, at(minute), value, "degC")]);
            outputs.push(format!("{:?} {:?}", out.alerts(), out.summaries()));
        }
        outputs.push(format!("{:?}", tick(&mut p, at(600)).summaries()));
        outputs
    };
    let first = run();
    assert!(first.iter().any(|o| o.contains("rate-of-change")));
    assert_eq!(first, run());
}
