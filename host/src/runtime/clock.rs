//! The time a plugin can read through WASI: the host's clock, not the
//! machine's. Live, the host clock may be simulated (demos, soak tests); in
//! replay it is the virtual time of the call, so that a replay stays
//! byte-identical even for a plugin that (wrongly) reads the clock.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// The clock a plugin reads through WASI (`wall-clock.now`,
/// `monotonic-clock.now`, and the deadlines of `subscribe-duration` /
/// `subscribe-instant`).
#[derive(Clone)]
pub struct PluginClock {
    kind: Kind,
}

#[derive(Clone)]
enum Kind {
    /// The machine's clocks.
    System,
    /// The host's clock, read through this function (ms since the epoch).
    Host(Arc<dyn Fn() -> i64 + Send + Sync>),
    /// A virtual clock (ms since the epoch) that only the calls move:
    /// `on-tick` to its time, `on-readings` to its latest reading.
    Virtual(Arc<AtomicI64>),
}

impl fmt::Debug for PluginClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::System => f.write_str("PluginClock::System"),
            Kind::Host(_) => f.write_str("PluginClock::Host"),
            Kind::Virtual(now) => write!(f, "PluginClock::Virtual({})", now.load(Ordering::Relaxed)),
        }
    }
}

impl PluginClock {
    /// The machine's clocks.
    pub fn system() -> PluginClock {
        PluginClock { kind: Kind::System }
    }

    /// The host's clock: `now_ms` gives ms since the epoch (e.g. a simulated
    /// clock). It should not go backwards; the monotonic clock the plugin
    /// sees never does.
    pub fn host(now_ms: impl Fn() -> i64 + Send + Sync + 'static) -> PluginClock {
        PluginClock {
            kind: Kind::Host(Arc::new(now_ms)),
        }
    }

    /// A virtual clock starting at `start_ms`, moved only by the calls:
    /// `on-tick(t)` sets it to `t`, `on-readings` to the batch's latest
    /// timestamp (never backwards). For replay.
    pub fn virtual_at(start_ms: i64) -> PluginClock {
        PluginClock {
            kind: Kind::Virtual(Arc::new(AtomicI64::new(start_ms))),
        }
    }

    /// Now, in ms since the epoch.
    pub(crate) fn now_ms(&self) -> i64 {
        match &self.kind {
            Kind::System => system_ms(),
            Kind::Host(now) => now(),
            Kind::Virtual(now) => now.load(Ordering::Relaxed),
        }
    }

    /// Move a virtual clock forward to `ms`; other clocks run by themselves.
    pub(crate) fn advance_to(&self, ms: i64) {
        if let Kind::Virtual(now) = &self.kind {
            now.fetch_max(ms, Ordering::Relaxed);
        }
    }

    /// The WASI clocks of one instance over this clock.
    pub(crate) fn wasi(&self) -> (WallClock, Arc<MonotonicClock>) {
        (WallClock(self.clone()), Arc::new(MonotonicClock::new(self.clone())))
    }
}

fn system_ms() -> i64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}

/// `wasi:clocks/wall-clock` over a [`PluginClock`].
pub(crate) struct WallClock(PluginClock);

impl HostWallClock for WallClock {
    fn resolution(&self) -> Duration {
        match self.0.kind {
            Kind::System => Duration::from_nanos(1),
            _ => Duration::from_millis(1),
        }
    }

    fn now(&self) -> Duration {
        match self.0.kind {
            Kind::System => SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default(),
            _ => Duration::from_millis(u64::try_from(self.0.now_ms()).unwrap_or(0)),
        }
    }
}

/// `wasi:clocks/monotonic-clock` over a [`PluginClock`]: nanoseconds since
/// the instance was created, never decreasing.
pub(crate) struct MonotonicClock {
    clock: PluginClock,
    origin_ms: i64,
    origin: Instant,
    last_ns: AtomicU64,
}

impl MonotonicClock {
    fn new(clock: PluginClock) -> MonotonicClock {
        MonotonicClock {
            origin_ms: clock.now_ms(),
            origin: Instant::now(),
            clock,
            last_ns: AtomicU64::new(0),
        }
    }

    /// Nanoseconds since the origin.
    pub(crate) fn now_ns(&self) -> u64 {
        let ns = match self.clock.kind {
            Kind::System => u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX),
            _ => u64::try_from(self.clock.now_ms().saturating_sub(self.origin_ms))
                .unwrap_or(0)
                .saturating_mul(1_000_000),
        };
        // A host clock that steps back must not make monotonic time do so.
        self.last_ns.fetch_max(ns, Ordering::Relaxed).max(ns)
    }
}

/// The `Box<dyn HostMonotonicClock>` WASI needs, sharing the instance's clock
/// with the host's own `subscribe-*` functions.
pub(crate) struct SharedMonotonic(pub(crate) Arc<MonotonicClock>);

impl HostMonotonicClock for SharedMonotonic {
    fn resolution(&self) -> u64 {
        match self.0.clock.kind {
            Kind::System => 1,
            _ => 1_000_000,
        }
    }

    fn now(&self) -> u64 {
        self.0.now_ns()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_virtual_clock_moves_only_forward_and_only_when_told() {
        let clock = PluginClock::virtual_at(1_000);
        let (wall, monotonic) = clock.wasi();
        assert_eq!(wall.now(), Duration::from_millis(1_000));
        assert_eq!(monotonic.now_ns(), 0);
        clock.advance_to(6_000);
        clock.advance_to(2_000);
        assert_eq!(wall.now(), Duration::from_millis(6_000));
        assert_eq!(monotonic.now_ns(), 5_000_000_000);
    }

    #[test]
    fn a_host_clock_is_read_through_its_function_and_monotonic_time_never_steps_back() {
        let now = Arc::new(AtomicI64::new(50_000));
        let source = now.clone();
        let clock = PluginClock::host(move || source.load(Ordering::Relaxed));
        let (wall, monotonic) = clock.wasi();
        now.store(53_000, Ordering::Relaxed);
        assert_eq!(wall.now(), Duration::from_millis(53_000));
        assert_eq!(monotonic.now_ns(), 3_000_000_000);
        // advance_to does not touch a host clock.
        clock.advance_to(90_000);
        assert_eq!(clock.now_ms(), 53_000);
        now.store(51_000, Ordering::Relaxed);
        assert_eq!(monotonic.now_ns(), 3_000_000_000, "never backwards");
    }
}
