//! The virtual clock that drives a plugin through a recording.

use std::time::{Duration, Instant};

use super::recording::Recording;
use crate::model::Output;
use crate::runtime::{PluginError, PluginInstance};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Readings delivered per `on-readings` call at most (between two ticks).
const MAX_BATCH: usize = 256;

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplayReport {
    /// Readings delivered to the plugin.
    pub readings: u64,
    /// `on-tick` calls.
    pub ticks: u64,
    /// Alerts emitted.
    pub alerts: u64,
    /// Summaries emitted.
    pub summaries: u64,
    /// Wall time spent.
    pub elapsed: Duration,
}

/// One step of the virtual clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step<'a, R> {
    /// Deliver these readings in one `on-readings` call.
    Readings(&'a [R]),
    /// Call `on-tick` at this virtual time (ms).
    Tick(i64),
}

/// The virtual clock's steps over `readings` (in timestamp order, as
/// `timestamp` gives it) with a tick every `tick_ms`: readings in batches of
/// at most `MAX_BATCH` (256) up to each tick (a reading at the tick's time comes
/// before it), the first tick at or after the first reading, the last an hour
/// past the end of the last reading's day. `step` gets each in order; the
/// first error stops the schedule. Generic over the reading type so that a
/// benchmark can drive native plugin code through the very same clock.
pub fn schedule<R, E>(
    readings: &[R],
    timestamp: impl Fn(&R) -> i64,
    tick_ms: i64,
    mut step: impl FnMut(Step<'_, R>) -> Result<(), E>,
) -> Result<(), E> {
    let (Some(first), Some(last)) = (readings.first(), readings.last()) else {
        return Ok(());
    };
    let (first, last) = (timestamp(first), timestamp(last));
    let tick_ms = tick_ms.max(1);
    // The first tick at or after the first reading.
    let mut next_tick = first.div_euclid(tick_ms).saturating_add(1).saturating_mul(tick_ms);
    if first.rem_euclid(tick_ms) == 0 {
        next_tick = first;
    }
    let end = last
        .div_euclid(DAY_MS)
        .saturating_add(1)
        .saturating_mul(DAY_MS)
        .saturating_add(HOUR_MS);

    let mut position = 0;
    while position < readings.len() {
        // Deliver the readings up to the next tick (inclusive), in batches.
        let batch_end = readings[position..]
            .iter()
            .take(MAX_BATCH)
            .position(|r| timestamp(r) > next_tick)
            .map_or((position + MAX_BATCH).min(readings.len()), |offset| position + offset);
        if batch_end > position {
            step(Step::Readings(&readings[position..batch_end]))?;
            position = batch_end;
            continue;
        }
        step(Step::Tick(next_tick))?;
        next_tick = next_tick.saturating_add(tick_ms);
    }
    loop {
        step(Step::Tick(next_tick))?;
        if next_tick >= end {
            break;
        }
        next_tick = next_tick.saturating_add(tick_ms);
    }
    Ok(())
}

/// Run `recording` through `instance` (already initialised) with a tick every
/// `tick_ms` of virtual time ([`schedule`]), handing each output to `sink` in
/// order. Stops at the first plugin failure; outputs emitted before it are
/// still handed to `sink`.
pub fn replay(
    instance: &mut PluginInstance,
    recording: &Recording,
    tick_ms: i64,
    sink: &mut dyn FnMut(&Output),
) -> Result<ReplayReport, PluginError> {
    let started = Instant::now();
    let mut report = ReplayReport::default();
    schedule(
        &recording.readings,
        |r| r.timestamp_ms,
        tick_ms,
        |step| match step {
            Step::Readings(batch) => {
                let result = instance.on_readings(batch);
                drain(instance, &mut report, sink);
                result?;
                report.readings += batch.len() as u64;
                Ok(())
            }
            Step::Tick(now_ms) => tick(instance, now_ms, &mut report, sink),
        },
    )?;
    report.elapsed = started.elapsed();
    Ok(report)
}

fn tick(
    instance: &mut PluginInstance,
    now_ms: i64,
    report: &mut ReplayReport,
    sink: &mut dyn FnMut(&Output),
) -> Result<(), PluginError> {
    let result = instance.on_tick(now_ms);
    drain(instance, report, sink);
    report.ticks += 1;
    result
}

fn drain(instance: &mut PluginInstance, report: &mut ReplayReport, sink: &mut dyn FnMut(&Output)) {
    for output in instance.take_outputs() {
        match output {
            Output::Alert(_) => report.alerts += 1,
            Output::Summary(_) => report.summaries += 1,
        }
        sink(&output);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_up_to_each_tick_come_before_it_and_ticks_run_past_the_last_day() {
        let readings = [0_i64, 1_000, 300_000, 300_001];
        let mut steps = Vec::new();
        let done: Result<(), ()> = schedule(
            &readings,
            |t| *t,
            300_000,
            |step| {
                steps.push(match step {
                    Step::Readings(batch) => format!("readings {batch:?}"),
                    Step::Tick(now) => format!("tick {now}"),
                });
                Ok(())
            },
        );
        assert_eq!(done, Ok(()));
        assert_eq!(
            steps[..6],
            [
                "readings [0]",
                "tick 0",
                "readings [1000, 300000]",
                "tick 300000",
                "readings [300001]",
                "tick 600000"
            ]
        );
        assert_eq!(steps.last().map(String::as_str), Some("tick 90000000")); // 1 day + 1 hour
        // Three batches, and a tick at every multiple of 5 min from 0 to the end.
        assert_eq!(steps.len(), 3 + 90_000_000 / 300_000 + 1);
    }

    #[test]
    fn batches_hold_at_most_max_batch_readings_and_an_error_stops_the_schedule() {
        let readings = vec![7_i64; MAX_BATCH * 2 + 1];
        let mut sizes = Vec::new();
        let stopped = schedule(
            &readings,
            |t| *t,
            10,
            |step| match step {
                Step::Readings(batch) => {
                    sizes.push(batch.len());
                    Ok(())
                }
                Step::Tick(_) => Err("stop"),
            },
        );
        assert_eq!(stopped, Err("stop"));
        assert_eq!(sizes, [MAX_BATCH, MAX_BATCH, 1]);
    }
}
