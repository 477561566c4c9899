//! Replay throughput over Hall2018: `edgewise replay` as a user runs it
//! (its own readings/s line), against the same recording driven through
//! the same clock rules with glucose-monitor linked natively; beside it, the
//! contract's floor: the same replay through a plugin that does nothing
//! (faulty-plugin, `fail=none`), and the cost of one empty `on-tick` call.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use edgewise_host::replay::{self, Step};
use edgewise_host::runtime::{CompiledPlugin, PluginInstance, Runtime, RuntimeOptions};
use edgewise_sdk::{Config, Outputs, Plugin, Reading};
use glucose_monitor::GlucoseMonitor;

use super::glucose::{floor_config, glucose_config, in_process_limits, sdk_readings};
use crate::stats::median;
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target, number};

/// Runs of each side; the median is reported.
const RUNS: usize = 3;
/// DESIGN: at least 3 million readings/s.
const TARGET: f64 = 3_000_000.0;
/// `edgewise replay`'s default tick.
const TICK_MS: i64 = 5 * 60_000;
/// Empty `on-tick` calls timed per run.
const EMPTY_TICKS: u32 = 1_000_000;

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let readings = sdk_readings(&ctx.hall2018.readings);
    let schedule = schedule(&readings, &mut Count)?;
    let runtime = Runtime::new(RuntimeOptions::default()).context("cannot create the wasm runtime")?;
    let faulty_wasm = ctx.paths.faulty_wasm();
    let bytes = std::fs::read(&faulty_wasm).with_context(|| format!("cannot read {}", faulty_wasm.display()))?;
    let nothing = runtime
        .compile("faulty-plugin", &bytes)
        .context("cannot compile faulty-plugin")?;
    let floor_args: Vec<String> = floor_config().iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut cli = Vec::new();
    let mut floor = Vec::new();
    let mut native = Vec::new();
    let mut tick_ns = Vec::new();
    for _ in 0..RUNS {
        cli.push(cli_rate(ctx, &ctx.paths.glucose_wasm, &[], schedule.ticks)?);
        floor.push(cli_rate(ctx, &faulty_wasm, &floor_args, schedule.ticks)?);
        let (count, took) = native_replay(&readings)?;
        native.push(count as f64 / took.as_secs_f64().max(1e-9));
        tick_ns.push(empty_tick_ns(&runtime, &nothing)?);
    }
    let figure = median(&cli).context("no replay run")?;
    let floor_figure = median(&floor).context("no floor run")?;
    let baseline = median(&native).context("no native run")?;
    let tick = median(&tick_ns).context("no on-tick run")?;
    let rates = |runs: &[f64]| runs.iter().map(|r| number(*r)).collect::<Vec<_>>().join(", ");
    let budget_ms = readings.len() as f64 / TARGET * 1e3;
    let ticks_ms = schedule.ticks as f64 * tick / 1e6;
    Ok(Outcome {
        rows: vec![
            Row::measured(
                "replay throughput, Hall2018, glucose-monitor (`edgewise replay`)",
                "same clock, native logic",
                Some(baseline),
                figure,
                "readings/s",
                Target::AtLeast(TARGET),
            ),
            Row::measured(
                "contract floor: `edgewise replay` of Hall2018 through a plugin that does nothing (the most any \
                 plugin can reach)",
                "glucose-monitor, same clock, native logic",
                Some(baseline),
                floor_figure,
                "readings/s",
                Target::None,
            ),
            Row::measured(
                "contract floor: one empty `on-tick` call",
                "-",
                None,
                tick,
                "ns/call",
                Target::None,
            ),
        ],
        details: vec![
            format!(
                "{} readings; runs: edgewise replay {} readings/s, native {} readings/s",
                readings.len(),
                rates(&cli),
                rates(&native)
            ),
            format!(
                "contract floor: faulty-plugin with `--config fail=none` (no outputs), runs {} readings/s, against \
                 the DESIGN target of {} readings/s for glucose-monitor: even a plugin that does nothing replays at \
                 {}x of the target",
                rates(&floor),
                number(TARGET),
                number(floor_figure / TARGET)
            ),
            format!(
                "the clock makes {} `on-tick` calls (a tick every 5 min from the first reading to an hour past the \
                 last day; `edgewise replay` reports the same) and {} `on-readings` calls; one empty `on-tick` call \
                 costs {} ns (median of {RUNS} runs of {} calls on one initialised no-op instance: {} ns), so the \
                 ticks alone take {} ms, against the {} ms in which {} readings must go through to reach {} \
                 readings/s",
                number(schedule.ticks as f64),
                number(schedule.batches as f64),
                number(tick),
                number(f64::from(EMPTY_TICKS)),
                tick_ns.iter().map(|t| number(*t)).collect::<Vec<_>>().join(", "),
                number(ticks_ms),
                number(budget_ms),
                number(readings.len() as f64),
                number(TARGET)
            ),
        ],
    })
}

/// One `edgewise replay --out /dev/null` of `plugin` over Hall2018: the
/// readings/s it reports. Fails unless it reports `ticks` ticks.
fn cli_rate(ctx: &Ctx, plugin: &Path, config: &[String], ticks: u64) -> anyhow::Result<f64> {
    let mut command = Command::new(&ctx.paths.edgewise);
    command.arg("replay").arg("--plugin").arg(plugin);
    for pair in config {
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
    if !output.status.success() {
        bail!("edgewise replay failed ({}): {}", output.status, stderr.trim());
    }
    match reported_ticks(&stderr) {
        Some(reported) if reported == ticks => {}
        reported => bail!(
            "edgewise replay of {} reported {reported:?} ticks, the native clock makes {ticks}: {}",
            plugin.display(),
            stderr.trim()
        ),
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

/// The number after `ticks:` in `edgewise replay`'s report.
fn reported_ticks(stderr: &str) -> Option<u64> {
    stderr.lines().find_map(|line| {
        let (_, after) = line.split_once("ticks:")?;
        after.split([' ', ',']).find(|w| !w.is_empty())?.parse().ok()
    })
}

/// Calls a replay makes.
#[derive(Debug, Clone, Copy, Default)]
struct Schedule {
    /// `on-readings` calls.
    batches: u64,
    /// `on-tick` calls.
    ticks: u64,
}

/// What [`schedule`] drives.
trait Calls {
    /// An `on-readings` call.
    fn batch(&mut self, readings: &[Reading<'_>]) -> anyhow::Result<()>;
    /// An `on-tick` call.
    fn tick(&mut self, now_ms: i64) -> anyhow::Result<()>;
}

/// Drives nothing: [`schedule`] only counts.
struct Count;

impl Calls for Count {
    fn batch(&mut self, _: &[Reading<'_>]) -> anyhow::Result<()> {
        Ok(())
    }

    fn tick(&mut self, _: i64) -> anyhow::Result<()> {
        Ok(())
    }
}

/// glucose-monitor linked natively, outputs taken after each call.
struct Native {
    plugin: GlucoseMonitor,
    out: Outputs,
}

impl Calls for Native {
    fn batch(&mut self, readings: &[Reading<'_>]) -> anyhow::Result<()> {
        self.plugin
            .on_readings(readings, &mut self.out)
            .map_err(|e| anyhow!("glucose-monitor failed natively: {e}"))?;
        std::hint::black_box(self.out.take());
        Ok(())
    }

    fn tick(&mut self, now_ms: i64) -> anyhow::Result<()> {
        self.plugin
            .on_tick(now_ms, &mut self.out)
            .map_err(|e| anyhow!("glucose-monitor failed natively: {e}"))?;
        std::hint::black_box(self.out.take());
        Ok(())
    }
}

/// `edgewise replay`'s clock (`replay::schedule`: the same code, so the
/// baseline gets exactly the calls the CLI makes), driving `calls` in order.
fn schedule(readings: &[Reading<'_>], calls: &mut impl Calls) -> anyhow::Result<Schedule> {
    let mut made = Schedule::default();
    replay::schedule(
        readings,
        |r| r.timestamp_ms,
        TICK_MS,
        |step| match step {
            Step::Readings(batch) => {
                made.batches += 1;
                calls.batch(batch)
            }
            Step::Tick(now_ms) => {
                made.ticks += 1;
                calls.tick(now_ms)
            }
        },
    )?;
    Ok(made)
}

/// The replay clock of `edgewise replay` over the natively linked plugin.
/// Returns readings and time taken.
fn native_replay(readings: &[Reading<'_>]) -> anyhow::Result<(u64, Duration)> {
    let plugin = GlucoseMonitor::init(Config::new(glucose_config()))
        .map_err(|e| anyhow!("glucose-monitor refused its configuration: {e}"))?;
    let mut native = Native {
        plugin,
        out: Outputs::default(),
    };
    let started = Instant::now();
    schedule(readings, &mut native)?;
    Ok((readings.len() as u64, started.elapsed()))
}

/// Nanoseconds per `on-tick` call on a fresh, initialised instance of the
/// plugin that does nothing (instantiation not timed).
fn empty_tick_ns(runtime: &Runtime, nothing: &CompiledPlugin) -> anyhow::Result<f64> {
    let mut instance = PluginInstance::new(runtime, nothing, in_process_limits()).context("cannot instantiate")?;
    instance
        .init(&floor_config())
        .context("faulty-plugin refused `fail=none`")?;
    let started = Instant::now();
    for i in 0..EMPTY_TICKS {
        instance
            .on_tick(i64::from(i) * TICK_MS)
            .context("faulty-plugin failed an empty `on-tick`")?;
    }
    let took = started.elapsed();
    let outputs = instance.take_outputs().len();
    if outputs != 0 {
        bail!("the plugin that does nothing emitted {outputs} outputs on ticks");
    }
    Ok(took.as_nanos() as f64 / f64::from(EMPTY_TICKS))
}

#[cfg(test)]
mod tests {
    use super::{reported_rate, reported_ticks};

    #[test]
    fn the_rate_is_read_from_the_report() {
        let stderr = "replay: 10 rows read, 10 readings replayed\n  0.100 s, 123456 readings/s\n";
        assert_eq!(reported_rate(stderr), Some(123_456.0));
        assert_eq!(reported_rate("nothing"), None);
    }

    #[test]
    fn the_ticks_are_read_from_the_report() {
        let stderr = "replay: 10 rows read\n  alerts: 4259, summaries: 9688, ticks: 361408\n  0.191 s, 5 readings/s\n";
        assert_eq!(reported_ticks(stderr), Some(361_408));
        assert_eq!(reported_ticks("nothing"), None);
    }
}
