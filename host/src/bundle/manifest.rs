//! The bundle manifest (`edgewise.manifest`, JSON) and its source, the
//! `edgewise.toml` each plugin crate keeps.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::assets::{MAX_ASSET_BYTES, MAX_ASSET_NAME_LEN, MAX_ASSETS, is_valid_asset_name};
use super::digest::sha256_hex;
use super::strict_de;
use crate::runtime::{Limits, World};

/// The manifest format this host writes and reads.
pub const MANIFEST_FORMAT: u32 = 1;
/// The WIT world (with version) of contract 0.1, the first; a manifest may
/// name any world of [`World::ALL`] (the runtime knows them).
pub const WORLD: &str = World::V0_1.name();
/// The WIT world of contract 0.2.
pub const WORLD_V0_2: &str = World::V0_2.name();

/// What a signed bundle says about itself. Every field is covered by the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Manifest format version: [`MANIFEST_FORMAT`].
    pub format: u32,
    /// Plugin name: lowercase letters, digits and `-`.
    pub name: String,
    /// Plugin version (semver); anti-rollback compares it.
    pub version: String,
    /// The WIT world the component targets: [`WORLD`] or [`WORLD_V0_2`].
    pub world: String,
    /// NATS subject filters the plugin reads.
    pub subscriptions: Vec<String>,
    /// Default configuration, overridable by the operator (a key given
    /// twice is refused).
    #[serde(default, deserialize_with = "strict_de::unique_map")]
    pub config: BTreeMap<String, String>,
    /// Resource limits the plugin asks for (an object, never an array).
    #[serde(default, deserialize_with = "strict_de::object")]
    pub limits: ManifestLimits,
    /// When the bundle was signed (RFC 3339).
    pub created: String,
    /// After this time (RFC 3339) the bundle is refused; `None` for never.
    #[serde(default)]
    pub expires: Option<String>,
    /// SHA-256 of the component bytes without the Edgewise sections, lowercase hex.
    pub code_sha256: String,
    /// The signed assets, in the order of their `edgewise.asset` sections.
    /// Left out of the JSON when there are none, so a bundle without assets
    /// is written exactly as before assets existed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assets: Vec<ManifestAsset>,
    /// The snapshot schemas of a 0.2 plugin: the one it writes and those it
    /// can resume from. Left out of the JSON when absent (a bundle without
    /// it is written exactly as before the field existed); a 0.2 plugin
    /// without it is never given a snapshot.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "strict_de::some"
    )]
    pub snapshot: Option<ManifestSnapshot>,
}

/// Most snapshot schemas a manifest may say a plugin reads.
pub const MAX_SNAPSHOT_READS: usize = 64;

/// The snapshot schemas a 0.2 plugin declares (`snapshot` in the manifest,
/// `[snapshot]` in its source): the `schema` its `snapshot` export labels
/// its state with, and every schema its `init` can resume from, so that a
/// new version says whether it may take an old version's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestSnapshot {
    /// The schema the plugin writes; one of `reads`.
    pub writes: u32,
    /// The schemas the plugin can read: non-empty, each once, at most
    /// [`MAX_SNAPSHOT_READS`].
    pub reads: Vec<u32>,
}

/// The JSON (and TOML) shape of [`ManifestSnapshot`]: its derive would also
/// read an array.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestSnapshotFields {
    writes: u32,
    reads: Vec<u32>,
}

impl<'de> Deserialize<'de> for ManifestSnapshot {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ManifestSnapshotFields { writes, reads } = strict_de::object(deserializer)?;
        Ok(ManifestSnapshot { writes, reads })
    }
}

/// One signed asset as the manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManifestAsset {
    /// Its name (see [`is_valid_asset_name`]).
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its bytes, lowercase hex.
    pub sha256: String,
}

impl ManifestAsset {
    /// The entry of an asset `name` with these bytes.
    pub fn of(name: &str, bytes: &[u8]) -> ManifestAsset {
        ManifestAsset {
            name: name.to_owned(),
            size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        }
    }
}

/// The JSON shape of [`ManifestAsset`]: its derive would also read an array.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestAssetFields {
    name: String,
    size: u64,
    sha256: String,
}

impl<'de> Deserialize<'de> for ManifestAsset {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ManifestAssetFields { name, size, sha256 } = strict_de::object(deserializer)?;
        Ok(ManifestAsset { name, size, sha256 })
    }
}

/// Resource limits: what a plugin's manifest asks for, and what the operator
/// sets over it in the device configuration (`[plugins.limits]`, same keys).
/// A key left out keeps the value below it: operator over manifest over the
/// host default ([`Limits::default`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestLimits {
    /// Largest linear memory, in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u32>,
    /// CPU deadline of one call, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_deadline_ms: Option<u32>,
    /// Alerts plus summaries one call may emit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs_per_call: Option<u32>,
    /// Alerts plus summaries per second (live runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs_per_second: Option<u32>,
    /// Largest single output, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_bytes: Option<u32>,
    /// Log bytes per second; beyond it lines are dropped and counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_bytes_per_second: Option<u32>,
    /// Largest total state (keys plus values), in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_bytes: Option<u32>,
    /// Distinct sensors the plugin is given at most; readings of further new
    /// sensors are dead-lettered by ingest (the plugin never sees them, so it
    /// cannot run out of memory for them). See [`DEFAULT_MAX_SENSORS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sensors: Option<u32>,
    /// Hours of silence after which the plugin forgets a sensor (keeps no
    /// state for it): ingest then frees that sensor's place among
    /// `max_sensors`, so that sensors that come and go (patients admitted
    /// and discharged, a CGM replaced every ten days) never fill it. Unset:
    /// the plugin keeps every sensor it was given, and a place is never
    /// freed while the host runs. See [`sensors_forgotten_after`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forgets_sensors_after_h: Option<u32>,
}

/// Distinct sensors per plugin when neither its manifest nor the operator
/// says otherwise: a ward or a cold store, not a city. A plugin keeps state
/// per sensor; its manifest should set what fits its memory limit.
pub const DEFAULT_MAX_SENSORS: usize = 10_000;

/// The sensor cap a plugin gets, resolved in the direction of
/// [`ManifestLimits::apply`]: the host default, then the manifest's value,
/// both lowered to the device's `ceiling` (`[host_limits] max_sensors`), then
/// the operator's (which the configuration already holds within the
/// ceiling). Also what the manifest asked when the ceiling lowered it, for a
/// warning. Kept apart from [`Limits`] because ingest enforces it, not the
/// runtime.
pub fn sensor_cap(
    manifest: &ManifestLimits,
    operator: &ManifestLimits,
    ceiling: Option<usize>,
) -> (usize, Option<usize>) {
    let asked = manifest.sensors();
    let ceiling = ceiling.unwrap_or(usize::MAX);
    let within = asked.unwrap_or(DEFAULT_MAX_SENSORS).min(ceiling);
    let lowered = asked.filter(|&asked| asked > ceiling);
    (operator.sensors().unwrap_or(within), lowered)
}

/// How long a sensor the plugin heard nothing from keeps its place among
/// `max_sensors`: the plugin's `forgets_sensors_after_h`, if it declares one.
/// A plugin that declares it promises to keep no state for a sensor silent
/// that long; ingest frees the place a little later still
/// (`bus::admission`), so the plugin never holds more than `max_sensors`
/// sensors. The operator may lengthen the manifest's (a plugin configured to
/// keep sensors longer) but not shorten it, nor give one to a plugin whose
/// manifest has none (it forgets no sensor): the manifest says what the
/// plugin does, and freeing places sooner than it forgets would let it hold
/// more sensors than its memory was measured for.
pub fn sensors_forgotten_after(manifest: &ManifestLimits, operator: &ManifestLimits) -> Option<Duration> {
    let hours = manifest
        .forgets_sensors_after_h
        .map(|declared| declared.max(operator.forgets_sensors_after_h.unwrap_or(declared)));
    hours.map(|hours| Duration::from_secs(u64::from(hours) * 3600))
}

impl ManifestLimits {
    /// The first key set to 0, if any: every limit must be positive.
    pub fn zero_key(&self) -> Option<&'static str> {
        [
            ("memory_mb", self.memory_mb),
            ("call_deadline_ms", self.call_deadline_ms),
            ("outputs_per_call", self.outputs_per_call),
            ("outputs_per_second", self.outputs_per_second),
            ("output_bytes", self.output_bytes),
            ("log_bytes_per_second", self.log_bytes_per_second),
            ("state_bytes", self.state_bytes),
            ("max_sensors", self.max_sensors),
            ("forgets_sensors_after_h", self.forgets_sensors_after_h),
        ]
        .into_iter()
        .find(|(_, value)| *value == Some(0))
        .map(|(key, _)| key)
    }

    /// `max_sensors` as a count, if set here.
    fn sensors(&self) -> Option<usize> {
        self.max_sensors.map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }

    /// `limits` with every key set here replacing its value.
    pub fn apply(&self, mut limits: Limits) -> Limits {
        let size = |n: u32| usize::try_from(n).unwrap_or(usize::MAX);
        if let Some(mb) = self.memory_mb {
            limits.max_memory_bytes = size(mb).saturating_mul(1 << 20);
        }
        if let Some(ms) = self.call_deadline_ms {
            limits.call_deadline = Duration::from_millis(u64::from(ms));
        }
        if let Some(n) = self.outputs_per_call {
            limits.max_outputs_per_call = size(n);
        }
        if let Some(n) = self.outputs_per_second {
            limits.max_outputs_per_second = Some(size(n));
        }
        if let Some(n) = self.output_bytes {
            limits.max_output_bytes = size(n);
        }
        if let Some(n) = self.log_bytes_per_second {
            limits.max_log_bytes_per_second = size(n);
        }
        if let Some(n) = self.state_bytes {
            limits.max_state_bytes = size(n);
        }
        limits
    }
}

/// Why a manifest is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Not valid JSON, or a field missing, unknown or of the wrong type.
    #[error("invalid manifest: {0}")]
    Invalid(#[source] serde_json::Error),
    /// The manifest source (`edgewise.toml`): not valid TOML, or a field
    /// missing, unknown or of the wrong type.
    #[error("invalid manifest: {0}")]
    InvalidSource(#[source] toml::de::Error),
    /// A field has a value the host does not accept.
    #[error("invalid manifest field `{field}`: {reason}")]
    Field {
        /// The field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl Manifest {
    /// The fields of the manifest JSON, in the order `edgewise sign` writes
    /// them (the order of [`Manifest`]'s fields and of `docs/bundle-format.md`).
    pub const FIELDS: [&'static str; 12] = [
        "format",
        "name",
        "version",
        "world",
        "subscriptions",
        "config",
        "limits",
        "created",
        "expires",
        "code_sha256",
        "assets",
        "snapshot",
    ];

    /// Parse and validate manifest JSON: one JSON object (serde's derive
    /// would also take the fields as an array, in declaration order), no key
    /// twice at any level.
    pub fn from_json(json: &[u8]) -> Result<Manifest, ManifestError> {
        let invalid = ManifestError::Invalid;
        let mut deserializer = serde_json::Deserializer::from_slice(json);
        let manifest: Manifest = strict_de::object(&mut deserializer).map_err(invalid)?;
        deserializer.end().map_err(invalid)?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// The manifest as the JSON stored in a bundle.
    pub fn to_json(&self) -> Vec<u8> {
        // Serialising a struct of strings, numbers and maps cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// One digest of the signed assets (their names and SHA-256, in order),
    /// for anti-rollback: `None` for a bundle without assets.
    pub fn assets_sha256(&self) -> Option<String> {
        if self.assets.is_empty() {
            return None;
        }
        let mut listed = String::new();
        for asset in &self.assets {
            listed.push_str(&asset.name);
            listed.push('\0');
            listed.push_str(&asset.sha256);
            listed.push('\n');
        }
        Some(super::sha256_hex(listed.as_bytes()))
    }

    /// The parsed semver version (valid after [`Manifest::from_json`]).
    pub fn semver(&self) -> Result<semver::Version, ManifestError> {
        semver::Version::parse(&self.version)
            .map_err(|e| field("version", format!("`{}` is not semver: {e}", self.version)))
    }

    /// The expiry time, if any.
    pub fn expires_at(&self) -> Result<Option<OffsetDateTime>, ManifestError> {
        self.expires
            .as_deref()
            .map(|text| {
                OffsetDateTime::parse(text, &Rfc3339)
                    .map_err(|e| field("expires", format!("`{text}` is not an RFC 3339 time: {e}")))
            })
            .transpose()
    }

    /// Check every field's value.
    pub fn validate(&self) -> Result<(), ManifestError> {
        if self.format != MANIFEST_FORMAT {
            return Err(field(
                "format",
                format!(
                    "{} is not supported (this host reads format {MANIFEST_FORMAT})",
                    self.format
                ),
            ));
        }
        validate_plugin_name(&self.name)?;
        self.semver()?;
        if self.world.is_empty() {
            return Err(field("world", "is empty".into()));
        }
        if self.subscriptions.is_empty() {
            return Err(field("subscriptions", "lists no subject".into()));
        }
        for subject in &self.subscriptions {
            validate_subject_filter(subject)
                .map_err(|reason| field("subscriptions", format!("`{subject}`: {reason}")))?;
        }
        OffsetDateTime::parse(&self.created, &Rfc3339)
            .map_err(|e| field("created", format!("`{}` is not an RFC 3339 time: {e}", self.created)))?;
        self.expires_at()?;
        if !is_lower_hex_digest(&self.code_sha256) {
            return Err(field("code_sha256", "must be 64 lowercase hex digits".into()));
        }
        if let Some(key) = self.limits.zero_key() {
            return Err(field("limits", format!("`{key}` must be greater than 0")));
        }
        validate_assets(&self.assets)?;
        self.snapshot
            .as_ref()
            .map_or(Ok(()), |snapshot| validate_snapshot(snapshot, &self.world))
    }
}

/// `snapshot`: a 0.2 plugin's only; `reads` non-empty, at most
/// [`MAX_SNAPSHOT_READS`], each schema once, `writes` among them.
fn validate_snapshot(snapshot: &ManifestSnapshot, world: &str) -> Result<(), ManifestError> {
    let refuse = |reason: String| Err(field("snapshot", reason));
    if world != WORLD_V0_2 {
        return refuse(format!(
            "only a plugin of the {WORLD_V0_2} world has snapshots, this one targets {world}"
        ));
    }
    let reads = &snapshot.reads;
    if reads.is_empty() {
        return refuse("reads no schema: `reads` must list at least the one it writes".into());
    }
    if reads.len() > MAX_SNAPSHOT_READS {
        return refuse(format!(
            "reads {} schemas, at most {MAX_SNAPSHOT_READS} are allowed",
            reads.len()
        ));
    }
    if let Some((index, schema)) = reads
        .iter()
        .enumerate()
        .find(|(index, schema)| reads[..*index].contains(schema))
    {
        return refuse(format!("`reads` lists schema {schema} twice (at {index})"));
    }
    if !reads.contains(&snapshot.writes) {
        return refuse(format!(
            "writes {}, which it does not read: `reads` must include it",
            snapshot.writes
        ));
    }
    Ok(())
}

/// The asset list: at most [`MAX_ASSETS`]; each name valid and listed once,
/// each size at most [`MAX_ASSET_BYTES`], each digest 64 lowercase hex digits.
fn validate_assets(assets: &[ManifestAsset]) -> Result<(), ManifestError> {
    validate_asset_count(assets.len())?;
    for (index, asset) in assets.iter().enumerate() {
        validate_asset_name(&asset.name)?;
        let name = &asset.name;
        if assets[..index].iter().any(|earlier| earlier.name == *name) {
            return Err(field("assets", format!("`{name}` is listed twice")));
        }
        if asset.size > MAX_ASSET_BYTES {
            return Err(field(
                "assets",
                format!(
                    "`{name}` is {} bytes, over the {MAX_ASSET_BYTES}-byte limit of an asset",
                    asset.size
                ),
            ));
        }
        if !is_lower_hex_digest(&asset.sha256) {
            return Err(field(
                "assets",
                format!("`{name}`: sha256 must be 64 lowercase hex digits"),
            ));
        }
    }
    Ok(())
}

/// At most [`MAX_ASSETS`] assets.
pub fn validate_asset_count(count: usize) -> Result<(), ManifestError> {
    if count > MAX_ASSETS {
        return Err(field(
            "assets",
            format!("lists {count} assets, at most {MAX_ASSETS} are allowed"),
        ));
    }
    Ok(())
}

/// An asset name as [`is_valid_asset_name`] wants it; the error shows the
/// name escaped (it may hold control characters).
pub fn validate_asset_name(name: &str) -> Result<(), ManifestError> {
    if is_valid_asset_name(name) {
        Ok(())
    } else {
        Err(field(
            "assets",
            format!(
                "`{}` is not an asset name: 1-{MAX_ASSET_NAME_LEN} characters `a`-`z`, `0`-`9`, `.`, `_` or `-`, starting with a letter or digit, without `..`",
                name.escape_debug()
            ),
        ))
    }
}

/// 64 characters, each `0`-`9` or `a`-`f`.
fn is_lower_hex_digest(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

fn field(field: &'static str, reason: String) -> ManifestError {
    ManifestError::Field { field, reason }
}

/// A plugin's name: lowercase letters, digits and `-`, 1 to 64 characters,
/// starting with a letter.
pub fn validate_plugin_name(name: &str) -> Result<(), ManifestError> {
    let ok = (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(field(
            "name",
            format!("`{name}` must be 1-64 lowercase letters, digits or `-`, starting with a letter"),
        ))
    }
}

/// A NATS subject filter: dot-separated non-empty tokens, `*` a whole token,
/// `>` only as the last token, no whitespace.
pub fn validate_subject_filter(subject: &str) -> Result<(), String> {
    if subject.is_empty() {
        return Err("empty subject".into());
    }
    let tokens: Vec<&str> = subject.split('.').collect();
    for (index, token) in tokens.iter().enumerate() {
        if token.is_empty() {
            return Err("empty token".into());
        }
        if token.chars().any(char::is_whitespace) {
            return Err("whitespace in subject".into());
        }
        if token.contains('*') && *token != "*" {
            return Err("`*` must be a whole token".into());
        }
        if token.contains('>') && (*token != ">" || index + 1 != tokens.len()) {
            return Err("`>` must be the whole last token".into());
        }
    }
    Ok(())
}

/// A plugin configuration value written in TOML, as the string a plugin
/// receives: strings as they are, numbers and booleans as written; `None`
/// for arrays, tables and dates.
pub fn config_value_text(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `text` (any RFC 3339 form the reference parser reads) in the canonical
/// form docs/bundle-format.md asks writers for: UTC, `T`, `Z`, at most nine
/// fraction digits (none when whole seconds). An offset is converted, not
/// dropped: the instant is the same.
fn canonical_time(text: &str) -> Result<String, ManifestError> {
    let instant = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| field("expires", format!("`{text}` is not an RFC 3339 time: {e}")))?;
    instant
        .to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| field("expires", format!("`{text}` cannot be written as RFC 3339: {e}")))
}

/// A plugin crate's `edgewise.toml`: what the author declares; `edgewise sign`
/// adds `format`, `world`, `created` and `code_sha256`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestSource {
    /// Plugin name.
    pub name: String,
    /// Plugin version (semver).
    pub version: String,
    /// NATS subject filters.
    pub subscriptions: Vec<String>,
    /// Default configuration; values may be TOML strings, numbers or booleans.
    #[serde(default, deserialize_with = "strict_de::unique_map")]
    pub config: BTreeMap<String, toml::Value>,
    /// Resource limits.
    #[serde(default, deserialize_with = "strict_de::object")]
    pub limits: ManifestLimits,
    /// Optional expiry (RFC 3339): a string, or a TOML date-time written
    /// without quotes, taken as its text.
    #[serde(default, deserialize_with = "text_or_datetime")]
    pub expires: Option<String>,
    /// Signed assets: name to file, the path relative to the directory of
    /// the `edgewise.toml` (see [`super::read_assets`]).
    #[serde(default, deserialize_with = "strict_de::unique_map")]
    pub assets: BTreeMap<String, PathBuf>,
    /// The snapshot schemas (`[snapshot]`, a 0.2 plugin only).
    #[serde(default, deserialize_with = "strict_de::some")]
    pub snapshot: Option<ManifestSnapshot>,
}

/// A time as `edgewise.toml` may give it: a string, or a TOML date-time
/// (`expires = 2030-01-01T00:00:00Z`, the natural way to write one in TOML),
/// as its text; either is then checked as RFC 3339 by
/// [`ManifestSource::into_manifest_for`].
fn text_or_datetime<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Text(String),
        DateTime(toml::value::Datetime),
    }
    match Given::deserialize(deserializer) {
        Ok(Given::Text(text)) => Ok(Some(text)),
        Ok(Given::DateTime(datetime)) => Ok(Some(datetime.to_string())),
        Err(_) => Err(serde::de::Error::custom(
            "expected an RFC 3339 time such as 2030-01-01T00:00:00Z, as a string or a TOML date-time",
        )),
    }
}

impl ManifestSource {
    /// Parse `edgewise.toml` text.
    pub fn from_toml(text: &str) -> Result<ManifestSource, ManifestError> {
        toml::from_str(text).map_err(ManifestError::InvalidSource)
    }

    /// The manifest for a component with digest `code_sha256`, created at
    /// `created`, carrying `assets` (their entries, in section order), for
    /// the world [`WORLD`] ([`super::sign`] names the component's own with
    /// [`ManifestSource::into_manifest_for`]).
    pub fn into_manifest(
        self,
        code_sha256: String,
        created: OffsetDateTime,
        assets: Vec<ManifestAsset>,
    ) -> Result<Manifest, ManifestError> {
        self.into_manifest_for(WORLD, code_sha256, created, assets)
    }

    /// [`ManifestSource::into_manifest`] for a component that targets
    /// `world`: validated for it (only a 0.2 plugin declares `snapshot`).
    pub fn into_manifest_for(
        self,
        world: &str,
        code_sha256: String,
        created: OffsetDateTime,
        assets: Vec<ManifestAsset>,
    ) -> Result<Manifest, ManifestError> {
        let mut config = BTreeMap::new();
        for (key, value) in self.config {
            let text = config_value_text(&value).ok_or_else(|| {
                field(
                    "config",
                    format!("`{key}` = {value}: values must be strings, numbers or booleans"),
                )
            })?;
            config.insert(key, text);
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            name: self.name,
            version: self.version,
            world: world.to_owned(),
            subscriptions: self.subscriptions,
            config,
            limits: self.limits,
            created: created.format(&Rfc3339).map_err(|e| field("created", e.to_string()))?,
            expires: self.expires.as_deref().map(canonical_time).transpose()?,
            code_sha256,
            assets,
            snapshot: self.snapshot,
        };
        manifest.validate()?;
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> &'static str {
        r#"
name = "glucose-monitor"
version = "0.1.0"
subscriptions = ["sensors.cgm.>"]
expires = "2030-01-01T00:00:00Z"
[config]
repeat = "30m"
low = 70
[limits]
memory_mb = 64
call_deadline_ms = 1000
"#
    }

    #[test]
    fn source_becomes_a_valid_manifest_that_round_trips() {
        let manifest = ManifestSource::from_toml(source())
            .unwrap()
            .into_manifest("ab".repeat(32), OffsetDateTime::UNIX_EPOCH, Vec::new())
            .unwrap();
        assert_eq!(manifest.world, WORLD);
        assert_eq!(manifest.config["low"], "70");
        assert_eq!(manifest.created, "1970-01-01T00:00:00Z");
        assert_eq!(Manifest::from_json(&manifest.to_json()).unwrap(), manifest);
    }

    #[test]
    fn field_errors_name_the_field() {
        let good = ManifestSource::from_toml(source())
            .unwrap()
            .into_manifest("ab".repeat(32), OffsetDateTime::UNIX_EPOCH, Vec::new())
            .unwrap();
        type Mutation = fn(&mut Manifest);
        let cases: [(Mutation, &str); 10] = [
            (|m| m.name = "Glucose".into(), "name"),
            (|m| m.version = "1.0".into(), "version"),
            (|m| m.subscriptions.clear(), "subscriptions"),
            (|m| m.subscriptions = vec!["a.>.b".into()], "subscriptions"),
            (|m| m.subscriptions = vec!["a..b".into()], "subscriptions"),
            (|m| m.created = "yesterday".into(), "created"),
            (|m| m.expires = Some("never".into()), "expires"),
            (|m| m.code_sha256 = "AB".repeat(32), "code_sha256"),
            (|m| m.format = 2, "format"),
            (|m| m.limits.memory_mb = Some(0), "limits"),
        ];
        for (mutate, expected_field) in cases {
            let mut manifest = good.clone();
            mutate(&mut manifest);
            match manifest.validate() {
                Err(ManifestError::Field { field, .. }) => assert_eq!(field, expected_field),
                other => panic!("expected an error on `{expected_field}`, got {other:?}"),
            }
        }
    }

    #[test]
    fn operator_limits_override_manifest_limits_over_defaults() {
        let manifest = ManifestLimits {
            memory_mb: Some(32),
            call_deadline_ms: Some(500),
            ..ManifestLimits::default()
        };
        let operator = ManifestLimits {
            call_deadline_ms: Some(100),
            outputs_per_second: Some(7),
            ..ManifestLimits::default()
        };
        let limits = operator.apply(manifest.apply(Limits::default()));
        assert_eq!(limits.max_memory_bytes, 32 << 20);
        assert_eq!(limits.call_deadline, Duration::from_millis(100));
        assert_eq!(limits.max_outputs_per_second, Some(7));
        assert_eq!(limits.max_state_bytes, Limits::default().max_state_bytes);
        let zero = ManifestLimits {
            state_bytes: Some(0),
            ..ManifestLimits::default()
        };
        assert_eq!(zero.zero_key(), Some("state_bytes"));
        let zero = ManifestLimits {
            max_sensors: Some(0),
            ..ManifestLimits::default()
        };
        assert_eq!(zero.zero_key(), Some("max_sensors"));
    }

    #[test]
    fn the_sensor_cap_resolves_host_default_then_manifest_then_operator_under_the_ceiling() {
        let limits = |max_sensors| ManifestLimits {
            max_sensors,
            ..ManifestLimits::default()
        };
        let (manifest, operator, none) = (limits(Some(2_000)), limits(Some(50)), limits(None));
        assert_eq!(sensor_cap(&none, &none, None), (10_000, None));
        assert_eq!(sensor_cap(&manifest, &none, None), (2_000, None));
        assert_eq!(sensor_cap(&manifest, &operator, None), (50, None));
        assert_eq!(sensor_cap(&none, &operator, None), (50, None));
        // A device's ceiling lowers the manifest's value (reported) and the default (not).
        assert_eq!(sensor_cap(&manifest, &none, Some(500)), (500, Some(2_000)));
        assert_eq!(sensor_cap(&none, &none, Some(500)), (500, None));
        assert_eq!(sensor_cap(&manifest, &none, Some(2_000)), (2_000, None));
        assert_eq!(sensor_cap(&manifest, &operator, Some(500)), (50, Some(2_000)));
    }

    /// The manifest says how soon the plugin forgets a silent sensor: an
    /// operator may lengthen it (a plugin configured to keep them longer),
    /// never shorten it, or places would be freed while the plugin still
    /// held their sensors.
    #[test]
    fn the_operator_may_lengthen_the_time_a_plugin_keeps_silent_sensors_never_shorten_it() {
        let limits = |forgets_sensors_after_h| ManifestLimits {
            forgets_sensors_after_h,
            ..ManifestLimits::default()
        };
        let hours = |h: u64| Some(Duration::from_secs(h * 3600));
        let (week, day, month, none) = (limits(Some(168)), limits(Some(24)), limits(Some(720)), limits(None));
        assert_eq!(sensors_forgotten_after(&none, &none), None);
        assert_eq!(sensors_forgotten_after(&week, &none), hours(168));
        assert_eq!(sensors_forgotten_after(&week, &month), hours(720));
        assert_eq!(sensors_forgotten_after(&week, &day), hours(168));
        assert_eq!(
            sensors_forgotten_after(&none, &day),
            None,
            "the plugin forgets no sensor: the operator cannot make it"
        );
        let zero = limits(Some(0));
        assert_eq!(zero.zero_key(), Some("forgets_sensors_after_h"));
    }

    #[test]
    fn missing_and_unknown_fields_are_invalid() {
        let error = Manifest::from_json(br#"{"format":1,"name":"x"}"#).unwrap_err();
        assert!(
            matches!(error, ManifestError::Invalid(_)) && error.to_string().contains("missing field"),
            "{error}"
        );
        let error = ManifestSource::from_toml("name = \"x\"\nversion = \"1.0.0\"\nsubscriptions = []\nextra = 1\n")
            .unwrap_err();
        assert!(error.to_string().contains("unknown field `extra`"), "{error}");
    }

    /// serde's derive reads a struct from a JSON array too: the manifest,
    /// and its `limits`, must be objects.
    #[test]
    fn a_manifest_or_its_limits_written_as_an_array_is_invalid() {
        // With an asset and snapshot schemas, so that every field is written.
        let manifest = ManifestSource::from_toml(&v0_2_source())
            .unwrap()
            .into_manifest_for(
                WORLD_V0_2,
                "ab".repeat(32),
                OffsetDateTime::UNIX_EPOCH,
                vec![ManifestAsset::of("lut.bin", b"table")],
            )
            .unwrap();
        let json = String::from_utf8(manifest.to_json()).unwrap();
        // Manifest::FIELDS is the order sign writes.
        let positions: Vec<usize> = Manifest::FIELDS
            .iter()
            .map(|f| json.find(&format!("\"{f}\":")).unwrap())
            .collect();
        assert!(positions.is_sorted(), "{json}");
        let value = serde_json::to_value(&manifest).unwrap();
        let array = serde_json::Value::Array(Manifest::FIELDS.iter().map(|f| value[f].clone()).collect());
        let error = Manifest::from_json(array.to_string().as_bytes()).unwrap_err();
        assert!(error.to_string().contains("expected an object"), "{error}");
        let mut limits_as_array = value.clone();
        limits_as_array["limits"] = serde_json::json!([64, 1000]);
        let error = Manifest::from_json(limits_as_array.to_string().as_bytes()).unwrap_err();
        assert!(error.to_string().contains("expected an object"), "{error}");
        // An asset entry too (serde's derive would read it in field order).
        let mut asset_as_array = value.clone();
        let entry = asset_as_array["assets"][0].clone();
        asset_as_array["assets"][0] = serde_json::json!([entry["name"], entry["size"], entry["sha256"]]);
        let error = Manifest::from_json(asset_as_array.to_string().as_bytes()).unwrap_err();
        assert!(error.to_string().contains("expected an object"), "{error}");
        let mut asset_extra_field = value.clone();
        asset_extra_field["assets"][0]["path"] = serde_json::json!("/etc/passwd");
        let error = Manifest::from_json(asset_extra_field.to_string().as_bytes()).unwrap_err();
        assert!(error.to_string().contains("unknown field `path`"), "{error}");
        // The object itself still parses, with trailing whitespace, not trailing data.
        let mut text = value.to_string();
        text.push('\n');
        assert_eq!(Manifest::from_json(text.as_bytes()).unwrap(), manifest);
        text.push_str("{}");
        assert!(Manifest::from_json(text.as_bytes()).is_err());
    }

    #[test]
    fn a_key_given_twice_is_invalid_in_the_manifest_and_its_source() {
        let manifest = ManifestSource::from_toml(source())
            .unwrap()
            .into_manifest("ab".repeat(32), OffsetDateTime::UNIX_EPOCH, Vec::new())
            .unwrap();
        let json = String::from_utf8(manifest.to_json()).unwrap();
        // serde_json alone keeps the last value of `config.low`.
        let twice = json.replace(r#""low":"70""#, r#""low":"70","low":"40""#);
        assert_ne!(twice, json);
        let error = Manifest::from_json(twice.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("duplicate key `low`"), "{error}");
        // A top-level field twice: serde's derive refuses it already.
        let twice = json.replace(r#""version":"0.1.0""#, r#""version":"0.1.0","version":"9.0.0""#);
        let error = Manifest::from_json(twice.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("duplicate field `version`"), "{error}");
        // TOML forbids a key twice; toml 0.9 refuses it (and a table twice).
        let error = ManifestSource::from_toml(&source().replace("low = 70", "low = 70\nlow = 40")).unwrap_err();
        assert!(error.to_string().contains("duplicate key"), "{error}");
        let error = ManifestSource::from_toml(&format!("{}\n[config]\nother = 1\n", source())).unwrap_err();
        assert!(
            error.to_string().contains("duplicate key") || error.to_string().contains("redefin"),
            "{error}"
        );
    }

    fn v0_2_source() -> String {
        format!("{}\n[snapshot]\nwrites = 2\nreads = [1, 2]\n", source())
    }

    fn v0_2_manifest(text: &str) -> Result<Manifest, ManifestError> {
        ManifestSource::from_toml(text)?.into_manifest_for(
            WORLD_V0_2,
            "ab".repeat(32),
            OffsetDateTime::UNIX_EPOCH,
            Vec::new(),
        )
    }

    #[test]
    fn snapshot_schemas_come_from_the_source_and_round_trip_last_in_the_json() {
        let manifest = v0_2_manifest(&v0_2_source()).unwrap();
        assert_eq!(
            manifest.snapshot,
            Some(ManifestSnapshot {
                writes: 2,
                reads: vec![1, 2]
            })
        );
        let json = String::from_utf8(manifest.to_json()).unwrap();
        assert!(json.ends_with(r#","snapshot":{"writes":2,"reads":[1,2]}}"#), "{json}");
        assert_eq!(Manifest::from_json(json.as_bytes()).unwrap(), manifest);
        // Absent: not written at all (a bundle without it is byte for byte
        // what was signed before the field existed).
        let plain = v0_2_manifest(source()).unwrap();
        assert_eq!(plain.snapshot, None);
        assert!(!String::from_utf8(plain.to_json()).unwrap().contains("snapshot"));
    }

    #[test]
    fn snapshot_schemas_are_refused_outside_the_rules() {
        let too_many = format!(
            "[{}]",
            (0..=MAX_SNAPSHOT_READS as u32)
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        let cases = [
            ("writes = 2\nreads = []", "reads no schema"),
            ("writes = 2\nreads = [1, 2, 1]", "schema 1 twice"),
            ("writes = 3\nreads = [1, 2]", "writes 3, which it does not read"),
            (&*format!("writes = 0\nreads = {too_many}"), "at most 64"),
        ];
        for (table, expected) in cases {
            let text = format!("{}\n[snapshot]\n{table}\n", source());
            let error = v0_2_manifest(&text).unwrap_err();
            assert!(
                matches!(error, ManifestError::Field { field: "snapshot", .. }) && error.to_string().contains(expected),
                "{table}: {error}"
            );
        }
        // Only the 0.2 world has snapshots.
        let error = ManifestSource::from_toml(&v0_2_source())
            .unwrap()
            .into_manifest("ab".repeat(32), OffsetDateTime::UNIX_EPOCH, Vec::new())
            .unwrap_err();
        assert!(
            matches!(error, ManifestError::Field { field: "snapshot", .. }) && error.to_string().contains(WORLD_V0_2),
            "{error}"
        );
        // Strict shapes: an object with exactly its two keys, never an
        // array, never `null` (absence is written one way).
        let json = String::from_utf8(v0_2_manifest(&v0_2_source()).unwrap().to_json()).unwrap();
        let good = r#""snapshot":{"writes":2,"reads":[1,2]}"#;
        for (bad, expected) in [
            (r#""snapshot":[2,[1,2]]"#, "expected an object"),
            (r#""snapshot":null"#, "expected an object"),
            (
                r#""snapshot":{"writes":2,"reads":[1,2],"from":[0]}"#,
                "unknown field `from`",
            ),
            (r#""snapshot":{"writes":2}"#, "missing field `reads`"),
            (r#""snapshot":{"writes":-1,"reads":[1,2]}"#, "invalid value"),
            (
                r#""snapshot":{"writes":2,"writes":2,"reads":[1,2]}"#,
                "duplicate field `writes`",
            ),
        ] {
            let error = Manifest::from_json(json.replace(good, bad).as_bytes()).unwrap_err();
            assert!(error.to_string().contains(expected), "{bad}: {error}");
        }
        let error = ManifestSource::from_toml(&format!(
            "{}\n[snapshot]\nwrites = 1\nreads = [1]\nextra = 1\n",
            source()
        ))
        .unwrap_err();
        assert!(error.to_string().contains("unknown field `extra`"), "{error}");
    }

    #[test]
    fn sign_writes_expires_in_canonical_utc_form() {
        let cases = [
            ("2030-01-01T00:00:00Z", "2030-01-01T00:00:00Z"),
            ("2030-01-01t00:00:00z", "2030-01-01T00:00:00Z"),
            ("2030-01-01 00:00:00Z", "2030-01-01T00:00:00Z"),
            ("2030-01-01T02:00:00+02:00", "2030-01-01T00:00:00Z"),
            ("2029-12-31T23:30:00.500-00:30", "2030-01-01T00:00:00.5Z"),
        ];
        for (written, canonical) in cases {
            let text = source().replace("2030-01-01T00:00:00Z", written);
            let manifest = ManifestSource::from_toml(&text)
                .unwrap()
                .into_manifest("ab".repeat(32), OffsetDateTime::UNIX_EPOCH, Vec::new())
                .unwrap();
            assert_eq!(manifest.expires.as_deref(), Some(canonical), "{written}");
        }
        // Written without quotes, as TOML date-times: the same.
        for (written, canonical) in cases.iter().filter(|(w, _)| w.contains(['Z', '+', '-'])) {
            let text = source().replace("\"2030-01-01T00:00:00Z\"", written);
            let manifest = ManifestSource::from_toml(&text)
                .unwrap_or_else(|e| panic!("{written}: {e}"))
                .into_manifest("ab".repeat(32), OffsetDateTime::UNIX_EPOCH, Vec::new())
                .unwrap();
            assert_eq!(manifest.expires.as_deref(), Some(*canonical), "{written}");
        }
        // A TOML date without a time or offset is no instant.
        let text = source().replace("\"2030-01-01T00:00:00Z\"", "2030-01-01");
        let error = ManifestSource::from_toml(&text)
            .unwrap()
            .into_manifest("ab".repeat(32), OffsetDateTime::UNIX_EPOCH, Vec::new())
            .unwrap_err();
        assert!(
            error.to_string().contains("`2030-01-01` is not an RFC 3339 time"),
            "{error}"
        );
        let text = source().replace("\"2030-01-01T00:00:00Z\"", "[1]");
        let error = ManifestSource::from_toml(&text).unwrap_err();
        assert!(error.to_string().contains("expected an RFC 3339 time"), "{error}");
        let text = source().replace("2030-01-01T00:00:00Z", "next year");
        let error = ManifestSource::from_toml(&text)
            .unwrap()
            .into_manifest("ab".repeat(32), OffsetDateTime::UNIX_EPOCH, Vec::new())
            .unwrap_err();
        assert!(
            matches!(error, ManifestError::Field { field: "expires", .. }),
            "{error}"
        );
    }
}
