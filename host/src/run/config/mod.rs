//! `edgewise run --config edgewise.toml`: the device configuration, parsed
//! once and validated as a whole at start. Every problem is reported with its
//! key, all at once; nothing starts on a bad configuration.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::supervisor::SupervisorPolicy;
use crate::bundle::ManifestLimits;
use crate::bundle::manifest::{config_value_text, validate_subject_filter};
use crate::outbox::OutboxLimits;
use crate::runtime::Limits;

/// Bytes in the MiB of `[outbox] max_mb`.
const MIB: u64 = 1024 * 1024;
/// Largest `[outbox] max_mb`: 1 TiB.
const MAX_OUTBOX_MB: usize = 1 << 20;
/// Smallest `[outbox] max_age`. Short ages are for tests and demos (an entry
/// is then lost after an upstream outage that long); devices use hours or days.
const MIN_OUTBOX_MAX_AGE: Duration = Duration::from_secs(1);
/// Smallest `[ingest] max_age`: a reading is always a little old when it
/// arrives.
const MIN_INGEST_MAX_AGE: Duration = Duration::from_secs(1);

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
    /// The host ceilings (`[host_limits]`): no plugin gets more, whatever its
    /// manifest asks.
    pub host_limits: Limits,
    /// The plugins to run.
    pub plugins: Vec<PluginConfig>,
}

/// Clock of a run.
#[derive(Debug, Clone, PartialEq)]
pub enum ClockConfig {
    /// The system clock.
    Wall,
    /// Starts at `start_ms` when the host starts and runs `speed` times faster than real time.
    Simulated {
        /// Virtual time at start, ms since the epoch.
        start_ms: i64,
        /// Virtual milliseconds per real millisecond.
        speed: f64,
    },
}

/// Connection settings for one NATS server (or cluster).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated, e.g. `nats://127.0.0.1:4222`.
    pub url: String,
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password (with `user`).
    pub password: Option<String>,
    /// Authentication token.
    pub token: Option<String>,
    /// A `.creds` file (JWT + NKey seed).
    pub credentials: Option<PathBuf>,
    /// A PEM file of CA certificates to trust for TLS (also requires TLS).
    pub tls_ca: Option<PathBuf>,
}

/// Where readings come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Core NATS subscriptions: readings published while the host is down are lost.
    Core,
    /// A durable JetStream consumer per plugin on `stream`: readings published
    /// while the host is down are processed after it starts.
    JetStream {
        /// The stream holding sensor readings.
        stream: String,
    },
}

/// How far a reading's timestamp may be from the host clock (`[ingest]
/// max_future`, `max_age`); readings outside are dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plausibility {
    /// A reading more than this ahead of the host clock is refused.
    pub max_future: Duration,
    /// A reading more than this behind the host clock is refused.
    pub max_age: Duration,
}

impl Plausibility {
    /// Default of `max_future`: sensor and host clocks a few minutes apart
    /// (no NTP yet after a reboot, a CGM receiver's own clock) are normal; a
    /// reading further ahead would make every real reading after it "late"
    /// for a plugin, for that long.
    pub const DEFAULT_MAX_FUTURE: Duration = Duration::from_secs(5 * 60);
    /// Default of `max_age`: readings come late for good reasons: CGM
    /// backfill (hours, up to a day), a JetStream source replaying what was
    /// stored while the host was down (a long weekend, a week's outage).
    /// Older than a week, a reading can no longer raise a useful alert, and its
    /// summary windows closed long ago; it is then more likely a bridge
    /// sending seconds for milliseconds or a clock reset to the epoch.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
}

impl Default for Plausibility {
    fn default() -> Plausibility {
        Plausibility {
            max_future: Plausibility::DEFAULT_MAX_FUTURE,
            max_age: Plausibility::DEFAULT_MAX_AGE,
        }
    }
}

/// The upstream (cloud) side.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Connection.
    pub nats: NatsConfig,
    /// The JetStream stream that stores `edgewise.<device>.up.>`.
    pub stream: String,
    /// Create the stream if it does not exist (demos, tests); otherwise the cloud owns it.
    pub create_stream: bool,
    /// The duplicate window of the stream the host creates
    /// (`[upstream] duplicate_window`, default [`DEFAULT_DUPLICATE_WINDOW`]).
    pub duplicate_window: Duration,
}

/// JetStream's own default duplicate window.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Bounds of `[upstream] duplicate_window`: the server keeps every message id
/// seen in the window in memory, and an entry retried after it is stored twice.
const DUPLICATE_WINDOW_RANGE: std::ops::RangeInclusive<Duration> =
    Duration::from_secs(1)..=Duration::from_secs(24 * 60 * 60);

/// Capacities.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunLimits {
    /// Readings queued per plugin before ingest waits (backpressure).
    pub queue_capacity: usize,
    /// Readings per `on-readings` call at most.
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    device: String,
    data_dir: PathBuf,
    trust_dir: PathBuf,
    #[serde(default = "default_tick")]
    tick: String,
    clock: Option<RawClock>,
    local: NatsConfig,
    #[serde(default)]
    ingest: RawIngest,
    upstream: Option<RawUpstream>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    supervisor: RawSupervisor,
    #[serde(default)]
    outbox: RawOutbox,
    #[serde(default)]
    host_limits: ManifestLimits,
    #[serde(default)]
    plugins: Vec<RawPlugin>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSupervisor {
    backoff_initial: Option<String>,
    backoff_max: Option<String>,
    quarantine_after: Option<i64>,
    quarantine_window: Option<String>,
    quarantine_cooldown: Option<String>,
    buffer_readings: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOutbox {
    max_mb: Option<i64>,
    max_age: Option<String>,
}

fn default_tick() -> String {
    "5s".to_owned()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClock {
    start: String,
    #[serde(default = "one")]
    speed: f64,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIngest {
    #[serde(default)]
    source: Option<String>,
    stream: Option<String>,
    max_future: Option<String>,
    max_age: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    #[serde(flatten)]
    nats: NatsConfig,
    #[serde(default = "default_upstream_stream")]
    stream: String,
    #[serde(default)]
    create_stream: bool,
    duplicate_window: Option<String>,
}

fn default_upstream_stream() -> String {
    "EDGEWISE_UP".to_owned()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    queue_capacity: Option<i64>,
    batch_max: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    bundle: PathBuf,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
    subscriptions: Option<Vec<String>>,
    #[serde(default)]
    limits: ManifestLimits,
    #[serde(default)]
    payload_sensors: Vec<String>,
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
        if raw.device.is_empty()
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
            Ok(tick) if tick >= Duration::from_millis(10) => tick,
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
                if !(clock.speed.is_finite() && clock.speed > 0.0 && clock.speed <= 1_000_000.0) {
                    problem(
                        "clock.speed",
                        format!("{} must be above 0 and at most 1000000", clock.speed),
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
            ),
            max_age: duration(
                &mut problem,
                "ingest.max_age",
                &raw.ingest.max_age,
                Plausibility::DEFAULT_MAX_AGE,
                MIN_INGEST_MAX_AGE,
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
            );
            if duplicate_window > *DUPLICATE_WINDOW_RANGE.end() {
                problem(
                    "upstream.duplicate_window",
                    format!(
                        "`{}` must be at most {}",
                        up.duplicate_window.as_deref().unwrap_or_default(),
                        humantime::format_duration(*DUPLICATE_WINDOW_RANGE.end())
                    ),
                );
            }
            UpstreamConfig {
                nats: absolutize_nats(up.nats, base),
                stream: up.stream,
                create_stream: up.create_stream,
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
        if raw.plugins.is_empty() {
            problem("plugins", "no plugin to run: add a [[plugins]] table".into());
        }
        let mut plugins = Vec::new();
        for (index, plugin) in raw.plugins.into_iter().enumerate() {
            let bundle = base.join(&plugin.bundle);
            if !bundle.is_file() {
                problem(
                    &format!("plugins[{index}].bundle"),
                    format!("{} does not exist", bundle.display()),
                );
            }
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
                    } else if let Some(reason) = super::overlap::refusal(&raw.device, subject) {
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
            for clamped in beyond {
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
            host_limits,
            plugins,
        })
    }
}

/// The limits `plugin` runs with: the host default, then what its manifest
/// asks, lowered to the host ceilings (each lowering logged: the plugin
/// author cannot know every device, and the plugin still runs), then the
/// operator's `[plugins.limits]` (within the ceilings: checked at load).
pub fn plugin_limits(ceilings: &Limits, plugin: &str, manifest: &ManifestLimits, operator: &ManifestLimits) -> Limits {
    let (within, clamped) = manifest.apply(Limits::default()).clamp_to(ceilings);
    for c in clamped {
        tracing::warn!(
            plugin,
            key = c.key,
            asked = c.asked,
            ceiling = c.ceiling,
            "The plugin asks for more than the host allows: {} lowered to the ceiling (`host_limits.{}`)",
            c.key,
            c.key
        );
    }
    operator.apply(within)
}

/// The `[supervisor]` table over [`SupervisorPolicy::default`].
fn supervisor_policy(raw: &RawSupervisor, problem: &mut impl FnMut(&str, String)) -> SupervisorPolicy {
    let defaults = SupervisorPolicy::default();
    let policy = SupervisorPolicy {
        backoff_initial: duration(
            problem,
            "supervisor.backoff_initial",
            &raw.backoff_initial,
            defaults.backoff_initial,
            MIN_SUPERVISOR_DURATION,
        ),
        backoff_max: duration(
            problem,
            "supervisor.backoff_max",
            &raw.backoff_max,
            defaults.backoff_max,
            MIN_SUPERVISOR_DURATION,
        ),
        quarantine_window: duration(
            problem,
            "supervisor.quarantine_window",
            &raw.quarantine_window,
            defaults.quarantine_window,
            MIN_SUPERVISOR_DURATION,
        ),
        quarantine_cooldown: duration(
            problem,
            "supervisor.quarantine_cooldown",
            &raw.quarantine_cooldown,
            defaults.quarantine_cooldown,
            MIN_SUPERVISOR_DURATION,
        ),
        quarantine_after: positive(
            problem,
            "supervisor.quarantine_after",
            raw.quarantine_after,
            defaults.quarantine_after,
            1000,
        ),
        buffer_readings: positive(
            problem,
            "supervisor.buffer_readings",
            raw.buffer_readings,
            defaults.buffer_readings,
            1 << 24,
        ),
    };
    if policy.backoff_max < policy.backoff_initial {
        problem("supervisor.backoff_max", "must not be below `backoff_initial`".into());
    }
    policy
}

/// The `[outbox]` table over [`OutboxLimits::default`].
fn outbox_limits(raw: &RawOutbox, problem: &mut impl FnMut(&str, String)) -> OutboxLimits {
    let defaults = OutboxLimits::default();
    let default_mb = usize::try_from(defaults.max_bytes / MIB).unwrap_or(MAX_OUTBOX_MB);
    let max_mb = positive(problem, "outbox.max_mb", raw.max_mb, default_mb, MAX_OUTBOX_MB);
    let max_age = duration(
        problem,
        "outbox.max_age",
        &raw.max_age,
        Duration::from_millis(defaults.max_age_ms),
        MIN_OUTBOX_MAX_AGE,
    );
    OutboxLimits {
        max_bytes: (max_mb as u64).saturating_mul(MIB),
        max_age_ms: u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX),
    }
}

/// A count between 1 and `max`; `default` when absent or wrong (reported).
fn positive(
    problem: &mut impl FnMut(&str, String),
    key: &str,
    value: Option<i64>,
    default: usize,
    max: usize,
) -> usize {
    match value {
        None => default,
        Some(v) if v >= 1 && (v as u64) <= max as u64 => v as usize,
        Some(v) => {
            problem(key, format!("{v} must be between 1 and {max}"));
            default
        }
    }
}

/// Smallest duration under `[supervisor]`.
const MIN_SUPERVISOR_DURATION: Duration = Duration::from_millis(1);

/// A duration of at least `min` at the dotted `key`; `default` when absent or wrong (reported).
fn duration(
    problem: &mut impl FnMut(&str, String),
    key: &str,
    text: &Option<String>,
    default: Duration,
    min: Duration,
) -> Duration {
    match text {
        None => default,
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if d >= min => d,
            Ok(_) => {
                problem(
                    key,
                    format!("`{text}` must be at least {}", humantime::format_duration(min)),
                );
                default
            }
            Err(e) => {
                problem(key, format!("`{text}`: {e}"));
                default
            }
        },
    }
}

fn check_nats(section: &str, nats: &NatsConfig, problem: &mut impl FnMut(&str, String)) {
    if nats.url.trim().is_empty() {
        problem(&format!("{section}.url"), "is empty".into());
    }
    for url in nats.url.split(',') {
        let url = url.trim();
        if !url.is_empty() && url.parse::<async_nats::ServerAddr>().is_err() {
            problem(
                &format!("{section}.url"),
                format!("`{url}` is not a NATS server address"),
            );
        }
    }
    if nats.user.is_some() != nats.password.is_some() {
        problem(&format!("{section}.user"), "`user` and `password` go together".into());
    }
    let methods = [nats.user.is_some(), nats.token.is_some(), nats.credentials.is_some()];
    if methods.iter().filter(|m| **m).count() > 1 {
        problem(section, "choose one of user/password, token, credentials".into());
    }
}

fn absolutize_nats(mut nats: NatsConfig, base: &Path) -> NatsConfig {
    nats.credentials = nats.credentials.map(|p| base.join(p));
    nats.tls_ca = nats.tls_ca.map(|p| base.join(p));
    nats
}

/// The dotted key a TOML error is about, when the parser knows it.
fn toml_error_key(error: &toml::de::Error) -> String {
    let message = error.message();
    // Unknown and missing fields name the key in backticks.
    message
        .split('`')
        .nth(1)
        .map(str::to_owned)
        .unwrap_or_else(|| "(syntax)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A configuration that parses, with `extra` appended (tables after `[[plugins]]`).
    fn parse_with(extra: &str) -> Result<RunConfig, Vec<ConfigProblem>> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("trust")).unwrap();
        std::fs::write(dir.path().join("p.wasm"), b"").unwrap();
        let text = format!(
            "device = \"d\"\ndata_dir = \"data\"\ntrust_dir = \"trust\"\n\
             [local]\nurl = \"nats://127.0.0.1:4222\"\n[[plugins]]\nbundle = \"p.wasm\"\n{extra}"
        );
        RunConfig::parse(&text, dir.path())
    }

    fn problems(extra: &str) -> Vec<(String, String)> {
        parse_with(extra)
            .unwrap_err()
            .into_iter()
            .map(|p| (p.key, p.reason))
            .collect()
    }

    #[test]
    fn host_ceilings_default_to_a_small_device_and_bound_the_operator() {
        assert_eq!(parse_with("").unwrap().host_limits, Limits::default_ceilings());
        let config = parse_with("[host_limits]\nmemory_mb = 32\ncall_deadline_ms = 2000\n").unwrap();
        assert_eq!(config.host_limits.max_memory_bytes, 32 << 20);
        assert_eq!(config.host_limits.call_deadline, Duration::from_secs(2));
        assert_eq!(
            problems("[plugins.limits]\nmemory_mb = 64\n[host_limits]\nmemory_mb = 32\n"),
            [(
                "plugins[0].limits.memory_mb".to_owned(),
                "64 is above the host ceiling of 32 (`host_limits.memory_mb`)".to_owned()
            )]
        );
        assert_eq!(
            problems("[host_limits]\nstate_bytes = 0\n"),
            [(
                "host_limits.state_bytes".to_owned(),
                "must be greater than 0".to_owned()
            )]
        );
    }

    #[test]
    fn a_manifest_beyond_the_ceilings_is_lowered_and_the_operator_applies_within() {
        let ceilings = Limits {
            max_memory_bytes: 32 << 20,
            ..Limits::default_ceilings()
        };
        let manifest = ManifestLimits {
            memory_mb: Some(1024),
            call_deadline_ms: Some(60_000),
            ..ManifestLimits::default()
        };
        let operator = ManifestLimits {
            state_bytes: Some(1000),
            ..ManifestLimits::default()
        };
        let limits = plugin_limits(&ceilings, "p", &manifest, &operator);
        assert_eq!(limits.max_memory_bytes, 32 << 20);
        assert_eq!(limits.call_deadline, ceilings.call_deadline);
        assert_eq!(limits.max_state_bytes, 1000);
        // The host default itself is lowered under a ceiling below it.
        let limits = plugin_limits(&ceilings, "p", &ManifestLimits::default(), &ManifestLimits::default());
        assert_eq!(limits.max_memory_bytes, 32 << 20);
    }

    #[test]
    fn no_outbox_table_gives_the_default_limits() {
        assert_eq!(parse_with("").unwrap().outbox, OutboxLimits::default());
        assert_eq!(parse_with("[outbox]\n").unwrap().outbox, OutboxLimits::default());
    }

    #[test]
    fn an_outbox_table_sets_the_size_and_age_limits() {
        let config = parse_with("[outbox]\nmax_mb = 64\nmax_age = \"12h\"\n").unwrap();
        assert_eq!(
            config.outbox,
            OutboxLimits {
                max_bytes: 64 * 1024 * 1024,
                max_age_ms: 12 * 3_600_000,
            }
        );
        // Each key alone keeps the other's default; the bounds are accepted.
        let config = parse_with("[outbox]\nmax_age = \"1s\"\n").unwrap();
        assert_eq!(config.outbox.max_age_ms, 1000);
        assert_eq!(config.outbox.max_bytes, OutboxLimits::DEFAULT_MAX_BYTES);
        let config = parse_with("[outbox]\nmax_mb = 1048576\nmax_age = \"30d\"\n").unwrap();
        assert_eq!(config.outbox.max_bytes, 1 << 40);
        assert_eq!(config.outbox.max_age_ms, OutboxLimits::DEFAULT_MAX_AGE_MS);
        let config = parse_with("[outbox]\nmax_mb = 1\n").unwrap();
        assert_eq!(config.outbox.max_bytes, 1 << 20);
        assert_eq!(config.outbox.max_age_ms, OutboxLimits::DEFAULT_MAX_AGE_MS);
    }

    #[test]
    fn bad_outbox_values_are_reported_with_their_key() {
        assert_eq!(
            problems("[outbox]\nmax_mb = 0\nmax_age = \"999ms\"\n"),
            [
                ("outbox.max_mb".to_owned(), "0 must be between 1 and 1048576".to_owned()),
                ("outbox.max_age".to_owned(), "`999ms` must be at least 1s".to_owned()),
            ]
        );
        assert_eq!(
            problems("[outbox]\nmax_mb = -5\nmax_age = \"soon\"\n"),
            [
                (
                    "outbox.max_mb".to_owned(),
                    "-5 must be between 1 and 1048576".to_owned()
                ),
                ("outbox.max_age".to_owned(), "`soon`: expected number at 0".to_owned()),
            ]
        );
        assert_eq!(
            problems("[outbox]\nmax_mb = 1048577\n"),
            [(
                "outbox.max_mb".to_owned(),
                "1048577 must be between 1 and 1048576".to_owned()
            )]
        );
        let unknown = problems("[outbox]\nmax_size = 5\n");
        assert_eq!(unknown.len(), 1);
        assert_eq!(unknown[0].0, "max_size");
        assert!(
            unknown[0]
                .1
                .contains("unknown field `max_size`, expected `max_mb` or `max_age`"),
            "{unknown:?}"
        );
    }

    #[test]
    fn the_example_configuration_is_valid_but_for_its_device_paths() {
        let text = include_str!("../../../edgewise.example.toml");
        let keys: Vec<String> = RunConfig::parse(text, Path::new("/nonexistent"))
            .unwrap_err()
            .into_iter()
            .map(|p| p.key)
            .collect();
        assert_eq!(keys, ["trust_dir", "plugins[0].bundle", "plugins[1].bundle"]);
    }

    #[test]
    fn subscription_overrides_on_the_host_subjects_are_refused_with_their_key() {
        let found = problems("subscriptions = [\"sensors.>\", \">\", \"d.*\", \"edgewise.d.status\"]\n");
        let keys: Vec<&str> = found.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            ["plugins[0].subscriptions", "plugins[0].subscriptions"],
            "{found:?}"
        );
        assert!(
            found[0].1.starts_with("`>` overlaps the host's own subjects"),
            "{found:?}"
        );
        assert!(found[1].1.starts_with("`edgewise.d.status` overlaps"), "{found:?}");
    }

    #[test]
    fn ingest_margins_default_and_are_read_with_their_keys() {
        let config = parse_with("").unwrap();
        assert_eq!(config.plausibility, Plausibility::default());
        assert_eq!(config.plausibility.max_future, Duration::from_secs(300));
        assert_eq!(config.plausibility.max_age, Duration::from_secs(7 * 86_400));
        let config = parse_with("[ingest]\nmax_future = \"0s\"\nmax_age = \"36h\"\n").unwrap();
        assert_eq!(config.plausibility.max_future, Duration::ZERO);
        assert_eq!(config.plausibility.max_age, Duration::from_secs(36 * 3600));
        assert_eq!(
            problems("[ingest]\nmax_future = \"soon\"\nmax_age = \"0s\"\n"),
            [
                (
                    "ingest.max_future".to_owned(),
                    "`soon`: expected number at 0".to_owned()
                ),
                ("ingest.max_age".to_owned(), "`0s` must be at least 1s".to_owned()),
            ]
        );
    }

    #[test]
    fn payload_sensors_are_subject_filters_of_one_plugin() {
        let config = parse_with("payload_sensors = [\"sensors.gateway.>\", \"sensors.*.hub\"]\n").unwrap();
        assert_eq!(
            config.plugins[0].payload_sensors,
            ["sensors.gateway.>", "sensors.*.hub"]
        );
        assert!(parse_with("").unwrap().plugins[0].payload_sensors.is_empty());
        assert_eq!(
            problems("payload_sensors = [\"sensors..x\"]\n"),
            [(
                "plugins[0].payload_sensors".to_owned(),
                "`sensors..x`: empty token".to_owned()
            )]
        );
        assert_eq!(
            problems("[plugins.limits]\nmax_sensors = 0\n"),
            [(
                "plugins[0].limits.max_sensors".to_owned(),
                "must be greater than 0".to_owned()
            )]
        );
    }

    #[test]
    fn supervisor_duration_messages_are_unchanged() {
        assert_eq!(
            problems("[supervisor]\nbackoff_initial = \"0s\"\nquarantine_window = \"later\"\n"),
            [
                (
                    "supervisor.backoff_initial".to_owned(),
                    "`0s` must be at least 1ms".to_owned()
                ),
                (
                    "supervisor.quarantine_window".to_owned(),
                    "`later`: expected number at 0".to_owned()
                ),
            ]
        );
    }

    #[test]
    fn the_upstream_duplicate_window_defaults_to_jetstreams_and_is_bounded() {
        let window = |extra: &str| parse_with(extra).unwrap().upstream.unwrap().duplicate_window;
        let up = "[upstream]\nurl = \"nats://127.0.0.1:4223\"\n";
        assert_eq!(window(up), DEFAULT_DUPLICATE_WINDOW);
        assert_eq!(DEFAULT_DUPLICATE_WINDOW, Duration::from_secs(120));
        assert_eq!(
            window(&format!("{up}duplicate_window = \"10m\"\n")),
            Duration::from_secs(600)
        );
        for (text, reason) in [
            ("500ms", "`500ms` must be at least 1s"),
            ("2days", "`2days` must be at most 1day"),
            ("soon", "`soon`: "),
        ] {
            let found = problems(&format!("{up}duplicate_window = \"{text}\"\n"));
            assert_eq!(found.len(), 1, "{found:?}");
            assert_eq!(found[0].0, "upstream.duplicate_window");
            assert!(found[0].1.starts_with(reason), "{found:?}");
        }
    }

    /// TOML forbids a key twice; toml 0.9 refuses it, in a plugin's
    /// `config` as anywhere: the last value never silently wins.
    #[test]
    fn a_key_twice_in_the_device_configuration_is_refused() {
        for extra in [
            "[plugins.config]\nlow = \"70\"\nlow = \"40\"\n",
            "[plugins.config]\nlow = \"70\"\n[plugins.config]\nhigh = \"1\"\n",
            "[local]\nurl = \"nats://127.0.0.1:4222\"\n",
        ] {
            let found = problems(extra);
            assert!(
                found.iter().any(|(_, reason)| reason.contains("duplicate key")),
                "{extra}: {found:?}"
            );
        }
    }
}
