//! The hold buffer: work taken from the queue that waits for the plugin. While
//! the plugin runs it holds at most one item; while it is down (backoff,
//! quarantine) it keeps taking work, bounded by `buffer_readings`: beyond
//! that the oldest readings are dropped, counted. The newest batch is always
//! kept, however large: while the plugin runs it is the work being given,
//! which the bound is not for (a gateway's backfill can hold more readings in
//! one batch than the bound; dropping it would lose a whole burst of a
//! healthy plugin's readings). A batch is bounded by the ingest's batch size
//! and message size.

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

    /// Hold `work`; beyond the bound, drop the oldest readings, never the
    /// newest batch.
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
            let is_readings = |held: &Held| matches!(held, Held::Readings(..));
            let (Some(oldest), Some(newest)) = (
                self.items.iter().position(is_readings),
                self.items.iter().rposition(is_readings),
            ) else {
                break;
            };
            if oldest == newest {
                break;
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    fn batch(readings: usize) -> Held {
        Held::Readings(Batch::of(readings))
    }

    fn held(hold: &Hold) -> Vec<usize> {
        hold.items
            .iter()
            .map(|held| match held {
                Held::Readings(batch) => batch.readings.len(),
                Held::Tick(_) => 0,
            })
            .collect()
    }

    #[test]
    fn a_batch_larger_than_the_bound_is_kept_whole() {
        let stats = Arc::new(PluginStats::default());
        let mut hold = Hold::new(10, stats.clone());
        hold.push(batch(11));
        assert_eq!(held(&hold), [11]);
        assert_eq!(stats.readings_dropped.load(Ordering::Relaxed), 0);
        assert_eq!(stats.readings_held.load(Ordering::Relaxed), 11);
    }

    #[test]
    fn beyond_the_bound_the_oldest_batches_go_and_the_newest_stays() {
        let stats = Arc::new(PluginStats::default());
        let mut hold = Hold::new(10, stats.clone());
        hold.push(batch(4));
        hold.push(Held::Tick(1));
        hold.push(batch(5));
        assert_eq!(held(&hold), [4, 0, 5], "within the bound: all kept");
        hold.push(batch(8));
        assert_eq!(held(&hold), [0, 8], "the oldest two dropped, the tick kept");
        assert_eq!(stats.readings_dropped.load(Ordering::Relaxed), 9);
        hold.push(batch(30));
        assert_eq!(held(&hold), [0, 30]);
        assert_eq!(stats.readings_dropped.load(Ordering::Relaxed), 17);
    }
}
