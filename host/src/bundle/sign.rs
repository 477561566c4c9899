//! Making a bundle: append the manifest and the signature to a component.

use time::OffsetDateTime;

use super::digest::sha256_hex;
use super::format::{self, FormatError, MANIFEST_SECTION, SIGNATURE_SECTION, SignatureBlock};
use super::keys::SigningKey;
use super::manifest::{Manifest, ManifestError, ManifestSource};

/// Why a component could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// Not a component (not wasm, a core module, malformed sections).
    #[error("{0}")]
    Format(#[from] FormatError),
    /// The file already carries Edgewise sections.
    #[error("already signed: the file has `edgewise.*` sections (sign the plain component instead)")]
    AlreadySigned,
    /// The manifest source is invalid.
    #[error("{0}")]
    Manifest(#[from] ManifestError),
}

/// Sign `component` with `key`: the manifest is built from `source` with the
/// component's digest and `created` time. Returns the bundle and its manifest.
///
/// The caller checks the component's WIT world first (only the runtime knows
/// how); this function only deals with bytes.
pub fn sign(
    component: &[u8],
    source: ManifestSource,
    key: &SigningKey,
    created: OffsetDateTime,
) -> Result<(Vec<u8>, Manifest), SignError> {
    format::check_sections(component)?;
    if format::has_edgewise_sections(component) {
        return Err(SignError::AlreadySigned);
    }
    let manifest = source.into_manifest(sha256_hex(component), created)?;
    Ok((sign_manifest(component, &manifest, key), manifest))
}

/// Append `manifest` and a signature by `key` to `component` as they are,
/// without validation. Tests use it to build deliberately broken bundles.
pub fn sign_manifest(component: &[u8], manifest: &Manifest, key: &SigningKey) -> Vec<u8> {
    sign_raw(component, &manifest.to_json(), key)
}

/// Append a manifest section holding `manifest_json` and a signature by `key`.
pub fn sign_raw(component: &[u8], manifest_json: &[u8], key: &SigningKey) -> Vec<u8> {
    let mut bundle = component.to_vec();
    bundle.extend_from_slice(&format::custom_section(MANIFEST_SECTION, manifest_json));
    let block = SignatureBlock {
        key_id: key.public_key().id().0,
        signature: key.sign(&bundle),
    };
    bundle.extend_from_slice(&format::custom_section(
        SIGNATURE_SECTION,
        &format::signature_payload(&block),
    ));
    bundle
}
