//! JetStream ingest: a durable pull consumer per plugin on the sensor stream,
//! so that readings published while the host is down are processed after it
//! starts. A message is acknowledged after the outputs of its batch are in
//! the outbox (or it was dead-lettered); a crash before that means
//! redelivery, never loss. The one exception: while the disk refuses writes,
//! past half the consumer's `max_ack_pending` waiting, the oldest are
//! acknowledged early (reported), or the server would deliver no more and
//! local alerts would stop.
//!
//! A message whose readings are from the future of the host clock, while no
//! new reading is taken, is held in the stream ([`Holds`]): a host clock behind
//! the sensors' (a device without a real-time clock, booted before NTP set
//! it) would otherwise dead-letter, and acknowledge, its whole backlog.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::MessagesErrorKind;
use futures::StreamExt;
use tokio::sync::oneshot::error::TryRecvError;
use tokio::sync::watch;

use super::{Batch, FromTheFuture, Ingest, IngestError, ReadingsQueue, Rules, rules_changed, take_message};

/// How often a missing sensor stream is looked for again.
const STREAM_POLL: Duration = Duration::from_secs(1);

/// The consumer's `max_ack_pending` when the host makes it: the messages the
/// server delivers unacknowledged at most (its default is 1000).
const MAX_ACK_PENDING: i64 = 20_000;

/// Messages waiting for their outputs to be stored before they are
/// acknowledged, at most, whatever the consumer allows: past it the oldest
/// are acknowledged early (see [`waiting_at_most`]).
const WAITING_AT_MOST: usize = MAX_ACK_PENDING as usize / 2;

/// How many messages may wait for their outputs to be stored, unacknowledged,
/// for a consumer whose `max_ack_pending` is `max_ack_pending` (-1 or 0: no
/// limit given). The server delivers nothing more once that many are
/// unacknowledged: on a full disk, where nothing is stored, readings would
/// stop reaching the plugin, and its alerts the local bus. Half of it, so
/// that the messages the client pulls ahead fit in the rest.
fn waiting_at_most(max_ack_pending: i64) -> usize {
    match usize::try_from(max_ack_pending) {
        Ok(limit) if limit > 0 => (limit / 2).clamp(1, WAITING_AT_MOST),
        _ => WAITING_AT_MOST,
    }
}

/// How often, while messages wait for the disk and no chunk comes, whether
/// to acknowledge some early is checked again.
const RECHECK: Duration = Duration::from_secs(1);

/// How long (of the host clock) a message from the future is held before
/// it comes again: the stream delivers it after this (a negative
/// acknowledgement with a delay).
const HOLD: Duration = Duration::from_secs(30);

/// Deliveries of a message held at most: [`HOLD`] times this (ten minutes
/// of the clock) is how long a device clock may take to be set right after
/// a boot before the readings then from the future are dead-lettered. It
/// bounds how far the consumer's ack floor stays behind (a restart delivers
/// again from the floor: the worker recognises what it took, within
/// `Seen::KEPT` messages).
const HOLDS: i64 = 20;

/// Messages held at once at most: each is unacknowledged, and counts
/// against the consumer's `max_ack_pending`, which the readings taken need.
const HELD_AT_MOST: usize = 1000;

/// Messages held in the stream because their readings are from the future
/// of the host clock. Only while no new reading is taken: that every new
/// reading is from the future is what a host clock behind looks like, and
/// then every reading waits for it to be set right, for [`HOLDS`]
/// deliveries at most. New is at the head of the stream (nothing after it
/// for the consumer yet): a backlog's older readings are taken on a clock
/// behind too (one restored at boot from a clock saved at shutdown, as
/// `fake-hwclock` does, is behind by the time the device was off, and the
/// backlog is that time). A sensor whose own clock is ahead, among others
/// whose new readings are taken, is dead-lettered at once as before: its
/// messages would hold the ack floor back (and take places of
/// `max_ack_pending`) for nothing.
struct Holds {
    /// [`HOLD`] in real time (a simulated clock runs faster).
    hold: Duration,
    /// Deliveries of a message held at most: [`HOLDS`], or fewer than the
    /// consumer's `max_deliver` (a consumer made beforehand may have one),
    /// after which the server would deliver it no more, unacknowledged and
    /// never dead-lettered.
    holds: i64,
    /// When a new reading of a message not held before was last taken.
    taken_at: Option<Instant>,
    /// The messages held, by source, and when: forgotten when they come
    /// again, or after a few [`HOLD`]s (deleted from the stream meanwhile).
    held: HashMap<u64, Instant>,
}

impl Holds {
    fn new(hold: Duration, max_deliver: i64) -> Holds {
        Holds {
            hold,
            holds: match max_deliver {
                1.. => HOLDS.min(max_deliver - 1),
                _ => HOLDS,
            },
            taken_at: None,
            held: HashMap::new(),
        }
    }

    /// Whether a message from the future, delivered `delivered` times, may be
    /// held again at `now`.
    fn may_hold(&mut self, delivered: i64, now: Instant) -> bool {
        if self.held.len() >= HELD_AT_MOST {
            let forget_after = self.hold.saturating_mul(4);
            self.held
                .retain(|_, at| now.saturating_duration_since(*at) < forget_after);
        }
        delivered <= self.holds
            && self.held.len() < HELD_AT_MOST
            && self
                .taken_at
                .is_none_or(|taken| now.saturating_duration_since(taken) >= self.hold)
    }

    /// Message `source` came (again): whether it had been held.
    fn came(&mut self, source: u64) -> bool {
        self.held.remove(&source).is_some()
    }

    /// Message `source` is held at `now`.
    fn hold(&mut self, source: u64, now: Instant) {
        self.held.insert(source, now);
    }

    /// Readings of a message were taken at `now`: it was `new` (at the head
    /// of the stream, see [`Holds`]), or `was_held` (the clock is right now,
    /// for it), which holds nothing else back.
    fn taken(&mut self, new: bool, was_held: bool, now: Instant) {
        if new && !was_held {
            self.taken_at = Some(now);
        }
    }
}

/// A batch given to the plugin, its messages acknowledged once its outputs
/// are stored.
struct Given {
    /// Told when the outputs are stored; dropped if they were not (or the
    /// worker dropped the batch).
    written: tokio::sync::oneshot::Receiver<()>,
    ackers: Vec<async_nats::jetstream::message::Acker>,
    /// Each message's source ([`source_of`]).
    messages: Vec<u64>,
}

/// The batches given to the plugin whose outputs are not stored yet, oldest
/// first (the writer stores in order).
struct Waiting {
    batches: VecDeque<Given>,
    /// The distinct messages among them, by source, with their deliveries
    /// (one delivered again while its first delivery waits is one message to
    /// the server, as to its limit).
    messages: HashMap<u64, usize>,
    /// Distinct messages that may wait ([`waiting_at_most`]).
    limit: usize,
}

impl Waiting {
    fn new(limit: usize) -> Waiting {
        Waiting {
            batches: VecDeque::new(),
            messages: HashMap::new(),
            limit,
        }
    }

    fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    fn push(&mut self, given: Given) {
        for &source in &given.messages {
            *self.messages.entry(source).or_default() += 1;
        }
        self.batches.push_back(given);
    }

    /// The oldest batch, no longer waiting.
    fn pop(&mut self) -> Option<Given> {
        let oldest = self.batches.pop_front()?;
        for source in &oldest.messages {
            if let Some(count) = self.messages.get_mut(source) {
                *count -= 1;
                if *count == 0 {
                    self.messages.remove(source);
                }
            }
        }
        Some(oldest)
    }

    /// Whether the oldest batch's outputs were stored, once told (never,
    /// with nothing waiting).
    async fn oldest_written(&mut self) -> bool {
        match self.batches.front_mut() {
            Some(oldest) => (&mut oldest.written).await.is_ok(),
            None => std::future::pending().await,
        }
    }

    /// The oldest batch's outputs were stored (`written`) or not (or the
    /// worker dropped it: no ack, so the stream delivers them again).
    async fn settle_oldest(&mut self, written: bool) {
        if let Some(oldest) = self.pop()
            && written
        {
            acknowledge(oldest.ackers).await;
        }
    }

    /// While the outbox refuses writes (a full or failing disk), past
    /// `limit` distinct messages waiting, acknowledge the oldest early, and
    /// tell. The server delivers nothing more past its `max_ack_pending`:
    /// readings would stop reaching the plugin, and its alerts the local bus.
    /// Every batch waiting is with the plugin already (or was dropped, and is
    /// not acknowledged). On a disk that takes writes, however slowly, none
    /// is: the server waits for the commits.
    async fn acknowledge_early_if_refused(&mut self, ingest: &mut Ingest) {
        if self.messages.len() <= self.limit || !(ingest.outbox_refusing)() {
            return;
        }
        let mut early = 0;
        while self.messages.len() > self.limit
            && let Some(mut oldest) = self.pop()
        {
            match oldest.written.try_recv() {
                Ok(()) => acknowledge(oldest.ackers).await,
                // Dropped by the worker, or not stored: delivered again.
                Err(TryRecvError::Closed) => {}
                Err(TryRecvError::Empty) => {
                    early += oldest.ackers.len() as u64;
                    acknowledge(oldest.ackers).await;
                }
            }
        }
        if early > 0 {
            ingest.acknowledged_early(early, self.limit);
        }
    }
}

/// Once the plugin has the newest batch (or it was dropped); never, with none.
async fn until_given(given: &mut Option<tokio::sync::oneshot::Receiver<()>>) {
    match given {
        Some(taken) => {
            let _ = taken.await;
        }
        None => std::future::pending().await,
    }
}

/// Consume the filters of `rules` from the JetStream `stream_name` through
/// the durable consumer `consumer_name` (made if missing) until `stop`. The
/// stream may appear after the host starts (or come back after it was
/// deleted): it is waited for. A consumer that is deleted (with its stream or
/// alone) or refuses pulls ends this with an error. New `rules` apply in
/// place: the consumer is changed to their filters (`update_consumer`; the
/// pulls, and the messages waiting for their outputs to be stored, go on),
/// an error if it cannot be.
#[allow(clippy::too_many_arguments)]
pub async fn run<W: From<Batch>>(
    ingest: &mut Ingest,
    stream_name: &str,
    consumer_name: &str,
    rules: &mut watch::Receiver<Rules>,
    queue: &ReadingsQueue<W>,
    batch_max: usize,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), IngestError> {
    use async_nats::jetstream::AckKind;
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    let filters = rules.borrow().filters.clone();
    let filters = &filters;
    let jetstream = async_nats::jetstream::new(ingest.client.clone());
    let stream = loop {
        match jetstream.get_stream(stream_name).await {
            Ok(stream) => break stream,
            Err(error) => {
                tracing::warn!(stream = %stream_name, %error, "Waiting for the sensor stream");
                tokio::select! {
                    _ = stop.changed() => return Ok(()),
                    _ = tokio::time::sleep(STREAM_POLL) => {}
                }
            }
        }
    };
    let mut config = pull::Config {
        durable_name: Some(consumer_name.to_owned()),
        filter_subjects: filters.to_vec(),
        ack_policy: AckPolicy::Explicit,
        max_ack_pending: MAX_ACK_PENDING,
        ..Default::default()
    };
    // Messages delivered to a host that was killed before acknowledging them
    // would come again only after the ack wait, behind newer ones: a plugin
    // would get a sensor's readings out of order. The consumer delivers again
    // from its ack floor instead, so they come first, in order (with every
    // message after the floor: those already logged are recognised by the
    // worker).
    if let Ok(info) = stream.consumer_info(consumer_name).await
        && info.num_ack_pending > 0
    {
        let start_sequence = info.ack_floor.stream_sequence + 1;
        match reset_to_ack_floor(&jetstream, stream_name, consumer_name).await {
            Ok(()) => {
                tracing::info!(consumer = %consumer_name, start_sequence, "Unacknowledged sensor messages: delivered again first, in order");
            }
            // A server before 2.14 has no reset: the consumer is deleted and
            // made again from the floor. A crash between the two leaves none,
            // and the next start makes one that delivers the whole stream.
            Err(reason) => {
                tracing::info!(consumer = %consumer_name, start_sequence, %reason, "Unacknowledged sensor messages: the server cannot reset the consumer; made again to deliver them first, in order");
                if let Err(error) = stream.delete_consumer(consumer_name).await {
                    tracing::warn!(consumer = %consumer_name, %error, "Cannot make the consumer again; unacknowledged messages come after the ack wait");
                } else {
                    config.deliver_policy =
                        async_nats::jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence };
                }
            }
        }
    }
    let consumer = match stream.get_or_create_consumer(consumer_name, config.clone()).await {
        Ok(consumer) => consumer,
        // A server or stream whose limits refuse our `max_ack_pending`: the
        // server's own default, rather than no readings at all.
        Err(error) => {
            tracing::warn!(consumer = %consumer_name, %error, "Cannot make the consumer with max_ack_pending {MAX_ACK_PENDING}; trying with the server's default");
            config.max_ack_pending = 0;
            stream
                .get_or_create_consumer(consumer_name, config)
                .await
                .map_err(|source| IngestError::Consumer {
                    consumer: consumer_name.to_owned(),
                    stream: stream_name.to_owned(),
                    source,
                })?
        }
    };
    // The client takes an existing consumer as it is: one made for the
    // plugin's earlier subscriptions (or by an operator, with others) would
    // go on reading those, and never the new ones.
    let mut consumer = consumer;
    if let Some(was) = other_filters(&consumer.cached_info().config, filters) {
        consumer = refilter(&stream, &consumer, filters)
            .await
            .map_err(|source| IngestError::Refilter {
                consumer: consumer_name.to_owned(),
                source,
            })?;
        tracing::info!(consumer = %consumer_name, was = %was.join(", "), now = %filters.join(", "), "The plugin's subscriptions changed: the consumer reads them from its place in the stream");
    }
    let messages = consumer.messages().await.map_err(|source| IngestError::Messages {
        consumer: consumer_name.to_owned(),
        source,
    })?;
    // A consumer made beforehand (by an operator, or an older host) keeps
    // its own limit.
    let made = &consumer.cached_info().config;
    let mut waiting = Waiting::new(waiting_at_most(made.max_ack_pending));
    let mut holds = Holds::new(ingest.clock.real_interval(HOLD), made.max_deliver);
    ingest.health.flowing(&ingest.plugin, filters);
    let mut chunks = messages.ready_chunks(batch_max);
    // The newest batch until the plugin has it (or it was dropped): the next
    // chunk waits for that, and while the plugin is down the stream holds
    // what comes next. Acknowledgements go on meanwhile.
    let mut given: Option<tokio::sync::oneshot::Receiver<()>> = None;
    loop {
        let chunk = tokio::select! {
            biased;
            _ = stop.changed() => return Ok(()),
            written = waiting.oldest_written() => {
                waiting.settle_oldest(written).await;
                continue;
            }
            new = rules_changed(rules) => {
                ingest.readmit(new.admission);
                if let Some(was) = other_filters(&consumer.cached_info().config, &new.filters) {
                    consumer = refilter(&stream, &consumer, &new.filters)
                        .await
                        .map_err(|source| IngestError::Refilter {
                            consumer: consumer_name.to_owned(),
                            source,
                        })?;
                    tracing::info!(consumer = %consumer_name, was = %was.join(", "), now = %new.filters.join(", "), "The plugin's subscriptions changed: the consumer reads them from its place in the stream");
                }
                ingest.health.flowing(&ingest.plugin, &new.filters);
                continue;
            }
            () = until_given(&mut given) => {
                given = None;
                waiting.acknowledge_early_if_refused(ingest).await;
                continue;
            }
            // Waiting for the disk, with no new chunk to check at: the
            // server may have stopped delivering at its limit.
            () = tokio::time::sleep(RECHECK), if given.is_none() && !waiting.is_empty() => {
                waiting.acknowledge_early_if_refused(ingest).await;
                continue;
            }
            chunk = chunks.next(), if given.is_none() => match chunk {
                Some(chunk) => chunk,
                None => return Err(IngestError::ConsumerEnded { consumer: consumer_name.to_owned() }),
            },
        };
        let mut readings = Vec::new();
        let mut sources = Vec::new();
        let mut ackers = Vec::with_capacity(chunk.len());
        let mut messages = Vec::with_capacity(chunk.len());
        for message in chunk {
            let message = match message {
                Ok(message) => message,
                Err(error) if is_lost(error.kind()) => {
                    // Unacknowledged messages of this chunk are redelivered
                    // to the consumer made again.
                    return Err(IngestError::ConsumerLost {
                        consumer: consumer_name.to_owned(),
                        source: error,
                    });
                }
                Err(error) => {
                    tracing::warn!(%error, "JetStream consumer error");
                    continue;
                }
            };
            let info = message.info().ok();
            let source = info.as_ref().map_or(0, source_of);
            let (delivered, new) = info.map_or((1, true), |info| (info.delivered, info.pending == 0));
            let (message, acker) = message.split();
            let was_held = holds.came(source);
            let now = Instant::now();
            let before = readings.len();
            let hold_future = holds.may_hold(delivered, now);
            if let Some(future) = take_message(ingest, &message, &mut readings, hold_future).await {
                let FromTheFuture {
                    readings,
                    sensor,
                    refusal,
                } = future;
                match acker.ack_with(AckKind::Nak(Some(holds.hold))).await {
                    Ok(()) => {
                        holds.hold(source, now);
                        ingest.stats.held_for_clock.fetch_add(1, Ordering::Relaxed);
                        ingest.out_of_time(readings, sensor, &refusal, Some(HOLD * HOLDS as u32));
                    }
                    // Delivered again after the ack wait.
                    Err(error) => tracing::warn!(%error, "Cannot hold a sensor message from the future"),
                }
                continue;
            }
            if readings.len() > before {
                holds.taken(new, was_held, now);
            }
            sources.resize(readings.len(), source);
            ackers.push(acker);
            messages.push(source);
        }
        if readings.is_empty() {
            // Nothing for the plugin (refused messages, dead-lettered).
            acknowledge(ackers).await;
            continue;
        }
        let (done, written) = tokio::sync::oneshot::channel();
        let (sent, taken) = tokio::sync::oneshot::channel();
        let batch = Batch {
            readings,
            sources,
            done: Some(done),
            given: Some(sent),
            room: None,
        };
        // On an error, the messages stay unacknowledged.
        queue.send(batch).await?;
        waiting.push(Given {
            written,
            ackers,
            messages,
        });
        given = Some(taken);
    }
}

/// Have `consumer` of `stream` deliver again from its ack floor, in order,
/// as a consumer made anew there would, without deleting it
/// (`$JS.API.CONSUMER.RESET`, nats-server 2.14 and later; NATS ADR-60). A
/// consumer deleted and made again is gone in between: a crash there leaves
/// none, and on an interest stream the messages of no interest meanwhile
/// are dropped. `Err` says why the server did not.
async fn reset_to_ack_floor(
    jetstream: &async_nats::jetstream::Context,
    stream: &str,
    consumer: &str,
) -> Result<(), String> {
    use async_nats::jetstream::response::Response;
    // No sequence given: the ack floor stays, the next message is after it.
    let reset = jetstream
        .request::<_, _, Response<serde_json::Value>>(
            format!("CONSUMER.RESET.{stream}.{consumer}"),
            &serde_json::json!({}),
        )
        .await;
    match reset {
        Ok(Response::Ok(_)) => Ok(()),
        Ok(Response::Err { error }) => Err(error.to_string()),
        Err(error) => Err(error.to_string()),
    }
}

/// The filters a consumer made with `made` reads, when they are not
/// `wanted` (in any order).
fn other_filters(made: &async_nats::jetstream::consumer::Config, wanted: &[String]) -> Option<Vec<String>> {
    let mut filters = made.filter_subjects.clone();
    if !made.filter_subject.is_empty() {
        filters.push(made.filter_subject.clone());
    }
    let sorted = |filters: &[String]| {
        let mut filters = filters.to_vec();
        filters.sort_unstable();
        filters.dedup();
        filters
    };
    (sorted(&filters) != sorted(wanted)).then_some(filters)
}

/// Have `consumer` of `stream` read `filters` in place of its own, every
/// other setting kept (an operator's `max_deliver`, say). It keeps its place:
/// what it delivers next is the first message after its ack floor on the new
/// filters (nats-server 2.10 and later update a consumer's filters).
async fn refilter(
    stream: &async_nats::jetstream::stream::Stream,
    consumer: &async_nats::jetstream::consumer::PullConsumer,
    filters: &[String],
) -> Result<async_nats::jetstream::consumer::PullConsumer, async_nats::jetstream::stream::ConsumerUpdateError> {
    use async_nats::jetstream::consumer::{FromConsumer, pull};
    use async_nats::jetstream::stream::{ConsumerUpdateError, ConsumerUpdateErrorKind};
    let mut config = pull::Config::try_from_consumer_config(consumer.cached_info().config.clone())
        .map_err(|error| ConsumerUpdateError::with_source(ConsumerUpdateErrorKind::Other, error))?;
    config.filter_subject = String::new();
    config.filter_subjects = filters.to_vec();
    stream.update_consumer(config).await
}

/// Acknowledge messages whose readings are logged and outputs stored.
async fn acknowledge(ackers: Vec<async_nats::jetstream::message::Acker>) {
    for acker in ackers {
        if let Err(error) = acker.ack().await {
            tracing::warn!(%error, "Cannot acknowledge a sensor message; it will be redelivered");
        }
    }
}

/// What names a message (`info`, its delivery's) when the stream delivers it
/// again: its stream sequence and the time the stream stored it, mixed (a
/// stream made again numbers from 1, at other times). 0 (never a name) for a
/// message that does not say.
fn source_of(info: &async_nats::jetstream::message::Info<'_>) -> u64 {
    let stored_ns = info.published.unix_timestamp_nanos() as u64;
    let mixed = info.stream_sequence.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ stored_ns.rotate_left(29);
    mixed.max(1)
}

/// Whether a consumer error means the consumer is gone or unusable (made
/// again by a retry), rather than a passing hiccup.
fn is_lost(kind: MessagesErrorKind) -> bool {
    matches!(
        kind,
        MessagesErrorKind::ConsumerDeleted
            | MessagesErrorKind::NoResponders
            | MessagesErrorKind::PushBasedConsumer
            | MessagesErrorKind::RequestLimitExceeded
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn other_filters_are_those_of_another_set_in_any_order_or_form() {
        use async_nats::jetstream::consumer::Config;
        let wanted = ["sensors.cgm.>".to_owned(), "sensors.cgm2.>".to_owned()];
        let made = |filter_subject: &str, filter_subjects: &[&str]| Config {
            filter_subject: filter_subject.to_owned(),
            filter_subjects: filter_subjects.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        };
        let same = made("", &["sensors.cgm2.>", "sensors.cgm.>"]);
        assert_eq!(other_filters(&same, &wanted), None);
        // One filter in the single-subject field (an older client, an operator).
        let single = made("sensors.cgm.>", &[]);
        assert_eq!(other_filters(&single, &wanted[..1]), None);
        assert_eq!(other_filters(&single, &wanted), Some(vec!["sensors.cgm.>".to_owned()]));
        // No filter: the whole stream, not the plugin's subjects.
        assert_eq!(other_filters(&made("", &[]), &wanted), Some(Vec::new()));
        let narrower = made("", &["sensors.cgm.>"]);
        assert_eq!(
            other_filters(&narrower, &wanted),
            Some(vec!["sensors.cgm.>".to_owned()])
        );
    }

    #[test]
    fn messages_from_the_future_are_held_only_while_nothing_is_taken_and_only_so_often() {
        let hold = Duration::from_secs(30);
        let start = Instant::now();
        let mut holds = Holds::new(hold, -1);
        assert!(holds.may_hold(1, start), "nothing taken yet: a clock behind");
        assert!(holds.may_hold(HOLDS, start));
        assert!(!holds.may_hold(HOLDS + 1, start), "held long enough");
        holds.hold(7, start);
        assert!(holds.came(7), "it had been held");
        assert!(!holds.came(7), "once");
        holds.taken(true, true, start);
        assert!(
            holds.may_hold(1, start),
            "a held message taken: the clock is right for it alone"
        );
        holds.taken(false, false, start);
        assert!(holds.may_hold(1, start), "a backlog's older reading taken: no sign");
        holds.taken(true, false, start);
        assert!(
            !holds.may_hold(1, start),
            "others are taken: this sensor's clock is wrong"
        );
        assert!(!holds.may_hold(1, start + hold / 2));
        assert!(
            holds.may_hold(1, start + hold),
            "nothing taken for a hold: a clock behind again"
        );
        let mut full = Holds::new(hold, 0);
        for source in 0..HELD_AT_MOST as u64 {
            full.hold(source, start);
        }
        assert!(!full.may_hold(1, start + hold), "as many as may be held");
        assert!(full.may_hold(1, start + hold * 4), "those not come back are forgotten");
        let mut limited = Holds::new(hold, 5);
        assert!(limited.may_hold(4, start));
        assert!(
            !limited.may_hold(5, start),
            "the last delivery the consumer makes is not held: dead-lettered"
        );
        assert!(!Holds::new(hold, 1).may_hold(1, start), "one delivery: none held");
    }

    #[test]
    fn half_the_consumers_ack_pending_limit_waits_for_the_disk_at_most() {
        assert_eq!(waiting_at_most(1000), 500, "the server's default");
        assert_eq!(waiting_at_most(4), 2);
        assert_eq!(waiting_at_most(1), 1, "one at least");
        assert_eq!(waiting_at_most(MAX_ACK_PENDING), WAITING_AT_MOST);
        assert_eq!(waiting_at_most(1 << 40), WAITING_AT_MOST, "bounded in memory");
        assert_eq!(waiting_at_most(-1), WAITING_AT_MOST, "no limit given: ours");
        assert_eq!(waiting_at_most(0), WAITING_AT_MOST);
    }
}
