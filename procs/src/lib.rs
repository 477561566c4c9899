//! The processes `cargo xtask demo` and the benchmarks (`edgewise-bench`)
//! start: each is held by a [`ChildGuard`], which kills and reaps it when
//! dropped, so no path (error, panic, Ctrl-C) leaves one behind.
//! [`NatsServer`] runs one private `nats-server` on a port of its own.

#![deny(missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// How long a nats-server may take to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`NatsServer::start_again`] keeps trying to bind the old port.
const REBIND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a nats-server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// The log line that gives the client port.
const LISTENING: &str = "Listening for client connections on ";
/// The log line after which the server (and JetStream) accepts work.
const READY: &str = "Server is ready";

/// A child process, killed and reaped when the guard is dropped.
#[derive(Debug)]
pub struct ChildGuard {
    what: String,
    child: Option<Child>,
}

impl ChildGuard {
    /// Guard `child`, described as `what` in messages.
    pub fn new(what: impl Into<String>, child: Child) -> ChildGuard {
        ChildGuard {
            what: what.into(),
            child: Some(child),
        }
    }

    /// The process id, while the process has not been reaped.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Its exit status if it has exited (it is then reaped and the guard
    /// empty); `None` while it runs.
    pub fn try_wait(&mut self) -> anyhow::Result<Option<ExitStatus>> {
        let Some(child) = self.child.as_mut() else {
            bail!("{} was already reaped", self.what);
        };
        let status = child
            .try_wait()
            .with_context(|| format!("cannot check whether {} is running", self.what))?;
        if status.is_some() {
            self.child = None;
        }
        Ok(status)
    }

    /// Wait up to `timeout` for the process to exit, without blocking the
    /// async runtime. `None` if it still runs.
    pub async fn wait_timeout(&mut self, timeout: Duration) -> anyhow::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Send SIGTERM with `kill -TERM PID`.
    pub async fn terminate(&self) -> anyhow::Result<()> {
        let pid = self.pid().with_context(|| format!("{} is not running", self.what))?;
        let mut kill = Command::new("kill");
        kill.args(["-TERM", &pid.to_string()]);
        let status = run_quietly(kill).await.context("cannot run `kill`")?;
        if !status.success() {
            bail!("`kill -TERM {pid}` ({}) failed ({status})", self.what);
        }
        Ok(())
    }

    /// Kill the process (if it still runs) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // `kill` fails only if it has exited already; `wait` reaps it either way.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Its piped stderr, once.
    fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.as_mut().and_then(|c| c.stderr.take())
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Run a short command with no input or output, off the async threads.
pub async fn run_quietly(mut command: Command) -> std::io::Result<ExitStatus> {
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    tokio::task::spawn_blocking(move || command.status())
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)))
}

/// A `nats-server` on `127.0.0.1`, on a port the kernel chose; killed when dropped.
#[derive(Debug)]
pub struct NatsServer {
    /// `edge` or `cloud`, for messages.
    name: &'static str,
    binary: PathBuf,
    /// The JetStream store directory, with JetStream on.
    store: Option<PathBuf>,
    port: u16,
    /// The running process; `None` between [`stop`](Self::stop) and
    /// [`start_again`](Self::start_again).
    process: Option<ChildGuard>,
    /// The thread draining the process's stderr into `log`.
    drain: Option<JoinHandle<()>>,
    /// Everything the server logged, across restarts.
    log: Arc<Mutex<String>>,
}

impl NatsServer {
    /// Start `binary -a 127.0.0.1 -p -1` (with JetStream in `store`, if
    /// given) and wait until it is ready.
    pub async fn start(name: &'static str, binary: &Path, store: Option<PathBuf>) -> anyhow::Result<NatsServer> {
        let mut server = NatsServer {
            name,
            binary: binary.to_owned(),
            store,
            port: 0,
            process: None,
            drain: None,
            log: Arc::default(),
        };
        server.spawn(None).await?;
        Ok(server)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ChildGuard::pid)
    }

    /// Stop the server as an operator would: SIGTERM (through `nats-server
    /// --signal term=PID`), which makes it flush JetStream and close its
    /// connections; killed if it has not exited within 10 s. The JetStream
    /// store stays for [`start_again`](Self::start_again).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut process) = self.process.take() else {
            return Ok(());
        };
        if let Some(pid) = process.pid() {
            let mut signal = Command::new(&self.binary);
            signal.arg("--signal").arg(format!("term={pid}"));
            let signalled = run_quietly(signal).await.is_ok_and(|s| s.success());
            if signalled && process.wait_timeout(STOP_TIMEOUT).await?.is_none() {
                eprintln!(
                    "the {} nats-server (pid {pid}) ignored SIGTERM for {STOP_TIMEOUT:?}; killing it",
                    self.name
                );
            }
        }
        process.kill();
        self.join_drain();
        Ok(())
    }

    /// Start the stopped server again on its port and with its JetStream
    /// store, so that clients reconnect to the URL they have. Another
    /// process may have taken the port meanwhile: retry for up to 10 s.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        if self.process.is_some() {
            bail!("the {} nats-server is still running", self.name);
        }
        self.append_log("--- started again ---\n");
        let deadline = Instant::now() + REBIND_TIMEOUT;
        loop {
            match self.spawn(Some(self.port)).await {
                Ok(()) => return Ok(()),
                Err(error) if Instant::now() < deadline => {
                    let last = format!("{error:#}");
                    let last = last.lines().last().unwrap_or_default();
                    eprintln!(
                        "the {} nats-server did not start again on port {}, retrying: {last}",
                        self.name, self.port
                    );
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(error) => {
                    return Err(error.context(format!(
                        "the {} nats-server did not start again on port {} within {REBIND_TIMEOUT:?}",
                        self.name, self.port
                    )));
                }
            }
        }
    }

    /// Spawn the server on `port` (or a free one) and wait until it is
    /// ready. On any error the process is gone when this returns.
    async fn spawn(&mut self, port: Option<u16>) -> anyhow::Result<()> {
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut command = Command::new(&self.binary);
        command.args(["-a", "127.0.0.1", "-p", &port_arg]);
        if let Some(store) = &self.store {
            command.arg("-js").arg("-sd").arg(store);
        }
        let child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", self.binary.display()))?;
        let mut process = ChildGuard::new(format!("the {} nats-server", self.name), child);
        let stderr = process.take_stderr().context("nats-server's stderr is not piped")?;
        let log_start = self.log.lock().unwrap_or_else(PoisonError::into_inner).len();
        let (lines_tx, mut lines) = mpsc::unbounded_channel();
        let log = self.log.clone();
        let drain = std::thread::Builder::new()
            .name(format!("{}-nats-log", self.name))
            .spawn(move || drain_lines(stderr, &log, &lines_tx))
            .context("cannot start a thread")?;
        self.process = Some(process);
        self.drain = Some(drain);

        let result = self.wait_ready(&mut lines, port).await;
        drop(lines);
        if let Err(error) = result {
            if let Some(mut process) = self.process.take() {
                process.kill();
            }
            self.join_drain();
            return Err(error.context(format!(
                "the {} nats-server did not start; its log:\n{}",
                self.name,
                self.log_since(log_start)
            )));
        }
        Ok(())
    }

    /// Read log lines until "Server is ready"; note the port.
    async fn wait_ready(
        &mut self,
        lines: &mut mpsc::UnboundedReceiver<String>,
        wanted: Option<u16>,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut listening = None;
        loop {
            let line = match tokio::time::timeout_at(deadline, lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => {
                    // stderr closed: the server exited.
                    let status = match self.process.as_mut() {
                        Some(process) => process.wait_timeout(Duration::from_secs(2)).await?,
                        None => None,
                    };
                    bail!(
                        "it exited ({})",
                        status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string())
                    );
                }
                Err(_) => bail!("it was not ready within {START_TIMEOUT:?}"),
            };
            if let Some((_, addr)) = line.split_once(LISTENING) {
                let port = addr
                    .trim()
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse::<u16>().ok())
                    .ok_or_else(|| anyhow!("no port in the line {line:?}"))?;
                listening = Some(port);
            }
            if line.contains(READY) {
                break;
            }
        }
        let listening = listening.ok_or_else(|| anyhow!("it is ready but logged no {LISTENING:?} line"))?;
        if let Some(wanted) = wanted
            && listening != wanted
        {
            bail!("it listens on port {listening}, not {wanted}");
        }
        self.port = listening;
        Ok(())
    }

    fn join_drain(&mut self) {
        if let Some(drain) = self.drain.take() {
            // The thread ends at end of file, once the process is gone.
            let _ = drain.join();
        }
    }

    fn log_since(&self, start: usize) -> String {
        let log = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        log.get(start..).unwrap_or_default().to_owned()
    }

    fn append_log(&self, text: &str) {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).push_str(text);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
        self.join_drain();
    }
}

/// Read `stderr` line by line into `log` until end of file, forwarding each
/// line to `lines` while someone listens.
fn drain_lines(stderr: ChildStderr, log: &Mutex<String>, lines: &mpsc::UnboundedSender<String>) {
    let mut reader = BufReader::new(stderr);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf).into_owned();
        log.lock().unwrap_or_else(PoisonError::into_inner).push_str(&line);
        // Nobody listens once the server is ready: that is fine.
        let _ = lines.send(line);
    }
}
