//! A worker's queue as ingest fills it: bounded in readings, not in batches.
//!
//! A batch is up to `batch_max` messages, and one message up to 64 KiB of
//! readings (about 2,000). A queue bounded in batches therefore held up to
//! millions of readings per plugin: a publisher of large arrays faster than
//! the plugin took the device's memory (measured: 27 MB to 1.9 GB in 20 s).
//! Here a batch takes room for its readings, and the room comes back when
//! the worker takes it off the queue ([`Batch::off_the_queue`]); what the
//! worker holds then is bounded by its hold (`buffer_readings`).
//!
//! With no room, JetStream ingest waits ([`ReadingsQueue::send`]: the
//! messages wait in the stream, nothing is lost). Core NATS ingest drops the
//! batch ([`ReadingsQueue::offer`]), counted in the plugin's
//! `readings_dropped` and reported by its owner: a core NATS subscriber
//! slower than its publisher loses messages somewhere, and here it is
//! bounded, counted, and names the plugin (waiting instead would only move
//! the loss into the client's subscription buffer, unattributed).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc};

use super::{Batch, IngestError};

/// The room a queued batch takes; given back when it is dropped.
#[derive(Debug)]
pub struct Room {
    _held: OwnedSemaphorePermit,
}

/// What became of a batch offered to a full queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offered {
    /// Queued.
    Queued,
    /// Dropped for want of room: this many readings.
    Dropped(u64),
}

/// The sending side of a worker's queue, bounded in readings.
pub struct ReadingsQueue<W> {
    sender: mpsc::Sender<W>,
    room: Arc<Semaphore>,
    capacity: u32,
    /// The plugin's `readings_dropped`.
    dropped: Arc<AtomicU64>,
}

impl<W> Clone for ReadingsQueue<W> {
    fn clone(&self) -> Self {
        ReadingsQueue {
            sender: self.sender.clone(),
            room: self.room.clone(),
            capacity: self.capacity,
            dropped: self.dropped.clone(),
        }
    }
}

impl<W: From<Batch>> ReadingsQueue<W> {
    /// `sender`, with the readings of the batches on it bounded by
    /// `capacity` (at least 1); readings dropped for want of room are
    /// counted in `dropped`.
    pub fn new(sender: mpsc::Sender<W>, capacity: usize, dropped: Arc<AtomicU64>) -> ReadingsQueue<W> {
        let capacity = u32::try_from(capacity.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        ReadingsQueue {
            sender,
            room: Arc::new(Semaphore::new(capacity as usize)),
            capacity,
            dropped,
        }
    }

    /// The room `batch` needs: its readings, or the whole capacity for a
    /// larger batch (a batch is never split: its readings share one
    /// acknowledgement), which then waits until the queue is empty.
    fn wanted(&self, batch: &Batch) -> u32 {
        u32::try_from(batch.readings.len())
            .unwrap_or(u32::MAX)
            .min(self.capacity)
    }

    /// Queue `batch` once there is room for its readings (JetStream).
    /// Fails only when the worker has stopped.
    pub async fn send(&self, mut batch: Batch) -> Result<(), IngestError> {
        let room = self
            .room
            .clone()
            .acquire_many_owned(self.wanted(&batch))
            .await
            .map_err(|_| IngestError::WorkerStopped)?;
        batch.room = Some(Room { _held: room });
        self.sender
            .send(W::from(batch))
            .await
            .map_err(|_| IngestError::WorkerStopped)
    }

    /// Queue `batch` if there is room for its readings now, or drop it,
    /// counted (core NATS). Fails only when the worker has stopped.
    pub fn offer(&self, mut batch: Batch) -> Result<Offered, IngestError> {
        let readings = batch.readings.len() as u64;
        let room = match self.room.clone().try_acquire_many_owned(self.wanted(&batch)) {
            Ok(room) => room,
            Err(TryAcquireError::NoPermits) => return Ok(self.drop_readings(readings)),
            Err(TryAcquireError::Closed) => return Err(IngestError::WorkerStopped),
        };
        batch.room = Some(Room { _held: room });
        match self.sender.try_send(W::from(batch)) {
            Ok(()) => Ok(Offered::Queued),
            // Full of ticks and swaps besides the readings: no room either.
            Err(mpsc::error::TrySendError::Full(_)) => Ok(self.drop_readings(readings)),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(IngestError::WorkerStopped),
        }
    }

    fn drop_readings(&self, readings: u64) -> Offered {
        self.dropped.fetch_add(readings, Ordering::Relaxed);
        Offered::Dropped(readings)
    }

    /// The most readings the queue holds.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Readings that can be queued now without waiting.
    pub fn room(&self) -> usize {
        self.room.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    fn batch(readings: usize) -> Batch {
        Batch::of(readings)
    }

    fn queue(capacity: usize) -> (ReadingsQueue<Batch>, mpsc::Receiver<Batch>, Arc<AtomicU64>) {
        let (sender, receiver) = mpsc::channel::<Batch>(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        (ReadingsQueue::new(sender, capacity, dropped.clone()), receiver, dropped)
    }

    #[tokio::test]
    async fn a_batch_waits_for_room_for_its_readings_and_the_room_comes_back_when_it_is_dropped() {
        let (queue, mut receiver, _) = queue(100);
        queue.send(batch(60)).await.unwrap();
        assert_eq!(queue.room(), 40);
        // 50 more do not fit: the send waits.
        let second = tokio::spawn({
            let queue = queue.clone();
            async move { queue.send(batch(50)).await }
        });
        tokio::task::yield_now().await;
        assert!(!second.is_finished());
        assert_eq!(receiver.len(), 1, "the second batch is not queued");
        let first = receiver.recv().await.unwrap();
        drop(first);
        second.await.unwrap().unwrap();
        assert_eq!(receiver.recv().await.unwrap().readings.len(), 50);
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_capacity_takes_all_of_it() {
        let (queue, mut receiver, _) = queue(100);
        queue.send(batch(250)).await.unwrap();
        assert_eq!(queue.room(), 0);
        drop(receiver.recv().await.unwrap());
        assert_eq!(queue.room(), 100);
    }

    #[tokio::test]
    async fn a_stopped_worker_is_an_error_not_a_wait() {
        let (queue, receiver, _) = queue(100);
        drop(receiver);
        assert!(matches!(queue.send(batch(1)).await, Err(IngestError::WorkerStopped)));
        assert!(matches!(queue.offer(batch(1)), Err(IngestError::WorkerStopped)));
    }

    #[tokio::test]
    async fn an_offer_without_room_is_dropped_and_counted_and_one_with_room_is_queued() {
        let (queue, mut receiver, dropped) = queue(100);
        assert_eq!(queue.offer(batch(70)).unwrap(), Offered::Queued);
        assert_eq!(queue.offer(batch(40)).unwrap(), Offered::Dropped(40));
        assert_eq!(queue.offer(batch(30)).unwrap(), Offered::Queued);
        assert_eq!(queue.offer(batch(1)).unwrap(), Offered::Dropped(1));
        assert_eq!(dropped.load(Ordering::Relaxed), 41);
        assert_eq!(receiver.recv().await.unwrap().readings.len(), 70);
        assert_eq!(
            queue.offer(batch(500)).unwrap(),
            Offered::Dropped(500),
            "needs all 100: 30 are taken"
        );
        assert_eq!(receiver.recv().await.unwrap().readings.len(), 30);
        assert_eq!(
            queue.offer(batch(500)).unwrap(),
            Offered::Queued,
            "the whole capacity, empty"
        );
        assert_eq!(dropped.load(Ordering::Relaxed), 541);
    }
}
