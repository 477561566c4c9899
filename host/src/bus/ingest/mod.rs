//! Ingest: the input of one plugin ([`subscriptions`]: core NATS, or
//! [`consumer`]: a durable JetStream consumer), decoded into readings, judged
//! by [`Admission`], and queued for its worker as a [`Batch`]. Bad messages and
//! implausible readings go to the dead-letter subject with the reason; they
//! never stop the pipeline.
//!
//! An ingest that ends before the host stops returns an [`IngestError`]: its
//! owner (`run::serve`) shows the plugin `degraded` and starts it again.

pub mod consumer;
pub mod pending;
pub mod queue;
pub mod subscriptions;

pub use queue::ReadingsQueue;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};

use super::admission::{Admission, DeadLetterKind, Refusal};
use super::local::{LocalBus, LocalPublishError};
use super::payload;
use super::subjects::Subjects;
use crate::clock::Clock;
use crate::model::Reading;

/// Readings for a plugin (each sensor's in arrival order), and optionally
/// who to tell once their outputs are in the outbox (JetStream ingest
/// acknowledges the messages only then). The worker's queue takes anything
/// made from a batch (`From<Batch>`), so ingest does not know the worker.
#[derive(Debug)]
pub struct Batch {
    /// The readings.
    pub readings: Vec<Reading>,
    /// For JetStream ingest, what names each reading's message (its stream
    /// sequence and storage time, mixed; one per reading); empty for core
    /// NATS. A message logged before a crash, but not acknowledged, comes
    /// again: the worker knows it by this.
    pub sources: Vec<u64>,
    /// Told once the outputs of these readings are durable; dropped unsent
    /// otherwise (the messages then stay unacknowledged).
    pub done: Option<oneshot::Sender<()>>,
    /// Told when the worker takes the readings to give them to the running
    /// plugin (or knows them as given already), before their outputs are
    /// durable; dropped unsent if they are dropped. JetStream ingest waits for it before it takes
    /// more: while the plugin is down the stream keeps the messages, not the
    /// worker's hold; while the disk refuses writes readings still flow.
    pub given: Option<oneshot::Sender<()>>,
    /// The room the batch takes in its worker's queue (see [`queue`]),
    /// given back when the worker takes it off ([`Batch::off_the_queue`]);
    /// `None` outside the queue.
    pub room: Option<queue::Room>,
}

impl Batch {
    /// `readings` readings of one sensor, for tests.
    #[cfg(test)]
    pub(crate) fn of(readings: usize) -> Batch {
        let reading = Reading {
            sensor: "cgm.p1".into(),
            timestamp_ms: 0,
            value: 100.0,
            unit: "mg/dL".into(),
        };
        Batch {
            readings: vec![reading; readings],
            sources: Vec::new(),
            done: None,
            given: None,
            room: None,
        }
    }

    /// The batch, taken off its worker's queue: its room there is free for
    /// more readings. (What the worker holds while its plugin is down is
    /// bounded by the hold, `buffer_readings`.)
    pub fn off_the_queue(mut self) -> Batch {
        self.room = None;
        self
    }
}

/// Why a plugin's ingest ended before the host stopped.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A core NATS subscription could not be made.
    #[error("ingest cannot subscribe to `{filter}`")]
    Subscribe {
        /// The subject filter.
        filter: String,
        /// The error.
        #[source]
        source: async_nats::SubscribeError,
    },
    /// The core NATS subscriptions ended (the connection was closed).
    #[error("ingest: the subscriptions ended")]
    SubscriptionsEnded,
    /// The local server refused a core NATS subscription (a permissions
    /// violation): it sends it nothing.
    #[error("ingest: the local server refused the subscription to `{filter}` (permissions violation)")]
    Refused {
        /// The subject filter.
        filter: String,
    },
    /// The plugin's worker no longer takes readings.
    #[error("ingest: the plugin's worker has stopped")]
    WorkerStopped,
    /// The durable consumer could not be made or found.
    #[error("ingest: JetStream consumer {consumer} on stream {stream}")]
    Consumer {
        /// The consumer.
        consumer: String,
        /// The stream.
        stream: String,
        /// The error.
        #[source]
        source: async_nats::jetstream::stream::ConsumerError,
    },
    /// The durable consumer reads other subjects than the plugin's and
    /// cannot be changed to read the plugin's.
    #[error("ingest: JetStream consumer {consumer}: cannot change it to read the plugin's subscriptions")]
    Refilter {
        /// The consumer.
        consumer: String,
        /// The error.
        #[source]
        source: async_nats::jetstream::stream::ConsumerUpdateError,
    },
    /// The consumer's messages could not be read.
    #[error("ingest: JetStream consumer {consumer}: cannot read its messages")]
    Messages {
        /// The consumer.
        consumer: String,
        /// The error.
        #[source]
        source: async_nats::jetstream::consumer::StreamError,
    },
    /// The consumer is gone (deleted, or its stream deleted) or refuses pulls.
    #[error("ingest: JetStream consumer {consumer} lost")]
    ConsumerLost {
        /// The consumer.
        consumer: String,
        /// The error.
        #[source]
        source: async_nats::jetstream::consumer::pull::MessagesError,
    },
    /// The consumer's message stream ended.
    #[error("ingest: JetStream consumer {consumer}: its messages ended")]
    ConsumerEnded {
        /// The consumer.
        consumer: String,
    },
}

impl IngestError {
    /// Whether starting the ingest again can help: not when the worker is gone.
    pub fn retry(&self) -> bool {
        !matches!(self, IngestError::WorkerStopped)
    }

    /// The filter the bus refused, if that is the error: a fault of what
    /// the plugin reads (or of the device's permissions), not of the bus
    /// being away.
    pub fn refused(&self) -> Option<&str> {
        match self {
            IngestError::Refused { filter } => Some(filter),
            _ => None,
        }
    }
}

/// Whether one plugin's input flows, and by which filters, shared by its
/// ingest (which says when it is taking messages), its owner (which says
/// when it ended), the status, and the probation of a version that changes
/// the filters (which passes only once they are read).
#[derive(Debug, Default)]
pub struct IngestHealth {
    flow: Mutex<Flow>,
    /// Times the input was lost (episodes, not retries).
    pub failures: AtomicU64,
}

/// What [`IngestHealth`] knows of the input now.
#[derive(Debug, Default)]
struct Flow {
    /// Why the input is gone, while it is (the plugin is then `degraded`).
    lost: Option<String>,
    /// The subject filters it reads, as it last took messages.
    filters: Vec<String>,
    /// Refusals of a filter by the bus, kept when the input flows again.
    refusals: Refusals,
}

/// Times the bus refused one of the plugin's filters (each attempt), and the
/// last time: the filter and why ([`IngestHealth::refusals`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Refusals {
    /// Refusals so far.
    pub count: u64,
    /// The last one: the filter refused, and why.
    pub last: Option<(String, String)>,
}

impl IngestHealth {
    /// The input is gone, for `reason`. Returns whether it was flowing until
    /// now (a new episode: counted once, however many retries follow).
    pub fn lost(&self, reason: String) -> bool {
        self.lose(reason, None)
    }

    /// The input is gone because the bus refused `filter` (`reason`), as
    /// [`IngestHealth::lost`], and counted as a refusal.
    pub fn refused(&self, filter: &str, reason: String) -> bool {
        self.lose(reason, Some(filter))
    }

    fn lose(&self, reason: String, refused: Option<&str>) -> bool {
        let Ok(mut flow) = self.flow.lock() else { return false };
        let new = flow.lost.is_none();
        if let Some(filter) = refused {
            flow.refusals.count += 1;
            flow.refusals.last = Some((filter.to_owned(), reason.clone()));
        }
        flow.lost = Some(reason);
        if new {
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
        new
    }

    /// The input flows (again): ingest is taking messages, by `filters`.
    pub fn flowing(&self, plugin: &str, filters: &[String]) {
        let Ok(mut flow) = self.flow.lock() else { return };
        if flow.lost.take().is_some() {
            tracing::warn!(plugin, "Ingest restored: the plugin takes readings again");
        }
        if flow.filters != filters {
            flow.filters = filters.to_vec();
        }
    }

    /// Why the input is gone, if it is.
    pub fn lost_reason(&self) -> Option<String> {
        self.flow.lock().ok().and_then(|flow| flow.lost.clone())
    }

    /// The bus's refusals of the plugin's filters so far. A core NATS
    /// subscription's refusal comes after the ingest took it for read (and
    /// the input flows again by it for a moment at each retry): a count,
    /// unlike [`IngestHealth::lost_reason`], misses none.
    pub fn refusals(&self) -> Refusals {
        self.flow.lock().map(|flow| flow.refusals.clone()).unwrap_or_default()
    }

    /// Whether the input flows by `filters` now.
    pub fn reads(&self, filters: &[String]) -> bool {
        self.flow
            .lock()
            .is_ok_and(|flow| flow.lost.is_none() && flow.filters == filters)
    }
}

/// Counters of ingest, for the status.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Messages received.
    pub messages: AtomicU64,
    /// Dead letters published: one per refused message, or per reason for
    /// the refused readings of a message.
    pub deadlettered: AtomicU64,
    /// Dead letters by [`DeadLetterKind`] (indexed by [`DeadLetterKind::index`]).
    pub by_reason: [AtomicU64; DeadLetterKind::ALL.len()],
    /// Messages from the local bus dropped before ingest took them: the
    /// client's subscription buffer was full (as far as the client reports
    /// it: a lower bound, the client reports at most 128 drops at a time), or
    /// ingest's [`pending`] limits were reached (ingest slower than the bus).
    pub dropped_by_client: AtomicU64,
    /// Deliveries of JetStream messages held in the stream (negatively
    /// acknowledged, to come again later) because their readings are from
    /// the future of the host clock, while no new reading is taken: a clock
    /// behind, not yet set right (`consumer.rs`).
    pub held_for_clock: AtomicU64,
    /// Notified at each of those drops: the owner raises `host-degraded`
    /// (at the first, then at most once every [`RETELL`]).
    pub client_dropped: tokio::sync::Notify,
}

impl IngestStats {
    /// Count one message dropped before ingest took it, wake the owner
    /// (who raises `host-degraded`) and log at the 1st, 2nd, 4th, 8th, ...
    pub fn dropped_before_ingest(&self) {
        let dropped = self.dropped_by_client.fetch_add(1, Ordering::Relaxed) + 1;
        self.client_dropped.notify_one();
        if dropped.is_power_of_two() {
            tracing::error!(
                dropped,
                "Messages from the local bus were dropped before ingest took them: ingest could not keep up"
            );
        }
    }
}

/// Dead letters logged per [`LOG_WINDOW`] and ingest task at most: a flood
/// of bad messages must not flood the log (a full stderr pipe stops the host).
const LOGS_PER_WINDOW: u32 = 20;
/// See [`LOGS_PER_WINDOW`].
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// The first wait before ingest is started again after a failure; it
/// doubles with each failure in a row, up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest wait between two attempts.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

/// Where one plugin's readings come from.
pub enum Input {
    /// Core NATS subscriptions to the [`Rules`]' filters; the first ones made
    /// before the host answers its first status request
    /// ([`subscriptions::subscribe`]).
    Core {
        /// The local bus to subscribe on.
        bus: subscriptions::Subscriber,
        /// Subscriptions already made, and their filters, for the next
        /// attempt.
        subscriptions: Option<subscriptions::Read>,
    },
    /// A durable consumer `consumer` on the JetStream `stream`.
    JetStream {
        /// The sensor stream.
        stream: String,
        /// The plugin's durable consumer.
        consumer: String,
    },
}

/// What a plugin's ingest reads (its subject filters) and lets in (its
/// admission rules). A deployment that swaps in a version with other ones
/// changes them while the ingest runs (`run::plugins::Plugins::rewire`):
/// the ingest goes on, so nothing it holds or has pulled is given up.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The subject filters.
    pub filters: Vec<String>,
    /// The admission rules; the sensors the ingest has admitted keep their
    /// places under new ones ([`Admission::take_places_of`]).
    pub admission: Admission,
}

/// The next change of `rules`; never, once their sender is gone (the ingest
/// is then being stopped).
async fn rules_changed(rules: &mut watch::Receiver<Rules>) -> Rules {
    if rules.changed().await.is_err() {
        std::future::pending::<()>().await;
    }
    rules.borrow_and_update().clone()
}

impl Ingest {
    /// Judge readings by `admission` from now on, the sensors admitted
    /// keeping their places.
    fn readmit(&mut self, admission: Admission) {
        let old = std::mem::replace(&mut self.admission, admission);
        self.admission.take_places_of(old);
    }
}

/// Whether the outbox is refusing writes now (a full or failing disk).
pub type OutboxRefusing = Arc<dyn Fn() -> bool + Send + Sync>;

/// What a plugin's ingest tells its owner (`run::serve`), at once.
#[derive(Debug)]
pub enum IngestEvent {
    /// An attempt failed; the ingest starts again.
    Failed(Failure),
    /// A new sensor was refused: the plugin has its `max_sensors`.
    SensorCap(SensorCap),
    /// Readings were dropped: the plugin's queue was full.
    QueueFull(QueueFull),
    /// Readings were refused for their time, far from the host clock's.
    OutOfTime(OutOfTime),
    /// Readings were refused because their payload names another sensor
    /// than their subject, outside the plugin's `payload_sensors`.
    SensorMismatch(SensorMismatch),
    /// JetStream messages were acknowledged before their outputs were stored.
    AcknowledgedEarly(AcknowledgedEarly),
}

/// JetStream messages acknowledged before their outputs were stored, because
/// more waited than the consumer lets wait unacknowledged (told at the first,
/// then at most once every [`RETELL`] while it goes on): the outbox is not
/// storing (a full or failing disk). Their readings reached the plugin and
/// its alerts the local bus; their outputs wait in memory, and a crash
/// before they are stored loses them, as the stream will not deliver those
/// messages again.
#[derive(Debug)]
pub struct AcknowledgedEarly {
    /// The plugin.
    pub plugin: String,
    /// Messages acknowledged early since the owner was last told.
    pub messages: u64,
    /// How many may wait unacknowledged.
    pub waiting_at_most: usize,
}

/// Readings refused because their time is further ahead of the host clock
/// than `max_future` or behind it than `max_age` (told at the first refusal,
/// then at most once every [`RETELL`] while refusals go on). Every reading
/// of every sensor refused so is what a wrong device clock looks like (a
/// device without a real-time clock booted offline, NTP unreachable): no
/// patient is monitored, which dead-letter counts alone would leave unseen.
#[derive(Debug)]
pub struct OutOfTime {
    /// The plugin.
    pub plugin: String,
    /// Readings refused so since the owner was last told.
    pub refused: u64,
    /// `Some`: not refused yet, but held in the JetStream stream, to come
    /// again while the host clock is wrong for at most this long (of the
    /// clock); refused after that.
    pub held_for: Option<Duration>,
    /// The sensor of the first of them.
    pub sensor: String,
    /// `future` or `too-old`, of the first of them.
    pub kind: DeadLetterKind,
    /// Why the first of them was refused (its time, the host clock's).
    pub reason: String,
}

/// Readings refused because their payload names another sensor than their
/// subject, on a subject that is not among the plugin's `payload_sensors`
/// (told at the first refusal, then at most once every [`RETELL`] while
/// refusals go on). A gateway that carries several patients' sensors, left
/// out of `payload_sensors`, looks so: every one of its readings refused,
/// those patients not monitored, which dead-letter counts alone would leave
/// unseen. (Or someone publishes in another sensor's name.)
#[derive(Debug)]
pub struct SensorMismatch {
    /// The plugin.
    pub plugin: String,
    /// Readings refused so since the owner was last told.
    pub refused: u64,
    /// The subject of the first of them.
    pub subject: String,
    /// Why the first of them was refused (the sensors named).
    pub reason: String,
}

/// Readings of core NATS messages dropped because the plugin's queue was
/// full: the plugin is slower than its input (told at the first drop, then
/// at most once every [`RETELL`] while drops go on).
#[derive(Debug)]
pub struct QueueFull {
    /// The plugin.
    pub plugin: String,
    /// Readings dropped since the owner was last told.
    pub dropped: u64,
    /// The queue's capacity, in readings (`[limits] queue_capacity`).
    pub capacity: u32,
}

/// A new sensor's readings refused because the plugin has its `max_sensors`
/// (told at the first refusal, then at most once every [`RETELL`]
/// while refusals go on): a patient the plugin does not monitor.
#[derive(Debug)]
pub struct SensorCap {
    /// The plugin.
    pub plugin: String,
    /// The sensor refused.
    pub sensor: String,
    /// The plugin's limit.
    pub max_sensors: usize,
    /// Whether places are freed as sensors fall silent (the plugin forgets
    /// them), or only by a restart.
    pub frees_places: bool,
}

/// How often a condition that goes on (a sensor cap refusing new sensors, a
/// full queue dropping readings) is told again: once is not enough for a
/// ward that fills up over days, every refused reading would be a flood.
pub const RETELL: Duration = Duration::from_secs(3600);

/// A condition that goes on, told at its first occurrence, then at most once
/// every [`RETELL`] with every occurrence since the last telling.
#[derive(Debug, Default)]
pub struct Retell {
    /// When it was last told.
    told: Option<Instant>,
    /// Occurrences since.
    untold: u64,
}

impl Retell {
    /// `count` more occurrences at `now`: how many to tell now (every one
    /// since the last telling), or `None` if it was told less than
    /// [`RETELL`] ago (or nothing happened).
    pub fn occurred(&mut self, count: u64, now: Instant) -> Option<u64> {
        self.untold = self.untold.saturating_add(count);
        let recent = self
            .told
            .is_some_and(|told| now.saturating_duration_since(told) < RETELL);
        if self.untold == 0 || recent {
            return None;
        }
        self.told = Some(now);
        Some(std::mem::take(&mut self.untold))
    }
}

/// A failed attempt of a plugin's ingest, as its owner hears of it, at once.
#[derive(Debug)]
pub struct Failure {
    /// The plugin.
    pub plugin: String,
    /// What failed.
    pub error: IngestError,
    /// Whether the input was flowing until now (the first failure of an
    /// episode, which is alerted; the retries after it are only logged).
    pub new_episode: bool,
    /// When the next attempt starts.
    pub retry_in: Duration,
}

/// Feed `queue` from `input` by `rules` until `stop`, starting ingest again
/// after each failure (waiting [`RETRY_FIRST`], doubling up to
/// [`RETRY_MAX`]): a JetStream consumer deleted from outside, or its stream
/// deleted and made again, is taken up again without a restart of the host.
/// Each failure goes to the owner at once ([`IngestEvent::Failed`]), and the
/// plugin shows `degraded` (its [`IngestHealth`]) until its input flows
/// again. New `rules` apply while it runs; when they cannot (a subscription
/// that cannot be made, the consumer's filters refused), that is such a
/// failure, and the attempts after it read by the new rules (rules newer
/// still end the wait for the next attempt). A core NATS subscription the
/// server refuses after it was made is told the same way, the other
/// subscriptions read meanwhile ([`subscriptions::run`]). Ends with an error
/// only when starting again cannot help (the worker is gone).
pub async fn run<W: From<Batch>>(
    mut ingest: Ingest,
    mut input: Input,
    mut rules: watch::Receiver<Rules>,
    queue: ReadingsQueue<W>,
    batch_max: usize,
    mut stop: watch::Receiver<bool>,
) -> Result<(), IngestError> {
    let mut retry_in = RETRY_FIRST;
    loop {
        let attempt = match &mut input {
            Input::Core {
                bus,
                subscriptions: made,
            } => {
                let subscribed = match made.take() {
                    Some(made) => Ok(made),
                    None => {
                        let filters = rules.borrow().filters.clone();
                        subscriptions::subscribe(bus, &filters).await
                    }
                };
                match subscribed {
                    Ok(read) => {
                        match subscriptions::run(&mut ingest, bus, read, &mut rules, &queue, batch_max, &mut stop).await
                        {
                            // Made again (for new filters, or after a refusal):
                            // read from the next attempt, at once.
                            Ok(Some(resubscribed)) => {
                                *made = Some(resubscribed);
                                continue;
                            }
                            Ok(None) => Ok(()),
                            Err(error) => Err(error),
                        }
                    }
                    Err(error) => Err(error),
                }
            }
            Input::JetStream { stream, consumer: name } => {
                consumer::run(&mut ingest, stream, name, &mut rules, &queue, batch_max, &mut stop).await
            }
        };
        let error = match attempt {
            Ok(()) => return Ok(()),
            Err(_) if *stop.borrow() => return Ok(()), // Ended as the host stops.
            Err(error) if !error.retry() => return Err(error),
            Err(error) => error,
        };
        let new_episode = ingest.health.lost(crate::error_chain(&error));
        if new_episode {
            retry_in = RETRY_FIRST;
        }
        let _ = ingest.events.send(IngestEvent::Failed(Failure {
            plugin: ingest.plugin.clone(),
            error,
            new_episode,
            retry_in,
        }));
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            _ = tokio::time::sleep(retry_in) => {}
            // New rules (a version rolled back from subjects the bus
            // refused, say) are tried at once.
            new = rules_changed(&mut rules) => ingest.readmit(new.admission),
        }
        retry_in = (retry_in * 2).min(RETRY_MAX);
    }
}

/// What ingest needs for every message of one plugin.
pub struct Ingest {
    /// The plugin's name (for logs).
    pub plugin: String,
    /// The local bus.
    pub client: async_nats::Client,
    /// The device's subjects (the dead-letter subject).
    pub subjects: Subjects,
    /// Shared counters.
    pub stats: Arc<IngestStats>,
    /// The plugin's admission rules.
    pub admission: Admission,
    /// The host clock the readings' times are judged against.
    pub clock: Clock,
    /// Whether the input flows.
    pub health: Arc<IngestHealth>,
    /// The owner, told of failures and of a full sensor cap.
    events: mpsc::UnboundedSender<IngestEvent>,
    /// Whether the outbox is refusing writes now (a full or failing disk):
    /// only then are JetStream messages acknowledged before their outputs
    /// are stored.
    outbox_refusing: OutboxRefusing,
    /// New sensors refused for the sensor cap, as told to the owner.
    cap_refusals: Retell,
    /// Readings dropped for a full queue, as told to the owner.
    queue_drops: Retell,
    /// Readings refused for their time, as told to the owner.
    out_of_time: Retell,
    /// Readings held in the stream for their time, as told to the owner.
    held_for_clock: Retell,
    /// Readings refused for naming another sensor, as told to the owner.
    mismatches: Retell,
    /// Where dead letters go: the local bus, never waited on for long (a
    /// refused reading must not hold up the readings after it while the
    /// server is away).
    deadletters: LocalBus,
    /// JetStream messages acknowledged early, as told to the owner.
    acknowledged_early: Retell,
    log: LogBudget,
}

impl Ingest {
    /// Ingest of the plugin `admission` judges readings for (on `clock`),
    /// through `client`; its failures and full sensor cap told to `events`;
    /// `outbox_refusing` says when the outbox refuses writes.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: async_nats::Client,
        subjects: Subjects,
        stats: Arc<IngestStats>,
        admission: Admission,
        clock: Clock,
        health: Arc<IngestHealth>,
        events: mpsc::UnboundedSender<IngestEvent>,
        outbox_refusing: OutboxRefusing,
    ) -> Ingest {
        Ingest {
            plugin: admission.plugin().to_owned(),
            deadletters: LocalBus::new(client.clone()),
            client,
            subjects,
            stats,
            admission,
            clock,
            health,
            events,
            outbox_refusing,
            cap_refusals: Retell::default(),
            queue_drops: Retell::default(),
            out_of_time: Retell::default(),
            held_for_clock: Retell::default(),
            mismatches: Retell::default(),
            acknowledged_early: Retell::default(),
            log: LogBudget::default(),
        }
    }

    /// New sensor `sensor` was refused for the plugin's sensor cap: tell the
    /// owner, if not told within [`RETELL`].
    fn sensor_cap_reached(&mut self, sensor: String) {
        if self.cap_refusals.occurred(1, Instant::now()).is_none() {
            return;
        }
        let _ = self.events.send(IngestEvent::SensorCap(SensorCap {
            plugin: self.plugin.clone(),
            sensor,
            max_sensors: self.admission.max_sensors(),
            frees_places: self.admission.frees_places(),
        }));
    }
}

impl Ingest {
    /// `count` readings were refused for their time (`held_for` `None`), or
    /// held in the JetStream stream for at most `held_for` of the clock, the
    /// first of `sensor` for `refusal`: tell the owner, if not told so within
    /// [`RETELL`] (then with every reading refused, or held, since).
    pub(super) fn out_of_time(&mut self, count: u64, sensor: String, refusal: &Refusal, held_for: Option<Duration>) {
        let retell = match held_for {
            Some(_) => &mut self.held_for_clock,
            None => &mut self.out_of_time,
        };
        let Some(count) = retell.occurred(count, Instant::now()) else {
            return;
        };
        let _ = self.events.send(IngestEvent::OutOfTime(OutOfTime {
            plugin: self.plugin.clone(),
            refused: count,
            held_for,
            sensor,
            kind: refusal.kind,
            reason: refusal.reason.clone(),
        }));
    }

    /// `refused` readings on `subject` were refused for naming another
    /// sensor, the first for `refusal`: tell the owner, if not told within
    /// [`RETELL`] (then with every reading refused so since).
    fn sensor_mismatch(&mut self, refused: u64, subject: &str, refusal: &Refusal) {
        let Some(refused) = self.mismatches.occurred(refused, Instant::now()) else {
            return;
        };
        let _ = self.events.send(IngestEvent::SensorMismatch(SensorMismatch {
            plugin: self.plugin.clone(),
            refused,
            subject: subject.to_owned(),
            reason: refusal.reason.clone(),
        }));
    }

    /// `messages` JetStream messages were acknowledged before their outputs
    /// were stored, `waiting_at_most` waiting already: log, and tell the
    /// owner if not told within [`RETELL`] (then with every one since).
    fn acknowledged_early(&mut self, messages: u64, waiting_at_most: usize) {
        let Some(messages) = self.acknowledged_early.occurred(messages, Instant::now()) else {
            return;
        };
        tracing::error!(plugin = %self.plugin, messages, waiting_at_most, "Sensor messages acknowledged before their outputs were stored: the outbox is not storing");
        let _ = self.events.send(IngestEvent::AcknowledgedEarly(AcknowledgedEarly {
            plugin: self.plugin.clone(),
            messages,
            waiting_at_most,
        }));
    }

    /// The server refused the subscription to `filter` (its permissions):
    /// the input is lost (by a refusal) and the owner told, the
    /// subscriptions to be made again in `retry_in`.
    fn subscription_refused(&mut self, filter: &str, retry_in: Duration) {
        let error = IngestError::Refused {
            filter: filter.to_owned(),
        };
        let new_episode = self.health.refused(filter, crate::error_chain(&error));
        let _ = self.events.send(IngestEvent::Failed(Failure {
            plugin: self.plugin.clone(),
            error,
            new_episode,
            retry_in,
        }));
    }

    /// `dropped` readings were dropped for want of room in the plugin's
    /// queue of `capacity`: tell the owner, if not told within
    /// [`RETELL`] (then with every reading dropped since).
    fn queue_full(&mut self, dropped: u64, capacity: u32) {
        let Some(dropped) = self.queue_drops.occurred(dropped, Instant::now()) else {
            return;
        };
        let _ = self.events.send(IngestEvent::QueueFull(QueueFull {
            plugin: self.plugin.clone(),
            dropped,
            capacity,
        }));
    }
}

/// How many dead letters were logged in the current window, and how many not.
#[derive(Debug)]
struct LogBudget {
    window_start: Instant,
    logged: u32,
    suppressed: u64,
}

impl Default for LogBudget {
    fn default() -> LogBudget {
        LogBudget {
            window_start: Instant::now(),
            logged: 0,
            suppressed: 0,
        }
    }
}

impl LogBudget {
    /// Whether to log one more dead letter now.
    fn allow(&mut self) -> bool {
        if self.window_start.elapsed() >= LOG_WINDOW {
            if self.suppressed > 0 {
                tracing::warn!(
                    count = self.suppressed,
                    "More sensor messages were dead-lettered than logged (see the status)"
                );
            }
            *self = LogBudget::default();
        }
        if self.logged < LOGS_PER_WINDOW {
            self.logged += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// Readings of a message from the future of the host clock: how many, and
/// the sensor and refusal of the first.
pub(super) struct FromTheFuture {
    pub(super) readings: u64,
    pub(super) sensor: String,
    pub(super) refusal: Refusal,
}

/// Decode one sensor message into `readings`, keeping the readings that
/// [`Admission`] lets in; dead-letter the message if it cannot be decoded, or
/// its refused readings with their reasons. With `hold_future`, a message
/// with a reading from the future is neither taken nor refused nor counted:
/// what is from the future is returned, for the caller to hold it.
async fn take_message(
    ingest: &mut Ingest,
    message: &async_nats::Message,
    readings: &mut Vec<Reading>,
    hold_future: bool,
) -> Option<FromTheFuture> {
    let subject = message.subject.as_str();
    let before = readings.len();
    let decoded = payload::decode_into(subject, &message.payload, readings);
    if hold_future
        && decoded.is_ok()
        && let Some(future) = from_the_future(ingest, &readings[before..])
    {
        readings.truncate(before);
        return Some(future);
    }
    ingest.stats.messages.fetch_add(1, Ordering::Relaxed);
    if let Err(error) = decoded {
        let refusal = Refusal {
            kind: DeadLetterKind::Malformed,
            reason: error.to_string(),
        };
        deadletter(ingest, subject, &message.payload, &refusal, None).await;
        return None;
    }
    let trusted = ingest.admission.trusts_payload_sensors(subject);
    let now_ms = ingest.clock.now_ms();
    let mut decoded = readings.split_off(before);
    let mut refused: Vec<(usize, Refusal)> = Vec::new();
    let mut capped = None;
    let mut out_of_time: Option<String> = None;
    let mut index = 0;
    decoded.retain(|reading| {
        let at = index;
        index += 1;
        match ingest.admission.check(subject, trusted, at, reading, now_ms) {
            Ok(()) => true,
            Err(refusal) => {
                if refusal.kind == DeadLetterKind::TooManySensors && capped.is_none() {
                    capped = Some(reading.sensor.clone());
                }
                if matches!(refusal.kind, DeadLetterKind::Future | DeadLetterKind::TooOld) && out_of_time.is_none() {
                    out_of_time = Some(reading.sensor.clone());
                }
                refused.push((at, refusal));
                false
            }
        }
    });
    readings.append(&mut decoded);
    if let Some(sensor) = capped {
        ingest.sensor_cap_reached(sensor);
    }
    if let Some(sensor) = out_of_time {
        let of_time =
            |refusal: &&(usize, Refusal)| matches!(refusal.1.kind, DeadLetterKind::Future | DeadLetterKind::TooOld);
        let count = refused.iter().filter(of_time).count() as u64;
        if let Some((_, first)) = refused.iter().find(of_time) {
            ingest.out_of_time(count, sensor, first, None);
        }
    }
    // One letter per reason: the first refusal's sentence, every index.
    for kind in DeadLetterKind::ALL {
        let of_kind: Vec<&(usize, Refusal)> = refused.iter().filter(|(_, refusal)| refusal.kind == kind).collect();
        let Some((_, first)) = of_kind.first() else { continue };
        let indexes: Vec<usize> = of_kind.iter().map(|(at, _)| *at).collect();
        if kind == DeadLetterKind::SensorMismatch {
            ingest.sensor_mismatch(indexes.len() as u64, subject, first);
        }
        deadletter(ingest, subject, &message.payload, first, Some(&indexes)).await;
    }
    None
}

/// The readings of a message from the future of the host clock, if any.
fn from_the_future(ingest: &Ingest, readings: &[Reading]) -> Option<FromTheFuture> {
    let now_ms = ingest.clock.now_ms();
    let mut future = readings
        .iter()
        .enumerate()
        .filter_map(|(index, reading)| Some((reading, ingest.admission.from_the_future(index, reading, now_ms)?)));
    let (first, refusal) = future.next()?;
    Some(FromTheFuture {
        readings: 1 + future.count() as u64,
        sensor: first.sensor.clone(),
        refusal,
    })
}

/// Publish a refused message (or refused `readings` of it) with its reason on
/// the dead-letter subject, and count it.
async fn deadletter(ingest: &mut Ingest, subject: &str, payload: &[u8], refusal: &Refusal, readings: Option<&[usize]>) {
    ingest.stats.deadlettered.fetch_add(1, Ordering::Relaxed);
    if let Some(counter) = ingest.stats.by_reason.get(refusal.kind.index()) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
    let kind = refusal.kind.as_str();
    if ingest.log.allow() {
        tracing::warn!(subject, kind, reason = %refusal.reason, "Sensor message dead-lettered");
    }
    let shown: String = String::from_utf8_lossy(&payload[..payload.len().min(1024)]).into_owned();
    let mut letter = json!({
        "subject": subject,
        "kind": kind,
        "reason": refusal.reason,
        "payload": shown,
        "bytes": payload.len(),
    });
    if let Some(readings) = readings {
        letter["readings"] = json!(readings);
    }
    match ingest
        .deadletters
        .publish(ingest.subjects.deadletter(), letter.to_string().into())
        .await
    {
        Ok(()) | Err(LocalPublishError::Stalled) => {} // Said once, when it stalled.
        Err(error) => tracing::warn!(%error, "Cannot publish to the dead-letter subject"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_condition_is_told_at_once_then_at_most_hourly_with_everything_since() {
        let start = Instant::now();
        let minute = Duration::from_secs(60);
        let mut retell = Retell::default();
        assert_eq!(retell.occurred(0, start), None, "nothing happened");
        assert_eq!(retell.occurred(3, start), Some(3), "the first, at once");
        assert_eq!(retell.occurred(2, start + minute), None);
        assert_eq!(retell.occurred(5, start + 59 * minute), None);
        assert_eq!(
            retell.occurred(1, start + 60 * minute),
            Some(8),
            "an hour on: all since"
        );
        assert_eq!(retell.occurred(0, start + 200 * minute), None, "quiet: nothing to tell");
        assert_eq!(
            retell.occurred(4, start + 201 * minute),
            Some(4),
            "again at once after a quiet hour"
        );
    }

    #[test]
    fn a_lost_input_is_one_episode_until_it_flows_again() {
        let health = IngestHealth::default();
        assert_eq!(health.lost_reason(), None);
        assert!(
            health.lost("consumer deleted".to_owned()),
            "the first failure starts an episode"
        );
        assert!(
            !health.lost("no stream".to_owned()),
            "a retry that fails is the same episode"
        );
        assert_eq!(health.lost_reason().as_deref(), Some("no stream"));
        assert_eq!(health.failures.load(Ordering::Relaxed), 1);
        let filters = ["sensors.cgm.>".to_owned()];
        assert!(!health.reads(&filters), "nothing read yet");
        health.flowing("p", &filters);
        assert_eq!(health.lost_reason(), None);
        assert!(health.reads(&filters));
        assert!(!health.reads(&["sensors.>".to_owned()]), "other filters");
        assert!(
            health.lost("consumer deleted".to_owned()),
            "after it flowed, a new episode"
        );
        assert_eq!(health.failures.load(Ordering::Relaxed), 2);
        assert!(!health.reads(&filters), "lost, whatever it read");
    }

    #[test]
    fn only_a_stopped_worker_is_not_retried() {
        assert!(!IngestError::WorkerStopped.retry());
        assert!(IngestError::SubscriptionsEnded.retry());
        assert!(
            IngestError::ConsumerEnded {
                consumer: "c".to_owned()
            }
            .retry()
        );
    }
}
