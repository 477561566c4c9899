//! Issue #5: the instance allocator. Instantiate + `init` time (first
//! instances, and the restart a supervisor does: drop one, build one) and
//! memory per instance, with wasmtime's on-demand allocator and with the
//! pooling allocator, each in a child process of this program so their
//! resident sets do not mix.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use edgewise_host::runtime::{Allocator, PluginInstance, Runtime, RuntimeOptions};
use edgewise_procs::workspace::checked_output;

use super::glucose::{glucose_config, in_process_limits};
use crate::device::rss_of;
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target};

/// Instances held at once.
const INSTANCES: usize = 100;
/// Restarts (drop the oldest instance, build and `init` a new one) timed.
const RESTARTS: usize = 300;
/// The pool: room for the instances held plus restarts in flight.
const POOL: Allocator = Allocator::Pooling {
    instances: 128,
    max_memory_bytes: 64 << 20,
};

/// What one child measured.
struct Figures {
    allocator: String,
    first_us: f64,
    restart_us: f64,
    rss_per_instance_kib: f64,
}

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let on_demand = child(&ctx.paths.bench, &ctx.paths.glucose_wasm, "on-demand")?;
    let pooling = child(&ctx.paths.bench, &ctx.paths.glucose_wasm, "pooling")?;
    let label = format!("on-demand ({})", on_demand.allocator);
    let pooled = format!("pooling allocator (in use: {})", pooling.allocator);
    Ok(Outcome {
        rows: vec![
            Row::measured(
                format!("instantiate + init, first {INSTANCES} instances, {pooled}"),
                label.clone(),
                Some(on_demand.first_us),
                pooling.first_us,
                "µs",
                Target::None,
            ),
            Row::measured(
                format!("restart (drop one, instantiate + init one), {pooled}"),
                label.clone(),
                Some(on_demand.restart_us),
                pooling.restart_us,
                "µs",
                Target::None,
            ),
            Row::measured(
                format!("RSS per instance at {INSTANCES} instances, {pooled}"),
                label,
                Some(on_demand.rss_per_instance_kib),
                pooling.rss_per_instance_kib,
                "KiB/instance",
                Target::None,
            ),
        ],
        details: vec![format!(
            "on-demand: first {:.1} µs, restart {:.1} µs, {:.1} KiB/instance; pooling: first {:.1} µs, \
             restart {:.1} µs, {:.1} KiB/instance (medians; RSS growth from 1 to {INSTANCES} instances)",
            on_demand.first_us,
            on_demand.restart_us,
            on_demand.rss_per_instance_kib,
            pooling.first_us,
            pooling.restart_us,
            pooling.rss_per_instance_kib
        )],
    })
}

/// Run `edgewise-bench allocator --plugin WASM --kind KIND` and read its figures.
fn child(bench: &Path, wasm: &Path, kind: &str) -> anyhow::Result<Figures> {
    let mut command = Command::new(bench);
    command.args(["allocator", "--plugin"]).arg(wasm).args(["--kind", kind]);
    let output = checked_output(command)?;
    let text = String::from_utf8_lossy(&output.stdout);
    let value = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix(' ')))
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("`bench allocator` printed no `{key}`: {text}"))
    };
    let number =
        |key: &str| -> anyhow::Result<f64> { value(key)?.parse().map_err(|e| anyhow!("`bench allocator` {key}: {e}")) };
    Ok(Figures {
        allocator: value("allocator")?,
        first_us: number("first_us")?,
        restart_us: number("restart_us")?,
        rss_per_instance_kib: number("rss_per_instance_kib")?,
    })
}

/// `edgewise-bench allocator --plugin WASM --kind on-demand|pooling`: build
/// [`INSTANCES`] initialised instances, then [`RESTARTS`] restarts; print the
/// allocator in use, median times and the RSS growth per instance.
pub fn measure_in_child(wasm: &Path, kind: &str) -> anyhow::Result<()> {
    let allocator = match kind {
        "on-demand" => Allocator::OnDemand,
        "pooling" => POOL,
        other => bail!("--kind {other}: expected on-demand or pooling"),
    };
    let runtime = Runtime::new(RuntimeOptions {
        allocator,
        ..RuntimeOptions::default()
    })
    .context("cannot create the wasm runtime")?;
    let bytes = std::fs::read(wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    let compiled = runtime.compile("glucose-monitor", &bytes).context("cannot compile")?;
    let config = glucose_config();
    let start = || -> anyhow::Result<(PluginInstance, Duration)> {
        let started = Instant::now();
        let mut instance =
            PluginInstance::new(&runtime, &compiled, in_process_limits()).context("cannot instantiate")?;
        instance.init(&config).context("init failed")?;
        Ok((instance, started.elapsed()))
    };
    let mut instances = Vec::with_capacity(INSTANCES);
    let mut first = Vec::with_capacity(INSTANCES);
    let mut rss_one = 0;
    for i in 0..INSTANCES {
        let (instance, took) = start()?;
        instances.push(instance);
        first.push(took);
        if i == 0 {
            std::thread::sleep(Duration::from_millis(100));
            rss_one = rss_of("/proc/self/status")?;
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    let rss_all = rss_of("/proc/self/status")?;
    let mut restarts = Vec::with_capacity(RESTARTS);
    for i in 0..RESTARTS {
        instances.swap_remove(i % INSTANCES);
        let (instance, took) = start()?;
        instances.push(instance);
        restarts.push(took);
    }
    let median_us = |mut times: Vec<Duration>| {
        times.sort();
        times.get(times.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1e6)
    };
    println!("allocator {:?}", runtime.allocator());
    println!("first_us {}", median_us(first));
    println!("restart_us {}", median_us(restarts));
    println!(
        "rss_per_instance_kib {}",
        (rss_all as f64 - rss_one as f64) / (INSTANCES - 1) as f64 / 1024.0
    );
    Ok(())
}
