//! glucose-monitor per reading: the wasm component in the host runtime vs
//! the same Rust logic linked natively and driven as the host drives the
//! component (`native`), over the same readings in the same batches,
//! interleaved in one process. Beside them, in the same runs: a plugin that
//! does nothing on each contract (faulty-v02 and faulty-plugin, `fail=none`),
//! the floor of the contract itself; and the frozen 0.1 bundle of
//! glucose-monitor, the same plugin before contract 0.2.

use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use edgewise_host::bundle::{ManifestLimits, TrustStore};
use edgewise_host::load::{self, Operator, Trust};
use edgewise_host::model::Reading as HostReading;
use edgewise_host::runtime::{CompiledPlugin, Limits, PluginClock, PluginInstance, Runtime, RuntimeOptions};
use edgewise_sdk::{Plugin, Reading};

use crate::native::{Native, NativeGlucose};
use crate::stats::median;
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target, number};

/// Batch sizes of `on-readings` calls.
pub const BATCHES: [usize; 3] = [1, 16, 256];
/// Interleaved repetitions; the median is reported.
pub const REPETITIONS: usize = 7;
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

/// One wasm side of the runs.
pub struct WasmSide {
    /// Row name, before `, batch N`.
    name: &'static str,
    compiled: CompiledPlugin,
    config: Vec<(String, String)>,
    /// Nanoseconds per reading, per batch size, per run.
    ns: Vec<Vec<f64>>,
    /// Outputs over every run.
    outputs: u64,
}

impl WasmSide {
    /// A side named `name` (its rows', before `, batch N`) running `compiled`
    /// with `config`.
    pub fn new(name: &'static str, compiled: CompiledPlugin, config: Vec<(String, String)>) -> WasmSide {
        WasmSide {
            name,
            compiled,
            config,
            ns: vec![Vec::new(); BATCHES.len()],
            outputs: 0,
        }
    }

    /// Outputs over every run so far.
    pub fn outputs(&self) -> u64 {
        self.outputs
    }
}

/// Names of the rows (the "Targets not met" paragraph finds them by these).
pub const WASM_ROW: &str = "glucose-monitor per reading, wasm";
/// The 0.2 contract floor's rows.
pub const FLOOR_V02_ROW: &str = "contract floor 0.2: a plugin that does nothing (faulty-v02), per reading, wasm";
/// The 0.1 contract floor's rows.
pub const FLOOR_V01_ROW: &str = "contract floor 0.1: a plugin that does nothing (faulty-plugin), per reading, wasm";
/// The frozen 0.1 bundle's rows.
pub const FROZEN_ROW: &str = "glucose-monitor 0.1 (the frozen bundle) per reading, wasm";

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let host_readings = &ctx.hall2018.readings;
    let native_readings = sdk_readings(host_readings);
    let runtime = replay_runtime()?;
    let (frozen_bundle, frozen_trust) = ctx.paths.frozen_v01();
    let mut sides = vec![
        WasmSide::new(
            WASM_ROW,
            compile(&runtime, "glucose-monitor", &ctx.paths.glucose_wasm)?,
            glucose_config(),
        ),
        WasmSide::new(
            FLOOR_V02_ROW,
            compile(&runtime, "faulty-v02", &ctx.paths.faulty_v02_wasm())?,
            floor_config(),
        ),
        WasmSide::new(
            FLOOR_V01_ROW,
            compile(&runtime, "faulty-plugin", &ctx.paths.faulty_wasm())?,
            floor_config(),
        ),
        WasmSide::new(
            FROZEN_ROW,
            compile_bundle(&runtime, &frozen_bundle, &frozen_trust)?,
            glucose_config(),
        ),
    ];
    let mut native = |batch, outputs: &mut u64| {
        native_per_reading(
            |clock_ms| NativeGlucose::start(&glucose_config(), clock_ms),
            &native_readings,
            batch,
            outputs,
        )
    };
    let (natives, native_outputs) = interleaved(&runtime, host_readings, &mut native, &mut sides)?;
    let runs = (REPETITIONS * BATCHES.len()) as u64;
    let [glucose, floor_v02, floor_v01, frozen] = &sides[..] else {
        anyhow::bail!("expected four wasm sides");
    };
    if native_outputs != glucose.outputs {
        anyhow::bail!(
            "the native and wasm runs disagree: {native_outputs} outputs natively, {} in wasm",
            glucose.outputs
        );
    }
    if floor_v02.outputs + floor_v01.outputs != 0 {
        anyhow::bail!("a plugin that does nothing emitted outputs");
    }
    let rows = rows(&sides, &natives, |side| {
        if side.name == WASM_ROW {
            (
                "same logic, native (SDK driver, host clock)",
                Target::RatioAtMost(TARGET),
            )
        } else {
            ("glucose-monitor 0.2, native", Target::None)
        }
    })?;
    let ratios = |name: &str| {
        rows.iter()
            .filter(|r| r.name.starts_with(name))
            .zip(BATCHES)
            .filter_map(|(row, batch)| Some(format!("{}x at batch {batch}", number(row.ratio?))))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Ok(Outcome {
        details: vec![
            format!(
                "{} readings of {} per run, {REPETITIONS} interleaved runs per batch size and side; {} outputs per \
                 run natively and in wasm (0.2); the frozen 0.1 bundle {} (it is never ticked here: contract 0.1 \
                 has no wakes, and these runs make no `on-tick` calls, while the SDK ticks a 0.2 plugin at its \
                 wakes inside a batch)",
                host_readings.len(),
                crate::setup::HALL2018,
                native_outputs / runs,
                frozen.outputs / runs,
            ),
            format!(
                "contract floor, 0 outputs: 0.2 (faulty-v02, `fail=none`) {}; 0.1 (faulty-plugin, `fail=none`) {} \
                 of native glucose-monitor; the target allows wasm {:.0}% over native, so a floor of {} or more \
                 leaves glucose-monitor's own wasm code no room",
                ratios(FLOOR_V02_ROW),
                ratios(FLOOR_V01_ROW),
                (TARGET - 1.0) * 100.0,
                number(TARGET - 1.0),
            ),
        ],
        rows,
    })
}

/// The native side of a comparison: nanoseconds per reading of one fresh
/// run in batches of the given size, adding its outputs to the count given.
pub type NativeRun<'a> = dyn FnMut(usize, &mut u64) -> anyhow::Result<f64> + 'a;

/// Run `native` and every wasm side of `sides` over `readings`,
/// [`REPETITIONS`] times per batch size of [`BATCHES`], interleaved and
/// rotating which side goes first (so none always runs on a warmer cache).
/// The wasm sides keep their samples and outputs; the native side's median
/// nanoseconds per batch size and its outputs over every run are returned.
pub fn interleaved(
    runtime: &Runtime,
    readings: &[HostReading],
    native: &mut NativeRun<'_>,
    sides: &mut [WasmSide],
) -> anyhow::Result<(Vec<f64>, u64)> {
    let mut native_ns: Vec<Vec<f64>> = vec![Vec::new(); BATCHES.len()];
    let mut native_outputs = 0;
    let side_count = sides.len() + 1;
    for repetition in 0..REPETITIONS {
        for (i, &batch) in BATCHES.iter().enumerate() {
            for turn in 0..side_count {
                match (repetition + turn) % side_count {
                    0 => native_ns[i].push(native(batch, &mut native_outputs)?),
                    k => {
                        let side = &mut sides[k - 1];
                        let ns = wasm_per_reading(
                            runtime,
                            &side.compiled,
                            &side.config,
                            readings,
                            batch,
                            &mut side.outputs,
                        )?;
                        side.ns[i].push(ns);
                    }
                }
            }
        }
    }
    let natives = native_ns
        .iter()
        .map(|ns| median(ns).context("no native sample"))
        .collect::<anyhow::Result<Vec<f64>>>()?;
    Ok((natives, native_outputs))
}

/// One row per wasm side and batch size: its median against the native
/// median of the same batch size, with the baseline's name and the target
/// `baseline` gives for the side.
pub fn rows(
    sides: &[WasmSide],
    natives: &[f64],
    baseline: impl Fn(&WasmSide) -> (&'static str, Target),
) -> anyhow::Result<Vec<Row>> {
    let mut rows = Vec::new();
    for side in sides {
        let (name, target) = baseline(side);
        for (i, batch) in BATCHES.iter().enumerate() {
            let figure = median(&side.ns[i]).context("no wasm sample")?;
            rows.push(Row::measured(
                format!("{}, batch {batch}", side.name),
                name,
                natives.get(i).copied(),
                figure,
                "ns/reading",
                target,
            ));
        }
    }
    Ok(rows)
}

/// The runtime of `edgewise replay`: deterministic WASI (fixed random
/// numbers); each instance gets a virtual clock ([`instance`]).
pub fn replay_runtime() -> anyhow::Result<Runtime> {
    Runtime::new(RuntimeOptions {
        deterministic: true,
        ..RuntimeOptions::default()
    })
    .context("cannot create the wasm runtime")
}

/// An initialised instance on a virtual clock standing at `clock_ms`, as
/// `edgewise replay` makes it (instantiation and `init` are not timed by
/// the callers).
pub fn instance(
    runtime: &Runtime,
    compiled: &CompiledPlugin,
    config: &[(String, String)],
    clock_ms: i64,
) -> anyhow::Result<PluginInstance> {
    let clock = PluginClock::virtual_at(clock_ms);
    let mut instance =
        PluginInstance::with_clock(runtime, compiled, in_process_limits(), clock).context("cannot instantiate")?;
    let name = instance.name().to_owned();
    instance
        .init(config)
        .with_context(|| format!("{name} refused its configuration"))?;
    Ok(instance)
}

/// Verify the signed bundle at `path` against the trust store `trust` and
/// compile it, as `edgewise run` and `edgewise replay --trust` load it.
pub fn compile_bundle(runtime: &Runtime, path: &Path, trust: &Path) -> anyhow::Result<CompiledPlugin> {
    let store = TrustStore::load(trust).with_context(|| format!("cannot load the trust store {}", trust.display()))?;
    let config = Default::default();
    let operator = Operator {
        device: "bench",
        config: &config,
        limits: &ManifestLimits::default(),
        base: in_process_limits(),
        ceilings: None,
    };
    let trust = Trust::Verified {
        store: &store,
        rollback: None,
    };
    let loaded = load::load(path, &trust, &operator).with_context(|| format!("cannot load {}", path.display()))?;
    let (compiled, _) = loaded
        .compile(runtime, None)
        .with_context(|| format!("cannot compile {}", path.display()))?;
    Ok(compiled)
}

/// Compile the component at `path` as `name`.
pub fn compile(runtime: &Runtime, name: &str, path: &Path) -> anyhow::Result<CompiledPlugin> {
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

/// Nanoseconds per reading natively (a fresh plugin from `start`, given the
/// clock, not timed), outputs taken after each call.
pub fn native_per_reading<P: Plugin>(
    start: impl FnOnce(i64) -> anyhow::Result<Native<P>>,
    readings: &[Reading<'_>],
    batch: usize,
    outputs: &mut u64,
) -> anyhow::Result<f64> {
    let clock_ms = readings.first().map_or(0, |r| r.timestamp_ms);
    let mut plugin = start(clock_ms)?;
    let started = Instant::now();
    for chunk in readings.chunks(batch) {
        plugin.on_readings(chunk)?;
    }
    let took = started.elapsed();
    *outputs += plugin.outputs();
    Ok(took.as_nanos() as f64 / readings.len().max(1) as f64)
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
    let clock_ms = readings.first().map_or(0, |r| r.timestamp_ms);
    let mut instance = instance(runtime, compiled, config, clock_ms)?;
    let started = Instant::now();
    for chunk in readings.chunks(batch) {
        instance
            .on_readings(chunk)
            .with_context(|| format!("{} failed in wasm", instance.name()))?;
        let taken = instance.take_outputs();
        *outputs += taken.len() as u64;
        std::hint::black_box(taken);
    }
    Ok(started.elapsed().as_nanos() as f64 / readings.len().max(1) as f64)
}
