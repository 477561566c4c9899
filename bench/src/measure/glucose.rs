//! glucose-monitor per reading: the wasm component in the host runtime vs
//! the same Rust logic linked natively, over the same readings in the same
//! batches, interleaved in one process.

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

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let config = glucose_config();
    let host_readings = &ctx.hall2018.readings;
    let native_readings: Vec<Reading> = host_readings
        .iter()
        .map(|r| Reading {
            sensor: r.sensor.clone(),
            timestamp_ms: r.timestamp_ms,
            value: r.value,
            unit: r.unit.clone(),
        })
        .collect();
    let runtime = Runtime::new(RuntimeOptions::default()).context("cannot create the wasm runtime")?;
    let bytes = std::fs::read(&ctx.paths.glucose_wasm)
        .with_context(|| format!("cannot read {}", ctx.paths.glucose_wasm.display()))?;
    let compiled = runtime
        .compile("glucose-monitor", &bytes)
        .context("cannot compile glucose-monitor")?;

    let mut native_ns: Vec<Vec<f64>> = vec![Vec::new(); BATCHES.len()];
    let mut wasm_ns: Vec<Vec<f64>> = vec![Vec::new(); BATCHES.len()];
    let mut outputs = (0, 0);
    for repetition in 0..REPETITIONS {
        for (i, &batch) in BATCHES.iter().enumerate() {
            // Alternate which goes first, so neither always runs on a warmer cache.
            let wasm_first = repetition % 2 == 1;
            if wasm_first {
                wasm_ns[i].push(wasm_per_reading(
                    &runtime,
                    &compiled,
                    &config,
                    host_readings,
                    batch,
                    &mut outputs.1,
                )?);
            }
            native_ns[i].push(native_per_reading(&config, &native_readings, batch, &mut outputs.0)?);
            if !wasm_first {
                wasm_ns[i].push(wasm_per_reading(
                    &runtime,
                    &compiled,
                    &config,
                    host_readings,
                    batch,
                    &mut outputs.1,
                )?);
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
    let mut rows = Vec::new();
    for (i, batch) in BATCHES.iter().enumerate() {
        let native = median(&native_ns[i]).context("no native sample")?;
        let wasm = median(&wasm_ns[i]).context("no wasm sample")?;
        rows.push(Row::measured(
            format!("glucose-monitor per reading, wasm, batch {batch}"),
            "same logic, native",
            Some(native),
            wasm,
            "ns/reading",
            Target::RatioAtMost(TARGET),
        ));
    }
    Ok(Outcome {
        rows,
        details: vec![format!(
            "{} readings of {} per run, {REPETITIONS} interleaved runs per batch size; {} outputs per run in both",
            host_readings.len(),
            crate::setup::HALL2018,
            outputs.0 / (REPETITIONS * BATCHES.len()) as u64
        )],
    })
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
    readings: &[Reading],
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
    instance
        .init(config)
        .context("glucose-monitor refused its configuration")?;
    let started = Instant::now();
    for chunk in readings.chunks(batch) {
        instance.on_readings(chunk).context("glucose-monitor failed in wasm")?;
        let taken = instance.take_outputs();
        *outputs += taken.len() as u64;
        std::hint::black_box(taken);
    }
    Ok(started.elapsed().as_nanos() as f64 / readings.len().max(1) as f64)
}
