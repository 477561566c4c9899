//! `edgewise run` as a device runs it: a directory with its configuration
//! (`edgewise.toml`), its log (`edgewise.log`) and, once it has stopped
//! cleanly, its final status (`summary.json`, from `--summary-json`).
//!
//! The host is started, then waited for until it answers status requests on
//! the local bus; it is stopped with SIGTERM (killed if it takes too long) or
//! killed outright. Its final counts come from the JSON it writes at exit,
//! not from its log.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use tokio::time::Instant;

use crate::child::ChildGuard;
use crate::workspace::edgewise_path;

/// How long a single status request may take.
const STATUS_TIMEOUT: Duration = Duration::from_secs(2);
/// How often [`Device::wait_ready`] asks again.
const POLL: Duration = Duration::from_millis(20);
/// Lines of the log shown when the host exits unexpectedly.
const LOG_TAIL: usize = 20;

/// The first lines of an `edgewise run` configuration; whatever follows
/// (plugins, `[ingest]`, `[clock]`, ...) is the caller's `rest`.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// `device`.
    pub device: String,
    /// `trust_dir` (relative to the configuration file, or absolute).
    pub trust_dir: String,
    /// `tick`, when not the host's default.
    pub tick: Option<String>,
    /// `[local] url`.
    pub local_url: String,
    /// `[upstream] url` and `stream` (created by the host), if any.
    pub upstream: Option<(String, String)>,
    /// The rest of the file, after `[local]` and `[upstream]`.
    pub rest: String,
}

impl RunConfig {
    /// The configuration as TOML, with `data_dir = "data"` (beside the file).
    pub fn to_toml(&self) -> String {
        let mut text = format!(
            "device = \"{}\"\ndata_dir = \"data\"\ntrust_dir = \"{}\"\n",
            self.device, self.trust_dir
        );
        if let Some(tick) = &self.tick {
            text.push_str(&format!("tick = \"{tick}\"\n"));
        }
        text.push_str(&format!("\n[local]\nurl = \"{}\"\n", self.local_url));
        if let Some((url, stream)) = &self.upstream {
            text.push_str(&format!(
                "\n[upstream]\nurl = \"{url}\"\nstream = \"{stream}\"\ncreate_stream = true\n"
            ));
        }
        text.push('\n');
        text.push_str(&self.rest);
        text
    }
}

/// How an `edgewise run` ended.
#[derive(Debug)]
pub struct Stopped {
    /// Its exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// What it logged (stdout and stderr) in this run.
    pub log: String,
    /// Its final status (`--summary-json`), written at a clean exit.
    pub summary: Option<Value>,
}

/// A device directory and the `edgewise run` started on it, killed when dropped.
#[derive(Debug)]
pub struct Device {
    dir: PathBuf,
    id: String,
    process: Option<ChildGuard>,
}

impl Device {
    /// The device `id` living in `dir` (which must exist); nothing runs yet.
    pub fn new(dir: &Path, id: &str) -> Device {
        Device {
            dir: dir.to_owned(),
            id: id.to_owned(),
            process: None,
        }
    }

    /// The device directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `edgewise.toml` in the device directory.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("edgewise.toml")
    }

    /// `edgewise.log`: what the current (or last) run logged.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("edgewise.log")
    }

    /// `summary.json`: the final status of the last clean exit.
    pub fn summary_path(&self) -> PathBuf {
        self.dir.join("summary.json")
    }

    /// Write `config` as the device's `edgewise.toml`.
    pub fn write_config(&self, config: &str) -> anyhow::Result<()> {
        let path = self.config_path();
        std::fs::write(&path, config).with_context(|| format!("cannot write {}", path.display()))
    }

    /// `edgewise run --config edgewise.toml --summary-json summary.json`.
    pub fn run_command(&self) -> Command {
        let mut command = Command::new(edgewise_path());
        command
            .arg("run")
            .arg("--config")
            .arg(self.config_path())
            .arg("--summary-json")
            .arg(self.summary_path());
        command
    }

    /// Start the host with [`run_command`](Self::run_command).
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        self.spawn_command(self.run_command())
    }

    /// Start the host with `command` (which runs `edgewise run` on this
    /// device's configuration, or `exec`s it), its output into the log
    /// (emptied first), `RUST_LOG=warn` unless `command` sets it, no colours.
    pub fn spawn_command(&mut self, mut command: Command) -> anyhow::Result<()> {
        if self.process.is_some() {
            bail!("edgewise run is already running for {}", self.id);
        }
        let summary = self.summary_path();
        if summary.exists() {
            std::fs::remove_file(&summary).with_context(|| format!("cannot remove {}", summary.display()))?;
        }
        let log_path = self.log_path();
        let log = File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
        if !command.get_envs().any(|(name, _)| name == "RUST_LOG") {
            command.env("RUST_LOG", "warn");
        }
        let child = command
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cannot share the log file")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot run {command:?}"))?;
        self.process = Some(ChildGuard::new(format!("edgewise run ({})", self.id), child));
        Ok(())
    }

    /// Start the host and wait up to `within` until it answers a status
    /// request through `client`; its first status.
    pub async fn start(&mut self, client: &async_nats::Client, within: Duration) -> anyhow::Result<Value> {
        self.spawn()?;
        self.wait_ready(client, within).await
    }

    /// Wait up to `within` until the started host answers a status request
    /// through `client` with every plugin past compiling (a plugin still
    /// compiling when start-up stopped waiting for it joins later; tests
    /// that publish once the host is ready expect every plugin subscribed)
    /// and past starting (its first `init` ended: it runs, or failed);
    /// fail at once, with its log, if it exits.
    pub async fn wait_ready(&mut self, client: &async_nats::Client, within: Duration) -> anyhow::Result<Value> {
        self.wait_status(client, within, |status| {
            !any_plugin_in(status, "compiling") && !any_plugin_in(status, "starting")
        })
        .await
    }

    /// Wait up to `within` until the started host answers a status request
    /// through `client`, whatever its plugins' states; fail at once, with its
    /// log, if it exits.
    pub async fn wait_answering(&mut self, client: &async_nats::Client, within: Duration) -> anyhow::Result<Value> {
        self.wait_status(client, within, |_| true).await
    }

    /// Wait up to `within` for a status answer that `wanted` accepts.
    async fn wait_status(
        &mut self,
        client: &async_nats::Client,
        within: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            if let Ok(status) = request_status(client, &self.id).await
                && wanted(&status)
            {
                return Ok(status);
            }
            self.check_running()?;
            if Instant::now() >= deadline {
                bail!(
                    "edgewise run ({}) did not answer status requests (with every plugin past compiling and starting, if asked) within {within:?}; the end of its log:\n{}",
                    self.id,
                    self.log_tail()
                );
            }
            // A host not yet subscribed answers "no responders" at once.
            tokio::time::sleep(POLL).await;
        }
    }

    /// Its status, asked through `client`; if it does not answer, say
    /// whether it has exited.
    pub async fn status(&mut self, client: &async_nats::Client) -> anyhow::Result<Value> {
        match request_status(client, &self.id).await {
            Ok(status) => Ok(status),
            Err(error) => {
                self.check_running()?;
                Err(error)
            }
        }
    }

    /// The process id of the host, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.as_ref().and_then(ChildGuard::pid)
    }

    /// Whether a host was started and not yet stopped or reaped.
    pub fn is_started(&self) -> bool {
        self.process.is_some()
    }

    /// Fail with the end of its log if it has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        let process = self
            .process
            .as_mut()
            .ok_or_else(|| anyhow!("edgewise run was not started"))?;
        if let Some(status) = process.try_wait()? {
            self.process = None;
            bail!(
                "edgewise run ({}) exited ({status}); the end of its log:\n{}",
                self.id,
                self.log_tail()
            );
        }
        Ok(())
    }

    /// SIGTERM, then wait up to `within` for it to exit: how it ended. If it
    /// is still running then, it is killed and this fails with its log.
    pub async fn stop(&mut self, within: Duration) -> anyhow::Result<Stopped> {
        let process = self
            .process
            .as_ref()
            .ok_or_else(|| anyhow!("edgewise run was not started"))?;
        process.terminate()?;
        self.wait_exit(within).await
    }

    /// [`stop`](Self::stop), and fail unless it exited 0 (naming its log).
    pub async fn stop_cleanly(&mut self, within: Duration) -> anyhow::Result<Stopped> {
        let stopped = self.stop(within).await?;
        if stopped.code != Some(0) {
            bail!(
                "edgewise run ({}) exited with {:?} after SIGTERM; see {}",
                self.id,
                stopped.code,
                self.log_path().display()
            );
        }
        Ok(stopped)
    }

    /// Wait up to `within` for the host to exit (after a signal sent some
    /// other way); killed, and an error with its log, if it does not.
    pub async fn wait_exit(&mut self, within: Duration) -> anyhow::Result<Stopped> {
        let mut process = self
            .process
            .take()
            .ok_or_else(|| anyhow!("edgewise run was not started"))?;
        let (process, exit) = tokio::task::spawn_blocking(move || {
            let exit = process.wait_timeout(within);
            (process, exit)
        })
        .await
        .context("the wait for edgewise run failed")?;
        let exit: Option<ExitStatus> = exit?;
        // Killed (if still running) and reaped.
        drop(process);
        let Some(exit) = exit else {
            bail!(
                "edgewise run ({}) did not exit within {within:?}; killed. The end of its log:\n{}",
                self.id,
                self.log_tail()
            );
        };
        Ok(Stopped {
            code: exit.code(),
            log: self.log(),
            summary: self.summary()?,
        })
    }

    /// Kill the host with SIGKILL (a crash or a power cut) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// What the current (or last) run logged.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last lines of the log.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n")
    }

    /// The final status the last run wrote at a clean exit, if it did.
    pub fn summary(&self) -> anyhow::Result<Option<Value>> {
        let path = self.summary_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .with_context(|| format!("{} is not JSON", path.display())),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
        }
    }
}

/// The status of device `id`, asked on `edgewise.<id>.status` through
/// `client`; fails if no answer comes within 2 s.
pub async fn request_status(client: &async_nats::Client, id: &str) -> anyhow::Result<Value> {
    let asked = client.request(format!("edgewise.{id}.status"), Default::default());
    let reply = tokio::time::timeout(STATUS_TIMEOUT, asked)
        .await
        .map_err(|_| anyhow!("device {id} did not answer a status request within {STATUS_TIMEOUT:?}"))?
        .with_context(|| format!("the status request to device {id} failed"))?;
    serde_json::from_slice(&reply.payload).context("the host's status is not JSON")
}

/// Whether a plugin of `status` is in `state`.
fn any_plugin_in(status: &Value, state: &str) -> bool {
    status["plugins"]
        .as_array()
        .is_some_and(|plugins| plugins.iter().any(|plugin| plugin["state"] == state))
}
