//! The fleet telemetry message (`edgewise.<device>.telemetry`, and upstream
//! on `edgewise.<device>.up.telemetry`): a compact, periodic account of what
//! a device is doing, for the fleet's dashboards. It carries counts and
//! states only, never a sensor value: whoever may see the fleet may see it.
//!
//! The device publishes one every `[telemetry] interval`; upstream it travels
//! best-effort through a small bounded share of the outbox, after every alert
//! and summary (see `outbox`).

use serde::{Deserialize, Serialize};

use crate::bus::status::{OutboxDrops, PluginStatus, Status};

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
    /// was created (all reasons, telemetry included; logged inputs, which
    /// never go upstream, are not entries).
    pub dropped: u64,
    /// Of those, telemetry messages.
    #[serde(default)]
    pub telemetry_dropped: u64,
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
    /// `running`, `restarting`, `quarantined`, `degraded`, `refused` or `compiling` (as in
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

impl Telemetry {
    /// The telemetry of a device whose status is `status`, made at `ts`
    /// (ms since the epoch), with the host process's CPU time and resident
    /// memory where known. Counts and states only: the status's free texts
    /// (a plugin's last error, the reasons a task ended) are left out, as
    /// they may quote a payload.
    pub fn from_status(status: &Status, ts: i64, cpu_seconds: Option<f64>, rss_bytes: Option<u64>) -> Telemetry {
        let outbox = &status.outbox;
        Telemetry {
            kind: TYPE.to_owned(),
            device: status.device.clone(),
            ts,
            host_version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_s: status.uptime_s,
            upstream_connected: status.upstream_connected,
            outbox: TelemetryOutbox {
                alerts: outbox.alerts,
                summaries: outbox.summaries,
                telemetry: outbox.telemetry,
                oldest_age_ms: outbox.oldest_age_ms,
                dropped: entries_dropped(&outbox.dropped),
                telemetry_dropped: outbox.dropped.telemetry,
            },
            ingest: TelemetryIngest {
                messages: status.ingest.messages,
                deadlettered: status.ingest.deadlettered,
            },
            plugins: status.plugins.iter().map(plugin).collect(),
            cpu_seconds,
            rss_bytes,
        }
    }
}

/// Outbox entries let go, every reason together.
fn entries_dropped(dropped: &OutboxDrops) -> u64 {
    [
        dropped.summaries_for_space,
        dropped.summaries_refused,
        dropped.alerts_for_space,
        dropped.expired_alerts,
        dropped.expired_summaries,
        dropped.undecryptable,
        dropped.parked_discarded,
        dropped.telemetry,
    ]
    .into_iter()
    .fold(0u64, u64::saturating_add)
}

/// One plugin's telemetry.
fn plugin(status: &PluginStatus) -> TelemetryPlugin {
    TelemetryPlugin {
        name: status.name.clone(),
        version: status.version.clone(),
        digest: status.digest.clone(),
        state: status.state.clone(),
        readings_in: status.readings_in,
        alerts_out: status.alerts_out,
        summaries_out: status.summaries_out,
        errors: status.errors,
        restarts: status.restarts,
        quarantines: status.quarantines,
        readings_dropped: status.readings_dropped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A status as a host answers it, with free texts a payload could reach.
    fn status() -> Status {
        serde_json::from_str(
            r#"{
            "device": "edge-01", "uptime_s": 12.5, "clock_ms": 1700000000000, "upstream_connected": true,
            "outbox": {"alerts": 3, "summaries": 2, "telemetry": 4, "oldest_age_ms": 1500,
                       "dropped": {"summaries_for_space": 1, "alerts_for_space": 2, "telemetry": 5,
                                   "inputs_expired": 100}},
            "ingest": {"messages": 9, "deadlettered": 1, "deadletters_by_reason": {"future": 1}},
            "plugins": [{"name": "threshold", "version": "1.0.0", "digest": "sha256:ab", "state": "running",
                         "readings_in": 8, "alerts_out": 3, "summaries_out": 2, "errors": 1, "restarts": 1,
                         "quarantines": 0, "failures": {"trap": 1}, "last_error": "glucose 412 mg/dL",
                         "readings_held": 0, "readings_dropped": 0, "logs_dropped": 0}],
            "tasks": {"ticker": "panicked: value 412"}
        }"#,
        )
        .unwrap()
    }

    #[test]
    fn telemetry_carries_the_status_counts_and_no_free_text() {
        let telemetry = Telemetry::from_status(&status(), 1_700_000_000_500, Some(1.5), Some(1 << 20));
        assert_eq!(telemetry.kind, TYPE);
        assert_eq!(
            (telemetry.device.as_str(), telemetry.ts),
            ("edge-01", 1_700_000_000_500)
        );
        assert_eq!(
            telemetry.outbox,
            TelemetryOutbox {
                alerts: 3,
                summaries: 2,
                telemetry: 4,
                oldest_age_ms: Some(1500),
                dropped: 8,
                telemetry_dropped: 5,
            }
        );
        assert_eq!((telemetry.ingest.messages, telemetry.ingest.deadlettered), (9, 1));
        let plugin = &telemetry.plugins[0];
        assert_eq!((plugin.readings_in, plugin.alerts_out, plugin.errors), (8, 3, 1));
        let json = serde_json::to_string(&telemetry).unwrap();
        assert!(!json.contains("412"), "a free text reached the telemetry: {json}");
        assert_eq!(serde_json::from_str::<Telemetry>(&json).unwrap(), telemetry);
    }

    #[test]
    fn process_figures_are_left_out_where_unknown() {
        let telemetry = Telemetry::from_status(&status(), 0, None, None);
        let json: serde_json::Value = serde_json::to_value(&telemetry).unwrap();
        assert!(
            json.get("cpu_seconds").is_none() && json.get("rss_bytes").is_none(),
            "{json}"
        );
        assert_eq!(json["type"], "telemetry");
    }
}
