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
        if let Some(&(newest, _)) = self.points.back() {
            let oldest_kept = newest.saturating_sub(self.span_ms);
            while self.points.front().is_some_and(|&(t, _)| t < oldest_kept) {
                self.points.pop_front();
            }
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
    fn late_points_go_in_order_or_are_dropped() {
        let mut window = TimeWindow::new(10);
        window.push(10, 1.0);
        window.push(20, 2.0);
        window.push(15, 1.5);
        window.push(5, 0.5);
        assert_eq!(window.iter().map(|p| p.0).collect::<Vec<_>>(), vec![10, 15, 20]);
    }
}
