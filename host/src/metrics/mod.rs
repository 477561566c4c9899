//! The device's Prometheus endpoint (`[metrics]`, off by default): `GET
//! /metrics` on `edgewise run`, in the OpenMetrics text format.
//!
//! Nothing is counted for it: at each scrape the endpoint renders what the
//! status (`edgewise status`) is gathered from, so the two always agree and
//! an endpoint nobody scrapes costs nothing; the one addition is the plugin
//! calls' duration histogram (`worker::call_times`), kept only while the
//! endpoint is configured. No patient value reaches it: no sensor id, no
//! reading, no alert text (a plugin's last error is left out for that), only
//! plugin names, versions, fixed reasons and counts. The full list is in
//! docs/operators.md, "Metrics".

mod exposition;
pub(crate) mod process;
mod server;

use std::collections::BTreeMap;
use std::net::SocketAddr;

pub use exposition::{CONTENT_TYPE, render};
pub use server::{MetricsError, MetricsServer};

use crate::bus::status::Status;
use crate::worker::call_times::{Call, CallHistogram};

/// Where the endpoint listens (`[metrics] listen`; loopback unless the
/// operator set `allow_remote`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// The address served.
    pub listen: SocketAddr,
}

/// What one scrape shows: the status, and the call durations of each plugin.
#[derive(Debug, Clone)]
pub struct Scrape {
    /// The status, as `edgewise status` shows it.
    pub status: Status,
    /// Call durations by plugin name (plugins whose durations are kept).
    pub calls: Vec<PluginCalls>,
    /// How long the first alert and the first summary still in the outbox
    /// have waited, ms (`None`: none waits, or the outbox did not answer).
    pub oldest_ms: OldestWaiting,
    /// The generation of each desired-set key the device follows, as last
    /// read (`[deploy]`; empty without it).
    pub generations: BTreeMap<String, u64>,
}

/// How long the first entry of each class in the outbox has waited, ms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OldestWaiting {
    /// The first alert.
    pub alerts: Option<i64>,
    /// The first summary.
    pub summaries: Option<i64>,
}

/// The call durations of one plugin.
#[derive(Debug, Clone)]
pub struct PluginCalls {
    /// The plugin's name.
    pub plugin: String,
    /// Each call's histogram.
    pub calls: Vec<(Call, CallHistogram)>,
}
