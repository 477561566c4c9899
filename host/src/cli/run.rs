//! `edgewise run`: the live pipeline of a device, until SIGINT or SIGTERM.

use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::Args;

use edgewise_host::files::{self, Access, Existing};
use edgewise_host::run::{self, config::RunConfig};

use super::Failure;

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The device configuration (see `edgewise.example.toml`).
    #[arg(long, value_name = "edgewise.toml")]
    config: PathBuf,
    /// At exit, write the host's final status (the counts of the last log
    /// line, as `edgewise status --json` shows them) to this file as JSON.
    #[arg(long, value_name = "FILE")]
    summary_json: Option<PathBuf>,
}

/// Exit code when a second SIGINT/SIGTERM cuts the shutdown short.
const EXIT_SECOND_SIGNAL: i32 = 1;

pub fn run(args: RunArgs) -> Result<(), Failure> {
    let config = RunConfig::load(&args.config).map_err(Failure::usage)?;
    // Found now, not after a run of days, at the exit that writes it.
    if let Some(path) = &args.summary_json {
        let folder = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if !folder.is_dir() {
            return Err(Failure::usage(anyhow!(
                "--summary-json {}: the folder {} does not exist",
                path.display(),
                folder.display()
            )));
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("edgewise-io")
        .build()
        .map_err(|e| Failure::runtime(anyhow!("cannot start the async runtime: {e}")))?;
    // Listening from the very start: a signal during start-up stops the host
    // once it has started, a second one at once.
    let first_signal = {
        let _context = runtime.enter();
        listen_for_signals().map_err(|e| Failure::runtime(anyhow!("cannot listen for SIGINT/SIGTERM: {e}")))?
    };
    let outcome = runtime.block_on(run::run(config, async move {
        let _ = first_signal.await;
    }));
    // Whatever is still running (a stuck task) must not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    let status = outcome.map_err(|error| match error {
        // The operator's file to fix, like a bad configuration.
        run::RunError::Rollback(_) => Failure::usage(error),
        other => Failure::runtime(other),
    })?;
    let readings: u64 = status.plugins.iter().map(|p| p.readings_in).sum();
    let alerts: u64 = status.plugins.iter().map(|p| p.alerts_out).sum();
    let summaries: u64 = status.plugins.iter().map(|p| p.summaries_out).sum();
    let dropped: u64 = status.plugins.iter().map(|p| p.readings_dropped).sum();
    // After the log's last lines, and never waiting for a stderr that takes nothing.
    edgewise_host::log_output::write_line(&format!(
        "edgewise stopped after {:.1} s: {} messages ({} dead-lettered), {readings} readings ({dropped} dropped), {alerts} alerts, {summaries} summaries; outbox holds {} alerts and {} summaries for upstream",
        status.uptime_s,
        status.ingest.messages,
        status.ingest.deadlettered,
        status.outbox.alerts,
        status.outbox.summaries
    ));
    if let Some(path) = &args.summary_json {
        write_summary(path, &status).map_err(Failure::runtime)?;
    }
    Ok(())
}

/// Write `status` as JSON to `path` atomically and durably, so a reader
/// never sees half a summary; readable by its owner only, as the data
/// directory's files are (a plugin's `last_error` may quote a reading).
fn write_summary(path: &Path, status: &run::Status) -> anyhow::Result<()> {
    let json = serde_json::to_vec_pretty(status).context("cannot encode the final status")?;
    files::write_atomic(path, &json, Access::Private, Existing::Replace)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Completes on the first SIGINT or SIGTERM; a second one exits the process
/// at once (exit 1), without waiting for the shutdown's budgets. Call within
/// the runtime.
fn listen_for_signals() -> std::io::Result<tokio::sync::oneshot::Receiver<()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let (first, first_signal) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        let _ = first.send(());
        tokio::select! {
            _ = terminate.recv() => {}
            _ = interrupt.recv() => {}
        }
        tracing::error!("A second signal: exiting at once; what the plugins had not written to the outbox is lost");
        edgewise_host::log_output::finish();
        std::process::exit(EXIT_SECOND_SIGNAL);
    });
    Ok(first_signal)
}
