//! Store-and-forward: outputs leave the outbox for the upstream JetStream
//! stream, with `Nats-Msg-Id`, and are deleted only after the acknowledgement.
//!
//! **No entry can block the ones behind it.** Every entry of a round is
//! published, and every acknowledgement awaited, whatever happened to the
//! entries before it. An entry upstream refuses for good is moved aside (see
//! `outbox::park`) after [`PARK_AFTER`] attempts in which:
//! - the client refused it as larger than the server's `max_payload` (known
//!   from the server's INFO), or the stream refused it as larger than its
//!   largest message (`too-large`);
//! - the server reported a permissions violation for its subject while its
//!   acknowledgement was awaited (`permission-denied`: the server drops such a
//!   publish and says so only in an `-ERR` on the connection);
//! - it was refused or not acknowledged while an entry behind it in the same
//!   round was acknowledged (`refused`: upstream was working, not for it).
//!
//! Nothing else counts: no connection, no stream, an acknowledgement that
//! times out while nothing behind it is acknowledged, anything in a round
//! during which the connection was lost. So an outage of any length, and a
//! link going down and up any number of times, moves nothing aside. A
//! moved-aside entry is reported upstream as a small `upstream-refused` alert
//! (plugin, seq, reason; never the payload), stored in the outbox in the same
//! transaction.
//!
//! **Degrading gracefully** (docs/reliability.md):
//! - Alerts first: each round takes the oldest alerts before any summary, and
//!   summaries before any telemetry, so an alert waits behind at most the one
//!   round already sent when it was committed, however many summaries or
//!   telemetry messages wait.
//! - A backlog drains as fast as rounds go: the next round starts as soon as
//!   one is acknowledged in full, with no pause; the task waits only when
//!   the outbox is empty or a round failed.
//! - A lost connection ends the round at once (its acknowledgements are not
//!   awaited: what the server stored is deduplicated by `Nats-Msg-Id` when
//!   sent again), and delivery starts again the moment the client reconnects.
//! - A full disk makes no duplicates: an entry acknowledged whose delete
//!   fails is kept from being sent again until it is deleted (past the
//!   stream's duplicate window a second send is stored twice), and rounds
//!   that cannot update the outbox back off to [`OUTBOX_RETRY_MAX`].

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::{Entry, Kind, NewEntry, Outbox, OutboxError, PARK_AFTER, Refusal, SharedOutbox, wall_ms, with_outbox};
use crate::bus::violations::{Operation, Violations};
use crate::bus::{NatsConfig, Subjects};
use crate::envelope::{Provenance, to_json_line};
use crate::model::{Alert, Output, Severity};

/// The upstream (cloud) side.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Connection.
    pub nats: NatsConfig,
    /// The JetStream stream that stores `edgewise.<device>.up.>`.
    pub stream: String,
    /// Create the stream if it does not exist (demos, tests); otherwise the cloud owns it.
    pub create_stream: bool,
    /// The duplicate window of the stream the host creates
    /// (`[upstream] duplicate_window`, default [`DEFAULT_DUPLICATE_WINDOW`]).
    pub duplicate_window: Duration,
    /// The cloud's JetStream domain when the connection is the device's
    /// local server, a leaf node of the cloud's (`[upstream] domain`); `None`:
    /// the server connected to holds the stream.
    pub domain: Option<String>,
}

/// JetStream's own default duplicate window.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Bounds of `[upstream] duplicate_window`: the server keeps every message id
/// seen in the window in memory, and an entry retried after it is stored twice.
pub const DUPLICATE_WINDOW_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(24 * 60 * 60);

/// Entries sent per round.
const BATCH: usize = 128;
/// How long to wait for an acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// With nothing to deliver (or no connection): the longest wait for new
/// entries (a commit wakes the task at once) or the connection (its return
/// wakes the task at once).
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// After a failed round: the pause before the next attempt (a commit or a
/// reconnection wakes the task sooner).
const RETRY_WAIT: Duration = Duration::from_millis(200);
/// The longest pause between attempts while the outbox cannot be updated
/// (a full disk): the pause doubles from [`RETRY_WAIT`] up to it.
const OUTBOX_RETRY_MAX: Duration = Duration::from_secs(2);
/// The code of the host's alert about an output upstream refused for good.
pub const REFUSED: &str = "upstream-refused";
/// Suffix of the `Nats-Msg-Id` of such an alert: the refused entry's id and
/// this, unique as the refused entry's is, and the same if the host makes it
/// again after a crash.
const REFUSED_SUFFIX: &str = "/refused";

/// Why upstream delivery stopped before the host did.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The connection could not be set up (e.g. an unreadable credentials
    /// file); outputs stay in the outbox.
    #[error("cannot set up the upstream connection")]
    Connect(#[source] async_nats::ConnectError),
}

/// What the upstream task shares with the status.
#[derive(Debug, Default)]
pub struct UpstreamStats {
    /// Whether the upstream connection is up.
    pub connected: AtomicBool,
    /// Delivery rounds in which something was not acknowledged.
    pub rounds_failed: AtomicU64,
}

/// Deliver outbox entries upstream until `stop`, then make one last attempt.
pub async fn run_upstream(
    config: UpstreamConfig,
    subjects: Subjects,
    outbox: SharedOutbox,
    written: Arc<Notify>,
    stats: Arc<UpstreamStats>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), UpstreamError> {
    let violations = Arc::new(Violations::new(Operation::Publish, "the cloud"));
    let link = Arc::new(Link::default());
    let (observed, watched) = (violations.clone(), link.clone());
    let name = format!("edgewise-{}-up", subjects.device());
    let client = crate::bus::connect::connect_observed(&config.nats, &name, true, move |event| {
        observed.observe(&event);
        watched.observe(&event);
    })
    .await
    .map_err(UpstreamError::Connect)?;
    // Through a leaf node, the stream's API is the cloud domain's; the
    // publishes themselves cross the leaf connection as any message.
    let jetstream = match &config.domain {
        Some(domain) => async_nats::jetstream::with_domain(client.clone(), domain),
        None => async_nats::jetstream::new(client.clone()),
    };
    let mut stream_ready = !config.create_stream;
    let unsettled = Mutex::new(std::collections::BTreeSet::new());
    let unrouted = Mutex::new(Unrouted::default());
    let upstream = Upstream {
        unsettled: &unsettled,
        unrouted: &unrouted,
        jetstream: &jetstream,
        client: &client,
        outbox: &outbox,
        subjects: &subjects,
        violations: &violations,
        link: &link,
    };
    // Rounds in a row that could not update the outbox.
    let mut outbox_failures: u32 = 0;
    let mut trouble = Trouble::new(&config, &subjects);
    loop {
        let is_connected = client.connection_state() == async_nats::connection::State::Connected;
        stats.connected.store(is_connected, Ordering::Relaxed);
        if is_connected && !stream_ready {
            match ensure_stream(&jetstream, &config, &subjects).await {
                Ok(()) => stream_ready = true,
                Err(reason) => trouble.failed(Failure::Other(reason)),
            }
        }
        let mut wait = IDLE_WAIT;
        if is_connected && stream_ready {
            let round = upstream.deliver().await;
            outbox_failures = match round {
                Round::OutboxFailed => outbox_failures.saturating_add(1),
                _ => 0,
            };
            match round {
                Round::Empty => trouble.over(),
                // More waiting: the next round at once (after a look at `stop`).
                Round::More => {
                    trouble.over();
                    wait = Duration::ZERO;
                }
                Round::Failed(failure) => {
                    stats.rounds_failed.fetch_add(1, Ordering::Relaxed);
                    wait = RETRY_WAIT;
                    // A stream the host made, or found, without this
                    // device's subjects (deleted since, or made by another
                    // device): made to take them again.
                    if failure == Failure::NoStream && config.create_stream {
                        stream_ready = false;
                    }
                    trouble.failed(failure);
                }
                Round::OutboxFailed => {
                    stats.rounds_failed.fetch_add(1, Ordering::Relaxed);
                    wait = outbox_retry_wait(outbox_failures);
                }
            }
        }
        if *stop.borrow() {
            break;
        }
        if wait.is_zero() {
            continue;
        }
        tokio::select! {
            _ = written.notified() => {}
            _ = link.up.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
    // Shutting down: whatever is not acknowledged stays in the outbox for the next start.
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
    Ok(())
}

/// Make sure the stream `config.stream` exists and takes this device's
/// subjects (`[upstream] create_stream = true`): created if missing, its
/// subjects extended if it lacks them (one stream for a fleet, which each
/// device's host joins). Why not, if it is not ready.
async fn ensure_stream(
    jetstream: &async_nats::jetstream::Context,
    config: &UpstreamConfig,
    subjects: &Subjects,
) -> Result<(), String> {
    let filter = subjects.upstream_filter();
    let wanted = async_nats::jetstream::stream::Config {
        name: config.stream.clone(),
        subjects: vec![filter.clone()],
        // Ids are remembered this long (server memory per id); an entry
        // retried later is stored again (docs/operators.md).
        duplicate_window: config.duplicate_window,
        ..Default::default()
    };
    let mut stream = jetstream
        .get_or_create_stream(wanted)
        .await
        .map_err(|error| format!("cannot create the stream `{}`: {error}", config.stream))?;
    let found = stream
        .info()
        .await
        .map_err(|error| format!("cannot read the stream `{}`: {error}", config.stream))?
        .config
        .clone();
    if found
        .subjects
        .iter()
        .any(|subject| crate::bus::filter::covers(subject, &filter))
    {
        return Ok(());
    }
    let mut extended = found;
    extended.subjects.push(filter.clone());
    jetstream.update_stream(extended).await.map_err(|error| {
        format!(
            "cannot add `{filter}` to the subjects of the stream `{}`: {error}",
            config.stream
        )
    })?;
    tracing::info!(stream = %config.stream, subjects = %filter, "The upstream stream takes this device's subjects now");
    Ok(())
}

/// Says in the log when upstream delivery starts failing and when it works
/// again: once per episode, not at every round (a round is retried every
/// few seconds, and the status counts them: `rounds_failed`). Without it, a
/// cloud with no stream for the device's subjects kept every alert in the
/// outbox with nothing logged.
struct Trouble {
    stream: String,
    filter: String,
    domain: String,
    /// Since when delivery fails, and whether a missing stream was said.
    since: Option<(std::time::Instant, bool)>,
}

impl Trouble {
    fn new(config: &UpstreamConfig, subjects: &Subjects) -> Trouble {
        Trouble {
            stream: config.stream.clone(),
            filter: subjects.upstream_filter(),
            domain: config
                .domain
                .as_deref()
                .map(|domain| format!(" in JetStream domain `{domain}`"))
                .unwrap_or_default(),
            since: None,
        }
    }

    /// A round failed.
    fn failed(&mut self, failure: Failure) {
        let said_no_stream = self.since.is_some_and(|(_, said)| said);
        match failure {
            Failure::NoStream if !said_no_stream => {
                tracing::error!(
                    "No stream upstream takes this device's outputs (`{}`): alerts and summaries wait in the outbox until one does. \
                     Create the stream `{}`{} with the subjects `edgewise.*.up.>` (every device's), or set `[upstream] create_stream = true`",
                    self.filter,
                    self.stream,
                    self.domain
                );
                let since = self.since.map_or_else(std::time::Instant::now, |(since, _)| since);
                self.since = Some((since, true));
            }
            Failure::Other(reason) if self.since.is_none() => {
                tracing::warn!(%reason, "Upstream delivery fails: the outputs wait in the outbox (retried)");
                self.since = Some((std::time::Instant::now(), false));
            }
            Failure::NoStream | Failure::Other(_) => {}
        }
    }

    /// A round delivered everything it sent.
    fn over(&mut self) {
        if let Some((since, _)) = self.since.take() {
            tracing::warn!(after = ?since.elapsed(), "Upstream delivery works again");
        }
    }
}

/// What the connection's events say about the link.
#[derive(Debug, Default)]
struct Link {
    /// Connections lost so far (a mark to compare with).
    losses: AtomicU64,
    /// Woken (all waiters) when the connection is lost.
    lost: Notify,
    /// Woken (one permit kept) when the connection is (re)established.
    up: Notify,
}

impl Link {
    fn observe(&self, event: &async_nats::Event) {
        match event {
            async_nats::Event::Disconnected => {
                self.losses.fetch_add(1, Ordering::Relaxed);
                self.lost.notify_waiters();
            }
            async_nats::Event::Connected => self.up.notify_one(),
            _ => {}
        }
    }

    /// The number of connections lost so far.
    fn mark(&self) -> u64 {
        self.losses.load(Ordering::Relaxed)
    }

    /// Whether the connection was lost after `mark`.
    fn lost_since(&self, mark: u64) -> bool {
        self.mark() != mark
    }
}

/// The pause after the `failures`-th round in a row that could not update
/// the outbox: doubling from [`RETRY_WAIT`] to [`OUTBOX_RETRY_MAX`] (a full
/// disk rarely frees itself within milliseconds, and each attempt costs a
/// read of the batch).
fn outbox_retry_wait(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_WAIT.saturating_mul(1 << doublings).min(OUTBOX_RETRY_MAX)
}

/// What a delivery round left.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Round {
    /// Everything acknowledged, nothing more waiting.
    Empty,
    /// Everything acknowledged, more waiting.
    More,
    /// Something was not acknowledged (or the outbox could not be read).
    Failed(Failure),
    /// The outbox could not be updated (a full disk): entries acknowledged
    /// upstream wait for their delete, and are not sent again meanwhile.
    OutboxFailed,
}

/// What became of one entry in a round.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    /// Stored upstream.
    Acknowledged,
    /// Refused for good, with a detail for the report.
    Refused(Refusal, String),
    /// Refused or not acknowledged: counts as [`Refusal::Refused`] only if an
    /// entry behind it is acknowledged.
    Failed(String),
    /// Not sent, or lost with the connection: never counts.
    NotSent,
    /// No stream upstream takes the subject: never counts (it is the
    /// cloud's configuration, not the entry).
    NoStream,
}

/// Why a round did not deliver everything, as the log says it once per
/// episode.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// No stream upstream takes the device's subjects.
    NoStream,
    /// Anything else, in a few words.
    Other(String),
}

impl Failure {
    /// The first entry's reason in `outcomes` that was not acknowledged.
    fn of(outcomes: &[Outcome]) -> Failure {
        let first = outcomes.iter().find(|outcome| **outcome != Outcome::Acknowledged);
        match first {
            Some(Outcome::NoStream) => Failure::NoStream,
            Some(Outcome::Refused(reason, detail)) => Failure::Other(format!("refused ({reason:?}): {detail}")),
            Some(Outcome::Failed(detail)) => Failure::Other(detail.clone()),
            Some(Outcome::NotSent) | Some(Outcome::Acknowledged) | None => {
                Failure::Other("the connection was lost during the round".to_owned())
            }
        }
    }
}

/// Subjects no stream upstream takes (a publish to them found none). A
/// round sends only the oldest entry of each (a probe, whose acknowledgement
/// ends the wait) and passes over the rest, which wait in the outbox: one
/// plugin's subjects missing from the cloud's stream never hold back another
/// plugin's alerts behind them. In memory only: a restart tries them all.
#[derive(Debug, Default)]
struct Unrouted {
    /// The subjects probed (a few per plugin at most).
    subjects: BTreeSet<String>,
}

impl Unrouted {
    /// What a round found: subjects without a stream, and subjects that have
    /// one now (said once each way).
    fn found(&mut self, batch: &[Entry], outcomes: &[Outcome]) {
        for (entry, outcome) in batch.iter().zip(outcomes) {
            let subject = &entry.subject;
            match outcome {
                Outcome::NoStream if self.subjects.insert(subject.clone()) => {
                    tracing::warn!(%subject, plugin = %entry.plugin, "No stream upstream takes this subject: its outputs wait in the outbox, and the outputs behind them are delivered meanwhile");
                }
                Outcome::Acknowledged if self.subjects.remove(subject) => {
                    tracing::warn!(%subject, plugin = %entry.plugin, "A stream upstream takes this subject now: its outputs are delivered");
                }
                _ => {}
            }
        }
    }
}

/// The publisher's view of the world for one round.
struct Upstream<'a> {
    /// Entries acknowledged upstream whose delete failed (a full disk): never
    /// sent again while they wait, and deleted before anything else. Past
    /// the stream's duplicate window a second send would be stored twice.
    /// In memory only: after a restart they are sent again (deduplicated
    /// within the window). At most the outbox's entries.
    unsettled: &'a Mutex<std::collections::BTreeSet<u64>>,
    unrouted: &'a Mutex<Unrouted>,
    jetstream: &'a async_nats::jetstream::Context,
    client: &'a async_nats::Client,
    outbox: &'a SharedOutbox,
    subjects: &'a Subjects,
    violations: &'a Violations,
    link: &'a Link,
}

impl Upstream<'_> {
    /// Send one batch in order; delete what was acknowledged; count refusals
    /// and move aside what was refused too often.
    async fn deliver(&self) -> Round {
        let unsettled: Vec<u64> = self
            .unsettled
            .lock()
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default();
        let mut settled_now = true;
        if !unsettled.is_empty() {
            let ids = unsettled.clone();
            match with_outbox(self.outbox, move |outbox| outbox.delete(&ids)).await {
                Ok(()) => {
                    if let Ok(mut waiting) = self.unsettled.lock() {
                        waiting.clear();
                    }
                    tracing::info!(
                        entries = unsettled.len(),
                        "Entries acknowledged upstream earlier are deleted now"
                    );
                }
                Err(error) => {
                    settled_now = false;
                    tracing::warn!(%error, entries = unsettled.len(), "Still cannot delete entries acknowledged upstream; they are not sent again");
                }
            }
        }
        let skip = if settled_now { 0 } else { unsettled.len() };
        let probing = match self.unrouted.lock() {
            Ok(unrouted) => unrouted.subjects.clone(),
            Err(_) => BTreeSet::new(),
        };
        // Past the ones that wait for their delete, which come first in the
        // outbox's order as they did when they were sent.
        let read = with_outbox(self.outbox, move |outbox| {
            outbox.next_batch_probing(BATCH.saturating_add(skip), &probing)
        })
        .await;
        let mut batch = match read {
            Ok(batch) => batch,
            Err(error) => {
                tracing::error!(%error, "Cannot read the outbox");
                return Round::Failed(Failure::Other("cannot read the outbox".to_owned()));
            }
        };
        if !settled_now {
            batch.retain(|entry| unsettled.binary_search(&entry.id).is_err());
            batch.truncate(BATCH);
        }
        if batch.is_empty() {
            return match settled_now {
                true => Round::Empty,
                false => Round::OutboxFailed,
            };
        }
        let link_mark = self.link.mark();
        let outcomes = self.send(&batch, link_mark).await;
        // A round during which the connection was lost says nothing about
        // the entries that were not acknowledged.
        let link_held = !self.link.lost_since(link_mark);
        if let Ok(mut unrouted) = self.unrouted.lock() {
            unrouted.found(&batch, &outcomes);
        }
        let acknowledged: Vec<u64> = batch
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| **outcome == Outcome::Acknowledged)
            .map(|(entry, _)| entry.id)
            .collect();
        let strikes = strikes(&batch, &outcomes, link_held);
        let complete = acknowledged.len() == batch.len();
        if !acknowledged.is_empty() || !strikes.is_empty() {
            let delivered = acknowledged.clone();
            let subjects = self.subjects.clone();
            let settled = with_outbox(self.outbox, move |outbox| {
                settle(outbox, &acknowledged, strikes, &subjects)
            })
            .await;
            if let Err(error) = settled {
                tracing::error!(%error, "Cannot update the outbox after a delivery round; the entries acknowledged are kept from being sent again until they can be deleted");
                if let Ok(mut waiting) = self.unsettled.lock() {
                    waiting.extend(delivered);
                }
                return Round::OutboxFailed;
            }
        }
        match (complete, batch.len() < BATCH) {
            (_, _) if !settled_now => Round::OutboxFailed,
            (false, _) => Round::Failed(Failure::of(&outcomes)),
            (true, true) => Round::Empty,
            (true, false) => Round::More,
        }
    }

    /// Publish every entry of `batch`, then await every acknowledgement
    /// (concurrently): the outcome of each, in order. A resend after a failure is harmless
    /// (deduplicated by Nats-Msg-Id).
    async fn send(&self, batch: &[Entry], link_mark: u64) -> Vec<Outcome> {
        let mark = self.violations.mark();
        let mut pending = Vec::with_capacity(batch.len());
        let mut connection_failed = false;
        for entry in batch {
            // Lost during the round: the rest waits for the next one.
            connection_failed |= self.link.lost_since(link_mark);
            if connection_failed {
                pending.push(Err(Outcome::NotSent));
                continue;
            }
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, entry.msg_id.as_str());
            let published = self
                .jetstream
                .publish_with_headers(entry.subject.clone(), headers, entry.payload.clone().into())
                .await;
            pending.push(match published {
                Ok(ack) => Ok(ack),
                Err(error) if error.kind() == async_nats::jetstream::context::PublishErrorKind::MaxPayloadExceeded => {
                    let detail = format!("the server's max_payload is {} bytes", self.client.max_payload());
                    Err(Outcome::Refused(Refusal::TooLarge, detail))
                }
                Err(error) => {
                    tracing::warn!(%error, "Upstream publish failed; will retry");
                    connection_failed = true;
                    Err(Outcome::NotSent)
                }
            });
        }
        // All acknowledgements at once: a round takes one timeout at most,
        // however many entries go unacknowledged.
        let waits = batch.iter().zip(pending).map(|(entry, sent)| async move {
            match sent {
                Ok(ack) => self.acknowledgement(ack, &entry.subject, mark, link_mark).await,
                Err(outcome) => outcome,
            }
        });
        futures::future::join_all(waits).await
    }

    /// Await one acknowledgement; give up early when the server reports a
    /// permissions violation for the subject, or at once when the connection
    /// is lost (after `link_mark`): the acknowledgement can no longer come.
    async fn acknowledgement(
        &self,
        ack: async_nats::jetstream::context::PublishAckFuture,
        subject: &str,
        mark: u64,
        link_mark: u64,
    ) -> Outcome {
        let ack = tokio::time::timeout(ACK_TIMEOUT, std::future::IntoFuture::into_future(ack));
        tokio::pin!(ack);
        loop {
            let violation = self.violations.notify.notified();
            let lost = self.link.lost.notified();
            tokio::pin!(lost);
            // Registered before the check: a loss after it wakes `lost`.
            lost.as_mut().enable();
            let already_lost = self.link.lost_since(link_mark);
            if self.violations.since(subject, mark) {
                return Outcome::Refused(
                    Refusal::PermissionDenied,
                    format!("the device may not publish to {subject}"),
                );
            }
            // An acknowledgement that came before the loss still counts.
            tokio::select! {
                biased;
                acked = &mut ack => return classify(acked),
                _ = violation => {}
                _ = &mut lost => return Outcome::NotSent,
                () = std::future::ready(()), if already_lost => return Outcome::NotSent,
            }
        }
    }
}

/// The outcome of an acknowledgement.
fn classify(
    acked: Result<
        Result<async_nats::jetstream::publish::PublishAck, async_nats::jetstream::context::PublishError>,
        tokio::time::error::Elapsed,
    >,
) -> Outcome {
    use async_nats::jetstream::context::PublishErrorKind;
    match acked {
        Ok(Ok(_)) => Outcome::Acknowledged,
        // The connection went: upstream was not working.
        Ok(Err(error)) if error.kind() == PublishErrorKind::BrokenPipe => Outcome::NotSent,
        // No stream answered: none takes the subject (or the server is still
        // recovering it after a restart).
        Ok(Err(error)) if error.kind() == PublishErrorKind::StreamNotFound => Outcome::NoStream,
        Ok(Err(error)) => {
            let api = std::error::Error::source(&error)
                .and_then(|source| source.downcast_ref::<async_nats::jetstream::Error>());
            match api {
                Some(api) if api.error_code() == async_nats::jetstream::ErrorCode::STREAM_MESSAGE_EXCEEDS_MAXIMUM => {
                    Outcome::Refused(Refusal::TooLarge, "larger than the stream's largest message".to_owned())
                }
                _ => Outcome::Failed(bounded(&error.to_string())),
            }
        }
        Err(_) => Outcome::Failed("not acknowledged in time".to_owned()),
    }
}

/// An attempt that counts against an entry: its id, reason and detail.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Strike {
    entry: Entry,
    reason: Refusal,
    detail: String,
}

/// The attempts of a round that count against their entries: refusals for
/// good, and failures with an acknowledged entry behind them in a round
/// during which the connection held (`link_held`; across a reconnection, an
/// entry behind can be acknowledged on the new connection while the
/// acknowledgement of one before it was lost with the old).
fn strikes(batch: &[Entry], outcomes: &[Outcome], link_held: bool) -> Vec<Strike> {
    let mut acknowledged_behind = false;
    let mut strikes = Vec::new();
    for (entry, outcome) in batch.iter().zip(outcomes).rev() {
        match outcome {
            Outcome::Acknowledged => acknowledged_behind = true,
            Outcome::Refused(reason, detail) => strikes.push(Strike {
                entry: entry.clone(),
                reason: *reason,
                detail: detail.clone(),
            }),
            Outcome::Failed(detail) if acknowledged_behind && link_held => strikes.push(Strike {
                entry: entry.clone(),
                reason: Refusal::Refused,
                detail: format!("{detail}, while the entries behind it were acknowledged"),
            }),
            Outcome::Failed(_) | Outcome::NotSent | Outcome::NoStream => {}
        }
    }
    strikes.reverse();
    strikes
}

/// Delete the acknowledged entries; count the strikes, and move aside (with a
/// report) each entry struck [`PARK_AFTER`] times.
fn settle(
    outbox: &mut Outbox,
    acknowledged: &[u64],
    strikes: Vec<Strike>,
    subjects: &Subjects,
) -> Result<(), OutboxError> {
    outbox.delete(acknowledged)?;
    for strike in strikes {
        let Strike { entry, reason, detail } = strike;
        let attempts = outbox.refused(entry.id)?;
        tracing::warn!(
            plugin = %entry.plugin,
            msg_id = %entry.msg_id,
            reason = reason.name(),
            %detail,
            attempts,
            "Upstream refused an output"
        );
        if attempts < PARK_AFTER {
            continue;
        }
        let report = report(&entry, reason, &detail, attempts, subjects);
        let parked = outbox.park(entry.id, reason, wall_ms(), report)?;
        if parked {
            tracing::error!(
                plugin = %entry.plugin,
                msg_id = %entry.msg_id,
                reason = reason.name(),
                %detail,
                "Upstream refused an output for good; moved aside in the outbox, the outputs behind it go on"
            );
        }
    }
    Ok(())
}

/// The host's `upstream-refused` alert about `entry`: on the plugin's alerts
/// subject, with the plugin's provenance as the entry's envelope states it,
/// naming its seq, kind, size and the reason; never its payload. `None` for an
/// entry that is itself such an alert (its refusal is counted and logged, not
/// reported again), and for telemetry (no clinician loses anything by it:
/// counted in the status's parked entries and logged).
fn report(entry: &Entry, reason: Refusal, detail: &str, attempts: u32, subjects: &Subjects) -> Option<NewEntry> {
    if entry.msg_id.ends_with(REFUSED_SUFFIX) || entry.kind == Kind::Telemetry {
        return None;
    }
    let envelope: serde_json::Value = serde_json::from_slice(&entry.payload).unwrap_or_default();
    let text = |field: &str| {
        envelope
            .get(field)
            .and_then(|v| v.as_str())
            .map_or_else(|| "unknown".to_owned(), bounded)
    };
    let seq = envelope.get("seq").and_then(serde_json::Value::as_u64);
    let provenance = Provenance {
        device: subjects.device().to_owned(),
        plugin: entry.plugin.clone(),
        version: text("version"),
        digest: text("digest"),
    };
    let kind = match entry.kind {
        Kind::Alert => "alert",
        Kind::Summary => "summary",
        Kind::Telemetry => "telemetry",
    };
    let seq_text = seq.map_or_else(
        || format!("msg id {}", bounded(&entry.msg_id)),
        |seq| format!("seq {seq}"),
    );
    let alert = Alert {
        sensor: String::new(),
        timestamp_ms: wall_ms(),
        severity: Severity::Critical,
        code: REFUSED.to_owned(),
        message: format!(
            "upstream refused output {seq_text} ({kind}, {} bytes) for good: {} ({}); \
             moved aside in the outbox after {attempts} attempts",
            entry.payload.len(),
            reason.name(),
            bounded(detail),
        ),
        value: None,
    };
    let line = to_json_line(&provenance, seq.unwrap_or(0), &Output::Alert(alert));
    Some(NewEntry {
        kind: Kind::Alert,
        plugin: entry.plugin.clone(),
        subject: subjects.upstream_alerts(&entry.plugin),
        msg_id: format!("{}{REFUSED_SUFFIX}", entry.msg_id),
        payload: line.into_bytes(),
        created_ms: wall_ms(),
    })
}

/// `text` cut to at most 200 bytes on a character boundary (server and
/// envelope strings can be long; a report stays small).
fn bounded(text: &str) -> String {
    const MAX: usize = 200;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: u64) -> Entry {
        Entry {
            id,
            kind: Kind::Alert,
            plugin: "p".into(),
            subject: "edgewise.d.up.alerts.p".into(),
            msg_id: format!("d/p/{id}"),
            payload: br#"{"type":"alert","device":"d","plugin":"p","version":"1.2.3","digest":"sha256:ab","seq":7}"#
                .to_vec(),
            created_ms: 0,
        }
    }

    /// A subject found without a stream is probed until one of its entries
    /// is acknowledged.
    #[test]
    fn a_subject_without_a_stream_is_probed_until_an_entry_of_it_is_acknowledged() {
        let mut unrouted = Unrouted::default();
        let (a, mut b) = (entry(1), entry(2));
        b.subject = "edgewise.d.up.alerts.q".into();
        unrouted.found(&[a.clone(), b.clone()], &[Outcome::NoStream, Outcome::Acknowledged]);
        assert_eq!(unrouted.subjects, BTreeSet::from([a.subject.clone()]));
        unrouted.found(std::slice::from_ref(&a), &[Outcome::NotSent]);
        unrouted.found(std::slice::from_ref(&a), &[Outcome::NoStream]);
        assert_eq!(unrouted.subjects, BTreeSet::from([a.subject.clone()]));
        unrouted.found(std::slice::from_ref(&a), &[Outcome::Acknowledged]);
        assert!(unrouted.subjects.is_empty());
    }

    #[test]
    fn the_pause_while_the_outbox_cannot_be_updated_doubles_to_its_bound() {
        let waits: Vec<u64> = (1..=7).map(|n| outbox_retry_wait(n).as_millis() as u64).collect();
        assert_eq!(waits, [200, 400, 800, 1600, 2000, 2000, 2000]);
        assert_eq!(outbox_retry_wait(u32::MAX), OUTBOX_RETRY_MAX);
    }

    #[test]
    fn only_refusals_and_failures_with_an_acknowledged_entry_behind_count() {
        let batch: Vec<Entry> = (1..=5).map(entry).collect();
        let outcomes = [
            Outcome::Failed("timeout".into()),
            Outcome::Refused(Refusal::TooLarge, "big".into()),
            Outcome::Acknowledged,
            Outcome::Failed("timeout".into()),
            Outcome::NotSent,
        ];
        let got: Vec<(u64, Refusal)> = strikes(&batch, &outcomes, true)
            .into_iter()
            .map(|s| (s.entry.id, s.reason))
            .collect();
        assert_eq!(got, [(1, Refusal::Refused), (2, Refusal::TooLarge)]);
        // An outage: nothing acknowledged, nothing counts.
        let outage = [
            Outcome::Failed("timeout".into()),
            Outcome::Failed("no stream".into()),
            Outcome::NotSent,
            Outcome::NotSent,
            Outcome::NotSent,
        ];
        assert!(strikes(&batch, &outage, true).is_empty());
        // The connection lost during the round: a failure with an entry
        // acknowledged behind it (on the new connection) does not count; a
        // refusal for good still does.
        let got: Vec<(u64, Refusal)> = strikes(&batch, &outcomes, false)
            .into_iter()
            .map(|s| (s.entry.id, s.reason))
            .collect();
        assert_eq!(got, [(2, Refusal::TooLarge)]);
    }

    #[tokio::test]
    async fn the_link_counts_losses_and_keeps_a_wake_up_for_each_return() {
        let link = Link::default();
        let mark = link.mark();
        link.observe(&async_nats::Event::Connected);
        assert!(!link.lost_since(mark));
        link.observe(&async_nats::Event::Disconnected);
        assert!(link.lost_since(mark) && !link.lost_since(link.mark()));
        // The return was noted while nobody waited: the next wait ends at once.
        let woken = tokio::time::timeout(Duration::from_secs(5), link.up.notified()).await;
        assert!(woken.is_ok());
    }

    #[test]
    fn the_report_is_small_names_the_seq_and_reason_and_is_never_reported_again() {
        let subjects = Subjects::new("d");
        let mut refused = entry(1);
        let big = "x".repeat(1 << 20);
        refused.payload = format!(
            r#"{{"type":"alert","device":"d","plugin":"p","version":"1.2.3","digest":"sha256:ab","seq":7,"message":"{big}"}}"#
        )
        .into_bytes();
        let report = report(&refused, Refusal::TooLarge, "max 8192", 3, &subjects).unwrap();
        assert_eq!(report.subject, "edgewise.d.up.alerts.p");
        assert_eq!(report.msg_id, "d/p/1/refused");
        assert_eq!(report.kind, Kind::Alert);
        assert!(report.payload.len() < 1024, "{}", report.payload.len());
        let json: serde_json::Value = serde_json::from_slice(&report.payload).unwrap();
        assert_eq!(json["code"], REFUSED);
        assert_eq!(json["severity"], "critical");
        assert_eq!(json["version"], "1.2.3");
        let message = json["message"].as_str().unwrap();
        assert!(message.contains("seq 7") && message.contains("too-large"), "{message}");
        let mut again = refused.clone();
        again.msg_id = report.msg_id.clone();
        assert!(super::report(&again, Refusal::PermissionDenied, "", 3, &subjects).is_none());
    }

    #[test]
    fn bounded_cuts_on_a_character_boundary() {
        assert_eq!(bounded("short"), "short");
        let long = "é".repeat(300);
        let cut = bounded(&long);
        assert!(cut.len() <= 204 && cut.ends_with('…'));
    }
}
