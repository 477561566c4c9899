//! glucose-monitor per reading: the wasm component in the host runtime vs
//! the same Rust logic linked natively, over the same readings in the same
//! batches, interleaved in one process; beside them, a plugin that does
//! nothing (faulty-plugin, `fail=none`): the floor of the contract itself.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use edgewise_host::model::Reading as HostReading;
use edgewise_host::runtime::{CompiledPlugin, Limits, PluginInstance, Runtime, RuntimeOptions};
use edgewise_sdk::{Config, Outputs, Plugin, Reading};
use glucose_monitor::GlucoseMonitor;

use crate::stats::median;
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target};

/// Batch sizes of `on-readings` calls.
const BATCHES: [usize; 3] = [1, 16, 256];
/// Interleaved repetitions; the median is reported.
const REPETITIONS: usize = 5;
/// DESIGN: wasm time per reading at most 1.3x native.
const TARGET: f64 = 1.3;

/// `readings` as the SDK's type, for glucose-monitor linked natively.
pub fn sdk_readings(readings: &[HostReading]) -> Vec<Reading<'_>> {
    readings
        .iter()
        .map(|r| Reading {
            sensor: &r.sensor,
            timestamp_ms: r.timestamp_ms,
            value: r.value,
            unit: &r.unit,
        })
        .collect()
}

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let config = glucose_config();
    let floor_config = floor_config();
    let host_readings = &ctx.hall2018.readings;
    let native_readings = sdk_readings(host_readings);
    let runtime = Runtime::new(RuntimeOptions::default()).context("cannot create the wasm runtime")?;
    let compiled = compile(&runtime, "glucose-monitor", &ctx.paths.glucose_wasm)?;
    let floor = compile(&runtime, "faulty-plugin", &ctx.paths.faulty_wasm())?;

    let mut native_ns: Vec<Vec<f64>> = vec![Vec::new(); BATCHES.len()];
    let mut wasm_ns: Vec<Vec<f64>> = vec![Vec::new(); BATCHES.len()];
    let mut floor_ns: Vec<Vec<f64>> = vec![Vec::new(); BATCHES.len()];
    let mut outputs = (0, 0);
    let mut floor_outputs = 0;
    for repetition in 0..REPETITIONS {
        for (i, &batch) in BATCHES.iter().enumerate() {
            // Rotate which side goes first, so none always runs on a warmer cache.
            for side in 0..3 {
                match (repetition + side) % 3 {
                    0 => native_ns[i].push(native_per_reading(&config, &native_readings, batch, &mut outputs.0)?),
                    1 => wasm_ns[i].push(wasm_per_reading(
                        &runtime,
                        &compiled,
                        &config,
                        host_readings,
                        batch,
                        &mut outputs.1,
                    )?),
                    _ => floor_ns[i].push(wasm_per_reading(
                        &runtime,
                        &floor,
                        &floor_config,
                        host_readings,
                        batch,
                        &mut floor_outputs,
                    )?),
                }
            }
        }
    }
    if outputs.0 != outputs.1 {
        anyhow::bail!(
            "the native and wasm runs disagree: {} outputs natively, {} in wasm",
            outputs.0,
            outputs.1
        );
    }
    if floor_outputs != 0 {
        anyhow::bail!("the plugin that does nothing emitted {floor_outputs} outputs");
    }
    let mut rows = Vec::new();
    let mut floors = Vec::new();
    for (i, batch) in BATCHES.iter().enumerate() {
        let native = median(&native_ns[i]).context("no native sample")?;
        let wasm = median(&wasm_ns[i]).context("no wasm sample")?;
        let nothing = median(&floor_ns[i]).context("no floor sample")?;
        rows.push(Row::measured(
            format!("glucose-monitor per reading, wasm, batch {batch}"),
            "same logic, native",
            Some(native),
            wasm,
            "ns/reading",
            Target::RatioAtMost(TARGET),
        ));
        floors.push(Row::measured(
            format!("contract floor: a plugin that does nothing, per reading, wasm, batch {batch}"),
            "glucose-monitor, native",
            Some(native),
            nothing,
            "ns/reading",
            Target::None,
        ));
    }
    let margin = (TARGET - 1.0) * 100.0;
    let floor_ratios = floors
        .iter()
        .zip(BATCHES)
        .filter_map(|(row, batch)| Some(format!("{}x at batch {batch}", crate::table::number(row.ratio?))))
        .collect::<Vec<_>>()
        .join(", ");
    rows.extend(floors);
    Ok(Outcome {
        rows,
        details: vec![
            format!(
                "{} readings of {} per run, {REPETITIONS} interleaved runs per batch size; {} outputs per run in \
                 both",
                host_readings.len(),
                crate::setup::HALL2018,
                outputs.0 / (REPETITIONS * BATCHES.len()) as u64
            ),
            format!(
                "contract floor (faulty-plugin, `fail=none`, 0 outputs): {floor_ratios} of native glucose-monitor; \
                 the target allows wasm {margin:.0}% ({}x) over native in all, so a ratio of {} or more leaves \
                 glucose-monitor's own wasm code no room",
                crate::table::number(TARGET - 1.0),
                crate::table::number(TARGET - 1.0),
            ),
        ],
    })
}

/// Compile the component at `path` as `name`.
fn compile(runtime: &Runtime, name: &str, path: &Path) -> anyhow::Result<CompiledPlugin> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    runtime
        .compile(name, &bytes)
        .with_context(|| format!("cannot compile {name}"))
}

/// The faulty plugin's configuration that makes it do nothing: the floor
/// the WIT contract imposes on any plugin.
pub fn floor_config() -> Vec<(String, String)> {
    vec![("fail".to_owned(), "none".to_owned())]
}

/// glucose-monitor's manifest defaults, as a device would pass them.
pub fn glucose_config() -> Vec<(String, String)> {
    vec![
        ("repeat".to_owned(), "30m".to_owned()),
        ("signal_loss".to_owned(), "20m".to_owned()),
    ]
}

/// Limits of the in-process measurements: those of `edgewise replay`
/// (the defaults without the real-time output rate, which means nothing
/// when readings go through as fast as the CPU allows).
pub fn in_process_limits() -> Limits {
    Limits {
        max_outputs_per_second: None,
        ..Limits::default()
    }
}

/// Nanoseconds per reading natively, outputs collected after each call.
fn native_per_reading(
    config: &[(String, String)],
    readings: &[Reading<'_>],
    batch: usize,
    outputs: &mut u64,
) -> anyhow::Result<f64> {
    let mut plugin = GlucoseMonitor::init(Config::new(config.iter().cloned()))
        .map_err(|e| anyhow::anyhow!("glucose-monitor refused its configuration: {e}"))?;
    let mut out = Outputs::default();
    let started = Instant::now();
    for chunk in readings.chunks(batch) {
        plugin
            .on_readings(chunk, &mut out)
            .map_err(|e| anyhow::anyhow!("glucose-monitor failed natively: {e}"))?;
        let (alerts, summaries, _) = out.take();
        *outputs += (alerts.len() + summaries.len()) as u64;
        std::hint::black_box((alerts, summaries));
    }
    Ok(started.elapsed().as_nanos() as f64 / readings.len().max(1) as f64)
}

/// Nanoseconds per reading in wasm (a fresh instance, not timed), outputs
/// taken after each call as the host does.
fn wasm_per_reading(
    runtime: &Runtime,
    compiled: &CompiledPlugin,
    config: &[(String, String)],
    readings: &[HostReading],
    batch: usize,
    outputs: &mut u64,
) -> anyhow::Result<f64> {
    let mut instance = PluginInstance::new(runtime, compiled, in_process_limits()).context("cannot instantiate")?;
    let name = instance.name().to_owned();
    instance
        .init(config)
        .with_context(|| format!("{name} refused its configuration"))?;
    let started = Instant::now();
    for chunk in readings.chunks(batch) {
        instance
            .on_readings(chunk)
            .with_context(|| format!("{name} failed in wasm"))?;
        let taken = instance.take_outputs();
        *outputs += taken.len() as u64;
        std::hint::black_box(taken);
    }
    Ok(started.elapsed().as_nanos() as f64 / readings.len().max(1) as f64)
}
