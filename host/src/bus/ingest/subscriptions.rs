//! Core NATS ingest: subscriptions on the local bus. Readings published while
//! the host is down are lost (the JetStream source keeps them).

use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio::time::Instant;

use super::pending::Pending;
use super::queue::Offered;
use super::{Batch, Ingest, IngestError, ReadingsQueue, Rules, rules_changed, take_message};
use crate::bus::violations::Violations;

/// The local bus as core ingest subscribes on it: the client, and the
/// subscriptions its server refused. A subscription the server's permissions
/// refuse is made all the same, as far as the client knows: the server says
/// so only in an `-ERR` on the connection, after it, and sends it nothing
/// ([`crate::bus::violations`]).
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The local connection.
    pub client: async_nats::Client,
    /// Its refused subscriptions (fed by the connection's events).
    pub refused: Arc<Violations>,
}

/// Subscribe to `filters` on the local bus. Done before the host answers its
/// first status request (subscriptions reach the server in the order they are
/// made on the connection), so a reading published after a status reply is
/// never missed. Whether the server refuses one is known later ([`run`]
/// says so then).
pub async fn subscribe(bus: &Subscriber, filters: &[String]) -> Result<Read, IngestError> {
    // Taken first: a refusal numbered after it is one of these.
    let mark = bus.refused.mark();
    let mut subscriptions = Vec::with_capacity(filters.len());
    for filter in filters {
        let subscription = bus
            .client
            .subscribe(filter.clone())
            .await
            .map_err(|source| IngestError::Subscribe {
                filter: filter.clone(),
                source,
            })?;
        subscriptions.push(subscription);
    }
    Ok(Read {
        subscriptions,
        filters: filters.to_vec(),
        mark,
        again: None,
    })
}

/// How long new subscriptions wait to be written to the server before the
/// old ones are given up (a server away would otherwise hold ingest).
const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Subscriptions made, and the filters they are for.
pub struct Read {
    /// The subscriptions ([`subscribe`]).
    pub subscriptions: Vec<async_nats::Subscriber>,
    /// Their filters.
    pub filters: Vec<String>,
    /// [`Violations::mark`] before they were made: a refusal of one of the
    /// filters numbered after it is a refusal of these.
    mark: u64,
    /// Made again after the server refused one of them: the wait before the
    /// next attempt, should it refuse again.
    again: Option<Duration>,
}

/// How long subscriptions made again after a refusal wait without another
/// before they are taken for read (the server's `-ERR` comes within
/// milliseconds of the subscription; there is no answer when it accepts).
const ACCEPTED_AFTER: Duration = Duration::from_secs(1);

/// Where the subscriptions stand with the server.
enum Standing {
    /// Taken for read: no refusal has come.
    Read,
    /// Made again after a refusal: taken for read at `until` if no refusal
    /// comes before; the next attempt waits `wait` if one does.
    Unconfirmed { until: Instant, wait: Duration },
    /// One was refused: all are made again at `at`, then waiting `wait`.
    Refused { at: Instant, wait: Duration },
}

impl Standing {
    /// When something is to be done without an event (nothing while the
    /// subscriptions are read).
    fn deadline(&self) -> Option<Instant> {
        match self {
            Standing::Read => None,
            Standing::Unconfirmed { until: at, .. } | Standing::Refused { at, .. } => Some(*at),
        }
    }
}

/// Feed `queue` from `read` until `stop` turns true (then `Ok(None)`), or
/// until `rules` name other filters: then the subscriptions to those are
/// made first (the client keeps their messages meanwhile), every message the
/// old ones had received is given, and the new subscriptions are returned,
/// to be read in place of these ([`resubscribe`]). So a sensor's readings
/// keep their order; one published in that moment, on a subject both sets
/// read, comes twice (a duplicate, which every plugin takes). New admission
/// rules alone apply at once. Messages are taken off the client at once and
/// held within pending limits ([`super::pending`]). Readings of one message
/// are queued together; messages are taken in batches of up to `batch_max`
/// and split per sensor so per-sensor order is kept. A batch the queue has
/// no room for is dropped, counted and reported (see [`super::queue`]). The
/// subscriptions ending before `stop` is an error.
///
/// A subscription the server refuses (its permissions) gets nothing: the
/// input is shown lost and the owner told (the plugin `degraded`, alerted),
/// while the other subscriptions are still read. They are all made again in
/// the same way after [`super::RETRY_FIRST`], doubling up to
/// [`super::RETRY_MAX`], and taken for read again once made without a
/// refusal (permissions given meanwhile).
pub async fn run<W: From<Batch>>(
    ingest: &mut Ingest,
    bus: &Subscriber,
    read: Read,
    rules: &mut watch::Receiver<Rules>,
    queue: &ReadingsQueue<W>,
    batch_max: usize,
    stop: &mut watch::Receiver<bool>,
) -> Result<Option<Read>, IngestError> {
    let mut standing = match read.again {
        None => {
            ingest.health.flowing(&ingest.plugin, &read.filters);
            Standing::Read
        }
        Some(wait) => Standing::Unconfirmed {
            until: Instant::now() + ACCEPTED_AFTER,
            wait,
        },
    };
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
    // Made once, not at each batch: a refusal leads to new subscriptions,
    // read by the next call (fused: never polled after its end).
    let refusal = bus.refused.refused(&read.filters, read.mark).fuse();
    tokio::pin!(refusal);
    loop {
        chunk.clear();
        if let Some(made) = &mut stopping {
            // Take what has already arrived, without waiting for more.
            if pending.take_held(&mut chunk, batch_max) == 0 {
                return Ok(made.take());
            }
        } else {
            let deadline = standing.deadline();
            tokio::select! {
                biased;
                _ = stop.changed() => {
                    pending.stop_filling().await;
                    stopping = Some(None);
                    continue;
                }
                filter = &mut refusal, if !matches!(standing, Standing::Refused { .. }) => {
                    let wait = match standing {
                        Standing::Unconfirmed { wait, .. } => wait,
                        _ => super::RETRY_FIRST,
                    };
                    ingest.subscription_refused(filter, wait);
                    standing = Standing::Refused { at: Instant::now() + wait, wait };
                    continue;
                }
                _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    match standing {
                        Standing::Refused { wait, .. } => {
                            let mut made = resubscribe(ingest, bus, &read.filters, &mut pending).await?;
                            made.again = Some((wait * 2).min(super::RETRY_MAX));
                            stopping = Some(Some(made));
                        }
                        _ => {
                            ingest.health.flowing(&ingest.plugin, &read.filters);
                            standing = Standing::Read;
                        }
                    }
                    continue;
                }
                new = rules_changed(rules) => {
                    ingest.readmit(new.admission);
                    if new.filters != read.filters {
                        let made = resubscribe(ingest, bus, &new.filters, &mut pending).await?;
                        tracing::info!(plugin = %ingest.plugin, was = %read.filters.join(", "), now = %new.filters.join(", "), "The plugin's subscriptions changed");
                        stopping = Some(Some(made));
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

/// Make subscriptions to `filters` in place of those `pending` fills from:
/// made first, then written to the server (the client keeps their messages
/// meanwhile), and then `pending` stops filling, holding what the old ones
/// had received.
///
/// The client's flush writes; it does not wait for the server's answer
/// (async-nats 0.51 has no ping a caller can await). So a reading the
/// server sent to the old subscriptions alone just before it took the new
/// ones can still be on its way when they stop: a window of a network round
/// trip, where a reading may be missed.
async fn resubscribe(
    ingest: &Ingest,
    bus: &Subscriber,
    filters: &[String],
    pending: &mut Pending,
) -> Result<Read, IngestError> {
    let made = subscribe(bus, filters).await?;
    match tokio::time::timeout(FLUSH_WAIT, ingest.client.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            tracing::warn!(plugin = %ingest.plugin, %error, "Cannot flush the new subscriptions; readings published as they were made may be missed")
        }
        Err(_) => {
            tracing::warn!(plugin = %ingest.plugin, "The new subscriptions could not be written to the server in time; readings published as they were made may be missed")
        }
    }
    pending.stop_filling().await;
    Ok(made)
}
