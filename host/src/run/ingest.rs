//! Ingest: the local bus subscriptions of one plugin, decoded into readings
//! and queued for its worker. Bad messages go to the dead-letter subject with
//! the reason; they never stop the pipeline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use super::subjects::Subjects;
use super::worker::Work;
use crate::bus::payload;

/// Counters of ingest, for the status.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Messages received.
    pub messages: AtomicU64,
    /// Messages dead-lettered.
    pub deadlettered: AtomicU64,
}

/// Subscribe to `filters` and feed `queue` until `stop` turns true. Readings of
/// one message are queued together; messages are taken in batches of up to
/// `batch_max` and split per sensor so per-sensor order is kept.
pub async fn run_ingest(
    client: async_nats::Client,
    subjects: Subjects,
    filters: Vec<String>,
    queue: mpsc::Sender<Work>,
    batch_max: usize,
    stats: Arc<IngestStats>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), async_nats::SubscribeError> {
    let mut subscriptions = Vec::new();
    for filter in &filters {
        subscriptions.push(client.subscribe(filter.clone()).await?);
    }
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
            take_message(&client, &subjects, &stats, &message, &mut readings).await;
        }
        if !readings.is_empty() && queue.send(Work::Readings(readings, None)).await.is_err() {
            break; // The worker has stopped.
        }
    }
    Ok(())
}

/// Consume `filters` from the JetStream `stream` through the durable consumer
/// `consumer_name` until `stop`: readings published while the host was down
/// are processed after it starts. A message is acknowledged only after the
/// outputs of its batch are in the outbox (or it was dead-lettered); a crash
/// before that means redelivery, never loss.
#[allow(clippy::too_many_arguments)]
pub async fn run_ingest_jetstream(
    client: async_nats::Client,
    subjects: Subjects,
    stream_name: String,
    consumer_name: String,
    filters: Vec<String>,
    queue: mpsc::Sender<Work>,
    batch_max: usize,
    stats: Arc<IngestStats>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    use async_nats::jetstream::consumer::{AckPolicy, pull};
    let jetstream = async_nats::jetstream::new(client.clone());
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
            take_message(&client, &subjects, &stats, &message, &mut readings).await;
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

/// Decode one sensor message into `readings`, or dead-letter it with the reason.
async fn take_message(
    client: &async_nats::Client,
    subjects: &Subjects,
    stats: &IngestStats,
    message: &async_nats::Message,
    readings: &mut Vec<crate::model::Reading>,
) {
    stats.messages.fetch_add(1, Ordering::Relaxed);
    match payload::decode_into(message.subject.as_str(), &message.payload, readings) {
        Ok(()) => {}
        Err(error) => {
            stats.deadlettered.fetch_add(1, Ordering::Relaxed);
            deadletter(
                client,
                subjects,
                message.subject.as_str(),
                &message.payload,
                &error.to_string(),
            )
            .await;
        }
    }
}

/// Publish a refused message with its reason on the dead-letter subject.
async fn deadletter(client: &async_nats::Client, subjects: &Subjects, subject: &str, payload: &[u8], reason: &str) {
    tracing::warn!(subject, reason, "Invalid sensor message dead-lettered");
    let shown: String = String::from_utf8_lossy(&payload[..payload.len().min(1024)]).into_owned();
    let letter = json!({ "subject": subject, "reason": reason, "payload": shown, "bytes": payload.len() });
    if let Err(error) = client.publish(subjects.deadletter(), letter.to_string().into()).await {
        tracing::warn!(%error, "Cannot publish to the dead-letter subject");
    }
}
