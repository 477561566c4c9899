//! The outbox's age limit (`[outbox] max_age`), enforced while the host runs:
//! [`Outbox::expire`](super::Outbox::expire) at start, then periodically, on the one connection the
//! writer, the upstream task and the status share (under their mutex).

use std::time::Duration;

use tokio::sync::watch;

use super::{SharedOutbox, wall_ms, with_outbox};

/// How often the outbox is checked for entries past `max_age` (after a first
/// check at start). An entry outlives its limit by at most this much; a check
/// is one indexed `DELETE` (on `created_ms`), nothing when nothing is due.
/// Limits shorter than two intervals (tests, demos) are checked every
/// `max_age / 2` instead, so they are kept to within half their age.
pub const EXPIRE_EVERY: Duration = Duration::from_secs(60);

/// The interval between checks for an age limit of `max_age_ms`.
pub fn expiry_interval(max_age_ms: u64) -> Duration {
    EXPIRE_EVERY
        .min(Duration::from_millis(max_age_ms / 2))
        .max(Duration::from_millis(1))
}

/// Remove entries older than the outbox's `max_age` at start and every
/// [`expiry_interval`], until `stop`. Entries are stamped with the wall clock
/// when they are written ([`wall_ms`], whatever the plugin clock), so
/// their age is measured on the wall clock too. Removed entries are counted
/// by reason in the outbox's drop counters (`expired_alerts`,
/// `expired_summaries`), which the status shows. A failed check is logged
/// and tried again at the next interval (the size limit still holds).
pub async fn run_expiry(outbox: SharedOutbox, every: Duration, stop: watch::Receiver<bool>) {
    crate::clock::every(every, stop, || async {
        match with_outbox(&outbox, |outbox| outbox.expire(wall_ms())).await {
            Ok(0) => {}
            Ok(removed) => {
                tracing::warn!(
                    removed,
                    "Outbox entries older than `[outbox] max_age` expired undelivered"
                );
            }
            Err(error) => tracing::error!(%error, "Cannot expire old outbox entries"),
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interval_is_a_minute_or_half_a_short_age() {
        assert_eq!(expiry_interval(30 * 24 * 3_600_000), EXPIRE_EVERY);
        assert_eq!(expiry_interval(120_000), EXPIRE_EVERY);
        assert_eq!(expiry_interval(60_000), Duration::from_secs(30));
        assert_eq!(expiry_interval(1000), Duration::from_millis(500));
        assert_eq!(expiry_interval(0), Duration::from_millis(1));
    }
}
