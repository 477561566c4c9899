//! Signed assets, attacked: every way a bundle's `edgewise.asset` sections
//! can disagree with its manifest, or break the layout or the caps, is
//! refused by [`verify`] with its exact error, before anything could be
//! compiled; `sign` refuses to make such a bundle; a bundle without assets
//! is byte for byte what it was before assets existed.
//!
//! Most refusals are built twice: changed after signing (the signature
//! catches it) and signed that way by the trusted key (the asset checks
//! catch it: a buggy or hostile signing tool).

use std::sync::LazyLock;

use super::assets::{AssetError, MAX_ASSET_BYTES, MAX_ASSET_NAME_LEN, MAX_ASSETS};
use super::format::{self, ASSET_SECTION, FormatError, MANIFEST_SECTION};
use super::verify_tests::{EMPTY_COMPONENT, NOW};
use super::{
    AssetFile, DEFAULT_MAX_BUNDLE_BYTES, Manifest, ManifestAsset, ManifestError, ManifestSource, SignError, SigningKey,
    TrustStore, VerifiedBundle, VerifyError, VerifyOptions, WORLD, inspect, read_assets, sha256_hex, sign, sign_raw,
    sign_sections, sign_with_assets, verify,
};

const SOURCE: &str = r#"
name = "probe"
version = "0.1.0"
subscriptions = ["sensors.>"]
[assets]
"lut.bin" = "data/lut.bin"
"model.bin" = "model.bin"
"#;

/// A signer, a trust store that trusts it, and a good bundle with two assets.
struct Fixture {
    key: SigningKey,
    trust: TrustStore,
    component: Vec<u8>,
    assets: Vec<AssetFile>,
    manifest: Manifest,
    bundle: Vec<u8>,
}

fn asset(name: &str, bytes: &[u8]) -> AssetFile {
    AssetFile {
        name: name.to_owned(),
        bytes: bytes.to_vec(),
    }
}

impl Fixture {
    fn new() -> Fixture {
        let (_, key) = SigningKey::generate().expect("generate a key");
        let mut trust = TrustStore::default();
        trust.add_key(key.public_key());
        let component = [EMPTY_COMPONENT, &format::custom_section("name", b"tiny plugin code")].concat();
        let assets = vec![
            asset("lut.bin", b"lookup table: 70 180 250"),
            asset("model.bin", b"\x00\x01weights\xff"),
        ];
        let source = ManifestSource::from_toml(SOURCE).expect("valid edgewise.toml");
        let (bundle, manifest) = sign(&component, WORLD, source, &assets, &key, NOW).expect("sign the component");
        Fixture {
            key,
            trust,
            component,
            assets,
            manifest,
            bundle,
        }
    }

    fn options(&self) -> VerifyOptions<'_> {
        VerifyOptions {
            trust: &self.trust,
            rollback: None,
            now: NOW,
            max_bytes: DEFAULT_MAX_BUNDLE_BYTES,
        }
    }

    fn verify(&self, bytes: &[u8]) -> Result<VerifiedBundle, VerifyError> {
        verify(bytes, &self.options())
    }

    fn expect_err(&self, bytes: &[u8], case: &str) -> VerifyError {
        match self.verify(bytes) {
            Ok(verified) => panic!("{case}: expected a refusal, but the bundle verified: {verified:?}"),
            Err(error) => error,
        }
    }

    /// Verify, expecting the asset refusal `expected`, shown as `message`.
    fn expect_asset_err(&self, bytes: &[u8], expected: AssetError, message: &str, case: &str) {
        match self.expect_err(bytes, case) {
            VerifyError::Asset(error) => {
                assert_eq!(error, expected, "{case}");
                assert_eq!(VerifyError::Asset(error).to_string(), message, "{case}");
            }
            other => panic!("{case}: expected an asset error, got {other:?} ({other})"),
        }
    }

    /// Verify, expecting the layout refusal `expected`, shown as `message`.
    fn expect_format_err(&self, bytes: &[u8], expected: FormatError, message: &str, case: &str) {
        match self.expect_err(bytes, case) {
            VerifyError::Format(error) => {
                assert_eq!(error, expected, "{case}");
                assert_eq!(error.to_string(), message, "{case}");
            }
            other => panic!("{case}: expected a layout error, got {other:?} ({other})"),
        }
    }

    /// Verify, expecting ``invalid manifest field `assets`: {reason}``.
    fn expect_assets_field_err(&self, bytes: &[u8], reason: &str, case: &str) {
        let error = self.expect_err(bytes, case);
        assert!(
            matches!(
                error,
                VerifyError::Manifest(ManifestError::Field { field: "assets", .. })
            ),
            "{case}: {error:?}"
        );
        assert_eq!(
            error.to_string(),
            format!("invalid manifest field `assets`: {reason}"),
            "{case}"
        );
    }

    /// Expect a bad signature (the bytes were changed after signing).
    fn expect_bad_signature(&self, bytes: &[u8], case: &str) {
        let error = self.expect_err(bytes, case);
        assert!(matches!(error, VerifyError::BadSignature(_)), "{case}: {error:?}");
    }

    /// The fixture's component, with `manifest` and then `sections`, signed
    /// by the trusted key, as they are.
    fn signed(&self, manifest: &Manifest, sections: &[Vec<u8>]) -> Vec<u8> {
        let mut all = vec![format::custom_section(MANIFEST_SECTION, &manifest.to_json())];
        all.extend_from_slice(sections);
        sign_sections(&self.component, &all, &self.key)
    }

    /// The good manifest with its asset list edited, and the good asset
    /// sections, signed.
    fn signed_listing(&self, edit: impl FnOnce(&mut Vec<ManifestAsset>)) -> Vec<u8> {
        let mut manifest = self.manifest.clone();
        edit(&mut manifest.assets);
        self.signed(&manifest, &self.sections())
    }

    /// The good asset sections, in order.
    fn sections(&self) -> Vec<Vec<u8>> {
        self.assets
            .iter()
            .map(|a| format::asset_section(&a.name, &a.bytes))
            .collect()
    }

    /// Where the asset sections start (just after the manifest section).
    fn assets_start(&self) -> usize {
        let parts = format::split(&self.bundle).expect("split");
        parts.assets[0].range.start
    }

    /// The good bundle with `sections` in place of its asset sections, not
    /// signed again.
    fn with_sections_unsigned(&self, sections: &[Vec<u8>]) -> Vec<u8> {
        let parts = format::split(&self.bundle).expect("split");
        let start = self.assets_start();
        let end = parts.signed.len();
        [&self.bundle[..start], &sections.concat(), &self.bundle[end..]].concat()
    }
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(Fixture::new);

/// The error of `result`, which must be one; on success, panic without
/// printing what succeeded (it may be megabytes of asset).
fn refused<T, E>(result: Result<T, E>, case: &str) -> E {
    match result {
        Ok(_) => panic!("{case}: expected a refusal"),
        Err(error) => error,
    }
}

// ---------------------------------------------------------------------------
// Accepted bundles
// ---------------------------------------------------------------------------

#[test]
fn a_bundle_with_assets_verifies_and_gives_each_assets_name_size_digest_and_bytes() {
    let f = &*FIXTURE;
    let verified = f.verify(&f.bundle).expect("the good bundle verifies");
    let got: Vec<(&str, usize, &str, &[u8])> = verified
        .assets()
        .iter()
        .map(|a| (a.name(), a.size(), a.sha256(), a.bytes()))
        .collect();
    let lut = sha256_hex(&f.assets[0].bytes);
    let model = sha256_hex(&f.assets[1].bytes);
    assert_eq!(
        got,
        vec![
            ("lut.bin", 24, lut.as_str(), &f.assets[0].bytes[..]),
            ("model.bin", 10, model.as_str(), &f.assets[1].bytes[..]),
        ]
    );
    assert_eq!(
        verified.asset("model.bin").map(|a| a.bytes()),
        Some(&f.assets[1].bytes[..])
    );
    assert!(verified.asset("nothing.bin").is_none());
    // `code_sha256` keeps meaning the component alone.
    assert_eq!(verified.manifest.code_sha256, sha256_hex(&f.component));
    assert_eq!(verified.code_len, f.component.len());
    assert_eq!(&f.bundle[..verified.code_len], f.component.as_slice());
    // The manifest lists them in section order with their sizes and digests.
    assert_eq!(
        verified.manifest.assets,
        vec![
            ManifestAsset::of("lut.bin", &f.assets[0].bytes),
            ManifestAsset::of("model.bin", &f.assets[1].bytes)
        ]
    );
    // The layout: manifest, then the assets, then the signature.
    let parts = format::split(&f.bundle).expect("split");
    let names: Vec<_> = parts.assets.iter().map(|s| s.name).collect();
    assert_eq!(names, [Some(ASSET_SECTION), Some(ASSET_SECTION)]);
    assert_eq!(parts.assets[1].range.end, parts.signed.len());
}

#[test]
fn inspect_lists_the_assets_with_digests_computed_from_the_sections() {
    let f = &*FIXTURE;
    let info = inspect(&f.bundle).expect("inspect");
    let listed: Vec<(&str, usize, &str)> = info
        .assets
        .iter()
        .map(|a| (a.name.as_str(), a.size, a.sha256.as_str()))
        .collect();
    let (lut, model) = (sha256_hex(&f.assets[0].bytes), sha256_hex(&f.assets[1].bytes));
    assert_eq!(
        listed,
        vec![("lut.bin", 24, lut.as_str()), ("model.bin", 10, model.as_str())]
    );
    assert_eq!(info.asset_problem, None);
    // A listing that disagrees is shown as verify would refuse it.
    let wrong = sha256_hex(b"other weights");
    let bundle = f.signed_listing(|assets| assets[1].sha256 = wrong.clone());
    let info = inspect(&bundle).expect("inspect");
    assert!(
        matches!(&info.asset_problem, Some(AssetError::DigestMismatch { name, .. }) if name == "model.bin"),
        "{:?}",
        info.asset_problem
    );
}

/// Signing without assets writes exactly the old format: no `assets` key in
/// the manifest, no asset section, the manifest just before the signature.
#[test]
fn signing_without_assets_writes_the_format_of_before() {
    let f = &*FIXTURE;
    let source = ManifestSource::from_toml("name = \"probe\"\nversion = \"0.1.0\"\nsubscriptions = [\"sensors.>\"]\n")
        .expect("source");
    let (bundle, manifest) = sign(&f.component, WORLD, source, &[], &f.key, NOW).expect("sign");
    let json = manifest.to_json();
    assert!(!String::from_utf8_lossy(&json).contains("assets"));
    // Component, manifest section, signature: what `sign_raw` (the format
    // before assets) writes for the same manifest JSON.
    assert_eq!(bundle, sign_raw(&f.component, &json, &f.key));
    let verified = f.verify(&bundle).expect("verifies");
    assert!(verified.assets().is_empty());
    // An explicit empty list means the same.
    let mut value: serde_json::Value = serde_json::from_slice(&json).expect("json");
    value["assets"] = serde_json::json!([]);
    let explicit = sign_raw(&f.component, value.to_string().as_bytes(), &f.key);
    assert!(f.verify(&explicit).expect("verifies").assets().is_empty());
}

#[test]
fn assets_at_the_caps_verify() {
    let f = &*FIXTURE;
    let many: Vec<AssetFile> = (0..MAX_ASSETS)
        .map(|i| asset(&format!("t{i}.bin"), &[i as u8]))
        .collect();
    let source = ManifestSource::from_toml("name = \"probe\"\nversion = \"0.1.0\"\nsubscriptions = [\"sensors.>\"]\n")
        .expect("source");
    let (bundle, _) = sign(&f.component, WORLD, source.clone(), &many, &f.key, NOW).expect("64 assets sign");
    assert_eq!(f.verify(&bundle).expect("64 assets verify").assets().len(), MAX_ASSETS);
    let longest = "a".repeat(MAX_ASSET_NAME_LEN);
    let biggest = vec![0x5a; MAX_ASSET_BYTES as usize];
    let empty = asset("empty.bin", b"");
    let (bundle, _) = sign(
        &f.component,
        WORLD,
        source,
        &[asset(&longest, &biggest), empty],
        &f.key,
        NOW,
    )
    .expect("sign at the caps");
    let verified = f.verify(&bundle).expect("verifies");
    assert_eq!(verified.assets()[0].size(), MAX_ASSET_BYTES as usize);
    assert_eq!(verified.assets()[1].size(), 0);
}

// ---------------------------------------------------------------------------
// Changed after signing: the signature catches it
// ---------------------------------------------------------------------------

#[test]
fn an_asset_changed_after_signing_is_a_bad_signature() {
    let f = &*FIXTURE;
    let start = f.assets_start();
    let weights = start
        + f.bundle[start..]
            .windows(7)
            .position(|w| w == b"weights")
            .expect("weights");
    let table = start + f.bundle[start..].windows(5).position(|w| w == b"table").expect("table");
    let name = start
        + f.bundle[start..]
            .windows(7)
            .position(|w| w == b"lut.bin")
            .expect("name");
    for (case, index) in [("a data byte", weights), ("another", table), ("a name byte", name)] {
        let mut tampered = f.bundle.clone();
        tampered[index] ^= 0x20;
        f.expect_bad_signature(&tampered, case);
    }
}

#[test]
fn asset_sections_removed_added_or_swapped_after_signing_are_a_bad_signature() {
    let f = &*FIXTURE;
    let [lut, model] = [f.sections()[0].clone(), f.sections()[1].clone()];
    let extra = format::asset_section("extra.bin", b"more");
    let cases = [
        ("one removed", vec![lut.clone()]),
        ("all removed", vec![]),
        ("one added", vec![lut.clone(), model.clone(), extra]),
        ("swapped", vec![model.clone(), lut.clone()]),
        ("one twice", vec![lut.clone(), lut, model]),
    ];
    for (case, sections) in cases {
        f.expect_bad_signature(&f.with_sections_unsigned(&sections), case);
    }
}

/// Every single-byte change of a small bundle with assets is refused.
#[test]
fn every_single_byte_change_of_a_bundle_with_assets_is_refused() {
    let f = &*FIXTURE;
    assert!(f.bundle.len() < 2048, "a small bundle: {} bytes", f.bundle.len());
    for mask in [0x01, 0xff] {
        for index in 0..f.bundle.len() {
            let mut changed = f.bundle.clone();
            changed[index] ^= mask;
            if let Ok(verified) = f.verify(&changed) {
                panic!("byte {index} xor {mask:#04x} still verifies: {verified:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Signed that way: the asset checks catch it
// ---------------------------------------------------------------------------

#[test]
fn a_listed_asset_without_its_section_is_refused() {
    let f = &*FIXTURE;
    let sections = f.sections();
    let bundle = f.signed(&f.manifest, &sections[..1]);
    let name = "model.bin".to_owned();
    let message = "asset `model.bin` is listed in the manifest but the bundle has no `edgewise.asset` section for it";
    f.expect_asset_err(&bundle, AssetError::Missing { name }, message, "the last one missing");
    let bundle = f.signed(&f.manifest, &[]);
    let name = "lut.bin".to_owned();
    let message = "asset `lut.bin` is listed in the manifest but the bundle has no `edgewise.asset` section for it";
    f.expect_asset_err(&bundle, AssetError::Missing { name }, message, "all missing");
}

#[test]
fn an_asset_section_the_manifest_does_not_list_is_refused() {
    let f = &*FIXTURE;
    let mut sections = f.sections();
    sections.push(format::asset_section("extra.bin", b"more"));
    let bundle = f.signed(&f.manifest, &sections);
    let message = "the `edgewise.asset` section `extra.bin` is not listed in the manifest";
    let name = "extra.bin".to_owned();
    f.expect_asset_err(&bundle, AssetError::Unlisted { name }, message, "one extra at the end");
    // In the middle, in place of a listed one.
    let sections = [f.sections()[0].clone(), format::asset_section("other.bin", b"x")];
    let bundle = f.signed(&f.manifest, &sections);
    let message = "the `edgewise.asset` section `other.bin` is not listed in the manifest";
    let name = "other.bin".to_owned();
    f.expect_asset_err(&bundle, AssetError::Unlisted { name }, message, "in place of one");
    // Assets in a bundle whose manifest lists none (the format of before).
    let mut manifest = f.manifest.clone();
    manifest.assets.clear();
    let bundle = f.signed(&manifest, &f.sections());
    let message = "the `edgewise.asset` section `lut.bin` is not listed in the manifest";
    let name = "lut.bin".to_owned();
    f.expect_asset_err(&bundle, AssetError::Unlisted { name }, message, "none listed");
    // An unlisted name is shown escaped.
    let bundle = f.signed(&manifest, &[format::asset_section("x\u{1b}[2J", b"")]);
    let message = "the `edgewise.asset` section `x\\u{1b}[2J` is not listed in the manifest";
    let name = "x\u{1b}[2J".to_owned();
    f.expect_asset_err(&bundle, AssetError::Unlisted { name }, message, "control characters");
}

#[test]
fn asset_sections_in_another_order_than_the_manifest_are_refused() {
    let f = &*FIXTURE;
    let sections = f.sections();
    let bundle = f.signed(&f.manifest, &[sections[1].clone(), sections[0].clone()]);
    let expected = AssetError::OutOfOrder {
        index: 0,
        found: "model.bin".into(),
        expected: "lut.bin".into(),
    };
    let message = "`edgewise.asset` section 0 is `model.bin`, the manifest lists `lut.bin` in that place";
    f.expect_asset_err(&bundle, expected, message, "swapped");
}

#[test]
fn two_asset_sections_with_the_same_name_are_refused() {
    let f = &*FIXTURE;
    let sections = f.sections();
    let twice = [sections[0].clone(), sections[0].clone(), sections[1].clone()];
    let bundle = f.signed(&f.manifest, &twice);
    let message = "two `edgewise.asset` sections are named `lut.bin`";
    let name = "lut.bin".to_owned();
    f.expect_asset_err(
        &bundle,
        AssetError::DuplicateSection { name },
        message,
        "same section twice",
    );
    // The same name with other data, both listed as the manifest allows
    // no name twice either.
    let other = format::asset_section("lut.bin", b"another table");
    let bundle = f.signed(&f.manifest, &[sections[0].clone(), other]);
    let name = "lut.bin".to_owned();
    f.expect_asset_err(&bundle, AssetError::DuplicateSection { name }, message, "other data");
}

#[test]
fn a_manifest_listing_an_asset_twice_is_refused() {
    let f = &*FIXTURE;
    let bundle = f.signed_listing(|assets| assets[1] = assets[0].clone());
    f.expect_assets_field_err(&bundle, "`lut.bin` is listed twice", "listed twice");
}

#[test]
fn an_asset_whose_digest_or_size_is_not_the_listed_one_is_refused() {
    let f = &*FIXTURE;
    let wrong = sha256_hex(b"the weights the reviewer saw");
    let actual = sha256_hex(&f.assets[1].bytes);
    let bundle = f.signed_listing(|assets| assets[1].sha256 = wrong.clone());
    let expected = AssetError::DigestMismatch {
        name: "model.bin".into(),
        manifest: wrong.clone(),
        actual: actual.clone(),
    };
    let message = format!("asset `model.bin` sha256 mismatch: the manifest says {wrong}, the asset is {actual}");
    f.expect_asset_err(&bundle, expected, &message, "digest");
    // The right digest of other bytes, of the same size.
    let sections = [
        f.sections()[0].clone(),
        format::asset_section("model.bin", b"\x00\x01WEIGHTS\xff"),
    ];
    let bundle = f.signed(&f.manifest, &sections);
    f.expect_asset_err(
        &bundle,
        AssetError::DigestMismatch {
            name: "model.bin".into(),
            manifest: actual.clone(),
            actual: sha256_hex(b"\x00\x01WEIGHTS\xff"),
        },
        &format!(
            "asset `model.bin` sha256 mismatch: the manifest says {actual}, the asset is {}",
            sha256_hex(b"\x00\x01WEIGHTS\xff")
        ),
        "other bytes",
    );
    // A section longer than listed.
    let sections = [
        f.sections()[0].clone(),
        format::asset_section("model.bin", b"\x00\x01weights\xff!"),
    ];
    let bundle = f.signed(&f.manifest, &sections);
    let expected = AssetError::SizeMismatch {
        name: "model.bin".into(),
        manifest: 10,
        actual: 11,
    };
    let message = "asset `model.bin` is 11 bytes, the manifest says 10";
    f.expect_asset_err(&bundle, expected, message, "size");
    // A digest that is not 64 lowercase hex digits.
    let bundle = f.signed_listing(|assets| assets[0].sha256 = assets[0].sha256.to_ascii_uppercase());
    let reason = "`lut.bin`: sha256 must be 64 lowercase hex digits";
    f.expect_assets_field_err(&bundle, reason, "uppercase digest");
}

#[test]
fn a_malformed_asset_section_is_refused() {
    let f = &*FIXTURE;
    let start = f.assets_start();
    // The name length says 200: it runs past the payload.
    let mut runs_past = format::custom_section(ASSET_SECTION, b"\xc8\x01lut.bin");
    let bundle = f.signed(&f.manifest, &[runs_past.clone()]);
    let expected = AssetError::Malformed {
        offset: start,
        reason: "asset name runs past the section",
    };
    let message = format!("malformed `edgewise.asset` section at offset {start}: asset name runs past the section");
    f.expect_asset_err(&bundle, expected, &message, "name runs past");
    runs_past = format::custom_section(ASSET_SECTION, b"\x02\xff\xfe");
    let bundle = f.signed(&f.manifest, &[runs_past]);
    let expected = AssetError::Malformed {
        offset: start,
        reason: "asset name is not UTF-8",
    };
    f.expect_asset_err(
        &bundle,
        expected,
        &format!("malformed `edgewise.asset` section at offset {start}: asset name is not UTF-8"),
        "not UTF-8",
    );
    let bundle = f.signed(&f.manifest, &[format::custom_section(ASSET_SECTION, b"")]);
    let expected = AssetError::Malformed {
        offset: start,
        reason: "size runs past the end of the file",
    };
    f.expect_asset_err(
        &bundle,
        expected,
        &format!("malformed `edgewise.asset` section at offset {start}: size runs past the end of the file"),
        "empty payload",
    );
}

/// Names that could mean a path, hide, confuse a terminal or a file system:
/// refused in a signed manifest, and by `sign`.
#[test]
fn bad_asset_names_are_refused_when_verified_and_when_signed() {
    let f = &*FIXTURE;
    let too_long = "a".repeat(MAX_ASSET_NAME_LEN + 1);
    let rule = "1-64 characters `a`-`z`, `0`-`9`, `.`, `_` or `-`, starting with a letter or digit, without `..`";
    let cases = [
        ("a slash", "models/w.bin", "models/w.bin"),
        ("an absolute path", "/etc/passwd", "/etc/passwd"),
        ("dot dot", "..", ".."),
        ("dot dot inside", "a..b", "a..b"),
        ("a dot", ".", "."),
        ("hidden", ".hidden", ".hidden"),
        ("a backslash", "a\\b", "a\\\\b"),
        ("a control character", "a\u{1b}[31m", "a\\u{1b}[31m"),
        ("a newline", "a\nb", "a\\nb"),
        ("a NUL", "a\0b", "a\\0b"),
        ("uppercase", "Model.bin", "Model.bin"),
        ("non-ASCII", "modèle.bin", "modèle.bin"),
        ("a space", "my model", "my model"),
        ("a leading dash", "-rf", "-rf"),
        ("empty", "", ""),
        ("too long", too_long.as_str(), too_long.as_str()),
    ];
    for (case, name, shown) in cases {
        let reason = format!("`{shown}` is not an asset name: {rule}");
        let mut manifest = f.manifest.clone();
        manifest.assets = vec![ManifestAsset::of(name, b"x")];
        let bundle = f.signed(&manifest, &[format::asset_section(name, b"x")]);
        f.expect_assets_field_err(&bundle, &reason, case);
        let source = ManifestSource::from_toml("name = \"probe\"\nversion = \"0.1.0\"\nsubscriptions = [\"a\"]\n")
            .expect("source");
        match sign(&f.component, WORLD, source, &[asset(name, b"x")], &f.key, NOW) {
            Err(SignError::Manifest(error)) => {
                assert_eq!(
                    error.to_string(),
                    format!("invalid manifest field `assets`: {reason}"),
                    "{case}"
                )
            }
            other => panic!("{case}: sign should refuse, got {other:?}"),
        }
    }
}

#[test]
fn too_many_assets_are_refused() {
    let f = &*FIXTURE;
    let count = MAX_ASSETS + 1;
    let files: Vec<AssetFile> = (0..count).map(|i| asset(&format!("t{i}.bin"), b"x")).collect();
    // Listed: a manifest field error.
    let mut manifest = f.manifest.clone();
    manifest.assets = files.iter().map(|a| ManifestAsset::of(&a.name, &a.bytes)).collect();
    let bundle = sign_with_assets(&f.component, &manifest, &files[..1], &f.key);
    f.expect_assets_field_err(&bundle, "lists 65 assets, at most 64 are allowed", "listed");
    // As sections: a layout error, before the signature is looked at (an
    // unknown key gets the same answer).
    let bundle = sign_with_assets(&f.component, &manifest, &files, &f.key);
    let message = "65 `edgewise.asset` sections (at most 64 are allowed)";
    f.expect_format_err(&bundle, FormatError::TooManyAssets(count), message, "sections");
    let (_, stranger) = SigningKey::generate().expect("key");
    let bundle = sign_with_assets(&f.component, &manifest, &files, &stranger);
    f.expect_format_err(&bundle, FormatError::TooManyAssets(count), message, "unknown key");
    // And `sign` will not make it.
    let source =
        ManifestSource::from_toml("name = \"probe\"\nversion = \"0.1.0\"\nsubscriptions = [\"a\"]\n").expect("source");
    let error = refused(sign(&f.component, WORLD, source, &files, &f.key, NOW), "65 assets");
    assert_eq!(
        error.to_string(),
        "invalid manifest field `assets`: lists 65 assets, at most 64 are allowed"
    );
}

#[test]
fn an_asset_over_its_cap_or_a_bundle_over_the_size_cap_is_refused() {
    let f = &*FIXTURE;
    let over = MAX_ASSET_BYTES + 1;
    // A manifest listing an asset over the cap: refused from the listing
    // alone, before the section is hashed.
    let bundle = f.signed_listing(|assets| assets[1].size = over);
    let reason = format!("`model.bin` is {over} bytes, over the 16777216-byte limit of an asset");
    f.expect_assets_field_err(&bundle, &reason, "listed over the cap");
    // `sign` refuses the file.
    let big = vec![0u8; over as usize];
    let source =
        ManifestSource::from_toml("name = \"probe\"\nversion = \"0.1.0\"\nsubscriptions = [\"a\"]\n").expect("source");
    let error = refused(
        sign(
            &f.component,
            WORLD,
            source.clone(),
            &[asset("big.bin", &big)],
            &f.key,
            NOW,
        ),
        "too big",
    );
    assert_eq!(
        error.to_string(),
        format!("invalid manifest field `assets`: `big.bin` is {over} bytes, over the 16777216-byte limit of an asset")
    );
    // Two assets at the cap and the code: over the 32 MiB bundle cap.
    let at_cap = vec![0u8; MAX_ASSET_BYTES as usize];
    let two = [asset("a.bin", &at_cap), asset("b.bin", &at_cap)];
    let error = refused(
        sign(&f.component, WORLD, source, &two, &f.key, NOW),
        "over the bundle cap",
    );
    assert!(
        matches!(error, SignError::TooLarge { size, max } if size > max && max == DEFAULT_MAX_BUNDLE_BYTES),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .ends_with("bytes, over the 33554432-byte limit devices accept"),
        "{error}"
    );
    // A device refuses a bundle over its cap before parsing it, assets or not.
    let options = VerifyOptions {
        max_bytes: f.bundle.len() - 1,
        ..f.options()
    };
    let error = verify(&f.bundle, &options).expect_err("over the cap");
    assert!(matches!(error, VerifyError::TooLarge { .. }), "{error:?}");
}

// ---------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------

#[test]
fn asset_sections_must_sit_between_the_manifest_and_the_signature() {
    let f = &*FIXTURE;
    let sections = f.sections();
    let manifest_section = format::custom_section(MANIFEST_SECTION, &f.manifest.to_json());
    let other = format::custom_section("name", b"late");
    // An asset before the manifest would count as code.
    let before = sign_sections(
        &f.component,
        &[sections[0].clone(), manifest_section.clone(), sections[1].clone()],
        &f.key,
    );
    let message = "an `edgewise.asset` section comes before the `edgewise.manifest` section";
    f.expect_format_err(
        &before,
        FormatError::AssetBeforeManifest,
        message,
        "asset before the manifest",
    );
    let message = "the `edgewise.manifest` section must come just before the signature, with only `edgewise.asset` sections between them";
    for (case, layout) in [
        (
            "another section after the assets",
            vec![
                manifest_section.clone(),
                sections[0].clone(),
                sections[1].clone(),
                other.clone(),
            ],
        ),
        (
            "another section between the assets",
            vec![
                manifest_section.clone(),
                sections[0].clone(),
                other.clone(),
                sections[1].clone(),
            ],
        ),
        (
            "another section before the assets",
            vec![
                manifest_section.clone(),
                other.clone(),
                sections[0].clone(),
                sections[1].clone(),
            ],
        ),
        (
            "a non-custom section among them",
            vec![
                manifest_section.clone(),
                sections[0].clone(),
                vec![1, 0],
                sections[1].clone(),
            ],
        ),
    ] {
        let bundle = sign_sections(&f.component, &layout, &f.key);
        f.expect_format_err(&bundle, FormatError::ManifestMisplaced, message, case);
    }
    // `sign` refuses a component that already carries an asset section.
    let component = [f.component.as_slice(), &sections[0]].concat();
    let source = ManifestSource::from_toml(SOURCE).expect("source");
    let error = refused(
        sign(&component, WORLD, source, &f.assets, &f.key, NOW),
        "already has an asset",
    );
    assert!(matches!(error, SignError::AlreadySigned), "{error:?}");
}

// ---------------------------------------------------------------------------
// The manifest source and reading the files
// ---------------------------------------------------------------------------

#[test]
fn read_assets_reads_the_files_the_source_names_relative_to_its_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir(dir.path().join("data")).expect("mkdir");
    std::fs::write(dir.path().join("data/lut.bin"), b"table").expect("write");
    std::fs::write(dir.path().join("model.bin"), b"weights").expect("write");
    let source = ManifestSource::from_toml(SOURCE).expect("source");
    let files = read_assets(&source, dir.path()).expect("read");
    assert_eq!(files, vec![asset("lut.bin", b"table"), asset("model.bin", b"weights")]);
    // A missing file names the asset and the path.
    std::fs::remove_file(dir.path().join("model.bin")).expect("rm");
    let error = refused(read_assets(&source, dir.path()), "missing");
    assert!(
        matches!(&error, SignError::AssetIo { name, .. } if name == "model.bin"),
        "{error:?}"
    );
    assert!(
        error.to_string().starts_with(&format!(
            "asset `model.bin`: cannot read {}: ",
            dir.path().join("model.bin").display()
        )),
        "{error}"
    );
    // A file over the cap is refused from its size, before it is read (a
    // sparse file).
    let huge = std::fs::File::create(dir.path().join("model.bin")).expect("create");
    huge.set_len(MAX_ASSET_BYTES + 1).expect("set_len");
    let error = refused(read_assets(&source, dir.path()), "too big");
    assert!(
        matches!(&error, SignError::AssetTooLarge { name, size, .. } if name == "model.bin" && *size == MAX_ASSET_BYTES + 1),
        "{error:?}"
    );
    // Files under the cap that add up to more than a bundle may hold.
    let text = (0..3)
        .map(|i| format!("\"t{i}.bin\" = \"t{i}.bin\"\n"))
        .collect::<String>();
    let source = ManifestSource::from_toml(&format!(
        "name = \"probe\"\nversion = \"0.1.0\"\nsubscriptions = [\"a\"]\n[assets]\n{text}"
    ))
    .expect("source");
    for i in 0..3 {
        let file = std::fs::File::create(dir.path().join(format!("t{i}.bin"))).expect("create");
        file.set_len(MAX_ASSET_BYTES).expect("set_len");
    }
    let error = refused(read_assets(&source, dir.path()), "too much in all");
    assert!(
        matches!(error, SignError::AssetsTooLarge { total, max } if total == 3 * MAX_ASSET_BYTES && max == DEFAULT_MAX_BUNDLE_BYTES),
        "{error:?}"
    );
    // A bad name is refused before any file is looked at.
    let source = ManifestSource::from_toml(
        "name = \"probe\"\nversion = \"0.1.0\"\nsubscriptions = [\"a\"]\n[assets]\n\"../x\" = \"/nonexistent\"\n",
    )
    .expect("source");
    let error = refused(read_assets(&source, dir.path()), "bad name");
    assert!(
        matches!(error, SignError::Manifest(ManifestError::Field { field: "assets", .. })),
        "{error:?}"
    );
}

#[test]
fn the_assets_table_of_the_source_maps_names_to_paths() {
    let source = ManifestSource::from_toml(SOURCE).expect("source");
    let names: Vec<_> = source
        .assets
        .iter()
        .map(|(n, p)| (n.as_str(), p.display().to_string()))
        .collect();
    assert_eq!(
        names,
        [
            ("lut.bin", "data/lut.bin".to_owned()),
            ("model.bin", "model.bin".to_owned())
        ]
    );
    for bad in [
        "[assets]\n\"a.bin\" = 1\n",
        "[assets]\n\"a.bin\" = \"a\"\n\"a.bin\" = \"b\"\n",
        "assets = [\"a\"]\n",
    ] {
        let text = format!("name = \"probe\"\nversion = \"0.1.0\"\nsubscriptions = [\"a\"]\n{bad}");
        assert!(ManifestSource::from_toml(&text).is_err(), "{bad}");
    }
}

// ---------------------------------------------------------------------------
// The test vector of docs/bundle-format.md, section 10.2
// ---------------------------------------------------------------------------

/// The 503-byte bundle of the spec: the empty component, the manifest JSON
/// given there, the asset `lut.bin` = `table`, signed with the RFC 8032 §7.1
/// TEST 1 key. Ed25519 is deterministic: the signature and the file digest
/// must be the spec's, and the bundle verifies.
#[test]
fn the_spec_test_vector_with_an_asset_is_what_sign_writes_and_verifies() {
    let seed = hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").expect("hex");
    let public = hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a").expect("hex");
    // PKCS#8 v2 as section 7.3 gives it.
    let pkcs8 = [
        &hex::decode("3051020101300506032b657004220420").expect("hex")[..],
        &seed,
        &hex::decode("812100").expect("hex"),
        &public,
    ]
    .concat();
    let key = SigningKey::from_pkcs8(&pkcs8).expect("the test key");
    assert_eq!(key.public_key().id().to_string(), "21fe31dfa154a261");
    let json = r#"{"format":1,"name":"demo","version":"0.1.0","world":"edgewise:plugin/sensor-plugin@0.1.0","subscriptions":["sensors.>"],"created":"2026-01-01T00:00:00Z","code_sha256":"24eaf3439a60c96764c4f2c92a0a81b52bd4fe5d5b91f090184a0f6486b1bf29","assets":[{"name":"lut.bin","size":5,"sha256":"0d4fc4a78d3706edccafb665a8b2fdd9309e82c78625bb0f2b8e7bb9e1c4d21c"}]}"#;
    assert_eq!(json.len(), 349);
    // (`sign` would also write `config`, `limits` and `expires`.)
    let section = format::asset_section("lut.bin", b"table");
    assert_eq!(
        hex::encode(&section),
        "001c0e65646765776973652e6173736574076c75742e62696e7461626c65"
    );
    let manifest_section = format::custom_section(MANIFEST_SECTION, json.as_bytes());
    let bundle = sign_sections(EMPTY_COMPONENT, &[manifest_section, section.clone()], &key);
    assert_eq!(bundle.len(), 503);
    assert_eq!(&bundle[0x17a..0x198], &section[..]);
    assert_eq!(
        hex::encode(&bundle[bundle.len() - 64..]),
        "31ecea9bbd87d7847d24b838cb3de8b793233838cbe3c27167ff4a95139819fc087502806c6bd25760a0384e2529fef1d0183261913c2b702982755dcb7d0b01"
    );
    assert_eq!(
        sha256_hex(&bundle),
        "daafb9dfd525b445679f31cf82236f568bdc750f2fc0801baecb53ec72a8d72c"
    );
    let mut trust = TrustStore::default();
    trust.add_key(key.public_key());
    let options = VerifyOptions {
        trust: &trust,
        rollback: None,
        now: NOW,
        max_bytes: DEFAULT_MAX_BUNDLE_BYTES,
    };
    let verified = verify(&bundle, &options).expect("the spec's bundle verifies");
    assert_eq!(verified.assets()[0].bytes(), b"table");
    // The spec's bundle digest is the one verification reports.
    assert_eq!(
        verified.bundle_sha256,
        "daafb9dfd525b445679f31cf82236f568bdc750f2fc0801baecb53ec72a8d72c"
    );
    let mut changed = bundle.clone();
    changed[0x193] ^= 0x01;
    assert!(matches!(verify(&changed, &options), Err(VerifyError::BadSignature(_))));
}

/// The same code signed with a good and a bad model: one code digest, two
/// bundle digests. Revoking the bad bundle's digest refuses it, naming the
/// bundle digest, and leaves the good one alone; revoking the code digest
/// refuses both, as it always did.
#[test]
fn a_bad_model_is_revoked_by_its_bundle_digest_and_the_good_one_still_verifies() {
    let f = Fixture::new();
    let mut assets = f.assets.clone();
    assets[1] = asset("model.bin", b"\x00\x01poisoned\xff");
    let source = ManifestSource::from_toml(SOURCE).expect("valid edgewise.toml");
    let (bad, _) = sign(&f.component, WORLD, source, &assets, &f.key, NOW).expect("sign the bad model");
    let (good_digest, bad_digest) = (sha256_hex(&f.bundle), sha256_hex(&bad));
    assert_ne!(good_digest, bad_digest);

    let trust_with = |revoked: String| {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("signer.pub"), f.key.public_key().to_file_text()).expect("write .pub");
        std::fs::write(dir.path().join("revoked"), revoked).expect("write revoked");
        let trust = TrustStore::load(dir.path()).expect("load the trust store");
        (dir, trust)
    };
    let options = |trust| VerifyOptions {
        trust,
        rollback: None,
        now: NOW,
        max_bytes: DEFAULT_MAX_BUNDLE_BYTES,
    };

    let (_dir, trust) = trust_with(format!("# the poisoned model\nsha256:{bad_digest}\n"));
    let error = verify(&bad, &options(&trust)).expect_err("the bad model is revoked");
    assert!(
        matches!(&error, VerifyError::RevokedBundle(d) if *d == bad_digest),
        "{error:?}"
    );
    assert_eq!(error.to_string(), format!("bundle sha256:{bad_digest} is revoked"));
    let good = verify(&f.bundle, &options(&trust)).expect("the good model verifies");
    assert_eq!(good.bundle_sha256, good_digest);
    assert_eq!(good.manifest.code_sha256, f.manifest.code_sha256);

    let code = f.manifest.code_sha256.clone();
    let (_dir, trust) = trust_with(format!("sha256:{code}\n"));
    for bundle in [&f.bundle, &bad] {
        let error = verify(bundle, &options(&trust)).expect_err("the code is revoked");
        assert!(
            matches!(&error, VerifyError::RevokedDigest(d) if *d == code),
            "{error:?}"
        );
    }
}
