//! When a plugin next needs [`Plugin::on_tick`](crate::Plugin::on_tick).
//!
//! Contract 0.2 calls `on-tick` only when a plugin asks for it. A plugin says
//! when with [`Plugin::next_wake`](crate::Plugin::next_wake), after every
//! reading and tick; the SDK turns the answer into the time the host sees.

use crate::time::MINUTE_MS;

/// The tick interval of [`Wake::Every`] by default, and of contract 0.1:
/// five minutes of the host clock (virtual in replay).
pub const DEFAULT_TICK_MS: i64 = 5 * MINUTE_MS;

/// The host ticks a plugin at most once per second of its clock: a wake
/// sooner than this after the last tick is moved to it
/// (`edgewise:plugin@0.2.0`, `type wake`). The SDK applies the same rule.
pub const MIN_WAKE_INTERVAL_MS: i64 = 1_000;

/// When the plugin next needs a tick.
///
/// ```
/// use edgewise_sdk::Wake;
/// use edgewise_sdk::time::MINUTE_MS;
///
/// // A sensor last heard at `last_ms` is silent 20 minutes later: wake then.
/// let last_ms: Option<i64> = Some(1_000_000);
/// let wake = last_ms.map_or(Wake::Idle, |last| Wake::At(last + 20 * MINUTE_MS));
/// assert_eq!(wake, Wake::At(2_200_000));
/// assert_eq!(Wake::default(), Wake::Every(5 * MINUTE_MS));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// Not until a reading arrives (asked again after it).
    Idle,
    /// Once the host clock reaches this time, in milliseconds since the Unix epoch.
    At(i64),
    /// On a fixed grid of this many milliseconds, aligned to the epoch, as
    /// contract 0.1 ticked: at the first multiple at or after the first
    /// reading, then at every multiple after the last tick. The default.
    Every(i64),
}

impl Default for Wake {
    fn default() -> Wake {
        Wake::Every(DEFAULT_TICK_MS)
    }
}

/// The first multiple of `step_ms` (aligned to the epoch) at or after
/// `timestamp_ms`; saturates instead of overflowing, and treats a step below
/// 1 ms as 1 ms. For plugins that wake on a grid of their own.
///
/// ```
/// use edgewise_sdk::time::HOUR_MS;
/// use edgewise_sdk::wake::grid_at_or_after;
///
/// assert_eq!(grid_at_or_after(HOUR_MS + 1, HOUR_MS), 2 * HOUR_MS); // the next full hour
/// ```
pub fn grid_at_or_after(timestamp_ms: i64, step_ms: i64) -> i64 {
    let step = step_ms.max(1);
    match timestamp_ms.rem_euclid(step) {
        0 => timestamp_ms,
        rest => timestamp_ms.saturating_add(step - rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_rounds_up_to_the_next_multiple() {
        assert_eq!(grid_at_or_after(0, 300), 0);
        assert_eq!(grid_at_or_after(1, 300), 300);
        assert_eq!(grid_at_or_after(300, 300), 300);
        assert_eq!(grid_at_or_after(-1, 300), 0);
        assert_eq!(grid_at_or_after(-301, 300), -300);
        assert_eq!(grid_at_or_after(i64::MAX - 1, 300), i64::MAX);
        assert_eq!(grid_at_or_after(7, 0), 7);
    }
}
