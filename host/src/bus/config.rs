//! The NATS side of the device configuration: how to reach a server
//! (`[local]`, `[upstream]`), where readings come from and which readings
//! are plausible (`[ingest]`). Parsed and checked by `run::config`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

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
