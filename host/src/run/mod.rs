//! `edgewise run`: the live pipeline of one device.
//!
//! ```text
//! local bus ─▶ ingest (decode, dead-letter) ─▶ bounded queue ─▶ worker thread (plugin instance)
//!                                                                  │ alerts: local bus at once
//!                                                                  ▼ every output: outbox (durable)
//!                                            upstream task ◀── outbox ──▶ JetStream (Nats-Msg-Id), delete on ack
//! ```
//!
//! Start-up verifies every bundle with [`crate::bundle::verify`] (anti-rollback
//! included) before compiling it. A device starts whatever it can: a refused
//! bundle is reported (log, status, a critical host alert) and the others
//! run; only when nothing can run does the start fail. Each plugin's `init`
//! runs on its own supervised worker thread. An unusable outbox is moved
//! aside and a new one started ([`reset`]): local alerting never waits for it.
//!
//! Shutdown is bounded ([`shutdown`]): ingest stops, every worker drains its
//! queue into the outbox within a budget, the upstream gets a last chance,
//! the local bus is flushed; a thread that does not finish is left behind.

mod admission;
mod clock;
pub mod config;
mod expiry;
mod host_alerts;
mod ingest;
pub mod overlap;
mod reset;
mod sequence;
pub mod shutdown;
mod start;
pub mod status;
mod subjects;
pub mod supervisor;
mod upstream;
mod worker;

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::bundle::{self, RollbackStore, TrustStore};
use crate::outbox::Writer;
use crate::runtime::{Runtime, RuntimeOptions};
use admission::Admission;
use clock::Clock;
use config::RunConfig;
use host_alerts::HostAlerts;
use ingest::{Ingest, IngestStats};
pub use status::Status;
use status::StatusSources;
pub use subjects::Subjects;
use worker::{PluginStats, Work, Worker, WorkerContext};

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
    Trust(#[from] bundle::TrustError),
    /// The anti-rollback record is unreadable or corrupt: nothing is judged
    /// against it (a usage error, exit 2: the operator restores the file).
    #[error("{0}")]
    Rollback(bundle::RollbackError),
    /// A bundle refused or unusable.
    #[error("plugin bundle {path}: {reason}")]
    Bundle {
        /// The bundle file.
        path: String,
        /// Why.
        reason: String,
    },
    /// No plugin can run: every bundle was refused.
    #[error("no plugin can run:\n{}", .0.iter().map(|r| format!("  {}: {}", r.bundle, r.reason)).collect::<Vec<_>>().join("\n"))]
    NothingToRun(Vec<start::Refused>),
    /// The runtime.
    #[error("{0}")]
    Runtime(String),
    /// The outbox.
    #[error("outbox: {0}")]
    Outbox(String),
    /// The local bus.
    #[error("local NATS: {0}")]
    Local(String),
}

/// Appends (one per plugin call with outputs) waiting for the outbox writer
/// before the workers wait for it.
const WRITER_QUEUE: usize = 256;

/// A running plugin's identity.
struct Started {
    provenance: crate::envelope::Provenance,
    subscriptions: Vec<String>,
    admission: Admission,
    worker: Worker,
}

/// Run the device until `shutdown` completes; returns the final status.
pub async fn run(config: RunConfig, shutdown: impl Future<Output = ()>) -> Result<Status, RunError> {
    let started_at = Instant::now();
    // 0700 (an existing, wider one is narrowed): every file in it is private.
    crate::files::private_dir(&config.data_dir).map_err(|source| RunError::Io {
        what: format!("cannot create the data directory {}", config.data_dir.display()),
        source,
    })?;
    // Files an older version (or a copy) left with a wider mode are narrowed
    // too; the others are rewritten 0600 at start (sequences) or made so by
    // their owners (outbox, cache).
    for name in [bundle::rollback::ROLLBACK_FILE, reset::KEY_FILE] {
        let path = config.data_dir.join(name);
        crate::files::narrow(&path, crate::files::PRIVATE_FILE).map_err(|source| RunError::Io {
            what: format!("cannot make {} private", path.display()),
            source,
        })?;
    }
    let subjects = Subjects::new(&config.device);
    let trust = TrustStore::load(&config.trust_dir)?;
    let rollback = RollbackStore::open(&config.data_dir).map_err(RunError::Rollback)?;
    let rollback = Arc::new(Mutex::new(rollback));
    let runtime = Arc::new(Runtime::new(RuntimeOptions::default()).map_err(|e| RunError::Runtime(e.to_string()))?);
    let opened = reset::open_outbox(&config.data_dir, config.outbox)?;
    let outbox = Arc::new(Mutex::new(opened.outbox));
    let outbox_written = Arc::new(Notify::new());
    // Every plugin's outputs go through one writer: one fsync for whatever
    // has queued up (group commit).
    let wake_upstream = outbox_written.clone();
    let writer = Writer::start(outbox.clone(), WRITER_QUEUE, move || wake_upstream.notify_one()).map_err(|source| {
        RunError::Io {
            what: "cannot start the outbox writer".to_owned(),
            source,
        }
    })?;

    let local = crate::bus::connect::connect(&config.local, &format!("edgewise-{}", config.device), true)
        .await
        .map_err(|e| RunError::Local(e.to_string()))?;
    let handle = tokio::runtime::Handle::current();

    let start_context = start::StartContext {
        device: &config.device,
        data_dir: &config.data_dir,
        trust: &trust,
        rollback: &rollback,
        runtime: &runtime,
        plausibility: config.plausibility,
        clock: &config.clock,
        host_limits: &config.host_limits,
    };
    let mut ready = Vec::new();
    let mut refused = Vec::new();
    for plugin in &config.plugins {
        let taken: Vec<String> = ready
            .iter()
            .map(|p: &start::Prepared| p.setup.provenance.plugin.clone())
            .collect();
        match start::prepare(&start_context, plugin, &taken) {
            Ok(prepared) => ready.push(prepared),
            Err(refusal) => {
                tracing::error!(bundle = %refusal.bundle, reason = %refusal.reason, "Plugin refused; the others start");
                refused.push(refusal);
            }
        }
    }
    if ready.is_empty() {
        return Err(RunError::NothingToRun(refused));
    }

    // The clock starts once every plugin is ready, so a simulated clock does
    // not run ahead during compilation.
    let clock = Clock::start(config.clock.clone());
    let mut plugins: Vec<Started> = Vec::new();
    for prepared in ready {
        let context = WorkerContext {
            runtime: runtime.clone(),
            subjects: subjects.clone(),
            local: local.clone(),
            handle: handle.clone(),
            writer: writer.handle(),
            data_dir: config.data_dir.clone(),
            clock: clock.clone(),
            policy: config.supervisor.clone(),
        };
        let provenance = prepared.setup.provenance.clone();
        let worker =
            Worker::start(context, prepared.setup, config.limits.queue_capacity).map_err(|source| RunError::Io {
                what: format!("cannot start the worker of `{}`", provenance.plugin),
                source,
            })?;
        // A first tick, queued before ingest starts: the plugin knows the
        // host's time before its first reading, so a reading far ahead of it
        // is never taken for "now" (glucose-monitor's `max_ahead`).
        if worker.queue.try_send(Work::Tick(clock.tick_ms())).is_err() {
            tracing::warn!(plugin = %provenance.plugin, "Cannot queue the first tick");
        }
        plugins.push(Started {
            provenance,
            subscriptions: prepared.subscriptions,
            admission: prepared.admission,
            worker,
        });
    }
    // Say loudly what could not start: log (above), status, and a critical
    // alert locally and upstream.
    {
        let mut host_alerts =
            HostAlerts::new(&subjects, &config.data_dir, local.clone(), writer.handle()).map_err(|source| {
                RunError::Io {
                    what: "cannot open the host's alert sequence".to_owned(),
                    source,
                }
            })?;
        if let Some(reset) = &opened.reset {
            host_alerts
                .critical(reset::RESET_CODE, reset.clone(), clock.now_ms())
                .await;
        }
        for refusal in &refused {
            let message = format!("plugin bundle {} refused: {}", refusal.bundle, refusal.reason);
            host_alerts.critical(worker::DEGRADED, message, clock.now_ms()).await;
        }
    }

    let (stop, stopped) = watch::channel(false);
    let ingest_stats = Arc::new(IngestStats::default());
    let mut ingest_tasks = Vec::new();
    for plugin in &plugins {
        let ingest = Ingest::new(
            local.clone(),
            subjects.clone(),
            ingest_stats.clone(),
            plugin.admission.clone(),
            clock.clone(),
        );
        let (filters, queue, stopped) = (
            plugin.subscriptions.clone(),
            plugin.worker.queue.clone(),
            stopped.clone(),
        );
        let batch_max = config.limits.batch_max;
        ingest_tasks.push(match &config.source {
            config::Source::Core => {
                let subscriptions = ingest::subscribe(&local, &filters).await.map_err(|e| {
                    RunError::Local(format!("cannot subscribe for `{}`: {e}", plugin.provenance.plugin))
                })?;
                tokio::spawn(async move {
                    ingest::run_ingest(ingest, subscriptions, queue, batch_max, stopped).await;
                    Ok(())
                })
            }
            config::Source::JetStream { stream } => {
                let (stream, consumer) = (
                    stream.clone(),
                    format!("edgewise-{}-{}", config.device, plugin.provenance.plugin),
                );
                tokio::spawn(ingest::run_ingest_jetstream(
                    ingest, stream, consumer, filters, queue, batch_max, stopped,
                ))
            }
        });
    }
    let ticker = tokio::spawn(run_ticker(
        clock.clone(),
        config.tick,
        plugins.iter().map(|p| p.worker.queue.clone()).collect(),
        stopped.clone(),
    ));
    // The age limit: checked at once (entries left from an earlier run), then periodically.
    let expiry = tokio::spawn(expiry::run_expiry(
        outbox.clone(),
        expiry::expiry_interval(config.outbox.max_age_ms),
        stopped.clone(),
    ));
    let upstream_connected = Arc::new(AtomicBool::new(false));
    let upstream_rounds_failed = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let upstream = config.upstream.clone().map(|upstream_config| {
        tokio::spawn(upstream::run_upstream(
            upstream_config,
            subjects.clone(),
            outbox.clone(),
            outbox_written.clone(),
            upstream_connected.clone(),
            upstream_rounds_failed.clone(),
            stopped.clone(),
        ))
    });
    let mut plugin_sources: Vec<(String, String, String, Arc<PluginStats>)> = plugins
        .iter()
        .map(|p| {
            (
                p.provenance.plugin.clone(),
                p.provenance.version.clone(),
                p.provenance.digest.clone(),
                p.worker.stats.clone(),
            )
        })
        .collect();
    plugin_sources.extend(refused.iter().map(|refusal| {
        (
            refusal.name.clone(),
            refusal.version.clone(),
            String::new(),
            Arc::new(PluginStats::refused(&refusal.reason)),
        )
    }));
    let sources = Arc::new(StatusSources {
        subjects: subjects.clone(),
        started: started_at,
        clock,
        upstream_connected,
        upstream_rounds_failed,
        outbox: outbox.clone(),
        outbox_reset: opened.reset.clone(),
        ingest: ingest_stats,
        control: Arc::default(),
        plugins: plugin_sources,
    });
    let status_task = tokio::spawn(status::run_status(local.clone(), sources.clone(), stopped.clone()));
    tracing::info!(device = %config.device, plugins = plugins.len(), refused = refused.len(), "Edgewise is running");

    shutdown.await;
    let workers: Vec<Worker> = plugins.into_iter().map(|p| p.worker).collect();
    shutdown::stop(shutdown::Parts {
        stop,
        ingest_tasks,
        ticker,
        expiry,
        workers,
        writer,
        outbox_written,
        upstream,
        status_task,
        local,
    })
    .await;
    // Bounded too: the outbox lock may be held by a writer left behind.
    let status = tokio::time::timeout(
        shutdown::STATUS_BUDGET,
        tokio::task::spawn_blocking(move || sources.status()),
    )
    .await
    .map_err(|_| RunError::Outbox("no final status: the outbox did not answer within the shutdown budget".to_owned()))?
    .map_err(|e| RunError::Runtime(e.to_string()))?;
    Ok(status)
}

/// Send `Tick(now)` to every plugin every `tick` of clock time, until `stop`.
/// A plugin whose queue is full misses that tick (the next one covers it).
async fn run_ticker(
    clock: Clock,
    tick: Duration,
    queues: Vec<tokio::sync::mpsc::Sender<Work>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut interval = tokio::time::interval(clock.real_interval(tick));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = interval.tick() => {
                let now = clock.tick_ms();
                for queue in &queues {
                    let _ = queue.try_send(Work::Tick(now));
                }
            }
        }
    }
}
