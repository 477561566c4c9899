//! `edgewise run --config edgewise.toml`: the device configuration, parsed
//! once and validated as a whole at start. Every problem is reported with its
//! key, all at once; nothing starts on a bad configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::bundle::ManifestLimits;
use crate::bundle::manifest::{config_value_text, validate_subject_filter};
use crate::bus::overlap;
use crate::outbox::OutboxLimits;
use crate::outbox::upstream::DUPLICATE_WINDOW_RANGE;
use crate::runtime::{Clamped, Limits};
use crate::worker::SupervisorPolicy;
use raw::RawConfig;
use sections::{
    MAX_INGEST_MARGIN, absolutize_nats, check_nats, duration, outbox_limits, positive, supervisor_policy,
    toml_error_key,
};

pub use sections::{MAX_AGE, MAX_DURATION};

/// The slowest `[clock] speed`: a thousandth of real time.
pub const MIN_CLOCK_SPEED: f64 = 0.001;
/// The fastest `[clock] speed`: a million times real time.
pub const MAX_CLOCK_SPEED: f64 = 1_000_000.0;

mod raw;
mod sections;
#[cfg(test)]
mod tests;

pub use crate::bus::{NatsConfig, Plausibility, Source};
pub use crate::clock::ClockConfig;
pub use crate::metrics::MetricsConfig;
pub use crate::outbox::upstream::{DEFAULT_DUPLICATE_WINDOW, UpstreamConfig};

/// Smallest `[ingest] max_age`: a reading is always a little old when it
/// arrives.
const MIN_INGEST_MAX_AGE: Duration = Duration::from_secs(1);

/// The longest device id taken. The id is a token of every subject the
/// device uses, of its key in the cloud's buckets and of every message id;
/// at thousands of characters, NATS refuses its protocol lines
/// (`maximum control line exceeded`) and the errors point elsewhere.
pub const MAX_DEVICE_ID_BYTES: usize = 128;

/// The validated configuration of one device.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Device id: the `<device>` token of every subject.
    pub device: String,
    /// Where the outbox, the anti-rollback record and the device key live.
    pub data_dir: PathBuf,
    /// The trust store every bundle is verified against.
    pub trust_dir: PathBuf,
    /// Interval of `on-tick` calls, in clock time.
    pub tick: Duration,
    /// Wall clock, or a simulated one for demos and soak tests.
    pub clock: ClockConfig,
    /// The local bus (sensors in, alerts out).
    pub local: NatsConfig,
    /// How readings are taken from the local bus.
    pub source: Source,
    /// Which readings are plausible enough to reach a plugin (`[ingest]`).
    pub plausibility: Plausibility,
    /// The cloud (alerts and summaries through the outbox); `None`: keep everything in the outbox.
    pub upstream: Option<UpstreamConfig>,
    /// Queues and batches.
    pub limits: RunLimits,
    /// How failing plugins are restarted and quarantined.
    pub supervisor: SupervisorPolicy,
    /// How much the outbox keeps, by size and age (`[outbox]`).
    pub outbox: OutboxLimits,
    /// Whether each plugin's inputs are logged (`[outbox] input_log`, default
    /// true): what recovery after `kill -9` and `edgewise export` need.
    pub input_log: bool,
    /// The host ceilings (`[host_limits]`): no plugin gets more, whatever its
    /// manifest asks.
    pub host_limits: Limits,
    /// `[host_limits] max_sensors`: no plugin is given more distinct sensors,
    /// whatever its manifest asks; `None`: no ceiling (ingest enforces it,
    /// not the runtime, so it is not in [`Limits`]).
    pub host_max_sensors: Option<usize>,
    /// The plugins to run.
    pub plugins: Vec<PluginConfig>,
    /// Deployment from the cloud (`[deploy]`), if configured.
    pub deploy: Option<DeployConfig>,
    /// The Prometheus endpoint (`[metrics]`), if configured (off by default).
    pub metrics: Option<MetricsConfig>,
    /// Fleet telemetry (`[telemetry]`, on by default every
    /// [`DEFAULT_TELEMETRY_INTERVAL`]); `None`: `interval = "off"`.
    pub telemetry: Option<TelemetryConfig>,
    /// The bounds of the compiler process (`[compile]`).
    pub compile: CompileConfig,
}

/// `[compile]`: plugins are compiled in a child process, stopped when it
/// passes these bounds (`runtime::Compiler::Child`): a compilation that runs
/// out of memory or never ends costs that plugin, not the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileConfig {
    /// `memory_mb`: the most resident memory the compiler process may use.
    pub memory_limit_bytes: u64,
    /// `timeout`: the longest one compilation may take (wall time).
    pub timeout: Duration,
    /// `start_wait`: how long start-up waits for the plugins it compiles
    /// before the device serves without them (they join once compiled): a
    /// slow compilation does not hold every other plugin's start.
    pub start_wait: Duration,
}

/// `[compile] memory_mb` unless set: twice what CPython in wasm takes (the
/// largest plugin measured, 472 MiB), and more than a small device should
/// give one compilation without being told.
pub const DEFAULT_COMPILE_MEMORY_MB: usize = 1024;
/// Largest `[compile] memory_mb`: 64 GiB.
pub const MAX_COMPILE_MEMORY_MB: usize = 64 << 10;
/// `[compile] timeout` unless set: CPython takes about 5 s on this project's
/// 2-core CI machines; a small ARM device may take ten times that.
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(300);
/// `[compile] start_wait` unless set: glucose-monitor compiles in about
/// 0.15 s here and CPython in about 5 s; a small device may take ten times
/// that, and its alerts should not wait longer for a plugin that compiles.
pub const DEFAULT_COMPILE_START_WAIT: Duration = Duration::from_secs(10);
/// Smallest `[compile] timeout`: starting the compiler process alone takes
/// milliseconds.
pub const MIN_COMPILE_TIMEOUT: Duration = Duration::from_millis(100);

/// Fleet telemetry (`[telemetry]`): how often the device publishes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelemetryConfig {
    /// Wall-clock time between two messages (whatever `[clock]` says: it is
    /// an account of the device, not of the readings), within
    /// [`TELEMETRY_INTERVAL_RANGE`].
    pub interval: Duration,
}

/// `[telemetry] interval` unless set.
pub const DEFAULT_TELEMETRY_INTERVAL: Duration = Duration::from_secs(60);
/// Bounds of `[telemetry] interval`: faster than a second is load without
/// news; slower than a day, a dashboard cannot tell a quiet device from a
/// lost one.
pub const TELEMETRY_INTERVAL_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(24 * 60 * 60);

/// Deployment from the cloud (`[deploy]`): the device watches its desired
/// plugin set and its groups' in the cloud's buckets, through its local bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployConfig {
    /// The cloud's JetStream domain, reached through the local server (a
    /// leaf node of the cloud's); `None`: the local server's own JetStream.
    pub domain: Option<String>,
    /// The device's groups, in the order their sets apply (its own set last).
    pub groups: Vec<String>,
    /// How long a new version must run without a failure to be healthy.
    pub probation: Duration,
    /// How often the desired sets are read again (a watch can miss changes
    /// across reconnects).
    pub resync: Duration,
    /// How often the device writes its report when nothing changes.
    pub report_every: Duration,
    /// The largest bundle fetched.
    pub max_bundle_bytes: u64,
}

/// Capacities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLimits {
    /// Readings queued per plugin: then JetStream ingest waits, core NATS
    /// ingest drops (counted, reported); see `bus::ingest::queue`.
    pub queue_capacity: usize,
    /// Bus messages ingest takes at once, one input of the plugin (their
    /// readings reach it in calls of at most
    /// [`crate::runtime::MAX_READINGS_PER_CALL`]).
    pub batch_max: usize,
}

/// One plugin to run.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// The signed bundle.
    pub bundle: PathBuf,
    /// Configuration overrides, over the manifest's defaults.
    pub config: BTreeMap<String, String>,
    /// Subscription overrides (replace the manifest's), if any.
    pub subscriptions: Option<Vec<String>>,
    /// Resource limits set by the operator, over the manifest's.
    pub limits: ManifestLimits,
    /// Subject filters whose messages may name their sensor in the payload
    /// (trusted gateways that multiplex sensors); elsewhere the sensor is the
    /// subject's, and a payload naming another is dead-lettered.
    pub payload_sensors: Vec<String>,
}

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key, as a dotted path (`plugins[0].bundle`).
    pub key: String,
    /// What is wrong.
    pub reason: String,
}

/// Why the configuration was refused: every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration {path}:\n{}", .problems.iter().map(|p| format!("  {}: {}", p.key, p.reason)).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// Every problem, in file order.
    pub problems: Vec<ConfigProblem>,
}

impl RunConfig {
    /// Read and validate `path`. Relative paths in the file are relative to the file's directory.
    pub fn load(path: &Path) -> Result<RunConfig, ConfigError> {
        let fail = |key: &str, reason: String| ConfigError {
            path: path.display().to_string(),
            problems: vec![ConfigProblem {
                key: key.to_owned(),
                reason,
            }],
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail("(file)", format!("cannot read: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let config = RunConfig::parse(&text, base).map_err(|problems| ConfigError {
            path: path.display().to_string(),
            problems,
        })?;
        config.warn_about_exposed_secrets(path);
        Ok(config)
    }

    /// Warn (log, naming the file and its mode) when this configuration file
    /// holds a password or token, or names a credentials file, that other
    /// users can read. The host does not change the operator's files.
    fn warn_about_exposed_secrets(&self, path: &Path) {
        let connections = std::iter::once(&self.local).chain(self.upstream.as_ref().map(|up| &up.nats));
        let mut inline = false;
        for nats in connections {
            inline |= nats.password.is_some() || nats.token.is_some();
            if let Some(credentials) = &nats.credentials {
                crate::files::warn_if_exposed(credentials, "The NATS credentials file");
            }
        }
        if inline {
            crate::files::warn_if_exposed(path, "The configuration file (a password or token)");
        }
    }

    /// Parse and validate TOML text; relative paths are joined to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<RunConfig, Vec<ConfigProblem>> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            vec![ConfigProblem {
                key: toml_error_key(&e),
                reason: e.to_string().trim().replace('\n', "\n    "),
            }]
        })?;
        let mut problems = Vec::new();
        let mut problem = |key: &str, reason: String| {
            problems.push(ConfigProblem {
                key: key.to_owned(),
                reason,
            })
        };
        if raw.device.len() > MAX_DEVICE_ID_BYTES {
            problem(
                "device",
                format!(
                    "`{}…` is {} characters long, over {MAX_DEVICE_ID_BYTES}: it names every subject, key and \
                     message id of the device, which have limits of their own",
                    raw.device.chars().take(16).collect::<String>(),
                    raw.device.chars().count()
                ),
            );
        } else if raw.device.is_empty()
            || !raw
                .device
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problem(
                "device",
                format!(
                    "`{}` must be letters, digits, `-` or `_` (it is a subject token)",
                    raw.device
                ),
            );
        }
        let tick = match humantime::parse_duration(&raw.tick) {
            Ok(tick) if tick >= Duration::from_millis(10) && tick <= MAX_DURATION => tick,
            Ok(tick) if tick > MAX_DURATION => {
                problem(
                    "tick",
                    format!(
                        "`{}` must be at most {}",
                        raw.tick,
                        humantime::format_duration(MAX_DURATION)
                    ),
                );
                Duration::from_secs(5)
            }
            Ok(_) => {
                problem("tick", format!("`{}` is below the 10ms minimum", raw.tick));
                Duration::from_secs(5)
            }
            Err(e) => {
                problem("tick", format!("`{}`: {e}", raw.tick));
                Duration::from_secs(5)
            }
        };
        let clock = match raw.clock {
            None => ClockConfig::Wall,
            Some(clock) => {
                let start_ms = match OffsetDateTime::parse(&clock.start, &Rfc3339) {
                    Ok(t) => i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0),
                    Err(e) => {
                        problem("clock.start", format!("`{}` is not an RFC 3339 time: {e}", clock.start));
                        0
                    }
                };
                // Bounded below too: the ticker waits a tick divided by the
                // speed, which a tiny speed makes longer than any timer holds.
                if !(clock.speed.is_finite() && (MIN_CLOCK_SPEED..=MAX_CLOCK_SPEED).contains(&clock.speed)) {
                    problem(
                        "clock.speed",
                        format!(
                            "{} must be between {MIN_CLOCK_SPEED} and {MAX_CLOCK_SPEED}",
                            clock.speed
                        ),
                    );
                }
                ClockConfig::Simulated {
                    start_ms,
                    speed: clock.speed,
                }
            }
        };
        check_nats("local", &raw.local, &mut problem);
        let plausibility = Plausibility {
            max_future: duration(
                &mut problem,
                "ingest.max_future",
                &raw.ingest.max_future,
                Plausibility::DEFAULT_MAX_FUTURE,
                Duration::ZERO,
                MAX_INGEST_MARGIN,
            ),
            max_age: duration(
                &mut problem,
                "ingest.max_age",
                &raw.ingest.max_age,
                Plausibility::DEFAULT_MAX_AGE,
                MIN_INGEST_MAX_AGE,
                MAX_INGEST_MARGIN,
            ),
        };
        let source = match (raw.ingest.source.as_deref(), raw.ingest.stream) {
            (None | Some("core"), None) => Source::Core,
            (None | Some("core"), Some(_)) => {
                problem("ingest.stream", "only used with `source = \"jetstream\"`".into());
                Source::Core
            }
            (Some("jetstream"), Some(stream)) if !stream.is_empty() => Source::JetStream { stream },
            (Some("jetstream"), _) => {
                problem(
                    "ingest.stream",
                    "`source = \"jetstream\"` needs the stream to consume".into(),
                );
                Source::Core
            }
            (Some(other), _) => {
                problem("ingest.source", format!("`{other}` is not `core` or `jetstream`"));
                Source::Core
            }
        };
        if !base.join(&raw.trust_dir).is_dir() {
            problem(
                "trust_dir",
                format!("{} is not a directory", base.join(&raw.trust_dir).display()),
            );
        }
        let upstream = raw.upstream.map(|up| {
            check_nats("upstream", &up.nats, &mut problem);
            if up.stream.is_empty() {
                problem("upstream.stream", "is empty".into());
            }
            let duplicate_window = duration(
                &mut problem,
                "upstream.duplicate_window",
                &up.duplicate_window,
                DEFAULT_DUPLICATE_WINDOW,
                *DUPLICATE_WINDOW_RANGE.start(),
                *DUPLICATE_WINDOW_RANGE.end(),
            );
            if let Some(domain) = &up.domain
                && !crate::deploy::model::valid_name(domain)
            {
                problem(
                    "upstream.domain",
                    format!("`{domain}`: letters, digits, `-` and `_` only"),
                );
            }
            UpstreamConfig {
                nats: absolutize_nats(up.nats, base),
                stream: up.stream,
                create_stream: up.create_stream,
                domain: up.domain,
                duplicate_window,
            }
        });
        let limits = RunLimits {
            queue_capacity: positive(
                &mut problem,
                "limits.queue_capacity",
                raw.limits.queue_capacity,
                4096,
                1 << 20,
            ),
            batch_max: positive(&mut problem, "limits.batch_max", raw.limits.batch_max, 256, 65_536),
        };
        let supervisor = supervisor_policy(&raw.supervisor, &mut problem);
        let outbox = outbox_limits(&raw.outbox, &mut problem);
        if let Some(key) = raw.host_limits.zero_key() {
            problem(&format!("host_limits.{key}"), "must be greater than 0".into());
        }
        let host_limits = raw.host_limits.apply(Limits::default_ceilings());
        let host_max_sensors = raw.host_limits.max_sensors.map(|n| n as usize);
        if raw.plugins.is_empty() && raw.deploy.is_none() {
            problem(
                "plugins",
                "no plugin to run: add a [[plugins]] table (or a [deploy] table: plugins from the cloud)".into(),
            );
        }
        let mut plugins = Vec::new();
        for (index, plugin) in raw.plugins.into_iter().enumerate() {
            // A bundle that is not there is not a configuration error: the
            // plugin is refused at start as any unreadable bundle is, and
            // the others run (a lost file must not silence every plugin).
            let bundle = base.join(&plugin.bundle);
            let mut config = BTreeMap::new();
            for (key, value) in plugin.config {
                let Some(text) = config_value_text(&value) else {
                    problem(
                        &format!("plugins[{index}].config.{key}"),
                        format!("{value} must be a string, number or boolean"),
                    );
                    continue;
                };
                config.insert(key, text);
            }
            if let Some(subjects) = &plugin.subscriptions {
                if subjects.is_empty() {
                    problem(&format!("plugins[{index}].subscriptions"), "is empty".into());
                }
                for subject in subjects {
                    if let Err(reason) = validate_subject_filter(subject) {
                        problem(
                            &format!("plugins[{index}].subscriptions"),
                            format!("`{subject}`: {reason}"),
                        );
                    } else if let Some(reason) = overlap::refusal(&raw.device, subject) {
                        // The host never consumes its own traffic (a plugin on
                        // `>` would dead-letter the host's dead letters forever).
                        problem(&format!("plugins[{index}].subscriptions"), reason);
                    }
                }
            }
            for subject in &plugin.payload_sensors {
                if let Err(reason) = validate_subject_filter(subject) {
                    problem(
                        &format!("plugins[{index}].payload_sensors"),
                        format!("`{subject}`: {reason}"),
                    );
                }
            }
            if let Some(key) = plugin.limits.zero_key() {
                problem(
                    &format!("plugins[{index}].limits.{key}"),
                    "must be greater than 0".into(),
                );
            }
            // The operator's own values above the operator's own ceilings: a
            // contradiction in one file, refused rather than guessed at.
            let (_, beyond) = plugin.limits.apply(host_limits.clone()).clamp_to(&host_limits);
            let sensors_beyond = plugin
                .limits
                .max_sensors
                .zip(raw.host_limits.max_sensors)
                .filter(|(asked, ceiling)| asked > ceiling)
                .map(|(asked, ceiling)| Clamped {
                    key: "max_sensors",
                    asked: asked.into(),
                    ceiling: ceiling.into(),
                });
            for clamped in beyond.into_iter().chain(sensors_beyond) {
                problem(
                    &format!("plugins[{index}].limits.{}", clamped.key),
                    format!(
                        "{} is above the host ceiling of {} (`host_limits.{}`)",
                        clamped.asked, clamped.ceiling, clamped.key
                    ),
                );
            }
            plugins.push(PluginConfig {
                bundle,
                config,
                subscriptions: plugin.subscriptions,
                limits: plugin.limits,
                payload_sensors: plugin.payload_sensors,
            });
        }
        let deploy = raw.deploy.as_ref().map(|raw| sections::deploy(raw, &mut problem));
        let metrics = raw
            .metrics
            .as_ref()
            .and_then(|raw| sections::metrics(raw, &mut problem));
        let telemetry = sections::telemetry(&raw.telemetry, &mut problem);
        let compile = sections::compile(&raw.compile, &mut problem);
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(RunConfig {
            device: raw.device,
            data_dir: base.join(raw.data_dir),
            trust_dir: base.join(raw.trust_dir),
            tick,
            clock,
            local: absolutize_nats(raw.local, base),
            source,
            plausibility,
            upstream,
            limits,
            supervisor,
            outbox,
            input_log: raw.outbox.input_log.unwrap_or(true),
            host_limits,
            host_max_sensors,
            plugins,
            deploy,
            metrics,
            telemetry,
            compile,
        })
    }
}
