//! What a bundle (or plain component) holds, without trusting it: parsing
//! only, nothing is compiled.

use super::assets::{self, AssetError};
use super::digest::sha256_hex;
use super::format::{self, FormatError};
use super::keys::KeyId;
use super::manifest::{Manifest, ManifestError};

/// The facts `edgewise inspect` shows.
#[derive(Debug)]
pub struct BundleInfo {
    /// File size in bytes.
    pub size: usize,
    /// The bundle digest: SHA-256 of the whole file.
    pub bundle_sha256: String,
    /// SHA-256 of the component without the Edgewise sections.
    pub code_sha256: String,
    /// The manifest, if the file is a bundle (or why it cannot be read).
    pub manifest: Option<Result<Manifest, ManifestError>>,
    /// The signer's key id, if signed.
    pub key_id: Option<KeyId>,
    /// Why the file is not a well-formed signed bundle, if it is not.
    pub layout_problem: Option<FormatError>,
    /// The `edgewise.asset` sections, in file order, each digest computed
    /// here from the section's bytes.
    pub assets: Vec<AssetInfo>,
    /// How the asset sections disagree with the manifest, if they do (the
    /// first problem, as `edgewise verify` would report it).
    pub asset_problem: Option<AssetError>,
    /// The component's top-level imports.
    pub imports: Vec<String>,
    /// The component's top-level exports.
    pub exports: Vec<String>,
}

/// One asset section as `edgewise inspect` shows it.
#[derive(Debug)]
pub struct AssetInfo {
    /// The name in the section (untrusted: escape it before showing it).
    pub name: String,
    /// Size of its data, in bytes.
    pub size: usize,
    /// SHA-256 of its data, computed here.
    pub sha256: String,
}

/// Inspect `bytes`. Fails only if they are not a component at all.
pub fn inspect(bytes: &[u8]) -> Result<BundleInfo, FormatError> {
    format::check_header(bytes)?;
    let (code, manifest, key_id, layout_problem, sections) = match format::split(bytes) {
        Ok(parts) => (
            parts.code,
            Some(Manifest::from_json(parts.manifest_json)),
            Some(KeyId(parts.signature.key_id)),
            None,
            parts.assets,
        ),
        Err(problem) => (bytes, None, None, Some(problem), Vec::new()),
    };
    let asset_infos = sections
        .iter()
        .filter_map(|section| assets::read_section(section).ok())
        .map(|asset| AssetInfo {
            name: asset.name.to_owned(),
            size: asset.data.len(),
            sha256: sha256_hex(asset.data),
        })
        .collect();
    let asset_problem = match &manifest {
        Some(Ok(manifest)) => assets::check(&manifest.assets, &sections).err(),
        _ => None,
    };
    let (imports, exports) = imports_and_exports(code);
    Ok(BundleInfo {
        size: bytes.len(),
        bundle_sha256: sha256_hex(bytes),
        code_sha256: sha256_hex(code),
        manifest,
        key_id,
        layout_problem,
        assets: asset_infos,
        asset_problem,
        imports,
        exports,
    })
}

/// Top-level import and export names of a component (nested modules and
/// components are skipped). A parse error ends the listing early.
fn imports_and_exports(code: &[u8]) -> (Vec<String>, Vec<String>) {
    use wasmparser::{Parser, Payload};
    let (mut imports, mut exports) = (Vec::new(), Vec::new());
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(code) {
        let Ok(payload) = payload else { break };
        match payload {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(reader) if depth == 0 => {
                imports.extend(reader.into_iter().flatten().map(|i| i.name.name.to_owned()));
            }
            Payload::ComponentExportSection(reader) if depth == 0 => {
                exports.extend(reader.into_iter().flatten().map(|e| e.name.name.to_owned()));
            }
            _ => {}
        }
    }
    (imports, exports)
}
