//! `edgewise run` as a device runs it: a configuration with signed bundles,
//! the real binary on a private nats-server, its status and its memory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow};
use edgewise_host::bus::status::PluginStatus;
use edgewise_host::run::Status;
use edgewise_procs::{NatsServer, RunConfig};

/// The device id of every host the harness starts.
pub const DEVICE: &str = "bench";
/// The upstream stream a device with `[upstream]` forwards to.
pub const UPSTREAM_STREAM: &str = "BENCH_UP";
/// How long `edgewise run` may take to answer its first status request.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long it may take to exit after SIGTERM.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// One `[[plugins]]` table.
#[derive(Debug, Clone)]
pub struct PluginEntry {
    /// The signed bundle.
    pub bundle: PathBuf,
    /// `[plugins.limits] outputs_per_second`, when set.
    pub outputs_per_second: Option<u32>,
    /// A hostile plugin: the host is configured never to quarantine it, so
    /// it keeps failing (and burning CPU) for the whole measurement.
    pub hostile: bool,
    /// The body of its `[plugins.config]` table (empty: none).
    pub config: &'static str,
}

impl PluginEntry {
    /// glucose-monitor as the live measurements run it: the benchmark
    /// traffic plays days of readings per second, so its benign outputs come
    /// thousands of times faster than in life; the per-second output limit
    /// (a guard against floods in real time) is raised out of the way.
    pub fn glucose(bundle: &Path) -> PluginEntry {
        PluginEntry {
            bundle: bundle.to_owned(),
            outputs_per_second: Some(GLUCOSE_OUTPUTS_PER_SECOND),
            hostile: false,
            config: "max_ahead = \"87600000h\"\n",
        }
    }

    /// glucose-forecast (its default configuration), its per-second output
    /// limit raised out of the way as glucose-monitor's.
    pub fn forecast(bundle: &Path) -> PluginEntry {
        PluginEntry {
            bundle: bundle.to_owned(),
            outputs_per_second: Some(GLUCOSE_OUTPUTS_PER_SECOND),
            hostile: false,
            config: "",
        }
    }

    /// A hostile plugin that the supervisor restarts (after at most 100 ms)
    /// but never quarantines: the worst case for its neighbours.
    pub fn hostile(bundle: &Path) -> PluginEntry {
        PluginEntry {
            bundle: bundle.to_owned(),
            outputs_per_second: None,
            hostile: true,
            config: "",
        }
    }
}

/// How a device is set up besides its plugins; the default is the bench's
/// configuration: core NATS ingest, the input log on, no upstream.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    /// The URL of a JetStream server to forward the outbox to (the host
    /// creates [`UPSTREAM_STREAM`]); none: outputs stay in the outbox.
    pub upstream: Option<&'a str>,
    /// `[ingest] source = "jetstream"` on this stream (the caller makes it,
    /// e.g. with [`sensor_stream`]) instead of core NATS subscriptions.
    pub jetstream: Option<&'a str>,
    /// `[outbox] input_log` (on by default, as in the host).
    pub input_log: bool,
    /// The body of a `[deploy]` table: the device follows its desired
    /// plugin set in the deployment buckets of its local server.
    pub deploy: Option<&'a str>,
    /// `[metrics] listen`: the metrics endpoint on this address.
    pub metrics: Option<&'a str>,
}

impl Default for Setup<'_> {
    fn default() -> Self {
        Setup {
            upstream: None,
            jetstream: None,
            input_log: true,
            deploy: None,
            metrics: None,
        }
    }
}

/// The stream that holds the sensor readings of a device with the
/// JetStream source.
pub const SENSOR_STREAM: &str = "SENSORS";

/// Make [`SENSOR_STREAM`] on `sensors.>` through `client` (a JetStream
/// server), file storage as on a device, at most `max_messages` kept (the
/// oldest go first).
pub async fn sensor_stream(
    client: &async_nats::Client,
    max_messages: i64,
) -> anyhow::Result<async_nats::jetstream::stream::Stream> {
    async_nats::jetstream::new(client.clone())
        .create_stream(async_nats::jetstream::stream::Config {
            name: SENSOR_STREAM.to_owned(),
            subjects: vec!["sensors.>".to_owned()],
            max_messages,
            ..Default::default()
        })
        .await
        .context("cannot create the sensor stream")
}

/// A private nats-server with JetStream (file storage in a directory of its
/// own), named `name` in its logs, and a client connected to it.
pub async fn jetstream_server(binary: &Path, name: &str) -> anyhow::Result<(NatsServer, async_nats::Client)> {
    let server = NatsServer::options(binary).name(name).jetstream()?.start()?;
    let url = server.url();
    let client = async_nats::connect(url.as_str())
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    Ok((server, client))
}

/// glucose-monitor's `outputs_per_second` in the live measurements.
pub const GLUCOSE_OUTPUTS_PER_SECOND: u32 = 10_000_000;

/// The outbox size the bench gives `edgewise run` (`[outbox] max_mb`).
pub const OUTBOX_MAX_MB: u64 = 8192;

/// A running `edgewise run`, killed when dropped: the device harness of
/// `edgewise-procs` (shared with the tests and the demo), with the bench's
/// configuration and its typed status.
pub struct Device {
    host: edgewise_procs::Device,
    client: async_nats::Client,
}

impl Device {
    /// Write a configuration under `dir` (emptied first) for a host on
    /// `local_url` with `plugins`, start `edgewise run` and wait until it
    /// answers status requests. No `[upstream]`: outputs stay in the outbox.
    pub async fn start(dir: &Path, trust: &Path, local_url: &str, plugins: &[PluginEntry]) -> anyhow::Result<Device> {
        Device::start_as(DEVICE, dir, trust, local_url, plugins).await
    }

    /// [`Device::start`] with the device id `id`: hosts that share a
    /// nats-server need ids of their own (each answers status requests on
    /// `edgewise.<id>.status`).
    pub async fn start_as(
        id: &str,
        dir: &Path,
        trust: &Path,
        local_url: &str,
        plugins: &[PluginEntry],
    ) -> anyhow::Result<Device> {
        Device::start_with(id, dir, trust, local_url, &Setup::default(), plugins).await
    }

    /// [`Device::start_as`] set up as `setup` says (upstream, source, input log).
    pub async fn start_with(
        id: &str,
        dir: &Path,
        trust: &Path,
        local_url: &str,
        setup: &Setup<'_>,
        plugins: &[PluginEntry],
    ) -> anyhow::Result<Device> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // Room for every output of the longest measurement: a full outbox
        // evicts on every append, which is the offline regime, not this one.
        let mut rest = format!("[outbox]\nmax_mb = {OUTBOX_MAX_MB}\n");
        if !setup.input_log {
            rest.push_str("input_log = false\n");
        }
        // The traffic plays days of readings per second, from now on: they run
        // far ahead of the host clock, which the host (`max_future`) and
        // glucose-monitor (`max_ahead`) would otherwise refuse as implausible.
        rest.push_str("\n[ingest]\nmax_future = \"3650000d\"\n");
        if let Some(stream) = setup.jetstream {
            rest.push_str(&format!("source = \"jetstream\"\nstream = \"{stream}\"\n"));
        }
        // The bench measures the pipeline, not the output-rate cap: the host
        // ceiling is raised to the rate glucose-monitor is given below.
        rest.push_str(&format!(
            "\n[host_limits]\noutputs_per_second = {GLUCOSE_OUTPUTS_PER_SECOND}\n"
        ));
        if let Some(deploy) = setup.deploy {
            rest.push_str(&format!("\n[deploy]\n{deploy}"));
        }
        if let Some(listen) = setup.metrics {
            rest.push_str(&format!("\n[metrics]\nlisten = \"{listen}\"\n"));
        }
        if plugins.iter().any(|p| p.hostile) {
            rest.push_str("\n[supervisor]\nquarantine_after = 1000\nbackoff_max = \"100ms\"\n");
        }
        for plugin in plugins {
            rest.push_str(&format!("\n[[plugins]]\nbundle = \"{}\"\n", plugin.bundle.display()));
            if !plugin.config.is_empty() {
                rest.push_str(&format!("[plugins.config]\n{}", plugin.config));
            }
            if let Some(rate) = plugin.outputs_per_second {
                rest.push_str(&format!("[plugins.limits]\noutputs_per_second = {rate}\n"));
            }
        }
        let config = RunConfig {
            device: id.to_owned(),
            trust_dir: trust.display().to_string(),
            tick: None,
            local_url: local_url.to_owned(),
            upstream: setup.upstream.map(|url| (url.to_owned(), UPSTREAM_STREAM.to_owned())),
            rest,
        };
        let mut host = edgewise_procs::Device::new(dir, id);
        host.write_config(&format!("# Written by edgewise-bench.\n{}", config.to_toml()))?;
        let client = async_nats::connect(local_url)
            .await
            .with_context(|| format!("cannot connect to {local_url}"))?;
        host.start(&client, START_TIMEOUT).await?;
        Ok(Device { host, client })
    }

    /// Its status (`edgewise.<device>.status`).
    pub async fn status(&mut self) -> anyhow::Result<Status> {
        let status = self.host.status(&self.client).await?;
        serde_json::from_value(status).context("the host's status is not the expected JSON")
    }

    /// The status of `plugin`.
    pub async fn plugin_status(&mut self, plugin: &str) -> anyhow::Result<PluginStatus> {
        self.status()
            .await?
            .plugins
            .into_iter()
            .find(|p| p.name == plugin)
            .ok_or_else(|| anyhow!("the host's status has no plugin {plugin}"))
    }

    /// Readings delivered to `plugin` so far.
    pub async fn readings_in(&mut self, plugin: &str) -> anyhow::Result<u64> {
        Ok(self.plugin_status(plugin).await?.readings_in)
    }

    /// Kill `edgewise run` with SIGKILL (a crash, a power cut) and reap it.
    pub fn kill(&mut self) {
        self.host.kill();
    }

    /// Start `edgewise run` again on the same directory (after [`kill`]),
    /// without waiting for it, logging at `info` (its start-up steps, with
    /// their times, see [`log`]).
    ///
    /// [`kill`]: Device::kill
    /// [`log`]: Device::log
    pub fn spawn(&mut self) -> anyhow::Result<()> {
        let mut command = self.host.run_command();
        command.env("RUST_LOG", "info");
        self.host.spawn_command(command)
    }

    /// What the current (or last) run logged.
    pub fn log(&self) -> String {
        self.host.log()
    }

    /// Wait until the started host answers status requests.
    pub async fn wait_ready(&mut self) -> anyhow::Result<()> {
        self.host.wait_ready(&self.client, START_TIMEOUT).await.map(drop)
    }

    /// Its data directory (`data_dir`: the outbox, its key, the compiled cache).
    pub fn data_dir(&self) -> PathBuf {
        self.host.dir().join("data")
    }

    /// The process id of `edgewise run`, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.host.pid()
    }

    /// Resident set size of the host process, in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let pid = self.host.pid().context("edgewise run is not running")?;
        rss_of(&format!("/proc/{pid}/status"))
    }

    /// SIGTERM, and wait for a clean exit (killed after 30 s).
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.host.stop_cleanly(STOP_TIMEOUT).await.map(drop)
    }
}

/// `VmRSS` of a `/proc/<pid>/status` file, in bytes.
pub fn rss_of(status_file: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(status_file).with_context(|| format!("cannot read {status_file}"))?;
    let kib = text
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok())
        .with_context(|| format!("no VmRSS line in {status_file}"))?;
    Ok(kib * 1024)
}
