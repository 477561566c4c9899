//! glucose-forecast per reading: its signed bundle (the model as an asset)
//! in the host runtime vs the same crate linked natively and driven as the
//! host drives the component, over the same readings in the same batches,
//! interleaved in one process: the glucose-monitor measurement's method.

use anyhow::{Context, bail};
use glucose_forecast::{GlucoseForecast, MODEL_ASSET};

use crate::measure::glucose::{
    self, BATCHES, REPETITIONS, WasmSide, compile_bundle, interleaved, native_per_reading, replay_runtime, sdk_readings,
};
use crate::native::Native;
use crate::suite::{Ctx, Outcome};
use crate::table::{Target, number};

/// Name of the rows.
pub const ROW: &str = "glucose-forecast per reading, wasm";

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let host_readings = &ctx.hall2018.readings;
    let native_readings = sdk_readings(host_readings);
    // The native side reads the model this thread provides, as the
    // component reads the bundle's.
    let model_path = ctx.paths.forecast_dir().join("model").join("forecast.json");
    let model = std::fs::read(&model_path).with_context(|| format!("cannot read {}", model_path.display()))?;
    edgewise_sdk::asset::provide(MODEL_ASSET, &model);
    let runtime = replay_runtime()?;
    let bundle = ctx.bundles.forecast(&ctx.paths)?;
    // The default configuration, as a device runs it.
    let config = Vec::new();
    let mut sides = vec![WasmSide::new(
        ROW,
        compile_bundle(&runtime, &bundle, &ctx.bundles.trust)?,
        config.clone(),
    )];
    let mut native = |batch, outputs: &mut u64| {
        native_per_reading(
            |clock_ms| Native::<GlucoseForecast>::new("glucose-forecast", &config, clock_ms),
            &native_readings,
            batch,
            outputs,
        )
    };
    let (natives, native_outputs) = interleaved(&runtime, host_readings, &mut native, &mut sides)?;
    let wasm_outputs = sides.iter().map(WasmSide::outputs).sum::<u64>();
    if native_outputs != wasm_outputs {
        bail!("the native and wasm runs disagree: {native_outputs} outputs natively, {wasm_outputs} in wasm");
    }
    let rows = glucose::rows(&sides, &natives, |_| {
        ("same logic, native (SDK driver, host clock)", Target::None)
    })?;
    let ratios = rows
        .iter()
        .zip(BATCHES)
        .filter_map(|(row, batch)| Some(format!("{}x at batch {batch}", number(row.ratio?))))
        .collect::<Vec<_>>()
        .join(", ");
    let runs = (REPETITIONS * BATCHES.len()) as u64;
    Ok(Outcome {
        details: vec![format!(
            "{} readings of {} per run, {REPETITIONS} interleaved runs per batch size and side; {} outputs per run \
             natively and in wasm (alerts and hourly accuracy summaries: the default configuration, forecasts \
             not emitted); model {} ({} bytes); wasm against native: {ratios}",
            host_readings.len(),
            crate::setup::HALL2018,
            native_outputs / runs,
            model_path
                .strip_prefix(&ctx.paths.root)
                .unwrap_or(&model_path)
                .display(),
            model.len(),
        )],
        rows,
    })
}
