//! Verification tests for signed plugin bundles: the whole [`verify`]
//! pipeline, driven through the public signing API.
//!
//! - A good bundle verifies (with and without an anti-rollback record).
//! - Every refusal asserts its exact [`VerifyError`] variant (and its values):
//!   unsigned, unknown / revoked key, revoked digest, bad signature (tampered
//!   code, manifest, signature, wrong signer), truncation at many cut points,
//!   trailing bytes, sections after the signature, two signatures, invalid
//!   manifests, digest and world mismatches, rollback, expiry, size cap, not
//!   wasm, core modules, and a time bound on files with very many sections.
//! - Exhaustively, every single-byte change of a small bundle is refused.
//! - Property tests: random mutations, truncations and appended bytes never
//!   verify, and arbitrary bytes never make `verify`, `format::split` or
//!   `inspect` panic.
//!
//! The component is the 8-byte empty component plus one custom section: verify
//! never compiles, so that is all the "code" a bundle needs.

use std::sync::LazyLock;
use std::time::Duration;

use proptest::prelude::*;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;

use super::format::{self, FormatError, KEY_ID_LEN, SIGNATURE_LEN, SIGNATURE_SECTION};
use super::{
    AssetFile, DEFAULT_MAX_BUNDLE_BYTES, KeyId, Manifest, ManifestAsset, ManifestError, ManifestSource, RollbackError,
    RollbackStore, SigningKey, TrustStore, VerifiedBundle, VerifyError, VerifyOptions, WORLD, WORLD_V0_2, inspect,
    sha256_hex, sign, sign_manifest, sign_raw, sign_with_assets, verify,
};

/// An empty WebAssembly component: the header and nothing else.
pub(super) const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";
/// A core module header.
const CORE_MODULE: &[u8] = b"\0asm\x01\0\0\0";
/// The fixed "current time" of every test.
pub(super) const NOW: OffsetDateTime = datetime!(2026-11-26 12:00 UTC);
/// The plugin's `edgewise.toml`; it expires a year after `NOW`.
const SOURCE: &str = r#"
name = "probe"
version = "0.1.0"
subscriptions = ["sensors.>"]
expires = "2027-11-26T12:00:00Z"
[config]
threshold = 70
"#;

/// Assert that `$value` matches the pattern (it is matched by reference, so
/// bindings are references); on failure, print the value and any context.
macro_rules! assert_matches {
    ($value:expr, $pattern:pat $(if $guard:expr)? $(, $($context:tt)+)?) => {
        match &$value {
            $pattern $(if $guard)? => {}
            other => panic!(
                "expected `{}`, got {other:?}{}",
                stringify!($pattern $(if $guard)?),
                String::new() $(+ ": " + &format!($($context)+))?
            ),
        }
    };
}

/// A signer, a trust store that trusts it, and a good bundle.
struct Fixture {
    key: SigningKey,
    trust: TrustStore,
    component: Vec<u8>,
    manifest: Manifest,
    bundle: Vec<u8>,
    /// Where the signature section starts (everything before it is signed).
    sig_start: usize,
}

impl Fixture {
    fn new() -> Fixture {
        let (_, key) = SigningKey::generate().expect("generate a key");
        let mut trust = TrustStore::default();
        trust.add_key(key.public_key());
        let component = concat(EMPTY_COMPONENT, &format::custom_section("name", b"tiny plugin code"));
        let source = ManifestSource::from_toml(SOURCE).expect("valid edgewise.toml");
        let (bundle, manifest) = sign(&component, WORLD, source, &[], &key, NOW).expect("sign the component");
        let sig_start = format::split(&bundle).expect("split the good bundle").signed.len();
        Fixture {
            key,
            trust,
            component,
            manifest,
            bundle,
            sig_start,
        }
    }

    fn key_id(&self) -> KeyId {
        self.key.public_key().id()
    }

    fn code_sha256(&self) -> String {
        sha256_hex(&self.component)
    }

    /// Offset of the first key id byte (the signature section's payload is
    /// format version, algorithm, key id, signature).
    fn key_id_offset(&self) -> usize {
        self.bundle.len() - SIGNATURE_LEN - KEY_ID_LEN
    }

    /// Offset of the first signature byte.
    fn signature_offset(&self) -> usize {
        self.bundle.len() - SIGNATURE_LEN
    }

    fn options<'a>(&self, trust: &'a TrustStore, rollback: Option<&'a RollbackStore>) -> VerifyOptions<'a> {
        VerifyOptions {
            trust,
            rollback,
            now: NOW,
            max_bytes: DEFAULT_MAX_BUNDLE_BYTES,
        }
    }

    /// Verify against the fixture's trust store, without a rollback record.
    fn verify(&self, bytes: &[u8]) -> Result<VerifiedBundle, VerifyError> {
        verify(bytes, &self.options(&self.trust, None))
    }

    /// Verify, expecting a refusal.
    fn expect_err(&self, bytes: &[u8]) -> VerifyError {
        match self.verify(bytes) {
            Ok(verified) => panic!("expected a refusal, but the bundle verified: {verified:?}"),
            Err(error) => error,
        }
    }

    /// Verify, expecting a layout refusal.
    fn expect_format_err(&self, bytes: &[u8]) -> FormatError {
        match self.expect_err(bytes) {
            VerifyError::Format(error) => error,
            other => panic!("expected a format error, got {other:?}"),
        }
    }

    /// Verify, expecting the layout refusal `expected`, shown as `message`.
    fn expect_refused_as(&self, bytes: &[u8], expected: FormatError, message: &str, case: &str) {
        let error = self.expect_format_err(bytes);
        assert_eq!(error, expected, "{case}");
        assert_eq!(VerifyError::Format(error).to_string(), message, "{case}");
    }

    /// The component signed by the fixture key with an edited copy of the
    /// good manifest, as it is (not validated).
    fn signed_with(&self, edit: impl FnOnce(&mut Manifest)) -> Vec<u8> {
        let mut manifest = self.manifest.clone();
        edit(&mut manifest);
        sign_manifest(&self.component, &manifest, &self.key)
    }
}

/// One fixture shared by the property tests (key generation is not free).
static FIXTURE: LazyLock<Fixture> = LazyLock::new(Fixture::new);

/// `bytes` with bit 0 of `bytes[index]` flipped.
fn flip(bytes: &[u8], index: usize) -> Vec<u8> {
    xor(bytes, index, 0x01)
}

/// `bytes` with `bytes[index]` xored with `mask`.
fn xor(bytes: &[u8], index: usize, mask: u8) -> Vec<u8> {
    let mut changed = bytes.to_vec();
    changed[index] ^= mask;
    changed
}

/// `a` followed by `b`.
fn concat(a: &[u8], b: &[u8]) -> Vec<u8> {
    [a, b].concat()
}

/// Where `needle` first occurs in `haystack` at or after `from`.
fn find(haystack: &[u8], needle: &[u8], from: usize) -> usize {
    haystack[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
        .unwrap_or_else(|| panic!("{:?} not found", String::from_utf8_lossy(needle)))
}

/// A trust directory holding the signer's `.pub` file and a `revoked` file,
/// loaded as the device loads it.
fn trust_dir(key: &SigningKey, revoked: &str) -> (tempfile::TempDir, TrustStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("signer.pub"), key.public_key().to_file_text()).expect("write .pub");
    std::fs::write(dir.path().join("revoked"), revoked).expect("write revoked");
    let store = TrustStore::load(dir.path()).expect("load the trust store");
    (dir, store)
}

/// An anti-rollback record that accepted `version` of `name` with `digest`.
fn rollback_store(name: &str, version: &str, digest: &str) -> (tempfile::TempDir, RollbackStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = RollbackStore::open(dir.path()).expect("open the rollback record");
    let version = semver::Version::parse(version).expect("semver");
    store.record(name, &version, digest, None).expect("record");
    (dir, store)
}

/// Record `verified` as accepted in `store`, as a device does once it runs.
fn record_accepted(store: &mut RollbackStore, verified: &VerifiedBundle) {
    let manifest = &verified.manifest;
    let version = manifest.semver().expect("semver");
    store
        .record(
            &manifest.name,
            &version,
            &manifest.code_sha256,
            manifest.assets_sha256().as_deref(),
        )
        .expect("record");
}

fn rfc3339(time: OffsetDateTime) -> String {
    time.format(&Rfc3339).expect("format RFC 3339")
}

// ---------------------------------------------------------------------------
// Accepted bundles
// ---------------------------------------------------------------------------

#[test]
fn a_good_bundle_verifies_and_returns_its_manifest() {
    let f = Fixture::new();
    let verified = f.verify(&f.bundle).expect("the good bundle verifies");
    assert_eq!(verified.manifest, f.manifest);
    assert_eq!(verified.manifest.name, "probe");
    assert_eq!(verified.manifest.world, WORLD);
    assert_eq!(verified.manifest.code_sha256, f.code_sha256());
    assert_eq!(verified.manifest.config["threshold"], "70");
    assert_eq!(verified.key_id, f.key_id());
    assert_eq!(verified.code_len, f.component.len());
    assert_eq!(verified.size, f.bundle.len());
    // The bundle starts with the component, unchanged.
    assert_eq!(&f.bundle[..verified.code_len], f.component.as_slice());
}

#[test]
fn a_good_bundle_verifies_against_a_trust_directory() {
    let f = Fixture::new();
    let (_dir, trust) = trust_dir(&f.key, "# nothing revoked\n\n");
    assert_eq!(trust.len(), 1);
    let verified = verify(&f.bundle, &f.options(&trust, None)).expect("verifies");
    assert_eq!(verified.key_id, f.key_id());
}

#[test]
fn a_good_bundle_passes_anti_rollback() {
    let f = Fixture::new();
    let cases = [
        (
            "same version, same digest",
            rollback_store("probe", "0.1.0", &f.code_sha256()),
        ),
        (
            "a lower version recorded",
            rollback_store("probe", "0.0.9", &sha256_hex(b"old")),
        ),
        (
            "another plugin, higher version",
            rollback_store("other", "9.0.0", &sha256_hex(b"x")),
        ),
    ];
    for (case, (_dir, store)) in &cases {
        let result = verify(&f.bundle, &f.options(&f.trust, Some(store)));
        assert!(result.is_ok(), "{case}: {result:?}");
    }
    // An empty record; record the accepted bundle; it verifies again after a reopen.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = RollbackStore::open(dir.path()).expect("open");
    let verified = verify(&f.bundle, &f.options(&f.trust, Some(&store))).expect("verifies");
    record_accepted(&mut store, &verified);
    let reopened = RollbackStore::open(dir.path()).expect("reopen");
    verify(&f.bundle, &f.options(&f.trust, Some(&reopened))).expect("verifies again after recording");
}

/// A signed asset is covered by anti-rollback as the code is: once a
/// version was accepted with one model, the same version and code with an
/// older model is refused (a new model needs a new version).
#[test]
fn the_same_version_with_other_signed_assets_is_refused_by_anti_rollback() {
    let f = Fixture::new();
    let with_model = |model: &[u8]| {
        let mut manifest = f.manifest.clone();
        manifest.assets = vec![ManifestAsset::of("model.json", model)];
        let asset = AssetFile {
            name: "model.json".to_owned(),
            bytes: model.to_vec(),
        };
        sign_with_assets(&f.component, &manifest, &[asset], &f.key)
    };
    let (new_model, old_model) = (with_model(b"model 2"), with_model(b"model 1"));
    let dir = tempfile::tempdir().expect("temp dir");
    let mut store = RollbackStore::open(dir.path()).expect("open");
    let verified = verify(&new_model, &f.options(&f.trust, Some(&store))).expect("verifies");
    record_accepted(&mut store, &verified);
    let store = RollbackStore::open(dir.path()).expect("reopen");
    verify(&new_model, &f.options(&f.trust, Some(&store))).expect("the same bundle again");
    let error = verify(&old_model, &f.options(&f.trust, Some(&store))).expect_err("an older model");
    assert!(
        matches!(
            error,
            VerifyError::Rollback(RollbackError::SameVersionOtherAssets { .. })
        ),
        "{error:?}"
    );
    let refused = verify(&f.bundle, &f.options(&f.trust, Some(&store))).expect_err("no model at all");
    assert!(refused.to_string().contains("other signed assets"), "{refused}");
}

#[test]
fn a_bundle_without_expiry_or_before_it_verifies() {
    let f = Fixture::new();
    f.verify(&f.signed_with(|m| m.expires = None)).expect("no expiry");
    let in_a_second = rfc3339(NOW + Duration::from_secs(1));
    f.verify(&f.signed_with(|m| m.expires = Some(in_a_second)))
        .expect("expires in a second");
    // `expires` is the last instant the bundle is valid (as X.509 `notAfter`).
    f.verify(&f.signed_with(|m| m.expires = Some(rfc3339(NOW))))
        .expect("expires exactly now");
}

#[test]
fn a_bundle_exactly_at_the_size_cap_verifies() {
    let f = Fixture::new();
    let max_bytes = f.bundle.len();
    let options = VerifyOptions {
        max_bytes,
        ..f.options(&f.trust, None)
    };
    verify(&f.bundle, &options).expect("at the cap");
}

// ---------------------------------------------------------------------------
// Keys, revocation, signatures
// ---------------------------------------------------------------------------

#[test]
fn unsigned_components_are_refused() {
    let f = Fixture::new();
    for (case, bytes) in [("tiny", f.component.as_slice()), ("empty", EMPTY_COMPONENT)] {
        let message = "unsigned: no `edgewise.signature` section";
        f.expect_refused_as(bytes, FormatError::Unsigned, message, case);
    }
}

#[test]
fn an_unknown_key_is_refused_with_the_signer_id() {
    let f = Fixture::new();
    let (_, stranger) = SigningKey::generate().expect("key");
    let stranger_id = stranger.public_key().id();
    let error = f.expect_err(&sign_manifest(&f.component, &f.manifest, &stranger));
    assert_matches!(error, VerifyError::UnknownKey(id) if *id == stranger_id);
    let message = format!("signed by unknown key {stranger_id} (not in the trust store)");
    assert_eq!(error.to_string(), message);
    // An empty trust store knows no key at all.
    let empty = TrustStore::default();
    let error = verify(&f.bundle, &f.options(&empty, None)).expect_err("no trusted key");
    assert_matches!(error, VerifyError::UnknownKey(id) if *id == f.key_id());
}

#[test]
fn a_revoked_key_is_refused() {
    let f = Fixture::new();
    let (_dir, trust) = trust_dir(&f.key, &format!("# compromised\n{}  # laptop key\n", f.key_id()));
    let error = verify(&f.bundle, &f.options(&trust, None)).expect_err("revoked key");
    assert_matches!(error, VerifyError::RevokedKey(id) if *id == f.key_id());
    assert_eq!(error.to_string(), format!("signed by revoked key {}", f.key_id()));
}

/// A `sha256:` line of `revoked` names a code digest or a bundle digest,
/// with no mark of which: the refusal names the one that matched.
#[test]
fn a_revoked_digest_is_refused() {
    let f = Fixture::new();
    let (code, bundle) = (f.code_sha256(), sha256_hex(&f.bundle));
    for (digest, kind) in [(&code, "code"), (&bundle, "bundle")] {
        for line in [
            format!("sha256:{digest}"),
            format!("sha256:{}  # the bad build", digest.to_ascii_uppercase()),
        ] {
            let (_dir, trust) = trust_dir(&f.key, &format!("{line}\n"));
            let error = verify(&f.bundle, &f.options(&trust, None)).expect_err("revoked digest");
            match kind {
                "code" => assert_matches!(error, VerifyError::RevokedDigest(d) if d == digest, "{line}"),
                _ => assert_matches!(error, VerifyError::RevokedBundle(d) if d == digest, "{line}"),
            }
            assert_eq!(error.to_string(), format!("{kind} sha256:{digest} is revoked"));
        }
    }
}

#[test]
fn the_bundle_digest_is_the_sha256_of_the_whole_file() {
    let f = Fixture::new();
    let verified = f.verify(&f.bundle).expect("the good bundle verifies");
    assert_eq!(verified.bundle_sha256, sha256_hex(&f.bundle));
    assert_ne!(verified.bundle_sha256, f.code_sha256());
    let info = inspect(&f.bundle).expect("inspect the good bundle");
    assert_eq!(info.bundle_sha256, sha256_hex(&f.bundle));
    assert_eq!(info.code_sha256, f.code_sha256());
}

#[test]
fn a_revoked_bundle_digest_leaves_other_bundles_of_the_same_code_alone() {
    let f = Fixture::new();
    // The same code and manifest, signed again after a week: another file.
    let mut manifest = f.manifest.clone();
    manifest.expires = Some(rfc3339(NOW + time::Duration::days(7)));
    let other = sign_manifest(&f.component, &manifest, &f.key);
    assert_ne!(sha256_hex(&other), sha256_hex(&f.bundle));
    let (_dir, trust) = trust_dir(&f.key, &format!("sha256:{}\n", sha256_hex(&f.bundle)));
    assert_matches!(
        verify(&f.bundle, &f.options(&trust, None)),
        Err(VerifyError::RevokedBundle(_))
    );
    let verified = verify(&other, &f.options(&trust, None)).expect("the other bundle verifies");
    assert_eq!(verified.manifest.code_sha256, f.code_sha256());
}

#[test]
fn a_flipped_signature_bit_is_a_bad_signature() {
    let f = Fixture::new();
    let message = format!(
        "bad signature: the bundle was modified after signing, or not signed by key {}",
        f.key_id()
    );
    for index in [f.signature_offset(), f.signature_offset() + 31, f.bundle.len() - 1] {
        let error = f.expect_err(&flip(&f.bundle, index));
        assert_matches!(error, VerifyError::BadSignature(id) if *id == f.key_id(), "byte {index}");
        assert_eq!(error.to_string(), message);
    }
}

#[test]
fn a_signature_by_another_key_under_a_trusted_id_is_a_bad_signature() {
    let f = Fixture::new();
    let (_, other) = SigningKey::generate().expect("key");
    let mut bundle = sign_manifest(&f.component, &f.manifest, &other);
    let at = bundle.len() - SIGNATURE_LEN - KEY_ID_LEN;
    bundle[at..at + KEY_ID_LEN].copy_from_slice(&f.key_id().0);
    let error = f.expect_err(&bundle);
    assert_matches!(error, VerifyError::BadSignature(id) if *id == f.key_id());
}

#[test]
fn a_changed_code_byte_is_a_bad_signature() {
    let f = Fixture::new();
    // Inside the custom section's payload: the layout stays well formed.
    let index = find(&f.bundle, b"tiny plugin code", 0);
    let tampered = xor(&f.bundle, index, b't' ^ b'T');
    assert!(format::split(&tampered).is_ok(), "still well formed");
    let error = f.expect_err(&tampered);
    assert_matches!(error, VerifyError::BadSignature(id) if *id == f.key_id());
}

#[test]
fn a_changed_manifest_byte_is_a_bad_signature() {
    let f = Fixture::new();
    // Bump the version from 0.1.0 to 0.1.1: still valid JSON and a valid manifest.
    let index = find(&f.bundle, b"\"0.1.0\"", f.component.len()) + 5;
    let tampered = xor(&f.bundle, index, b'0' ^ b'1');
    let parts = format::split(&tampered).expect("still well formed");
    let manifest = Manifest::from_json(parts.manifest_json).expect("still a valid manifest");
    assert_eq!(manifest.version, "0.1.1");
    let error = f.expect_err(&tampered);
    assert_matches!(error, VerifyError::BadSignature(id) if *id == f.key_id());
}

#[test]
fn a_changed_key_id_byte_is_an_unknown_key() {
    let f = Fixture::new();
    for index in [f.key_id_offset(), f.key_id_offset() + KEY_ID_LEN - 1] {
        let mut expected = f.key_id();
        expected.0[index - f.key_id_offset()] ^= 0x01;
        let error = f.expect_err(&flip(&f.bundle, index));
        assert_matches!(error, VerifyError::UnknownKey(id) if *id == expected, "byte {index}");
    }
}

#[test]
fn a_changed_signature_format_or_algorithm_byte_is_a_malformed_signature_section() {
    let f = Fixture::new();
    let format_at = f.key_id_offset() - 2;
    for (index, reason) in [
        (format_at, "unknown format version 0"),
        (format_at + 1, "unknown algorithm 0"),
    ] {
        let error = f.expect_format_err(&flip(&f.bundle, index));
        assert_eq!(error, FormatError::BadSignatureSection(reason.into()), "byte {index}");
    }
}

// ---------------------------------------------------------------------------
// Layout
// ---------------------------------------------------------------------------

#[test]
fn truncated_bundles_are_refused_precisely() {
    let f = Fixture::new();
    let (len, sig, code) = (f.bundle.len(), f.sig_start, f.component.len());
    let truncated = |offset| FormatError::Truncated { offset };
    let no_size = |offset| FormatError::Malformed {
        offset,
        reason: "size runs past the end of the file",
    };
    let cases = [
        ("the last byte cut", len - 1, truncated(sig)),
        ("the signature bytes cut", len - SIGNATURE_LEN, truncated(sig)),
        ("only the signature section's id and size", sig + 2, truncated(sig)),
        ("only the signature section's id", sig + 1, no_size(sig)),
        ("the whole signature section cut", sig, FormatError::Unsigned),
        ("inside the manifest", code + (sig - code) / 2, truncated(code)),
        ("the last manifest byte cut", sig - 1, truncated(code)),
        ("only the manifest section's id", code + 1, no_size(code)),
        ("manifest and signature cut", code, FormatError::Unsigned),
        ("inside the code's custom section", 11, truncated(8)),
        ("to the 8-byte header", 8, FormatError::Unsigned),
        ("inside the version", 7, truncated(4)),
        ("to the 4-byte magic", 4, truncated(4)),
        ("inside the magic", 3, FormatError::NotWasm),
        ("to nothing", 0, FormatError::NotWasm),
    ];
    for (case, cut, expected) in cases {
        assert!(cut < len, "{case}: cut {cut} is not a truncation");
        let error = f.expect_format_err(&f.bundle[..cut]);
        assert_eq!(error, expected, "{case} (cut to {cut} of {len} bytes)");
    }
    let message = format!("truncated: the section at offset {sig} runs past the end of the file");
    assert_eq!(f.expect_err(&f.bundle[..len - 1]).to_string(), message);
}

#[test]
fn bytes_after_the_signature_are_refused() {
    let f = Fixture::new();
    let error = f.expect_err(&concat(&f.bundle, b"junk"));
    assert_matches!(error, VerifyError::Format(FormatError::TrailingBytes(4)));
    assert_eq!(error.to_string(), "4 unexpected bytes after the signature section");
    let error = f.expect_format_err(&concat(&f.bundle, &[0]));
    assert_eq!(error, FormatError::TrailingBytes(1));
}

#[test]
fn a_section_after_the_signature_is_refused() {
    let f = Fixture::new();
    let cases = [
        ("a custom section", format::custom_section("name", b"late")),
        ("an empty custom section", format::custom_section("", b"")),
        ("a non-custom section", vec![1, 0]),
    ];
    for (case, section) in cases {
        let error = f.expect_err(&concat(&f.bundle, &section));
        assert_matches!(error, VerifyError::Format(FormatError::SignatureNotLast), "{case}");
        assert_eq!(
            error.to_string(),
            "the `edgewise.signature` section is not the last section"
        );
    }
}

#[test]
fn two_signature_sections_are_refused() {
    let f = Fixture::new();
    let signature_section = &f.bundle[f.sig_start..];
    let error = f.expect_err(&concat(&f.bundle, signature_section));
    assert_matches!(error, VerifyError::Format(FormatError::MultipleSignatures(2)));
    assert_eq!(
        error.to_string(),
        "2 `edgewise.signature` sections (exactly one is allowed)"
    );
}

#[test]
fn the_signature_section_must_hold_exactly_one_signature_block() {
    let f = Fixture::new();
    let signed = &f.bundle[..f.sig_start];
    let payload = &f.bundle[f.key_id_offset() - 2..];
    for bad_payload in [&payload[1..], &payload[..0], &concat(payload, &[0])[..]] {
        let bundle = concat(signed, &format::custom_section(SIGNATURE_SECTION, bad_payload));
        let reason = format!("payload is {} bytes, expected 74", bad_payload.len());
        assert_eq!(f.expect_format_err(&bundle), FormatError::BadSignatureSection(reason));
    }
}

#[test]
fn not_wasm_is_refused() {
    let f = Fixture::new();
    for bytes in [&b"hello world"[..], b"", b"\0as", b"PK\x03\x04 a zip file"] {
        let message = "not a WebAssembly file (no `\\0asm` header)";
        f.expect_refused_as(bytes, FormatError::NotWasm, message, &format!("{bytes:?}"));
    }
}

#[test]
fn a_signed_core_module_is_refused() {
    let f = Fixture::new();
    let module = concat(CORE_MODULE, &format::custom_section("name", b"core code"));
    let error = f.expect_err(&sign_raw(&module, &f.manifest.to_json(), &f.key));
    assert_matches!(error, VerifyError::Format(FormatError::CoreModule));
    let unknown_layer = sign_raw(b"\0asm\x0e\0\x01\0", &f.manifest.to_json(), &f.key);
    let error = f.expect_format_err(&unknown_layer);
    assert_eq!(error, FormatError::UnknownVersion([0x0e, 0, 1, 0]));
}

#[test]
fn a_file_over_the_size_cap_is_refused_before_parsing() {
    let f = Fixture::new();
    let (size, max) = (f.bundle.len(), f.bundle.len() - 1);
    let options = VerifyOptions {
        max_bytes: max,
        ..f.options(&f.trust, None)
    };
    let error = verify(&f.bundle, &options).expect_err("over the cap");
    assert_matches!(error, VerifyError::TooLarge { size: s, max: m } if (*s, *m) == (size, max));
    assert_eq!(
        error.to_string(),
        format!("bundle is {size} bytes, over the {max}-byte limit")
    );
    // Checked first: even bytes that are not wasm at all get TooLarge.
    let options = VerifyOptions {
        max_bytes: 63,
        ..options
    };
    let error = verify(&[0xff; 64], &options).expect_err("over the cap");
    assert_matches!(error, VerifyError::TooLarge { size: 64, max: 63 });
}

/// The layout walk runs on untrusted bytes before any signature check: one
/// pass, constant memory. A 1 MiB file (far under the 32 MiB default cap) of
/// half a million 2-byte empty sections is refused as unsigned. (A walk that
/// is quadratic in the number of sections, as an earlier one was, makes this
/// test run for minutes; speed itself is measured by benchmarks, not here.)
#[test]
fn many_tiny_sections_are_refused_as_unsigned() {
    let sections = 512 * 1024;
    let mut bytes = EMPTY_COMPONENT.to_vec();
    for _ in 0..sections {
        bytes.extend_from_slice(&[1, 0]); // Section id 1, size 0.
    }
    assert!(bytes.len() < DEFAULT_MAX_BUNDLE_BYTES);
    assert_matches!(FIXTURE.verify(&bytes), Err(VerifyError::Format(FormatError::Unsigned)));
}

// ---------------------------------------------------------------------------
// Manifest
// ---------------------------------------------------------------------------

#[test]
fn invalid_manifest_json_is_refused() {
    let f = Fixture::new();
    for json in [&b"{not json"[..], b"", b"[]", b"null"] {
        let error = f.expect_err(&sign_raw(&f.component, json, &f.key));
        let json = String::from_utf8_lossy(json);
        assert_matches!(error, VerifyError::Manifest(ManifestError::Invalid(_)), "{json:?}");
        assert!(error.to_string().starts_with("invalid manifest: "), "{error}");
    }
}

#[test]
fn missing_unknown_and_mistyped_manifest_fields_are_refused() {
    let f = Fixture::new();
    let good: serde_json::Value = serde_json::from_slice(&f.manifest.to_json()).expect("json");
    let cases = [
        ("version", None, "missing field `version`"),
        ("code_sha256", None, "missing field `code_sha256`"),
        ("extra", Some(1.into()), "unknown field `extra`"),
        (
            "version",
            Some(1.into()),
            "invalid type: integer `1`, expected a string",
        ),
    ];
    for (field, value, message) in cases {
        let mut json = good.clone();
        let object = json.as_object_mut().expect("an object");
        match value {
            None => drop(object.remove(field)),
            Some(value) => drop(object.insert(field.to_owned(), value)),
        }
        let bytes = sign_raw(&f.component, &serde_json::to_vec(&json).expect("json"), &f.key);
        let error = f.expect_err(&bytes);
        assert_matches!(
            error,
            VerifyError::Manifest(ManifestError::Invalid(m)) if m.to_string().contains(message),
            "expected {message:?}"
        );
    }
}

#[test]
fn an_invalid_manifest_field_is_refused() {
    let f = Fixture::new();
    let error = f.expect_err(&f.signed_with(|m| m.version = "1.0".into()));
    assert_matches!(
        error,
        VerifyError::Manifest(ManifestError::Field { field: "version", .. })
    );
}

#[test]
fn a_code_digest_mismatch_is_refused() {
    let f = Fixture::new();
    let other = sha256_hex(b"other code");
    let error = f.expect_err(&f.signed_with(|m| m.code_sha256 = other.clone()));
    assert_matches!(
        error,
        VerifyError::DigestMismatch { manifest, actual } if *manifest == other && *actual == f.code_sha256()
    );
    let message = format!(
        "code_sha256 mismatch: the manifest says {other}, the code is {}",
        f.code_sha256()
    );
    assert_eq!(error.to_string(), message);
}

#[test]
fn a_world_mismatch_is_refused() {
    let f = Fixture::new();
    let error = f.expect_err(&f.signed_with(|m| m.world = "other:world/x@1.0.0".into()));
    assert_matches!(error, VerifyError::WorldMismatch { found } if found == "other:world/x@1.0.0");
    let message = format!(
        "world mismatch: the bundle targets `other:world/x@1.0.0`, this host runs `{WORLD}` and `{WORLD_V0_2}`"
    );
    assert_eq!(error.to_string(), message);
}

#[test]
fn either_world_of_the_host_is_accepted() {
    // Verification reads the manifest's world only; whether the code really
    // targets it is checked when it is compiled (`load::Loaded::compile`).
    let f = Fixture::new();
    for world in [WORLD, WORLD_V0_2] {
        let bundle = f.signed_with(|m| m.world = world.into());
        let verified = verify(&bundle, &f.options(&f.trust, None)).expect("a world this host runs");
        assert_eq!(verified.manifest.world, world);
    }
}

// ---------------------------------------------------------------------------
// Anti-rollback and expiry
// ---------------------------------------------------------------------------

#[test]
fn a_downgrade_is_refused() {
    let f = Fixture::new();
    let (_dir, store) = rollback_store("probe", "0.2.0", &sha256_hex(b"newer code"));
    let error = verify(&f.bundle, &f.options(&f.trust, Some(&store))).expect_err("downgrade");
    assert_matches!(
        error,
        VerifyError::Rollback(RollbackError::Downgrade { name, offered, accepted })
            if name == "probe" && offered == "0.1.0" && accepted == "0.2.0"
    );
    let message = "version 0.1.0 of `probe` is lower than version 0.2.0 already accepted (rollback refused)";
    assert_eq!(error.to_string(), message);
}

#[test]
fn the_same_version_with_other_code_is_refused() {
    let f = Fixture::new();
    let accepted = sha256_hex(b"the code accepted before");
    let (_dir, store) = rollback_store("probe", "0.1.0", &accepted);
    let error = verify(&f.bundle, &f.options(&f.trust, Some(&store))).expect_err("same version, other code");
    assert_matches!(
        error,
        VerifyError::Rollback(RollbackError::SameVersionOtherCode { name, version, accepted_digest, offered_digest })
            if name == "probe"
                && version == "0.1.0"
                && *accepted_digest == accepted
                && *offered_digest == f.code_sha256()
    );
}

#[test]
fn an_expired_bundle_is_refused() {
    let f = Fixture::new();
    let cases = [
        ("one second ago", NOW - Duration::from_secs(1)),
        ("a year ago", NOW - Duration::from_secs(365 * 24 * 3600)),
    ];
    for (case, expires) in cases {
        let text = rfc3339(expires);
        let error = f.expect_err(&f.signed_with(|m| m.expires = Some(text.clone())));
        assert_matches!(error, VerifyError::Expired(t) if *t == text, "{case}");
        assert_eq!(error.to_string(), format!("expired at {text}"));
    }
}

// ---------------------------------------------------------------------------
// Exhaustive single-byte changes
// ---------------------------------------------------------------------------

#[test]
fn every_single_byte_change_is_refused() {
    let f = Fixture::new();
    assert!(f.bundle.len() < 1024, "a small bundle: {} bytes", f.bundle.len());
    for mask in [0x01, 0xff] {
        for index in 0..f.bundle.len() {
            if let Ok(verified) = f.verify(&xor(&f.bundle, index, mask)) {
                panic!("byte {index} xor {mask:#04x} still verifies: {verified:?}");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------

/// Arbitrary bytes, half of them behind a component header so that the
/// section walk, not only the header check, sees them.
fn arbitrary_file() -> impl Strategy<Value = Vec<u8>> {
    let body = prop::collection::vec(any::<u8>(), 0..512);
    prop_oneof![body.clone(), body.prop_map(|b| concat(EMPTY_COMPONENT, &b))]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        // Never write regression files into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// 1 to 8 distinct positions, each set to another random value (xor with
    /// a non-zero mask).
    #[test]
    fn random_multi_byte_mutations_never_verify(
        changes in prop::collection::btree_map(0..FIXTURE.bundle.len(), 1u8..=255, 1..=8)
    ) {
        let mut bytes = FIXTURE.bundle.clone();
        for (&index, &mask) in &changes {
            bytes[index] ^= mask;
        }
        prop_assert!(FIXTURE.verify(&bytes).is_err(), "changes {changes:?} still verify");
    }

    #[test]
    fn random_truncations_never_verify(len in 0..FIXTURE.bundle.len()) {
        prop_assert!(FIXTURE.verify(&FIXTURE.bundle[..len]).is_err(), "cut to {len} bytes still verifies");
    }

    #[test]
    fn random_appended_bytes_never_verify(extra in prop::collection::vec(any::<u8>(), 1..128)) {
        let result = FIXTURE.verify(&concat(&FIXTURE.bundle, &extra));
        prop_assert!(
            matches!(
                result,
                Err(VerifyError::Format(
                    FormatError::TrailingBytes(_) | FormatError::SignatureNotLast | FormatError::MultipleSignatures(_)
                ))
            ),
            "{result:?}"
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in arbitrary_file()) {
        prop_assert!(FIXTURE.verify(&bytes).is_err());
        let _ = format::split(&bytes);
        let _ = inspect(&bytes);
    }
}

#[test]
fn a_file_that_is_not_a_regular_file_is_refused_unread() {
    // /dev/zero says it holds 0 bytes and never ends: reading it whole once
    // took all the memory there was. A directory is no bundle either.
    let dir = tempfile::tempdir().unwrap();
    for path in [std::path::Path::new("/dev/zero"), dir.path()] {
        match super::read_bundle_file(path, 1024) {
            Err(super::ReadBundleError::Io { source, .. }) => {
                assert_eq!(source.to_string(), "not a regular file", "{}", path.display());
            }
            other => panic!("{}: {other:?}", path.display()),
        }
    }
}
