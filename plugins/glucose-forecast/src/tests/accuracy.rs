//! The hourly accuracy summary: errors worked out by hand, the trainer's
//! rule for the reading that judges a forecast, hours closed by the next
//! reading or by the tick a silent sensor asks for, and figures that never
//! depend on when ticks come.

use edgewise_sdk::time::{DAY_MS, HOUR_MS, MINUTE_MS, window_start};
use edgewise_sdk::{Plugin, Wake};
use forecast_model::{Model, Pushed, SensorModel, actual_at};

use super::{BASE, Harness, SENSOR, assert_close, at, metrics, shipped_model};

#[test]
fn an_hours_errors_worked_out_by_hand() {
    // The last-value model: every forecast is the reading it is made for.
    let mut h = Harness::new(&[]);
    h.read(0, 100.0).read(5, 110.0).read(30, 90.0).read(35, 130.0);
    assert!(h.summaries.is_empty(), "hour 0 is not over: {:?}", h.summaries);
    // The first reading of hour 1 closes hour 0. The 30-minute forecasts of
    // minutes 0 and 5 met the readings of 30 and 35: errors +10 and -20.
    // No 60-minute forecast reached its target in hour 0.
    h.read(65, 120.0);
    let hour = h.hour(0);
    assert_eq!(
        metrics(hour),
        [
            ("n_30", 2.0),
            ("rmse_30", 250f64.sqrt()),
            ("mae_30", 15.0),
            ("bias_30", -5.0),
            ("n_60", 0.0)
        ]
    );
    // Hour 1 so far: 30 ahead of 35 (130) against 65 (120): +10; 60 ahead
    // of 5 (110) against 65: -10. The forecasts for 60 (from 0 and 30) had
    // no reading within 2.5 minutes: left unscored.
    h.tick(124);
    assert_eq!(h.accuracy().len(), 1, "not due yet");
    assert_eq!(h.plugin.next_wake(), Wake::At(at(125)), "two tolerances after the hour");
    h.tick(125);
    assert_eq!(
        metrics(h.hour(1)),
        [
            ("n_30", 1.0),
            ("rmse_30", 10.0),
            ("mae_30", 10.0),
            ("bias_30", 10.0),
            ("n_60", 1.0),
            ("rmse_60", 10.0),
            ("mae_60", 10.0),
            ("bias_60", -10.0)
        ]
    );
    // Nothing left to close: the next wake is the one that forgets the
    // sensor, `forget_after` (7 days) after its newest reading.
    assert_eq!(h.plugin.next_wake(), Wake::At(at(65) + 7 * DAY_MS));
    h.tick(24 * 60);
    assert_eq!(h.accuracy().len(), 2);
}

#[test]
fn a_forecast_is_judged_by_the_reading_nearest_its_target() {
    // Target 30: readings 2 minutes before and 1 after; the later is nearer.
    let mut h = Harness::new(&[]);
    h.read(0, 100.0).read(28, 90.0).read(31, 95.0).read(70, 100.0);
    assert_eq!(h.hour(0).get("bias_30"), Some(5.0));
    assert_eq!(h.hour(0).get("n_30"), Some(1.0));
}

#[test]
fn on_a_tie_the_earlier_reading_judges_and_2_5_minutes_is_the_limit() {
    let half = 30 * 1000;
    let mut h = Harness::new(&[]);
    // Target 30 min: 27.5 and 32.5 are both 2.5 minutes away.
    h.read(0, 100.0)
        .read_at(SENSOR, at(27) + half, 80.0)
        .read_at(SENSOR, at(32) + half, 120.0)
        .read(70, 100.0);
    assert_eq!(h.hour(0).get("bias_30"), Some(20.0));

    // 1 ms further on either side: no reading judges it.
    let mut h = Harness::new(&[]);
    h.read(0, 100.0)
        .read_at(SENSOR, at(27) + half - 1, 80.0)
        .read_at(SENSOR, at(32) + half + 1, 120.0)
        .read(70, 100.0);
    assert!(h.accuracy().is_empty(), "{:?}", h.summaries);
}

#[test]
fn a_silent_sensor_has_its_hour_closed_by_the_tick_it_asks_for() {
    let mut h = Harness::new(&[]);
    h.series(0, 5, &[100.0; 9]);
    // Forecasts of 0..10 judged at 30..40, in hour 0; then silence.
    let Wake::At(wake) = h.plugin.next_wake() else {
        panic!("no wake asked for");
    };
    assert_eq!(wake, at(65));
    h.tick_at(wake);
    assert_eq!(h.hour(0).get("n_30"), Some(3.0));
    // Then only the tick that forgets it, and none after.
    assert_eq!(h.plugin.next_wake(), Wake::At(at(40) + 7 * DAY_MS));
    h.tick_at(at(40) + 7 * DAY_MS);
    assert_eq!(h.plugin.next_wake(), Wake::Idle);
}

#[test]
fn hours_without_a_judged_forecast_are_not_emitted() {
    let mut h = Harness::new(&[]);
    // A reading every 100 minutes: no forecast ever meets a reading.
    for k in 0..5 {
        h.read(k * 100, 100.0);
    }
    h.tick(10 * 60);
    assert!(h.summaries.is_empty(), "{:?}", h.summaries);
}

/// `(ts, value)` of a sensor's readings: about every 5 minutes, sometimes
/// sooner (so that two readings are within the tolerance of one target),
/// with gaps; a curve with lows.
fn irregular_day() -> Vec<(i64, f64)> {
    let mut readings = Vec::new();
    let mut ms = at(3);
    for k in 0..400i64 {
        ms += match k % 23 {
            0 => 95 * MINUTE_MS,
            5 | 11 => 90 * 1000,
            7 => 2 * MINUTE_MS + 30 * 1000,
            _ => 5 * MINUTE_MS + (k % 3) * 1000,
        };
        readings.push((ms, 120.0 + 70.0 * ((k as f64) / 13.0).sin()));
    }
    readings
}

#[test]
fn the_hourly_figures_are_the_trainers_actual_at_rule_hour_by_hour() {
    // The shipped model over an irregular day: each forecast is judged by
    // the reading `actual_at` finds, and counts in that reading's hour.
    let readings = irregular_day();
    let mut h = Harness::with_model(shipped_model(), &[]);
    for &(ts, value) in &readings {
        h.read_at(SENSOR, ts, value);
    }
    h.tick_at(readings.last().unwrap().0 + 2 * HOUR_MS);

    let model = Model::parse(shipped_model()).unwrap();
    let tolerance = model.features.tolerance_ms();
    let mut sensor = SensorModel::default();
    let (mut features, mut forecasts) = (Vec::new(), Vec::new());
    // Per hour start: per horizon, the errors in order of their reading.
    let mut expected: std::collections::BTreeMap<i64, Vec<Vec<(i64, f64)>>> = Default::default();
    for &(ts, value) in &readings {
        assert_eq!(
            sensor.observe(&model, (ts, value), &mut features, &mut forecasts),
            Pushed::Taken
        );
        for (i, horizon) in model.horizons.iter().enumerate() {
            let target = ts + i64::from(horizon.minutes) * MINUTE_MS;
            let Some(actual) = actual_at(&readings, target, tolerance) else {
                continue;
            };
            // The reading actual_at chose: the nearest, the earlier on a tie.
            let judge = readings
                .iter()
                .filter(|(ms, _)| ms.abs_diff(target) <= tolerance as u64)
                .min_by_key(|(ms, _)| ms.abs_diff(target))
                .unwrap();
            assert_eq!(judge.1, actual);
            let hour = window_start(judge.0, HOUR_MS);
            let errors = expected.entry(hour).or_insert_with(|| vec![Vec::new(); 2]);
            errors[i].push((judge.0, forecasts[i] - actual));
        }
    }
    let emitted = h.accuracy();
    assert_eq!(
        emitted.iter().map(|s| s.window_start_ms).collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>()
    );
    assert!(emitted.len() > 10, "a day of hours: {}", emitted.len());
    let mut judged = 0;
    for (summary, errors) in emitted.iter().zip(expected.values()) {
        for (errors, minutes) in errors.iter().zip([30, 60]) {
            let n = errors.len() as f64;
            judged += errors.len();
            assert_eq!(summary.get(&format!("n_{minutes}")), Some(n), "{summary:?}");
            if errors.is_empty() {
                continue;
            }
            let bias = errors.iter().map(|(_, e)| e).sum::<f64>() / n;
            let mae = errors.iter().map(|(_, e)| e.abs()).sum::<f64>() / n;
            let rmse = (errors.iter().map(|(_, e)| e * e).sum::<f64>() / n).sqrt();
            assert_close(summary.get(&format!("bias_{minutes}")).unwrap(), bias);
            assert_close(summary.get(&format!("mae_{minutes}")).unwrap(), mae);
            assert_close(summary.get(&format!("rmse_{minutes}")).unwrap(), rmse);
        }
    }
    assert!(judged > 400, "most forecasts met a reading: {judged}");
}

#[test]
fn ticks_never_change_the_figures() {
    // The same readings ticked every minute, and never until the end: the
    // same summaries, in the same order.
    let readings = irregular_day();
    let end = readings.last().unwrap().0 + 2 * HOUR_MS;
    let run = |tick_every_minute: bool| {
        let mut h = Harness::with_model(shipped_model(), &[]);
        let mut next_tick = BASE;
        for &(ts, value) in &readings {
            while tick_every_minute && next_tick < ts {
                h.tick_at(next_tick);
                next_tick += MINUTE_MS;
            }
            h.read_at(SENSOR, ts, value);
        }
        h.tick_at(end);
        h.summaries
    };
    let ticked = run(true);
    assert!(ticked.len() > 10);
    assert_eq!(ticked, run(false));
}

#[test]
fn a_tick_just_after_the_hour_leaves_it_open_for_a_nearer_reading() {
    // The forecast of 31 targets 61. A reading at 59 is 2 minutes from it
    // (in hour 0); a tick at 60:30 must not settle it, because the reading
    // at 61 is nearer (in hour 1). Had the tick come after 61, or not at
    // all, that is what would judge it.
    let run = |tick: bool| {
        let mut h = Harness::new(&[]);
        h.read(0, 100.0).read(31, 120.0).read(59, 90.0);
        if tick {
            h.tick_at(at(60) + 30_000);
        }
        h.read(61, 80.0).tick(3 * 60);
        h.summaries
    };
    let ticked = run(true);
    assert_eq!(ticked, run(false));
    let hour_1 = ticked.iter().find(|s| s.window_start_ms == at(60)).unwrap();
    // 120 forecast, 80 at 61: +40. The 60-minute forecast of 0 (100) has 59
    // and 61 a minute either side: the earlier judges it, in hour 0 (+10).
    assert_eq!(
        metrics(hour_1),
        [
            ("n_30", 1.0),
            ("rmse_30", 40.0),
            ("mae_30", 40.0),
            ("bias_30", 40.0),
            ("n_60", 0.0)
        ]
    );
    let hour_0 = ticked.iter().find(|s| s.window_start_ms == at(0)).unwrap();
    assert_eq!(hour_0.get("bias_60"), Some(10.0));
}
