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
    let mut messages = futures::stream::select_all(subscriptions).ready_chunks(batch_max);
    loop {
        let chunk = tokio::select! {
            biased;
            _ = stop.changed() => break,
            chunk = messages.next() => match chunk {
                Some(chunk) => chunk,
                None => break,
            },
        };
        let mut readings = Vec::with_capacity(chunk.len());
        for message in chunk {
            stats.messages.fetch_add(1, Ordering::Relaxed);
            match payload::decode(message.subject.as_str(), &message.payload) {
                Ok(decoded) => readings.extend(decoded),
                Err(error) => {
                    stats.deadlettered.fetch_add(1, Ordering::Relaxed);
                    deadletter(
                        &client,
                        &subjects,
                        message.subject.as_str(),
                        &message.payload,
                        &error.to_string(),
                    )
                    .await;
                }
            }
        }
        if !readings.is_empty() && queue.send(Work::Readings(readings)).await.is_err() {
            break; // The worker has stopped.
        }
    }
    Ok(())
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
