//! Signed assets as an author and an operator meet them: `edgewise sign`
//! embeds the files `[assets]` names, `verify` checks them, `inspect` lists
//! them with their digests, a device-style replay runs the bundle; every
//! refusal comes with its reason, and nothing is written when `sign` refuses.
//! A bundle signed without assets is exactly the format of before.

use std::path::PathBuf;

use edgewise_host::bundle::{
    AssetFile, Manifest, ManifestAsset, SigningKey, format, sha256_hex, sign_raw, sign_with_assets,
};
use edgewise_tests::{Run, edgewise, plugin_manifest, plugin_wasm};

use crate::support::{Operator, assert_contains, replay_example as replay};

const LUT: &[u8] = b"low,70\nhigh,180\nurgent_low,54\n";

/// glucose-monitor's own `edgewise.toml` plus `extra` (an `[assets]` table),
/// written into the operator's directory.
fn manifest_with(operator: &Operator, extra: &str) -> PathBuf {
    let text = std::fs::read_to_string(plugin_manifest("glucose-monitor")).unwrap();
    let path = operator.path("edgewise.toml");
    std::fs::write(&path, format!("{text}\n{extra}")).unwrap();
    path
}

/// The model file: bytes that are not text, some kilobytes.
fn model() -> Vec<u8> {
    (0..5000u32)
        .flat_map(|i| (i.wrapping_mul(2_654_435_761)).to_le_bytes())
        .collect()
}

/// An operator with `data/lut.csv` and `model.bin` beside an `edgewise.toml`
/// that names them, and glucose-monitor signed with it into `with-assets.wasm`.
fn signed_with_assets() -> (Operator, PathBuf, Run) {
    let operator = Operator::new();
    std::fs::create_dir(operator.path("data")).unwrap();
    std::fs::write(operator.path("data/lut.csv"), LUT).unwrap();
    std::fs::write(operator.path("model.bin"), model()).unwrap();
    let manifest = manifest_with(
        &operator,
        "[assets]\n\"lut.csv\" = \"data/lut.csv\"\n\"model.bin\" = \"model.bin\"\n",
    );
    let run = operator.sign_with(&manifest, &plugin_wasm("glucose-monitor"), "with-assets.wasm");
    let bundle = operator.path("with-assets.wasm");
    (operator, bundle, run)
}

fn key_of(operator: &Operator) -> SigningKey {
    SigningKey::from_pkcs8(&std::fs::read(operator.path("release.key")).unwrap()).unwrap()
}

#[test]
fn sign_embeds_the_assets_verify_accepts_them_and_inspect_lists_their_digests() {
    let (operator, bundle, run) = signed_with_assets();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let total = LUT.len() + model().len();
    assert_contains(&run.stdout, &format!(", 2 assets, {total} bytes) with key "));

    let verified = operator.verify(&bundle, &[]);
    assert_eq!(verified.code, Some(0), "{}", verified.stderr);
    assert_contains(&verified.stdout, "OK glucose-monitor 0.2.3 (code sha256:");
    assert_contains(&verified.stdout, &format!(", 2 assets, {total} bytes), signed by key "));

    let inspected = edgewise(["inspect".as_ref(), bundle.as_os_str()]);
    assert_eq!(inspected.code, Some(0), "{}", inspected.stderr);
    let (lut, model_digest) = (sha256_hex(LUT), sha256_hex(&model()));
    for expected in [
        "assets:       (digests computed from the bundle's sections)".to_owned(),
        format!("  lut.csv  {} bytes  sha256:{lut}", LUT.len()),
        format!("  model.bin  {} bytes  sha256:{model_digest}", model().len()),
        format!("  asset:         lut.csv ({} bytes, sha256:{lut})", LUT.len()),
        format!(
            "  asset:         model.bin ({} bytes, sha256:{model_digest})",
            model().len()
        ),
    ] {
        assert_contains(&inspected.stdout, &expected);
    }
    assert!(!inspected.stdout.contains("problem:"), "{}", inspected.stdout);

    // The code digest is the component's alone: the assets do not change it.
    let code = sha256_hex(&std::fs::read(plugin_wasm("glucose-monitor")).unwrap());
    assert_contains(&inspected.stdout, &format!("code sha256:  {code}"));

    // A 0.1 plugin ignores the assets: the replay is that of the bundle
    // without them (same code, same digest in the envelopes).
    let with = replay(&bundle, Some(&operator.trust()));
    assert_eq!(with.code, Some(0), "{}", with.stderr);
    let without = replay(&operator.signed_glucose_monitor(), Some(&operator.trust()));
    assert_eq!(without.code, Some(0), "{}", without.stderr);
    assert_eq!(with.stdout, without.stdout);
}

#[test]
fn a_bundle_signed_without_assets_is_the_format_of_before() {
    let operator = Operator::new();
    let bundle = std::fs::read(operator.signed_glucose_monitor()).unwrap();
    let parts = format::split(&bundle).unwrap();
    assert!(parts.assets.is_empty());
    let json = String::from_utf8(parts.manifest_json.to_vec()).unwrap();
    assert!(!json.contains("assets"), "{json}");
    // The component, the manifest section, the signature: nothing else.
    let component = std::fs::read(plugin_wasm("glucose-monitor")).unwrap();
    assert_eq!(bundle, sign_raw(&component, json.as_bytes(), &key_of(&operator)));
    let run = operator.verify(&operator.signed_glucose_monitor(), &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(!run.stdout.contains("asset"), "{}", run.stdout);
    let inspected = edgewise(["inspect".as_ref(), operator.signed_glucose_monitor().as_os_str()]);
    assert!(!inspected.stdout.contains("asset"), "{}", inspected.stdout);
}

#[test]
fn an_asset_changed_after_signing_is_refused() {
    let (operator, bundle, run) = signed_with_assets();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let mut bytes = std::fs::read(&bundle).unwrap();
    let at = bytes.windows(6).position(|w| w == b"high,1").unwrap();
    bytes[at + 5] = b'9'; // high,180 becomes high,980
    let tampered = operator.path("tampered.wasm");
    std::fs::write(&tampered, &bytes).unwrap();
    let run = operator.verify(&tampered, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_contains(&run.stderr, "refused: bad signature");
    let run = replay(&tampered, Some(&operator.trust()));
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_contains(&run.stderr, "refused: bad signature");
    assert!(run.stdout.is_empty());
}

/// Bundles a trusted key signed with assets that disagree with their
/// manifest (a broken or hostile signing tool): `verify` and `replay
/// --trust` refuse them with the reason, `inspect` shows it.
#[test]
fn signed_assets_that_disagree_with_the_manifest_are_refused() {
    let operator = Operator::new();
    let key = key_of(&operator);
    let component = std::fs::read(plugin_wasm("glucose-monitor")).unwrap();
    let good = std::fs::read(operator.signed_glucose_monitor()).unwrap();
    let mut manifest = Manifest::from_json(format::split(&good).unwrap().manifest_json).unwrap();
    let lut = AssetFile {
        name: "lut.csv".into(),
        bytes: LUT.to_vec(),
    };
    let other_lut = AssetFile {
        name: "lut.csv".into(),
        bytes: b"low,40\n".to_vec(),
    };
    manifest.assets = vec![ManifestAsset::of("lut.csv", LUT)];
    let unlisted = AssetFile {
        name: "extra.bin".into(),
        bytes: b"x".to_vec(),
    };
    let digest = sha256_hex(LUT);
    let other = sha256_hex(b"low,40\n");
    let cases: [(&str, Vec<AssetFile>, String); 3] = [
        (
            "other-bytes.wasm",
            vec![other_lut],
            format!("refused: asset `lut.csv` is 7 bytes, the manifest says {}", LUT.len()),
        ),
        (
            "missing.wasm",
            vec![],
            "refused: asset `lut.csv` is listed in the manifest but the bundle has no `edgewise.asset` section for it"
                .to_owned(),
        ),
        (
            "unlisted.wasm",
            vec![lut.clone(), unlisted],
            "refused: the `edgewise.asset` section `extra.bin` is not listed in the manifest".to_owned(),
        ),
    ];
    for (name, assets, message) in cases {
        let path = operator.path(name);
        std::fs::write(&path, sign_with_assets(&component, &manifest, &assets, &key)).unwrap();
        let run = operator.verify(&path, &[]);
        assert_eq!(run.code, Some(1), "{name}: {}", run.stderr);
        assert_contains(&run.stderr, &message);
        let run = replay(&path, Some(&operator.trust()));
        assert_eq!(run.code, Some(1), "{name}: {}", run.stderr);
        assert_contains(&run.stderr, &message);
        let inspected = edgewise(["inspect".as_ref(), path.as_os_str()]);
        assert_eq!(inspected.code, Some(0), "{name}: {}", inspected.stderr);
        assert_contains(
            &inspected.stdout,
            &format!("  problem: {}", message.trim_start_matches("refused: ")),
        );
    }
    // The listed digest is not the asset's (same size): refused by verify,
    // and by a replay without trust too (the asset checks do not need a key).
    let mut wrong = manifest.clone();
    wrong.assets = vec![ManifestAsset {
        sha256: other.clone(),
        ..ManifestAsset::of("lut.csv", LUT)
    }];
    let path = operator.path("digest.wasm");
    std::fs::write(&path, sign_with_assets(&component, &wrong, &[lut], &key)).unwrap();
    let message = format!("asset `lut.csv` sha256 mismatch: the manifest says {other}, the asset is {digest}");
    let run = operator.verify(&path, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_contains(&run.stderr, &format!("refused: {message}"));
    let run = replay(&path, None);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(&run.stderr, &message);
    assert!(run.stdout.is_empty());
}

/// `edgewise sign` refuses what the format would refuse, before writing
/// anything: bad names, missing files, an asset or all of them too big, too
/// many.
#[test]
fn sign_refuses_bad_assets_and_writes_nothing() {
    let operator = Operator::new();
    std::fs::write(operator.path("ok.bin"), b"ok").unwrap();
    let big = std::fs::File::create(operator.path("big.bin")).unwrap();
    big.set_len((16 << 20) + 1).unwrap();
    for i in 0..3 {
        let file = std::fs::File::create(operator.path(&format!("full{i}.bin"))).unwrap();
        file.set_len(16 << 20).unwrap();
    }
    let rule = "1-64 characters `a`-`z`, `0`-`9`, `.`, `_` or `-`, starting with a letter or digit, without `..`";
    let many: String = (0..65).map(|i| format!("\"t{i}.bin\" = \"ok.bin\"\n")).collect();
    let long = "a".repeat(65);
    let cases = [
        (
            "\"../escape.bin\" = \"ok.bin\"\n".to_owned(),
            format!("invalid manifest field `assets`: `../escape.bin` is not an asset name: {rule}"),
        ),
        (
            "\"models/w.bin\" = \"ok.bin\"\n".to_owned(),
            format!("invalid manifest field `assets`: `models/w.bin` is not an asset name: {rule}"),
        ),
        (
            "\"a\\u001bb\" = \"ok.bin\"\n".to_owned(),
            format!("invalid manifest field `assets`: `a\\u{{1b}}b` is not an asset name: {rule}"),
        ),
        (
            format!("\"{long}\" = \"ok.bin\"\n"),
            format!("invalid manifest field `assets`: `{long}` is not an asset name: {rule}"),
        ),
        (
            many,
            "invalid manifest field `assets`: lists 65 assets, at most 64 are allowed".to_owned(),
        ),
        (
            "\"gone.bin\" = \"nowhere/gone.bin\"\n".to_owned(),
            format!(
                "asset `gone.bin`: cannot read {}: No such file or directory",
                operator.path("nowhere/gone.bin").display()
            ),
        ),
        (
            "\"big.bin\" = \"big.bin\"\n".to_owned(),
            format!(
                "asset `big.bin`: {} is 16777217 bytes, over the 16777216-byte limit of an asset",
                operator.path("big.bin").display()
            ),
        ),
        (
            "\"full0.bin\" = \"full0.bin\"\n\"full1.bin\" = \"full1.bin\"\n\"full2.bin\" = \"full2.bin\"\n".to_owned(),
            "the assets are 50331648 bytes in all, over the 33554432-byte limit of a whole bundle".to_owned(),
        ),
        (
            "\"full0.bin\" = \"full0.bin\"\n\"full1.bin\" = \"full1.bin\"\n".to_owned(),
            "bytes, over the 33554432-byte limit devices accept".to_owned(),
        ),
    ];
    for (table, message) in cases {
        let manifest = manifest_with(&operator, &format!("[assets]\n{table}"));
        let run = operator.sign_with(&manifest, &plugin_wasm("glucose-monitor"), "out.wasm");
        assert_eq!(run.code, Some(2), "{message}: {}", run.stderr);
        assert_contains(&run.stderr, &message);
        assert!(!operator.path("out.wasm").exists(), "{message}: a bundle was written");
    }
}

/// The line of `text` that starts with `label`, without it.
fn line_after<'a>(text: &'a str, label: &str) -> &'a str {
    text.lines()
        .find_map(|line| line.strip_prefix(label))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{text}"))
        .trim()
}

/// The same code signed twice, with a good and a bad model: one code digest,
/// two bundle digests. Revoking the bad bundle's digest refuses it (`verify`
/// and `replay --trust`, naming the bundle digest) while the good bundle,
/// same code, still verifies and runs.
#[test]
fn the_same_code_with_a_bad_model_is_revoked_by_its_bundle_digest() {
    let (operator, good, run) = signed_with_assets();
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let mut bad_model = model();
    bad_model[100] ^= 0xff;
    std::fs::write(operator.path("model.bin"), &bad_model).unwrap();
    let run = operator.sign_with(
        &operator.path("edgewise.toml"),
        &plugin_wasm("glucose-monitor"),
        "bad-model.wasm",
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let bad = operator.path("bad-model.wasm");

    let (good_inspected, bad_inspected) = (
        edgewise(["inspect".as_ref(), good.as_os_str()]),
        edgewise(["inspect".as_ref(), bad.as_os_str()]),
    );
    let code = line_after(&good_inspected.stdout, "code sha256:");
    assert_eq!(code, line_after(&bad_inspected.stdout, "code sha256:"));
    let good_digest = sha256_hex(&std::fs::read(&good).unwrap());
    let bad_digest = sha256_hex(&std::fs::read(&bad).unwrap());
    assert_eq!(line_after(&good_inspected.stdout, "bundle sha256:"), good_digest);
    assert_eq!(line_after(&bad_inspected.stdout, "bundle sha256:"), bad_digest);

    // A trust directory like the operator's, with the bad bundle revoked.
    let trust = operator.path("trust-revoked");
    std::fs::create_dir(&trust).unwrap();
    for entry in std::fs::read_dir(operator.trust()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, trust.join(path.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        trust.join("revoked"),
        format!("# glucose-monitor 0.1.0 with the bad model\nsha256:{bad_digest}\n"),
    )
    .unwrap();

    let bundle_revoked = format!("refused: bundle sha256:{bad_digest} is revoked");
    for refused in [operator.verify_with(&trust, &bad, &[]), replay(&bad, Some(&trust))] {
        assert_eq!(refused.code, Some(1), "{}", refused.stderr);
        assert_contains(&refused.stderr, &bundle_revoked);
        assert!(refused.stdout.is_empty(), "{}", refused.stdout);
    }

    let verified = operator.verify_with(&trust, &good, &[]);
    assert_eq!(verified.code, Some(0), "{}", verified.stderr);
    assert_contains(
        &verified.stdout,
        &format!("(code sha256:{code}, bundle sha256:{good_digest}, 2 assets, "),
    );
    let ran = replay(&good, Some(&trust));
    assert_eq!(ran.code, Some(0), "{}", ran.stderr);

    // Revoking the code digest still refuses both, by their code.
    std::fs::write(trust.join("revoked"), format!("sha256:{code}\n")).unwrap();
    for bundle in [&good, &bad] {
        let refused = operator.verify_with(&trust, bundle, &[]);
        assert_eq!(refused.code, Some(1), "{}", refused.stderr);
        assert_contains(&refused.stderr, &format!("refused: code sha256:{code} is revoked"));
    }
}

/// `inspect` is for bundles nobody vouches for: a manifest whose free-text
/// strings hold a newline (a forged `signed:` line), a terminal escape
/// sequence or a bidirectional override is shown escaped, one line per
/// field; so is one whose invalid name does.
#[test]
fn inspect_shows_a_hostile_manifests_strings_escaped() {
    let operator = Operator::new();
    let good = std::fs::read(operator.signed_glucose_monitor()).unwrap();
    let json = String::from_utf8(format::split(&good).unwrap().manifest_json.to_vec()).unwrap();
    let component = std::fs::read(plugin_wasm("glucose-monitor")).unwrap();
    let inspect = |manifest: &serde_json::Value| {
        let hostile = operator.path("hostile.wasm");
        let bytes = sign_raw(&component, manifest.to_string().as_bytes(), &key_of(&operator));
        std::fs::write(&hostile, bytes).unwrap();
        let inspected = edgewise(["inspect".as_ref(), hostile.as_os_str()]);
        assert_eq!(inspected.code, Some(0), "{}", inspected.stderr);
        let out = inspected.stdout;
        assert!(!out.contains('\u{1b}') && !out.contains('\u{202e}'), "{out:?}");
        let signed = out.lines().filter(|line| line.starts_with("signed:")).count();
        assert_eq!(signed, 1, "a forged line: {out}");
        out
    };

    let mut manifest: serde_json::Value = serde_json::from_str(&json).unwrap();
    manifest["config"]["low"] = "70\nsigned:       by key trusted".into();
    manifest["config"]["note\u{1b}[2J\u{1b}[H"] = "abc\u{202e}fed".into();
    let out = inspect(&manifest);
    assert_contains(&out, "  config:        low = 70\\nsigned:       by key trusted\n");
    assert_contains(&out, "  config:        note\\u{1b}[2J\\u{1b}[H = abc\\u{202e}fed\n");

    let mut manifest: serde_json::Value = serde_json::from_str(&json).unwrap();
    manifest["name"] = "glucose-monitor\nsigned:       by key trusted\u{1b}[2J".into();
    let out = inspect(&manifest);
    assert_contains(&out, "manifest:     unreadable: ");
}
