//! The checks and defaults of the configuration's values: each reports a
//! problem with its dotted key and goes on with the default, so that every
//! problem of a file is reported at once.

use std::path::Path;
use std::time::Duration;

use super::raw::{RawCompile, RawDeploy, RawMetrics, RawOutbox, RawSupervisor, RawTelemetry};
use super::{
    CompileConfig, DEFAULT_COMPILE_MEMORY_MB, DEFAULT_COMPILE_START_WAIT, DEFAULT_COMPILE_TIMEOUT,
    DEFAULT_TELEMETRY_INTERVAL, DeployConfig, MAX_COMPILE_MEMORY_MB, MIN_COMPILE_TIMEOUT, TELEMETRY_INTERVAL_RANGE,
    TelemetryConfig,
};
use crate::bus::NatsConfig;
use crate::metrics::MetricsConfig;
use crate::outbox::OutboxLimits;
use crate::worker::SupervisorPolicy;

/// Bytes in the MiB of `[outbox] max_mb`.
const MIB: u64 = 1024 * 1024;
/// Largest `[outbox] max_mb`: 1 TiB.
const MAX_OUTBOX_MB: usize = 1 << 20;
/// Smallest `[outbox] max_age`. Short ages are for tests and demos (an entry
/// is then lost after an upstream outage that long); devices use hours or days.
const MIN_OUTBOX_MAX_AGE: Duration = Duration::from_secs(1);

/// The `[supervisor]` table over [`SupervisorPolicy::default`].
pub(super) fn supervisor_policy(raw: &RawSupervisor, problem: &mut impl FnMut(&str, String)) -> SupervisorPolicy {
    let defaults = SupervisorPolicy::default();
    let policy = SupervisorPolicy {
        backoff_initial: duration(
            problem,
            "supervisor.backoff_initial",
            &raw.backoff_initial,
            defaults.backoff_initial,
            MIN_SUPERVISOR_DURATION,
            MAX_DURATION,
        ),
        backoff_max: duration(
            problem,
            "supervisor.backoff_max",
            &raw.backoff_max,
            defaults.backoff_max,
            MIN_SUPERVISOR_DURATION,
            MAX_DURATION,
        ),
        quarantine_window: duration(
            problem,
            "supervisor.quarantine_window",
            &raw.quarantine_window,
            defaults.quarantine_window,
            MIN_SUPERVISOR_DURATION,
            MAX_DURATION,
        ),
        quarantine_cooldown: duration(
            problem,
            "supervisor.quarantine_cooldown",
            &raw.quarantine_cooldown,
            defaults.quarantine_cooldown,
            MIN_SUPERVISOR_DURATION,
            MAX_DURATION,
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
pub(super) fn outbox_limits(raw: &RawOutbox, problem: &mut impl FnMut(&str, String)) -> OutboxLimits {
    let defaults = OutboxLimits::default();
    let default_mb = usize::try_from(defaults.max_bytes / MIB).unwrap_or(MAX_OUTBOX_MB);
    let max_mb = positive(problem, "outbox.max_mb", raw.max_mb, default_mb, MAX_OUTBOX_MB);
    let max_age = duration(
        problem,
        "outbox.max_age",
        &raw.max_age,
        Duration::from_millis(defaults.max_age_ms),
        MIN_OUTBOX_MAX_AGE,
        MAX_AGE,
    );
    let default_log_mb = usize::try_from(defaults.log_max_bytes / MIB).unwrap_or(MAX_OUTBOX_MB);
    let log_max_mb = positive(
        problem,
        "outbox.log_max_mb",
        raw.log_max_mb,
        default_log_mb,
        MAX_OUTBOX_MB,
    );
    OutboxLimits {
        max_bytes: (max_mb as u64).saturating_mul(MIB),
        max_age_ms: u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX),
        log_max_bytes: (log_max_mb as u64).saturating_mul(MIB),
    }
}

/// A count between 1 and `max`; `default` when absent or wrong (reported).
pub(super) fn positive(
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

/// The longest wait, interval or timeout of the configuration: 30 days.
/// Nothing a device waits for takes longer, and the host adds these to
/// clock instants: a value near `u64::MAX` seconds once overflowed there
/// (a worker thread lost, start-up ended by a panic).
pub const MAX_DURATION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The longest age of the configuration (`[outbox] max_age`, `[ingest]
/// max_age`: how long data is kept, or still taken): 10 years of 365.25 days.
pub const MAX_AGE: Duration = Duration::from_secs(10 * 31_557_600);

/// The widest `[ingest]` margin (`max_future`, `max_age`): 100,000 years of
/// 365.25 days. The margins are only compared with readings' times (in
/// i128, never added to a clock instant), and a device fed recordings live
/// needs them wide: a test of a recording years old, or the benchmark's
/// traffic that plays days of readings per second ahead of the clock. The
/// ceiling only keeps the value within i64 milliseconds with room to spare.
pub const MAX_INGEST_MARGIN: Duration = Duration::from_secs(100_000 * 31_557_600);

/// A duration between `min` and `max` at the dotted `key`; `default` when
/// absent or wrong (reported).
pub(super) fn duration(
    problem: &mut impl FnMut(&str, String),
    key: &str,
    text: &Option<String>,
    default: Duration,
    min: Duration,
    max: Duration,
) -> Duration {
    match text {
        None => default,
        Some(text) => match humantime::parse_duration(text) {
            Ok(d) if d >= min && d <= max => d,
            Ok(d) if d > max => {
                problem(
                    key,
                    format!("`{text}` must be at most {}", humantime::format_duration(max)),
                );
                default
            }
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

pub(super) fn check_nats(section: &str, nats: &NatsConfig, problem: &mut impl FnMut(&str, String)) {
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

pub(super) fn absolutize_nats(mut nats: NatsConfig, base: &Path) -> NatsConfig {
    nats.credentials = nats.credentials.map(|p| base.join(p));
    nats.tls_ca = nats.tls_ca.map(|p| base.join(p));
    nats
}

/// The dotted key a TOML error is about, when the parser knows it.
pub(super) fn toml_error_key(error: &toml::de::Error) -> String {
    let message = error.message();
    // Unknown and missing fields name the key in backticks.
    message
        .split('`')
        .nth(1)
        .map(str::to_owned)
        .unwrap_or_else(|| "(syntax)".to_owned())
}

/// The `[deploy]` table: deployment from the cloud.
pub(super) fn deploy(raw: &RawDeploy, problem: &mut impl FnMut(&str, String)) -> DeployConfig {
    for (index, group) in raw.groups.iter().enumerate() {
        if !crate::deploy::model::valid_name(group) {
            problem(
                &format!("deploy.groups[{index}]"),
                format!("`{group}`: letters, digits, `-` and `_` only"),
            );
        }
    }
    if let Some(domain) = &raw.domain
        && !crate::deploy::model::valid_name(domain)
    {
        problem(
            "deploy.domain",
            format!("`{domain}`: letters, digits, `-` and `_` only"),
        );
    }
    let second = Duration::from_secs(1);
    let max_mb = crate::bundle::DEFAULT_MAX_BUNDLE_BYTES / (1024 * 1024);
    DeployConfig {
        domain: raw.domain.clone(),
        groups: raw.groups.clone(),
        probation: duration(
            problem,
            "deploy.probation",
            &raw.probation,
            DEFAULT_PROBATION,
            Duration::ZERO,
            MAX_DURATION,
        ),
        resync: duration(
            problem,
            "deploy.resync",
            &raw.resync,
            Duration::from_secs(30),
            second,
            MAX_DURATION,
        ),
        report_every: duration(
            problem,
            "deploy.report_every",
            &raw.report_every,
            Duration::from_secs(10),
            second,
            MAX_DURATION,
        ),
        max_bundle_bytes: positive(problem, "deploy.max_bundle_mb", raw.max_bundle_mb, max_mb, max_mb) as u64
            * 1024
            * 1024,
    }
}

/// A new version's probation unless `[deploy] probation` says.
pub const DEFAULT_PROBATION: Duration = Duration::from_secs(60);

/// The `[metrics]` table: an `IP:port` to listen on, loopback unless
/// `allow_remote` (the endpoint has no authentication; what it shows is
/// counts of the device, never a patient's values, but a network can still
/// read them).
pub(super) fn metrics(raw: &RawMetrics, problem: &mut impl FnMut(&str, String)) -> Option<MetricsConfig> {
    let listen: std::net::SocketAddr = match raw.listen.parse() {
        Ok(listen) => listen,
        Err(_) => {
            problem(
                "metrics.listen",
                format!("`{}` is not an `IP:port` address (e.g. `127.0.0.1:9600`)", raw.listen),
            );
            return None;
        }
    };
    if !listen.ip().is_loopback() && !raw.allow_remote {
        problem(
            "metrics.listen",
            format!(
                "`{listen}` is not a loopback address: the endpoint has no authentication; \
                 set `allow_remote = true` in [metrics] to serve it beyond this machine"
            ),
        );
        return None;
    }
    Some(MetricsConfig { listen })
}

/// The `[telemetry]` table: `interval`, a duration within
/// [`TELEMETRY_INTERVAL_RANGE`] (default [`DEFAULT_TELEMETRY_INTERVAL`]), or
/// `"off"` for none.
pub(super) fn telemetry(raw: &RawTelemetry, problem: &mut impl FnMut(&str, String)) -> Option<TelemetryConfig> {
    if raw.interval.as_deref().map(str::trim) == Some("off") {
        return None;
    }
    let (min, max) = (*TELEMETRY_INTERVAL_RANGE.start(), *TELEMETRY_INTERVAL_RANGE.end());
    let interval = duration(
        problem,
        "telemetry.interval",
        &raw.interval,
        DEFAULT_TELEMETRY_INTERVAL,
        min,
        // Bounded below, with the word about "off".
        Duration::MAX,
    );
    if interval > max {
        problem(
            "telemetry.interval",
            format!("must be at most {} (or \"off\")", humantime::format_duration(max)),
        );
    }
    Some(TelemetryConfig { interval })
}

/// The `[compile]` table: the bounds of the compiler process.
pub(super) fn compile(raw: &RawCompile, problem: &mut impl FnMut(&str, String)) -> CompileConfig {
    let memory_mb = positive(
        problem,
        "compile.memory_mb",
        raw.memory_mb,
        DEFAULT_COMPILE_MEMORY_MB,
        MAX_COMPILE_MEMORY_MB,
    );
    CompileConfig {
        memory_limit_bytes: memory_mb as u64 * MIB,
        timeout: duration(
            problem,
            "compile.timeout",
            &raw.timeout,
            DEFAULT_COMPILE_TIMEOUT,
            MIN_COMPILE_TIMEOUT,
            MAX_DURATION,
        ),
        start_wait: duration(
            problem,
            "compile.start_wait",
            &raw.start_wait,
            DEFAULT_COMPILE_START_WAIT,
            Duration::ZERO,
            MAX_DURATION,
        ),
    }
}
