//! A private `nats-server` on `127.0.0.1`, on a port the kernel chose.
//!
//! Each [`NatsServer`] runs its own process with `-p -1`, so any number can
//! run at once (tests in parallel, the demo's local bus and cloud). The port
//! is read from the server's log on stderr, which a thread keeps draining so
//! the pipe never fills; so are the ports of the optional HTTP monitor and
//! leafnode listener, all three reused by [`NatsServer::start_again`]. What
//! the command line cannot say (a JetStream domain, a server name, leafnode
//! remotes) goes into a configuration file written before each start. Dropping the value kills the process (and removes a
//! temporary JetStream store). The calls block until the server is ready or
//! gone: a few milliseconds, which async callers can afford.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ChildStderr, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tempfile::TempDir;

use crate::child::ChildGuard;

/// How long a server may take to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`NatsServer::start_again`] keeps trying to bind the old port.
const REBIND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a server that closed its stderr may take to exit.
const EXIT_TIMEOUT: Duration = Duration::from_secs(2);
/// The log line that gives the client port.
const LISTENING: &str = "Listening for client connections on ";
/// The log line that gives the HTTP monitor's port.
const MONITOR: &str = "Starting http monitor on ";
/// The log line that gives the leafnode listener's port.
const LEAFNODES: &str = "Listening for leafnode connections on ";
/// The log line after which the server (and JetStream) accepts work.
const READY: &str = "Server is ready";

/// Where a server keeps its JetStream store.
#[derive(Debug)]
enum Store {
    /// No JetStream.
    Off,
    /// A temporary directory, removed when the server is dropped.
    Temporary(TempDir),
    /// A directory of the caller's, left in place.
    Dir(PathBuf),
}

impl Store {
    fn path(&self) -> Option<&Path> {
        match self {
            Store::Off => None,
            Store::Temporary(dir) => Some(dir.path()),
            Store::Dir(dir) => Some(dir),
        }
    }
}

/// How to start a [`NatsServer`]: `NatsServer::options(binary)`, then
/// [`start`](NatsOptions::start).
#[derive(Debug)]
pub struct NatsOptions {
    binary: PathBuf,
    name: String,
    store: Store,
    args: Vec<String>,
    /// Configuration text, written to a file given with `-c`.
    config: String,
    /// Whether the HTTP monitor (`/leafz`, `/varz`...) is on.
    monitor: bool,
    /// Whether a leafnode listener is on.
    leafnodes: bool,
}

impl NatsOptions {
    /// A name for messages and the log thread (`edge`, `cloud`); default `nats`.
    pub fn name(mut self, name: &str) -> NatsOptions {
        self.name = name.to_owned();
        self
    }

    /// JetStream on, in a temporary directory that outlives
    /// [`stop`](NatsServer::stop) and goes away with the server.
    pub fn jetstream(mut self) -> anyhow::Result<NatsOptions> {
        let dir = tempfile::Builder::new()
            .prefix("nats-js-")
            .tempdir()
            .context("cannot create a JetStream store directory")?;
        self.store = Store::Temporary(dir);
        Ok(self)
    }

    /// JetStream on, in `dir` (kept after the server is gone).
    pub fn jetstream_in(mut self, dir: &Path) -> NatsOptions {
        self.store = Store::Dir(dir.to_owned());
        self
    }

    /// Extra command-line arguments, e.g. `["--user", "u", "--pass", "p"]`.
    pub fn args(mut self, args: &[&str]) -> NatsOptions {
        self.args.extend(args.iter().map(|a| (*a).to_owned()));
        self
    }

    /// Lines of nats-server configuration (its own syntax, e.g.
    /// `jetstream { domain: cloud }` or `leafnodes { remotes: [...] }`),
    /// added to what the other options say. The command line's `-a`, `-p`,
    /// `-m`, `-js` and `-sd` take precedence over the file.
    pub fn config(mut self, text: &str) -> NatsOptions {
        self.config.push_str(text);
        self.config.push('\n');
        self
    }

    /// The HTTP monitor on (`/leafz`, `/varz`, ...), on a port of its own
    /// ([`NatsServer::monitor_port`]).
    pub fn monitor(mut self) -> NatsOptions {
        self.monitor = true;
        self
    }

    /// A leafnode listener on `127.0.0.1`, on a port of its own
    /// ([`NatsServer::leaf_port`]), for leaf nodes to dial.
    pub fn leafnode_listener(mut self) -> NatsOptions {
        self.leafnodes = true;
        self
    }

    /// Start the server and wait until it is ready.
    pub fn start(self) -> anyhow::Result<NatsServer> {
        let config_dir = if self.config.is_empty() && !self.leafnodes {
            None
        } else {
            Some(
                tempfile::Builder::new()
                    .prefix("nats-conf-")
                    .tempdir()
                    .context("cannot create a directory for the nats-server configuration")?,
            )
        };
        let mut server = NatsServer {
            options: self,
            config_dir,
            ports: Ports::default(),
            process: None,
            drain: None,
            log: Arc::default(),
        };
        server.spawn(None)?;
        Ok(server)
    }
}

/// The ports a server listens on; 0 for a listener that is off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Ports {
    client: u16,
    monitor: u16,
    leafnodes: u16,
}

/// A running `nats-server`, killed (and its temporary store removed) on drop.
#[derive(Debug)]
pub struct NatsServer {
    options: NatsOptions,
    /// Where the configuration file is written, when there is one.
    config_dir: Option<TempDir>,
    /// Known once the first start is ready; kept across restarts.
    ports: Ports,
    /// The running process; `None` between [`stop`](Self::stop) and
    /// [`start_again`](Self::start_again).
    process: Option<ChildGuard>,
    /// The thread draining the process's stderr into `log`.
    drain: Option<JoinHandle<()>>,
    /// Everything the server logged, across restarts.
    log: Arc<Mutex<String>>,
}

impl NatsServer {
    /// How to start a server of `binary` (see [`crate::nats_binary`]).
    pub fn options(binary: &Path) -> NatsOptions {
        NatsOptions {
            binary: binary.to_owned(),
            name: "nats".to_owned(),
            store: Store::Off,
            args: Vec::new(),
            config: String::new(),
            monitor: false,
            leafnodes: false,
        }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.ports.client)
    }

    /// The client port (the same across [`stop`](Self::stop) and
    /// [`start_again`](Self::start_again)).
    pub fn port(&self) -> u16 {
        self.ports.client
    }

    /// The HTTP monitor's port, if [`NatsOptions::monitor`] turned it on
    /// (the same across restarts).
    pub fn monitor_port(&self) -> Option<u16> {
        self.options.monitor.then_some(self.ports.monitor)
    }

    /// The leafnode listener's port, if [`NatsOptions::leafnode_listener`]
    /// turned it on (the same across restarts).
    pub fn leaf_port(&self) -> Option<u16> {
        self.options.leafnodes.then_some(self.ports.leafnodes)
    }

    /// The name given at start (`cloud`, `edge-01`).
    pub fn name(&self) -> &str {
        &self.options.name
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ChildGuard::pid)
    }

    /// The JetStream store directory, if JetStream is on.
    pub fn store_dir(&self) -> Option<&Path> {
        self.options.store.path()
    }

    /// Whether the process is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.process.is_some()
    }

    /// Everything the server has logged so far (all runs, in order).
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Stop the server as an operator would: SIGTERM, which makes it flush
    /// JetStream and close its connections; killed if it has not exited
    /// within 10 s. The JetStream store stays for
    /// [`start_again`](Self::start_again). Nothing to do if stopped.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut process) = self.process.take() else {
            return Ok(());
        };
        if process.terminate().is_ok() && process.wait_timeout(STOP_TIMEOUT)?.is_none() {
            eprintln!(
                "the {} nats-server ignored SIGTERM for {STOP_TIMEOUT:?}; killing it",
                self.options.name
            );
        }
        process.kill();
        self.join_drain();
        Ok(())
    }

    /// Kill the server with SIGKILL (a crash or a power cut). The JetStream
    /// store stays, but what the server had not written out may be lost.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
        self.join_drain();
    }

    /// Start the stopped server again on its port and with its JetStream
    /// store, so that clients reconnect to the URL they have. Another
    /// process may have taken the port meanwhile (the kernel hands free ports
    /// to other `-p -1` servers and outgoing connections): retry for up to 10 s.
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        if self.process.is_some() {
            bail!("the {} nats-server is still running", self.options.name);
        }
        self.append_log("--- start_again ---\n");
        let deadline = Instant::now() + REBIND_TIMEOUT;
        loop {
            match self.spawn(Some(self.ports)) {
                Ok(()) => return Ok(()),
                Err(error) if Instant::now() < deadline => {
                    let last = format!("{error:#}");
                    let last = last.lines().last().unwrap_or_default();
                    eprintln!(
                        "the {} nats-server did not start again on its ports {:?}, retrying: {last}",
                        self.options.name, self.ports
                    );
                    // The port is another process's until it lets go: nothing to wait on but time.
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(error) => {
                    return Err(error.context(format!(
                        "the {} nats-server did not start again on its ports {:?} within {REBIND_TIMEOUT:?}",
                        self.options.name, self.ports
                    )));
                }
            }
        }
    }

    /// Spawn the server on `ports` (or free ones) and wait until it is
    /// ready. On any error the process is gone when this returns.
    fn spawn(&mut self, ports: Option<Ports>) -> anyhow::Result<()> {
        let options = &self.options;
        let port_arg =
            |port: fn(&Ports) -> u16| ports.as_ref().map_or_else(|| "-1".to_owned(), |p| port(p).to_string());
        let mut command = Command::new(&options.binary);
        command.args(["-a", "127.0.0.1", "-p", &port_arg(|p| p.client)]);
        if options.monitor {
            command.args(["-m", &port_arg(|p| p.monitor)]);
        }
        if let Some(store) = options.store.path() {
            command.arg("-js").arg("-sd").arg(store);
        }
        if let Some(dir) = &self.config_dir {
            let mut config = options.config.clone();
            if options.leafnodes {
                // Not on the command line: nats-server has no flag for it.
                // `no_advertise`: a leaf node dials the URL it was given only,
                // not this port learnt from the server's INFO (which would
                // bypass a relay standing for its network).
                config.push_str(&format!(
                    "leafnodes {{ host: 127.0.0.1, port: {}, no_advertise: true }}\n",
                    port_arg(|p| p.leafnodes)
                ));
            }
            let file = dir.path().join("nats-server.conf");
            std::fs::write(&file, config).with_context(|| format!("cannot write {}", file.display()))?;
            command.arg("-c").arg(file);
        }
        let child = command
            .args(&options.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot run {}", options.binary.display()))?;
        let mut process = ChildGuard::new(format!("the {} nats-server", options.name), child);
        let stderr = process.take_stderr().context("nats-server's stderr is not piped")?;
        // This attempt's part of the log, for error messages.
        let log_start = self.log.lock().unwrap_or_else(PoisonError::into_inner).len();
        let (lines_tx, lines) = mpsc::channel();
        let log = Arc::clone(&self.log);
        let drain = std::thread::Builder::new()
            .name(format!("{}-nats-log", options.name))
            .spawn(move || drain_lines(stderr, &log, &lines_tx))
            .context("cannot start a thread")?;
        self.process = Some(process);
        self.drain = Some(drain);

        let result = self.wait_ready(&lines, ports);
        drop(lines);
        if let Err(error) = result {
            if let Some(mut process) = self.process.take() {
                process.kill();
            }
            self.join_drain();
            return Err(error.context(format!(
                "the {} nats-server did not start; its log:\n{}",
                self.options.name,
                self.log_since(log_start)
            )));
        }
        Ok(())
    }

    /// Read log lines until "Server is ready"; note the ports.
    fn wait_ready(&mut self, lines: &mpsc::Receiver<String>, wanted: Option<Ports>) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut listening = Ports::default();
        loop {
            let line = match lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => line,
                Err(RecvTimeoutError::Disconnected) => {
                    // stderr closed: the server exited.
                    let status = match self.process.as_mut() {
                        Some(process) => process.wait_timeout(EXIT_TIMEOUT)?,
                        None => None,
                    };
                    bail!(
                        "it exited ({})",
                        status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string())
                    );
                }
                Err(RecvTimeoutError::Timeout) => bail!("it was not ready within {START_TIMEOUT:?}"),
            };
            for (marker, port) in [
                (LISTENING, &mut listening.client),
                (MONITOR, &mut listening.monitor),
                (LEAFNODES, &mut listening.leafnodes),
            ] {
                if let Some((_, addr)) = line.split_once(marker) {
                    *port = addr
                        .trim()
                        .rsplit_once(':')
                        .and_then(|(_, p)| p.parse::<u16>().ok())
                        .ok_or_else(|| anyhow!("no port in the line {line:?}"))?;
                }
            }
            if line.contains(READY) {
                break;
            }
        }
        for (marker, on, port) in [
            (LISTENING, true, listening.client),
            (MONITOR, self.options.monitor, listening.monitor),
            (LEAFNODES, self.options.leafnodes, listening.leafnodes),
        ] {
            if on && port == 0 {
                bail!("it is ready but logged no {marker:?} line");
            }
        }
        if let Some(wanted) = wanted
            && listening != wanted
        {
            bail!("it listens on ports {listening:?}, not {wanted:?}");
        }
        self.ports = listening;
        Ok(())
    }

    fn join_drain(&mut self) {
        if let Some(drain) = self.drain.take() {
            // The thread ends at end of file, once the process is gone.
            let _ = drain.join();
        }
    }

    /// The log from byte `start` on.
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
        self.kill();
        // A temporary store (a TempDir) is removed after this, once the process is gone.
    }
}

/// Read `stderr` line by line into `log` until end of file, forwarding each
/// line to `lines` while someone listens.
fn drain_lines(stderr: ChildStderr, log: &Mutex<String>, lines: &mpsc::Sender<String>) {
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
