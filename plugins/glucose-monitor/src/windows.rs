//! Hourly and daily summary windows of one sensor: which are open, closed,
//! held for an undecided episode, and when they are emitted.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

use edgewise_sdk::Outputs;
use edgewise_sdk::time::{DAY_MS, HOUR_MS, window_start};

use crate::config::Settings;
use crate::summary::WindowMetrics;

/// One window `[start_ms, start_ms + length)` not yet emitted.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Window {
    start_ms: i64,
    metrics: WindowMetrics,
    /// The sensor interval when the window closed (for `active_pct`).
    closed_interval_ms: Option<i64>,
}

/// The pending (open or held) windows of one length, ascending.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Series {
    length_ms: i64,
    pending: VecDeque<Window>,
}

impl Series {
    fn new(length_ms: i64) -> Series {
        Series {
            length_ms,
            pending: VecDeque::new(),
        }
    }

    fn end(&self, window: &Window) -> i64 {
        window.start_ms.saturating_add(self.length_ms)
    }

    /// Position of the window holding `timestamp_ms`: `Ok` if pending, else
    /// `Err(where it would go)`, with that window's start.
    fn find(&self, timestamp_ms: i64) -> (i64, Result<usize, usize>) {
        let start = window_start(timestamp_ms, self.length_ms);
        let at = self.pending.partition_point(|w| w.start_ms < start);
        match self.pending.get(at) {
            Some(window) if window.start_ms == start => (start, Ok(at)),
            _ => (start, Err(at)),
        }
    }

    /// Windows ending at or before `horizon_ms` are closed: note the interval.
    fn close(&mut self, horizon_ms: i64, interval_ms: i64) {
        let length = self.length_ms;
        // Closed windows form a prefix and are noted in order: stop at the first noted one.
        for window in self.pending.iter_mut().rev() {
            if window.start_ms.saturating_add(length) > horizon_ms {
                continue;
            }
            if window.closed_interval_ms.is_some() {
                break;
            }
            window.closed_interval_ms = Some(interval_ms);
        }
    }

    /// Whether the front window would be emitted now (closed, not held).
    fn front_due(&self, context: &Emit<'_>) -> bool {
        self.pending.front().is_some_and(|front| {
            let end = self.end(front);
            end <= context.horizon_ms && context.hold_from.is_none_or(|hold| hold >= end)
        })
    }

    /// The end of the first pending window not closed at `horizon_ms`.
    fn next_close(&self, horizon_ms: i64) -> Option<i64> {
        self.pending
            .iter()
            .map(|window| self.end(window))
            .find(|&end| end > horizon_ms)
    }

    /// The metrics of the window holding `timestamp_ms`, if it still takes
    /// readings: pending, or not closed yet (then it is created).
    fn metrics(&mut self, timestamp_ms: i64, horizon_ms: i64) -> Option<&mut WindowMetrics> {
        let (start, found) = self.find(timestamp_ms);
        let at = match found {
            Ok(at) => at,
            Err(at) if start.saturating_add(self.length_ms) > horizon_ms => {
                let window = Window {
                    start_ms: start,
                    metrics: WindowMetrics::default(),
                    closed_interval_ms: None,
                };
                self.pending.insert(at, window);
                at
            }
            Err(_) => return None,
        };
        self.pending.get_mut(at).map(|w| &mut w.metrics)
    }

    /// Emit the closed windows at the front, stopping at one that ends after
    /// `hold_from` (an undecided episode run starts inside it or before it).
    fn emit(&mut self, context: &Emit<'_>, out: &mut Outputs) {
        while self.front_due(context) {
            if let Some(window) = self.pending.pop_front() {
                let end = self.end(&window);
                let interval_ms = window.closed_interval_ms.unwrap_or(context.interval_ms);
                // Windows with invalid readings only are dropped here.
                if let Some(summary) = window
                    .metrics
                    .summary(context.sensor, window.start_ms, end, interval_ms)
                {
                    out.summary(summary);
                }
            }
        }
    }
}

/// What emitting needs to know about the sensor.
struct Emit<'a> {
    /// The sensor name.
    sensor: &'a str,
    /// Windows ending at or before this are closed.
    horizon_ms: i64,
    /// The first reading of the earliest undecided episode run, if any.
    hold_from: Option<i64>,
    /// The sensor interval now (for windows closed without a noted interval).
    interval_ms: i64,
}

/// The hourly and daily windows of one sensor.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Windows {
    hourly: Series,
    daily: Series,
    /// Windows ending at or before this are closed (newest reading or tick).
    horizon_ms: i64,
}

impl Windows {
    /// No window yet.
    pub fn new() -> Windows {
        Windows {
            hourly: Series::new(HOUR_MS),
            daily: Series::new(DAY_MS),
            horizon_ms: i64::MIN,
        }
    }

    /// Close every window ending at or before `now_ms` (a reading's timestamp
    /// or a tick), noting the sensor interval at close.
    pub fn close_until(&mut self, now_ms: i64, interval_ms: i64) {
        if now_ms > self.horizon_ms {
            self.horizon_ms = now_ms;
            self.hourly.close(now_ms, interval_ms);
            self.daily.close(now_ms, interval_ms);
        }
    }

    /// The earliest time at which a pending window closes (`None`: every
    /// pending window is closed). Until then, moving the horizon closes nothing.
    pub fn next_close_ms(&self) -> Option<i64> {
        match (
            self.hourly.next_close(self.horizon_ms),
            self.daily.next_close(self.horizon_ms),
        ) {
            (Some(hour), Some(day)) => Some(hour.min(day)),
            (hour, day) => hour.or(day),
        }
    }

    /// Count a reading (`None` for an invalid one) in its windows, unless they
    /// were already emitted (or closed without ever getting a reading).
    pub fn record(&mut self, timestamp_ms: i64, value: Option<f64>, settings: &Settings) {
        let horizon = self.horizon_ms;
        for series in [&mut self.hourly, &mut self.daily] {
            if let Some(metrics) = series.metrics(timestamp_ms, horizon) {
                match value {
                    Some(value) => metrics.add_valid(value, settings),
                    None => metrics.add_invalid(),
                }
            }
        }
    }

    /// Count an episode of `kind` in the windows holding its first reading.
    pub fn count_episode(&mut self, kind: usize, start_ms: i64) {
        for series in [&mut self.hourly, &mut self.daily] {
            if let (_, Ok(at)) = series.find(start_ms)
                && let Some(window) = series.pending.get_mut(at)
            {
                window.metrics.add_episode(kind);
            }
        }
    }

    /// Emit what can be emitted: hourly windows first, then daily ones.
    pub fn emit(&mut self, sensor: &str, hold_from: Option<i64>, interval_ms: i64, out: &mut Outputs) {
        let context = Emit {
            sensor,
            horizon_ms: self.horizon_ms,
            hold_from,
            interval_ms,
        };
        self.hourly.emit(&context, out);
        self.daily.emit(&context, out);
    }

    /// Since when [`Windows::emit`] would emit something, if it would (a
    /// call that had made its share of outputs left it for a later tick):
    /// the horizon.
    pub fn emit_due_ms(&self, hold_from: Option<i64>) -> Option<i64> {
        let context = Emit {
            sensor: "",
            horizon_ms: self.horizon_ms,
            hold_from,
            interval_ms: 0,
        };
        (self.hourly.front_due(&context) || self.daily.front_due(&context)).then_some(self.horizon_ms)
    }
}
