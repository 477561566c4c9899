//! Hourly summaries: closed by a later reading or by a tick, once, with exact metrics.

use edgewise_sdk::Reading;

use crate::*;

#[test]
fn a_later_reading_closes_the_hour() {
    let mut p = plugin(&[]);
    let readings = [
        probe(at(0), 4.0),
        probe(at(15), 5.0),
        probe(at(30), f64::NAN),
        probe(at(45), 6.0),
        probe(at(60) - 1, 9.0), // last millisecond of the hour
    ];
    let out = feed(&mut p, &readings);
    assert!(out.summaries().is_empty(), "the hour is still open");

    let out = feed(&mut p, &[probe(at(60), 5.0)]);
    assert_eq!(out.summaries().len(), 1);
    // 4, 5, 6, 9: mean 6, squared deviations 4 + 1 + 0 + 9 = 14 over n - 1 = 3.
    assert_summary(
        &out.summaries()[0],
        "probe-1",
        T0,
        &[
            ("n", 4.0),
            ("mean", 6.0),
            ("min", 4.0),
            ("max", 9.0),
            ("sd", (14.0f64 / 3.0).sqrt()),
            ("invalid", 1.0),
        ],
    );
}

#[test]
fn a_tick_closes_the_hour_once() {
    let mut p = plugin(&[]);
    feed(&mut p, &[probe(at(20), 4.0)]);
    assert!(tick(&mut p, at(60) - 1).summaries().is_empty());
    let out = tick(&mut p, at(60));
    assert_eq!(out.summaries().len(), 1);
    assert_summary(
        &out.summaries()[0],
        "probe-1",
        T0,
        &[
            ("n", 1.0),
            ("mean", 4.0),
            ("min", 4.0),
            ("max", 4.0),
            ("sd", 0.0),
            ("invalid", 0.0),
        ],
    );
    // Neither a later tick nor a later reading sends it again.
    assert!(tick(&mut p, at(90)).summaries().is_empty());
    assert!(feed(&mut p, &[probe(at(150), 5.0)]).summaries().is_empty());
    let out = tick(&mut p, at(180));
    assert_eq!(out.summaries().len(), 1);
    assert_eq!(out.summaries()[0].window_start_ms, at(120));
}

#[test]
fn a_tick_behind_the_sensor_clock_closes_nothing() {
    let mut p = plugin(&[]);
    feed(&mut p, &[probe(at(20), 4.0)]);
    assert!(tick(&mut p, T0 - HOUR).summaries().is_empty());
    assert_eq!(tick(&mut p, at(61)).summaries().len(), 1);
}

#[test]
fn no_summary_for_hours_without_a_valid_reading() {
    let mut p = plugin(&[]);
    let out = feed(
        &mut p,
        &[
            probe(at(10), 5.0), // hour 0: valid
            // hour 1: no reading at all
            probe(at(130), f64::NAN), // hour 2: two invalid and one valid
            probe(at(150), f64::INFINITY),
            Reading::new("probe-1", at(160), 5.0, "degF"), // any unit: none is set
            probe(at(200), f64::NAN),                      // hour 3: invalid only
            probe(at(250), f64::NAN),                      // hour 4: invalid only
        ],
    );
    let starts: Vec<i64> = out.summaries().iter().map(|s| s.window_start_ms).collect();
    assert_eq!(starts, [T0, at(120)]);
    assert_eq!(out.summaries()[1].get("n"), Some(1.0));
    assert_eq!(out.summaries()[1].get("invalid"), Some(2.0));
    assert!(tick(&mut p, at(600)).summaries().is_empty());
}

#[test]
fn a_reading_in_an_hour_a_tick_already_closed_is_judged_but_not_summarised() {
    let mut p = plugin(&[]);
    feed(&mut p, &[probe(at(10), 5.0)]);
    assert_eq!(tick(&mut p, at(60)).summaries().len(), 1);
    // The host clock ran ahead of the sensor's: this reading is in order for
    // the sensor, so it is judged, but its hour has been summarised already.
    let out = feed(&mut p, &[probe(at(30), 9.0)]);
    assert_eq!(codes(&out), ["above-high"]);
    assert!(out.summaries().is_empty());
    assert!(tick(&mut p, at(600)).summaries().is_empty());
}

#[test]
fn hours_are_utc_hours_even_before_1970() {
    let mut p = plugin(&[]);
    feed(&mut p, &[probe(-1, 5.0), probe(HOUR + 1, 5.0)]);
    let out = feed(&mut p, &[probe(3 * HOUR, 5.0)]);
    let s = &out.summaries()[0];
    assert_eq!((s.window_start_ms, s.window_end_ms), (HOUR, 2 * HOUR));
    let mut p = plugin(&[]);
    let out = feed(&mut p, &[probe(-1, 5.0), probe(0, 5.0)]);
    let s = &out.summaries()[0];
    assert_eq!((s.window_start_ms, s.window_end_ms), (-HOUR, 0));
}

#[test]
fn the_reading_that_closes_an_hour_opens_the_next() {
    let mut p = plugin(&[]);
    let out = feed(&mut p, &[probe(at(50), 5.0), probe(at(61), 9.0)]);
    assert_eq!(codes(&out), ["above-high"]);
    assert_eq!(out.summaries().len(), 1);
    assert_eq!(out.summaries()[0].get("max"), Some(5.0));
    let out = tick(&mut p, at(120));
    assert_eq!(out.summaries()[0].window_start_ms, at(60));
    assert_eq!(out.summaries()[0].get("max"), Some(9.0));
}
