//! `edgewise replay` gives a signed bundle only the readings its manifest
//! subscribes to, matched as the NATS server matches them; an iglu CSV row
//! is on `sensors.cgm.<id>`. A plain component has no manifest: every reading.

use std::ffi::OsStr;
use std::path::Path;

use edgewise_tests::{Run, data_file, edgewise, plugin_wasm, run_key, signed_bundle};

use crate::support::assert_contains;

/// `edgewise replay` of `plugin` over `input`, verified by the run's key
/// when `signed`, the output thrown away.
fn replay(plugin: &Path, input: &Path, signed: bool) -> Run {
    let trust = run_key().trust_dir();
    let mut args: Vec<&OsStr> = vec!["replay".as_ref(), "--plugin".as_ref(), plugin.as_os_str()];
    args.extend([
        "--input".as_ref(),
        input.as_os_str(),
        "--out".as_ref(),
        "/dev/null".as_ref(),
    ]);
    if signed {
        args.extend(["--trust".as_ref(), trust.as_os_str()]);
    }
    edgewise(args)
}

#[test]
fn a_bundle_for_temperatures_gets_no_cgm_reading() {
    // threshold's manifest: sensors.temperature.>; the CSV rows are on sensors.cgm.<id>.
    let run = replay(
        &signed_bundle("threshold"),
        &data_file("cgm/ExampleData5Subjects.csv"),
        true,
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(
        &run.stderr,
        "readings is on a subject the plugin subscribes to (sensors.temperature.>)",
    );
    assert_contains(&run.stderr, "an iglu CSV row's is `sensors.cgm.<id>`");
}

#[test]
fn only_the_subscribed_subjects_are_replayed_and_the_others_counted() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("mixed.jsonl");
    let reading = |ts: i64, value: f64| format!(r#"{{"ts":{ts},"value":{value},"unit":"mg/dL"}}"#);
    let lines = [
        format!(
            r#"{{"subject":"sensors.cgm.p1","payload":{}}}"#,
            reading(1_700_000_000_000, 120.0)
        ),
        // Not subscribed: two readings, and a payload the host would refuse
        // (it never sees it).
        format!(
            r#"{{"subject":"sensors.temperature.f1","payload":[{},{}]}}"#,
            reading(1_700_000_000_000, 4.0),
            reading(1_700_000_060_000, 4.1)
        ),
        r#"{"subject":"sensors.temperature.f2","payload":{"value":"warm"}}"#.to_owned(),
        // `sensors.cgm` alone is not under `sensors.cgm.>`.
        format!(
            r#"{{"subject":"sensors.cgm","payload":{}}}"#,
            reading(1_700_000_000_000, 90.0)
        ),
        format!(
            r#"{{"subject":"sensors.cgm.p1","payload":{}}}"#,
            reading(1_700_000_300_000, 125.0)
        ),
    ];
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();

    let signed = replay(&signed_bundle("glucose-monitor"), &input, true);
    assert_eq!(signed.code, Some(0), "{}", signed.stderr);
    assert_contains(&signed.stderr, "5 rows read, 2 readings replayed");
    assert_contains(
        &signed.stderr,
        "subscriptions: sensors.cgm.>; readings on other subjects (skipped): 4",
    );

    // The plain component: no manifest, every reading (the refused payload
    // is then a bad row).
    std::fs::write(&input, [&lines[..2], &lines[3..]].concat().join("\n") + "\n").unwrap();
    let plain = replay(&plugin_wasm("glucose-monitor"), &input, false);
    assert_eq!(plain.code, Some(0), "{}", plain.stderr);
    assert_contains(&plain.stderr, "4 rows read, 5 readings replayed");
    assert_contains(
        &plain.stderr,
        "subscriptions: none (a plain component): every reading replayed",
    );
}
