//! Episode rules, observed through the episode counts of the summaries.

use super::{Harness, episodes, metric};

const DAY: i64 = 24 * 60;

/// Day-0 episode counts of `values` at 5-minute spacing from minute 30, after
/// six readings of 100 (so the sensor interval is 5 min from the start).
fn day_counts(values: &[f64]) -> [f64; 4] {
    let mut h = Harness::new();
    h.series(0, 5, &[100.0; 6]).series(30, 5, values).tick(2 * DAY);
    episodes(h.day(0))
}

#[test]
fn fifteen_minutes_below_70_is_a_hypo_episode() {
    assert_eq!(day_counts(&[65.0, 65.0, 100.0]), [0.0; 4], "2 readings = 10 min");
    assert_eq!(day_counts(&[65.0, 65.0, 65.0, 100.0]), [1.0, 0.0, 0.0, 0.0]);
    // 70 is not below 70: it breaks the run.
    assert_eq!(day_counts(&[69.0, 69.0, 70.0, 69.0, 69.0, 100.0]), [0.0; 4]);
}

#[test]
fn level_2_inside_level_1() {
    let values = [65.0, 65.0, 50.0, 50.0, 50.0, 65.0, 65.0, 65.0, 80.0, 80.0, 80.0];
    assert_eq!(day_counts(&values), [1.0, 1.0, 0.0, 0.0]);
    // 54 is not below 54; the level 1 run goes on.
    assert_eq!(day_counts(&[53.0, 53.0, 54.0, 53.0, 53.0, 100.0]), [1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn hyper_levels_and_their_boundaries() {
    let values = [190.0, 190.0, 260.0, 260.0, 260.0, 190.0, 190.0, 190.0, 100.0];
    assert_eq!(day_counts(&values), [0.0, 0.0, 1.0, 1.0]);
    assert_eq!(day_counts(&[181.0, 181.0, 180.0, 181.0, 181.0, 100.0]), [0.0; 4]);
    assert_eq!(
        day_counts(&[251.0, 251.0, 250.0, 251.0, 251.0, 100.0]),
        [0.0, 0.0, 1.0, 0.0]
    );
}

#[test]
fn recovery_needs_fifteen_minutes_too() {
    // 2 readings >= 70 (10 min) do not end the episode: no second one.
    let values = [65.0, 65.0, 65.0, 80.0, 80.0, 65.0, 65.0, 65.0, 100.0, 100.0, 100.0];
    assert_eq!(day_counts(&values), [1.0, 0.0, 0.0, 0.0]);
    // 3 readings (15 min) do: the next run is a new episode.
    let values = [
        65.0, 65.0, 65.0, 80.0, 80.0, 80.0, 65.0, 65.0, 65.0, 100.0, 100.0, 100.0,
    ];
    assert_eq!(day_counts(&values), [2.0, 0.0, 0.0, 0.0]);
    // A reading meeting the condition again restarts the recovery run.
    let values = [65.0, 65.0, 65.0, 80.0, 80.0, 65.0, 80.0, 80.0, 65.0, 65.0, 65.0];
    assert_eq!(day_counts(&values), [1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn duration_follows_the_sensor_interval() {
    // At 15-minute data one reading below 70 lasts 15 minutes (once the
    // interval is known: here from the first spacing on).
    let mut h = Harness::with(&[("interval_min_spacings", "1")]);
    h.series(0, 15, &[100.0, 100.0, 100.0, 65.0, 100.0]).tick(2 * DAY);
    assert_eq!(episodes(h.day(0)), [1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn invalid_readings_are_absent_and_late_ones_ignored() {
    // 65, 402 (absent), 65, 65: a run of three readings.
    assert_eq!(day_counts(&[65.0, 402.0, 65.0, 65.0, 100.0]), [1.0, 0.0, 0.0, 0.0]);
    let mut h = Harness::new();
    h.series(0, 5, &[100.0; 8]).read(11, 60.0).read(16, 60.0).read(21, 60.0);
    h.read(40, 100.0).tick(2 * DAY);
    assert_eq!(episodes(h.day(0)), [0.0; 4]);
    assert_eq!(metric(h.day(0), "n"), 12.0);
}

/// Readings of 100 every 5 min up to 25, 65 at 30 and 35, then 65 at `resume`
/// and `resume + 5`, then 100.
fn across_a_gap(resume: i64) -> Harness {
    let mut h = Harness::new();
    h.series(0, 5, &[100.0; 6]).series(30, 5, &[65.0, 65.0]);
    h.series(resume, 5, &[65.0, 65.0, 100.0]).tick(2 * DAY);
    h
}

#[test]
fn a_gap_of_45_min_keeps_the_run_46_breaks_it() {
    // 35 -> 80 is 45 minutes: the run 30, 35, 80 lasts 15 min (first reading in hour 0).
    let h = across_a_gap(80);
    assert_eq!(episodes(h.hour(0)), [1.0, 0.0, 0.0, 0.0]);
    assert_eq!(episodes(h.hour(1)), [0.0; 4]);
    // 35 -> 81 is 46 minutes: the run is discarded, 81 and 86 are too short.
    let h = across_a_gap(81);
    assert_eq!(episodes(h.day(0)), [0.0; 4]);
}

#[test]
fn a_gap_over_45_min_ends_an_open_episode() {
    let run = |resume: i64| {
        let mut h = Harness::new();
        h.series(0, 5, &[100.0; 6]).series(30, 5, &[65.0; 3]);
        h.series(resume, 5, &[65.0, 65.0, 65.0, 100.0, 100.0, 100.0])
            .tick(2 * DAY);
        episodes(h.day(0))[0]
    };
    assert_eq!(run(85), 1.0, "40 -> 85 is 45 minutes: the same episode");
    assert_eq!(run(86), 2.0, "40 -> 86 is 46 minutes: a new episode");
}

#[test]
fn a_window_waits_for_an_episode_that_starts_in_it() {
    let mut h = Harness::new();
    h.series(0, 5, &[100.0; 11]).read(55, 65.0).read(60, 65.0);
    assert!(h.summaries.is_empty(), "hour 0 is held: the run from 55 is undecided");
    h.read(65, 65.0);
    assert_eq!(h.windows(), vec![("cgm".to_string(), 0, 60)]);
    assert_eq!(episodes(h.hour(0)), [1.0, 0.0, 0.0, 0.0]);
    assert_eq!(metric(h.hour(0), "n"), 12.0);
    h.tick(2 * DAY);
    assert_eq!(episodes(h.hour(1)), [0.0; 4]);

    // The run breaks instead: emitted without the episode.
    let mut h = Harness::new();
    h.series(0, 5, &[100.0; 11])
        .read(55, 65.0)
        .read(60, 65.0)
        .read(65, 100.0);
    assert_eq!(episodes(h.hour(0)), [0.0; 4]);

    // Decided by the closing reading itself: emitted at once.
    let mut h = Harness::new();
    h.series(0, 5, &[100.0; 10])
        .read(50, 65.0)
        .read(55, 65.0)
        .read(60, 65.0);
    assert_eq!(episodes(h.hour(0)), [1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn a_tick_after_the_gap_releases_a_held_window() {
    let mut h = Harness::new();
    h.series(0, 5, &[100.0; 11]).read(55, 65.0).tick(60).tick(100);
    assert!(h.summaries.is_empty(), "55 + 45 min: the run may still go on");
    h.tick(101);
    assert_eq!(h.windows(), vec![("cgm".to_string(), 0, 60)]);
    assert_eq!(episodes(h.hour(0)), [0.0; 4]);
}

#[test]
fn a_held_window_holds_the_later_ones() {
    let mut h = Harness::new();
    // 1-minute history keeps the interval at 1 min; then 65 every 40 minutes
    // (a run needing 15 readings) spans hours 0 to 2.
    let history = [100.0; 59];
    h.series(0, 1, &history).series(59, 40, &[65.0, 65.0, 65.0, 65.0]);
    assert!(h.summaries.is_empty());
    h.read(200, 100.0);
    let hours: Vec<i64> = h.windows().into_iter().map(|(_, start, _)| start).collect();
    assert_eq!(hours, vec![0, 60, 120]);
    assert_eq!(metric(h.hour(0), "n"), 60.0);
    assert_eq!(metric(h.hour(1), "n"), 1.0); // 99
    assert_eq!(metric(h.hour(2), "n"), 2.0); // 139, 179
}
