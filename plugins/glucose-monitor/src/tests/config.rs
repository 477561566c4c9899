//! Configuration: errors name the key, overrides change behaviour.

use edgewise_sdk::{Config, Plugin};

use super::{Harness, episodes, ev, metric};
use crate::GlucoseMonitor;

fn init_error(pairs: &[(&str, &str)]) -> String {
    GlucoseMonitor::init(Config::from_pairs(pairs)).err().unwrap()
}

/// The configuration a device gives the signed bundle when the operator
/// sets nothing: `edgewise.toml`'s `[config]`. It must start the plugin, and
/// no key may have a default both there and in the code (docs/manifest.md,
/// "Config defaults: one place").
#[test]
fn the_manifest_config_starts_the_plugin_with_each_default_in_one_place() {
    let manifest = Config::from_manifest(include_str!("../../edgewise.toml")).unwrap();
    if let Err(error) = GlucoseMonitor::init(manifest) {
        panic!("{error}");
    }
}

#[test]
fn unknown_key_is_refused_by_name() {
    let error = init_error(&[("low", "70"), ("hihg", "250")]);
    assert!(error.contains("hihg"), "{error}");
}

#[test]
fn bad_values_name_the_key() {
    for (key, value) in [
        ("low", "seventy"),
        ("urgent_low", "NaN"),
        ("repeat", "30 parsecs"),
        ("signal_loss", "0m"),
        ("episode_gap", "400d"),
        ("trend_min_readings", "-1"),
        ("trend_min_readings", "1"),
        ("rate_min_readings", "lots"),
        ("rate_limit", "0"),
        ("default_interval", "367h0m"),
        ("episode_duration", "9000h"),
        ("max_ahead", "0m"),
        ("max_ahead", "3000000000h"),
    ] {
        let error = init_error(&[(key, value)]);
        assert!(error.contains(&format!("`{key}`")), "{key}={value}: {error}");
    }
}

#[test]
fn every_documented_key_is_accepted() {
    let keys = [
        ("invalid_below", "39"),
        ("invalid_above", "401"),
        ("urgent_low", "54"),
        ("low", "70"),
        ("high", "250"),
        ("urgent_low_soon", "55"),
        ("urgent_low_soon_horizon", "20m"),
        ("trend_window", "20m"),
        ("trend_min_span", "10m"),
        ("trend_min_readings", "3"),
        ("rate_limit", "3"),
        ("rate_window", "15m"),
        ("rate_min_readings", "3"),
        ("repeat", "30m"),
        ("signal_loss", "20m"),
        ("episode_duration", "15m"),
        ("episode_gap", "45m"),
        ("hypo_l1", "70"),
        ("hypo_l2", "54"),
        ("hyper_l1", "180"),
        ("hyper_l2", "250"),
        ("default_interval", "5m"),
        ("max_ahead", "1h"),
    ];
    let plugin = GlucoseMonitor::init(Config::from_pairs(&keys)).unwrap();
    let defaults = GlucoseMonitor::init(Config::default()).unwrap();
    assert_eq!(plugin.settings, defaults.settings);
}

#[test]
fn alert_overrides_change_behaviour() {
    let mut h = Harness::with(&[("low", "80"), ("high", "200"), ("repeat", "10m")]);
    h.read(0, 75.0).read(5, 75.0).read(10, 75.0).read(15, 201.0);
    assert_eq!(
        h.codes(),
        ev(&[
            (0, "low"),
            (10, "low"),
            (15, "low-resolved"),
            (15, "high"),
            (15, "rising-fast")
        ])
    );

    let mut h = Harness::with(&[("signal_loss", "10m"), ("urgent_low", "60")]);
    h.read(0, 58.0).tick(10);
    assert_eq!(h.codes(), ev(&[(0, "urgent-low"), (10, "signal-loss")]));
    assert_eq!(h.alerts[1].message, "No glucose reading for 10 min");

    let mut h = Harness::with(&[("rate_limit", "1.5"), ("rate_min_readings", "2")]);
    h.read(0, 100.0).read(5, 108.0);
    assert_eq!(h.codes(), ev(&[(5, "rising-fast")]));

    let mut h = Harness::with(&[("invalid_below", "39.5"), ("invalid_above", "400.5")]);
    h.series(0, 5, &[39.0, 100.0, 401.0]).tick(60);
    assert_eq!(metric(h.hour(0), "invalid"), 2.0);
    assert_eq!(h.codes(), ev(&[(25, "signal-loss")]), "no urgent-low, no high");
}

#[test]
fn episode_overrides_change_behaviour() {
    let mut h = Harness::with(&[("episode_duration", "10m"), ("hypo_l1", "80")]);
    h.series(0, 5, &[100.0, 75.0, 75.0, 100.0]).tick(60);
    assert_eq!(episodes(h.hour(0)), [1.0, 0.0, 0.0, 0.0]);
    // The bands follow the episode thresholds: 75 is now below range.
    assert_eq!(metric(h.hour(0), "tbr_54_69"), 50.0);
}
