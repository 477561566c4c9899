//! Replay throughput over Hall2018: `edgewise replay` as a user runs it
//! (its own readings/s line), against the same recording driven through
//! the same clock rules (`replay::drive`, the wakes the plugin answers) with
//! glucose-monitor linked natively (`native`); beside it, in the same runs,
//! the frozen 0.1 bundle of glucose-monitor and each contract's floor: the
//! same replay through a plugin that does nothing (faulty-v02 and
//! faulty-plugin, `fail=none`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use edgewise_host::replay::{self, Step};
use edgewise_sdk::Reading;

use super::glucose::{floor_config, glucose_config, sdk_readings};
use crate::native::NativeGlucose;
use crate::stats::median;
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target, number};

/// Runs of each side; the median is reported.
const RUNS: usize = 3;
/// DESIGN: at least 3 million readings/s.
const TARGET: f64 = 3_000_000.0;
/// Issue #13: `edgewise replay` at least 0.6x of native on the same clock.
const TARGET_RATIO: f64 = 0.6;
/// `edgewise replay`'s default tick (a 0.1 plugin's interval).
const TICK_MS: i64 = 5 * 60_000;

/// What one side of a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Calls {
    /// `on-readings` calls.
    batches: u64,
    /// `on-tick` calls.
    ticks: u64,
    /// Alerts and summaries.
    outputs: u64,
}

/// One `edgewise replay` to run.
struct Cli<'a> {
    plugin: &'a Path,
    /// `--trust DIR`, for a signed bundle.
    trust: Option<&'a Path>,
    /// `--config KEY=VALUE` pairs.
    config: Vec<String>,
    /// The ticks and outputs it must report (`None`: outputs unchecked).
    ticks: u64,
    outputs: Option<u64>,
}

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let readings = sdk_readings(&ctx.hall2018.readings);
    let (native_calls, _) = native_replay(&readings)?;
    let interval = interval_calls(&readings)?;
    let args = |config: Vec<(String, String)>| config.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>();
    let floor_args = args(floor_config());
    let faulty_v02 = ctx.paths.faulty_v02_wasm();
    let faulty_v01 = ctx.paths.faulty_wasm();
    let (frozen, frozen_trust) = ctx.paths.frozen_v01();
    let sides = [
        Cli {
            plugin: &ctx.paths.glucose_wasm,
            trust: None,
            config: args(glucose_config()),
            ticks: native_calls.ticks,
            outputs: Some(native_calls.outputs),
        },
        Cli {
            plugin: &frozen,
            trust: Some(&frozen_trust),
            config: Vec::new(),
            ticks: interval.ticks,
            outputs: None,
        },
        Cli {
            plugin: &faulty_v02,
            trust: None,
            config: floor_args.clone(),
            ticks: 0,
            outputs: Some(0),
        },
        Cli {
            plugin: &faulty_v01,
            trust: None,
            config: floor_args,
            ticks: interval.ticks,
            outputs: Some(0),
        },
    ];
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); sides.len()];
    let mut frozen_outputs = 0;
    let mut native = Vec::new();
    for _ in 0..RUNS {
        for (side, rates) in sides.iter().zip(&mut rates) {
            let (rate, outputs) = cli_rate(ctx, side)?;
            rates.push(rate);
            if side.plugin == frozen {
                frozen_outputs = outputs;
            }
        }
        let (calls, took) = native_replay(&readings)?;
        if calls != native_calls {
            bail!("two native replays disagree: {calls:?} and {native_calls:?}");
        }
        native.push(readings.len() as f64 / took.as_secs_f64().max(1e-9));
    }
    let medians = rates
        .iter()
        .map(|r| median(r).context("no replay run"))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    let [figure, frozen_figure, floor_v02, floor_v01] = medians[..] else {
        bail!("expected four replay sides");
    };
    let baseline = median(&native).context("no native run")?;
    let runs = |runs: &[f64]| runs.iter().map(|r| number(*r)).collect::<Vec<_>>().join(", ");
    let native_label = "glucose-monitor 0.2, native, same clock";
    Ok(Outcome {
        rows: vec![
            Row::measured(
                "replay throughput, Hall2018, glucose-monitor (`edgewise replay`)",
                "same logic, native (SDK driver), same clock and wakes",
                Some(baseline),
                figure,
                "readings/s",
                Target::RatioAtLeast(TARGET_RATIO),
            ),
            Row::measured(
                "replay throughput, Hall2018, glucose-monitor (`edgewise replay`), DESIGN's absolute target",
                "-",
                None,
                figure,
                "readings/s",
                Target::AtLeast(TARGET),
            ),
            Row::measured(
                "replay throughput, Hall2018, glucose-monitor 0.1 (the frozen bundle, `edgewise replay --trust`)",
                native_label,
                Some(baseline),
                frozen_figure,
                "readings/s",
                Target::None,
            ),
            Row::measured(
                "contract floor 0.2: `edgewise replay` of Hall2018 through a plugin that does nothing (faulty-v02; \
                 the most any 0.2 plugin can reach)",
                native_label,
                Some(baseline),
                floor_v02,
                "readings/s",
                Target::None,
            ),
            Row::measured(
                "contract floor 0.1: `edgewise replay` of Hall2018 through a plugin that does nothing \
                 (faulty-plugin, ticked every 5 min)",
                native_label,
                Some(baseline),
                floor_v01,
                "readings/s",
                Target::None,
            ),
        ],
        details: vec![
            format!(
                "{} readings; runs (readings/s): edgewise replay {}, native {}; frozen 0.1 bundle {}; floor 0.2 {}; \
                 floor 0.1 {}",
                readings.len(),
                runs(&rates[0]),
                runs(&native),
                runs(&rates[1]),
                runs(&rates[2]),
                runs(&rates[3]),
            ),
            format!(
                "calls: glucose-monitor 0.2 is ticked {} times (at its wakes) and given {} batches, natively and by \
                 `edgewise replay` alike ({} outputs on both, checked); a 0.1 plugin is ticked {} times (every 5 \
                 virtual minutes from the first reading to an hour past the last day) and given {} batches (the \
                 frozen bundle: {} outputs); the 0.2 floor asks for no tick and gets none",
                number(native_calls.ticks as f64),
                number(native_calls.batches as f64),
                number(native_calls.outputs as f64),
                number(interval.ticks as f64),
                number(interval.batches as f64),
                number(frozen_outputs as f64),
            ),
            format!(
                "against DESIGN's {} readings/s: glucose-monitor {}x, the 0.2 floor {}x",
                number(TARGET),
                number(figure / TARGET),
                number(floor_v02 / TARGET),
            ),
        ],
    })
}

/// One `edgewise replay --out /dev/null` over Hall2018: the readings/s it
/// reports, and its outputs. Fails unless it reports the ticks (and
/// outputs) `cli` expects.
fn cli_rate(ctx: &Ctx, cli: &Cli<'_>) -> anyhow::Result<(f64, u64)> {
    let mut command = Command::new(&ctx.paths.edgewise);
    command.arg("replay").arg("--plugin").arg(cli.plugin);
    if let Some(trust) = cli.trust {
        command.arg("--trust").arg(trust);
    }
    for pair in &cli.config {
        command.arg("--config").arg(pair);
    }
    let output = command
        .arg("--input")
        .arg(&ctx.paths.hall2018)
        .arg("--out")
        .arg("/dev/null")
        .env_remove("RUST_LOG")
        .output()
        .with_context(|| format!("cannot run {}", ctx.paths.edgewise.display()))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let plugin = cli.plugin.display();
    if !output.status.success() {
        bail!("edgewise replay of {plugin} failed ({}): {}", output.status, stderr.trim());
    }
    let reported = |name| reported_count(&stderr, name);
    if reported("ticks") != Some(cli.ticks) {
        bail!(
            "edgewise replay of {plugin} reported {:?} ticks, the native clock makes {}: {}",
            reported("ticks"),
            cli.ticks,
            stderr.trim()
        );
    }
    let outputs = reported("alerts")
        .zip(reported("summaries"))
        .map(|(alerts, summaries)| alerts + summaries)
        .ok_or_else(|| anyhow!("edgewise replay of {plugin} reported no alerts and summaries: {}", stderr.trim()))?;
    if let Some(expected) = cli.outputs
        && outputs != expected
    {
        bail!("edgewise replay of {plugin} made {outputs} outputs, natively {expected}");
    }
    let rate = reported_rate(&stderr)
        .ok_or_else(|| anyhow!("edgewise replay printed no `N readings/s` line: {}", stderr.trim()))?;
    Ok((rate, outputs))
}

/// The number before `readings/s` in `edgewise replay`'s report.
fn reported_rate(stderr: &str) -> Option<f64> {
    stderr.lines().find_map(|line| {
        let before = line.trim_end().strip_suffix("readings/s")?;
        before.split([' ', ',']).rev().find(|w| !w.is_empty())?.parse().ok()
    })
}

/// The number after `name:` (`ticks:`, `alerts:`...) in `edgewise replay`'s report.
fn reported_count(stderr: &str, name: &str) -> Option<u64> {
    let label = format!("{name}:");
    stderr.lines().find_map(|line| {
        let (_, after) = line.split_once(&label)?;
        after.split([' ', ',']).find(|w| !w.is_empty())?.parse().ok()
    })
}

/// glucose-monitor natively through `edgewise replay`'s clock
/// (`replay::drive`: the same code, so the baseline gets exactly the calls
/// the CLI makes), at the wakes it answers. Returns its calls and the time taken.
fn native_replay(readings: &[Reading<'_>]) -> anyhow::Result<(Calls, Duration)> {
    let clock_ms = readings.first().map_or(0, |r| r.timestamp_ms);
    let mut plugin = NativeGlucose::start(&glucose_config(), clock_ms)?;
    let mut calls = Calls::default();
    let wake = plugin.wake();
    let started = Instant::now();
    replay::drive(
        readings,
        |r| r.timestamp_ms,
        TICK_MS,
        wake,
        |step| {
            match step {
                Step::Readings(batch) => {
                    calls.batches += 1;
                    plugin.on_readings(batch)?;
                }
                Step::Tick(now_ms) => {
                    calls.ticks += 1;
                    plugin.on_tick(now_ms)?;
                }
            }
            anyhow::Ok(plugin.wake())
        },
    )?;
    let took = started.elapsed();
    calls.outputs = plugin.outputs();
    Ok((calls, took))
}

/// The calls `edgewise replay` makes to a 0.1 plugin (ticked every
/// [`TICK_MS`]), outputs not counted.
fn interval_calls(readings: &[Reading<'_>]) -> anyhow::Result<Calls> {
    let mut calls = Calls::default();
    replay::schedule(
        readings,
        |r| r.timestamp_ms,
        TICK_MS,
        |step| {
            match step {
                Step::Readings(_) => calls.batches += 1,
                Step::Tick(_) => calls.ticks += 1,
            }
            anyhow::Ok(())
        },
    )?;
    Ok(calls)
}

#[cfg(test)]
mod tests {
    use super::{reported_count, reported_rate};

    #[test]
    fn the_rate_is_read_from_the_report() {
        let stderr = "replay: 10 rows read, 10 readings replayed\n  0.100 s, 123456 readings/s\n";
        assert_eq!(reported_rate(stderr), Some(123_456.0));
        assert_eq!(reported_rate("nothing"), None);
    }

    #[test]
    fn the_counts_are_read_from_the_report() {
        let stderr = "replay: 10 rows read\n  alerts: 4259, summaries: 9688, ticks: 361408\n  0.191 s, 5 readings/s\n";
        assert_eq!(reported_count(stderr, "ticks"), Some(361_408));
        assert_eq!(reported_count(stderr, "alerts"), Some(4_259));
        assert_eq!(reported_count(stderr, "summaries"), Some(9_688));
        assert_eq!(reported_count("nothing", "ticks"), None);
    }
}
