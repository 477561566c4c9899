//! The Python sample (band-py, CPython inside the component) per reading
//! against its Rust twin (band) in wasm, and band natively as the common
//! baseline: the same readings in the same batches, interleaved in one
//! process, the glucose-monitor measurement's method.

use anyhow::bail;
use band::Band;
use edgewise_procs::workspace;

use crate::measure::glucose::{
    self, BATCHES, REPETITIONS, WasmSide, compile, interleaved, native_per_reading, replay_runtime, sdk_readings,
};
use crate::native::Native;
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target, number};

/// Name of the Rust twin's rows (against native).
pub const RUST_ROW: &str = "band (Rust) per reading, wasm";
/// Name of the Python sample's rows (against the Rust twin in wasm).
pub const PYTHON_ROW: &str = "band-py (Python) per reading, wasm";

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let host_readings = &ctx.hall2018.readings;
    let native_readings = sdk_readings(host_readings);
    let runtime = replay_runtime()?;
    let config = Vec::new();
    let mut sides = vec![
        WasmSide::new(
            RUST_ROW,
            compile(&runtime, "band", &workspace::component_path("band"))?,
            config.clone(),
        ),
        WasmSide::new(
            PYTHON_ROW,
            compile(&runtime, "band-py", &workspace::component_path("band-py"))?,
            config.clone(),
        ),
    ];
    let mut native = |batch, outputs: &mut u64| {
        native_per_reading(
            |clock_ms| Native::<Band>::new("band", &config, clock_ms),
            &native_readings,
            batch,
            outputs,
        )
    };
    let (natives, native_outputs) = interleaved(&runtime, host_readings, &mut native, &mut sides)?;
    let [rust_outputs, python_outputs] = [&sides[0], &sides[1]].map(WasmSide::outputs);
    if rust_outputs != native_outputs || python_outputs != native_outputs {
        bail!(
            "the runs disagree: {native_outputs} outputs natively, {rust_outputs} from band in wasm, \
             {python_outputs} from band-py"
        );
    }
    let against_native = glucose::rows(&sides, &natives, |_| ("same logic, native (SDK driver)", Target::None))?;
    let (rust, python) = against_native.split_at(BATCHES.len());
    let mut rows: Vec<Row> = rust.to_vec();
    let mut ratios = Vec::new();
    for ((rust, python), batch) in rust.iter().zip(python).zip(BATCHES) {
        let (Some(rust_ns), Some(python_ns)) = (rust.figure, python.figure) else {
            bail!("no figure at batch {batch}");
        };
        let row = Row::measured(
            format!("{PYTHON_ROW}, batch {batch}"),
            "its Rust twin (band), wasm",
            Some(rust_ns),
            python_ns,
            "ns/reading",
            Target::None,
        );
        ratios.push(format!(
            "{}x the Rust twin ({}x native) at batch {batch}",
            number(row.ratio.unwrap_or(f64::NAN)),
            number(python.ratio.unwrap_or(f64::NAN))
        ));
        rows.push(row);
    }
    let runs = (REPETITIONS * BATCHES.len()) as u64;
    Ok(Outcome {
        details: vec![format!(
            "{} readings of {} per run, {REPETITIONS} interleaved runs per batch size and side; {} outputs per run \
             on every side (band alerts and hourly summaries, the default band 70-180); Python: {}",
            host_readings.len(),
            crate::setup::HALL2018,
            native_outputs / runs,
            ratios.join(", "),
        )],
        rows,
    })
}
