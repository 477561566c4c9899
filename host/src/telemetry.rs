//! The fleet telemetry message (`edgewise.<device>.telemetry`, and upstream
//! on `edgewise.<device>.up.telemetry`): a compact, periodic account of what
//! a device is doing, for the fleet's dashboards. It carries counts and
//! states only, never a sensor value: whoever may see the fleet may see it.
//!
//! The device publishes one every `[telemetry] interval`; upstream it travels
//! best-effort through a small bounded share of the outbox, after every alert
//! and summary (see `outbox`).

use serde::{Deserialize, Serialize};

/// `"telemetry"`: the `type` field of every telemetry message.
pub const TYPE: &str = "telemetry";

/// One telemetry message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    /// Always [`TYPE`].
    #[serde(rename = "type")]
    pub kind: String,
    /// Device id.
    pub device: String,
    /// When it was made: the device's wall clock, ms since the epoch.
    pub ts: i64,
    /// The host's version (`edgewise --version`).
    pub host_version: String,
    /// Seconds since the host started.
    pub uptime_s: f64,
    /// Whether the upstream connection is up.
    pub upstream_connected: bool,
    /// The outbox now.
    pub outbox: TelemetryOutbox,
    /// Ingest counters since start.
    pub ingest: TelemetryIngest,
    /// Every plugin, by name.
    pub plugins: Vec<TelemetryPlugin>,
    /// CPU time of the host process, seconds (absent where `/proc` is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    /// Resident memory of the host process, bytes (absent where `/proc` is not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
}

/// What waits in the outbox.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TelemetryOutbox {
    /// Alerts waiting.
    pub alerts: u64,
    /// Summaries waiting.
    pub summaries: u64,
    /// Telemetry messages waiting.
    pub telemetry: u64,
    /// Age of the oldest waiting entry, ms.
    #[serde(default)]
    pub oldest_age_ms: Option<i64>,
    /// Entries let go without an upstream acknowledgement since the outbox
    /// was created (all reasons, telemetry included).
    pub dropped: u64,
}

/// Ingest counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TelemetryIngest {
    /// Messages received.
    pub messages: u64,
    /// Dead letters published.
    pub deadlettered: u64,
}

/// One plugin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TelemetryPlugin {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Code digest, `sha256:<hex>`.
    pub digest: String,
    /// `running`, `restarting`, `quarantined`, `degraded` or `refused` (as in
    /// `edgewise status`).
    pub state: String,
    /// Readings delivered.
    pub readings_in: u64,
    /// Alerts emitted.
    pub alerts_out: u64,
    /// Summaries emitted.
    pub summaries_out: u64,
    /// Failed calls.
    pub errors: u64,
    /// Instances rebuilt.
    pub restarts: u64,
    /// Times put in quarantine.
    pub quarantines: u64,
    /// Readings dropped.
    pub readings_dropped: u64,
}
