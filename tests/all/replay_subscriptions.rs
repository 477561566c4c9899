//! `edgewise replay` gives a signed bundle only the readings its manifest
//! subscribes to, matched as the NATS server matches them; an iglu CSV row
//! is on `sensors.cgm.<id>`. A plain component has no manifest: every reading.

use std::ffi::OsStr;
use std::path::Path;

use edgewise_tests::{Run, data_file, plugin_wasm, run_key, signed_bundle};

use crate::support::{assert_contains, replay_run};

/// `edgewise replay` of `plugin` over `input`, verified by the run's key
/// when `signed`, the output thrown away.
fn replay(plugin: &Path, input: &Path, signed: bool) -> Run {
    let trust = run_key().trust_dir();
    let mut extra: Vec<&OsStr> = vec!["--out".as_ref(), "/dev/null".as_ref()];
    if signed {
        extra.extend(["--trust".as_ref(), trust.as_os_str()]);
    }
    replay_run(plugin, input, &extra)
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

/// [`replay_run`] of the plain component of `plugin` with `--manifest
/// MANIFEST EXTRA...`.
fn replay_with_manifest(plugin: &str, manifest: &Path, input: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<&OsStr> = vec!["--manifest".as_ref(), manifest.as_os_str()];
    args.extend(extra.iter().map(OsStr::new));
    replay_run(&plugin_wasm(plugin), input, &args)
}

/// What a replay computed, without the packaging (`version`, `digest`).
fn computed(run: &Run) -> Vec<serde_json::Value> {
    run.json_lines()
        .into_iter()
        .map(|mut line| {
            let object = line.as_object_mut().unwrap();
            object.remove("version");
            object.remove("digest");
            line
        })
        .collect()
}

#[test]
fn a_plain_build_with_its_manifest_replays_as_its_signed_bundle_assets_included() {
    // glucose-forecast cannot start without its model, a signed asset: the
    // manifest source names the file, read relative to the manifest.
    let input = data_file("cgm/ExampleData5Subjects.csv");
    let manifest = edgewise_tests::plugin_manifest("glucose-forecast");
    let plain = replay_with_manifest("glucose-forecast", &manifest, &input, &[] as &[&str]);
    let trust = run_key().trust_dir();
    let signed = replay_run(
        &signed_bundle("glucose-forecast"),
        &input,
        &["--trust".as_ref(), trust.as_os_str()],
    );
    let plain_lines = computed(&plain);
    assert!(plain_lines.len() > 100, "{}", plain.stdout);
    assert_eq!(plain_lines, computed(&signed));
    // `computed` leaves the version out: it is the manifest's, as signed.
    let version = &signed.json_lines()[0]["version"];
    assert!(version.as_str().is_some_and(|v| !v.is_empty()), "{version}");
    assert_eq!(
        &plain.json_lines()[0]["version"],
        version,
        "the manifest's version names the outputs"
    );
    assert!(!plain.stderr.contains("not verified"), "{}", plain.stderr);

    // Without the manifest, the plain build has no model and says so.
    let bare = replay_run(&plugin_wasm("glucose-forecast"), &input, &[] as &[&str]);
    assert_ne!(bare.code, Some(0), "{}", bare.stdout);
}

#[test]
fn the_manifest_gives_a_plain_build_its_config_defaults_limits_and_subscriptions() {
    let dir = tempfile::tempdir().unwrap();
    let input = data_file("cgm/ExampleData5Subjects.csv");
    // band's manifest with `body` after its name and version.
    let manifest = |file: &str, body: &str| {
        let path = dir.path().join(file);
        std::fs::write(&path, format!("name = \"band\"\nversion = \"0.1.0\"\n{body}")).unwrap();
        path
    };
    // [config]: the manifest's default is the operator's --config's equal.
    let config = manifest(
        "config.toml",
        "subscriptions = [\"sensors.cgm.>\"]\n[config]\nlow = 100\n",
    );
    let with_manifest = replay_with_manifest("band", &config, &input, &[] as &[&str]);
    let with_flag = replay_with_manifest("band", &config, &input, &["--config", "low=100"]);
    let default = replay_run(&plugin_wasm("band"), &input, &[] as &[&str]);
    assert_eq!(computed(&with_manifest), computed(&with_flag));
    assert_ne!(
        computed(&with_manifest).len(),
        computed(&default).len(),
        "low = 100 changes the alerts"
    );

    // [limits]: the manifest's memory limit holds.
    let tight = manifest(
        "tight.toml",
        "subscriptions = [\"sensors.cgm.>\"]\n[limits]\nmemory_mb = 1\n",
    );
    let run = replay_with_manifest("band", &tight, &input, &[] as &[&str]);
    assert_ne!(run.code, Some(0), "{}", run.stdout);
    assert_contains(&run.stderr, "memory");

    // subscriptions: none of these readings is the plugin's.
    let other = manifest("other.toml", "subscriptions = [\"sensors.temperature.>\"]\n");
    let run = replay_with_manifest("band", &other, &input, &[] as &[&str]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(&run.stderr, "(sensors.temperature.>)");
}

#[test]
fn manifest_is_for_a_plain_component_and_must_be_a_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let input = data_file("cgm/ExampleData5Subjects.csv");
    let manifest = edgewise_tests::plugin_manifest("band");
    let run = replay_run(
        &signed_bundle("band"),
        &input,
        &["--manifest".as_ref(), manifest.as_os_str()],
    );
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(
        &run.stderr,
        "a signed bundle, which carries its own manifest: give it without `--manifest`",
    );

    let broken = dir.path().join("edgewise.toml");
    std::fs::write(&broken, "name = \"band\"\nsubscriptions = 3\n").unwrap();
    let run = replay_with_manifest("band", &broken, &input, &[] as &[&str]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(&run.stderr, "edgewise.toml");
}
