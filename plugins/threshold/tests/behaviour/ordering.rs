//! Late and duplicate readings.

use crate::*;

#[test]
fn a_late_reading_never_alerts_but_counts_in_its_open_hour() {
    let mut p = plugin(&[]);
    assert!(step(&mut p, at(10), 5.0).is_empty());
    // Older than the newest: way out of range, yet no alert.
    assert!(step(&mut p, at(5), 20.0).is_empty());
    let out = tick(&mut p, at(60));
    assert_eq!(out.summaries().len(), 1);
    let sd = (2.0f64 * 7.5 * 7.5).sqrt(); // values 5 and 20, mean 12.5
    assert_summary(
        &out.summaries()[0],
        "probe-1",
        T0,
        &[
            ("n", 2.0),
            ("mean", 12.5),
            ("min", 5.0),
            ("max", 20.0),
            ("sd", sd),
            ("invalid", 0.0),
        ],
    );
}

#[test]
fn a_late_reading_neither_repeats_nor_resolves() {
    let mut p = plugin(&[]);
    assert_eq!(step(&mut p, at(0), 1.0), ["below-low"]);
    // An invalid reading moves the sensor's clock on without judging.
    assert!(step(&mut p, at(50), f64::NAN).is_empty());
    // Late, though past the repeat interval: no repeat.
    assert!(step(&mut p, at(40), 1.0).is_empty());
    assert_eq!(step(&mut p, at(60), 1.0), ["below-low"]);
    // Late and back in range: no all clear.
    assert!(step(&mut p, at(55), 5.0).is_empty());
    assert_eq!(step(&mut p, at(70), 5.0), ["below-low-resolved"]);
}

#[test]
fn a_late_reading_whose_hour_has_closed_is_dropped() {
    let mut p = plugin(&[]);
    step(&mut p, at(50), 5.0);
    let out = feed(&mut p, &[probe(at(70), 6.0)]);
    assert_eq!(out.summaries().len(), 1); // hour 0 closed by the reading at 70m
    assert!(feed(&mut p, &[probe(at(55), 7.0)]).summaries().is_empty());
    let out = tick(&mut p, at(120));
    assert_eq!(out.summaries().len(), 1);
    assert_eq!(out.summaries()[0].window_start_ms, at(60));
    assert_eq!(out.summaries()[0].get("n"), Some(1.0));
    assert_eq!(out.summaries()[0].get("mean"), Some(6.0));
}

#[test]
fn a_duplicate_of_the_newest_is_ignored() {
    let mut p = plugin(&[]);
    assert!(step(&mut p, at(10), 5.0).is_empty());
    assert!(step(&mut p, at(10), 20.0).is_empty());
    assert!(step(&mut p, at(10), f64::NAN).is_empty());
    let out = tick(&mut p, at(60));
    assert_summary(
        &out.summaries()[0],
        "probe-1",
        T0,
        &[
            ("n", 1.0),
            ("mean", 5.0),
            ("min", 5.0),
            ("max", 5.0),
            ("sd", 0.0),
            ("invalid", 0.0),
        ],
    );
}

#[test]
fn a_late_duplicate_of_a_counted_reading_is_ignored() {
    let mut p = plugin(&[]);
    step(&mut p, at(0), 4.0);
    step(&mut p, at(10), 6.0);
    step(&mut p, at(0), 9.0); // same timestamp as the first: a retransmission
    step(&mut p, at(5), 5.0); // genuinely late: counted
    step(&mut p, at(5), 5.0); // and its retransmission: not
    let out = tick(&mut p, at(60));
    assert_summary(
        &out.summaries()[0],
        "probe-1",
        T0,
        &[
            ("n", 3.0),
            ("mean", 5.0),
            ("min", 4.0),
            ("max", 6.0),
            ("sd", 1.0),
            ("invalid", 0.0),
        ],
    );
}

#[test]
fn late_readings_stay_out_of_the_rate_window() {
    let mut p = plugin(&[]);
    step(&mut p, at(0), 4.0);
    step(&mut p, at(1), 4.0);
    // Late and far off: had it entered the window, the slope at 2m would be
    // about -0.86 per minute.
    assert!(step(&mut p, at(0) + 30_000, 7.5).is_empty());
    assert!(step(&mut p, at(2), 4.0).is_empty());
}
