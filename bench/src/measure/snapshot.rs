//! Snapshot size and time of glucose-monitor after one day of 100 sensors
//! (issue #13): the signed bundle in the host runtime, fed a synthetic day of
//! 5-minute CGM readings, then `PluginInstance::snapshot` (its bytes and
//! time) and a restore into a fresh instance (`init_from`).

use std::time::Instant;

use anyhow::{Context, bail};
use edgewise_host::model::Reading;
use edgewise_host::runtime::{PluginClock, PluginInstance};

use super::glucose::{compile_bundle, glucose_config, in_process_limits, instance, replay_runtime};
use crate::load::FIVE_MINUTES_MS;
use crate::stats::median;
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target, number};

/// Sensors (patients) on the device.
pub const SENSORS: usize = 100;
/// Readings per sensor in a day, one every five minutes.
pub const PER_DAY: usize = 288;
/// Snapshots and restores timed; the median is reported.
const RUNS: usize = 20;
/// 2026-01-01T00:00:00Z: the day replayed.
const DAY_START_MS: i64 = 1_767_225_600_000;
/// Six hours: the period of the synthetic glucose curve.
const PERIOD_MS: f64 = 6.0 * 3_600_000.0;

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let runtime = replay_runtime()?;
    let compiled = compile_bundle(&runtime, &ctx.bundles.glucose, &ctx.bundles.trust)?;
    let config = glucose_config();
    let readings = one_day(DAY_START_MS);
    let mut plugin = instance(&runtime, &compiled, &config, DAY_START_MS)?;
    let mut outputs = 0;
    // One batch per five-minute round, as a device gets them.
    for round in readings.chunks(SENSORS) {
        plugin.on_readings(round).context("glucose-monitor failed")?;
        outputs += plugin.take_outputs().len();
    }
    let mut snapshot_us = Vec::new();
    let mut snapshot = None;
    for _ in 0..RUNS {
        let started = Instant::now();
        let taken = plugin.snapshot().context("glucose-monitor refused a snapshot")?;
        snapshot_us.push(started.elapsed().as_secs_f64() * 1e6);
        snapshot = Some(taken);
    }
    let snapshot = snapshot.context("no snapshot")?;
    let last_ms = readings.last().map_or(DAY_START_MS, |r| r.timestamp_ms);
    let mut restore_us = Vec::new();
    for run in 0..RUNS {
        let clock = PluginClock::virtual_at(last_ms);
        let mut fresh = PluginInstance::with_clock(&runtime, &compiled, in_process_limits(), clock)
            .context("cannot instantiate")?;
        let started = Instant::now();
        fresh
            .init_from(&config, Some(&snapshot))
            .context("glucose-monitor refused its own snapshot")?;
        restore_us.push(started.elapsed().as_secs_f64() * 1e6);
        // The restored instance holds the same state: it hands back the same bytes.
        if run == 0 && fresh.snapshot().context("the restored instance refused a snapshot")? != snapshot {
            bail!("the restored instance's snapshot differs from the one it was restored from");
        }
    }
    let bytes = snapshot.data.len() as f64;
    let snapshot_us_median = median(&snapshot_us).context("no snapshot timed")?;
    let restore_us_median = median(&restore_us).context("no restore timed")?;
    let what = format!("glucose-monitor after one day of {SENSORS} sensors");
    Ok(Outcome {
        rows: vec![
            Row::measured(
                format!("snapshot size, {what}"),
                "-",
                None,
                bytes / 1024.0,
                "KiB",
                Target::None,
            ),
            Row::measured(
                format!("snapshot size per sensor, {what}"),
                "-",
                None,
                bytes / SENSORS as f64,
                "bytes/sensor",
                Target::None,
            ),
            Row::measured(
                format!("snapshot time (`PluginInstance::snapshot`), {what}"),
                "-",
                None,
                snapshot_us_median,
                "µs",
                Target::None,
            ),
            Row::measured(
                format!("restore time (`init_from` a fresh instance), {what}"),
                "-",
                None,
                restore_us_median,
                "µs",
                Target::None,
            ),
        ],
        details: vec![format!(
            "{} readings ({SENSORS} sensors x {PER_DAY}), {outputs} outputs; snapshot schema {}, {} bytes; medians of \
             {RUNS}: snapshot {} µs (runs {}), restore {} µs (runs {})",
            readings.len(),
            snapshot.schema,
            snapshot.data.len(),
            number(snapshot_us_median),
            spread(&snapshot_us),
            number(restore_us_median),
            spread(&restore_us),
        )],
    })
}

/// The fastest and slowest of `runs`, as `min-max`.
fn spread(runs: &[f64]) -> String {
    let min = runs.iter().copied().fold(f64::INFINITY, f64::min);
    let max = runs.iter().copied().fold(0.0, f64::max);
    format!("{}-{}", number(min), number(max))
}

/// A synthetic day: every sensor reads every five minutes, in rounds (all
/// sensors at the same time), a curve between about 65 and 215 mg/dL with a
/// phase of its own and a little deterministic jitter, so that the day
/// holds lows, highs and episodes. The first round is at `start_ms`.
pub fn one_day(start_ms: i64) -> Vec<Reading> {
    let mut readings = Vec::with_capacity(SENSORS * PER_DAY);
    for step in 0..PER_DAY {
        let timestamp_ms = start_ms + step as i64 * FIVE_MINUTES_MS;
        for sensor in 0..SENSORS {
            let phase = sensor as f64 / SENSORS as f64 * std::f64::consts::TAU;
            let angle = timestamp_ms.rem_euclid(PERIOD_MS as i64) as f64 / PERIOD_MS * std::f64::consts::TAU;
            let jitter = ((sensor * 7_919 + step * 104_729) % 11) as f64 - 5.0;
            readings.push(Reading {
                sensor: format!("cgm-patient-{sensor:03}"),
                timestamp_ms,
                value: (140.0 + 70.0 * (angle + phase).sin() + jitter).round(),
                unit: "mg/dL".to_owned(),
            });
        }
    }
    readings
}
