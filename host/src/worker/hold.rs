//! The hold buffer: work taken from the queue that waits for the plugin. While
//! the plugin runs it holds at most one item; while it is down (backoff,
//! quarantine) it keeps taking work, bounded by `buffer_readings`: beyond
//! that the oldest readings are dropped, counted.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::sync::mpsc;

use super::{PluginStats, Work};
use crate::bus::ingest::Batch;

/// Work waiting for the plugin.
pub(super) enum Held {
    /// Readings, and who to tell once their outputs are durable.
    Readings(Batch),
    /// A clock tick.
    Tick(i64),
}

/// Work in arrival order, its readings counted against a bound.
pub(super) struct Hold {
    items: VecDeque<Held>,
    readings: usize,
    max_readings: usize,
    stats: Arc<PluginStats>,
}

impl Hold {
    /// An empty hold of at most `max_readings` readings, shown in `stats`.
    pub(super) fn new(max_readings: usize, stats: Arc<PluginStats>) -> Hold {
        Hold {
            items: VecDeque::new(),
            readings: 0,
            max_readings,
            stats,
        }
    }

    /// Whether nothing is held.
    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Hold `work`; beyond the bound, drop the oldest readings.
    pub(super) fn push(&mut self, work: Held) {
        match work {
            Held::Tick(now_ms) => {
                // Ticks do not pile up: a later tick covers an earlier one.
                if let Some(Held::Tick(last)) = self.items.back_mut() {
                    *last = now_ms;
                } else {
                    self.items.push_back(Held::Tick(now_ms));
                }
            }
            Held::Readings(batch) => {
                self.readings += batch.readings.len();
                self.items.push_back(Held::Readings(batch));
            }
        }
        while self.readings > self.max_readings {
            let Some(oldest) = self.items.iter().position(|h| matches!(h, Held::Readings(..))) else {
                break;
            };
            if let Some(Held::Readings(batch)) = self.items.remove(oldest) {
                // `batch.done` is dropped unsent: JetStream ingest leaves
                // those messages unacknowledged, so the stream redelivers them.
                self.readings -= batch.readings.len();
                self.stats
                    .readings_dropped
                    .fetch_add(batch.readings.len() as u64, Ordering::Relaxed);
            }
        }
        self.show();
    }

    /// The oldest held work, taken out.
    pub(super) fn pop(&mut self) -> Option<Held> {
        let work = self.items.pop_front()?;
        if let Held::Readings(batch) = &work {
            self.readings -= batch.readings.len();
            self.show();
        }
        Some(work)
    }

    /// Drop everything held and still queued in `receiver`, counted; returns
    /// how many readings. (JetStream ingest did not acknowledge them.)
    pub(super) fn abandon(&mut self, receiver: &mut mpsc::Receiver<Work>) -> u64 {
        let mut dropped = self.readings as u64;
        self.items.clear();
        self.readings = 0;
        while let Ok(work) = receiver.try_recv() {
            if let Work::Readings(batch) = work {
                dropped += batch.readings.len() as u64;
            }
        }
        self.show();
        self.stats.readings_dropped.fetch_add(dropped, Ordering::Relaxed);
        dropped
    }

    /// Show the readings held in the status.
    fn show(&self) {
        self.stats.readings_held.store(self.readings as u64, Ordering::Relaxed);
    }
}
