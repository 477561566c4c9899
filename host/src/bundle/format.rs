//! The bundle's byte layout: a WebAssembly component followed by custom
//! sections: `edgewise.manifest`, then zero or more `edgewise.asset`, then
//! `edgewise.signature` (the last bytes of the file). `docs/bundle-format.md`
//! specifies it byte by byte.
//!
//! Only the top level of the file is walked here (section ids and sizes), never
//! the component's contents: this is the code that runs on untrusted bytes
//! before any signature is checked, so it stays small and exact.

use std::ops::Range;

use super::assets::MAX_ASSETS;

/// Custom-section name of the manifest (UTF-8 JSON).
pub const MANIFEST_SECTION: &str = "edgewise.manifest";
/// Custom-section name of a signed asset (between the manifest and the signature).
pub const ASSET_SECTION: &str = "edgewise.asset";
/// Custom-section name of the signature (last section of the file).
pub const SIGNATURE_SECTION: &str = "edgewise.signature";
/// Size of the signature section's payload: version, algorithm, key id, signature.
pub const SIGNATURE_PAYLOAD_LEN: usize = 1 + 1 + KEY_ID_LEN + SIGNATURE_LEN;
/// Signature payload format version.
pub const SIGNATURE_FORMAT: u8 = 1;
/// Algorithm byte for Ed25519.
pub const ALGORITHM_ED25519: u8 = 1;
/// Bytes of a key id (the first bytes of the SHA-256 of the raw public key).
pub const KEY_ID_LEN: usize = 8;
/// Bytes of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

const MAGIC: &[u8; 4] = b"\0asm";
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0x00, 0x01, 0x00];
const CORE_MODULE_VERSION: [u8; 4] = [0x01, 0x00, 0x00, 0x00];
const CUSTOM_SECTION_ID: u8 = 0;

/// Why the bytes are not a well-formed bundle (before any cryptography).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// No `\0asm` header.
    #[error("not a WebAssembly file (no `\\0asm` header)")]
    NotWasm,
    /// A core module where a component is needed.
    #[error("a core WebAssembly module, not a component (build with `--target wasm32-wasip2`)")]
    CoreModule,
    /// A WebAssembly binary of an unknown version or layer.
    #[error("unsupported WebAssembly version/layer {0:02x?}")]
    UnknownVersion([u8; 4]),
    /// A section runs past the end of the file.
    #[error("truncated: the section at offset {offset} runs past the end of the file")]
    Truncated {
        /// Where the section starts.
        offset: usize,
    },
    /// A section header that cannot be read.
    #[error("malformed section at offset {offset}: {reason}")]
    Malformed {
        /// Where the section starts.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Bytes after the signature section that are not a section.
    #[error("{0} unexpected bytes after the signature section")]
    TrailingBytes(usize),
    /// No signature section.
    #[error("unsigned: no `edgewise.signature` section")]
    Unsigned,
    /// More than one signature section.
    #[error("{0} `edgewise.signature` sections (exactly one is allowed)")]
    MultipleSignatures(usize),
    /// A section follows the signature.
    #[error("the `edgewise.signature` section is not the last section")]
    SignatureNotLast,
    /// No manifest section.
    #[error("no `edgewise.manifest` section")]
    MissingManifest,
    /// More than one manifest section.
    #[error("{0} `edgewise.manifest` sections (exactly one is allowed)")]
    MultipleManifests(usize),
    /// A section other than an asset between the manifest and the signature.
    #[error(
        "the `edgewise.manifest` section must come just before the signature, with only `edgewise.asset` sections between them"
    )]
    ManifestMisplaced,
    /// An asset section before the manifest (where it would count as code).
    #[error("an `edgewise.asset` section comes before the `edgewise.manifest` section")]
    AssetBeforeManifest,
    /// More asset sections than a bundle may carry.
    #[error("{0} `edgewise.asset` sections (at most {max} are allowed)", max = MAX_ASSETS)]
    TooManyAssets(usize),
    /// The signature payload is not version 1 / Ed25519 / 74 bytes.
    #[error("malformed signature section: {0}")]
    BadSignatureSection(String),
}

/// One top-level section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section<'a> {
    /// Section id (0 = custom).
    pub id: u8,
    /// The whole section, header included, as a range of the file.
    pub range: Range<usize>,
    /// For a custom section: its name.
    pub name: Option<&'a str>,
    /// The payload (after the name, for a custom section).
    pub payload: &'a [u8],
}

/// The parsed signature section payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureBlock {
    /// The signer's key id.
    pub key_id: [u8; KEY_ID_LEN],
    /// Ed25519 signature over every byte before the signature section.
    pub signature: [u8; SIGNATURE_LEN],
}

/// A bundle split into its parts (nothing verified yet).
#[derive(Debug, Clone)]
pub struct BundleParts<'a> {
    /// The component without the Edgewise sections (what `code_sha256` covers).
    pub code: &'a [u8],
    /// The manifest section's payload (JSON, not yet parsed).
    pub manifest_json: &'a [u8],
    /// The `edgewise.asset` sections, in file order (payloads not yet parsed).
    pub assets: Vec<Section<'a>>,
    /// Every byte before the signature section (what the signature covers).
    pub signed: &'a [u8],
    /// The signature section's contents.
    pub signature: SignatureBlock,
}

/// Check the 8-byte header: a component, not a core module.
pub fn check_header(bytes: &[u8]) -> Result<(), FormatError> {
    if bytes.get(..4) != Some(MAGIC.as_slice()) {
        return Err(FormatError::NotWasm);
    }
    let version: [u8; 4] = match bytes.get(4..8).and_then(|v| v.try_into().ok()) {
        Some(version) => version,
        None => return Err(FormatError::Truncated { offset: 4 }),
    };
    match version {
        COMPONENT_VERSION => Ok(()),
        CORE_MODULE_VERSION => Err(FormatError::CoreModule),
        other => Err(FormatError::UnknownVersion(other)),
    }
}

/// Walk the top-level sections of a component, in order, without collecting
/// them: one pass, constant memory, so that a crafted file of millions of tiny
/// sections costs no more than its size. After the first error the walk ends.
pub fn walk(bytes: &[u8]) -> SectionWalk<'_> {
    SectionWalk {
        bytes,
        offset: 8,
        header_error: check_header(bytes).err(),
        signed: false,
        done: false,
    }
}

/// The iterator of [`walk`].
pub struct SectionWalk<'a> {
    bytes: &'a [u8],
    offset: usize,
    header_error: Option<FormatError>,
    /// Whether a signature section has been seen: bytes after it that do not
    /// parse are reported as trailing bytes, not as a broken section.
    signed: bool,
    done: bool,
}

impl<'a> Iterator for SectionWalk<'a> {
    type Item = Result<Section<'a>, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if let Some(error) = self.header_error.take() {
            self.done = true;
            return Some(Err(error));
        }
        if self.offset >= self.bytes.len() {
            self.done = true;
            return None;
        }
        match read_section(self.bytes, self.offset) {
            Ok(section) => {
                self.offset = section.range.end;
                self.signed |= section.name == Some(SIGNATURE_SECTION);
                Some(Ok(section))
            }
            Err(error) => {
                self.done = true;
                if self.signed {
                    Some(Err(FormatError::TrailingBytes(self.bytes.len() - self.offset)))
                } else {
                    Some(Err(error))
                }
            }
        }
    }
}

/// Check that `bytes` is a component whose top-level sections all parse.
pub fn check_sections(bytes: &[u8]) -> Result<(), FormatError> {
    walk(bytes).try_for_each(|section| section.map(|_| ()))
}

fn read_section(bytes: &[u8], start: usize) -> Result<Section<'_>, FormatError> {
    let id = *bytes.get(start).ok_or(FormatError::Truncated { offset: start })?;
    let (size, size_len) =
        read_leb_u32(bytes, start + 1).map_err(|reason| FormatError::Malformed { offset: start, reason })?;
    let body_start = start + 1 + size_len;
    let end = body_start
        .checked_add(size as usize)
        .filter(|end| *end <= bytes.len())
        .ok_or(FormatError::Truncated { offset: start })?;
    let body = &bytes[body_start..end];
    let (name, payload) = if id == CUSTOM_SECTION_ID {
        let (name, payload) = read_name(
            body,
            "custom section name runs past the section",
            "custom section name is not UTF-8",
        )
        .map_err(|reason| FormatError::Malformed { offset: start, reason })?;
        (Some(name), payload)
    } else {
        (None, body)
    };
    Ok(Section {
        id,
        range: start..end,
        name,
        payload,
    })
}

/// A name (LEB128 length, then UTF-8 bytes) at the start of `body`, and the
/// bytes after it; `runs_past` and `not_utf8` are the reasons of those errors.
fn read_name<'a>(
    body: &'a [u8],
    runs_past: &'static str,
    not_utf8: &'static str,
) -> Result<(&'a str, &'a [u8]), &'static str> {
    let (name_len, name_len_len) = read_leb_u32(body, 0)?;
    let name_end = name_len_len
        .checked_add(name_len as usize)
        .filter(|end| *end <= body.len())
        .ok_or(runs_past)?;
    let name = std::str::from_utf8(&body[name_len_len..name_end]).map_err(|_| not_utf8)?;
    Ok((name, &body[name_end..]))
}

/// The name and the data of an `edgewise.asset` section's payload: the
/// name's length (LEB128), the name (UTF-8), then the data to the end.
pub fn parse_asset_payload(payload: &[u8]) -> Result<(&str, &[u8]), &'static str> {
    read_name(payload, "asset name runs past the section", "asset name is not UTF-8")
}

/// Encode an `edgewise.asset` section holding the asset `name` with `data`.
pub fn asset_section(name: &str, data: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(5 + name.len() + data.len());
    write_leb_u32(&mut payload, name.len() as u32);
    payload.extend_from_slice(name.as_bytes());
    payload.extend_from_slice(data);
    custom_section(ASSET_SECTION, &payload)
}

/// An unsigned LEB128 of at most 5 bytes (a u32), as WebAssembly encodes sizes.
fn read_leb_u32(bytes: &[u8], at: usize) -> Result<(u32, usize), &'static str> {
    let mut value: u64 = 0;
    for index in 0..5 {
        let byte = *bytes.get(at + index).ok_or("size runs past the end of the file")?;
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            return u32::try_from(value)
                .map(|v| (v, index + 1))
                .map_err(|_| "size overflows u32");
        }
    }
    Err("size is longer than 5 bytes")
}

fn write_leb_u32(out: &mut Vec<u8>, mut value: u32) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

/// Encode a custom section `name` with `payload`.
pub fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
    let mut name_and_payload = Vec::with_capacity(5 + name.len() + payload.len());
    write_leb_u32(&mut name_and_payload, name.len() as u32);
    name_and_payload.extend_from_slice(name.as_bytes());
    name_and_payload.extend_from_slice(payload);
    let mut section = Vec::with_capacity(6 + name_and_payload.len());
    section.push(CUSTOM_SECTION_ID);
    write_leb_u32(&mut section, name_and_payload.len() as u32);
    section.extend_from_slice(&name_and_payload);
    section
}

/// Encode the signature section's payload.
pub fn signature_payload(block: &SignatureBlock) -> Vec<u8> {
    let mut payload = Vec::with_capacity(SIGNATURE_PAYLOAD_LEN);
    payload.push(SIGNATURE_FORMAT);
    payload.push(ALGORITHM_ED25519);
    payload.extend_from_slice(&block.key_id);
    payload.extend_from_slice(&block.signature);
    payload
}

/// Whether a component already carries Edgewise sections (parse errors count as no).
pub fn has_edgewise_sections(bytes: &[u8]) -> bool {
    walk(bytes)
        .flatten()
        .any(|s| matches!(s.name, Some(MANIFEST_SECTION | ASSET_SECTION | SIGNATURE_SECTION)))
}

/// Split a bundle into code, manifest, assets, signed bytes and signature,
/// checking the layout rules (one manifest, then only asset sections, then
/// one signature, which is last). One pass: of the sections, only the asset
/// sections are kept, and at most [`MAX_ASSETS`] of them.
pub fn split(bytes: &[u8]) -> Result<BundleParts<'_>, FormatError> {
    let (mut signatures, mut manifests, mut asset_count) = (0usize, 0usize, 0usize);
    // Whether a section other than an asset or the signature came after a
    // manifest, and whether an asset came before any manifest.
    let (mut misplaced, mut asset_before_manifest) = (false, false);
    let mut manifest: Option<Section<'_>> = None;
    let mut assets = Vec::new();
    let mut last: Option<Section<'_>> = None;
    for section in walk(bytes) {
        let section = section?;
        match section.name {
            Some(SIGNATURE_SECTION) => signatures += 1,
            Some(MANIFEST_SECTION) => {
                manifests += 1;
                manifest = Some(section.clone());
            }
            Some(ASSET_SECTION) => {
                asset_count += 1;
                asset_before_manifest |= manifests == 0;
                if assets.len() < MAX_ASSETS {
                    assets.push(section.clone());
                }
            }
            _ => misplaced |= manifests > 0,
        }
        last = Some(section);
    }
    exactly_one(signatures, FormatError::Unsigned, FormatError::MultipleSignatures)?;
    let signature = match last {
        Some(section) if section.name == Some(SIGNATURE_SECTION) => section,
        _ => return Err(FormatError::SignatureNotLast),
    };
    exactly_one(manifests, FormatError::MissingManifest, FormatError::MultipleManifests)?;
    let manifest = manifest.ok_or(FormatError::MissingManifest)?;
    if misplaced {
        return Err(FormatError::ManifestMisplaced);
    }
    if asset_before_manifest {
        return Err(FormatError::AssetBeforeManifest);
    }
    if asset_count > MAX_ASSETS {
        return Err(FormatError::TooManyAssets(asset_count));
    }
    // One encoding only: the signature section is not itself signed, so a
    // padded size or name length would give another file that still verifies.
    if bytes[signature.range.clone()] != custom_section(SIGNATURE_SECTION, signature.payload)[..] {
        return Err(FormatError::BadSignatureSection(
            "the section header is not in its shortest encoding".to_owned(),
        ));
    }
    Ok(BundleParts {
        code: &bytes[..manifest.range.start],
        manifest_json: manifest.payload,
        assets,
        signed: &bytes[..signature.range.start],
        signature: parse_signature(signature.payload)?,
    })
}

/// `Ok` if a section came exactly once; else `none`, or `many` of the count.
fn exactly_one(count: usize, none: FormatError, many: fn(usize) -> FormatError) -> Result<(), FormatError> {
    match count {
        0 => Err(none),
        1 => Ok(()),
        n => Err(many(n)),
    }
}

fn parse_signature(payload: &[u8]) -> Result<SignatureBlock, FormatError> {
    if payload.len() != SIGNATURE_PAYLOAD_LEN {
        return Err(FormatError::BadSignatureSection(format!(
            "payload is {} bytes, expected {SIGNATURE_PAYLOAD_LEN}",
            payload.len()
        )));
    }
    if payload[0] != SIGNATURE_FORMAT {
        return Err(FormatError::BadSignatureSection(format!(
            "unknown format version {}",
            payload[0]
        )));
    }
    if payload[1] != ALGORITHM_ED25519 {
        return Err(FormatError::BadSignatureSection(format!(
            "unknown algorithm {}",
            payload[1]
        )));
    }
    let mut key_id = [0u8; KEY_ID_LEN];
    key_id.copy_from_slice(&payload[2..2 + KEY_ID_LEN]);
    let mut signature = [0u8; SIGNATURE_LEN];
    signature.copy_from_slice(&payload[2 + KEY_ID_LEN..]);
    Ok(SignatureBlock { key_id, signature })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    fn bundle(extra: &[Vec<u8>]) -> Vec<u8> {
        let mut bytes = EMPTY_COMPONENT.to_vec();
        extra.iter().for_each(|s| bytes.extend_from_slice(s));
        bytes
    }

    fn signature_section() -> Vec<u8> {
        custom_section(
            SIGNATURE_SECTION,
            &signature_payload(&SignatureBlock {
                key_id: [7; KEY_ID_LEN],
                signature: [9; SIGNATURE_LEN],
            }),
        )
    }

    #[test]
    fn leb128_round_trips() {
        for value in [0u32, 1, 127, 128, 300, 16_384, u32::MAX] {
            let mut out = Vec::new();
            write_leb_u32(&mut out, value);
            assert_eq!(read_leb_u32(&out, 0), Ok((value, out.len())));
        }
        assert!(read_leb_u32(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x01], 0).is_err());
        assert!(read_leb_u32(&[0xff, 0xff, 0xff, 0xff, 0x7f], 0).is_err());
    }

    #[test]
    fn splits_a_well_formed_bundle() {
        let manifest = custom_section(MANIFEST_SECTION, b"{}");
        let bytes = bundle(&[manifest.clone(), signature_section()]);
        let parts = split(&bytes).unwrap();
        assert_eq!(parts.code, EMPTY_COMPONENT);
        assert_eq!(parts.manifest_json, b"{}");
        assert_eq!(parts.signed.len(), EMPTY_COMPONENT.len() + manifest.len());
        assert_eq!(parts.signature.key_id, [7; KEY_ID_LEN]);
    }

    #[test]
    fn a_padded_signature_header_is_refused() {
        let manifest = custom_section(MANIFEST_SECTION, b"{}");
        let canonical = signature_section();
        // Same section, its size written in two LEB128 bytes instead of one.
        let mut padded = vec![canonical[0], canonical[1] | 0x80, 0x00];
        padded.extend_from_slice(&canonical[2..]);
        assert!(split(&bundle(&[manifest.clone(), canonical])).is_ok());
        assert!(matches!(
            split(&bundle(&[manifest, padded])).unwrap_err(),
            FormatError::BadSignatureSection(_)
        ));
    }

    #[test]
    fn layout_errors() {
        let manifest = custom_section(MANIFEST_SECTION, b"{}");
        let other = custom_section("name", b"x");
        assert_eq!(
            split(&bundle(std::slice::from_ref(&manifest))).unwrap_err(),
            FormatError::Unsigned
        );
        assert_eq!(
            split(&bundle(&[manifest.clone(), signature_section(), other.clone()])).unwrap_err(),
            FormatError::SignatureNotLast
        );
        assert_eq!(
            split(&bundle(&[manifest.clone(), signature_section(), signature_section()])).unwrap_err(),
            FormatError::MultipleSignatures(2)
        );
        assert_eq!(
            split(&bundle(&[signature_section()])).unwrap_err(),
            FormatError::MissingManifest
        );
        assert_eq!(
            split(&bundle(&[manifest.clone(), other, signature_section()])).unwrap_err(),
            FormatError::ManifestMisplaced
        );
        let mut trailing = bundle(&[manifest.clone(), signature_section()]);
        trailing.extend_from_slice(b"junk");
        assert_eq!(split(&trailing).unwrap_err(), FormatError::TrailingBytes(4));
        let whole = bundle(&[manifest, signature_section()]);
        assert!(matches!(
            split(&whole[..whole.len() - 1]).unwrap_err(),
            FormatError::Truncated { .. }
        ));
        assert_eq!(split(b"\0asm\x01\0\0\0").unwrap_err(), FormatError::CoreModule);
        assert_eq!(split(b"hello world").unwrap_err(), FormatError::NotWasm);
    }
}
