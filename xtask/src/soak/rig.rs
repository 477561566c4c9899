//! What both variants run on: the plugins signed with a soak key, a local
//! bus with the `SENSORS` stream the host reads (JetStream ingest), a cloud
//! nats-server with JetStream, and `edgewise run` on a device directory
//! under `target/soak/`, with its status over the local bus.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use edgewise_procs::device::request_status;
use edgewise_procs::workspace::component_path;
use edgewise_procs::{Device, NatsServer, RunConfig, SigningKey};
use serde_json::Value;
use tokio::time::Instant;

/// The device id of the soaked host.
pub const DEVICE: &str = "soak";
/// The cloud stream the host creates and forwards to.
pub const UP: &str = "SOAK_UP";
/// The stream of sensor readings on the local bus.
pub const SENSORS: &str = "SENSORS";
/// How long `edgewise run` may take to answer its first status request.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long it may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a wait asks for the status again.
pub const POLL: Duration = Duration::from_millis(100);

/// The bundles the soak runs, signed with a fresh key.
pub struct Bundles {
    pub trust: PathBuf,
    pub glucose_monitor: PathBuf,
    pub faulty_plugin: PathBuf,
}

impl Bundles {
    /// A new key under `dir/keys` and the two plugins signed with their own manifests.
    pub fn sign(root: &Path, dir: &Path) -> anyhow::Result<Bundles> {
        let keys = dir.join("keys");
        if keys.exists() {
            std::fs::remove_dir_all(&keys).with_context(|| format!("cannot remove {}", keys.display()))?;
        }
        std::fs::create_dir_all(&keys).with_context(|| format!("cannot create {}", keys.display()))?;
        let key = SigningKey::generate(&keys, "soak")?;
        let sign = |manifest_dir: &str, plugin: &str| {
            key.bundle(&root.join(manifest_dir).join("edgewise.toml"), &component_path(plugin))
        };
        Ok(Bundles {
            glucose_monitor: sign("plugins/glucose-monitor", "glucose-monitor")?,
            faulty_plugin: sign("tests/fixtures/faulty-plugin", "faulty-plugin")?,
            trust: key.trust_dir(),
        })
    }
}

/// The servers and the host of one variant, all stopped when dropped.
pub struct Rig {
    /// Dropped first: the host is gone before its servers.
    pub host: Device,
    pub local: NatsServer,
    pub cloud: NatsServer,
    pub client: async_nats::Client,
    pub jetstream: async_nats::jetstream::Context,
}

impl Rig {
    /// Start the local bus and the cloud, create `SENSORS`, write the
    /// configuration of a host in `dir` (emptied first) forwarding to the
    /// cloud, its `[[plugins]]` and other tables `rest`, and start it.
    pub async fn start(nats_server: &Path, dir: &Path, trust: &Path, rest: &str) -> anyhow::Result<Rig> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let local = NatsServer::options(nats_server).name("edge").jetstream()?.start()?;
        let cloud = NatsServer::options(nats_server).name("cloud").jetstream()?.start()?;
        let client = async_nats::connect(local.url())
            .await
            .with_context(|| format!("cannot connect to {}", local.url()))?;
        let jetstream = async_nats::jetstream::new(client.clone());
        jetstream
            .create_stream(async_nats::jetstream::stream::Config {
                name: SENSORS.into(),
                subjects: vec!["sensors.>".into()],
                ..Default::default()
            })
            .await
            .context("cannot create the SENSORS stream")?;
        let config = RunConfig {
            device: DEVICE.to_owned(),
            trust_dir: trust.display().to_string(),
            tick: None,
            local_url: local.url(),
            upstream: Some((cloud.url(), UP.to_owned())),
            rest: format!("[ingest]\nsource = \"jetstream\"\nstream = \"{SENSORS}\"\n{rest}"),
        };
        let mut host = Device::new(dir, DEVICE);
        host.write_config(&format!("# Written by `cargo xtask soak`.\n{}", config.to_toml()))?;
        host.start(&client, START_TIMEOUT).await?;
        Ok(Rig {
            host,
            local,
            cloud,
            client,
            jetstream,
        })
    }

    /// The host's status; fails if it does not answer (saying whether it exited).
    pub async fn status(&mut self) -> anyhow::Result<Value> {
        self.host.status(&self.client).await
    }

    /// The status once `done` holds for it, asked every [`POLL`]; fails
    /// after `within` naming `what` and the last status.
    pub async fn status_until(
        &mut self,
        what: &str,
        within: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            // A host busy with a backlog may miss one status request: ask again.
            let status = match request_status(&self.client, DEVICE).await {
                Ok(status) => Some(status),
                Err(_) => {
                    self.host.check_running()?;
                    None
                }
            };
            if let Some(status) = &status
                && done(status)
            {
                return Ok(status.clone());
            }
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {within:?} waiting for {what}; the last status: {}",
                    status.map_or("none".to_owned(), |s| s.to_string())
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Kill the host with SIGKILL and start it again, until it answers.
    pub async fn kill_and_restart(&mut self) -> anyhow::Result<()> {
        self.host.kill();
        self.host.start(&self.client, START_TIMEOUT).await.map(drop)
    }

    /// SIGTERM the host; fails unless it exits 0.
    pub async fn stop_host(&mut self) -> anyhow::Result<()> {
        self.host.stop_cleanly(STOP_TIMEOUT).await.map(drop)
    }

    /// Publish `payload` on `subject` into `SENSORS`, waiting for the stream's acknowledgement.
    pub async fn publish(
        jetstream: &async_nats::jetstream::Context,
        subject: String,
        payload: String,
    ) -> anyhow::Result<()> {
        jetstream
            .publish(subject, payload.into())
            .await
            .context("cannot publish a reading")?
            .await
            .context("the SENSORS stream did not acknowledge a reading")?;
        Ok(())
    }
}

/// The plugin `name` in `status`.
pub fn plugin<'a>(status: &'a Value, name: &str) -> anyhow::Result<&'a Value> {
    status["plugins"]
        .as_array()
        .and_then(|plugins| plugins.iter().find(|p| p["name"] == name))
        .ok_or_else(|| anyhow!("no plugin {name} in the status {status}"))
}

/// A counter of `status` at `path` (`["outbox", "alerts"]`), 0 if absent.
pub fn count(status: &Value, path: &[&str]) -> u64 {
    path.iter()
        .fold(status, |value, key| &value[*key])
        .as_u64()
        .unwrap_or(0)
}

/// Outputs waiting in the outbox.
pub fn outbox_depth(status: &Value) -> u64 {
    count(status, &["outbox", "alerts"]) + count(status, &["outbox", "summaries"])
}

/// The outbox's drop counters that are not zero (each a loss), as `name=n`.
pub fn outbox_losses(status: &Value) -> Vec<String> {
    let mut losses = Vec::new();
    for section in ["dropped", "parked"] {
        if let Some(counters) = status["outbox"][section].as_object() {
            for (name, value) in counters {
                if name != "entries" && value.as_u64().unwrap_or(0) > 0 {
                    losses.push(format!("outbox.{section}.{name}={value}"));
                }
            }
        }
    }
    losses
}

/// The current time, ms since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A small random generator (xorshift); the seed is printed so that a
/// failing run can be repeated with `--seed`.
pub struct Random(u64);

impl Random {
    /// Seeded with `seed`, or from the clock.
    pub fn new(seed: Option<u64>) -> Random {
        let seed = seed.unwrap_or_else(|| now_ms() as u64) | 1;
        println!("  random seed {seed} (repeat with --seed {seed})");
        Random(seed)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}
