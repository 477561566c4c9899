//! Memory: the resident set of `edgewise run` idle with one plugin, and
//! what each further glucose-monitor instance adds (measured in child
//! processes of this program holding 1, 10 and 100 instances).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use edgewise_host::model::Reading;
use edgewise_host::runtime::{PluginInstance, Runtime, RuntimeOptions};
use edgewise_procs::NatsServer;
use edgewise_procs::workspace::checked_output;

use super::glucose::{glucose_config, in_process_limits};
use crate::device::{Device, PluginEntry, rss_of};
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target};

/// Instance counts measured.
const COUNTS: [u32; 3] = [1, 10, 100];
/// Readings each instance handles before the measurement (so its state exists).
const READINGS_PER_INSTANCE: i64 = 24;
const MIB: f64 = 1024.0 * 1024.0;

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let idle = ctx.rt.block_on(async {
        let server = NatsServer::options(&ctx.paths.nats_server).name("bench").start()?;
        let device = Device::start(
            &ctx.paths.work.join("memory-device"),
            &ctx.bundles.trust,
            &server.url(),
            &[PluginEntry::glucose(&ctx.bundles.glucose)],
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = device.rss_bytes()?;
        device.stop().await?;
        anyhow::Ok(rss)
    })?;
    let rss = child_rss(&ctx.paths.bench, &ctx.paths.glucose_wasm)?;
    let one = rss.first().copied().unwrap_or_default() as f64;
    let mut rows = vec![Row::measured(
        "RSS of `edgewise run`, idle, one plugin (glucose-monitor)",
        "-",
        None,
        idle as f64 / MIB,
        "MiB",
        Target::None,
    )];
    for (count, bytes) in COUNTS.iter().zip(&rss).skip(1) {
        rows.push(Row::measured(
            format!("memory per additional glucose-monitor instance, {count} instances"),
            "-",
            None,
            (*bytes as f64 - one) / f64::from(count - 1) / 1024.0,
            "KiB/instance",
            Target::None,
        ));
    }
    Ok(Outcome {
        rows,
        details: vec![format!(
            "RSS of the child process with 1, 10, 100 instances: {} MiB",
            rss.iter()
                .map(|b| crate::table::number(*b as f64 / MIB))
                .collect::<Vec<_>>()
                .join(", ")
        )],
    })
}

/// Run `bench memory --plugin WASM`: its RSS in bytes with each of [`COUNTS`] instances.
fn child_rss(bench: &Path, wasm: &Path) -> anyhow::Result<Vec<u64>> {
    let mut command = Command::new(bench);
    command.arg("memory").arg("--plugin").arg(wasm);
    let output = checked_output(command)?;
    let rss: Vec<u64> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow!("`bench memory` printed something else than numbers: {e}"))?;
    if rss.len() != COUNTS.len() {
        bail!("`bench memory` printed {} numbers, not {}", rss.len(), COUNTS.len());
    }
    Ok(rss)
}

/// `edgewise-bench memory`: one runtime, the component at `wasm` compiled,
/// then initialised instances added up to each of [`COUNTS`], each fed some
/// readings; print the process's RSS in bytes at each count, one per line.
pub fn hold_instances(wasm: &Path) -> anyhow::Result<()> {
    let runtime = Runtime::new(RuntimeOptions::default()).context("cannot create the wasm runtime")?;
    let bytes = std::fs::read(wasm).with_context(|| format!("cannot read {}", wasm.display()))?;
    let compiled = runtime.compile("glucose-monitor", &bytes).context("cannot compile")?;
    drop(bytes);
    let config = glucose_config();
    let mut instances = Vec::new();
    for count in COUNTS {
        while instances.len() < count as usize {
            let i = instances.len();
            let mut instance =
                PluginInstance::new(&runtime, &compiled, in_process_limits()).context("cannot instantiate")?;
            instance.init(&config).context("init failed")?;
            let readings: Vec<Reading> = (0..READINGS_PER_INSTANCE)
                .map(|k| Reading {
                    sensor: format!("cgm.mem-{i}"),
                    timestamp_ms: 1_700_000_000_000 + k * 300_000,
                    value: 100.0 + (k % 7) as f64 * 10.0,
                    unit: "mg/dL".to_owned(),
                })
                .collect();
            instance.on_readings(&readings).context("on-readings failed")?;
            instance.take_outputs();
            instances.push(instance);
        }
        std::thread::sleep(Duration::from_millis(100));
        println!("{}", rss_of("/proc/self/status")?);
    }
    drop(instances);
    Ok(())
}
