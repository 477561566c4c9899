//! `edgewise dashboard`: the fleet's web dashboard, on the cloud side.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::anyhow;
use clap::Args;
use tokio::sync::{broadcast, watch};

use edgewise_host::dashboard::{Credential, DashboardConfig, DashboardError, DashboardServer, Feed, Fleet};

use super::Failure;
use super::cloud_args::{CloudArgs, block_on};

/// Serve the fleet's web dashboard (until SIGINT or SIGTERM)
///
/// Reads only NATS: the upstream streams (alerts, summaries, telemetry; every
/// stream whose subjects are all `edgewise.<device>.up.…`, found as they
/// appear, or those named with `--stream`) and the deployment reports. Pages:
/// the fleet (`/`), the live alert feed (`/alerts`), one page per sensor.
///
/// The pages show patient data. Without `--credential-file` the dashboard
/// listens on a loopback address only; with it, every request must carry the
/// credential (HTTP Basic: any user name, the credential as password; or
/// `Authorization: Bearer <credential>`). Put a TLS proxy in front of it for
/// anything beyond one machine.
///
/// Prints `dashboard: http://ADDRESS/` once it listens.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct DashboardArgs {
    /// The address to listen on (port 0: any free port).
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A file whose first line (at least 16 bytes) is the secret every
    /// request must carry; required for a non-loopback `--listen`.
    #[arg(long, value_name = "FILE")]
    credential_file: Option<PathBuf>,
    /// An upstream stream to read (repeatable) [default: every upstream stream].
    #[arg(long = "stream", value_name = "NAME")]
    streams: Vec<String>,
    /// A plugin whose summaries are the sensors' glucose (repeatable, the
    /// first listed shown where two sent the same window); other plugins'
    /// summaries are never charted.
    #[arg(long = "glucose-plugin", value_name = "NAME", default_value = "glucose-monitor")]
    glucose_plugins: Vec<String>,
    #[command(flatten)]
    cloud: CloudArgs,
}

pub fn run(args: DashboardArgs) -> Result<(), Failure> {
    let credential = args
        .credential_file
        .as_deref()
        .map(Credential::read)
        .transpose()
        .map_err(|e| Failure::usage(anyhow::Error::new(e)))?;
    let config = DashboardConfig {
        listen: args.listen,
        credential,
        glucose_plugins: args.glucose_plugins,
    };
    block_on(async move {
        let server = DashboardServer::bind(config).await.map_err(|e| match e {
            DashboardError::NeedsCredential(_) => Failure::usage(anyhow::Error::new(e)),
            other => Failure::runtime(anyhow::Error::new(other)),
        })?;
        let addr = server
            .local_addr()
            .map_err(|e| Failure::runtime(anyhow!("cannot read the address listened on: {e}")))?;
        let cloud = args.cloud.connect().await?;
        let fleet = Arc::new(Mutex::new(Fleet::default()));
        let (alerts, _) = broadcast::channel(256);
        let (stop_tx, stop) = watch::channel(false);
        let feed = Feed {
            cloud,
            streams: args.streams,
            fleet: fleet.clone(),
            alerts: alerts.clone(),
        };
        let reading = tokio::spawn(feed.run(stop.clone()));
        let serving = tokio::spawn(server.serve(fleet, alerts, stop));
        println!("dashboard: http://{addr}/");
        wait_for_signal().await?;
        let _ = stop_tx.send(true);
        let served = serving.await;
        reading.abort();
        match served {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(Failure::runtime(anyhow::Error::new(e))),
            Err(e) => Err(Failure::runtime(anyhow!("the dashboard server ended: {e}"))),
        }
    })
}

/// Completes on SIGINT or SIGTERM.
async fn wait_for_signal() -> Result<(), Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = |kind| signal(kind).map_err(|e| Failure::runtime(anyhow!("cannot watch signals: {e}")));
    let (mut terminate, mut interrupt) = (signals(SignalKind::terminate())?, signals(SignalKind::interrupt())?);
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
