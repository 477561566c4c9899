//! `edgewise run`: the live pipeline of one device, started (`start`),
//! served (`serve`) and stopped ([`shutdown`]).
//!
//! ```text
//! local bus ─▶ bus::ingest (decode, admission, dead-letter) ─▶ bounded queue ─▶ worker thread (plugin instance)
//!                                                                  │ alerts: local bus at once
//!                                                                  ▼ every output: outbox (durable)
//!                                            outbox::upstream ◀── outbox ──▶ JetStream (Nats-Msg-Id), delete on ack
//! ```
//!
//! Start-up loads every bundle with [`crate::load`] (verification and
//! anti-rollback included) before compiling it. A device starts whatever it
//! can: a refused bundle is reported (log, status, a critical host alert) and
//! the others run; only when nothing can run does the start fail. Each
//! plugin's `init` runs on its own supervised worker thread. An unusable
//! outbox is moved aside and a new one started (`outbox::reset`): local
//! alerting never waits for it.
//!
//! Every task has an owner that notices at once when it ends (`serve`).
//! Shutdown is bounded ([`shutdown`]): ingest stops, every worker drains its
//! queue into the outbox within a budget, the upstream gets a last chance,
//! the local bus is flushed; a thread that does not finish is left behind.

mod compiling;
pub mod config;
mod deploy;
mod host_alerts;
mod plugins;
mod serve;
pub mod shutdown;
mod start;
pub mod status;
mod systemd;
mod telemetry;

use std::future::Future;

pub use crate::bus::Subjects;
pub use crate::bus::status::Status;
pub use start::{RefusalReason, Refused};

/// Why the host could not start (or stopped with an error).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A file or directory of the host.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
    /// The trust store.
    #[error("{0}")]
    Trust(#[from] crate::bundle::TrustError),
    /// The anti-rollback record is unreadable or corrupt: nothing is judged
    /// against it (a usage error, exit 2: the operator restores the file).
    #[error("{0}")]
    Rollback(#[source] crate::bundle::RollbackError),
    /// No plugin can run: every bundle was refused.
    #[error("no plugin can run:\n{}", .0.iter().map(|r| format!("  {}: {}", r.bundle, r.reason)).collect::<Vec<_>>().join("\n"))]
    NothingToRun(Vec<Refused>),
    /// The runtime (the wasmtime engine) could not be made.
    #[error("{0}")]
    Runtime(#[source] crate::runtime::RuntimeError),
    /// The outbox could not be opened (nor moved aside and made anew).
    #[error("outbox: {0}")]
    Outbox(#[from] crate::outbox::reset::OpenError),
    /// The local bus connection could not be set up.
    #[error("local NATS: {0}")]
    Local(#[source] async_nats::ConnectError),
    /// A plugin's first subscriptions could not be made.
    #[error("local NATS: cannot subscribe for `{plugin}`: {source}")]
    Subscribe {
        /// The plugin.
        plugin: String,
        /// The error.
        source: Box<crate::bus::ingest::IngestError>,
    },
    /// The metrics endpoint could not listen.
    #[error("{0}")]
    Metrics(#[source] crate::metrics::MetricsError),
    /// The final status could not be gathered within its budget (the outbox
    /// lock may be held by a writer left behind).
    #[error("outbox: no final status: the outbox did not answer within the shutdown budget")]
    FinalStatusTimeout,
    /// Gathering the final status failed.
    #[error("no final status: {0}")]
    FinalStatus(#[source] tokio::task::JoinError),
}

impl RunError {
    /// A failed file or directory operation: `what` was being done.
    fn io(what: impl Into<String>, source: std::io::Error) -> RunError {
        RunError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Run the device until `shutdown` completes; returns the final status.
pub async fn run(config: config::RunConfig, shutdown: impl Future<Output = ()>) -> Result<Status, RunError> {
    let device = start::start(&config).await?;
    let (parts, sources) = serve::serve(&config, device, shutdown).await?;
    shutdown::stop(parts).await;
    // Bounded too: the outbox lock may be held by a writer left behind.
    tokio::time::timeout(
        shutdown::STATUS_BUDGET,
        tokio::task::spawn_blocking(move || sources.status()),
    )
    .await
    .map_err(|_| RunError::FinalStatusTimeout)?
    .map_err(RunError::FinalStatus)
}
