//! Ingest: the local bus subscriptions of one plugin, decoded into readings,
//! judged by [`Admission`], and queued for its worker. Bad messages and
//! implausible readings go to the dead-letter subject with the reason; they
//! never stop the pipeline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::admission::{Admission, DeadLetterKind, Refusal};
use super::clock::Clock;
use super::subjects::Subjects;
use super::worker::Work;
use crate::bus::payload;

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
}

/// Dead letters logged per [`LOG_WINDOW`] and ingest task at most: a flood
/// of bad messages must not flood the log (a full stderr pipe stops the host).
const LOGS_PER_WINDOW: u32 = 20;
/// See [`LOGS_PER_WINDOW`].
const LOG_WINDOW: Duration = Duration::from_secs(10);

/// What ingest needs for every message of one plugin.
pub struct Ingest {
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
    log: LogBudget,
}

impl Ingest {
    /// Ingest through `client`, judging readings by `admission` on `clock`.
    pub fn new(
        client: async_nats::Client,
        subjects: Subjects,
        stats: Arc<IngestStats>,
        admission: Admission,
        clock: Clock,
    ) -> Ingest {
        Ingest {
            client,
            subjects,
            stats,
            admission,
            clock,
            log: LogBudget::default(),
        }
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

/// Subscribe to `filters` on the local bus. Done before the host answers its
/// first status request (subscriptions reach the server in the order they are
/// made on the connection), so a reading published after a status reply is
/// never missed.
pub async fn subscribe(
    client: &async_nats::Client,
    filters: &[String],
) -> Result<Vec<async_nats::Subscriber>, async_nats::SubscribeError> {
    let mut subscriptions = Vec::with_capacity(filters.len());
    for filter in filters {
        subscriptions.push(client.subscribe(filter.clone()).await?);
    }
    Ok(subscriptions)
}

/// Feed `queue` from `subscriptions` (see [`subscribe`]) until `stop` turns
/// true. Readings of one message are queued together; messages are taken in
/// batches of up to `batch_max` and split per sensor so per-sensor order is
/// kept.
pub async fn run_ingest(
    mut ingest: Ingest,
    subscriptions: Vec<async_nats::Subscriber>,
    queue: mpsc::Sender<Work>,
    batch_max: usize,
    mut stop: watch::Receiver<bool>,
) {
    // One subscription (the usual case) is read directly: `select_all` costs a
    // re-queue of its stream per message.
    let merged = match <[_; 1]>::try_from(subscriptions) {
        Ok([only]) => only.boxed(),
        Err(several) => futures::stream::select_all(several).boxed(),
    };
    let mut messages = merged.ready_chunks(batch_max);
    let mut stopping = false;
    loop {
        let chunk = if stopping {
            // Stopping: take what has already arrived, without waiting for more.
            match futures::FutureExt::now_or_never(messages.next()) {
                Some(Some(chunk)) => chunk,
                _ => break,
            }
        } else {
            tokio::select! {
                biased;
                _ = stop.changed() => {
                    stopping = true;
                    continue;
                }
                chunk = messages.next() => match chunk {
                    Some(chunk) => chunk,
                    None => break,
                },
            }
        };
        let mut readings = Vec::with_capacity(chunk.len());
        for message in chunk {
            take_message(&mut ingest, &message, &mut readings).await;
        }
        if !readings.is_empty() && queue.send(Work::Readings(readings, None)).await.is_err() {
            break; // The worker has stopped.
        }
    }
}

/// Consume `filters` from the JetStream `stream` through the durable consumer
/// `consumer_name` until `stop`: readings published while the host was down
/// are processed after it starts. A message is acknowledged only after the
/// outputs of its batch are in the outbox (or it was dead-lettered); a crash
/// before that means redelivery, never loss.
#[allow(clippy::too_many_arguments)]
pub async fn run_ingest_jetstream(
    mut ingest: Ingest,
    stream_name: String,
    consumer_name: String,
    filters: Vec<String>,
    queue: mpsc::Sender<Work>,
    batch_max: usize,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    let jetstream = async_nats::jetstream::new(ingest.client.clone());
    // The local stream may appear after the host starts: wait for it.
    let stream = loop {
        match jetstream.get_stream(&stream_name).await {
            Ok(stream) => break stream,
            Err(error) => {
                tracing::warn!(stream = %stream_name, %error, "Waiting for the sensor stream");
                tokio::select! {
                    _ = stop.changed() => return Ok(()),
                    _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let config = pull::Config {
        durable_name: Some(consumer_name.clone()),
        filter_subjects: filters,
        ack_policy: AckPolicy::Explicit,
        ..Default::default()
    };
    let consumer: async_nats::jetstream::consumer::Consumer<pull::Config> = stream
        .get_or_create_consumer(&consumer_name, config)
        .await
        .map_err(|e| format!("consumer {consumer_name} on {stream_name}: {e}"))?;
    let messages = consumer
        .messages()
        .await
        .map_err(|e| format!("consumer {consumer_name}: {e}"))?;
    let mut chunks = messages.ready_chunks(batch_max);
    loop {
        let chunk = tokio::select! {
            biased;
            _ = stop.changed() => break,
            chunk = chunks.next() => match chunk {
                Some(chunk) => chunk,
                None => break,
            },
        };
        let mut readings = Vec::new();
        let mut received = Vec::with_capacity(chunk.len());
        for message in chunk {
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(%error, "JetStream consumer error");
                    continue;
                }
            };
            take_message(&mut ingest, &message, &mut readings).await;
            received.push(message);
        }
        if !readings.is_empty() {
            let (done, written) = tokio::sync::oneshot::channel();
            if queue.send(Work::Readings(readings, Some(done))).await.is_err() {
                break; // The worker has stopped: leave the messages unacknowledged.
            }
            if written.await.is_err() {
                // Dropped by the worker (its plugin down, its hold buffer
                // full): no ack, so the stream delivers them again.
                continue;
            }
        }
        for message in received {
            if let Err(error) = message.ack().await {
                tracing::warn!(%error, "Cannot acknowledge a sensor message; it will be redelivered");
            }
        }
    }
    Ok(())
}

/// Decode one sensor message into `readings`, keeping the readings that
/// [`Admission`] lets in; dead-letter the message if it cannot be decoded, or
/// its refused readings with their reasons.
async fn take_message(ingest: &mut Ingest, message: &async_nats::Message, readings: &mut Vec<crate::model::Reading>) {
    ingest.stats.messages.fetch_add(1, Ordering::Relaxed);
    let subject = message.subject.as_str();
    let before = readings.len();
    if let Err(error) = payload::decode_into(subject, &message.payload, readings) {
        let refusal = Refusal {
            kind: DeadLetterKind::Malformed,
            reason: error.to_string(),
        };
        deadletter(ingest, subject, &message.payload, &refusal, None).await;
        return;
    }
    let trusted = ingest.admission.trusts_payload_sensors(subject);
    let now_ms = ingest.clock.now_ms();
    let mut decoded = readings.split_off(before);
    let mut refused: Vec<(usize, Refusal)> = Vec::new();
    let mut index = 0;
    decoded.retain(|reading| {
        let at = index;
        index += 1;
        match ingest.admission.check(subject, trusted, at, reading, now_ms) {
            Ok(()) => true,
            Err(refusal) => {
                refused.push((at, refusal));
                false
            }
        }
    });
    readings.append(&mut decoded);
    // One letter per reason: the first refusal's sentence, every index.
    for kind in DeadLetterKind::ALL {
        let of_kind: Vec<&(usize, Refusal)> = refused.iter().filter(|(_, refusal)| refusal.kind == kind).collect();
        let Some((_, first)) = of_kind.first() else { continue };
        let indexes: Vec<usize> = of_kind.iter().map(|(at, _)| *at).collect();
        deadletter(ingest, subject, &message.payload, first, Some(&indexes)).await;
    }
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
    if let Err(error) = ingest
        .client
        .publish(ingest.subjects.deadletter(), letter.to_string().into())
        .await
    {
        tracing::warn!(%error, "Cannot publish to the dead-letter subject");
    }
}
