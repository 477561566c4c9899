//! A bounded shutdown: whatever a plugin, the disk or a server does, the host
//! exits within about [`BOUND`] of SIGTERM (docs/operators.md, "Shutdown").
//!
//! 1. Ingest stops ([`INGEST_BUDGET`]; a task still waiting to queue is
//!    aborted: core NATS readings it held are lost, JetStream ones stay
//!    unacknowledged and are redelivered).
//! 2. Every worker drains its queue into the outbox within [`DRAIN_BUDGET`];
//!    what is left then is dropped and counted. A worker still busy [`GRACE`]
//!    after that is left behind: the process exits without it (what it had
//!    not committed is not in the outbox). The outbox writer then gets
//!    another [`GRACE`] for its last commit.
//! 3. The upstream gets [`UPSTREAM_BUDGET`] to deliver; the rest stays in the
//!    outbox for the next start.
//! 4. The status responder, the metrics endpoint and the telemetry stop and the local bus
//!    is flushed, within [`STATUS_BUDGET`] and [`FLUSH_BUDGET`]; the
//!    final status then gets [`STATUS_BUDGET`] (`run`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;

use super::serve::{Ended, Task};
use crate::outbox::Writer;
use crate::worker::{StoppingWorker, Worker};

/// For ingest tasks to stop.
pub const INGEST_BUDGET: Duration = Duration::from_secs(1);
/// For the workers to finish their queues.
pub const DRAIN_BUDGET: Duration = Duration::from_secs(5);
/// For a worker's last call (bounded by its deadline) and the outbox
/// writer's last commit, after the drain budget.
pub const GRACE: Duration = Duration::from_secs(2);
/// For the upstream's last delivery.
pub const UPSTREAM_BUDGET: Duration = Duration::from_secs(3);
/// For the local bus flush.
pub const FLUSH_BUDGET: Duration = Duration::from_secs(2);
/// For the status responder to stop, and then for the final status (it
/// reads the outbox, which a writer left behind may hold).
pub const STATUS_BUDGET: Duration = Duration::from_secs(1);
/// The longest a shutdown takes, every budget spent.
pub const BOUND: Duration = Duration::from_secs(17);

/// What the running host is made of, to stop.
pub struct Parts {
    /// Tells every task to stop.
    pub stop: watch::Sender<bool>,
    /// Ingest, one per plugin.
    pub ingest_tasks: Vec<JoinHandle<()>>,
    /// What stops each plugin's ingest.
    pub ingest_stops: Vec<watch::Sender<bool>>,
    /// The ticker.
    pub ticker: JoinHandle<()>,
    /// The outbox age limit.
    pub expiry: JoinHandle<()>,
    /// The plugin workers.
    pub workers: Vec<Worker>,
    /// The outbox writer.
    pub writer: Writer,
    /// Wakes the upstream.
    pub outbox_written: Arc<Notify>,
    /// The upstream, if configured.
    pub upstream: Option<JoinHandle<()>>,
    /// The status responder.
    pub status_task: JoinHandle<()>,
    /// The metrics endpoint, if configured.
    pub metrics_task: Option<JoinHandle<()>>,
    /// Fleet telemetry, unless turned off.
    pub telemetry_task: Option<JoinHandle<()>>,
    /// The local bus.
    pub local: async_nats::Client,
    /// How the tasks ended: what went wrong while stopping is logged.
    pub(super) ended: mpsc::UnboundedReceiver<Ended>,
}

/// Stop everything, each step within its budget.
pub async fn stop(parts: Parts) {
    tracing::info!(
        "Shutting down: stopping ingest, draining plugins into the outbox (at most {})",
        humantime::format_duration(BOUND)
    );
    let _ = parts.stop.send(true);
    for stop in &parts.ingest_stops {
        let _ = stop.send(true);
    }
    let ingest_deadline = tokio::time::Instant::now() + INGEST_BUDGET;
    for mut task in parts.ingest_tasks {
        match tokio::time::timeout_at(ingest_deadline, &mut task).await {
            Ok(_) => {}
            Err(_) => {
                // Waiting for room in a slow plugin's queue: what it holds is
                // not queued (JetStream input stays unacknowledged).
                tracing::warn!("Ingest did not stop in time; stopped");
                task.abort();
            }
        }
    }
    let _ = parts.ticker.await;
    let _ = parts.expiry.await;
    // Every sender is gone once the workers' own handles drop: each worker
    // finishes its queue, writing outputs to the outbox, until the budget.
    let drain_until = Instant::now() + DRAIN_BUDGET;
    let workers: Vec<StoppingWorker> = parts.workers.into_iter().map(|w| w.stop(drain_until)).collect();
    let wait_until = drain_until + GRACE;
    let (done, finished) = tokio::sync::oneshot::channel();
    let writer = parts.writer;
    // A thread of its own, not `spawn_blocking`: one that never ends must
    // not hold the runtime's shutdown either.
    let joiner = std::thread::Builder::new()
        .name("edgewise-drain".into())
        .spawn(move || {
            let mut pending = workers;
            while !pending.is_empty() && Instant::now() < wait_until {
                let (ended, running): (Vec<_>, Vec<_>) = pending.into_iter().partition(StoppingWorker::is_finished);
                ended.into_iter().for_each(StoppingWorker::join);
                pending = running;
                if !pending.is_empty() {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            if !pending.is_empty() {
                tracing::error!(
                    workers = pending.len(),
                    "Plugin workers did not finish within the shutdown budget; left behind"
                );
                // Dropping the handles detaches the threads. Their writer
                // handles keep the writer open: it is left behind too.
                drop(pending);
                drop(writer);
            } else {
                // Then the writer commits what they handed it, and stops.
                writer.join();
            }
            let _ = done.send(());
        });
    match joiner {
        Ok(_) => {
            if tokio::time::timeout_at((wait_until + GRACE).into(), finished)
                .await
                .is_err()
            {
                tracing::error!("The outbox writer did not finish within the shutdown budget; left behind");
            }
        }
        Err(error) => tracing::error!(%error, "Cannot start the drain thread; not waiting for the workers"),
    }
    parts.outbox_written.notify_one();
    if let Some(upstream) = parts.upstream
        && tokio::time::timeout(UPSTREAM_BUDGET, upstream).await.is_err()
    {
        tracing::warn!("Upstream delivery did not finish in time; undelivered outputs stay in the outbox");
    }
    // All stopped by `stop` long ago: one budget for them.
    let status_until = tokio::time::Instant::now() + STATUS_BUDGET;
    if tokio::time::timeout_at(status_until, parts.status_task).await.is_err() {
        tracing::warn!("The status responder did not stop in time");
    }
    if let Some(metrics) = parts.metrics_task
        && tokio::time::timeout_at(status_until, metrics).await.is_err()
    {
        tracing::warn!("The metrics endpoint did not stop in time");
    }
    if let Some(telemetry) = parts.telemetry_task
        && tokio::time::timeout_at(status_until, telemetry).await.is_err()
    {
        tracing::warn!("The telemetry did not stop in time");
    }
    let _ = tokio::time::timeout(FLUSH_BUDGET, parts.local.flush()).await;
    report_ended(parts.ended);
}

/// Log the tasks that ended with an error while the host stopped (their
/// owner no longer listens).
fn report_ended(mut ended: mpsc::UnboundedReceiver<Ended>) {
    while let Ok(Ended { task, outcome }) = ended.try_recv() {
        if let Err(error) = outcome {
            let error = crate::error_chain(&error);
            match task {
                Task::Ingest(plugin) => tracing::error!(%plugin, %error, "Ingest ended with an error"),
                other => tracing::error!(task = ?other, %error, "A host task ended with an error"),
            }
        }
    }
}
