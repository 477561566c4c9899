//! Serving: the host's tasks (each plugin's ingest, the ticker, the outbox
//! expiry, upstream delivery, the status responder) and their owner, which
//! notices at once when one ends before shutdown:
//!
//! - a plugin's ingest that fails is started again by itself (backoff, see
//!   `bus::ingest::run`); each failure reaches the owner at once: the plugin
//!   shows `degraded` with the reason, and the first failure of an episode
//!   raises a critical `plugin-degraded` alert (locally and upstream). An
//!   ingest that ends for good (its worker gone, a panic) is the same, for good.
//! - the ticker or upstream delivery ending loses a clinician something (time
//!   based alerts, alerts upstream): logged, shown in the status (`tasks`),
//!   and a critical `host-degraded` alert.
//! - the expiry, the status responder, the metrics endpoint or the telemetry
//!   ending is logged and shown in the status (the outbox's size limit still
//!   holds; those are for operators).
//! - the outbox's disk refusing writes, and outputs given up (never to reach
//!   the cloud), raise a critical `host-degraded` alert (the owner looks
//!   every second).
//!
//! None of those is restarted: they end only on a bug (a panic) or on a
//! configuration a restart would meet again (an unreadable credentials file).

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::FutureExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::RunError;
use super::compiling::{Compilations, Compiled, Pending};
use super::config::RunConfig;
use super::host_alerts::{HOST_DEGRADED, HostAlerts};
use super::plugins::Plugins;
use super::shutdown::Parts;
use super::start::{Device, Loader, RefusalReason, Refused};
use super::status::{PluginSource, StatusSources};
use super::systemd::ServiceManager;
use crate::bus::admission::DeadLetterKind;
use crate::bus::config::Source;
use crate::bus::ingest::{
    self, AcknowledgedEarly, Failure, IngestError, IngestEvent, IngestHealth, IngestStats, Input, OutOfTime,
    OutboxRefusing, QueueFull, SensorCap, SensorMismatch,
};
use crate::bus::status::ControlStats;
use crate::bus::violations::{MAX_VIOLATIONS, SubscriptionLimit, Violations};
use crate::clock::Clock;
use crate::metrics::MetricsServer;
use crate::outbox::upstream::{self, UpstreamError, UpstreamStats};
use crate::outbox::{WriterStats, expiry};
use crate::worker::{DEGRADED, PluginStats, Work};

/// How often the owner looks at the outbox writer: whether its disk refuses
/// writes, and whether outputs were given up.
const OUTBOX_CHECK: Duration = Duration::from_secs(1);

/// A task of the host, as its owner names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Task {
    /// The ingest of a plugin.
    Ingest(String),
    /// Clock ticks to every plugin.
    Ticker,
    /// The outbox's age limit.
    Expiry,
    /// Delivery of the outbox upstream.
    Upstream,
    /// The status responder.
    Status,
    /// Deployment from the cloud.
    Deploy,
    /// The metrics endpoint.
    Metrics,
    /// Fleet telemetry.
    Telemetry,
    /// The service manager's status and watchdog.
    Watchdog,
}

impl Task {
    /// Its name in the status and the log.
    fn name(&self) -> String {
        match self {
            Task::Ingest(plugin) => format!("ingest of `{plugin}`"),
            Task::Ticker => "ticker".to_owned(),
            Task::Expiry => "expiry".to_owned(),
            Task::Upstream => "upstream".to_owned(),
            Task::Status => "status".to_owned(),
            Task::Deploy => "deployment".to_owned(),
            Task::Metrics => "metrics".to_owned(),
            Task::Telemetry => "telemetry".to_owned(),
            Task::Watchdog => "watchdog".to_owned(),
        }
    }
}

/// Why a task ended.
#[derive(Debug, thiserror::Error)]
pub(super) enum TaskError {
    /// A plugin's ingest.
    #[error(transparent)]
    Ingest(#[from] IngestError),
    /// Upstream delivery.
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    /// The status responder could not subscribe.
    #[error("the status responder cannot subscribe: {0}")]
    Status(#[from] async_nats::SubscribeError),
    /// The metrics endpoint.
    #[error(transparent)]
    Metrics(#[from] crate::metrics::MetricsError),
    /// The task panicked.
    #[error("panicked: {0}")]
    Panicked(String),
}

/// A task that ended, as its owner hears of it.
#[derive(Debug)]
pub(super) struct Ended {
    /// Which.
    pub(super) task: Task,
    /// How: `Ok` when it ended on its own (before shutdown, that is a failure too).
    pub(super) outcome: Result<(), TaskError>,
}

/// Spawn `future` as `task`: however it ends (returned, failed, panicked),
/// `ended` hears of it at once.
pub(super) fn spawn_owned<E: Into<TaskError>>(
    task: Task,
    ended: &mpsc::UnboundedSender<Ended>,
    future: impl Future<Output = Result<(), E>> + Send + 'static,
) -> JoinHandle<()> {
    let ended = ended.clone();
    tokio::spawn(async move {
        let outcome = match AssertUnwindSafe(future).catch_unwind().await {
            Ok(result) => result.map_err(Into::into),
            Err(panic) => Err(TaskError::Panicked(panic_message(panic.as_ref()))),
        };
        let _ = ended.send(Ended { task, outcome });
    })
}

/// The text of a panic's payload.
pub(super) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// The owner of the running tasks.
struct Owner {
    host_alerts: HostAlerts,
    clock: Clock,
    /// Each plugin's input.
    inputs: Arc<Mutex<BTreeMap<String, Arc<IngestHealth>>>>,
    /// Host tasks that ended, and why (shown in the status).
    tasks: Arc<Mutex<BTreeMap<String, String>>>,
    /// The running plugins (one compiled after start-up joins them).
    plugins: Arc<Plugins>,
    /// What starts a plugin compiled after start-up.
    loader: Loader,
    /// Ingest counters: what was dropped before ingest took it.
    ingest_stats: Arc<IngestStats>,
    /// The drops before ingest counted so far, and as told.
    client_drops: (u64, ingest::Retell),
    /// The outbox writer's state: whether its disk refuses writes.
    writer: Arc<WriterStats>,
    /// Whether the disk refused at the last look, and the refusals as told
    /// (a disk that flaps between full and not is told at most hourly).
    refusal: (bool, ingest::Retell),
    /// Outputs not stored counted so far, and as told.
    store_failures: (u64, ingest::Retell),
    /// The publishes the local server refused (its permissions), as told.
    refused_publishes: PublishRefusals,
    /// The subscriptions the local server refused past its limit, and
    /// whether that was told.
    subscription_limit: (Arc<SubscriptionLimit>, bool),
}

/// The local server's refusals of the host's publishes, as told.
struct PublishRefusals {
    violations: Arc<Violations>,
    /// The mark up to which they were looked at.
    looked: u64,
    /// The prefix of the device's own subjects, `edgewise.<device>.`.
    own: String,
    /// The device's subjects alerted (each once).
    alerted: BTreeSet<String>,
}

impl Owner {
    /// Hear every failure and every end of a task until `shutdown` completes.
    async fn own(
        &mut self,
        shutdown: impl Future<Output = ()>,
        events: &mut mpsc::UnboundedReceiver<IngestEvent>,
        ended: &mut mpsc::UnboundedReceiver<Ended>,
        compiling: &mut Compilations,
    ) {
        tokio::pin!(shutdown);
        let ingest_stats = self.ingest_stats.clone();
        let mut publish_refusals = self.refused_publishes.violations.watch();
        let mut past_limit = self.subscription_limit.0.watch();
        // Refusals while the host started (when it subscribes most) too.
        past_limit.mark_changed();
        let mut outbox_checks = tokio::time::interval(OUTBOX_CHECK);
        outbox_checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                () = ingest_stats.client_dropped.notified() => self.client_dropped().await,
                Ok(()) = publish_refusals.changed() => self.publishes_refused().await,
                Ok(()) = past_limit.changed() => self.subscriptions_past_limit().await,
                _ = outbox_checks.tick() => self.check_outbox().await,
                Some(event) = events.recv() => match event {
                    IngestEvent::Failed(failure) => self.ingest_failed(failure).await,
                    IngestEvent::SensorCap(cap) => self.sensor_cap(cap).await,
                    IngestEvent::QueueFull(full) => self.queue_full(full).await,
                    IngestEvent::OutOfTime(refused) => self.out_of_time(refused).await,
                    IngestEvent::SensorMismatch(refused) => self.sensor_mismatch(refused).await,
                    IngestEvent::AcknowledgedEarly(early) => self.acknowledged_early(early).await,
                },
                Some(task) = ended.recv() => self.task_ended(task).await,
                Some(compiled) = compiling.next() => self.compiled(compiled, compiling).await,
            }
        }
    }

    /// A plugin still compiling when the device started serving has been
    /// compiled: it joins the running device, or is refused (and the status
    /// shows a plugin of its name that now compiles in its place, if any).
    async fn compiled(&mut self, compiled: Compiled, compiling: &Compilations) {
        let refusal = match compiled.result {
            Ok(prepared) => {
                let name = prepared.setup.provenance.plugin.clone();
                let (version, bundle) = (prepared.setup.provenance.version.clone(), compiled.bundle);
                let _changing = self.plugins.changing().await;
                if self.plugins.get(&name).is_some() {
                    // Deployed while this one compiled: the deployment wins.
                    tracing::warn!(plugin = %name, "A deployed version of this plugin runs instead");
                    return;
                }
                let joined = match self.loader.start(prepared) {
                    Ok(started) => self.plugins.add(started, Arc::default()).await,
                    Err(error) => Err(error),
                };
                match joined {
                    Ok(()) => {
                        tracing::info!(plugin = %name, "Compiled after start-up: the plugin runs now");
                        return;
                    }
                    Err(error) => Refused {
                        name,
                        version,
                        bundle,
                        reason: Arc::new(RefusalReason::Compilation(format!(
                            "compiled, but could not start: {}",
                            crate::error_chain(&error)
                        ))),
                    },
                }
            }
            Err(refusal) => refusal,
        };
        tracing::error!(bundle = %refusal.bundle, reason = %refusal.reason, "Plugin refused; the others run");
        // A duplicate's name is the running plugin's: the status keeps that.
        // A plugin compiling in place of the refused one stands for its name,
        // as at start-up.
        if let Some(instead) = compiling.pending().find(|pending| pending.name == refusal.name) {
            self.plugins.show(compiling_source(instead));
        } else if !matches!(*refusal.reason, RefusalReason::Duplicate(_)) {
            self.plugins.show(refused_source(&refusal));
        }
        let message = format!("plugin bundle {} cannot run: {}", refusal.bundle, refusal.reason);
        self.host_alerts.critical(DEGRADED, message, self.clock.now_ms()).await;
    }

    /// A plugin's ingest failed and is being started again.
    async fn ingest_failed(&mut self, failure: Failure) {
        let reason = crate::error_chain(&failure.error);
        let retry = humantime::format_duration(failure.retry_in);
        if !failure.new_episode {
            tracing::warn!(plugin = %failure.plugin, %reason, "Ingest failed again; retrying in {retry}");
            return;
        }
        tracing::error!(plugin = %failure.plugin, %reason, "Ingest failed: the plugin gets no readings; retrying in {retry}");
        let message = match failure.error.refused() {
            Some(filter) => format!(
                "plugin `{}` gets no readings of `{filter}`: {reason} (the device's user may not subscribe \
                 to it); its other subscriptions are read; subscribing again in {retry}",
                failure.plugin
            ),
            None => format!(
                "plugin `{}` gets no readings: {reason}; retrying in {retry}",
                failure.plugin
            ),
        };
        self.host_alerts.critical(DEGRADED, message, self.clock.now_ms()).await;
    }

    /// The local server refused publishes (its permissions): for each of
    /// the device's own subjects (its alerts, dead letters, telemetry,
    /// status), said once, loudly. A refused publish is dropped by the
    /// server and said only in an `-ERR` on the connection: the clinician's
    /// screens would get no alert of a plugin while everything looked well.
    /// The host's own alert goes upstream too (through the outbox), where
    /// every refused alert still goes.
    async fn publishes_refused(&mut self) {
        let refusals = &mut self.refused_publishes;
        let mark = refusals.violations.mark();
        let new: Vec<String> = refusals
            .violations
            .subjects_since(refusals.looked)
            .into_iter()
            .filter(|subject| subject.starts_with(&refusals.own) && !refusals.alerted.contains(subject))
            .collect();
        refusals.looked = mark;
        for subject in new {
            // The device's own subjects are few (an alert subject a plugin).
            if self.refused_publishes.alerted.len() >= MAX_VIOLATIONS {
                break;
            }
            self.refused_publishes.alerted.insert(subject.clone());
            tracing::error!(%subject, "The local NATS server refuses the host's publishes: permissions violation");
            let message = format!(
                "the local NATS server refuses the device's publishes to `{subject}` (permissions violation): \
                 they do not reach the local bus (alerts still go upstream); give the device's user publish \
                 permission for it"
            );
            self.host_alerts
                .critical(HOST_DEGRADED, message, self.clock.now_ms())
                .await;
        }
    }

    /// The local server refused subscriptions past its limit: said once,
    /// loudly. The server names no subject, and the client holds the refused
    /// subscription as made: which input or requests get nothing is not
    /// known here (those subscribed last: the limit counts them in order).
    async fn subscriptions_past_limit(&mut self) {
        let (limit, told) = &mut self.subscription_limit;
        if *told || limit.count() == 0 {
            return;
        }
        *told = true;
        tracing::error!(
            refused = limit.count(),
            "The local NATS server refuses the host's subscriptions past its limit (maximum subscriptions exceeded)"
        );
        let message = "the local NATS server refuses the host's subscriptions past its limit (maximum subscriptions \
                       exceeded): those made last get nothing, a plugin's readings, status or control requests; \
                       raise the server's max_subscriptions (or the device user's max_subs) and restart the host"
            .to_owned();
        self.host_alerts
            .critical(HOST_DEGRADED, message, self.clock.now_ms())
            .await;
    }

    /// A plugin's ingest refused a new sensor for the plugin's sensor cap:
    /// that patient is not monitored, which a dead-letter count alone would
    /// leave unseen.
    async fn sensor_cap(&mut self, cap: SensorCap) {
        let SensorCap {
            plugin,
            sensor,
            max_sensors,
            frees_places,
        } = cap;
        tracing::error!(%plugin, %sensor, max_sensors, "A new sensor is refused: the plugin has its max_sensors");
        let until = if frees_places {
            "until one of its sensors has been silent for longer than the plugin keeps it \
             (`forgets_sensors_after_h`)"
        } else {
            "until the host restarts"
        };
        let message = format!(
            "plugin `{plugin}` takes no new sensor: it has its `max_sensors` of {max_sensors}, so the \
             readings of sensor `{sensor}` (and of any other new sensor) are not given to it \
             (dead-lettered as `too-many-sensors`) {until}"
        );
        self.host_alerts.critical(DEGRADED, message, self.clock.now_ms()).await;
    }

    /// Readings were refused for their time: said loudly, at once (and again
    /// at most hourly while it goes on). When it is every reading, it is the
    /// device clock, and no patient is monitored.
    async fn out_of_time(&mut self, refused: OutOfTime) {
        let OutOfTime {
            plugin,
            refused,
            held_for,
            sensor,
            kind,
            reason,
        } = refused;
        if let Some(held_for) = held_for {
            tracing::error!(%plugin, %sensor, held = refused, %reason, "Readings from the future held in the stream: is the device clock right?");
            let message = format!(
                "plugin `{plugin}` is not given yet readings whose time is ahead of this device's \
                 clock by more than `[ingest] max_future` ({refused} held, counted each time the \
                 stream delivers them again), the first of sensor `{sensor}`: \
                 {reason}. No new reading is taken: this device's clock is probably behind (no \
                 real-time clock, NTP not reached yet), and until it is set right no patient is \
                 monitored. The readings are held in the stream and given once the clock is right, \
                 for {} of the clock at most; dead-lettered as `future` after that",
                humantime::format_duration(held_for)
            );
            self.host_alerts.critical(DEGRADED, message, self.clock.now_ms()).await;
            return;
        }
        // Readings too old are also what a backlog is, past `max_age`: a
        // stream that kept them while the host was down that long.
        let (setting, clock, or_a_backlog) = match kind {
            DeadLetterKind::TooOld => (
                "max_age",
                "ahead",
                "; or they are a backlog older than `max_age`, kept by a JetStream stream while this \
                 host was down that long (then only the backlog is refused, and the readings that \
                 follow it are taken)",
            ),
            _ => ("max_future", "behind", ""),
        };
        tracing::error!(%plugin, %sensor, refused, %reason, "Readings refused for their time: is the device clock right?");
        let message = format!(
            "plugin `{plugin}` is not given {refused} readings whose time is too far from this \
             device's clock (dead-lettered as `{}`, `[ingest] {setting}`), the first of sensor \
             `{sensor}`: {reason}. If every sensor's readings are refused so, this device's clock is \
             probably {clock} (no real-time clock, NTP unreachable): set it right, as until then \
             those patients are not monitored{or_a_backlog}",
            kind.as_str()
        );
        self.host_alerts.critical(DEGRADED, message, self.clock.now_ms()).await;
    }

    /// Readings were refused for naming another sensor than their subject:
    /// said loudly, at once (and again at most hourly while it goes on).
    async fn sensor_mismatch(&mut self, refused: SensorMismatch) {
        let SensorMismatch {
            plugin,
            refused,
            subject,
            reason,
        } = refused;
        tracing::error!(%plugin, %subject, refused, %reason, "Readings refused for naming another sensor than their subject");
        let message = format!(
            "plugin `{plugin}` is not given {refused} readings whose payload names another sensor than \
             their subject (dead-lettered as `sensor-mismatch`), the first on `{subject}`: {reason}. If \
             that subject is a gateway that carries several sensors, list it in the plugin's \
             `payload_sensors` in the configuration file, as until then those patients are not \
             monitored; if not, something publishes readings in another sensor's name"
        );
        self.host_alerts.critical(DEGRADED, message, self.clock.now_ms()).await;
    }

    /// JetStream messages were acknowledged before their outputs were stored:
    /// said loudly, at once (and again at most hourly while it goes on).
    async fn acknowledged_early(&mut self, early: AcknowledgedEarly) {
        let AcknowledgedEarly {
            plugin,
            messages,
            waiting_at_most,
        } = early;
        let message = format!(
            "plugin `{plugin}`: {messages} sensor messages acknowledged before their outputs were \
             stored, as {waiting_at_most} already waited for the outbox, which is not storing (a full \
             or failing disk: see `outbox.waiting_for_disk`), and the stream delivers no more \
             unacknowledged: their readings reached the plugin and its alerts the local bus, their \
             outputs wait in memory, and a crash before they are stored, or the outbox giving them \
             up past 64 MiB waiting, loses those"
        );
        self.host_alerts.critical(DEGRADED, message, self.clock.now_ms()).await;
    }

    /// Readings were dropped because a plugin's queue was full: said loudly,
    /// at once (and again at most hourly while it goes on).
    async fn queue_full(&mut self, full: QueueFull) {
        let QueueFull {
            plugin,
            dropped,
            capacity,
        } = full;
        tracing::error!(%plugin, dropped, capacity, "Readings dropped: the plugin's queue is full");
        let message = format!(
            "plugin `{plugin}` is slower than its input: {dropped} readings dropped, its queue of \
             {capacity} readings being full (`[limits] queue_capacity`); they are counted in its \
             `readings_dropped`"
        );
        self.host_alerts.critical(DEGRADED, message, self.clock.now_ms()).await;
    }

    /// Messages from the local bus were dropped before ingest took them (the
    /// client's buffer or ingest's pending limits were full): said loudly, at once, and again at
    /// most once every [`ingest::RETELL`] while it goes on. Which plugins'
    /// readings they were cannot be told.
    async fn client_dropped(&mut self) {
        let total = self
            .ingest_stats
            .dropped_by_client
            .load(std::sync::atomic::Ordering::Relaxed);
        let (counted, retell) = &mut self.client_drops;
        let new = total.saturating_sub(*counted);
        *counted = total;
        let Some(dropped) = retell.occurred(new, Instant::now()) else {
            return;
        };
        let message = format!(
            "{dropped} messages from the local bus were dropped before ingest took them ({total} since start): \
             ingest could not keep up with the bus; which plugins' readings they held cannot be told \
             (`ingest.dropped_by_client` in the status)"
        );
        self.host_alerts
            .critical(HOST_DEGRADED, message, self.clock.now_ms())
            .await;
    }

    /// The outbox's disk refusing writes (full, an I/O error), and outputs
    /// given up: said loudly on the local bus, at once. While the disk
    /// refuses, nothing reaches the cloud, and past 64 MiB waiting the oldest
    /// outputs are given up; those never reach it (their alerts went out
    /// locally). Told once a refusal; given-up outputs at once, then at most
    /// once every [`ingest::RETELL`].
    async fn check_outbox(&mut self) {
        let refusing = self.writer.refusing.load(std::sync::atomic::Ordering::Relaxed);
        let (refused_before, retell) = &mut self.refusal;
        let began = refusing && !*refused_before;
        let ended = !refusing && *refused_before;
        *refused_before = refusing;
        // Told only while it refuses: at once, then at most hourly.
        let told = refusing
            .then(|| retell.occurred(u64::from(began), Instant::now()))
            .flatten();
        if let Some(refusals) = told {
            let waiting = self.writer.waiting_entries.load(std::sync::atomic::Ordering::Relaxed);
            let message = format!(
                "the outbox's disk refuses writes (full, or an I/O error; {refusals} time(s) since the last \
                 telling): {waiting} outputs wait in memory, in order, to be stored once it takes writes again; \
                 nothing reaches the cloud meanwhile, and past {} MiB waiting the oldest are given up. Alerts \
                 still go out on the local bus at once (`outbox.waiting_for_disk` in the status)",
                crate::outbox::WAITING_MAX_BYTES >> 20
            );
            self.host_alerts
                .critical(HOST_DEGRADED, message, self.clock.now_ms())
                .await;
        }
        if ended {
            tracing::warn!("The outbox's disk takes writes again: what waited is stored");
        }
        let total = self.plugins.outbox_failures();
        let (counted, retell) = &mut self.store_failures;
        let new = total.saturating_sub(*counted);
        *counted = total;
        if let Some(lost) = retell.occurred(new, Instant::now()) {
            let message = format!(
                "{lost} outputs could not be stored in the outbox ({total} since start): their alerts went out \
                 on the local bus, but they will never reach the cloud (`outbox_failures` of each plugin in the \
                 status)"
            );
            self.host_alerts
                .critical(HOST_DEGRADED, message, self.clock.now_ms())
                .await;
        }
    }

    /// A task ended before shutdown.
    async fn task_ended(&mut self, ended: Ended) {
        // An ingest ends well only when stopped: its plugin was removed (an
        // undeployment, a failed deployment), not an input lost.
        if let (Task::Ingest(plugin), Ok(())) = (&ended.task, &ended.outcome) {
            tracing::debug!(%plugin, "An ingest stopped");
            return;
        }
        let reason = match &ended.outcome {
            Ok(()) => "ended".to_owned(),
            Err(error) => crate::error_chain(error),
        };
        let name = ended.task.name();
        tracing::error!(task = %name, %reason, "A host task ended before shutdown");
        let (code, message) = match &ended.task {
            Task::Ingest(plugin) => {
                if let Some(input) = self.inputs.lock().ok().and_then(|inputs| inputs.get(plugin).cloned()) {
                    input.lost(format!("ingest stopped for good: {reason}"));
                }
                (
                    DEGRADED,
                    format!("plugin `{plugin}` gets no readings: its ingest stopped for good: {reason}"),
                )
            }
            other => {
                if let Ok(mut tasks) = self.tasks.lock() {
                    tasks.insert(name.clone(), reason.clone());
                }
                match other {
                    Task::Ticker => (
                        HOST_DEGRADED,
                        format!(
                            "the ticker stopped ({reason}): plugins get no clock ticks, time-based alerts no longer fire"
                        ),
                    ),
                    Task::Upstream => (
                        HOST_DEGRADED,
                        format!("upstream delivery stopped ({reason}): outputs stay in the outbox"),
                    ),
                    // Nothing a clinician loses: the outbox's size limit
                    // still holds; the status is for operators.
                    _ => return,
                }
            }
        };
        self.host_alerts.critical(code, message, self.clock.now_ms()).await;
    }
}

/// Start every task of `device`, then own them until `shutdown` completes;
/// returns what shutdown stops, and what the final status is gathered from.
pub(super) async fn serve(
    config: &RunConfig,
    device: Device,
    shutdown: impl Future<Output = ()>,
) -> Result<(Parts, Arc<StatusSources>), RunError> {
    let (stop, stopped) = watch::channel(false);
    let (ended_sender, mut ended) = mpsc::unbounded_channel();
    let (event_sender, mut events) = mpsc::unbounded_channel();
    let ingest_stats = device.ingest_stats.clone();
    let plugins = Arc::new(Plugins::new(
        config,
        device.subjects.clone(),
        ingest::subscriptions::Subscriber {
            client: device.local.clone(),
            refused: device.refused_subscriptions.clone(),
        },
        device.clock.clone(),
        ingest_stats.clone(),
        event_sender.clone(),
        outbox_refusing(device.writer.stats()),
        ended_sender.clone(),
        initial_sources(&device),
        device.compiling.names(),
    ));
    let count = device.plugins.len();
    for started in device.plugins {
        plugins.add(started, Arc::default()).await?;
    }
    let ticker = spawn_owned(
        Task::Ticker,
        &ended_sender,
        run_ticker(device.clock.clone(), config.tick, plugins.clone(), stopped.clone()),
    );
    // The age limit: checked at once (entries left from an earlier run), then periodically.
    let every = expiry::expiry_interval(config.outbox.max_age_ms);
    let expiry = spawn_owned(
        Task::Expiry,
        &ended_sender,
        expiry::run_expiry(device.outbox.clone(), every, stopped.clone()).map(Ok::<(), TaskError>),
    );
    let upstream_stats = Arc::new(UpstreamStats::default());
    let upstream = config.upstream.clone().map(|upstream_config| {
        let run = upstream::run_upstream(
            upstream_config,
            device.subjects.clone(),
            device.outbox.clone(),
            device.outbox_written.clone(),
            upstream_stats.clone(),
            stopped.clone(),
        );
        spawn_owned(Task::Upstream, &ended_sender, run)
    });
    let tasks = Arc::new(Mutex::new(BTreeMap::new()));
    let generations = Arc::new(Mutex::new(BTreeMap::new()));
    let control = Arc::new(ControlStats::default());
    let sources = Arc::new(StatusSources {
        subjects: device.subjects.clone(),
        started: device.started_at,
        clock: device.clock.clone(),
        upstream: upstream_stats,
        outbox: device.outbox.clone(),
        outbox_reset: device.outbox_reset.clone(),
        outbox_in_memory: device.outbox_in_memory.clone(),
        writer: device.writer.stats(),
        ingest: ingest_stats,
        control: control.clone(),
        plugins: plugins.statuses.clone(),
        tasks: tasks.clone(),
        generations: generations.clone(),
        refused_publishes: device.refused_publishes.clone(),
        subscription_limit: device.subscription_limit.clone(),
    });
    let current = {
        let sources = sources.clone();
        Arc::new(move || sources.status())
    };
    // Bound before the status answers: once it does, the endpoint is up.
    let metrics_task = match &config.metrics {
        Some(metrics) => {
            let server = MetricsServer::bind(metrics).await.map_err(RunError::Metrics)?;
            if let Ok(address) = server.local_addr() {
                tracing::info!(%address, "Serving metrics on http://{address}/metrics");
            }
            let gather = {
                let sources = sources.clone();
                Arc::new(move || sources.scrape())
            };
            Some(spawn_owned(
                Task::Metrics,
                &ended_sender,
                server.serve(gather, stopped.clone()),
            ))
        }
        None => None,
    };
    let (answering, status_answers) = tokio::sync::oneshot::channel();
    let status_task = spawn_owned(
        Task::Status,
        &ended_sender,
        crate::bus::status::run_status(
            device.local.clone(),
            device.subjects.status(),
            control,
            current,
            answering,
            stopped.clone(),
        ),
    );
    let telemetry_task = config.telemetry.map(|telemetry| {
        let upstream = config.upstream.is_some().then(|| super::telemetry::Upstream {
            outbox: device.outbox.clone(),
            written: device.outbox_written.clone(),
        });
        let run = super::telemetry::run_telemetry(
            telemetry.interval,
            sources.clone(),
            device.local_bus.clone(),
            upstream,
            stopped.clone(),
        );
        spawn_owned(Task::Telemetry, &ended_sender, run.map(Ok::<(), TaskError>))
    });
    let deploy = match &config.deploy {
        Some(settings) => {
            let run = super::deploy::run_deploy(
                settings.clone(),
                device.loader.clone(),
                plugins.clone(),
                device.local.clone(),
                generations,
                stopped.clone(),
            );
            Some(spawn_owned(Task::Deploy, &ended_sender, run))
        }
        None => None,
    };
    tracing::info!(
        device = %config.device,
        plugins = count,
        refused = device.refused.len(),
        compiling = device.compiling.pending().count(),
        "Edgewise is running"
    );

    // Ready for the service manager once every plugin started is subscribed
    // and the status responder too (or it failed: the host runs without),
    // and the plugins' first `init` has ended (bounded);
    // then watched (a task owned like the others: ended on `stop`, before
    // the workers are).
    // A shutdown asked for meanwhile (SIGTERM at start) ends the wait: the
    // host stops then, never having said it was ready.
    tokio::pin!(shutdown);
    let mut stopped_early = false;
    let service_manager = ServiceManager::from_env();
    if let Some(manager) = service_manager.clone() {
        tokio::select! {
            () = async {
                let _ = status_answers.await;
                manager.ready(&plugins).await;
            } => {}
            () = &mut shutdown => stopped_early = true,
        }
        let stall_limit = stall_limit(config);
        let watch = manager.watch(plugins.clone(), stall_limit, stopped.clone());
        spawn_owned(Task::Watchdog, &ended_sender, watch);
    }

    let mut owner = Owner {
        host_alerts: device.host_alerts,
        clock: device.clock,
        inputs: plugins.inputs.clone(),
        tasks,
        plugins: plugins.clone(),
        loader: device.loader,
        ingest_stats: device.ingest_stats.clone(),
        client_drops: (0, ingest::Retell::default()),
        writer: device.writer.stats(),
        refusal: (false, ingest::Retell::default()),
        store_failures: (0, ingest::Retell::default()),
        refused_publishes: PublishRefusals {
            violations: device.refused_publishes.clone(),
            looked: 0,
            own: format!("edgewise.{}.", device.subjects.device()),
            alerted: BTreeSet::new(),
        },
        subscription_limit: (device.subscription_limit.clone(), false),
    };
    let mut compiling = device.compiling;
    let shutdown = async {
        if !stopped_early {
            shutdown.await;
        }
    };
    owner.own(shutdown, &mut events, &mut ended, &mut compiling).await;
    if let Some(manager) = &service_manager {
        manager.stopping();
    }
    // Deployment stops first: nothing is added to the set while it is taken.
    if let Some(deploy) = deploy {
        deploy.abort();
        let _ = deploy.await;
    }
    let taken = plugins.take_all();
    let parts = Parts {
        stop,
        ingest_stops: taken.stops,
        ingest_tasks: taken.ingest,
        ticker,
        expiry,
        workers: taken.workers,
        writer: device.writer,
        outbox_written: device.outbox_written,
        upstream,
        status_task,
        metrics_task,
        telemetry_task,
        local: device.local,
        ended,
    };
    Ok((parts, sources))
}

/// How long a worker may take no step while work waits before the watchdog
/// holds the host stuck: twice the longest call any plugin may make
/// (`[host_limits] call_deadline`, 5 s by default), and 10 s more for the
/// host's own work between two calls (a state saved, an instance made). A
/// slow call is the plugin's, ended by its deadline and handled by its
/// supervision; only a worker standing still past that is the host's.
fn stall_limit(config: &RunConfig) -> Duration {
    config.host_limits.call_deadline * 2 + Duration::from_secs(10)
}

/// Where the readings of `plugin` come from. Core NATS subscriptions are
/// made now, before the status responder answers: a reading published after
/// a status reply is never missed.
pub(super) async fn input(
    config: &RunConfig,
    local: &ingest::subscriptions::Subscriber,
    name: &str,
    filters: &[String],
) -> Result<Input, RunError> {
    Ok(match &config.source {
        Source::Core => {
            let made = ingest::subscriptions::subscribe(local, filters)
                .await
                .map_err(|source| RunError::Subscribe {
                    plugin: name.to_owned(),
                    source: Box::new(source),
                })?;
            Input::Core {
                bus: local.clone(),
                subscriptions: Some(made),
            }
        }
        Source::JetStream { stream } => Input::JetStream {
            stream: stream.clone(),
            consumer: format!("edgewise-{}-{name}", config.device),
        },
    })
}

/// Whether the outbox's disk refuses writes now: what JetStream ingest asks
/// before it acknowledges messages early.
fn outbox_refusing(writer: Arc<WriterStats>) -> OutboxRefusing {
    Arc::new(move || writer.refusing.load(std::sync::atomic::Ordering::Relaxed))
}

/// The plugins refused at start and those still compiling, as the status
/// shows them.
fn initial_sources(device: &Device) -> Vec<PluginSource> {
    // One entry a name: a plugin compiling in place of a refused one of its
    // name stands for it (as a running one would).
    let refused = device
        .refused
        .iter()
        .filter(|refusal| device.compiling.pending().all(|pending| pending.name != refusal.name))
        .map(refused_source);
    let compiling = device.compiling.pending().map(compiling_source);
    refused.chain(compiling).collect()
}

/// A plugin still compiling, as the status shows it.
fn compiling_source(pending: &Pending) -> PluginSource {
    PluginSource {
        name: pending.name.clone(),
        version: pending.version.clone(),
        digest: pending.digest.clone(),
        stats: Arc::new(PluginStats::compiling()),
        input: None,
    }
}

/// A refused plugin, as the status shows it.
fn refused_source(refusal: &Refused) -> PluginSource {
    PluginSource {
        name: refusal.name.clone(),
        version: refusal.version.clone(),
        digest: String::new(),
        stats: Arc::new(PluginStats::refused(&refusal.reason.to_string())),
        input: None,
    }
}

/// Send `Tick(now)` to every plugin every `tick` of clock time, until `stop`.
/// A plugin whose queue is full misses that tick (the next one covers it).
async fn run_ticker(
    clock: Clock,
    tick: Duration,
    plugins: Arc<Plugins>,
    stop: watch::Receiver<bool>,
) -> Result<(), TaskError> {
    crate::clock::every(clock.real_interval(tick), stop, || {
        let now = clock.tick_ms();
        for queue in &plugins.queues() {
            let _ = queue.try_send(Work::Tick(now));
        }
        std::future::ready(())
    })
    .await;
    Ok(())
}
