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
//! included) before compiling it; a bad configuration or bundle stops the
//! start with the reason. Shutdown stops ingest, lets every worker finish its
//! queue into the outbox, and gives the upstream a last chance to deliver.

mod clock;
pub mod config;
mod expiry;
mod ingest;
mod sequence;
pub mod status;
mod subjects;
pub mod supervisor;
mod upstream;
mod worker;

use std::future::Future;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use time::OffsetDateTime;
use tokio::sync::{Notify, watch};

use crate::bundle::{self, RollbackStore, TrustStore, VerifyOptions};
use crate::envelope::Provenance;
use crate::outbox::{Outbox, OutboxKey, Writer};
use crate::runtime::{PluginClock, PluginErrorKind, PluginInstance, Runtime, RuntimeOptions};
use clock::Clock;
use config::RunConfig;
use ingest::IngestStats;
pub use status::Status;
use status::StatusSources;
pub use subjects::Subjects;
use worker::{PluginSetup, Work, Worker, WorkerContext};

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
    /// A bundle refused or unusable.
    #[error("plugin bundle {path}: {reason}")]
    Bundle {
        /// The bundle file.
        path: String,
        /// Why.
        reason: String,
    },
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
    provenance: Provenance,
    subscriptions: Vec<String>,
    worker: Worker,
}

/// Run the device until `shutdown` completes; returns the final status.
pub async fn run(config: RunConfig, shutdown: impl Future<Output = ()>) -> Result<Status, RunError> {
    let started_at = Instant::now();
    std::fs::create_dir_all(&config.data_dir).map_err(|source| RunError::Io {
        what: format!("cannot create the data directory {}", config.data_dir.display()),
        source,
    })?;
    let subjects = Subjects::new(&config.device);
    let trust = TrustStore::load(&config.trust_dir)?;
    let mut rollback = RollbackStore::open(&config.data_dir).map_err(|e| RunError::Bundle {
        path: config.data_dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let runtime = Arc::new(Runtime::new(RuntimeOptions::default()).map_err(|e| RunError::Runtime(e.to_string()))?);
    let outbox_key =
        OutboxKey::load_or_create(&config.data_dir.join("outbox.key")).map_err(|e| RunError::Outbox(e.to_string()))?;
    let outbox =
        Outbox::open(&config.data_dir, &outbox_key, config.outbox).map_err(|e| RunError::Outbox(e.to_string()))?;
    let outbox = Arc::new(Mutex::new(outbox));
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

    // Plugins read the host clock through WASI. It starts once every plugin
    // is ready (below); `init` meanwhile reads one started now.
    let host_clock: Arc<OnceLock<Clock>> = Arc::default();
    let plugin_clock = {
        let (cell, before) = (host_clock.clone(), Clock::start(config.clock.clone()));
        PluginClock::host(move || cell.get().unwrap_or(&before).now_ms())
    };
    let mut ready: Vec<(PluginSetup, Vec<String>)> = Vec::new();
    for plugin in &config.plugins {
        let path = plugin.bundle.display().to_string();
        let refuse = |reason: String| RunError::Bundle {
            path: path.clone(),
            reason,
        };
        let bytes = bundle::read_bundle_file(&plugin.bundle, bundle::DEFAULT_MAX_BUNDLE_BYTES)
            .map_err(|e| refuse(e.to_string()))?;
        let options = VerifyOptions {
            trust: &trust,
            rollback: Some(&rollback),
            now: OffsetDateTime::now_utc(),
            max_bytes: bundle::DEFAULT_MAX_BUNDLE_BYTES,
        };
        let verified = bundle::verify(&bytes, &options).map_err(|e| refuse(format!("refused: {e}")))?;
        let manifest = verified.manifest;
        if ready.iter().any(|(p, _)| p.provenance.plugin == manifest.name) {
            return Err(refuse(format!("a second plugin named `{}`", manifest.name)));
        }
        let version = manifest.semver().map_err(|e| refuse(e.to_string()))?;
        rollback
            .record(&manifest.name, &version, &manifest.code_sha256)
            .map_err(|e| refuse(e.to_string()))?;
        let code = bytes.get(..verified.code_len).unwrap_or_default();
        // Compiled once per code digest and engine; later starts load the
        // authenticated artifact (DESIGN "Runtime").
        let (compiled, cache) = runtime
            .compile_cached(&manifest.name, code, &config.data_dir.join("cache"))
            .map_err(|e| refuse(e.to_string()))?;
        tracing::debug!(plugin = %manifest.name, ?cache, "Plugin compiled");
        let compiled = Arc::new(compiled);
        let limits = config::plugin_limits(&config.host_limits, &manifest.name, &manifest.limits, &plugin.limits);
        // The operator's values replace the manifest's defaults, key by key.
        let mut merged = manifest.config.clone();
        merged.extend(plugin.config.clone());
        let plugin_config: Vec<(String, String)> = merged.into_iter().collect();
        // A plugin that refuses its configuration (`init` returns an error)
        // stops the start: that is the operator's to fix. A plugin that traps,
        // hangs or breaks a limit while starting does not stop the others: it
        // starts under supervision, failed.
        let instance = PluginInstance::with_clock(&runtime, &compiled, limits.clone(), plugin_clock.clone()).and_then(
            |mut instance| {
                instance.init(&plugin_config)?;
                Ok(instance)
            },
        );
        if let Err(error) = &instance
            && let PluginErrorKind::Returned(_) = error.kind
        {
            return Err(refuse(format!("{error}: its configuration was refused")));
        }
        let provenance = Provenance {
            device: config.device.clone(),
            plugin: manifest.name.clone(),
            version: manifest.version.clone(),
            digest: format!("sha256:{}", manifest.code_sha256),
        };
        tracing::info!(plugin = %manifest.name, version = %manifest.version, key = %verified.key_id, "Plugin verified");
        let setup = PluginSetup {
            compiled,
            instance,
            provenance,
            config: plugin_config,
            limits,
        };
        ready.push((setup, plugin.subscriptions.clone().unwrap_or(manifest.subscriptions)));
    }

    // The clock starts once every plugin is ready, so a simulated clock does
    // not run ahead during compilation.
    let clock = Clock::start(config.clock.clone());
    let _ = host_clock.set(clock.clone());
    let mut plugins: Vec<Started> = Vec::new();
    for (setup, subscriptions) in ready {
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
        let provenance = setup.provenance.clone();
        let worker = Worker::start(context, setup, config.limits.queue_capacity).map_err(|source| RunError::Io {
            what: format!("cannot start the worker of `{}`", provenance.plugin),
            source,
        })?;
        plugins.push(Started {
            provenance,
            subscriptions,
            worker,
        });
    }

    let (stop, stopped) = watch::channel(false);
    let ingest_stats = Arc::new(IngestStats::default());
    let mut ingest_tasks = Vec::new();
    for plugin in &plugins {
        let (local, subjects, filters, queue, stats, stopped) = (
            local.clone(),
            subjects.clone(),
            plugin.subscriptions.clone(),
            plugin.worker.queue.clone(),
            ingest_stats.clone(),
            stopped.clone(),
        );
        let batch_max = config.limits.batch_max;
        ingest_tasks.push(match &config.source {
            config::Source::Core => tokio::spawn(async move {
                ingest::run_ingest(local, subjects, filters, queue, batch_max, stats, stopped)
                    .await
                    .map_err(|e| e.to_string())
            }),
            config::Source::JetStream { stream } => {
                let (stream, consumer) = (
                    stream.clone(),
                    format!("edgewise-{}-{}", config.device, plugin.provenance.plugin),
                );
                tokio::spawn(ingest::run_ingest_jetstream(
                    local, subjects, stream, consumer, filters, queue, batch_max, stats, stopped,
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
    let upstream = config.upstream.clone().map(|upstream_config| {
        tokio::spawn(upstream::run_upstream(
            upstream_config,
            subjects.clone(),
            outbox.clone(),
            outbox_written.clone(),
            upstream_connected.clone(),
            stopped.clone(),
        ))
    });
    let sources = Arc::new(StatusSources {
        subjects: subjects.clone(),
        started: started_at,
        clock,
        upstream_connected,
        outbox: outbox.clone(),
        ingest: ingest_stats,
        plugins: plugins
            .iter()
            .map(|p| {
                (
                    p.provenance.plugin.clone(),
                    p.provenance.version.clone(),
                    p.provenance.digest.clone(),
                    p.worker.stats.clone(),
                )
            })
            .collect(),
    });
    let status_task = tokio::spawn(status::run_status(local.clone(), sources.clone(), stopped.clone()));
    tracing::info!(device = %config.device, plugins = plugins.len(), "Edgewise is running");

    shutdown.await;
    tracing::info!("Shutting down: stopping ingest, draining plugins into the outbox");
    let _ = stop.send(true);
    for task in ingest_tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "Ingest ended with an error"),
            Err(error) => tracing::error!(%error, "Ingest task failed"),
        }
    }
    let _ = ticker.await;
    let _ = expiry.await;
    // Every sender is gone once the workers' own handles drop: each worker
    // finishes its queue, writing outputs to the outbox, then ends.
    let workers: Vec<Worker> = plugins.into_iter().map(|p| p.worker).collect();
    // Then the writer commits what they handed it, and stops.
    let _ = tokio::task::spawn_blocking(move || {
        workers.into_iter().for_each(Worker::join);
        writer.join();
    })
    .await;
    outbox_written.notify_one();
    if let Some(upstream) = upstream
        && tokio::time::timeout(Duration::from_secs(3), upstream).await.is_err()
    {
        tracing::warn!("Upstream delivery did not finish in time; undelivered outputs stay in the outbox");
    }
    let _ = status_task.await;
    let _ = tokio::time::timeout(Duration::from_secs(2), local.flush()).await;
    let status = tokio::task::spawn_blocking(move || sources.status())
        .await
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
