//! The bare NATS echo hop: a process of its own (this program with `echo`)
//! that republishes every sensor message on `echo.<subject>`, the baseline
//! of `edgewise run`'s reading-to-alert hop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use edgewise_procs::ChildGuard;
use futures::StreamExt;

/// The line the echo process prints once it is subscribed.
const READY: &str = "echo ready";

/// `edgewise-bench echo --url URL`: echo until killed.
pub fn serve(url: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let client = async_nats::connect(url)
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        let mut readings = client.subscribe("sensors.>").await.context("cannot subscribe")?;
        client.flush().await.context("cannot flush")?;
        println!("{READY}");
        while let Some(message) = readings.next().await {
            client
                .publish(format!("echo.{}", message.subject), message.payload)
                .await
                .context("cannot publish the echo")?;
        }
        Ok(())
    })
}

/// A running echo process, killed when dropped.
pub struct Echo {
    _process: ChildGuard,
}

impl Echo {
    /// Start `bench echo --url URL` and wait until it is subscribed.
    pub async fn start(bench: &Path, url: &str) -> anyhow::Result<Echo> {
        let mut child = Command::new(bench)
            .args(["echo", "--url", url])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot run {} echo", bench.display()))?;
        let stdout = child.stdout.take().context("the echo's stdout is not piped")?;
        let process = ChildGuard::new("the echo process", child);
        let ready = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        });
        let line = tokio::time::timeout(Duration::from_secs(20), ready)
            .await
            .map_err(|_| anyhow!("the echo process was not ready within 20 s"))?
            .map_err(|e| anyhow!("the echo reader failed: {e}"))?
            .context("cannot read the echo's output")?;
        if line.trim() != READY {
            bail!("the echo process said {line:?} instead of {READY:?}");
        }
        Ok(Echo { _process: process })
    }
}
