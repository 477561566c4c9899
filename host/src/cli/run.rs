//! `edgewise run`: the live pipeline of a device, until SIGINT or SIGTERM.

use std::path::PathBuf;

use anyhow::anyhow;
use clap::Args;

use edgewise_host::run::{self, config::RunConfig};

use super::Failure;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The device configuration (see `edgewise.example.toml`).
    #[arg(long, value_name = "edgewise.toml")]
    config: PathBuf,
}

pub fn run(args: RunArgs) -> Result<(), Failure> {
    let config = RunConfig::load(&args.config).map_err(Failure::usage)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("edgewise-io")
        .build()
        .map_err(|e| Failure::runtime(anyhow!("cannot start the async runtime: {e}")))?;
    let status = runtime
        .block_on(run::run(config, shutdown_signal()))
        .map_err(|error| match error {
            // The operator's file to fix, like a bad configuration.
            run::RunError::Rollback(_) => Failure::usage(error),
            other => Failure::runtime(other),
        })?;
    let readings: u64 = status.plugins.iter().map(|p| p.readings_in).sum();
    let alerts: u64 = status.plugins.iter().map(|p| p.alerts_out).sum();
    let summaries: u64 = status.plugins.iter().map(|p| p.summaries_out).sum();
    eprintln!(
        "edgewise stopped after {:.1} s: {} messages ({} dead-lettered), {readings} readings, {alerts} alerts, {summaries} summaries; outbox holds {} alerts and {} summaries for upstream",
        status.uptime_s,
        status.ingest.messages,
        status.ingest.deadlettered,
        status.outbox.alerts,
        status.outbox.summaries
    );
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(terminate) => terminate,
        Err(error) => {
            tracing::error!(%error, "Cannot listen for SIGTERM; only SIGINT stops the host");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
}
