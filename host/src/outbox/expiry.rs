//! The outbox's age limit (`[outbox] max_age`), enforced while the host runs:
//! [`Outbox::expire`](super::Outbox::expire) at start, then periodically, on the one connection the
//! writer, the upstream task and the status share (under their mutex).

use std::time::{Duration, Instant};

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

/// A forward step of the wall clock, beyond the time that passed, from which
/// on it is taken for a jump (a clock set by NTP after a boot at a stale
/// time); smaller steps (slews, a late check) are not corrected.
pub const JUMP_AT_LEAST: Duration = Duration::from_secs(120);

/// A forward jump of the wall clock: stamps before `before_ms` are `by_ms`
/// too early (see `Outbox::clock_jumped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Jump {
    /// What the wall clock would read now had it not jumped.
    pub before_ms: i64,
    /// How far it jumped.
    pub by_ms: i64,
}

/// The wall clock watched against the monotonic one from one check to the
/// next: the monotonic clock never jumps, so the wall clock moving further
/// than it did is a jump.
#[derive(Debug, Clone, Copy)]
pub struct ClockWatch {
    seen_at: Instant,
    wall_ms: i64,
}

impl ClockWatch {
    /// Watch from now: `seen_at` and the wall clock then.
    pub fn new(seen_at: Instant, wall_ms: i64) -> ClockWatch {
        ClockWatch { seen_at, wall_ms }
    }

    /// Look again at `seen_at`, the wall clock reading `wall_ms`: the jump
    /// since the last look, if it jumped forward by at least
    /// [`JUMP_AT_LEAST`] and by more than the time that passed (so that
    /// every stamp made after the jump is past `before_ms`, and none made
    /// before it is).
    pub fn look(&mut self, seen_at: Instant, wall_ms: i64) -> Option<Jump> {
        let passed = i64::try_from(seen_at.saturating_duration_since(self.seen_at).as_millis()).unwrap_or(i64::MAX);
        let before_ms = self.wall_ms.saturating_add(passed);
        let by_ms = wall_ms.saturating_sub(before_ms);
        *self = ClockWatch::new(seen_at, wall_ms);
        let at_least = i64::try_from(JUMP_AT_LEAST.as_millis()).unwrap_or(i64::MAX);
        (by_ms >= at_least && by_ms > passed).then_some(Jump { before_ms, by_ms })
    }
}

/// Remove entries older than the outbox's `max_age` at start and every
/// [`expiry_interval`], until `stop`. Entries are stamped with the wall clock
/// when they are written ([`wall_ms`], whatever the plugin clock), so
/// their age is measured on the wall clock too. Removed entries are counted
/// by reason in the outbox's drop counters (`expired_alerts`,
/// `expired_summaries`), which the status shows. A failed check is logged
/// and tried again at the next interval (the size limit still holds).
///
/// A forward jump of the wall clock between two checks is recorded first
/// ([`ClockWatch`]), so that what waited through it keeps its age.
pub async fn run_expiry(outbox: SharedOutbox, every: Duration, stop: watch::Receiver<bool>) {
    let watch = std::sync::Mutex::new(ClockWatch::new(Instant::now(), wall_ms()));
    crate::clock::every(every, stop, || async {
        let now_ms = wall_ms();
        let jump = watch
            .lock()
            .map(|mut watch| watch.look(Instant::now(), now_ms))
            .unwrap_or_default();
        if let Some(jump) = jump {
            tracing::warn!(
                by = %humantime::format_duration(Duration::from_millis(jump.by_ms.unsigned_abs())),
                "The wall clock jumped forward: what waits in the outbox keeps its age"
            );
            if let Err(error) =
                with_outbox(&outbox, move |outbox| outbox.clock_jumped(jump.before_ms, jump.by_ms)).await
            {
                tracing::error!(%error, "Cannot record the clock's jump: waiting entries may expire early");
            }
        }
        match with_outbox(&outbox, move |outbox| outbox.expire(now_ms)).await {
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
    fn a_wall_clock_moving_further_than_the_monotonic_one_is_a_jump_once() {
        let start = Instant::now();
        let mut watch = ClockWatch::new(start, 1_000);
        // A minute passes on both: no jump.
        let minute = Duration::from_secs(60);
        assert_eq!(watch.look(start + minute, 61_000), None);
        // A minute passes, the wall clock moves a year: a jump, from what it
        // would read (121 s) by the rest.
        let year_ms = 365 * 86_400_000;
        let jump = watch.look(start + 2 * minute, 121_000 + year_ms);
        assert_eq!(
            jump,
            Some(Jump {
                before_ms: 121_000,
                by_ms: year_ms
            })
        );
        // Then steady again: no second jump.
        assert_eq!(watch.look(start + 3 * minute, 181_000 + year_ms), None);
        // Steps below the threshold, or backwards, are not jumps.
        assert_eq!(watch.look(start + 4 * minute, 241_000 + year_ms + 119_000), None);
        assert_eq!(watch.look(start + 5 * minute, 1_000), None);
    }

    #[test]
    fn the_interval_is_a_minute_or_half_a_short_age() {
        assert_eq!(expiry_interval(30 * 24 * 3_600_000), EXPIRE_EVERY);
        assert_eq!(expiry_interval(120_000), EXPIRE_EVERY);
        assert_eq!(expiry_interval(60_000), Duration::from_secs(30));
        assert_eq!(expiry_interval(1000), Duration::from_millis(500));
        assert_eq!(expiry_interval(0), Duration::from_millis(1));
    }
}
