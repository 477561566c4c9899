//! Self-monitoring: each forecast waits for the reading at its target time;
//! its error counts in the clock hour of that reading, and each hour's
//! figures are emitted once the hour is over.
//!
//! The reading that judges a forecast is the trainer's (`actual_at`): the one
//! nearest the target within half a grid step (the earlier one on a tie),
//! never interpolated. Readings come in time order, so a forecast keeps the
//! nearest reading so far and is scored once no later reading can be nearer.
//! After the first reading of a later hour, no reading to come can be nearer
//! to any forecast than a reading of the hour before (it would have to lie
//! between them): the hour's figures are final, and it is emitted then. A
//! sensor that goes silent has its hour closed by a tick, two tolerances
//! after the hour's end: by then no reading to come could be nearer either.
//! So the figures never depend on when ticks come.

use std::collections::VecDeque;

use edgewise_sdk::time::{HOUR_MS, MINUTE_MS, window_start};
use edgewise_sdk::{Outputs, Summary};
use serde::{Deserialize, Serialize};

/// A forecast waiting for the reading at its target time.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    target_ms: i64,
    forecast: f64,
    /// The reading nearest the target so far, within the tolerance:
    /// `(timestamp ms, mg/dL)`.
    nearest: Option<(i64, f64)>,
}

impl Pending {
    /// The distance of the nearest reading so far from the target.
    fn distance(&self) -> Option<u64> {
        self.nearest.map(|(ms, _)| ms.abs_diff(self.target_ms))
    }
}

/// The errors (forecast − actual) of one horizon over one hour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Errors {
    n: u64,
    sum: f64,
    sum_abs: f64,
    sum_squares: f64,
}

impl Errors {
    fn add(&mut self, error: f64) {
        self.n += 1;
        self.sum += error;
        self.sum_abs += error.abs();
        self.sum_squares += error * error;
    }
}

/// The scored forecasts of one clock hour, per horizon.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Hour {
    start_ms: i64,
    errors: Vec<Errors>,
}

/// The forecasts of one sensor waiting for their target, and the hours of
/// scored ones not emitted yet. Bounded: at most [`Accuracy::capacity`]
/// forecasts per horizon; hours are emitted as time moves on (at most the
/// few a reading's tolerance spans are open).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accuracy {
    /// Per horizon (the model's order), in increasing target time.
    pending: Vec<VecDeque<Pending>>,
    /// Hours with scored forecasts, not emitted, in increasing start.
    hours: Vec<Hour>,
    /// Hours starting before this have been emitted: an error that would
    /// count in one counts in the hour starting here instead (only a
    /// reading arriving after the tick that closed its hour does that).
    closed_until_ms: i64,
}

impl Accuracy {
    /// Nothing pending, for a model of `horizons` horizons.
    pub fn new(horizons: usize) -> Accuracy {
        Accuracy {
            pending: vec![VecDeque::new(); horizons],
            hours: Vec::new(),
            closed_until_ms: i64::MIN,
        }
    }

    /// Forecasts one horizon keeps waiting at most: one a minute over the
    /// horizon and a grid step (a sensor reading once a minute, the fastest
    /// CGMs, has every forecast scored; a faster one has some left out).
    pub fn capacity(horizon_min: u32, step_min: u32) -> usize {
        horizon_min.saturating_add(step_min) as usize
    }

    /// A valid reading the sensor's history took (its newest): it becomes
    /// the nearest reading of the forecasts around it, forecasts no later
    /// reading can judge better are scored, and hours before its own are
    /// emitted. `minutes`: the horizons; `tolerance_ms`: half a grid step.
    pub fn on_reading(
        &mut self,
        sensor: &str,
        (timestamp_ms, value): (i64, f64),
        minutes: &[u32],
        tolerance_ms: i64,
        out: &mut Outputs,
    ) {
        let tolerance = tolerance_ms.unsigned_abs();
        let (pending, mut hours) = self.split();
        for (horizon, queue) in pending.iter_mut().enumerate() {
            for pending in queue.iter_mut() {
                let distance = timestamp_ms.abs_diff(pending.target_ms);
                if distance <= tolerance && pending.distance().is_none_or(|nearest| distance < nearest) {
                    pending.nearest = Some((timestamp_ms, value));
                }
            }
            // Decided: no later reading can be nearer than the nearest so
            // far (or come within the tolerance at all).
            queue.retain(|pending| {
                let reach = pending.distance().unwrap_or(tolerance);
                let decided = timestamp_ms >= pending.target_ms.saturating_add_unsigned(reach);
                if decided && let Some((ms, actual)) = pending.nearest {
                    hours.score(horizon, ms, pending.forecast - actual);
                }
                !decided
            });
        }
        self.emit_before(window_start(timestamp_ms, HOUR_MS), sensor, minutes, out);
    }

    /// Wait for the readings that judge `forecasts` (one per horizon), made
    /// for a reading at `timestamp_ms`. Returns how many were left out
    /// because their horizon already had [`Accuracy::capacity`] waiting.
    pub fn add(&mut self, timestamp_ms: i64, forecasts: &[f64], minutes: &[u32], step_min: u32) -> u64 {
        let mut left_out = 0;
        for ((queue, &forecast), &horizon_min) in self.pending.iter_mut().zip(forecasts).zip(minutes) {
            if queue.len() >= Accuracy::capacity(horizon_min, step_min) {
                left_out += 1;
                continue;
            }
            queue.push_back(Pending {
                target_ms: timestamp_ms.saturating_add(i64::from(horizon_min) * MINUTE_MS),
                forecast,
                nearest: None,
            });
        }
        left_out
    }

    /// A tick at `now_ms`: hours that ended two tolerances or more before it
    /// are over even if the sensor is silent; score what their readings
    /// judged and emit them.
    pub fn on_tick(&mut self, sensor: &str, now_ms: i64, minutes: &[u32], tolerance_ms: i64, out: &mut Outputs) {
        let over_before = window_start(now_ms.saturating_sub(2 * tolerance_ms), HOUR_MS);
        if over_before <= self.closed_until_ms {
            return;
        }
        let (pending, mut hours) = self.split();
        for (horizon, queue) in pending.iter_mut().enumerate() {
            queue.retain(|pending| match pending.nearest {
                Some((ms, actual)) if ms < over_before => {
                    hours.score(horizon, ms, pending.forecast - actual);
                    false
                }
                _ => true,
            });
        }
        self.emit_before(over_before, sensor, minutes, out);
    }

    /// When a tick would emit an hour of this sensor (`i64::MAX`: none is
    /// waiting): two tolerances after the end of the earliest hour that has
    /// a scored forecast or a reading judging one.
    pub fn due_ms(&self, tolerance_ms: i64) -> i64 {
        let scored = self.hours.first().map(|hour| hour.start_ms);
        // No hour before the first open one can be waiting: after a reading
        // that is its own, already scored in, mostly.
        let judged = match scored {
            Some(start) if start <= self.closed_until_ms => None,
            _ => self
                .pending
                .iter()
                .flatten()
                .filter_map(|pending| pending.nearest.map(|(ms, _)| self.hour_of(ms)))
                .min(),
        };
        match scored.into_iter().chain(judged).min() {
            Some(start) => start.saturating_add(HOUR_MS).saturating_add(2 * tolerance_ms),
            None => i64::MAX,
        }
    }

    /// The pending forecasts, and where their errors go.
    fn split(&mut self) -> (&mut Vec<VecDeque<Pending>>, Hours<'_>) {
        let hours = Hours {
            horizons: self.pending.len(),
            closed_until_ms: self.closed_until_ms,
            hours: &mut self.hours,
        };
        (&mut self.pending, hours)
    }

    /// The start of the hour an error judged by a reading at `ms` counts in.
    fn hour_of(&self, ms: i64) -> i64 {
        hour_of(ms, self.closed_until_ms)
    }

    /// Emit the hours starting before `end_ms`, in order; they are closed.
    fn emit_before(&mut self, end_ms: i64, sensor: &str, minutes: &[u32], out: &mut Outputs) {
        if end_ms <= self.closed_until_ms {
            return;
        }
        self.closed_until_ms = end_ms;
        let over = self.hours.partition_point(|hour| hour.start_ms < end_ms);
        for hour in self.hours.drain(..over) {
            if let Some(summary) = summary(sensor, &hour, minutes) {
                out.summary(summary);
            }
        }
    }
}

/// The start of the hour an error judged by a reading at `ms` counts in,
/// when hours before `closed_until_ms` are emitted.
fn hour_of(ms: i64, closed_until_ms: i64) -> i64 {
    window_start(ms, HOUR_MS).max(closed_until_ms)
}

/// Where scored errors go: the hours of an [`Accuracy`], borrowed apart
/// from its pending forecasts.
struct Hours<'a> {
    hours: &'a mut Vec<Hour>,
    closed_until_ms: i64,
    horizons: usize,
}

impl Hours<'_> {
    /// Count `error` of `horizon`, judged by a reading at `ms`.
    fn score(&mut self, horizon: usize, ms: i64, error: f64) {
        let start_ms = hour_of(ms, self.closed_until_ms);
        // Nearly always the newest hour.
        let at = self.hours.partition_point(|hour| hour.start_ms < start_ms);
        if self.hours.get(at).is_none_or(|hour| hour.start_ms != start_ms) {
            let errors = vec![Errors::default(); self.horizons];
            self.hours.insert(at, Hour { start_ms, errors });
        }
        if let Some(errors) = self.hours.get_mut(at).and_then(|hour| hour.errors.get_mut(horizon)) {
            errors.add(error);
        }
    }
}

/// The accuracy summary of an hour: per horizon `h` (minutes), `n_h` and,
/// when `n_h > 0`, `rmse_h`, `mae_h` and `bias_h` (mean forecast − actual).
/// `None` for an hour without a scored forecast.
fn summary(sensor: &str, hour: &Hour, minutes: &[u32]) -> Option<Summary> {
    if hour.errors.iter().all(|errors| errors.n == 0) {
        return None;
    }
    let mut summary = Summary::new(sensor, hour.start_ms, hour.start_ms.saturating_add(HOUR_MS));
    for (errors, horizon_min) in hour.errors.iter().zip(minutes) {
        summary = summary.metric(&format!("n_{horizon_min}"), errors.n as f64);
        if errors.n > 0 {
            let n = errors.n as f64;
            summary = summary
                .metric(&format!("rmse_{horizon_min}"), (errors.sum_squares / n).sqrt())
                .metric(&format!("mae_{horizon_min}"), errors.sum_abs / n)
                .metric(&format!("bias_{horizon_min}"), errors.sum / n);
        }
    }
    Some(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOLERANCE: i64 = 150_000;
    const MINUTES: [u32; 1] = [30];

    #[test]
    fn a_tick_closes_only_hours_over_two_tolerances_before_it() {
        // Whatever asks for the tick: the reading at 61 may still come and
        // judge the forecast of 31 better than the one at 59.
        let mut accuracy = Accuracy::new(1);
        let mut out = Outputs::default();
        let minute = |m: i64| m * MINUTE_MS;
        accuracy.add(minute(31), &[120.0], &MINUTES, 5);
        accuracy.on_reading("s", (minute(59), 90.0), &MINUTES, TOLERANCE, &mut out);
        assert_eq!(accuracy.due_ms(TOLERANCE), minute(65));
        accuracy.on_tick("s", minute(65) - 1, &MINUTES, TOLERANCE, &mut out);
        assert!(out.is_empty(), "{:?}", out.summaries());
        accuracy.on_reading("s", (minute(61), 80.0), &MINUTES, TOLERANCE, &mut out);
        accuracy.on_tick("s", minute(125), &MINUTES, TOLERANCE, &mut out);
        let starts: Vec<(i64, Option<f64>)> = out
            .summaries()
            .iter()
            .map(|s| (s.window_start_ms, s.get("bias_30")))
            .collect();
        assert_eq!(starts, [(minute(60), Some(40.0))]);
    }
}
