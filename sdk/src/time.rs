//! Calendar helpers for UTC windows, on milliseconds since the Unix epoch.

/// One minute in milliseconds.
pub const MINUTE_MS: i64 = 60_000;
/// One hour in milliseconds.
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
/// One day in milliseconds.
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// The start of the `period_ms`-long window holding `timestamp_ms`, with
/// windows aligned to the epoch (so UTC hours and days for `HOUR_MS`, `DAY_MS`).
/// Correct for timestamps before 1970 too; saturates at `i64::MIN` instead
/// of overflowing, and treats a period below 1 ms as 1 ms.
///
/// ```
/// use edgewise_sdk::time::{HOUR_MS, MINUTE_MS, window_start};
///
/// // 10:07 falls in the hour that starts at 10:00.
/// assert_eq!(window_start(10 * HOUR_MS + 7 * MINUTE_MS, HOUR_MS), 10 * HOUR_MS);
/// ```
pub fn window_start(timestamp_ms: i64, period_ms: i64) -> i64 {
    timestamp_ms.saturating_sub(timestamp_ms.rem_euclid(period_ms.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_align_to_utc_hours_and_days() {
        assert_eq!(window_start(HOUR_MS + 5, HOUR_MS), HOUR_MS);
        assert_eq!(window_start(DAY_MS - 1, DAY_MS), 0);
        assert_eq!(window_start(-1, HOUR_MS), -HOUR_MS);
        assert_eq!(window_start(i64::MIN + 1, HOUR_MS), i64::MIN);
        assert_eq!(window_start(5, 0), 5);
    }
}
