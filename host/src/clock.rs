//! The host clock: wall time, or a simulated clock that starts at a given
//! instant and runs faster than real time (demos, soak tests). Ingest judges
//! readings against it, ticks and the host's own alerts are stamped with it,
//! and plugins read it through WASI.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Clock of a run (`[clock]`).
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

/// Ticks report the clock as it was this long ago (real time), so that a
/// reading published just before a tick, still in flight on the bus, reaches
/// the plugin before the tick that covers it. Outputs do not depend on it:
/// plugins take every timestamp from readings (DESIGN "Runtime").
pub const TICK_LAG: Duration = Duration::from_millis(200);

/// The longest real interval [`Clock::real_interval`] gives: a century, which
/// an `Instant` (and a tokio timer) can still be moved by without overflow,
/// where a slower clock's would not.
pub const LONGEST_INTERVAL: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A clock: milliseconds since the epoch.
#[derive(Debug, Clone)]
pub struct Clock {
    config: ClockConfig,
    started: Instant,
}

impl Clock {
    /// Start the clock now.
    pub fn start(config: ClockConfig) -> Clock {
        Clock {
            config,
            started: Instant::now(),
        }
    }

    /// The current time in ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        self.at(Instant::now())
    }

    /// The time for a tick: the clock [`TICK_LAG`] ago.
    pub fn tick_ms(&self) -> i64 {
        self.at(Instant::now()
            .checked_sub(TICK_LAG)
            .unwrap_or(self.started)
            .max(self.started))
    }

    fn at(&self, instant: Instant) -> i64 {
        match &self.config {
            ClockConfig::Wall => {
                let ago = Instant::now().saturating_duration_since(instant);
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                i64::try_from(now.saturating_sub(ago).as_millis()).unwrap_or(i64::MAX)
            }
            ClockConfig::Simulated { start_ms, speed } => {
                let elapsed = instant.saturating_duration_since(self.started).as_secs_f64() * 1000.0;
                start_ms.saturating_add((elapsed * speed) as i64)
            }
        }
    }

    /// Real time between two ticks `tick` of clock time apart.
    pub fn real_interval(&self, tick: Duration) -> Duration {
        match &self.config {
            ClockConfig::Wall => tick,
            // Checked: a tiny speed (or zero) makes an interval no Duration
            // holds, where `div_f64` panics.
            ClockConfig::Simulated { speed, .. } => Duration::try_from_secs_f64(tick.as_secs_f64() / speed)
                .map_or(LONGEST_INTERVAL, |interval| interval.min(LONGEST_INTERVAL))
                .max(Duration::from_millis(1)),
        }
    }
}

/// Call `tick` at once and then every `period` (a late call delays the next
/// ones rather than bunching them), until `stop` changes.
pub async fn every<F: std::future::Future<Output = ()>>(
    period: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut tick: impl FnMut() -> F,
) {
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            _ = interval.tick() => tick().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_clock_starts_at_start_and_scales_intervals() {
        let clock = Clock::start(ClockConfig::Simulated {
            start_ms: 1_000_000,
            speed: 60.0,
        });
        assert_eq!(clock.tick_ms(), 1_000_000, "a tick never reports time before the start");
        assert_eq!(clock.real_interval(Duration::from_secs(60)), Duration::from_secs(1));
    }

    #[test]
    fn an_interval_too_long_is_the_longest_one_not_a_panic() {
        // The configuration bounds `speed`; this must not panic whatever it is given.
        for speed in [1e-20, 0.0, f64::MIN_POSITIVE] {
            let clock = Clock::start(ClockConfig::Simulated { start_ms: 0, speed });
            assert_eq!(
                clock.real_interval(Duration::from_secs(5)),
                LONGEST_INTERVAL,
                "speed {speed}"
            );
        }
    }
}
