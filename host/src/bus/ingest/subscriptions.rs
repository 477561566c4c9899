//! Core NATS ingest: subscriptions on the local bus. Readings published while
//! the host is down are lost (the JetStream source keeps them).

use futures::StreamExt;
use tokio::sync::watch;

use super::pending::Pending;
use super::queue::Offered;
use super::{Batch, Ingest, IngestError, ReadingsQueue, take_message};

/// Subscribe to `filters` on the local bus. Done before the host answers its
/// first status request (subscriptions reach the server in the order they are
/// made on the connection), so a reading published after a status reply is
/// never missed.
pub async fn subscribe(
    client: &async_nats::Client,
    filters: &[String],
) -> Result<Vec<async_nats::Subscriber>, IngestError> {
    let mut subscriptions = Vec::with_capacity(filters.len());
    for filter in filters {
        let subscription = client
            .subscribe(filter.clone())
            .await
            .map_err(|source| IngestError::Subscribe {
                filter: filter.clone(),
                source,
            })?;
        subscriptions.push(subscription);
    }
    Ok(subscriptions)
}

/// Feed `queue` from `subscriptions` (see [`subscribe`]) until `stop` turns
/// true. Messages are taken off the client at once and held within pending
/// limits ([`super::pending`]). Readings of one message are queued together; messages are taken in
/// batches of up to `batch_max` and split per sensor so per-sensor order is
/// kept. A batch the queue has no room for is dropped, counted and reported
/// (see [`super::queue`]). The subscriptions ending before `stop` is an error.
pub async fn run<W: From<Batch>>(
    ingest: &mut Ingest,
    subscriptions: Vec<async_nats::Subscriber>,
    queue: &ReadingsQueue<W>,
    batch_max: usize,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), IngestError> {
    ingest.health.flowing(&ingest.plugin);
    // One subscription (the usual case) is read directly: `select_all` costs a
    // re-queue of its stream per message.
    let merged = match <[_; 1]>::try_from(subscriptions) {
        Ok([only]) => only.boxed(),
        Err(several) => futures::stream::select_all(several).boxed(),
    };
    let mut pending = Pending::start(merged, ingest.stats.clone());
    let mut chunk = Vec::with_capacity(batch_max);
    let mut stopping = false;
    loop {
        chunk.clear();
        if stopping {
            // Stopping: take what has already arrived, without waiting for more.
            if pending.take_held(&mut chunk, batch_max) == 0 {
                return Ok(());
            }
        } else {
            tokio::select! {
                biased;
                _ = stop.changed() => {
                    stopping = true;
                    continue;
                }
                taken = pending.take(&mut chunk, batch_max) => if taken == 0 {
                    return Err(IngestError::SubscriptionsEnded);
                },
            }
        }
        let mut readings = Vec::with_capacity(chunk.len());
        for message in &chunk {
            // Core NATS keeps nothing to deliver again: nothing is held.
            take_message(ingest, message, &mut readings, false).await;
        }
        // A chunk of large messages can hold far more readings than the
        // whole queue (256 messages of up to 2,000): it is offered in pieces
        // the queue can take, so no batch is ever larger than the queue.
        let capacity = queue.capacity() as usize;
        let mut readings = readings.into_iter();
        loop {
            let piece: Vec<_> = readings.by_ref().take(capacity).collect();
            if piece.is_empty() {
                break;
            }
            let batch = Batch {
                readings: piece,
                sources: Vec::new(),
                done: None,
                given: None,
                room: None,
            };
            if let Offered::Dropped(dropped) = queue.offer(batch)? {
                ingest.queue_full(dropped, queue.capacity());
            }
        }
    }
}
