//! Buffers that keep only the recent past.

use std::collections::VecDeque;

/// The `(timestamp_ms, value)` points of the last `span_ms` milliseconds,
/// relative to the newest point pushed. Older points are evicted on push.
///
/// Points are expected in timestamp order; a point older than the newest is
/// inserted at its place (so late readings still count), and a point older
/// than the span is dropped.
///
/// ```
/// let mut window = edgewise_sdk::window::TimeWindow::new(10 * 60_000); // the last 10 minutes
/// for minute in 0..15 {
///     window.push(minute * 60_000, minute as f64);
/// }
/// assert_eq!(window.len(), 11); // minutes 4 to 14
/// assert_eq!(window.time_spanned_ms(), 10 * 60_000);
/// ```
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TimeWindow {
    span_ms: i64,
    points: VecDeque<(i64, f64)>,
}

impl TimeWindow {
    /// A window that keeps points newer than `newest - span_ms` (inclusive bound).
    pub fn new(span_ms: i64) -> TimeWindow {
        TimeWindow {
            span_ms,
            points: VecDeque::new(),
        }
    }

    /// Add a point and evict what fell out of the span.
    pub fn push(&mut self, timestamp_ms: i64, value: f64) {
        match self.points.back() {
            Some(&(newest, _)) if timestamp_ms < newest => {
                if timestamp_ms < newest.saturating_sub(self.span_ms) {
                    return;
                }
                let at = self.points.partition_point(|&(t, _)| t <= timestamp_ms);
                self.points.insert(at, (timestamp_ms, value));
            }
            _ => self.points.push_back((timestamp_ms, value)),
        }
        self.evict();
    }

    /// Drop the points older than the span before the newest.
    fn evict(&mut self) {
        if let Some(&(newest, _)) = self.points.back() {
            let oldest_kept = newest.saturating_sub(self.span_ms);
            while self.points.front().is_some_and(|&(t, _)| t < oldest_kept) {
                self.points.pop_front();
            }
        }
    }

    /// Add a point as [`TimeWindow::push`] does, except that a point in the
    /// same `slot_ms` slot (of the UTC epoch) as the newest point replaces
    /// it: the window keeps at most one point per slot, the newest of each,
    /// so at most `span_ms / slot_ms + 2` points whatever the rate of the
    /// points pushed (a sensor read every millisecond cannot make it grow
    /// without bound). A `slot_ms` below 1 counts as 1.
    ///
    /// ```
    /// let mut window = edgewise_sdk::window::TimeWindow::new(10_000);
    /// for t in 0..=10_000 {
    ///     window.push_in_slot(t, t as f64, 1_000);
    /// }
    /// // One point per second: 0.999 s, 1.999 s, ..., 9.999 s and 10 s.
    /// assert_eq!(window.len(), 11);
    /// assert_eq!(window.iter().last(), Some((10_000, 10_000.0)));
    /// ```
    pub fn push_in_slot(&mut self, timestamp_ms: i64, value: f64, slot_ms: i64) {
        let slot = |t: i64| t.div_euclid(slot_ms.max(1));
        match self.points.back_mut() {
            Some(newest) if newest.0 <= timestamp_ms && slot(newest.0) == slot(timestamp_ms) => {
                *newest = (timestamp_ms, value);
                self.evict();
            }
            _ => self.push(timestamp_ms, value),
        }
    }

    /// The points, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (i64, f64)> + ExactSizeIterator + Clone + '_ {
        self.points.iter().copied()
    }

    /// How many points are in the window.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether the window holds no point.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Time between the oldest and the newest point, 0 when fewer than two.
    pub fn time_spanned_ms(&self) -> i64 {
        match (self.points.front(), self.points.back()) {
            (Some(first), Some(last)) => last.0 - first.0,
            _ => 0,
        }
    }

    /// Forget every point.
    pub fn clear(&mut self) {
        self.points.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_span() {
        let mut window = TimeWindow::new(10);
        for t in [0, 5, 10, 15] {
            window.push(t, t as f64);
        }
        assert_eq!(window.iter().map(|p| p.0).collect::<Vec<_>>(), vec![5, 10, 15]);
        assert_eq!(window.time_spanned_ms(), 10);
    }

    #[test]
    fn one_point_per_slot_the_newest() {
        let mut window = TimeWindow::new(100);
        for t in 0..1_000 {
            window.push_in_slot(t, t as f64, 10);
        }
        // The newest of each slot within the span (inclusive: 899 = 999 - 100).
        let kept: Vec<i64> = window.iter().map(|p| p.0).collect();
        assert_eq!(kept, (899..=999).step_by(10).collect::<Vec<_>>());
        // A late point still goes to its place; a point in the newest slot
        // but before the newest point does not replace it.
        window.push_in_slot(995, -1.0, 10);
        assert_eq!(
            window.iter().rev().take(2).collect::<Vec<_>>(),
            vec![(999, 999.0), (995, -1.0)]
        );
        // A slot of 0 (or less) is a slot of a millisecond.
        let mut window = TimeWindow::new(5);
        for t in [0, 0, 1, 2] {
            window.push_in_slot(t, 1.0, 0);
        }
        assert_eq!(window.len(), 3);
    }

    #[test]
    fn late_points_go_in_order_or_are_dropped() {
        let mut window = TimeWindow::new(10);
        window.push(10, 1.0);
        window.push(20, 2.0);
        window.push(15, 1.5);
        window.push(5, 0.5);
        assert_eq!(window.iter().map(|p| p.0).collect::<Vec<_>>(), vec![10, 15, 20]);
    }
}
