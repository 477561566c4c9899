//! Start-up of one plugin, in-process with the host library: verify and
//! compile a signed bundle with no cache (in this process, and in a child
//! process as `edgewise run` compiles), and start a verified plugin from the
//! compiled-component cache.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, anyhow, bail};
use edgewise_host::bundle::{self, TrustStore, VerifiedBundle, VerifyOptions};
use edgewise_host::run::config::{DEFAULT_COMPILE_MEMORY_MB, DEFAULT_COMPILE_TIMEOUT};
use edgewise_host::runtime::{
    CacheOutcome, ChildCompiler, CompiledPlugin, Compiler, Limits, PluginInstance, Runtime, RuntimeOptions,
};
use time::OffsetDateTime;

use super::glucose::glucose_config;
use crate::stats::median;
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target};

/// Uncached starts (each compiles with Cranelift); the median is reported.
const UNCACHED_RUNS: usize = 3;
/// Starts from the cache.
const CACHED_RUNS: usize = 20;
/// DESIGN: a verified, cached plugin starts within 5 ms.
const TARGET_MS: f64 = 5.0;

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let runtime = Runtime::new(RuntimeOptions::default()).context("cannot create the wasm runtime")?;
    let trust = TrustStore::load(&ctx.bundles.trust).context("cannot load the trust store")?;
    let bundle_path = ctx.bundles.glucose.clone();
    let cache_dir = ctx.paths.work.join("startup-cache");
    let config = glucose_config();

    // `edgewise run`'s compiler: its own executable in a child process,
    // with the default bounds.
    let isolated = Runtime::new(RuntimeOptions {
        compiler: Compiler::Child(ChildCompiler {
            program: ctx.paths.edgewise.clone(),
            memory_limit_bytes: DEFAULT_COMPILE_MEMORY_MB as u64 * 1024 * 1024,
            deadline: DEFAULT_COMPILE_TIMEOUT,
        }),
        ..RuntimeOptions::default()
    })
    .context("cannot create the wasm runtime")?;

    let mut verify_compile = Vec::new();
    let mut uncached_start = Vec::new();
    let mut verify_compile_child = Vec::new();
    // Read, verify and compile with `runtime`: when it started, and the plugin.
    let verified_and_compiled = |runtime: &Runtime| -> anyhow::Result<(Instant, CompiledPlugin)> {
        let started = Instant::now();
        let (bytes, verified) = read_and_verify(&bundle_path, &trust)?;
        let code = bytes.get(..verified.code_len).unwrap_or_default();
        let compiled = runtime
            .compile(&verified.manifest.name, code)
            .context("cannot compile glucose-monitor")?;
        Ok((started, compiled))
    };
    for _ in 0..UNCACHED_RUNS {
        let (started, compiled) = verified_and_compiled(&runtime)?;
        verify_compile.push(ms(started));
        start_instance(&runtime, &compiled, &config)?;
        uncached_start.push(ms(started));

        let (started, compiled) = verified_and_compiled(&isolated)?;
        verify_compile_child.push(ms(started));
        start_instance(&isolated, &compiled, &config)?;
    }

    // Fill the cache once, then start from it.
    let (bytes, verified) = read_and_verify(&bundle_path, &trust)?;
    let code = bytes.get(..verified.code_len).unwrap_or_default();
    runtime
        .compile_cached(&verified.manifest.name, code, &cache_dir)
        .context("cannot compile glucose-monitor through the cache")?;
    let mut cached_start = Vec::new();
    for _ in 0..CACHED_RUNS {
        let started = Instant::now();
        let (bytes, verified) = read_and_verify(&bundle_path, &trust)?;
        let code = bytes.get(..verified.code_len).unwrap_or_default();
        let (compiled, outcome) = runtime
            .compile_cached(&verified.manifest.name, code, &cache_dir)
            .context("cannot load glucose-monitor through the cache")?;
        if outcome != CacheOutcome::Hit {
            bail!("the compiled-component cache missed on a second start (see the warnings above)");
        }
        start_instance(&runtime, &compiled, &config)?;
        cached_start.push(ms(started));
    }

    let verify_compile = median(&verify_compile).context("no uncached start")?;
    let verify_compile_child = median(&verify_compile_child).context("no uncached start")?;
    let uncached = median(&uncached_start).context("no uncached start")?;
    let cached = median(&cached_start).context("no cached start")?;
    Ok(Outcome {
        rows: vec![
            Row::measured(
                "start-up, uncached: read + verify + compile the bundle",
                "-",
                None,
                verify_compile,
                "ms",
                Target::None,
            ),
            Row::measured(
                "start-up, uncached, compiled as `edgewise run` does: read + verify + compile the bundle in a child process (`edgewise compile-child`, watched)",
                "the same, compiled in this process",
                Some(verify_compile),
                verify_compile_child,
                "ms",
                Target::None,
            ),
            Row::measured(
                "start a verified plugin from the compiled cache (read + verify + load + instantiate + init)",
                "same, uncached (compile instead of load)",
                Some(uncached),
                cached,
                "ms",
                Target::AtMost(TARGET_MS),
            ),
        ],
        details: vec![format!(
            "bundle {} bytes; medians of {UNCACHED_RUNS} uncached and {CACHED_RUNS} cached starts",
            bytes.len()
        )],
    })
}

fn ms(started: Instant) -> f64 {
    started.elapsed().as_secs_f64() * 1000.0
}

/// Read a bundle and verify it as `edgewise run` does (without the
/// anti-rollback record, which is one lookup in memory).
fn read_and_verify(path: &Path, trust: &TrustStore) -> anyhow::Result<(Vec<u8>, VerifiedBundle)> {
    let bytes = bundle::read_bundle_file(path, bundle::DEFAULT_MAX_BUNDLE_BYTES)
        .map_err(|e| anyhow!("cannot read {}: {e}", path.display()))?;
    let options = VerifyOptions {
        trust,
        rollback: None,
        now: OffsetDateTime::now_utc(),
        max_bytes: bundle::DEFAULT_MAX_BUNDLE_BYTES,
    };
    let verified = bundle::verify(&bytes, &options).map_err(|e| anyhow!("{}: refused: {e}", path.display()))?;
    Ok((bytes, verified))
}

/// Instantiate and initialise, as `edgewise run` does after compiling.
fn start_instance(runtime: &Runtime, compiled: &CompiledPlugin, config: &[(String, String)]) -> anyhow::Result<()> {
    let mut instance = PluginInstance::new(runtime, compiled, Limits::default()).context("cannot instantiate")?;
    instance
        .init(config)
        .context("glucose-monitor refused its configuration")?;
    Ok(())
}
