//! Forecast summaries (`emit_forecasts`): only when asked, exactly the
//! fields the issue names, and the trainer's numbers.

use edgewise_sdk::time::MINUTE_MS;
use forecast_model::{Model, Pushed, SensorModel};

use super::{Harness, SENSOR, assert_close, at, metrics, shipped_model};

#[test]
fn forecasts_are_not_emitted_by_default() {
    let mut h = Harness::with_model(shipped_model(), &[]);
    h.series(0, 5, &[120.0, 118.0, 115.0, 111.0]);
    assert!(h.forecasts().is_empty(), "{:?}", h.summaries);
    assert!(h.summaries.is_empty(), "no hour is over yet: {:?}", h.summaries);
}

#[test]
fn with_emit_forecasts_every_reading_has_one_summary_per_horizon_with_exactly_its_fields() {
    // 2 mg/dL more every 5 minutes: the line through the last 15 minutes
    // reaches +12 in 30 minutes and +24 in 60.
    let mut h = Harness::with_model(
        &Model::linear_extrapolation(&[30, 60]).to_bytes().unwrap(),
        &[("emit_forecasts", "true")],
    );
    let values: Vec<f64> = (0..6).map(|k| 100.0 + 2.0 * k as f64).collect();
    h.series(0, 5, &values);
    let forecasts = h.forecasts();
    assert_eq!(forecasts.len(), 12, "two per reading: {forecasts:?}");
    for (i, pair) in forecasts.chunks(2).enumerate() {
        let ts = at(5 * i as i64);
        for (summary, minutes) in pair.iter().zip([30, 60]) {
            assert_eq!(summary.sensor, SENSOR);
            assert_eq!(summary.window_start_ms, ts);
            assert_eq!(summary.window_end_ms, ts + minutes * MINUTE_MS);
            let names: Vec<&str> = metrics(summary).iter().map(|(name, _)| *name).collect();
            assert_eq!(names, ["forecast", "horizon_min"]);
            assert_eq!(summary.get("horizon_min"), Some(minutes as f64));
        }
    }
    // From the fourth reading on the last 15 minutes are all readings.
    let last = &forecasts[10..];
    assert_close(last[0].get("forecast").unwrap(), 110.0 + 12.0);
    assert_close(last[1].get("forecast").unwrap(), 110.0 + 24.0);
}

#[test]
fn forecasts_are_the_trainers_own_predictions_for_the_same_readings() {
    // The shipped model over a day with gaps, a rise and a fall: what the
    // plugin emits is what forecast-model computes for the same readings.
    let mut h = Harness::with_model(shipped_model(), &[("emit_forecasts", "true")]);
    let model = Model::parse(shipped_model()).unwrap();
    let mut readings = Vec::new();
    let mut minute = 0;
    for k in 0..300i64 {
        // Mostly every 5 minutes, sometimes 4 or 7, and two long gaps.
        minute += match k {
            100 => 47,
            200 => 180,
            _ => [5, 5, 4, 5, 7][k as usize % 5],
        };
        let value = 140.0 + 60.0 * ((k as f64) / 17.0).sin() + (k % 7) as f64;
        readings.push((at(minute), value));
    }
    for &(ts, value) in &readings {
        h.read_at(SENSOR, ts, value);
    }
    assert!(
        model.horizons.iter().all(|h| h.adaptation.is_some()),
        "the shipped model adapts"
    );
    let mut sensor = SensorModel::default();
    let (mut features, mut forecasts) = (Vec::new(), Vec::new());
    let mut expected = Vec::new();
    for &(ts, value) in &readings {
        assert_eq!(
            sensor.observe(&model, (ts, value), &mut features, &mut forecasts),
            Pushed::Taken
        );
        for (horizon, forecast) in model.horizons.iter().zip(&forecasts) {
            expected.push((ts, horizon.minutes, *forecast));
        }
    }
    let emitted: Vec<(i64, u32, f64)> = h
        .forecasts()
        .iter()
        .map(|s| {
            (
                s.window_start_ms,
                s.get("horizon_min").unwrap() as u32,
                s.get("forecast").unwrap(),
            )
        })
        .collect();
    assert_eq!(emitted.len(), expected.len());
    for (emitted, expected) in emitted.iter().zip(&expected) {
        assert_eq!((emitted.0, emitted.1), (expected.0, expected.1));
        // The same code on the same inputs: the same bits.
        assert_eq!(emitted.2.to_bits(), expected.2.to_bits(), "{emitted:?} vs {expected:?}");
    }
}

#[test]
fn a_sensor_with_one_reading_is_forecast_from_that_reading_alone() {
    let mut h = Harness::with_model(shipped_model(), &[("emit_forecasts", "true")]);
    h.read(0, 150.0);
    let model = Model::parse(shipped_model()).unwrap();
    let forecasts = h.forecasts();
    assert_eq!(forecasts.len(), 2);
    for (summary, horizon) in forecasts.iter().zip(&model.horizons) {
        // No change yet: every lag 0, every average the value itself.
        let expected = horizon.predict(150.0, &vec![0.0; model.features.len()]);
        assert_eq!(summary.get("forecast"), Some(expected));
    }
    // Nothing judged, nothing to say an hour later.
    h.tick(24 * 60);
    assert_eq!(h.summaries.len(), 2, "{:?}", h.summaries);
}

#[test]
fn sensors_are_forecast_apart() {
    let mut h = Harness::new(&[("emit_forecasts", "true")]);
    h.read_at("a", at(0), 100.0)
        .read_at("b", at(0), 200.0)
        .read_at("a", at(5), 110.0)
        .read_at("b", at(5), 190.0);
    let seen: Vec<(&str, f64)> = h
        .forecasts()
        .iter()
        .filter(|s| s.get("horizon_min") == Some(30.0))
        .map(|s| (s.sensor.as_str(), s.get("forecast").unwrap()))
        .collect();
    assert_eq!(seen, [("a", 100.0), ("b", 200.0), ("a", 110.0), ("b", 190.0)]);
}

#[test]
fn a_sensor_in_mmol_per_litre_is_forecast_as_the_same_sensor_in_mg_per_decilitre() {
    // Before: every mmol/L value was below the valid range of mg/dL values:
    // no forecast, no predicted low, ever.
    let pairs = [("emit_forecasts", "true")];
    let (mut in_mmol, mut in_mg) = (
        Harness::with_model(shipped_model(), &pairs),
        Harness::with_model(shipped_model(), &pairs),
    );
    let mmol = [6.0, 5.6, 5.1, 4.6, 4.2, 3.9, 3.6, 3.3];
    for (k, value) in mmol.iter().enumerate() {
        let ts = at(5 * k as i64);
        in_mmol.batch(&[edgewise_sdk::Reading::new(SENSOR, ts, *value, "mmol/L")]);
        in_mg.batch(&[edgewise_sdk::Reading::new(
            SENSOR,
            ts,
            value * glucose_units::MG_DL_PER_MMOL_L,
            "mg/dL",
        )]);
    }
    assert_eq!(in_mmol.forecasts().len(), 2 * mmol.len());
    assert_eq!(in_mmol.summaries, in_mg.summaries);
    assert_eq!(in_mmol.alerts, in_mg.alerts);
    assert!(
        in_mmol.codes().iter().any(|(_, code)| code.starts_with("predicted")),
        "{:?}",
        in_mmol.codes()
    );
}
