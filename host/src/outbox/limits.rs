//! How much the outbox may hold ([`OutboxLimits`]), how full it is
//! ([`Depth`]), and what it had to let go ([`DropCounts`]).

use super::entry::Kind;

/// Bounds on what the outbox keeps while upstream is unreachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxLimits {
    /// Most bytes the entries may take (as [`Depth::bytes`] counts them),
    /// enforced on every append. Default 256 MiB.
    pub max_bytes: u64,
    /// Age after which `Outbox::expire` removes an entry (and a logged
    /// input). Default 30 days.
    pub max_age_ms: u64,
    /// Most bytes the input log may take (nonce and ciphertext of each row),
    /// enforced by `Outbox::expire`: the oldest inputs go first, those after
    /// their plugin's saved state only when they alone are over it. Default
    /// 1 GiB.
    pub log_max_bytes: u64,
}

impl OutboxLimits {
    /// Default size bound: 256 MiB.
    pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
    /// Default age bound: 30 days.
    pub const DEFAULT_MAX_AGE_MS: u64 = 30 * 24 * 60 * 60 * 1000;
    /// Default size bound of the input log: 1 GiB.
    pub const DEFAULT_LOG_MAX_BYTES: u64 = 1024 * 1024 * 1024;
}

impl Default for OutboxLimits {
    fn default() -> Self {
        OutboxLimits {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_age_ms: Self::DEFAULT_MAX_AGE_MS,
            log_max_bytes: Self::DEFAULT_LOG_MAX_BYTES,
        }
    }
}

/// Most telemetry entries the outbox keeps. Telemetry is a periodic account
/// of the device for the fleet's dashboards, which show how a device is now:
/// after an outage the newest message says that, and the ten before it (ten
/// minutes at the default 60 s interval) show the way there; older ones are
/// history the device's own counters already sum up, not worth the room or
/// the upstream traffic after the outage. Beyond this, the oldest is dropped
/// (counted).
pub const TELEMETRY_MAX_ENTRIES: u64 = 10;

/// Telemetry may take at most `max_bytes / TELEMETRY_SHARE` of the outbox
/// (1/16: 16 MiB of the default 256 MiB, far more than
/// [`TELEMETRY_MAX_ENTRIES`] messages need; in a small outbox, a bound that
/// leaves nearly all of it to alerts and summaries, which take the rest and
/// evict telemetry first).
pub const TELEMETRY_SHARE: u64 = 16;

/// How much is waiting to go upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// Alerts waiting.
    pub alerts: u64,
    /// Summaries waiting.
    pub summaries: u64,
    /// Telemetry messages waiting.
    pub telemetry: u64,
    /// Bytes they take (subject, message id, nonce and ciphertext of each).
    pub bytes: u64,
}

/// Entries the outbox let go without an upstream acknowledgement, by reason.
///
/// All counts but `undecryptable` are kept in the outbox file, updated in the
/// same transaction as the removal, so they survive restarts and are exact.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Oldest summaries evicted to make room for a newer entry.
    pub summaries_for_space: u64,
    /// New summaries not stored because only alerts were left to evict (alerts
    /// are never evicted to make room for a summary).
    pub summaries_refused: u64,
    /// Oldest alerts evicted to make room for a newer alert, once no summary was
    /// left to evict.
    pub alerts_for_space: u64,
    /// Alerts removed by `Outbox::expire` for age.
    pub expired_alerts: u64,
    /// Summaries removed by `Outbox::expire` for age.
    pub expired_summaries: u64,
    /// Entries moved aside earlier (upstream refused them for good) and
    /// removed from the side table to keep it within its bound, oldest first
    /// (see `Outbox::park`).
    pub parked_discarded: u64,
    /// Logged inputs removed by `Outbox::expire` for age (never one after
    /// its plugin's saved state).
    pub inputs_expired: u64,
    /// Oldest logged inputs removed by `Outbox::expire` to keep the log
    /// within its size (one after its plugin's saved state only when those
    /// alone are over it).
    pub inputs_for_space: u64,
    /// Telemetry messages let go: the oldest beyond [`TELEMETRY_MAX_ENTRIES`]
    /// or the telemetry share, evicted for an alert or a summary, a new one
    /// with no room left (never made by evicting an alert or a summary), or
    /// expired.
    pub telemetry: u64,
    /// Rows `Outbox::next_batch` skipped since the outbox was opened because they
    /// failed to decrypt. They stay in the file (a row leaves only on an
    /// acknowledgement, eviction or expiry), are never delivered, and are
    /// counted again after a restart.
    pub undecryptable: u64,
}

/// A persisted reason for dropping entries: the `reason` column of the `drops` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    SummariesForSpace,
    SummariesRefused,
    AlertsForSpace,
    ExpiredAlerts,
    ExpiredSummaries,
    ParkedDiscarded,
    InputsExpired,
    InputsForSpace,
    Telemetry,
}

impl DropReason {
    pub(crate) const ALL: [DropReason; 9] = [
        DropReason::SummariesForSpace,
        DropReason::SummariesRefused,
        DropReason::AlertsForSpace,
        DropReason::ExpiredAlerts,
        DropReason::ExpiredSummaries,
        DropReason::ParkedDiscarded,
        DropReason::InputsExpired,
        DropReason::InputsForSpace,
        DropReason::Telemetry,
    ];

    /// Its name in the `drops` table.
    pub(crate) fn name(self) -> &'static str {
        match self {
            DropReason::SummariesForSpace => "summaries_for_space",
            DropReason::SummariesRefused => "summaries_refused",
            DropReason::AlertsForSpace => "alerts_for_space",
            DropReason::ExpiredAlerts => "expired_alerts",
            DropReason::ExpiredSummaries => "expired_summaries",
            DropReason::ParkedDiscarded => "parked_discarded",
            DropReason::InputsExpired => "inputs_expired",
            DropReason::InputsForSpace => "inputs_for_space",
            DropReason::Telemetry => "telemetry",
        }
    }

    /// The reason for evicting entries of `kind` to make room.
    pub(crate) fn for_space(kind: Kind) -> DropReason {
        match kind {
            Kind::Alert => DropReason::AlertsForSpace,
            Kind::Summary => DropReason::SummariesForSpace,
            Kind::Telemetry => DropReason::Telemetry,
        }
    }

    /// The reason for expiring entries of `kind`.
    pub(crate) fn expired(kind: Kind) -> DropReason {
        match kind {
            Kind::Alert => DropReason::ExpiredAlerts,
            Kind::Summary => DropReason::ExpiredSummaries,
            Kind::Telemetry => DropReason::Telemetry,
        }
    }

    /// The reason for not storing a new entry of `kind` (`None`: an alert is
    /// never refused).
    pub(crate) fn refused(kind: Kind) -> Option<DropReason> {
        match kind {
            Kind::Alert => None,
            Kind::Summary => Some(DropReason::SummariesRefused),
            Kind::Telemetry => Some(DropReason::Telemetry),
        }
    }
}

impl DropCounts {
    /// The count kept for `reason`.
    pub(crate) fn get(&self, reason: DropReason) -> u64 {
        match reason {
            DropReason::SummariesForSpace => self.summaries_for_space,
            DropReason::SummariesRefused => self.summaries_refused,
            DropReason::AlertsForSpace => self.alerts_for_space,
            DropReason::ExpiredAlerts => self.expired_alerts,
            DropReason::ExpiredSummaries => self.expired_summaries,
            DropReason::ParkedDiscarded => self.parked_discarded,
            DropReason::InputsExpired => self.inputs_expired,
            DropReason::InputsForSpace => self.inputs_for_space,
            DropReason::Telemetry => self.telemetry,
        }
    }

    /// The count kept for `reason`, to change.
    fn get_mut(&mut self, reason: DropReason) -> &mut u64 {
        match reason {
            DropReason::SummariesForSpace => &mut self.summaries_for_space,
            DropReason::SummariesRefused => &mut self.summaries_refused,
            DropReason::AlertsForSpace => &mut self.alerts_for_space,
            DropReason::ExpiredAlerts => &mut self.expired_alerts,
            DropReason::ExpiredSummaries => &mut self.expired_summaries,
            DropReason::ParkedDiscarded => &mut self.parked_discarded,
            DropReason::InputsExpired => &mut self.inputs_expired,
            DropReason::InputsForSpace => &mut self.inputs_for_space,
            DropReason::Telemetry => &mut self.telemetry,
        }
    }

    /// Count `n` more drops for `reason`.
    pub(crate) fn add(&mut self, reason: DropReason, n: u64) {
        let count = self.get_mut(reason);
        *count = count.saturating_add(n);
    }

    /// Add every count of `other`.
    pub(crate) fn add_all(&mut self, other: &DropCounts) {
        for reason in DropReason::ALL {
            self.add(reason, other.get(reason));
        }
        self.undecryptable = self.undecryptable.saturating_add(other.undecryptable);
    }
}
