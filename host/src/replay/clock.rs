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

/// Run `recording` through `instance` (already initialised) with a tick every
/// `tick_ms` of virtual time, handing each output to `sink` in order.
/// Stops at the first plugin failure; outputs emitted before it are still
/// handed to `sink`.
pub fn replay(
    instance: &mut PluginInstance,
    recording: &Recording,
    tick_ms: i64,
    sink: &mut dyn FnMut(&Output),
) -> Result<ReplayReport, PluginError> {
    let started = Instant::now();
    let mut report = ReplayReport::default();
    let readings = &recording.readings;
    let (Some(first), Some(last)) = (readings.first(), readings.last()) else {
        return Ok(report);
    };
    let tick_ms = tick_ms.max(1);
    // The first tick at or after the first reading.
    let mut next_tick = first
        .timestamp_ms
        .div_euclid(tick_ms)
        .saturating_add(1)
        .saturating_mul(tick_ms);
    if first.timestamp_ms.rem_euclid(tick_ms) == 0 {
        next_tick = first.timestamp_ms;
    }
    let end = last
        .timestamp_ms
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
            .position(|r| r.timestamp_ms > next_tick)
            .map_or((position + MAX_BATCH).min(readings.len()), |offset| position + offset);
        if batch_end > position {
            let result = instance.on_readings(&readings[position..batch_end]);
            drain(instance, &mut report, sink);
            result?;
            report.readings += (batch_end - position) as u64;
            position = batch_end;
            continue;
        }
        tick(instance, next_tick, &mut report, sink)?;
        next_tick = next_tick.saturating_add(tick_ms);
    }
    loop {
        tick(instance, next_tick, &mut report, sink)?;
        if next_tick >= end {
            break;
        }
        next_tick = next_tick.saturating_add(tick_ms);
    }
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
