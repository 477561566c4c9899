//! Hourly and daily summaries: every metric, window closing, emission order.

use super::{Harness, assert_close, at, episodes, metric};

const NAMES: [&str; 18] = [
    "n",
    "mean",
    "sd",
    "cv",
    "gmi",
    "min",
    "max",
    "tir_70_180",
    "tbr_below_54",
    "tbr_54_69",
    "tar_181_250",
    "tar_above_250",
    "active_pct",
    "invalid",
    "hypo_l1_episodes",
    "hypo_l2_episodes",
    "hyper_l1_episodes",
    "hyper_l2_episodes",
];

#[test]
fn metrics_in_order_with_hand_computed_values() {
    let mut h = Harness::new();
    h.series(0, 5, &[100.0, 120.0, 140.0, 160.0]).tick(60);
    let s = h.hour(0);
    let names: Vec<&str> = s.metrics.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, NAMES);
    assert_eq!(metric(s, "n"), 4.0);
    assert_close(metric(s, "mean"), 130.0);
    // sqrt((900 + 100 + 100 + 900) / 3)
    assert_close(metric(s, "sd"), 25.81988897471611);
    assert_close(metric(s, "cv"), 19.86145305747393);
    assert_close(metric(s, "gmi"), 3.31 + 0.02392 * 130.0);
    assert_close(metric(s, "gmi"), 6.4196);
    assert_eq!(metric(s, "min"), 100.0);
    assert_eq!(metric(s, "max"), 160.0);
    assert_eq!(metric(s, "tir_70_180"), 100.0);
    for band in ["tbr_below_54", "tbr_54_69", "tar_181_250", "tar_above_250"] {
        assert_eq!(metric(s, band), 0.0, "{band}");
    }
    // 4 readings of the 12 expected at 5-minute data.
    assert_close(metric(s, "active_pct"), 100.0 * 4.0 / 12.0);
    assert_eq!(metric(s, "invalid"), 0.0);
    assert_eq!(episodes(s), [0.0; 4]);
    assert_eq!((s.window_start_ms, s.window_end_ms), (at(0), at(60)));
}

#[test]
fn single_reading_has_zero_sd() {
    let mut h = Harness::new();
    h.read(10, 123.0).tick(60);
    let s = h.hour(0);
    assert_eq!(metric(s, "n"), 1.0);
    assert_eq!(metric(s, "mean"), 123.0);
    assert_eq!(metric(s, "sd"), 0.0);
    assert_eq!(metric(s, "cv"), 0.0);
    assert_close(metric(s, "gmi"), 6.25216);
    assert_eq!((metric(s, "min"), metric(s, "max")), (123.0, 123.0));
    // No spacing known yet: the default 5-minute interval.
    assert_close(metric(s, "active_pct"), 100.0 / 12.0);
}

#[test]
fn bands_at_their_exact_boundaries() {
    let mut h = Harness::new();
    let values = [53.0, 54.0, 69.0, 70.0, 180.0, 181.0, 250.0, 251.0, 100.0, 120.0];
    h.series(0, 5, &values).tick(60);
    let s = h.hour(0);
    assert_eq!(metric(s, "n"), 10.0);
    assert_eq!(metric(s, "tbr_below_54"), 10.0); // 53
    assert_eq!(metric(s, "tbr_54_69"), 20.0); // 54, 69
    assert_eq!(metric(s, "tir_70_180"), 40.0); // 70, 180, 100, 120
    assert_eq!(metric(s, "tar_181_250"), 20.0); // 181, 250
    assert_eq!(metric(s, "tar_above_250"), 10.0); // 251
    assert_close(metric(s, "mean"), 132.8);
    assert_close(metric(s, "sd"), 77.52390312384662);
    assert_close(metric(s, "cv"), 58.3764330751857);
    assert_close(metric(s, "gmi"), 6.486576);
    assert_eq!((metric(s, "min"), metric(s, "max")), (53.0, 251.0));
}

#[test]
fn active_pct_uses_the_interval_at_close() {
    let mut h = Harness::with(&[("interval_min_spacings", "1")]);
    // 15-minute data; hour 1 misses its last reading.
    h.series(0, 15, &[100.0; 7]).tick(120);
    assert_eq!(metric(h.hour(0), "active_pct"), 100.0);
    assert_eq!(metric(h.hour(1), "active_pct"), 75.0);

    let mut h = Harness::with(&[("default_interval", "15m")]);
    h.read(0, 100.0).tick(60);
    assert_eq!(metric(h.hour(0), "active_pct"), 25.0);
}

#[test]
fn active_pct_is_capped_at_100() {
    let mut h = Harness::new();
    // Two hours of 5-minute data, then an hour of 3-minute data: the median stays 5.
    h.series(0, 5, &[100.0; 24]).series(120, 3, &[100.0; 20]).tick(180);
    assert_eq!(metric(h.hour(2), "n"), 20.0);
    assert_eq!(metric(h.hour(2), "active_pct"), 100.0);
}

#[test]
fn invalid_readings_are_counted_not_measured() {
    let mut h = Harness::new();
    let values = [
        100.0,
        38.9,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        402.0,
        39.0,
        401.0,
        40.0,
        400.0,
    ];
    // Tick past the episode gap: the last reading (400) starts a hyper run
    // that holds hour 0 until it is decided.
    h.series(0, 5, &values).tick(120);
    let s = h.hour(0);
    assert_eq!(metric(s, "n"), 5.0);
    assert_eq!(metric(s, "invalid"), 5.0);
    assert_eq!((metric(s, "min"), metric(s, "max")), (39.0, 401.0));
    assert_close(metric(s, "mean"), (100.0 + 39.0 + 401.0 + 40.0 + 400.0) / 5.0);
}

#[test]
fn windows_without_valid_readings_are_not_emitted() {
    let mut h = Harness::new();
    h.read(10, f64::NAN).read(20, 20.0).read(70, 100.0).tick(120);
    assert_eq!(h.windows(), vec![("cgm".to_string(), 60, 60)]);
    h.tick(2 * 24 * 60);
    let day = h.day(0);
    assert_eq!((metric(day, "n"), metric(day, "invalid")), (1.0, 2.0));
}

#[test]
fn a_later_reading_closes_a_window() {
    let mut h = Harness::new();
    h.series(0, 5, &[100.0; 12]);
    assert!(h.summaries.is_empty());
    h.read(61, 100.0);
    assert_eq!(h.windows(), vec![("cgm".to_string(), 0, 60)]);
    // An invalid reading closes windows too.
    h.read(125, f64::NAN);
    assert_eq!(h.windows().len(), 2);
    assert_eq!(metric(h.hour(1), "n"), 1.0);
}

#[test]
fn a_tick_closes_a_window_at_its_end() {
    let mut h = Harness::new();
    h.series(0, 5, &[100.0; 12]).tick(59).tick_at(at(60) - 1);
    assert!(h.summaries.is_empty());
    h.tick(60);
    assert_eq!(h.windows(), vec![("cgm".to_string(), 0, 60)]);
    assert_eq!(metric(h.hour(0), "n"), 12.0);
    // Nothing twice.
    h.tick(61).tick(62);
    assert_eq!(h.summaries.len(), 1);
}

#[test]
fn hourly_summaries_come_before_daily_ones() {
    let mut h = Harness::new();
    h.read(22 * 60 + 30, 100.0)
        .read(23 * 60 + 30, 120.0)
        .read(24 * 60 + 5, 140.0);
    assert_eq!(
        h.windows(),
        vec![
            ("cgm".to_string(), 22 * 60, 60),
            ("cgm".to_string(), 23 * 60, 60),
            ("cgm".to_string(), 0, 24 * 60),
        ]
    );
    let day = h.day(0);
    assert_eq!(metric(day, "n"), 2.0);
    assert_close(metric(day, "mean"), 110.0);
}

#[test]
fn ticks_handle_sensors_in_name_order() {
    let mut h = Harness::new();
    h.read_at("b", at(0), 100.0).read_at("a", at(0), 100.0).tick(24 * 60);
    let order: Vec<(String, i64)> = h.windows().into_iter().map(|(s, _, len)| (s, len)).collect();
    let expected = [("a", 60), ("a", 1440), ("b", 60), ("b", 1440)];
    assert_eq!(order, expected.map(|(s, l)| (s.to_string(), l)));
}

#[test]
fn late_readings_count_until_their_window_is_emitted() {
    let mut h = Harness::new();
    h.series(0, 5, &[100.0; 12]).read(2, 40.0).read(3, f64::NAN);
    h.read(60, 100.0);
    let hour = h.hour(0);
    assert_eq!((metric(hour, "n"), metric(hour, "min")), (13.0, 40.0));
    assert_eq!(metric(hour, "invalid"), 1.0);
    // Hour 0 is gone: this late reading only reaches the still-open day.
    h.read(4, 45.0).tick(24 * 60);
    assert_eq!(metric(h.hour(1), "n"), 1.0);
    let day = h.day(0);
    assert_eq!((metric(day, "n"), metric(day, "min")), (15.0, 40.0));
    assert_eq!(metric(day, "invalid"), 1.0);
    assert_eq!(h.summaries.len(), 3);
}

#[test]
fn late_readings_after_a_tick_close_are_ignored() {
    let mut h = Harness::new();
    h.read(30, 100.0).tick(60).read(40, 50.0).read(20, 60.0);
    // Hour 0 was emitted by the tick; the in-order 40 still raises its alert.
    assert_eq!(h.summaries.len(), 1);
    assert_eq!(metric(h.hour(0), "n"), 1.0);
    assert_eq!(h.alerts.iter().filter(|a| a.code == "urgent-low").count(), 1);
    h.tick(24 * 60);
    assert_eq!(metric(h.day(0), "n"), 3.0);
}
