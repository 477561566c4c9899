//! What the cloud and a device say to each other about deployments: the
//! desired plugin set of a device or a group (written by operators), and the
//! state a device reports (written by the device). Both are JSON documents in
//! JetStream key-value buckets; bundles are objects named by their digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The Object Store bucket of bundles, each named by its digest ([`bundle_name`]).
pub const BUNDLES_BUCKET: &str = "edgewise-bundles";
/// The key-value bucket of desired plugin sets (`device.<id>`, `group.<name>`).
pub const DESIRED_BUCKET: &str = "edgewise-desired";
/// The key-value bucket of what each device reports (`device.<id>`).
pub const REPORTED_BUCKET: &str = "edgewise-reported";

/// A desired or reported document larger than this is refused unread.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;
/// Plugins in one desired set at most.
pub const MAX_PLUGINS: usize = 64;
/// Phase changes kept per plugin in a report.
pub const HISTORY_KEPT: usize = 12;

/// The key of a device's desired set (and of its report).
pub fn device_key(device: &str) -> String {
    format!("device.{device}")
}

/// The key of a group's desired set.
pub fn group_key(group: &str) -> String {
    format!("group.{group}")
}

/// Whether `name` may be a device id or a group name in a key: what NATS
/// subjects and key-value keys both accept, one token.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The object name of a bundle: `sha256-<hex of the whole bundle file>`.
pub fn bundle_name(bundle: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bundle);
    format!("sha256-{}", hex::encode(digest.as_ref()))
}

/// The SHA-256 an object name promises, if it is a bundle name.
pub fn digest_of_name(name: &str) -> Option<[u8; 32]> {
    let hex = name.strip_prefix("sha256-")?;
    let mut digest = [0u8; 32];
    hex::decode_to_slice(hex, &mut digest).ok()?;
    Some(digest)
}

/// The desired plugin set of one key (a device or a group). Each write is a
/// new generation: the key-value revision of the entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Desired {
    /// By plugin name.
    pub plugins: BTreeMap<String, DesiredPlugin>,
    /// Who wrote it last (free text from the operator's CLI).
    #[serde(default)]
    pub written_by: String,
    /// When, in ms since the epoch.
    #[serde(default)]
    pub written_ms: i64,
}

/// One plugin of a desired set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DesiredPlugin {
    /// The bundle's object name ([`bundle_name`]).
    pub bundle: String,
    /// The version its manifest says (for people; the device believes only
    /// what it verifies).
    pub version: String,
    /// The bundle's size in bytes (for people; the device caps what it fetches).
    pub size: u64,
    /// Configuration over the manifest's defaults.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    /// When it was pushed, ms since the epoch: what tells a push of the same
    /// bundle again (a deployment to try again) from a write of the set that
    /// changed another plugin (nothing to do for this one).
    #[serde(default)]
    pub pushed_ms: i64,
}

impl Desired {
    /// Parse a stored document, refusing one too large or malformed.
    pub fn parse(bytes: &[u8]) -> Result<Desired, String> {
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("{} bytes, over the {MAX_DOCUMENT_BYTES} allowed", bytes.len()));
        }
        let desired: Desired = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if desired.plugins.len() > MAX_PLUGINS {
            return Err(format!(
                "{} plugins, over the {MAX_PLUGINS} allowed",
                desired.plugins.len()
            ));
        }
        for (name, plugin) in &desired.plugins {
            if !valid_name(name) {
                return Err(format!("`{name}` is not a plugin name"));
            }
            if digest_of_name(&plugin.bundle).is_none() {
                return Err(format!("plugin `{name}`: `{}` is not a bundle name", plugin.bundle));
            }
        }
        Ok(desired)
    }

    /// The stored form.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

/// Where a desired plugin comes from: its key and that key's generation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// `device.<id>` or `group.<name>`.
    pub key: String,
    /// The key-value revision of the entry.
    pub generation: u64,
}

/// What a device should run: its groups' sets in the order it lists them,
/// then its own set, each later one replacing a plugin of the same name.
pub fn effective(layers: &[(Origin, Desired)]) -> BTreeMap<String, (Origin, DesiredPlugin)> {
    let mut plugins = BTreeMap::new();
    for (origin, desired) in layers {
        for (name, plugin) in &desired.plugins {
            plugins.insert(name.clone(), (origin.clone(), plugin.clone()));
        }
    }
    plugins
}

/// A deployment's phase on a device. Never conflated: a bundle is received,
/// then verified or refused, then running, then healthy once it passed its
/// probation, or failed and rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Fetched, its digest checked.
    Received,
    /// Signature, trust and anti-rollback checked.
    Verified,
    /// Not verified (the reason says why); nothing changed on the device.
    Refused,
    /// Started; on probation.
    Running,
    /// Passed its probation; recorded for anti-rollback.
    Healthy,
    /// Could not run (the reason says why), with no earlier version to go back to.
    Failed,
    /// Failed (the reason says how) and the earlier version runs again, with its state.
    RolledBack,
    /// Removed from the device (undeployed).
    Removed,
    /// Undeployed, but it stays: it overrides a plugin of the device's
    /// configuration file, which the cloud never takes away (the reason
    /// says what runs, and why).
    Kept,
}

impl Phase {
    /// Its name, as reports and the fleet view show it.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Received => "received",
            Phase::Verified => "verified",
            Phase::Refused => "refused",
            Phase::Running => "running",
            Phase::Healthy => "healthy",
            Phase::Failed => "failed",
            Phase::RolledBack => "rolled-back",
            Phase::Removed => "removed",
            Phase::Kept => "kept",
        }
    }

    /// Whether the deployment has ended, well or not.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Phase::Refused | Phase::Healthy | Phase::Failed | Phase::RolledBack | Phase::Removed | Phase::Kept
        )
    }

    /// Whether the deployment ended without the new version running.
    pub fn is_failure(self) -> bool {
        matches!(self, Phase::Refused | Phase::Failed | Phase::RolledBack)
    }
}

/// What a device reports: written on every phase change and periodically.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Reported {
    /// The device id.
    pub device: String,
    /// Its groups, in the order they apply.
    pub groups: Vec<String>,
    /// The host's version.
    pub host_version: String,
    /// When it last wrote this report, ms since the epoch (its wall clock).
    pub last_seen_ms: i64,
    /// The generation of each desired key it last read.
    pub generations: BTreeMap<String, u64>,
    /// By plugin name: what runs and the latest deployment.
    pub plugins: BTreeMap<String, ReportedPlugin>,
    /// The last problem of the deployment machinery itself (fetching, the
    /// buckets), if any.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// One plugin on a device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportedPlugin {
    /// The version that runs now (empty: none).
    pub running_version: String,
    /// `sha256:<hex>` of the code that runs now.
    pub running_digest: String,
    /// The bundle that runs now (its object name; empty for one from the
    /// device's own configuration file).
    pub running_bundle: String,
    /// The latest deployment of this plugin, if any.
    pub deployment: Option<Deployment>,
    /// The latest deployment that failed (refused, failed, rolled back),
    /// kept when later ones (a return to what ran before) replace it as
    /// `deployment`: which version failed on this device, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Deployment>,
}

/// One deployment of a plugin to a device, and its phases.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    /// The desired key it came from.
    pub key: String,
    /// That key's generation.
    pub generation: u64,
    /// The bundle's object name.
    pub bundle: String,
    /// The version (once verified; the desired set's claim before).
    pub version: String,
    /// The phase now.
    pub phase: Phase,
    /// Why, for `refused`, `failed` and `rolled-back` (and notes for others).
    #[serde(default)]
    pub reason: Option<String>,
    /// When the phase began, ms since the epoch.
    pub since_ms: i64,
    /// The phases so far, oldest first (at most [`HISTORY_KEPT`]).
    pub history: Vec<Change>,
    /// The desired entry's push time ([`DesiredPlugin::pushed_ms`]).
    #[serde(default)]
    pub pushed_ms: i64,
    /// For a swap: how long the plugin's input waited for it, in µs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_us: Option<u64>,
}

/// A phase change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The phase entered.
    pub phase: Phase,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// Why, if said.
    #[serde(default)]
    pub reason: Option<String>,
}

/// The reason a device before `superseded` was its own outcome gave a
/// deployment a newer one replaced during its probation, which it reported
/// `rolled-back`. It did not fail: [`Deployment::was_superseded`] tells it
/// apart, so that readers do not show those reports as failures.
pub const SUPERSEDED_BY_AN_OLDER_DEVICE: &str = "superseded by a newer deployment during its probation";

impl Deployment {
    /// Whether this is a deployment a newer one replaced during its
    /// probation, as a device of an earlier version reported it (phase
    /// `rolled-back`, reason [`SUPERSEDED_BY_AN_OLDER_DEVICE`]); a device of
    /// this version does not report such a deployment at all. Not a failure.
    pub fn was_superseded(&self) -> bool {
        self.phase == Phase::RolledBack && self.reason.as_deref() == Some(SUPERSEDED_BY_AN_OLDER_DEVICE)
    }

    /// A deployment just received from `origin`.
    pub fn new(origin: &Origin, plugin: &DesiredPlugin, at_ms: i64) -> Deployment {
        let mut deployment = Deployment {
            key: origin.key.clone(),
            generation: origin.generation,
            bundle: plugin.bundle.clone(),
            version: plugin.version.clone(),
            phase: Phase::Received,
            reason: None,
            since_ms: at_ms,
            history: Vec::new(),
            pushed_ms: plugin.pushed_ms,
            pause_us: None,
        };
        deployment.history.push(Change {
            phase: Phase::Received,
            at_ms,
            reason: None,
        });
        deployment
    }

    /// Whether this is the deployment of `plugin`'s entry under `key` (the
    /// same push: a later write of the set for another plugin keeps it).
    pub fn is_of(&self, key: &str, plugin: &DesiredPlugin) -> bool {
        self.key == key && self.bundle == plugin.bundle && self.pushed_ms == plugin.pushed_ms
    }

    /// Enter `phase`, with `reason`.
    pub fn enter(&mut self, phase: Phase, reason: Option<String>, at_ms: i64) {
        self.phase = phase;
        self.reason = reason.clone();
        self.since_ms = at_ms;
        self.history.push(Change { phase, at_ms, reason });
        if self.history.len() > HISTORY_KEPT {
            let excess = self.history.len() - HISTORY_KEPT;
            self.history.drain(..excess);
        }
    }
}

impl Reported {
    /// Parse a stored report, refusing one too large or malformed.
    pub fn parse(bytes: &[u8]) -> Result<Reported, String> {
        if bytes.len() > MAX_DOCUMENT_BYTES {
            return Err(format!("{} bytes, over the {MAX_DOCUMENT_BYTES} allowed", bytes.len()));
        }
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    /// Parse the report stored under `key`, refusing one that names
    /// another device than the key's. Each device may write its own key
    /// only (docs/operators.md, "NATS permissions"); a report is believed
    /// for that device alone, so that one device cannot speak for another
    /// (show it alive in `fleet` and the dashboard, or put it in a group a
    /// rollout deploys to).
    pub fn parse_under(key: &str, bytes: &[u8]) -> Result<Reported, String> {
        let report = Reported::parse(bytes)?;
        let own = device_key(&report.device);
        if own != key {
            return Err(format!(
                "it reports device `{}`, whose key is `{own}`: a report speaks for its key's device only",
                report.device.escape_debug()
            ));
        }
        Ok(report)
    }

    /// The stored form.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin(bundle: &str) -> DesiredPlugin {
        DesiredPlugin {
            bundle: bundle.to_owned(),
            version: "1.0.0".to_owned(),
            size: 1,
            config: BTreeMap::new(),
            pushed_ms: 0,
        }
    }

    #[test]
    fn a_device_key_replaces_its_groups_plugin_of_the_same_name() {
        let a = format!("sha256-{}", "a".repeat(64));
        let b = format!("sha256-{}", "b".repeat(64));
        let group = Desired {
            plugins: [("gm".to_owned(), plugin(&a)), ("th".to_owned(), plugin(&a))].into(),
            ..Desired::default()
        };
        let device = Desired {
            plugins: [("gm".to_owned(), plugin(&b))].into(),
            ..Desired::default()
        };
        let origin = |key: &str, generation| Origin {
            key: key.to_owned(),
            generation,
        };
        let set = effective(&[(origin("group.ward", 3), group), (origin("device.d1", 7), device)]);
        assert_eq!(set["gm"].1.bundle, b);
        assert_eq!(set["gm"].0.generation, 7);
        assert_eq!(set["th"].1.bundle, a);
        assert_eq!(set["th"].0.key, "group.ward");
    }

    #[test]
    fn malformed_or_huge_desired_sets_are_refused() {
        assert!(Desired::parse(b"{").is_err());
        assert!(Desired::parse(&vec![b' '; MAX_DOCUMENT_BYTES + 1]).is_err());
        let bad_bundle = r#"{"plugins":{"gm":{"bundle":"../../etc","version":"1","size":1}}}"#;
        assert!(
            Desired::parse(bad_bundle.as_bytes())
                .unwrap_err()
                .contains("not a bundle name")
        );
        let bad_name = format!(
            r#"{{"plugins":{{"a.b":{{"bundle":"sha256-{}","version":"1","size":1}}}}}}"#,
            "0".repeat(64)
        );
        assert!(
            Desired::parse(bad_name.as_bytes())
                .unwrap_err()
                .contains("not a plugin name")
        );
    }

    #[test]
    fn a_report_is_believed_only_for_the_device_of_its_key() {
        let report = Reported {
            device: "dev-2".to_owned(),
            ..Reported::default()
        };
        let bytes = report.to_bytes();
        assert_eq!(Reported::parse_under("device.dev-2", &bytes).unwrap().device, "dev-2");
        let error = Reported::parse_under("device.dev-9", &bytes).unwrap_err();
        assert!(
            error.contains("reports device `dev-2`, whose key is `device.dev-2`"),
            "{error}"
        );
        assert!(Reported::parse_under("device.dev-2", b"{").is_err());
    }

    #[test]
    fn history_is_bounded_and_the_phase_follows_it() {
        let origin = Origin {
            key: "device.d".to_owned(),
            generation: 1,
        };
        let mut deployment = Deployment::new(&origin, &plugin(&bundle_name(b"x")), 0);
        for at in 1..100 {
            deployment.enter(Phase::Running, None, at);
        }
        deployment.enter(Phase::RolledBack, Some("trap".to_owned()), 100);
        assert_eq!(deployment.history.len(), HISTORY_KEPT);
        assert_eq!(deployment.phase, Phase::RolledBack);
        assert!(deployment.phase.is_failure() && deployment.phase.is_final());
        assert_eq!(digest_of_name(&bundle_name(b"x")).map(|d| d.len()), Some(32));
    }

    #[test]
    fn an_older_devices_superseded_deployment_is_told_from_a_rollback() {
        let origin = Origin {
            key: "device.d".to_owned(),
            generation: 1,
        };
        let mut deployment = Deployment::new(&origin, &plugin(&bundle_name(b"x")), 0);
        deployment.enter(Phase::RolledBack, Some(SUPERSEDED_BY_AN_OLDER_DEVICE.to_owned()), 1);
        assert!(deployment.was_superseded());
        deployment.enter(Phase::RolledBack, Some("init failed: superseded".to_owned()), 2);
        assert!(!deployment.was_superseded());
        deployment.enter(Phase::Failed, Some(SUPERSEDED_BY_AN_OLDER_DEVICE.to_owned()), 3);
        assert!(!deployment.was_superseded());
    }
}
