//! Replay throughput over Hall2018: `edgewise replay` as a user runs it
//! (its own readings/s line), against the same recording driven through
//! the same clock rules with glucose-monitor linked natively.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use edgewise_sdk::{Config, Outputs, Plugin, Reading};
use glucose_monitor::GlucoseMonitor;

use super::glucose::glucose_config;
use crate::stats::median;
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target};

/// Runs of each side; the median is reported.
const RUNS: usize = 3;
/// DESIGN: at least 3 million readings/s.
const TARGET: f64 = 3_000_000.0;
/// `edgewise replay`'s default tick.
const TICK_MS: i64 = 5 * 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// `edgewise replay`'s batch limit.
const MAX_BATCH: usize = 256;

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let readings: Vec<Reading> = ctx
        .hall2018
        .readings
        .iter()
        .map(|r| Reading {
            sensor: r.sensor.clone(),
            timestamp_ms: r.timestamp_ms,
            value: r.value,
            unit: r.unit.clone(),
        })
        .collect();
    let mut cli = Vec::new();
    let mut native = Vec::new();
    for _ in 0..RUNS {
        cli.push(cli_rate(ctx)?);
        let (count, took) = native_replay(&readings)?;
        native.push(count as f64 / took.as_secs_f64().max(1e-9));
    }
    let figure = median(&cli).context("no replay run")?;
    let baseline = median(&native).context("no native run")?;
    Ok(Outcome {
        rows: vec![Row::measured(
            "replay throughput, Hall2018, glucose-monitor (`edgewise replay`)",
            "same clock, native logic",
            Some(baseline),
            figure,
            "readings/s",
            Target::AtLeast(TARGET),
        )],
        details: vec![format!(
            "{} readings; runs: edgewise replay {} readings/s, native {} readings/s",
            readings.len(),
            cli.iter()
                .map(|r| crate::table::number(*r))
                .collect::<Vec<_>>()
                .join(", "),
            native
                .iter()
                .map(|r| crate::table::number(*r))
                .collect::<Vec<_>>()
                .join(", ")
        )],
    })
}

/// One `edgewise replay --out /dev/null` over Hall2018: the readings/s it reports.
fn cli_rate(ctx: &Ctx) -> anyhow::Result<f64> {
    let output = Command::new(&ctx.paths.edgewise)
        .arg("replay")
        .arg("--plugin")
        .arg(&ctx.paths.glucose_wasm)
        .arg("--input")
        .arg(&ctx.paths.hall2018)
        .arg("--out")
        .arg("/dev/null")
        .env_remove("RUST_LOG")
        .output()
        .with_context(|| format!("cannot run {}", ctx.paths.edgewise.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("edgewise replay failed ({}): {}", output.status, stderr.trim());
    }
    reported_rate(&stderr).ok_or_else(|| anyhow!("edgewise replay printed no `N readings/s` line: {}", stderr.trim()))
}

/// The number before `readings/s` in `edgewise replay`'s report.
fn reported_rate(stderr: &str) -> Option<f64> {
    stderr.lines().find_map(|line| {
        let before = line.trim_end().strip_suffix("readings/s")?;
        before.split([' ', ',']).rev().find(|w| !w.is_empty())?.parse().ok()
    })
}

/// The replay clock of `edgewise replay` (batches of at most 256 readings up
/// to each tick, a tick every 5 min, on to an hour past the last reading's
/// day) over the natively linked plugin. Returns readings and time taken.
fn native_replay(readings: &[Reading]) -> anyhow::Result<(u64, Duration)> {
    let mut plugin = GlucoseMonitor::init(Config::new(glucose_config()))
        .map_err(|e| anyhow!("glucose-monitor refused its configuration: {e}"))?;
    let mut out = Outputs::default();
    let fail = |e: String| anyhow!("glucose-monitor failed natively: {e}");
    let started = Instant::now();
    let (Some(first), Some(last)) = (readings.first(), readings.last()) else {
        return Ok((0, started.elapsed()));
    };
    let mut next_tick = first.timestamp_ms.div_euclid(TICK_MS).saturating_add(1) * TICK_MS;
    if first.timestamp_ms.rem_euclid(TICK_MS) == 0 {
        next_tick = first.timestamp_ms;
    }
    let end = (last.timestamp_ms.div_euclid(DAY_MS) + 1) * DAY_MS + HOUR_MS;
    let mut position = 0;
    while position < readings.len() {
        let batch_end = readings[position..]
            .iter()
            .take(MAX_BATCH)
            .position(|r| r.timestamp_ms > next_tick)
            .map_or((position + MAX_BATCH).min(readings.len()), |offset| position + offset);
        if batch_end > position {
            plugin
                .on_readings(&readings[position..batch_end], &mut out)
                .map_err(fail)?;
            std::hint::black_box(out.take());
            position = batch_end;
            continue;
        }
        plugin.on_tick(next_tick, &mut out).map_err(fail)?;
        std::hint::black_box(out.take());
        next_tick += TICK_MS;
    }
    loop {
        plugin.on_tick(next_tick, &mut out).map_err(fail)?;
        std::hint::black_box(out.take());
        if next_tick >= end {
            break;
        }
        next_tick += TICK_MS;
    }
    Ok((readings.len() as u64, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::reported_rate;

    #[test]
    fn the_rate_is_read_from_the_report() {
        let stderr = "replay: 10 rows read, 10 readings replayed\n  0.100 s, 123456 readings/s\n";
        assert_eq!(reported_rate(stderr), Some(123_456.0));
        assert_eq!(reported_rate("nothing"), None);
    }
}
