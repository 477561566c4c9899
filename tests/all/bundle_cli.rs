//! The signing tools as an operator uses them: `edgewise keygen`, `sign`,
//! `verify`, `inspect`, and `replay --trust`, on real plugin components.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use edgewise_tests::{edgewise, plugin_wasm, run_key, signed_bundle, workspace_root};

use crate::support::{Operator, assert_contains, replay_example, verified};

#[test]
fn keygen_writes_a_private_key_only_the_owner_can_read_and_never_overwrites() {
    let operator = Operator::new();
    let mode = std::fs::metadata(operator.path("release.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let public = std::fs::read_to_string(operator.path("release.pub")).unwrap();
    assert!(public.contains("edgewise-ed25519 "), "{public}");
    let before = std::fs::read(operator.path("release.key")).unwrap();
    let again = edgewise([
        "keygen".as_ref(),
        "--out".as_ref(),
        operator.path("release").as_os_str(),
    ]);
    assert_eq!(again.code, Some(2));
    assert_contains(&again.stderr, "already exists: refusing to overwrite a key");
    assert_eq!(std::fs::read(operator.path("release.key")).unwrap(), before);
}

#[test]
fn keygen_creates_a_missing_key_folder_private() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = dir.path().join("keys/2026/release");
    let run = edgewise(["keygen".as_ref(), "--out".as_ref(), prefix.as_os_str()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(dir.path().join("keys/2026/release.key").is_file());
    for folder in ["keys", "keys/2026"] {
        let mode = std::fs::metadata(dir.path().join(folder)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{folder}");
    }
}

#[test]
fn sign_then_verify_prints_a_one_line_summary() {
    let operator = Operator::new();
    let bundle = operator.signed_glucose_monitor();
    let run = operator.verify(&bundle, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    let key_id = std::fs::read_to_string(operator.path("release.pub")).unwrap();
    let key_id = key_id
        .split("key id ")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned();
    for expected in [
        "OK glucose-monitor 0.2.3",
        &format!("signed by key {key_id}"),
        "edgewise:plugin/sensor-plugin@0.2.0",
    ] {
        assert!(run.stdout.contains(expected), "`{expected}` in {}", run.stdout);
    }
}

#[test]
fn verify_refuses_with_the_precise_reason() {
    let operator = Operator::new();
    let bundle = operator.signed_glucose_monitor();

    // A byte of the code changed.
    let mut tampered = std::fs::read(&bundle).unwrap();
    tampered[1000] ^= 0x01;
    let tampered_path = operator.path("tampered.wasm");
    std::fs::write(&tampered_path, &tampered).unwrap();
    let run = operator.verify(&tampered_path, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_contains(&run.stderr, "refused: bad signature");

    // Another operator's trust store.
    let stranger = Operator::new();
    let run = stranger.verify(&bundle, &[]);
    assert_eq!(run.code, Some(1));
    assert_contains(&run.stderr, "refused: signed by unknown key");

    // The plain component.
    let run = operator.verify(&plugin_wasm("glucose-monitor"), &[]);
    assert_eq!(run.code, Some(1));
    assert_contains(&run.stderr, "refused: unsigned: no `edgewise.signature` section");

    // Over the size cap: refused before the file is read (a sparse 33 MiB file).
    let huge = operator.path("huge.wasm");
    std::fs::File::create(&huge).unwrap().set_len(33 << 20).unwrap();
    let run = operator.verify(&huge, &[]);
    assert_eq!(run.code, Some(1));
    assert_contains(
        &run.stderr,
        "refused: bundle is 34603008 bytes, over the 33554432-byte limit",
    );

    // A trust directory that does not exist is a usage error.
    let run = edgewise(["verify", "--trust", "/nonexistent/trust", "x.wasm"]);
    assert_eq!(run.code, Some(2));
    assert_contains(&run.stderr, "cannot read /nonexistent/trust");
    assert!(
        !run.stderr.contains("caused by"),
        "the cause is not repeated: {}",
        run.stderr
    );
}

#[test]
fn verify_with_a_data_dir_refuses_a_rollback() {
    let operator = Operator::new();
    let bundle = operator.signed_glucose_monitor();
    let data_dir = operator.path("data");
    std::fs::create_dir(&data_dir).unwrap();
    let data_arg = data_dir.display().to_string();
    assert_eq!(operator.verify(&bundle, &["--data-dir", &data_arg]).code, Some(0));
    std::fs::write(
        data_dir.join("installed-versions.json"),
        r#"{"glucose-monitor":{"version":"0.3.0","code_sha256":"00"}}"#,
    )
    .unwrap();
    let run = operator.verify(&bundle, &["--data-dir", &data_arg]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_contains(
        &run.stderr,
        "version 0.2.3 of `glucose-monitor` is lower than version 0.3.0 already accepted",
    );
}

#[test]
fn expired_bundles_are_refused() {
    let operator = Operator::new();
    let manifest = operator.path("edgewise.toml");
    std::fs::write(
        &manifest,
        "name = \"glucose-monitor\"\nversion = \"0.1.0\"\nsubscriptions = [\"sensors.cgm.>\"]\nexpires = \"2020-01-01T00:00:00Z\"\n",
    )
    .unwrap();
    let run = operator.sign_with(&manifest, &plugin_wasm("glucose-monitor"), "old.wasm");
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let run = operator.verify(&operator.path("old.wasm"), &[]);
    assert_eq!(run.code, Some(1));
    assert_contains(&run.stderr, "refused: expired at 2020-01-01T00:00:00Z");
}

#[test]
fn sign_refuses_what_is_not_a_plain_sensor_plugin_component() {
    let operator = Operator::new();
    let manifest = workspace_root().join("plugins/glucose-monitor/edgewise.toml");
    let bundle = operator.signed_glucose_monitor();
    let core = operator.path("core.wasm");
    std::fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    let other_world = operator.path("other.wasm");
    std::fs::write(&other_world, b"\0asm\x0d\0\x01\0").unwrap();
    let cases: [(&Path, &str); 4] = [
        (&bundle, "already signed: the file has `edgewise.*` sections"),
        (&core, "a core WebAssembly module, not a component"),
        (
            &other_world,
            "does not implement the edgewise:plugin/sensor-plugin@0.1.0 world: no export `init` found",
        ),
        (&manifest, "not a WebAssembly file"),
    ];
    for (component, message) in cases {
        let run = operator.sign_with(&manifest, component, "out.wasm");
        assert_eq!(run.code, Some(2), "{}", run.stderr);
        assert!(run.stderr.contains(message), "`{message}` in {}", run.stderr);
    }
    assert!(!operator.path("out.wasm").exists());

    let bad_manifest = operator.path("bad.toml");
    std::fs::write(
        &bad_manifest,
        "name = \"Glucose Monitor\"\nversion = \"0.1.0\"\nsubscriptions = [\"sensors.>\"]\n",
    )
    .unwrap();
    let run = operator.sign_with(&bad_manifest, &plugin_wasm("glucose-monitor"), "out.wasm");
    assert_eq!(run.code, Some(2));
    assert_contains(&run.stderr, "invalid manifest field `name`");
}

#[test]
fn inspect_needs_no_trust() {
    let operator = Operator::new();
    let bundle = operator.signed_glucose_monitor();
    let run = edgewise(["inspect".as_ref(), bundle.as_os_str()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    for expected in [
        "name:          glucose-monitor",
        "version:       0.2.3",
        "subscriptions: sensors.cgm.>",
        // Every limit of the manifest, the sensor cap too.
        "limits:        8000 outputs per call",
        "limits:        1000 sensors at most",
        "signed:       by key ",
        "code sha256:  ",
        "  edgewise:plugin/host@0.2.0",
        "exports:\n  init\n  on-readings\n  on-tick",
    ] {
        assert!(run.stdout.contains(expected), "`{expected}` in\n{}", run.stdout);
    }
    let plain = edgewise(["inspect".as_ref(), plugin_wasm("glucose-monitor").as_os_str()]);
    assert_eq!(plain.code, Some(0), "{}", plain.stderr);
    assert_contains(&plain.stdout, "signed:       no (unsigned");
}

#[test]
fn inspect_shows_the_contract_and_the_snapshot_schemas() {
    let inspect = |path: &Path| {
        let run = edgewise(["inspect".as_ref(), path.as_os_str()]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        run.stdout
    };
    // faulty-v02's own manifest: writes 1, reads 1; and the component's contract.
    let own = inspect(&signed_bundle("faulty-v02"));
    for expected in [
        "contract:     0.2 (the component exports `snapshot`)",
        "  world:         edgewise:plugin/sensor-plugin@0.2.0 (contract 0.2)",
        "  snapshot:      writes schema 1; reads schemas 1",
    ] {
        assert_contains(&own, expected);
    }
    // Another declaration, and none: a 0.2 plugin then never gets a snapshot.
    let dir = tempfile::tempdir().unwrap();
    let head = "name = \"faulty-v02\"\nversion = \"0.2.0\"\nsubscriptions = [\"sensors.hostile-v02.>\"]\n";
    for (table, expected) in [
        (
            "[snapshot]\nwrites = 3\nreads = [1, 3]\n",
            "  snapshot:      writes schema 3; reads schemas 1, 3",
        ),
        ("", "  snapshot:      none declared: never given a snapshot, none taken"),
    ] {
        let (source, out) = (dir.path().join("edgewise.toml"), dir.path().join("out.wasm"));
        std::fs::write(&source, format!("{head}{table}")).unwrap();
        run_key().sign(&source, &plugin_wasm("faulty-v02"), &out).unwrap();
        assert_contains(&inspect(&out), expected);
    }
    // A 0.1 bundle (faulty-plugin, written against 0.1): its contract, and no
    // snapshot line (0.1 has none).
    let old = inspect(&signed_bundle("faulty-plugin"));
    assert_contains(&old, "contract:     0.1 (the component exports no `snapshot`)");
    assert_contains(
        &old,
        "  world:         edgewise:plugin/sensor-plugin@0.1.0 (contract 0.1)",
    );
    assert!(!old.contains("snapshot:"), "{old}");
    // A plain component: the contract from its code alone.
    assert_contains(
        &inspect(&plugin_wasm("faulty-v02")),
        "contract:     0.2 (the component exports `snapshot`)",
    );
}

#[test]
fn replay_with_trust_runs_verified_bundles_only() {
    let operator = Operator::new();
    let bundle = operator.signed_glucose_monitor();
    let trust_dir = operator.trust();
    let replay = |plugin: &Path, trust: bool| replay_example(plugin, trust.then_some(trust_dir.as_path()));
    let signed = replay(&bundle, true);
    assert_eq!(signed.code, Some(0), "{}", signed.stderr);
    let unsigned = replay(&plugin_wasm("glucose-monitor"), false);
    // Same behaviour; the bundle's manifest gives the version.
    assert_eq!(
        signed
            .stdout
            .replace("\"version\":\"0.2.3\"", "\"version\":\"unsigned\""),
        unsigned.stdout
    );

    let unverified = replay(&bundle, false);
    assert_eq!(unverified.code, Some(0));
    assert!(
        unverified
            .stderr
            .contains("is signed but not verified (pass --trust DIR to verify it)")
    );

    let refused = replay(&plugin_wasm("glucose-monitor"), true);
    assert_eq!(refused.code, Some(1));
    assert_contains(&refused.stderr, "refused: unsigned");
    assert!(refused.stdout.is_empty());
}

/// The test run's bundles (`edgewise_tests::signed_bundle`) are signed once,
/// by the run's key, and verify against its trust directory.
#[test]
fn the_runs_bundles_are_signed_once_and_verify() {
    let first = signed_bundle("threshold");
    let signed_at = std::fs::metadata(&first).unwrap().modified().unwrap();
    let again = signed_bundle("threshold");
    assert_eq!(again, first);
    assert_eq!(
        std::fs::metadata(&again).unwrap().modified().unwrap(),
        signed_at,
        "signed again"
    );
    assert_contains(&verified(&run_key().trust_dir(), &first), "OK threshold 0.2.3");
}

#[test]
fn inspect_and_verify_refuse_what_is_not_a_regular_file_without_reading_it() {
    // /dev/zero never ends and says it holds 0 bytes; a directory is no bundle.
    let dir = tempfile::tempdir().unwrap();
    let trust = run_key().trust_dir();
    for path in [Path::new("/dev/zero"), dir.path()] {
        let shown = path.display().to_string();
        for args in [
            vec!["inspect", shown.as_str()],
            vec!["verify", "--trust", trust.to_str().unwrap(), shown.as_str()],
        ] {
            let run = edgewise(&args);
            assert_eq!(run.code, Some(2), "{args:?}: {}", run.stderr);
            assert_contains(&run.stderr, &format!("cannot read {shown}: not a regular file"));
        }
    }
}
