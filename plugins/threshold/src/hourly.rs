//! Hourly summaries of one sensor: which UTC hour is open, what it holds,
//! and when it closes.

use std::collections::VecDeque;

use edgewise_sdk::Summary;
use edgewise_sdk::stats::RunningStats;
use edgewise_sdk::time::{HOUR_MS, window_start};
use serde::{Deserialize, Serialize};

/// The UTC hour `[start, end)` holding `timestamp_ms`.
///
/// Uses [`window_start`] wherever the hour is representable. In the partial
/// hours at the very ends of the `i64` range the bounds are clamped to
/// `i64::MIN` / `i64::MAX` instead of overflowing; every timestamp of such an
/// hour still maps to the same bounds, so the bookkeeping stays consistent.
pub(crate) fn hour_of(timestamp_ms: i64) -> (i64, i64) {
    let into_hour = timestamp_ms.rem_euclid(HOUR_MS);
    let start = match timestamp_ms.checked_sub(into_hour) {
        Some(_) => window_start(timestamp_ms, HOUR_MS),
        None => i64::MIN,
    };
    let end = timestamp_ms.saturating_add(HOUR_MS - into_hour);
    (start, end)
}

/// The most timestamps an open hour remembers to spot a late duplicate: the
/// newest ones counted. A sensor read every 5 minutes has 12 an hour, one
/// read every 30 s 120; a probe read every millisecond kept 3,600,000, and
/// outgrew the plugin's memory and state limits within the hour.
const MAX_SEEN: usize = 128;

/// What happened to a reading offered to the [`HourBook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recorded {
    /// Counted in the open hour.
    Counted,
    /// Its hour has already closed (or its summary was already sent): not counted.
    HourClosed,
    /// The open hour already counted a reading with this timestamp: not counted again.
    Duplicate,
    /// Older than the [`MAX_SEEN`] newest readings the open hour counted, so
    /// possibly one of the older ones again: not counted.
    TooLateToCheck,
}

/// The figures of the one hour still open.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OpenHour {
    start: i64,
    end: i64,
    stats: RunningStats,
    invalid: u64,
    /// The newest [`MAX_SEEN`] timestamps counted, sorted, to spot late
    /// duplicates (the same encoding in a snapshot as the `Vec` of 0.2.1,
    /// which kept them all).
    seen: VecDeque<i64>,
}

impl OpenHour {
    fn new(start: i64, end: i64) -> OpenHour {
        OpenHour {
            start,
            end,
            stats: RunningStats::new(),
            invalid: 0,
            seen: VecDeque::new(),
        }
    }

    /// Count a reading: `value` is `None` for an invalid one.
    fn count(&mut self, timestamp_ms: i64, value: Option<f64>) -> Recorded {
        match self.seen.binary_search(&timestamp_ms) {
            Ok(_) => return Recorded::Duplicate,
            // Older than all it remembers, once it has forgotten some (or
            // remembers exactly MAX_SEEN: the rule stays simple to state).
            Err(0) if self.seen.len() >= MAX_SEEN => return Recorded::TooLateToCheck,
            Err(at) => self.seen.insert(at, timestamp_ms),
        }
        // In-order readings go at the end: the oldest is forgotten. A state
        // restored from 0.2.1 may hold more; it shrinks here.
        while self.seen.len() > MAX_SEEN {
            self.seen.pop_front();
        }
        match value {
            Some(value) => self.stats.push(value),
            None => self.invalid = self.invalid.saturating_add(1),
        }
        Recorded::Counted
    }

    /// The summary of this hour, `None` when it holds no valid reading.
    fn summary(&self, sensor: &str) -> Option<Summary> {
        let (mean, min, max, sd) = (
            self.stats.mean()?,
            self.stats.min()?,
            self.stats.max()?,
            self.stats.sd()?,
        );
        Some(
            Summary::new(sensor, self.start, self.end)
                .metric("n", self.stats.count() as f64)
                .metric("mean", mean)
                .metric("min", min)
                .metric("max", max)
                .metric("sd", sd)
                .metric("invalid", self.invalid as f64),
        )
    }
}

/// The hourly bookkeeping of one sensor.
///
/// At most one hour is open at a time: an in-order reading in a later hour
/// closes it. Every hour starting before `closed_before` is closed for good,
/// so a summary is never sent twice for the same hour.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct HourBook {
    open: Option<OpenHour>,
    closed_before: i64,
}

impl Default for HourBook {
    fn default() -> HourBook {
        HourBook {
            open: None,
            closed_before: i64::MIN,
        }
    }
}

impl HourBook {
    /// Record an in-order reading (newer than any before it for this sensor).
    /// Returns the summary of the hour it closes, if that hour had a valid reading.
    pub(crate) fn record_in_order(
        &mut self,
        sensor: &str,
        timestamp_ms: i64,
        value: Option<f64>,
    ) -> (Recorded, Option<Summary>) {
        let (start, end) = hour_of(timestamp_ms);
        let closed = match &self.open {
            Some(open) if open.start < start => self.close(sensor),
            _ => None,
        };
        // Every hour before this reading's hour has ended for this sensor.
        self.closed_before = self.closed_before.max(start);
        if start < self.closed_before {
            return (Recorded::HourClosed, closed);
        }
        let recorded = match &mut self.open {
            Some(open) if open.start == start => open.count(timestamp_ms, value),
            // Unreachable for a truly in-order reading; refuse rather than miscount.
            Some(_) => Recorded::HourClosed,
            None => {
                let mut open = OpenHour::new(start, end);
                let recorded = open.count(timestamp_ms, value);
                self.open = Some(open);
                recorded
            }
        };
        (recorded, closed)
    }

    /// Record a late reading (older than the newest for this sensor): counted
    /// only if its hour is the one still open.
    pub(crate) fn record_late(&mut self, timestamp_ms: i64, value: Option<f64>) -> Recorded {
        let (start, _) = hour_of(timestamp_ms);
        match &mut self.open {
            Some(open) if open.start == start => open.count(timestamp_ms, value),
            _ => Recorded::HourClosed,
        }
    }

    /// Close the open hour if it has ended by `now_ms`, and every earlier
    /// hour with it. Returns its summary, if it had a valid reading.
    pub(crate) fn close_ended(&mut self, sensor: &str, now_ms: i64) -> Option<Summary> {
        let summary = match &self.open {
            Some(open) if open.end <= now_ms => self.close(sensor),
            _ => None,
        };
        self.closed_before = self.closed_before.max(hour_of(now_ms).0);
        summary
    }

    /// Close the open hour for good and return its summary.
    fn close(&mut self, sensor: &str) -> Option<Summary> {
        let open = self.open.take()?;
        self.closed_before = self.closed_before.max(open.start.saturating_add(1));
        open.summary(sensor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_align_to_utc_and_clamp_at_the_ends_of_time() {
        assert_eq!(hour_of(0), (0, HOUR_MS));
        assert_eq!(hour_of(HOUR_MS - 1), (0, HOUR_MS));
        assert_eq!(hour_of(-1), (-HOUR_MS, 0));
        let (start, end) = hour_of(i64::MIN);
        assert_eq!(start, i64::MIN);
        assert!(end > i64::MIN && end <= i64::MIN + HOUR_MS);
        assert_eq!(hour_of(i64::MIN + 1), (start, end));
        let (start, end) = hour_of(i64::MAX);
        assert_eq!(end, i64::MAX);
        assert_eq!(start, window_start(i64::MAX, HOUR_MS));
        assert!(start > i64::MAX - HOUR_MS);
    }

    #[test]
    fn one_hour_open_at_a_time() {
        let mut book = HourBook::default();
        assert_eq!(book.record_in_order("s", 10, Some(1.0)), (Recorded::Counted, None));
        assert_eq!(book.record_in_order("s", 20, None), (Recorded::Counted, None));
        assert_eq!(book.record_late(15, Some(3.0)), Recorded::Counted);
        assert_eq!(book.record_late(15, Some(3.0)), Recorded::Duplicate);
        let (recorded, closed) = book.record_in_order("s", 2 * HOUR_MS, Some(5.0));
        assert_eq!(recorded, Recorded::Counted);
        let closed = closed.unwrap();
        assert_eq!((closed.window_start_ms, closed.window_end_ms), (0, HOUR_MS));
        assert_eq!(closed.get("n"), Some(2.0));
        assert_eq!(closed.get("invalid"), Some(1.0));
        // The skipped hour and the closed hour stay closed.
        assert_eq!(book.record_late(HOUR_MS + 5, Some(1.0)), Recorded::HourClosed);
        assert_eq!(book.record_late(30, Some(1.0)), Recorded::HourClosed);
    }

    #[test]
    fn an_hour_remembers_its_newest_timestamps_only() {
        let mut book = HourBook::default();
        // A probe read every millisecond: an hour's worth of readings.
        for t in 0..HOUR_MS / 10 {
            book.record_in_order("s", t, Some(1.0));
        }
        let newest = HOUR_MS / 10 - 1;
        let open = book.open.as_ref().unwrap();
        assert_eq!(open.seen.len(), MAX_SEEN);
        assert_eq!(open.stats.count(), (HOUR_MS / 10) as u64);
        // A late reading among the remembered: a duplicate, or counted.
        let oldest_remembered = newest - MAX_SEEN as i64 + 1;
        assert_eq!(book.record_late(oldest_remembered, Some(1.0)), Recorded::Duplicate);
        assert_eq!(book.record_in_order("s", newest + 2, Some(1.0)).0, Recorded::Counted);
        assert_eq!(book.record_late(newest + 1, Some(1.0)), Recorded::Counted);
        // Older than all it remembers: not counted, a duplicate or not.
        assert_eq!(book.record_late(0, Some(1.0)), Recorded::TooLateToCheck);
        assert_eq!(book.record_late(-1, Some(1.0)), Recorded::HourClosed);
        let summary = book.close_ended("s", HOUR_MS).unwrap();
        assert_eq!(summary.get("n"), Some((HOUR_MS / 10 + 2) as f64));
    }

    #[test]
    fn a_tick_closes_for_good() {
        let mut book = HourBook::default();
        book.record_in_order("s", 10, Some(1.0));
        assert_eq!(book.close_ended("s", HOUR_MS - 1), None);
        assert!(book.close_ended("s", HOUR_MS).is_some());
        assert_eq!(book.close_ended("s", HOUR_MS), None);
        // A reading of that hour arriving after the tick cannot reopen it.
        assert_eq!(book.record_in_order("s", 20, Some(1.0)), (Recorded::HourClosed, None));
        assert_eq!(book.close_ended("s", 2 * HOUR_MS), None);
    }

    #[test]
    fn the_last_hour_of_time_closes_once() {
        let mut book = HourBook::default();
        book.record_in_order("s", i64::MAX - 1, Some(1.0));
        assert!(book.close_ended("s", i64::MAX).is_some());
        assert_eq!(book.record_in_order("s", i64::MAX, Some(1.0)).0, Recorded::HourClosed);
        assert_eq!(book.close_ended("s", i64::MAX), None);
    }
}
