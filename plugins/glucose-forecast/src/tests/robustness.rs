//! Hostile and odd inputs: duplicates, late readings, invalid values, gaps,
//! absurd timestamps, a sensor reading every second; bounded state, counted
//! and sparsely logged; snapshots that carry everything.

use edgewise_sdk::time::HOUR_MS;
use edgewise_sdk::{Config, LogLevel, Outputs, Plugin, Reading};

use super::{Harness, SENSOR, at, shipped_model};
use crate::GlucoseForecast;

#[test]
fn duplicates_and_late_readings_make_no_forecast_and_are_counted_and_logged_sparingly() {
    let mut h = Harness::new(&[("emit_forecasts", "true")]);
    h.read(0, 100.0).read(10, 100.0);
    assert_eq!(h.forecasts().len(), 4);
    for _ in 0..12 {
        h.read(10, 100.0).read(5, 100.0);
    }
    assert_eq!(h.forecasts().len(), 4, "no forecast for a duplicate or a late reading");
    assert_eq!(h.plugin.state.ignored.not_newer, 24);
    // The 1st and the 10th, nothing else.
    assert_eq!(h.logs.len(), 2, "{:?}", h.logs);
    assert_eq!(h.logs[0].0, LogLevel::Warn);
    assert_eq!(
        h.logs[0].1,
        format!(
            "no forecast for a reading of sensor `cgm` at {} ms: not after its newest (a duplicate or a late \
             reading); 1 such readings so far",
            at(10)
        )
    );
    assert!(h.logs[1].1.ends_with("; 10 such readings so far"), "{:?}", h.logs);
    // A late reading judges nothing: the forecast of 0 stays for the
    // reading at 30.
    h.read(30, 90.0).read(62, 100.0);
    assert_eq!(h.hour(0).get("n_30"), Some(1.0));
    assert_eq!(h.hour(0).get("bias_30"), Some(10.0));
}

#[test]
fn invalid_values_make_no_forecast_no_sensor_and_judge_nothing() {
    let mut h = Harness::new(&[("emit_forecasts", "true")]);
    // A sensor with only invalid readings is not a sensor.
    h.read_at("broken", at(0), 20.0).read_at("broken", at(5), 500.0);
    assert!(h.plugin.state.sensors.is_empty());
    h.read(0, 100.0)
        .read(30, 38.9)
        .read(31, 401.5)
        .read(32, f64::NAN)
        .read(33, f64::INFINITY)
        .read(62, 100.0);
    assert_eq!(h.forecasts().len(), 4, "{:?}", h.forecasts());
    assert!(
        h.accuracy().is_empty(),
        "an invalid value judged a forecast: {:?}",
        h.summaries
    );
    assert_eq!(h.plugin.state.ignored.invalid, 6);
    // The limits themselves are valid.
    h.read(65, 39.0).read(70, 401.0);
    assert_eq!(h.forecasts().len(), 8);
}

#[test]
fn absurd_timestamps_leave_no_trace() {
    let mut h = Harness::new(&[("emit_forecasts", "true")]);
    for ts in [i64::MIN, i64::MAX, (1 << 53) + 1, -(1 << 53) - 1] {
        h.read_at("far", ts, 100.0);
    }
    assert!(h.plugin.state.sensors.is_empty());
    assert!(h.summaries.is_empty() && h.alerts.is_empty());
    assert_eq!(h.plugin.state.ignored.out_of_range, 4);
    // The edges of the range work, forecasts and all.
    h.read_at("edge", 1 << 53, 100.0).read_at("edge", -(1 << 53), 100.0);
    assert_eq!(h.forecasts().len(), 2);
    h.tick_at(i64::MAX);
}

#[test]
fn a_gap_longer_than_the_horizons_leaves_nothing_pending() {
    let mut h = Harness::new(&[]);
    h.series(0, 5, &[100.0; 6]);
    // Three hours of silence, then readings again: the forecasts made
    // before the gap met no reading; those after it are judged as usual.
    h.series(205, 5, &[110.0; 13]);
    h.tick(24 * 60);
    let hours: Vec<i64> = h
        .accuracy()
        .iter()
        .map(|s| (s.window_start_ms - at(0)) / HOUR_MS)
        .collect();
    assert_eq!(hours, [3, 4]);
    assert_eq!(
        h.hour(3).get("n_30"),
        Some(1.0),
        "205 judged at 235... {:?}",
        h.summaries
    );
}

#[test]
fn a_sensor_reading_every_second_stays_bounded() {
    let mut h = Harness::with_model(shipped_model(), &[]);
    let mut sizes = Vec::new();
    for hour in 0..4 {
        let readings: Vec<Reading> = (0..3600)
            .map(|s| Reading::new(SENSOR, at(hour * 60) + s * 1000, 100.0 + (s % 50) as f64, "mg/dL"))
            .collect();
        for chunk in readings.chunks(256) {
            h.batch(chunk);
        }
        sizes.push(h.plugin.snapshot().unwrap().len());
    }
    // The history keeps its hour of readings (at most 2048), and each
    // horizon at most its minutes plus a step of forecasts.
    assert!(sizes.iter().all(|&size| size < 64 * 1024), "{sizes:?}");
    assert!(sizes[3] <= sizes[1] + 1024, "still growing: {sizes:?}");
    assert!(h.plugin.state.ignored.left_out > 10_000);
    assert!(
        h.logs.iter().any(|(_, line)| line.contains("will not be scored")),
        "{:?}",
        h.logs
    );
    // Scored forecasts are still reported.
    assert!(!h.accuracy().is_empty());
}

#[test]
fn a_snapshot_restored_anywhere_gives_the_uninterrupted_outputs() {
    let readings: Vec<(i64, f64)> = (0..400)
        .map(|k| (at(5 * k + k % 3), 110.0 + 60.0 * ((k as f64) / 11.0).sin()))
        .collect();
    let config = [("emit_forecasts", "true"), ("low", "100")];
    let mut plain = Harness::with_model(shipped_model(), &config);
    for &(ts, value) in &readings {
        plain.read_at(SENSOR, ts, value);
    }
    for cut in [1, 37, 200, 399] {
        let mut first = Harness::with_model(shipped_model(), &config);
        for &(ts, value) in &readings[..cut] {
            first.read_at(SENSOR, ts, value);
        }
        let snapshot = first.plugin.snapshot().unwrap();
        let mut restored = GlucoseForecast::init(Config::from_pairs(&config)).unwrap();
        restored.restore(GlucoseForecast::SNAPSHOT_SCHEMA, &snapshot).unwrap();
        let mut out = Outputs::default();
        for &(ts, value) in &readings[cut..] {
            restored
                .on_readings(&[Reading::new(SENSOR, ts, value, "mg/dL")], &mut out)
                .unwrap();
        }
        let (alerts, summaries, _) = out.take();
        assert_eq!([&first.alerts[..], &alerts[..]].concat(), plain.alerts, "cut at {cut}");
        assert_eq!(
            [&first.summaries[..], &summaries[..]].concat(),
            plain.summaries,
            "cut at {cut}"
        );
        assert_eq!(restored.next_wake(), plain.plugin.next_wake());
    }
    assert!(!plain.alerts.is_empty() && plain.accuracy().len() > 10);
}

#[test]
fn a_snapshot_of_another_layout_is_refused() {
    let mut h = Harness::new(&[]);
    h.read(0, 100.0);
    let snapshot = h.plugin.snapshot().unwrap();
    let mut other = Harness::new(&[]).plugin;
    assert_eq!(GlucoseForecast::SNAPSHOT_SCHEMA, 2);
    assert!(other.restore(3, &snapshot).unwrap_err().contains("schema 3"));
    assert!(other.restore(2, &snapshot[..snapshot.len() - 1]).is_err());
    assert!(other.restore(2, &[snapshot.clone(), vec![0]].concat()).is_err());
}

#[test]
fn a_snapshot_of_version_0_1_0_is_upgraded_and_the_sensors_go_on() {
    // Schema 1 (0.1.0, before adaptation) kept each sensor's history where
    // schema 2 keeps its model state. An upgraded device must go on from
    // the history, alert suppression and pending forecasts, adapting anew.
    let readings: Vec<(i64, f64)> = (0..300)
        .map(|k| (at(5 * k), 110.0 + 60.0 * ((k as f64) / 11.0).sin()))
        .collect();
    let config = [("emit_forecasts", "true"), ("low", "100")];
    let (before, after) = readings.split_at(200);
    let mut plain = Harness::with_model(shipped_model(), &config);
    let mut old = Harness::with_model(shipped_model(), &config);
    for &(ts, value) in before {
        plain.read_at(SENSOR, ts, value);
        old.read_at(SENSOR, ts, value);
    }
    let state = &old.plugin.state;
    let v1 = crate::StateV1 {
        sensors: state.sensors.iter().map(|(id, s)| (id.clone(), s.to_v1())).collect(),
        next_due_ms: state.next_due_ms,
        ignored: state.ignored.clone(),
    };
    let mut upgraded = Harness::with_model(shipped_model(), &config);
    upgraded
        .plugin
        .restore(1, &edgewise_sdk::snapshot::encode(&v1).unwrap())
        .unwrap();
    // Everything schema 1 had is carried over, to the byte.
    let carried = |h: &Harness| edgewise_sdk::snapshot::encode(&h.plugin.state.sensors[SENSOR].to_v1()).unwrap();
    assert_eq!(carried(&upgraded), carried(&old));
    assert_eq!(upgraded.plugin.next_wake(), old.plugin.next_wake());

    for &(ts, value) in after {
        plain.read_at(SENSOR, ts, value);
        upgraded.read_at(SENSOR, ts, value);
    }
    // The first forecasts after the upgrade are the cloud's on the whole
    // history (nothing learnt yet, nothing forgotten).
    let model = forecast_model::Model::parse(shipped_model()).unwrap();
    let mut cloud = model.clone();
    cloud.horizons.iter_mut().for_each(|h| h.adaptation = None);
    let mut sensor = forecast_model::SensorModel::default();
    let (mut features, mut expected) = (Vec::new(), Vec::new());
    for &reading in &readings[..=200] {
        sensor.observe(&cloud, reading, &mut features, &mut expected);
    }
    let first: Vec<f64> = upgraded.forecasts()[..2]
        .iter()
        .map(|s| s.get("forecast").unwrap())
        .collect();
    assert_eq!(first, expected);
    // The forecasts pending at the upgrade are judged as if nothing had
    // happened: the same hours, the same counts.
    let counts = |h: &Harness| -> Vec<(i64, Option<f64>, Option<f64>)> {
        h.accuracy()
            .iter()
            .filter(|s| s.window_start_ms >= after[0].0 - HOUR_MS)
            .map(|s| (s.window_start_ms, s.get("n_30"), s.get("n_60")))
            .collect()
    };
    assert!(counts(&upgraded).len() >= 8);
    assert_eq!(counts(&upgraded), counts(&plain));
}

#[test]
fn a_batch_of_many_sensors_is_handled_in_order() {
    let mut h = Harness::new(&[("emit_forecasts", "true")]);
    let names: Vec<String> = (0..300).map(|i| format!("sensor-{i:03}")).collect();
    for minute in [0, 5, 30, 35, 65] {
        let readings: Vec<Reading> = names
            .iter()
            .map(|name| Reading::new(name, at(minute), 100.0 + minute as f64, "mg/dL"))
            .collect();
        h.batch(&readings);
    }
    assert_eq!(h.forecasts().len(), 300 * 5 * 2);
    // The reading at 65 closed each sensor's hour 0, in batch order.
    let closed: Vec<&str> = h.accuracy().iter().map(|s| s.sensor.as_str()).collect();
    assert_eq!(closed, names.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(h.accuracy().iter().all(|s| s.get("bias_30") == Some(-30.0)));
    // Then one tick closes hour 1 for all of them, in name order.
    h.tick(125);
    assert_eq!(h.accuracy().len(), 600);
}

/// Sensors come and go: one silent for `forget_after` is forgotten by the
/// tick the plugin asks for at that time (after its hours of accuracy), and
/// a reading of it after that starts it afresh; a sensor that keeps reading
/// is kept. Then, with every sensor gone, the plugin asks for no tick.
#[test]
fn a_sensor_silent_for_forget_after_is_forgotten_at_that_tick() {
    use edgewise_sdk::Wake;
    let mut h = Harness::new(&[("forget_after", "48h")]);
    // An hour and a half of `gone`, for an hour of forecasts judged.
    for minute in (0..=90).step_by(5) {
        h.read_at("gone", at(minute), 120.0).read_at("stays", at(minute), 120.0);
    }
    let mut ticks = 0;
    while let Wake::At(when) = h.plugin.next_wake() {
        if when > at(4 * 24 * 60) {
            break;
        }
        h.read_at("stays", when, 120.0).tick_at(when);
        ticks += 1;
        assert!(ticks < 10_000, "the wakes move on");
    }
    assert_eq!(h.plugin.state.sensors.len(), 1, "`gone` forgotten, `stays` kept");
    assert!(h.plugin.state.sensors.contains_key("stays"));
    let forgot: Vec<_> = h
        .logs
        .iter()
        .filter(|(_, line)| line.starts_with("forgot 1 sensor"))
        .collect();
    assert_eq!(forgot.len(), 1, "{:?}", h.logs);
    // Its hour of accuracy came first.
    assert!(h.accuracy().iter().any(|s| s.sensor == "gone"));
    h.read_at("gone", at(5 * 24 * 60), 120.0);
    assert_eq!(h.plugin.state.sensors.len(), 2);
}

#[test]
fn forget_after_is_from_two_days_to_the_manifests_seven() {
    // The model asset provided, so that only the key can refuse.
    Harness::new(&[("forget_after", "48h")]);
    assert!(GlucoseForecast::init(Config::from_pairs(&[("forget_after", "168h")])).is_ok());
    for wrong in ["47h", "0m", "169h", "8785h"] {
        assert!(
            GlucoseForecast::init(Config::from_pairs(&[("forget_after", wrong)])).is_err(),
            "{wrong}"
        );
    }
}

/// A state saved by 0.2.2 (before forgetting) asks for no tick once its
/// sensors' hours are emitted: restored, the tick that forgets them is due.
#[test]
fn a_silent_sensor_of_a_state_saved_before_forgetting_is_forgotten_too() {
    use edgewise_sdk::Wake;
    use edgewise_sdk::time::DAY_MS;
    let mut h = Harness::new(&[]);
    h.series(0, 5, &[100.0; 19]).tick(24 * 60);
    h.plugin.state.next_due_ms = i64::MAX;
    assert_eq!(h.plugin.next_wake(), Wake::Idle, "as 0.2.2 saved it");
    let saved = h.plugin.snapshot().unwrap();

    let mut restored = GlucoseForecast::init(Config::from_pairs(&[])).unwrap();
    restored.restore(GlucoseForecast::SNAPSHOT_SCHEMA, &saved).unwrap();
    let forget_at = at(90) + 7 * DAY_MS;
    assert_eq!(restored.next_wake(), Wake::At(forget_at));
    restored.on_tick(forget_at, &mut Outputs::default()).unwrap();
    assert!(restored.state.sensors.is_empty());
    assert_eq!(restored.next_wake(), Wake::Idle);
}
