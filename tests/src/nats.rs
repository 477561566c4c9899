//! A real `nats-server` for tests, on a port of its own.
//!
//! Each [`NatsServer`] runs its own process listening on `127.0.0.1` with
//! `-p -1`, so the kernel picks a free port and any number of tests can run
//! in parallel. The port is read from the server's log on stderr; the log
//! keeps being drained in a background thread so the pipe never fills.
//! Dropping the value kills the process and deletes its JetStream store.
//!
//! The binary is the one named by `NATS_SERVER` (set by `cargo xtask test`,
//! which installs nats-server 2.15.1 if the machine has none), else a
//! `nats-server` on `PATH`, else the copy `cargo xtask test` installed under
//! `target/nats-server/`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// How long a server may take to be ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// How long [`NatsServer::start_again`] keeps trying to bind the old port.
const REBIND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`NatsServer::stop`] waits for a clean shutdown before killing.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// The log line that gives the client port.
const LISTENING: &str = "Listening for client connections on ";

/// The log line after which the server (and JetStream) accepts work.
const READY: &str = "Server is ready";

/// A running `nats-server`, killed and cleaned up on drop.
#[derive(Debug)]
pub struct NatsServer {
    binary: PathBuf,
    /// The running process; `None` between [`stop`](Self::stop) and
    /// [`start_again`](Self::start_again).
    child: Option<Child>,
    /// The thread draining the child's stderr into `log`.
    drain: Option<JoinHandle<()>>,
    /// Everything the server(s) logged, across restarts.
    log: Arc<Mutex<String>>,
    port: u16,
    /// The JetStream store directory (`-sd`), if JetStream is on.
    store: Option<TempDir>,
    /// Extra command-line arguments (e.g. authentication).
    extra_args: Vec<String>,
}

impl NatsServer {
    /// Start a server without JetStream. Blocks until it accepts clients.
    pub fn start() -> NatsServer {
        NatsServer::launch(None)
    }

    /// Start a server with JetStream, storing in a temporary directory that
    /// outlives [`stop`](Self::stop) and goes away on drop. Blocks until the
    /// server is ready.
    pub fn start_with_jetstream() -> NatsServer {
        let store = tempfile::Builder::new()
            .prefix("nats-js-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a JetStream store directory: {e}"));
        NatsServer::launch(Some(store))
    }

    /// Start a server with extra arguments, e.g. `["--user", "u", "--pass", "p"]`,
    /// with JetStream if `jetstream`. Blocks until it is ready.
    pub fn start_with_args(jetstream: bool, args: &[&str]) -> NatsServer {
        let store = jetstream.then(|| {
            tempfile::Builder::new()
                .prefix("nats-js-")
                .tempdir()
                .unwrap_or_else(|e| panic!("cannot create a JetStream store directory: {e}"))
        });
        NatsServer::launch_with(store, args.iter().map(|a| a.to_string()).collect())
    }

    fn launch(store: Option<TempDir>) -> NatsServer {
        NatsServer::launch_with(store, Vec::new())
    }

    fn launch_with(store: Option<TempDir>, extra_args: Vec<String>) -> NatsServer {
        let mut server = NatsServer {
            binary: server_binary(),
            child: None,
            drain: None,
            log: Arc::default(),
            port: 0,
            store,
            extra_args,
        };
        // On panic `server` is dropped, which kills whatever was spawned.
        if let Err(failure) = server.spawn(None) {
            panic!("{failure}");
        }
        server
    }

    /// The client URL, `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port the server listens on (stays the same across
    /// [`stop`](Self::stop) and [`start_again`](Self::start_again)).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store directory, if JetStream is on.
    pub fn store_dir(&self) -> Option<&Path> {
        self.store.as_ref().map(TempDir::path)
    }

    /// Whether the process is running (not stopped).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Everything the server has logged so far (all runs, in order).
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Stop the server cleanly, as an operator would: SIGTERM, which makes
    /// nats-server flush JetStream and close client connections, then wait
    /// for it to exit (SIGKILL if it takes over 10 s). The JetStream store is
    /// kept for [`start_again`](Self::start_again). No-op if stopped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        terminate(&self.binary, &mut child);
        self.join_drain();
    }

    /// Kill the server with SIGKILL (a crash or power cut) and wait for it.
    /// The JetStream store is kept, but what nats-server had not yet written
    /// out may be lost. No-op if stopped.
    pub fn kill(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        kill_and_wait(&mut child);
        self.join_drain();
    }

    /// Start the stopped server again on the same port and with the same
    /// JetStream store, so clients reconnect to the URL they had.
    ///
    /// Another process may take the port while the server is down (the
    /// kernel hands out free ports to other `-p -1` servers and to outgoing
    /// connections from the same range); that is unlikely, and while the
    /// port is busy this keeps retrying for up to 10 s before panicking.
    ///
    /// Panics if the server is running.
    pub fn start_again(&mut self) {
        assert!(
            self.child.is_none(),
            "start_again: nats-server is still running on port {}",
            self.port
        );
        self.append_log("--- start_again ---\n");
        let deadline = Instant::now() + REBIND_TIMEOUT;
        loop {
            match self.spawn(Some(self.port)) {
                Ok(()) => return,
                Err(failure) if Instant::now() < deadline => {
                    let last = failure.lines().last().unwrap_or_default();
                    eprintln!(
                        "nats-server did not start again on port {}, retrying: {last}",
                        self.port
                    );
                    thread::sleep(Duration::from_millis(200));
                }
                Err(failure) => panic!(
                    "nats-server did not start again on port {} within {REBIND_TIMEOUT:?}: {failure}",
                    self.port
                ),
            }
        }
    }

    /// Spawn the server (on `port`, or a free one) and wait until it is
    /// ready. `Err` with the log if the process exits before that; panics on
    /// timeout (the process is then killed by `Drop`).
    fn spawn(&mut self, port: Option<u16>) -> Result<(), String> {
        let port_arg = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let mut command = Command::new(&self.binary);
        command.args(["-a", "127.0.0.1", "-p", &port_arg]);
        if let Some(store) = &self.store {
            command.arg("-js").arg("-sd").arg(store.path());
        }
        if !self.extra_args.is_empty() {
            command.args(&self.extra_args);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.binary.display()));
        let stderr = child
            .stderr
            .take()
            .unwrap_or_else(|| panic!("nats-server stderr is not piped"));
        // This attempt's part of the log, for error messages.
        let log_start = self.log.lock().unwrap_or_else(PoisonError::into_inner).len();
        let (lines_tx, lines) = mpsc::channel();
        self.drain = Some(spawn_drain(stderr, Arc::clone(&self.log), lines_tx));
        self.child = Some(child);

        let started = Instant::now();
        let mut listening = None;
        loop {
            let remaining = START_TIMEOUT.saturating_sub(started.elapsed());
            match lines.recv_timeout(remaining) {
                Ok(line) => {
                    if let Some(addr) = line.split_once(LISTENING).map(|(_, addr)| addr.trim()) {
                        let port = addr
                            .rsplit_once(':')
                            .and_then(|(_, p)| p.parse::<u16>().ok())
                            .unwrap_or_else(|| panic!("cannot read a port in nats-server's line {line:?}"));
                        listening = Some(port);
                    }
                    if line.contains(READY) {
                        break;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!(
                    "nats-server was not ready within {START_TIMEOUT:?}; its log so far:\n{}",
                    self.log_since(log_start)
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    // stderr closed: the server exited.
                    let status = self.child.take().and_then(|mut c| reap(&mut c));
                    self.join_drain();
                    return Err(format!(
                        "nats-server exited before it was ready ({}); its log:\n{}",
                        status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string()),
                        self.log_since(log_start)
                    ));
                }
            }
        }
        let Some(listening) = listening else {
            panic!(
                "nats-server is ready but logged no {LISTENING:?} line; its log:\n{}",
                self.log()
            );
        };
        if let Some(wanted) = port {
            assert_eq!(listening, wanted, "nats-server listens on another port than asked");
        }
        self.port = listening;
        Ok(())
    }

    fn join_drain(&mut self) {
        if let Some(drain) = self.drain.take() {
            // The thread ends at EOF, once the process is gone.
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
        if let Some(mut child) = self.child.take() {
            kill_and_wait(&mut child);
        }
        self.join_drain();
        // `store` (a TempDir) is removed when it drops, after the process is gone.
    }
}

/// Read `stderr` line by line into `log` until EOF, forwarding each line to
/// `lines` as long as someone listens.
fn spawn_drain(stderr: ChildStderr, log: Arc<Mutex<String>>, lines: mpsc::Sender<String>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut lines = Some(lines);
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
            if let Some(tx) = &lines
                && tx.send(line).is_err()
            {
                lines = None;
            }
        }
    })
}

/// SIGTERM through `nats-server --signal term=PID` (no libc needed), then
/// wait; SIGKILL if it does not exit in time.
fn terminate(binary: &Path, child: &mut Child) {
    let signalled = Command::new(binary)
        .arg("--signal")
        .arg(format!("term={}", child.id()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if signalled {
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(_)) => return,
                Ok(None) => thread::sleep(Duration::from_millis(20)),
                Err(_) => break,
            }
        }
        eprintln!(
            "nats-server (pid {}) ignored SIGTERM for {STOP_TIMEOUT:?}; killing it",
            child.id()
        );
    }
    kill_and_wait(child);
}

/// The exit status of a child that closed its stderr: wait up to 2 s for
/// it to exit by itself, then kill it.
fn reap(child: &mut Child) -> Option<ExitStatus> {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    child.wait().ok()
}

fn kill_and_wait(child: &mut Child) {
    // `kill` fails only if the process has already exited; wait reaps it.
    let _ = child.kill();
    let _ = child.wait();
}

/// `NATS_SERVER`, else `nats-server` on `PATH`, else the copy installed by
/// `cargo xtask test`; panics with the fix if there is none.
fn server_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "NATS_SERVER={} does not exist: unset it and run `cargo xtask test`, which installs nats-server",
            path.display()
        );
        return path;
    }
    let name = format!("nats-server{}", std::env::consts::EXE_SUFFIX);
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join(&name))
        .find(|p| p.is_file());
    if let Some(path) = on_path {
        return path;
    }
    let installed = crate::workspace_root().join("target/nats-server/bin").join(&name);
    if installed.is_file() {
        return installed;
    }
    panic!(
        "no nats-server: run `cargo xtask test` (it installs nats-server 2.15.1 and sets NATS_SERVER), \
         or set NATS_SERVER to a nats-server binary"
    );
}
