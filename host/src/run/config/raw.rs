//! The file's shape: what `toml` reads before anything is checked. Every
//! table refuses unknown keys.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::bundle::ManifestLimits;
use crate::bus::NatsConfig;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) device: String,
    pub(super) data_dir: PathBuf,
    pub(super) trust_dir: PathBuf,
    #[serde(default = "default_tick")]
    pub(super) tick: String,
    pub(super) clock: Option<RawClock>,
    pub(super) local: NatsConfig,
    #[serde(default)]
    pub(super) ingest: RawIngest,
    pub(super) upstream: Option<RawUpstream>,
    #[serde(default)]
    pub(super) limits: RawLimits,
    #[serde(default)]
    pub(super) supervisor: RawSupervisor,
    #[serde(default)]
    pub(super) outbox: RawOutbox,
    #[serde(default)]
    pub(super) host_limits: ManifestLimits,
    #[serde(default)]
    pub(super) plugins: Vec<RawPlugin>,
    pub(super) deploy: Option<RawDeploy>,
    pub(super) metrics: Option<RawMetrics>,
    #[serde(default)]
    pub(super) telemetry: RawTelemetry,
    #[serde(default)]
    pub(super) compile: RawCompile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCompile {
    pub(super) memory_mb: Option<i64>,
    pub(super) timeout: Option<String>,
    pub(super) start_wait: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTelemetry {
    pub(super) interval: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetrics {
    pub(super) listen: String,
    #[serde(default)]
    pub(super) allow_remote: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDeploy {
    pub(super) domain: Option<String>,
    #[serde(default)]
    pub(super) groups: Vec<String>,
    pub(super) probation: Option<String>,
    pub(super) resync: Option<String>,
    pub(super) report_every: Option<String>,
    pub(super) max_bundle_mb: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSupervisor {
    pub(super) backoff_initial: Option<String>,
    pub(super) backoff_max: Option<String>,
    pub(super) quarantine_after: Option<i64>,
    pub(super) quarantine_window: Option<String>,
    pub(super) quarantine_cooldown: Option<String>,
    pub(super) buffer_readings: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOutbox {
    pub(super) max_mb: Option<i64>,
    pub(super) max_age: Option<String>,
    pub(super) input_log: Option<bool>,
    pub(super) log_max_mb: Option<i64>,
}

pub(super) fn default_tick() -> String {
    "5s".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClock {
    pub(super) start: String,
    #[serde(default = "one")]
    pub(super) speed: f64,
}

pub(super) fn one() -> f64 {
    1.0
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIngest {
    #[serde(default)]
    pub(super) source: Option<String>,
    pub(super) stream: Option<String>,
    pub(super) max_future: Option<String>,
    pub(super) max_age: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    #[serde(flatten)]
    pub(super) nats: NatsConfig,
    #[serde(default = "default_upstream_stream")]
    pub(super) stream: String,
    #[serde(default)]
    pub(super) create_stream: bool,
    pub(super) duplicate_window: Option<String>,
    pub(super) domain: Option<String>,
}

pub(super) fn default_upstream_stream() -> String {
    "EDGEWISE_UP".to_owned()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    pub(super) queue_capacity: Option<i64>,
    pub(super) batch_max: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugin {
    pub(super) bundle: PathBuf,
    #[serde(default)]
    pub(super) config: BTreeMap<String, toml::Value>,
    pub(super) subscriptions: Option<Vec<String>>,
    #[serde(default)]
    pub(super) limits: ManifestLimits,
    #[serde(default)]
    pub(super) payload_sensors: Vec<String>,
}
