//! The device the live tests run: a temporary directory with the run's
//! trust store, the signed bundles (signed once per test run, copied in), a
//! configuration, and `edgewise run` on it, through the device harness of
//! `edgewise-procs` (shared with the benchmarks and the demo).

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use edgewise_procs::device::{self, RunConfig, Stopped};
use edgewise_tests::nats::NatsServer;
use edgewise_tests::{Run, edgewise, plugin_wasm, run_key, signed_bundle};

pub(crate) const DEVICE: &str = "dev-1";
/// Time allowed for something to arrive over the bus (generous for a loaded CI machine).
pub(crate) const WAIT: Duration = Duration::from_secs(20);
/// Time allowed for `edgewise run` to exit after SIGTERM (its shutdown is
/// bounded at about 17 s).
const STOP_WAIT: Duration = Duration::from_secs(60);

/// A device: trust store, signed bundles, a config, and the running host.
pub(crate) struct Device {
    /// Dropped after `host` (fields drop in order): the host is gone first.
    host: device::Device,
    dir: tempfile::TempDir,
}

impl Device {
    /// A device with glucose-monitor (then `extra_plugins`, which may add
    /// plugins and tables), ticking every 100 ms.
    pub(crate) fn new(local: &NatsServer, upstream: Option<&NatsServer>, extra_plugins: &str) -> Device {
        Device::with_tick(local, upstream, "100ms", extra_plugins)
    }

    /// As [`Device::new`], with another tick interval.
    pub(crate) fn with_tick(
        local: &NatsServer,
        upstream: Option<&NatsServer>,
        tick: &str,
        extra_plugins: &str,
    ) -> Device {
        let plugins = format!("[[plugins]]\nbundle = \"glucose-monitor.wasm\"\n{extra_plugins}");
        Device::with_plugins(local, upstream, tick, &plugins)
    }

    /// A device running `plugins` only (`[[plugins]]` tables naming any
    /// plugin crate's bundle by file name, e.g. [`glucose_chaos`]), ticking
    /// every `tick`.
    pub(crate) fn with_plugins(local: &NatsServer, upstream: Option<&NatsServer>, tick: &str, plugins: &str) -> Device {
        let upstream = upstream.map(|cloud| (cloud.url(), crate::support::UP.to_owned()));
        Device::at(DEVICE, &local.url(), upstream, tick, plugins)
    }

    /// A device `id` on the local server at `local_url`, its upstream
    /// (URL, stream) if any, ticking every `tick`, `rest` after its `[local]`
    /// table (plugins, `[deploy]`, or an `[upstream]` of its own).
    ///
    /// Telemetry is off unless `rest` has a `[telemetry]` table: the tests
    /// count what plugins emit on the local bus and upstream, and telemetry
    /// (tested in `telemetry.rs`) is not theirs.
    pub(crate) fn at(id: &str, local_url: &str, upstream: Option<(String, String)>, tick: &str, rest: &str) -> Device {
        let rest = if rest.contains("[telemetry]") {
            rest.to_owned()
        } else {
            format!("[telemetry]\ninterval = \"off\"\n\n{rest}")
        };
        let dir = tempfile::tempdir().unwrap();
        run_key().trust(&dir.path().join("trust")).unwrap();
        // The bundles every device has, by file name: each plugin crate
        // signed with its own manifest.
        for plugin in edgewise_procs::workspace::PLUGIN_CRATES {
            std::fs::copy(signed_bundle(plugin), dir.path().join(format!("{plugin}.wasm"))).unwrap();
        }
        let config = RunConfig {
            device: id.to_owned(),
            trust_dir: "trust".to_owned(),
            tick: Some(tick.to_owned()),
            local_url: local_url.to_owned(),
            upstream,
            rest,
        };
        let host = device::Device::new(dir.path(), id);
        host.write_config(&config.to_toml()).unwrap();
        Device { host, dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Change the device's `edgewise.toml` with `edit` (it takes the text and
    /// gives the new one).
    pub(crate) fn edit_config(&self, edit: impl FnOnce(String) -> String) {
        let path = self.host.config_path();
        let config = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, edit(config)).unwrap();
    }

    /// Sign the component of `plugin` (crate name) with `manifest`, by the
    /// run's key, as `out` in the device directory.
    pub(crate) fn sign_bundle(&self, manifest: &Path, plugin: &str, out: &str) {
        run_key()
            .sign(manifest, &plugin_wasm(plugin), &self.path(out))
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Start `edgewise run` and wait until it answers status requests: the
    /// client on `local` that asked.
    pub(crate) async fn start(&mut self, local: &NatsServer) -> async_nats::Client {
        let client = async_nats::connect(local.url()).await.unwrap();
        self.start_with(&client).await;
        client
    }

    /// Start the host with a new client on `local` subscribed to the alerts
    /// of `which` (a plugin, `_host`, or `>` for all) from before the start,
    /// so none raised at start is missed: the client and the subscription.
    pub(crate) async fn start_watching(
        &mut self,
        local: &NatsServer,
        which: &str,
    ) -> (async_nats::Client, async_nats::Subscriber) {
        let client = async_nats::connect(local.url()).await.unwrap();
        let alerts = crate::support::subscribe_alerts(&client, which).await;
        self.start_with(&client).await;
        (client, alerts)
    }

    /// The command that runs `edgewise run` on this device's configuration.
    pub(crate) fn run_command(&self) -> Command {
        self.host.run_command()
    }

    /// As [`Device::start`], asking for the status through `client`.
    pub(crate) async fn start_with(&mut self, client: &async_nats::Client) {
        self.start_command(self.host.run_command(), client).await;
    }

    /// As [`Device::start`], allowing `within` for the host to answer: a
    /// Python plugin's first compile takes seconds of CPU (sdk-python/README.md).
    pub(crate) async fn start_within(&mut self, local: &NatsServer, within: Duration) -> async_nats::Client {
        let client = async_nats::connect(local.url()).await.unwrap();
        self.host.spawn_command(self.host.run_command()).unwrap();
        self.host
            .wait_ready(&client, within)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        client
    }

    /// What the running host has logged so far.
    pub(crate) fn log(&self) -> String {
        self.host.log()
    }

    /// Start the host with `command` (see [`Device::run_command`]) and
    /// return at once.
    pub(crate) fn spawn_command(&mut self, command: Command) {
        self.host.spawn_command(command).unwrap();
    }

    /// Start the host and return at once: it may still be compiling (see
    /// [`Device::wait_ready`]).
    pub(crate) fn spawn(&mut self) {
        self.host.spawn_command(self.host.run_command()).unwrap();
    }

    /// Wait until the host started by [`Device::spawn`] answers status
    /// requests through `client` with every plugin past compiling, at most
    /// `within`.
    pub(crate) async fn wait_ready(&mut self, client: &async_nats::Client, within: Duration) {
        self.host
            .wait_ready(client, within)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Wait until the host started by [`Device::spawn`] answers status
    /// requests through `client` (a plugin may still be compiling), at most
    /// `within`: its status.
    pub(crate) async fn wait_answering(&mut self, client: &async_nats::Client, within: Duration) -> Value {
        self.host
            .wait_answering(client, within)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// As [`Device::start_with`], the host started by `command` (which runs
    /// `edgewise run` on this device's configuration, or `exec`s it).
    pub(crate) async fn start_command(&mut self, command: Command, client: &async_nats::Client) {
        self.host.spawn_command(command).unwrap();
        self.host
            .wait_ready(client, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// SIGTERM the host and wait for it to exit: its exit code and log.
    pub(crate) async fn terminate(&mut self) -> (Option<i32>, String) {
        let stopped = self.stop().await;
        (stopped.code, stopped.log)
    }

    /// SIGTERM the host, check that it exits 0; its log.
    pub(crate) async fn terminate_cleanly(&mut self) -> String {
        let (code, log) = self.terminate().await;
        assert_eq!(code, Some(0), "{log}");
        log
    }

    /// SIGTERM the host and wait for it to exit: how it ended, with its
    /// final status (`--summary-json`) if it exited cleanly.
    pub(crate) async fn stop(&mut self) -> Stopped {
        self.host.stop(STOP_WAIT).await.unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// SIGTERM the host, check that it exits 0; its final status.
    pub(crate) async fn final_status(&mut self) -> Value {
        let stopped = self.stop().await;
        assert_eq!(stopped.code, Some(0), "{}", stopped.log);
        // The owner's only, as the data directory's files: a plugin's
        // `last_error` may quote a reading.
        let mode = std::fs::metadata(self.host.summary_path()).map(|m| {
            use std::os::unix::fs::PermissionsExt;
            m.permissions().mode() & 0o777
        });
        assert_eq!(mode.ok(), Some(0o600), "the final status file's mode");
        stopped
            .summary
            .unwrap_or_else(|| panic!("no final status: {}", stopped.log))
    }

    /// `kill -9` the host (a crash, a power cut for what is not fsynced).
    pub(crate) fn kill(&mut self) {
        self.host.kill();
    }

    /// The running host's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.host.pid().expect("the host is running")
    }

    /// SIGTERM the host and wait for it at most `within`: its exit code and
    /// log, or `None` (the host is then killed) if it did not exit in time.
    pub(crate) async fn terminate_within(&mut self, within: Duration) -> Option<(Option<i32>, String)> {
        let stopped = self.stop_within(within).await?;
        Some((stopped.code, stopped.log))
    }

    /// SIGTERM the host and wait for it at most `within`: how it ended (with
    /// its final status), or `None` (the host is then killed) if it did not
    /// exit in time.
    pub(crate) async fn stop_within(&mut self, within: Duration) -> Option<Stopped> {
        self.host.stop(within).await.ok()
    }

    /// `edgewise replay` of `recording` through the device's signed
    /// glucose-monitor, verified with its trust directory, then `extra`.
    pub(crate) fn replay(&self, recording: &Path, extra: &[&OsStr]) -> Run {
        let (plugin, trust) = (self.path("glucose-monitor.wasm"), self.path("trust"));
        let mut args: Vec<&OsStr> = vec![
            "replay".as_ref(),
            "--plugin".as_ref(),
            plugin.as_os_str(),
            "--trust".as_ref(),
            trust.as_os_str(),
            "--input".as_ref(),
            recording.as_os_str(),
        ];
        args.extend(extra);
        edgewise(args)
    }
}

/// The `[[plugins]]` table of glucose-chaos (glucose-monitor exactly, under
/// its own name) trapping on `trap_percent` percent of its calls (`"0"`:
/// never, `"100"`: always, decimals allowed), for [`Device::with_plugins`]
/// or [`Device::new`]'s extra plugins.
pub(crate) fn glucose_chaos(trap_percent: &str) -> String {
    format!("[[plugins]]\nbundle = \"glucose-chaos.wasm\"\n[plugins.config]\ntrap_percent = \"{trap_percent}\"\n")
}

/// `config` with `credentials` (TOML lines) under the `url` of `server`.
pub(crate) fn with_credentials(config: &str, server: &NatsServer, credentials: &str) -> String {
    let url = format!("url = \"{}\"\n", server.url());
    config.replace(&url, &format!("{url}{credentials}"))
}

/// Send SIGTERM to the process `pid`.
pub(crate) fn sigterm(pid: u32) {
    edgewise_procs::child::sigterm(pid).unwrap();
}

/// Now, in ms since the epoch: readings stamped now raise no signal-loss and
/// close no window during a test that runs on the wall clock.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub(crate) fn reading(ts: i64, value: f64) -> bytes::Bytes {
    format!(r#"{{"ts":{ts},"value":{value},"unit":"mg/dL"}}"#).into()
}
