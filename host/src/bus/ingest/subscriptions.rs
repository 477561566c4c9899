//! Core NATS ingest: subscriptions on the local bus. Readings published while
//! the host is down are lost (the JetStream source keeps them).

use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;

use super::pending::Pending;
use super::queue::Offered;
use super::{Batch, Ingest, IngestError, ReadingsQueue, Rules, rules_changed, take_message};

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

/// How long new subscriptions wait for the server's answer before the old
/// ones are given up (a server away would otherwise hold ingest).
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Subscriptions made, and the filters they are for.
pub struct Read {
    /// The subscriptions ([`subscribe`]).
    pub subscriptions: Vec<async_nats::Subscriber>,
    /// Their filters.
    pub filters: Vec<String>,
}

/// Feed `queue` from `read` until `stop` turns true (then `Ok(None)`), or
/// until `rules` name other filters: then the subscriptions to those are
/// made first, and answered by the server (the client keeps their messages
/// meanwhile), every message the old ones had received is given, and the
/// new subscriptions are returned, to be read in place of these. So no
/// reading is missed and a sensor's readings keep their order; one published
/// in that moment, on a subject both sets read, comes twice (a duplicate,
/// which every plugin takes). New admission rules alone apply at once. Messages are taken off the client at once and held within pending
/// limits ([`super::pending`]). Readings of one message are queued together;
/// messages are taken in batches of up to `batch_max` and split per sensor so
/// per-sensor order is kept. A batch the queue has no room for is dropped,
/// counted and reported (see [`super::queue`]). The subscriptions ending
/// before `stop` is an error.
pub async fn run<W: From<Batch>>(
    ingest: &mut Ingest,
    read: Read,
    rules: &mut watch::Receiver<Rules>,
    queue: &ReadingsQueue<W>,
    batch_max: usize,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<Read>, IngestError> {
    ingest.health.flowing(&ingest.plugin, &read.filters);
    // One subscription (the usual case) is read directly: `select_all` costs a
    // re-queue of its stream per message.
    let merged = match <[_; 1]>::try_from(read.subscriptions) {
        Ok([only]) => only.boxed(),
        Err(several) => futures::stream::select_all(several).boxed(),
    };
    let mut pending = Pending::start(merged, ingest.stats.clone());
    let mut chunk = Vec::with_capacity(batch_max);
    // Stopping, or giving up these subscriptions for those made (`Some`).
    let mut stopping: Option<Option<Read>> = None;
    loop {
        chunk.clear();
        if let Some(made) = &mut stopping {
            // Take what has already arrived, without waiting for more.
            if pending.take_held(&mut chunk, batch_max) == 0 {
                return Ok(made.take());
            }
        } else {
            tokio::select! {
                biased;
                _ = stop.changed() => {
                    pending.stop_filling().await;
                    stopping = Some(None);
                    continue;
                }
                new = rules_changed(rules) => {
                    ingest.readmit(new.admission);
                    if new.filters != read.filters {
                        let made = subscribe(&ingest.client, &new.filters).await?;
                        // Once the server answers, every message it sent
                        // these subscriptions alone has reached the client
                        // (it answers in order); those after reach the new.
                        match tokio::time::timeout(FLUSH_WAIT, ingest.client.flush()).await {
                            Ok(Ok(())) => {}
                            Ok(Err(error)) => tracing::warn!(plugin = %ingest.plugin, %error, "Cannot flush the new subscriptions; readings published as they were made may be missed"),
                            Err(_) => tracing::warn!(plugin = %ingest.plugin, "The server did not answer the new subscriptions in time; readings published as they were made may be missed"),
                        }
                        pending.stop_filling().await;
                        tracing::info!(plugin = %ingest.plugin, was = %read.filters.join(", "), now = %new.filters.join(", "), "The plugin's subscriptions changed");
                        stopping = Some(Some(Read {
                            subscriptions: made,
                            filters: new.filters,
                        }));
                    }
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
