//! Issue #11, item 9: the trust store and the formats are strict. Each test
//! runs the real `edgewise` binary on real signed bundles.

use std::path::{Path, PathBuf};
use std::process::Command;

use edgewise_host::bundle::format::{self, SIGNATURE_SECTION, SignatureBlock};
use edgewise_host::bundle::{KeyId, Manifest, ManifestSource, SigningKey, sha256_hex, sign_raw};
use edgewise_tests::nats::NatsServer;
use edgewise_tests::{Run, edgewise_bin, plugin_wasm};

use crate::device::{Device, WAIT};
use crate::support::{Operator, assert_contains, run_within};

/// Sign glucose-monitor with `manifest_text` as its `edgewise.toml`, as `out`.
fn sign_text(signer: &Operator, manifest_text: &str, out: &str) -> Run {
    let manifest = signer.path(&format!("{out}.toml"));
    std::fs::write(&manifest, manifest_text).unwrap();
    signer.sign_with(&manifest, &plugin_wasm("glucose-monitor"), out)
}

/// `edgewise-ed25519 <hex>` for raw key bytes.
fn public_key_file(raw: [u8; 32]) -> String {
    format!("edgewise-ed25519 {}\n", hex(&raw))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The identity point of edwards25519 (`01 00..00`): a "public key" with no private key.
fn identity() -> [u8; 32] {
    let mut raw = [0u8; 32];
    raw[0] = 1;
    raw
}

/// `bundle` with its signature replaced by one that nobody made: key id of
/// the identity key, R = identity, S = 0. For A = identity the Ed25519
/// equation [S]B = R + [k]A holds for every message.
fn signed_by_nobody(bundle: &[u8]) -> Vec<u8> {
    let parts = format::split(bundle).unwrap();
    let mut signature = [0u8; 64];
    signature[0] = 1;
    let block = SignatureBlock {
        key_id: KeyId::of(&identity()).0,
        signature,
    };
    let mut forged = parts.signed.to_vec();
    forged.extend_from_slice(&format::custom_section(
        SIGNATURE_SECTION,
        &format::signature_payload(&block),
    ));
    forged
}

/// A trust store holding the identity key would accept a bundle signed by
/// nobody; the store is refused at load, naming the file and the reason. So
/// are the other small-order points and non-canonical encodings.
#[test]
fn a_small_order_or_non_canonical_key_in_the_trust_store_is_refused_at_load() {
    let signer = Operator::new();
    let bundle = std::fs::read(signer.signed_glucose_monitor()).unwrap();
    let forged = signer.path("forged.wasm");
    std::fs::write(&forged, signed_by_nobody(&bundle)).unwrap();
    // The device's real trust store refuses the forgery: unknown key.
    let run = signer.verify(&forged, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_contains(&run.stderr, "signed by unknown key");

    let order_2 = {
        // y = -1 = p - 1: the point (0, -1), of order 2.
        let mut raw = [0xffu8; 32];
        raw[0] = 0xec;
        raw[31] = 0x7f;
        raw
    };
    let identity_non_canonical = {
        // y = p + 1 = 1 (mod p): the identity again, in a second encoding.
        let mut raw = [0xffu8; 32];
        raw[0] = 0xee;
        raw[31] = 0x7f;
        raw
    };
    let mut negative_zero_identity = identity();
    negative_zero_identity[31] |= 0x80;
    for (name, raw, reason) in [
        ("identity.pub", identity(), "small order"),
        ("order-2.pub", order_2, "small order"),
        ("identity-again.pub", identity_non_canonical, "canonical"),
        ("negative-zero.pub", negative_zero_identity, "canonical"),
    ] {
        let trust = signer.path(&format!("trust-{name}"));
        std::fs::create_dir(&trust).unwrap();
        std::fs::copy(signer.path("release.pub"), trust.join("release.pub")).unwrap();
        std::fs::write(trust.join(name), public_key_file(raw)).unwrap();
        let run = signer.verify_with(&trust, &forged, &[]);
        assert_eq!(run.code, Some(2), "{name}: {}\n{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(name), "the file is named: {}", run.stderr);
        assert!(run.stderr.contains(reason), "`{reason}` in {}", run.stderr);
        assert!(!run.stdout.contains("OK"), "{}", run.stdout);
    }
}

/// A private key copied into the trust directory: as a `.pub`, refused at
/// load with what it most likely is (not "invalid UTF-8"); as a `.key`,
/// not read, but warned about (it has no business on a device).
#[test]
fn a_private_key_in_the_trust_directory_is_named_as_such() {
    let signer = Operator::new();
    let bundle = signer.signed_glucose_monitor();
    let trust = signer.path("trust-with-a-private-key");
    std::fs::create_dir(&trust).unwrap();
    std::fs::copy(signer.path("release.pub"), trust.join("release.pub")).unwrap();
    std::fs::copy(signer.path("release.key"), trust.join("oops.pub")).unwrap();
    let run = signer.verify_with(&trust, &bundle, &[]);
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    assert_contains(&run.stderr, "oops.pub is not a public key");
    assert_contains(&run.stderr, "private key");
    assert!(!run.stdout.contains("OK"), "{}", run.stdout);

    std::fs::rename(trust.join("oops.pub"), trust.join("oops.key")).unwrap();
    let run = signer.verify_with(&trust, &bundle, &[]);
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_contains(&run.stderr, "A private key (`.key`) is in the trust directory");
    assert_contains(&run.stderr, "oops.key");
}

#[test]
fn verify_with_a_data_dir_that_does_not_exist_is_a_usage_error() {
    let signer = Operator::new();
    let bundle = signer.signed_glucose_monitor();
    let missing = signer.path("no-such-data-dir");
    let run = signer.verify(&bundle, &["--data-dir", &missing.display().to_string()]);
    assert_eq!(run.code, Some(2), "{}\n{}", run.stdout, run.stderr);
    assert_contains(&run.stderr, "no-such-data-dir");
    assert!(!run.stdout.contains("OK"), "{}", run.stdout);
}

/// docs/operators.md: a record that is not valid JSON, or holds any version
/// that is not SemVer, stops `verify --data-dir` and `run` with exit 2 before
/// any bundle is judged, even when the bad entry is another plugin's.
#[tokio::test(flavor = "multi_thread")]
async fn a_corrupt_anti_rollback_record_is_exit_2_for_verify_and_run() {
    let signer = Operator::new();
    let bundle = signer.signed_glucose_monitor();
    let data_dir = signer.path("data");
    std::fs::create_dir(&data_dir).unwrap();
    let records = [
        r#"{"threshold":{"version":"1.0","code_sha256":"00"}}"#,
        r#"{"glucose-monitor":{"version":"0.0.1","code_sha256":"00"},"glucose-monitor":{"version":"0.0.1","code_sha256":"00"}}"#,
        r#"[{"version":"0.0.1","code_sha256":"00"}]"#,
        "{",
    ];
    for record in records {
        std::fs::write(data_dir.join("installed-versions.json"), record).unwrap();
        let run = signer.verify(&bundle, &["--data-dir", &data_dir.display().to_string()]);
        assert_eq!(run.code, Some(2), "{record}: {}\n{}", run.stdout, run.stderr);
        assert_contains(&run.stderr, "anti-rollback record");
        assert_contains(&run.stderr, "corrupt");
    }

    // The same for `edgewise run`: it stops before judging (or running) any bundle.
    let local = NatsServer::start();
    let device = Device::new(&local, None, "");
    let device_data = device.path("data");
    std::fs::create_dir_all(&device_data).unwrap();
    std::fs::write(device_data.join("installed-versions.json"), records[0]).unwrap();
    let (code, stderr) = run_until_exit(&device.path("edgewise.toml"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("not SemVer"), "{stderr}");
    assert!(!stderr.contains("Plugin verified"), "{stderr}");
}

/// Run `edgewise run --config CONFIG`, expecting it to exit by itself: a host
/// still running after [`WAIT`] is killed and the test fails.
fn run_until_exit(config: &Path) -> (Option<i32>, String) {
    let mut run = Command::new(edgewise_bin());
    run.args(["run", "--config"]).arg(config).env("RUST_LOG", "info");
    run_within(&mut run, WAIT).unwrap_or_else(|stderr| panic!("edgewise run kept running: {stderr}"))
}

/// TOML forbids a key twice and the device configuration is TOML (toml 0.9
/// refuses it): a plugin's `config` with a key twice stops the start, exit 2.
#[test]
fn a_device_config_with_a_key_twice_is_refused() {
    let local = NatsServer::start();
    let device = Device::new(&local, None, "[plugins.config]\nlow = \"70\"\nlow = \"40\"\n");
    let (code, stderr) = run_until_exit(&device.path("edgewise.toml"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("duplicate key"), "{stderr}");
}

/// `sign` writes `expires` in the canonical form docs/bundle-format.md asks
/// writers for (UTC, `T`, `Z`), whatever RFC 3339 form the source used; the
/// instant is kept.
#[test]
fn sign_writes_expires_in_canonical_rfc_3339() {
    let signer = Operator::new();
    let base = "name = \"glucose-monitor\"\nversion = \"0.1.0\"\nsubscriptions = [\"sensors.cgm.>\"]\n";
    for (written, canonical) in [
        ("2031-05-06 07:08:09z", "2031-05-06T07:08:09Z"),
        ("2031-05-06T09:08:09.250+02:00", "2031-05-06T07:08:09.25Z"),
        ("2031-05-06t07:08:09Z", "2031-05-06T07:08:09Z"),
    ] {
        let run = sign_text(&signer, &format!("{base}expires = \"{written}\"\n"), "expiring.wasm");
        assert_eq!(run.code, Some(0), "{written}: {}", run.stderr);
        let bytes = std::fs::read(signer.path("expiring.wasm")).unwrap();
        let manifest = Manifest::from_json(format::split(&bytes).unwrap().manifest_json).unwrap();
        assert_eq!(manifest.expires.as_deref(), Some(canonical), "{written}");
        let run = signer.verify(&signer.path("expiring.wasm"), &[]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
    }
}

/// A bundle whose manifest JSON is `manifest_json`, correctly signed by the signer's key.
fn signed_with_manifest_json(signer: &Operator, manifest_json: &str, out: &str) -> PathBuf {
    let key = SigningKey::from_pkcs8(&std::fs::read(signer.path("release.key")).unwrap()).unwrap();
    let component = std::fs::read(plugin_wasm("glucose-monitor")).unwrap();
    let bundle = sign_raw(&component, manifest_json.as_bytes(), &key);
    std::fs::write(signer.path(out), bundle).unwrap();
    signer.path(out)
}

/// The manifest must be one JSON object with no key twice: a correctly
/// signed manifest written as an array, or with `limits` as an array, or with
/// a `config` key twice (serde_json alone keeps the last value: the device
/// would run with `low = 40` while a reviewer reads `70`), is refused.
#[test]
fn a_signed_manifest_that_is_an_array_or_has_a_key_twice_is_refused() {
    let signer = Operator::new();
    let component = std::fs::read(plugin_wasm("glucose-monitor")).unwrap();
    let manifest = ManifestSource::from_toml(
        "name = \"glucose-monitor\"\nversion = \"0.1.0\"\nsubscriptions = [\"sensors.cgm.>\"]\n\
         [config]\nlow = \"70\"\n[limits]\nmemory_mb = 32\ncall_deadline_ms = 200\n",
    )
    .unwrap()
    .into_manifest(sha256_hex(&component), time::OffsetDateTime::now_utc(), Vec::new())
    .unwrap();
    let json = String::from_utf8(manifest.to_json()).unwrap();
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    // The control: the same manifest as an object verifies.
    let good = signed_with_manifest_json(&signer, &json, "good.wasm");
    let run = signer.verify(&good, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);

    let as_array = serde_json::Value::Array(Manifest::FIELDS.iter().map(|f| value[f].clone()).collect()).to_string();
    let mut limits_as_array = value.clone();
    limits_as_array["limits"] = serde_json::json!([32, 200]);
    let config_twice = json.replace(r#""low":"70""#, r#""low":"70","low":"40""#);
    assert_ne!(config_twice, json);
    for (name, text, reason) in [
        ("array.wasm", as_array, "expected an object"),
        ("limits-array.wasm", limits_as_array.to_string(), "expected an object"),
        ("config-twice.wasm", config_twice, "duplicate key `low`"),
    ] {
        let bundle = signed_with_manifest_json(&signer, &text, name);
        let run = signer.verify(&bundle, &[]);
        assert_eq!(run.code, Some(1), "{name}: {}\n{}", run.stdout, run.stderr);
        assert!(
            run.stderr.contains("refused: invalid manifest") && run.stderr.contains(reason),
            "{name}: `{reason}` in {}",
            run.stderr
        );
    }
}
