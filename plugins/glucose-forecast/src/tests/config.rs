//! Configuration and the model asset: what `init` refuses, and why.

use edgewise_sdk::{Config, Plugin};
use forecast_model::Model;

use super::{Harness, shipped_model};
use crate::{GlucoseForecast, MODEL_ASSET};

/// `init`'s error with the model file `model` (none: no asset) and `pairs`.
fn init_error(model: Option<&[u8]>, pairs: &[(&str, &str)]) -> String {
    // A fresh thread: its assets are only what this test provides.
    let model = model.map(<[u8]>::to_vec);
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    std::thread::spawn(move || {
        if let Some(model) = model {
            edgewise_sdk::asset::provide(MODEL_ASSET, &model);
        }
        GlucoseForecast::init(Config::new(pairs)).err().unwrap()
    })
    .join()
    .unwrap()
}

/// The configuration a device gives the signed bundle when the operator
/// sets nothing: `edgewise.toml`'s `[config]`. It must start the plugin, and
/// no key may have a default both there and in the code (docs/manifest.md,
/// "Config defaults: one place").
#[test]
fn the_manifest_config_starts_the_plugin_with_each_default_in_one_place() {
    let manifest = Config::from_manifest(include_str!("../../edgewise.toml")).unwrap();
    let result = std::thread::spawn(move || {
        edgewise_sdk::asset::provide(MODEL_ASSET, shipped_model());
        GlucoseForecast::init(manifest).err()
    })
    .join()
    .unwrap();
    assert_eq!(result, None);
}

#[test]
fn unknown_key_is_refused_by_name() {
    let error = init_error(Some(shipped_model()), &[("low", "70"), ("emit_forecast", "true")]);
    assert_eq!(error, "unknown config key(s): emit_forecast");
}

#[test]
fn bad_values_name_the_key() {
    for (key, value) in [
        ("low", "seventy"),
        ("urgent_low", "NaN"),
        ("repeat", "30 parsecs"),
        ("repeat", "0m"),
        ("repeat", "367d"),
        ("repeat", "8785h"),
        ("emit_forecasts", "yes"),
        ("emit_forecasts", "1"),
        ("invalid_below", "low"),
        ("invalid_above", "inf"),
    ] {
        let error = init_error(Some(shipped_model()), &[(key, value)]);
        assert!(error.contains(&format!("`{key}`")), "{key}={value}: {error}");
    }
}

#[test]
fn every_documented_key_is_accepted() {
    let keys = [
        ("low", "70"),
        ("urgent_low", "55"),
        ("repeat", "30m"),
        ("emit_forecasts", "false"),
        ("invalid_below", "39"),
        ("invalid_above", "401"),
    ];
    let defaults = Harness::with_model(shipped_model(), &[]).plugin.settings;
    let explicit = Harness::with_model(shipped_model(), &keys).plugin.settings;
    assert_eq!(defaults, explicit, "the README's defaults are the code's");
    let on = Harness::with_model(shipped_model(), &[("emit_forecasts", " true ")])
        .plugin
        .settings;
    assert!(on.emit_forecasts);
}

#[test]
fn a_bundle_without_the_model_is_refused() {
    let error = init_error(None, &[]);
    assert_eq!(
        error,
        "the bundle has no asset `model.json`: glucose-forecast cannot run without its model"
    );
}

#[test]
fn a_malformed_model_is_refused_with_the_reason() {
    let error = init_error(Some(b"{\"format\": "), &[]);
    assert!(error.starts_with("asset `model.json`: model file: "), "{error}");
    let mut model = Model::linear_extrapolation(&[30, 60]);
    model.horizons[0].scale[0] = 0.0;
    let error = init_error(Some(&model.to_bytes().unwrap()), &[]);
    assert!(error.contains("scale not positive"), "{error}");
    let error = init_error(Some(&[0xff; 16]), &[]);
    assert!(error.starts_with("asset `model.json`: model file: "), "{error}");
}

#[test]
fn a_model_without_a_30_minute_horizon_is_refused() {
    let error = init_error(Some(&Model::last_value(&[15, 60]).to_bytes().unwrap()), &[]);
    assert_eq!(
        error,
        "asset `model.json`: the model forecasts [15, 60] minutes ahead, not 30 (the alerts need it)"
    );
}

#[test]
fn a_bad_key_is_reported_before_the_model_is_read() {
    // The operator's typo is the first thing to fix, whatever the bundle.
    let error = init_error(None, &[("lowe", "70")]);
    assert_eq!(error, "unknown config key(s): lowe");
}
