//! Messages taken off the local bus client at once and held for core NATS
//! ingest within pending limits, in messages and in bytes (as the NATS Go and
//! C clients bound a subscription's pending messages).
//!
//! The client's own buffer per subscription is bounded only in messages
//! ([`crate::bus::connect::SUBSCRIPTION_CAPACITY`]), so it cannot be large:
//! 16,384 messages of the largest payload is already 1 GiB. Ingest decodes as
//! it takes, so on a busy device it falls behind for a few milliseconds at a
//! time. Here a task does nothing but move each message from the client into
//! a queue that holds up to [`PENDING_MESSAGES_MAX`] messages and
//! [`PENDING_BYTES_MAX`] bytes, so the client's buffer stays near empty and
//! large messages wait within the byte limit; beyond either limit the message
//! is dropped and counted like the client's own drops
//! ([`super::IngestStats::dropped_by_client`]). Measured: a flood of 60 KiB
//! messages for a slow plugin peaked at about 340 MiB of RSS with only the
//! client's buffer, about 200 MiB with this queue in front.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::{FutureExt, Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};

use super::IngestStats;

/// Messages held for ingest at most (the async-nats client's default
/// subscription capacity).
pub const PENDING_MESSAGES_MAX: usize = 65_536;
/// Bytes of messages (subject, headers and payload) held for ingest at most
/// (the NATS Go client's default pending bytes limit).
pub const PENDING_BYTES_MAX: usize = 64 << 20;

/// What is held, shared by the task that fills and the ingest that takes.
#[derive(Debug, Default)]
struct Held {
    messages: AtomicUsize,
    bytes: AtomicUsize,
}

/// The receiving end: messages in arrival order. Dropping it stops the task
/// that fills it.
pub struct Pending {
    messages: mpsc::UnboundedReceiver<async_nats::Message>,
    held: Arc<Held>,
    filler: tokio::task::JoinHandle<()>,
    /// Stops the filler ([`Pending::stop_filling`]).
    stop: Option<oneshot::Sender<()>>,
}

/// A message's weight against [`PENDING_BYTES_MAX`].
fn weight(message: &async_nats::Message) -> usize {
    message.length
}

impl Pending {
    /// Take every message of `source` as it arrives (on a task of its own)
    /// and hold it for [`Pending::take`], within the pending limits;
    /// dropped messages are counted in `stats`. When `source` ends, the
    /// messages held are still taken, then [`Pending::take`] returns 0.
    pub fn start<S>(source: S, stats: Arc<IngestStats>) -> Pending
    where
        S: Stream<Item = async_nats::Message> + Send + Unpin + 'static,
    {
        Pending::start_with_limits(source, stats, PENDING_MESSAGES_MAX, PENDING_BYTES_MAX)
    }

    fn start_with_limits<S>(mut source: S, stats: Arc<IngestStats>, max_messages: usize, max_bytes: usize) -> Pending
    where
        S: Stream<Item = async_nats::Message> + Send + Unpin + 'static,
    {
        let (sender, messages) = mpsc::unbounded_channel();
        let held = Arc::new(Held::default());
        let filling = held.clone();
        let (stop, mut stopped) = oneshot::channel::<()>();
        let filler = tokio::spawn(async move {
            // Hold `message` within the limits; false once ingest is gone.
            let hold = |message: async_nats::Message| {
                let weight = weight(&message);
                let full = filling.messages.load(Ordering::Acquire) >= max_messages
                    || filling.bytes.load(Ordering::Acquire) + weight > max_bytes;
                if full {
                    stats.dropped_before_ingest();
                    return true;
                }
                filling.messages.fetch_add(1, Ordering::AcqRel);
                filling.bytes.fetch_add(weight, Ordering::AcqRel);
                sender.send(message).is_ok()
            };
            loop {
                tokio::select! {
                    biased;
                    // What the source has ready at a stop is taken, and no
                    // more than the limit: under a flood it is always ready.
                    _ = &mut stopped => {
                        for _ in 0..max_messages {
                            let Some(Some(message)) = source.next().now_or_never() else { return };
                            if !hold(message) {
                                return;
                            }
                        }
                        return;
                    }
                    message = source.next() => {
                        // The source ended, or ingest is gone.
                        let Some(message) = message else { return };
                        if !hold(message) {
                            return;
                        }
                    }
                }
            }
        });
        Pending {
            messages,
            held,
            filler,
            stop: Some(stop),
        }
    }

    /// Wait for messages and move up to `max` of those held into `into`;
    /// returns how many (0: the source has ended and nothing is held).
    pub async fn take(&mut self, into: &mut Vec<async_nats::Message>, max: usize) -> usize {
        let taken = self.messages.recv_many(into, max).await;
        self.release(&into[into.len() - taken..]);
        taken
    }

    /// Take no more from the source once what it has delivered is held:
    /// after this, [`Pending::take_held`] gives every message the source had
    /// delivered, and [`Pending::take`] returns 0 once they are taken. (For a
    /// subscription, what the client had received: ingest stops, or reads
    /// other subscriptions, without leaving any behind.)
    pub async fn stop_filling(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
            let _ = (&mut self.filler).await;
        }
    }

    /// As [`Pending::take`], without waiting: what is held now.
    pub fn take_held(&mut self, into: &mut Vec<async_nats::Message>, max: usize) -> usize {
        let before = into.len();
        while into.len() - before < max {
            match self.messages.try_recv() {
                Ok(message) => into.push(message),
                Err(_) => break,
            }
        }
        self.release(&into[before..]);
        into.len() - before
    }

    fn release(&self, taken: &[async_nats::Message]) {
        let bytes: usize = taken.iter().map(weight).sum();
        self.held.messages.fetch_sub(taken.len(), Ordering::AcqRel);
        self.held.bytes.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.filler.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::channel::mpsc as source;

    fn message(payload_len: usize) -> async_nats::Message {
        let subject = "sensors.a";
        async_nats::Message {
            subject: subject.into(),
            reply: None,
            payload: vec![b'x'; payload_len].into(),
            headers: None,
            status: None,
            description: None,
            length: subject.len() + payload_len,
        }
    }

    /// Yields to the filler until `done` holds (bounded: the filler runs on
    /// this test's single thread whenever the test yields).
    async fn until(mut done: impl FnMut() -> bool) {
        for _ in 0..100_000 {
            if done() {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("the filler did not get there");
    }

    #[tokio::test]
    async fn beyond_the_message_limit_messages_are_dropped_and_counted_and_taking_makes_room() {
        let stats = Arc::new(IngestStats::default());
        let (publish, messages) = source::unbounded();
        let mut pending = Pending::start_with_limits(messages, stats.clone(), 4, usize::MAX);
        for _ in 0..6 {
            publish.unbounded_send(message(10)).unwrap();
        }
        until(|| stats.dropped_by_client.load(Ordering::Relaxed) == 2).await;
        let mut taken = Vec::new();
        assert_eq!(pending.take_held(&mut taken, usize::MAX), 4);
        assert_eq!(pending.take_held(&mut taken, usize::MAX), 0);

        // The room taken messages held is free again.
        for _ in 0..4 {
            publish.unbounded_send(message(10)).unwrap();
        }
        drop(publish);
        while pending.take(&mut taken, 3).await > 0 {}
        assert_eq!(taken.len(), 8, "4, then 4 more once taken");
        assert_eq!(stats.dropped_by_client.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn beyond_the_byte_limit_messages_are_dropped_in_arrival_order_kept() {
        let stats = Arc::new(IngestStats::default());
        let (publish, messages) = source::unbounded();
        // Each message weighs 9 + 100 bytes: three fit in 350.
        let mut pending = Pending::start_with_limits(messages, stats.clone(), usize::MAX, 350);
        for size in [100, 100, 100, 100, 10] {
            publish.unbounded_send(message(size)).unwrap();
        }
        drop(publish);
        until(|| stats.dropped_by_client.load(Ordering::Relaxed) >= 1).await;
        let mut taken = Vec::new();
        while pending.take(&mut taken, usize::MAX).await > 0 {}
        let sizes: Vec<usize> = taken.iter().map(|m| m.payload.len()).collect();
        // The fourth did not fit; the small fifth did.
        assert_eq!(sizes, [100, 100, 100, 10]);
        assert_eq!(stats.dropped_by_client.load(Ordering::Relaxed), 1);
        assert_eq!(pending.held.bytes.load(Ordering::Relaxed), 0);
        assert_eq!(pending.held.messages.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn stopped_filling_holds_every_message_the_source_had_and_no_later_one() {
        let stats = Arc::new(IngestStats::default());
        let (publish, messages) = source::unbounded();
        let mut pending = Pending::start(messages, stats);
        // Sent before the filler has run at all (this test's one thread has
        // not yielded): only the stop's wait for the filler moves them.
        for size in 1..=5 {
            publish.unbounded_send(message(size)).unwrap();
        }
        pending.stop_filling().await;
        assert!(
            publish.unbounded_send(message(6)).is_err(),
            "the source is given up (a subscription: unsubscribed)"
        );
        let mut taken = Vec::new();
        assert_eq!(pending.take_held(&mut taken, usize::MAX), 5);
        let sizes: Vec<usize> = taken.iter().map(|m| m.payload.len()).collect();
        assert_eq!(sizes, [1, 2, 3, 4, 5], "in order");
        assert_eq!(pending.take(&mut taken, usize::MAX).await, 0, "then the end");
        pending.stop_filling().await;
    }

    #[test]
    fn a_stop_under_a_flood_ends_having_taken_at_most_the_limit_more() {
        // On a runtime of its own: were the stop never seen, its thread
        // would spin for good, and this test fail after the wait below.
        let (done, ended) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                // Always ready: were the stop looked at only when the source
                // is not, it would never be.
                let flood = futures::stream::repeat_with(|| message(1));
                let stats = Arc::new(IngestStats::default());
                let mut pending = Pending::start_with_limits(flood, stats, 10, usize::MAX);
                pending.stop_filling().await;
                let mut taken = Vec::new();
                let held = pending.take_held(&mut taken, usize::MAX);
                let after = pending.take(&mut taken, usize::MAX).await;
                let _ = done.send((held, after));
            });
        });
        let (held, after) = ended
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the stop was not seen under the flood");
        assert_eq!(held, 10, "the limit");
        assert_eq!(after, 0, "then the end");
    }
}
