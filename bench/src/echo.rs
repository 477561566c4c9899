//! The bare NATS echo hop: a process of its own (this program with `echo`)
//! that republishes every sensor message on `echo.<subject>`, the baseline
//! of `edgewise run`'s reading-to-alert hop; and the same hop through a
//! worker thread, as `edgewise run` makes it (the threading's own cost).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use edgewise_procs::ChildGuard;
use futures::StreamExt;

/// The line the echo process prints once it is subscribed.
const READY: &str = "echo ready";

/// How the echo process hands a message from its subscription to its publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// In the subscribing task, on one thread: the bare NATS hop.
    Direct,
    /// The way `edgewise run` does it, without a plugin or an outbox: a
    /// multi-threaded runtime takes messages in chunks and queues them to a
    /// thread of their own, which publishes each through the runtime.
    WorkerThread,
}

/// Messages per chunk and queued chunks, as `edgewise run`'s defaults.
const CHUNK: usize = 256;
const QUEUE: usize = 1024;

/// `edgewise-bench echo --url URL [--via-thread]`: echo until killed.
pub fn serve(url: &str, hop: Hop) -> anyhow::Result<()> {
    match hop {
        Hop::Direct => serve_direct(url),
        Hop::WorkerThread => serve_via_thread(url),
    }
}

fn serve_direct(url: &str) -> anyhow::Result<()> {
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

fn serve_via_thread(url: &str) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let client = runtime.block_on(async {
        async_nats::connect(url)
            .await
            .with_context(|| format!("cannot connect to {url}"))
    })?;
    let (queue, mut chunks) = tokio::sync::mpsc::channel::<Vec<async_nats::Message>>(QUEUE);
    let handle = runtime.handle().clone();
    let publisher = client.clone();
    let worker = std::thread::Builder::new()
        .name("echo-worker".into())
        .spawn(move || -> anyhow::Result<()> {
            while let Some(chunk) = chunks.blocking_recv() {
                for message in chunk {
                    let echo = publisher.publish(format!("echo.{}", message.subject), message.payload);
                    handle.block_on(echo).context("cannot publish the echo")?;
                }
            }
            Ok(())
        })
        .context("cannot start the echo worker thread")?;
    runtime.block_on(async {
        let readings = client.subscribe("sensors.>").await.context("cannot subscribe")?;
        client.flush().await.context("cannot flush")?;
        println!("{READY}");
        let mut readings = readings.ready_chunks(CHUNK);
        while let Some(chunk) = readings.next().await {
            if queue.send(chunk).await.is_err() {
                break; // The worker stopped: its error is below.
            }
        }
        anyhow::Ok(())
    })?;
    drop(queue);
    worker.join().map_err(|_| anyhow!("the echo worker thread panicked"))?
}

/// A running echo process, killed when dropped.
pub struct Echo {
    _process: ChildGuard,
}

impl Echo {
    /// Start `bench echo --url URL` (with `hop`) and wait until it is subscribed.
    pub async fn start(bench: &Path, url: &str, hop: Hop) -> anyhow::Result<Echo> {
        let mut command = Command::new(bench);
        command.args(["echo", "--url", url]);
        if hop == Hop::WorkerThread {
            command.arg("--via-thread");
        }
        let mut child = command
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
