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

use edgewise_host::model::Reading as HostReading;
use edgewise_host::runtime::{CompiledPlugin, Runtime};

use super::glucose::{compile, floor_config, glucose_config, instance, replay_runtime, sdk_readings};
use crate::native::NativeGlucose;
use crate::stats::median;
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target, number};

/// The rows "Targets not met" reads (found by these names).
pub const CLI_ROW: &str = "replay throughput, Hall2018, glucose-monitor (`edgewise replay`)";
/// The in-process replay, without the JSON output.
pub const IN_PROCESS_ROW: &str = "replay of Hall2018 in-process (`replay::replay`, the CLI's loop without its JSON \
                                  output), glucose-monitor";
/// The native run's calls made to the 0.2 floor.
pub const SAME_CALLS_ROW: &str = "contract floor 0.2: the same calls (batches and ticks of the native run) to a plugin \
                                  that does nothing (faulty-v02), in-process";
/// The 0.2 floor through `edgewise replay`.
pub const FLOOR_V02_ROW: &str = "contract floor 0.2: `edgewise replay` of Hall2018 through a plugin that does nothing \
                                 (faulty-v02; the most any 0.2 plugin can reach)";

/// Runs of each side; the median is reported.
const RUNS: usize = 5;
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

/// One call of a replay, in order: readings `[start, end)` or a tick.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Call {
    Readings(usize, usize),
    Tick(i64),
}

/// The parts of a replay, timed in-process (the notes and "Targets not
/// met": where the time goes).
#[derive(Debug, Clone, Default)]
struct Parts {
    /// `replay::replay` of the glucose-monitor component, as the CLI runs
    /// it but without the JSON output, ms per run.
    wasm_ms: Vec<f64>,
    /// The same calls (the native run's schedule) made to the plugin that
    /// does nothing on contract 0.2, ms per run: the boundary alone.
    empty_ms: Vec<f64>,
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
    let (native_calls, schedule, _) = native_replay(&readings)?;
    let runtime = replay_runtime()?;
    let glucose = compile(&runtime, "glucose-monitor", &ctx.paths.glucose_wasm)?;
    let empty = compile(&runtime, "faulty-v02", &ctx.paths.faulty_v02_wasm())?;
    let mut parts = Parts::default();
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
    let mut native_ms = Vec::new();
    for _ in 0..RUNS {
        for (side, rates) in sides.iter().zip(&mut rates) {
            let (rate, outputs) = cli_rate(ctx, side)?;
            rates.push(rate);
            if side.plugin == frozen {
                frozen_outputs = outputs;
            }
        }
        parts
            .wasm_ms
            .push(in_process_ms(&runtime, &glucose, ctx, native_calls)?);
        parts
            .empty_ms
            .push(empty_calls_ms(&runtime, &empty, &ctx.hall2018.readings, &schedule)?);
        let (calls, _, took) = native_replay(&readings)?;
        if calls != native_calls {
            bail!("two native replays disagree: {calls:?} and {native_calls:?}");
        }
        native.push(readings.len() as f64 / took.as_secs_f64().max(1e-9));
        native_ms.push(took.as_secs_f64() * 1e3);
    }
    let medians = rates
        .iter()
        .map(|r| median(r).context("no replay run"))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    let [figure, frozen_figure, floor_v02, floor_v01] = medians[..] else {
        bail!("expected four replay sides");
    };
    let baseline = median(&native).context("no native run")?;
    let wasm_ms = median(&parts.wasm_ms).context("no in-process run")?;
    let empty_ms = median(&parts.empty_ms).context("no run of empty calls")?;
    let native_run_ms = median(&native_ms).context("no native run")?;
    let cli_ms = readings.len() as f64 / figure.max(1e-9) * 1e3;
    let calls_made = native_calls.batches + native_calls.ticks;
    let rate = |ms: f64| readings.len() as f64 / (ms / 1e3).max(1e-12);
    let runs = |runs: &[f64]| runs.iter().map(|r| number(*r)).collect::<Vec<_>>().join(", ");
    let native_label = "glucose-monitor 0.2, native, same clock";
    Ok(Outcome {
        rows: vec![
            Row::measured(
                CLI_ROW,
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
                IN_PROCESS_ROW,
                native_label,
                Some(baseline),
                rate(wasm_ms),
                "readings/s",
                Target::None,
            ),
            Row::measured(
                SAME_CALLS_ROW,
                native_label,
                Some(baseline),
                rate(empty_ms),
                "readings/s",
                Target::None,
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
                FLOOR_V02_ROW,
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
                "where the time goes, medians of {RUNS} runs: `edgewise replay` {} ms for the {} readings (from its \
                 readings/s); the same replay in-process (`replay::replay`, the CLI's loop, outputs counted but not \
                 written as JSON) {} ms, so the JSON output takes about {} ms; the native run's {} calls made to the \
                 plugin that does nothing on contract 0.2 (faulty-v02, same batches, same ticks) {} ms: the boundary \
                 alone, {} ns a call; glucose-monitor's own code and its outputs in wasm then take {} ms, against {} \
                 ms for all of it natively",
                number(cli_ms),
                number(readings.len() as f64),
                number(wasm_ms),
                number(cli_ms - wasm_ms),
                number(calls_made as f64),
                number(empty_ms),
                number(empty_ms * 1e6 / calls_made.max(1) as f64),
                number(wasm_ms - empty_ms),
                number(native_run_ms),
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
        bail!(
            "edgewise replay of {plugin} failed ({}): {}",
            output.status,
            stderr.trim()
        );
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
        .ok_or_else(|| {
            anyhow!(
                "edgewise replay of {plugin} reported no alerts and summaries: {}",
                stderr.trim()
            )
        })?;
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
/// the CLI makes), at the wakes it answers. Returns its calls, their
/// schedule and the time taken.
fn native_replay(readings: &[Reading<'_>]) -> anyhow::Result<(Calls, Vec<Call>, Duration)> {
    let clock_ms = readings.first().map_or(0, |r| r.timestamp_ms);
    let mut plugin = NativeGlucose::start(&glucose_config(), clock_ms)?;
    let mut calls = Calls::default();
    let mut schedule = Vec::with_capacity(readings.len());
    let mut position = 0;
    let wake = plugin.wake();
    let started = Instant::now();
    replay::drive(
        readings,
        |r| r.timestamp_ms,
        TICK_MS,
        None,
        wake,
        |step| {
            match step {
                Step::Readings(batch) => {
                    calls.batches += 1;
                    schedule.push(Call::Readings(position, position + batch.len()));
                    position += batch.len();
                    plugin.on_readings(batch)?;
                }
                Step::Tick(now_ms) => {
                    calls.ticks += 1;
                    schedule.push(Call::Tick(now_ms));
                    plugin.on_tick(now_ms)?;
                }
            }
            anyhow::Ok(plugin.wake())
        },
    )?;
    let took = started.elapsed();
    calls.outputs = plugin.outputs();
    Ok((calls, schedule, took))
}

/// `replay::replay` of the glucose-monitor component over Hall2018 (the
/// loop of `edgewise replay`, without its JSON output): ms. Fails unless it
/// makes the calls and outputs of the native run.
fn in_process_ms(runtime: &Runtime, glucose: &CompiledPlugin, ctx: &Ctx, native: Calls) -> anyhow::Result<f64> {
    let readings = &ctx.hall2018.readings;
    let clock_ms = readings.first().map_or(0, |r| r.timestamp_ms);
    let mut plugin = instance(runtime, glucose, &glucose_config(), clock_ms)?;
    let report = replay::replay(
        &mut plugin,
        &ctx.hall2018,
        TICK_MS,
        replay::MAX_TICKS,
        replay::Stops::Never,
        &mut |output| {
            std::hint::black_box(output);
        },
    )
    .context("glucose-monitor failed in the in-process replay")?;
    if report.ticks != native.ticks || report.alerts + report.summaries != native.outputs {
        bail!("the in-process replay made {report:?}, the native run {native:?}");
    }
    Ok(report.elapsed.as_secs_f64() * 1e3)
}

/// The calls of `schedule` made to `empty` (the plugin that does nothing,
/// contract 0.2), outputs taken after each as the replay does: ms.
fn empty_calls_ms(
    runtime: &Runtime,
    empty: &CompiledPlugin,
    readings: &[HostReading],
    schedule: &[Call],
) -> anyhow::Result<f64> {
    let clock_ms = readings.first().map_or(0, |r| r.timestamp_ms);
    let mut plugin = instance(runtime, empty, &floor_config(), clock_ms)?;
    let started = Instant::now();
    for call in schedule {
        match *call {
            Call::Readings(start, end) => plugin.on_readings(readings.get(start..end).unwrap_or_default()),
            Call::Tick(now_ms) => plugin.on_tick(now_ms),
        }
        .context("the plugin that does nothing failed")?;
        std::hint::black_box(plugin.take_outputs());
    }
    Ok(started.elapsed().as_secs_f64() * 1e3)
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
