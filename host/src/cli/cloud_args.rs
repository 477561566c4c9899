//! What the deployment commands (`push`, `undeploy`, `rollout`, `fleet`)
//! share: where the cloud's nats-server is and how to log in, which desired
//! key a command writes (`--device` or `--group`), the `--set key=value`
//! overrides, and the async runtime they run on.

use anyhow::anyhow;
use clap::Args;
use std::collections::BTreeMap;

use edgewise_host::bus::NatsConfig;
use edgewise_host::deploy::Cloud;
use edgewise_host::deploy::model::{device_key, group_key, valid_name};

use super::connection::CredentialArgs;
use super::{Failure, about};

/// The cloud's nats-server and its JetStream domain.
#[derive(Debug, Args)]
pub struct CloudArgs {
    /// The cloud's nats-server (the one whose JetStream holds the
    /// deployment buckets; comma-separated URLs for a cluster).
    #[arg(long = "cloud", value_name = "URL", default_value = "nats://127.0.0.1:4222")]
    url: String,
    /// The JetStream domain of the deployment buckets, when the server
    /// reached is not the one that holds them (e.g. a device's leaf node).
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    #[command(flatten)]
    credentials: CredentialArgs,
}

impl CloudArgs {
    /// Connect and reach the deployment buckets. A server that cannot be
    /// reached is a run-time failure (exit 1).
    pub async fn connect(&self) -> Result<Cloud, Failure> {
        let mut nats = NatsConfig {
            url: self.url.clone(),
            ..NatsConfig::default()
        };
        self.credentials.apply(&mut nats);
        let client = edgewise_host::bus::connect::connect(&nats, "edgewise-operator", false)
            .await
            .map_err(|e| Failure::runtime(about(format!("cannot connect to {}", self.url), e)))?;
        Ok(Cloud::new(client, self.domain.as_deref()))
    }
}

/// The desired key a command writes: a device's or a group's.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// Deploy to this device only (its key `device.<ID>`, which replaces its
    /// groups' entry of the same plugin).
    #[arg(long, value_name = "ID")]
    device: Option<String>,
    /// Deploy to every device of this group (its key `group.<NAME>`).
    #[arg(long, value_name = "NAME")]
    group: Option<String>,
}

impl TargetArgs {
    /// The key, once the name is known to be one token (letters, digits,
    /// `-`, `_`; at most 128): anything else is a usage error (exit 2).
    /// Whether the device of `report` reads this key: it is the device, or
    /// it is in the group.
    pub fn follows(&self, report: &edgewise_host::deploy::model::Reported) -> bool {
        match (&self.device, &self.group) {
            (Some(device), _) => report.device == *device,
            (None, Some(group)) => report.groups.iter().any(|g| g == group),
            (None, None) => false,
        }
    }

    pub fn key(&self) -> Result<String, Failure> {
        match (&self.device, &self.group) {
            (Some(device), _) => Ok(device_key(checked_name("device id", device)?)),
            (None, Some(group)) => Ok(group_key(checked_name("group name", group)?)),
            (None, None) => Err(Failure::usage(anyhow!("give `--device ID` or `--group NAME`"))),
        }
    }
}

/// `name` if it can be a device id or group name in a key.
pub fn checked_name<'a>(what: &str, name: &'a str) -> Result<&'a str, Failure> {
    if valid_name(name) {
        Ok(name)
    } else {
        Err(Failure::usage(anyhow!(
            "{what} `{}`: use 1 to 128 letters, digits, `-` or `_`",
            name.escape_debug()
        )))
    }
}

/// What a command that writes a plugin's entry is told besides the bundle:
/// its configuration and who writes.
#[derive(Debug, Args)]
pub struct EntryArgs {
    /// A configuration value over the manifest's default (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_setting)]
    settings: Vec<(String, String)>,
    /// Who writes, recorded in the desired sets [default: $USER].
    #[arg(long, value_name = "TEXT")]
    by: Option<String>,
}

impl EntryArgs {
    /// The `--set` overrides as a map; a key given twice is a usage error
    /// (which one was meant?).
    pub fn config(&self) -> Result<BTreeMap<String, String>, Failure> {
        config_of(&self.settings)
    }

    /// Who writes: `--by`, else `$USER`.
    pub fn writer(&self) -> String {
        writer(self.by.as_deref())
    }
}

/// One `--set key=value`, for clap.
fn parse_setting(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected key=value"))?;
    if key.is_empty() {
        return Err(format!("`{text}`: the key is empty"));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// `settings` as a map, refusing a key given twice.
fn config_of(settings: &[(String, String)]) -> Result<BTreeMap<String, String>, Failure> {
    let mut config = BTreeMap::new();
    for (key, value) in settings {
        if config.insert(key.clone(), value.clone()).is_some() {
            return Err(Failure::usage(anyhow!("--set {key}: given twice")));
        }
    }
    Ok(config)
}

/// Who writes (the `written_by` of a desired set): `--by`, else `$USER`.
pub fn writer(by: Option<&str>) -> String {
    by.map(str::to_owned)
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_default()
}

/// Now, in ms since the epoch.
pub fn now_ms() -> i64 {
    let since = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Run `work` to completion on a runtime of this thread.
pub fn block_on<T>(work: impl Future<Output = Result<T, Failure>>) -> Result<T, Failure> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(about("cannot start the async runtime", e)))?
        .block_on(work)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_split_at_the_first_equals_sign_and_a_key_twice_is_refused() {
        assert_eq!(parse_setting("a=b=c"), Ok(("a".to_owned(), "b=c".to_owned())));
        assert_eq!(parse_setting("a="), Ok(("a".to_owned(), String::new())));
        assert!(parse_setting("=b").is_err());
        assert!(parse_setting("ab").is_err());
        let twice = [("a".to_owned(), "1".to_owned()), ("a".to_owned(), "2".to_owned())];
        assert!(config_of(&twice).is_err());
    }

    #[test]
    fn a_name_that_is_not_one_token_is_refused() {
        let target = |device: &str| TargetArgs {
            device: Some(device.to_owned()),
            group: None,
        };
        assert_eq!(target("edge-01").key().unwrap(), "device.edge-01");
        assert!(target("edge.01").key().is_err());
        assert!(target("*").key().is_err());
        assert!(target("").key().is_err());
    }
}
