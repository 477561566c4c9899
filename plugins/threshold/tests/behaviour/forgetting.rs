//! Probes come and go (a fridge's probe replaced, a freezer taken out of
//! service): one silent for `forget_after` is forgotten, by then at the
//! latest, so the plugin's memory and the host's `max_sensors` places hold
//! the probes in use, not every probe ever seen.

use edgewise_sdk::{LogLevel, Outputs, Plugin, Reading};

use crate::*;

fn reading(sensor: &str, timestamp_ms: i64, value: f64) -> Reading<'_> {
    Reading::new(sensor, timestamp_ms, value, "degC")
}

/// The "forgot ..." lines of a tick's logs.
fn forgot(out: &Outputs) -> Vec<String> {
    out.logs()
        .iter()
        .filter(|(level, line)| *level == LogLevel::Info && line.starts_with("forgot "))
        .map(|(_, line)| line.clone())
        .collect()
}

#[test]
fn a_silent_probe_is_forgotten_by_forget_after_and_one_read_since_is_kept() {
    let mut p = plugin(&[("forget_after", "48h")]);
    // Both probes go above the limit; `kept` reads again a day later.
    assert_eq!(
        codes(&feed(
            &mut p,
            &[reading("gone", at(0), 9.0), reading("kept", at(0), 9.0)]
        )),
        ["above-high", "above-high"]
    );
    feed(&mut p, &[reading("kept", at(24 * 60), 9.0)]);
    // The host ticks every five minutes; `gone` is forgotten at the last tick
    // before 48 hours have passed since its reading, not an hour sooner.
    let mut forgotten_at = None;
    for minute in (5..=49 * 60).step_by(5) {
        let out = tick(&mut p, at(minute));
        let lines = forgot(&out);
        if !lines.is_empty() {
            assert_eq!(forgotten_at, None, "forgot twice: {lines:?}");
            assert_eq!(lines, ["forgot 1 sensor(s) silent for `forget_after` (48 h); 1 remain"]);
            forgotten_at = Some(minute);
        }
    }
    assert_eq!(forgotten_at, Some(48 * 60 - 5));
    // Back in range: `kept` resolves its alert; `gone`, forgotten, is a new
    // probe with nothing to resolve.
    let out = feed(
        &mut p,
        &[reading("gone", at(50 * 60), 5.0), reading("kept", at(50 * 60), 5.0)],
    );
    let alerts: Vec<_> = out
        .alerts()
        .iter()
        .map(|a| (a.sensor.as_str(), a.code.as_str()))
        .collect();
    assert_eq!(alerts, [("kept", "above-high-resolved")]);
}

#[test]
fn a_forgotten_probe_has_had_its_last_hour_summarised() {
    let mut p = plugin(&[("forget_after", "24h")]);
    feed(&mut p, &[reading("gone", at(10), 5.0), reading("gone", at(20), 6.0)]);
    let mut summaries = Vec::new();
    for minute in (5..=25 * 60).step_by(5) {
        let out = tick(&mut p, at(minute));
        summaries.extend(out.summaries().iter().cloned());
    }
    assert_eq!(summaries.len(), 1, "{summaries:?}");
    assert_summary(
        &summaries[0],
        "gone",
        T0,
        &[
            ("n", 2.0),
            ("mean", 5.5),
            ("min", 5.0),
            ("max", 6.0),
            ("sd", 0.5f64.sqrt()),
            ("invalid", 0.0),
        ],
    );
}

/// The default is the manifest's week, and a state saved before forgetting
/// (0.2.2 wrote the same snapshot) forgets its silent probes too.
#[test]
fn a_restored_probe_silent_for_a_week_is_forgotten_by_default() {
    let mut p = plugin(&[]);
    feed(&mut p, &[reading("gone", at(0), 5.0)]);
    let snapshot = p.snapshot().unwrap();
    let mut restored = plugin(&[]);
    restored
        .restore(threshold::Threshold::SNAPSHOT_SCHEMA, &snapshot)
        .unwrap();
    assert!(forgot(&tick(&mut restored, at(7 * 24 * 60 - 10))).is_empty());
    assert_eq!(
        forgot(&tick(&mut restored, at(7 * 24 * 60 - 5))),
        ["forgot 1 sensor(s) silent for `forget_after` (168 h); 0 remain"]
    );
    assert_ne!(restored.snapshot().unwrap(), snapshot);
    assert_eq!(restored.snapshot().unwrap(), plugin(&[]).snapshot().unwrap());
}
