//! When a failed plugin may run again: restart with exponential backoff,
//! quarantine after repeated failures, a trial after the cool-down.
//!
//! Pure state over `Instant`s handed in by the caller, so the policy is
//! tested without sleeping. The worker (`worker.rs`) acts on its decisions.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How failing plugins are restarted and quarantined (`[supervisor]` in the
/// device configuration; one policy for every plugin).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisorPolicy {
    /// Pause before the first restart after a failure; doubled for each
    /// further failure within `quarantine_window`.
    pub backoff_initial: Duration,
    /// Longest pause before a restart.
    pub backoff_max: Duration,
    /// Failures within `quarantine_window` that put a plugin in quarantine.
    pub quarantine_after: usize,
    /// The window over which failures are counted.
    pub quarantine_window: Duration,
    /// How long a quarantined plugin rests before one trial run.
    pub quarantine_cooldown: Duration,
    /// Readings held for a plugin while it is down, delivered after the
    /// restart; beyond this the oldest are dropped and counted.
    pub buffer_readings: usize,
}

impl Default for SupervisorPolicy {
    fn default() -> SupervisorPolicy {
        SupervisorPolicy {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_secs(30),
            quarantine_after: 5,
            quarantine_window: Duration::from_secs(60),
            quarantine_cooldown: Duration::from_secs(300),
            buffer_readings: 10_000,
        }
    }
}

/// What happens after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Run again after this pause.
    Restart(Duration),
    /// Quarantined: one trial after this cool-down.
    Quarantine(Duration),
}

/// Where a plugin stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// Taking work.
    Running,
    /// Failed; runs again at the instant.
    BackingOff(Instant),
    /// Failed too often; one trial at the instant.
    Quarantined(Instant),
}

impl Health {
    /// The state's name in `edgewise status`.
    pub fn name(&self) -> &'static str {
        match self {
            Health::Running => "running",
            Health::BackingOff(_) => "restarting",
            Health::Quarantined(_) => "quarantined",
        }
    }
}

/// The supervision state of one plugin.
#[derive(Debug)]
pub struct Supervisor {
    policy: SupervisorPolicy,
    failures: VecDeque<Instant>,
    health: Health,
    /// Out of quarantine but not yet proven: the next failure before a
    /// success sends it straight back.
    on_trial: bool,
}

impl Supervisor {
    /// A running plugin with no failures.
    pub fn new(policy: SupervisorPolicy) -> Supervisor {
        Supervisor {
            policy,
            failures: VecDeque::new(),
            health: Health::Running,
            on_trial: false,
        }
    }

    /// Where the plugin stands at `now` (a pause that has ended is running).
    pub fn health(&mut self, now: Instant) -> Health {
        match self.health {
            Health::BackingOff(until) | Health::Quarantined(until) if now >= until => {
                self.health = Health::Running;
            }
            _ => {}
        }
        self.health
    }

    /// How long until the plugin may run; `None` if it may now.
    pub fn wait(&mut self, now: Instant) -> Option<Duration> {
        match self.health(now) {
            Health::Running => None,
            Health::BackingOff(until) | Health::Quarantined(until) => Some(until - now),
        }
    }

    /// A call succeeded: a plugin on trial is proven again.
    pub fn succeeded(&mut self) {
        self.on_trial = false;
    }

    /// A call (or a start) failed at `now`.
    pub fn failed(&mut self, now: Instant) -> Decision {
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.policy.quarantine_window)
        {
            self.failures.pop_front();
        }
        self.failures.push_back(now);
        if self.on_trial || self.failures.len() >= self.policy.quarantine_after {
            self.failures.clear();
            self.on_trial = true;
            let cooldown = self.policy.quarantine_cooldown;
            self.health = Health::Quarantined(later(now, cooldown));
            return Decision::Quarantine(cooldown);
        }
        let doublings = u32::try_from(self.failures.len() - 1).unwrap_or(u32::MAX).min(20);
        let backoff = self
            .policy
            .backoff_initial
            .saturating_mul(1 << doublings)
            .min(self.policy.backoff_max);
        self.health = Health::BackingOff(later(now, backoff));
        Decision::Restart(backoff)
    }
}

/// As far ahead as a pause goes when `now + wait` is past what an `Instant`
/// holds: a century (the configuration bounds its durations far below;
/// this keeps any other value from panicking the worker's thread).
const FAR_AHEAD: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + wait`, or [`FAR_AHEAD`] of `now` if that overflows.
fn later(now: Instant, wait: Duration) -> Instant {
    now.checked_add(wait)
        .or_else(|| now.checked_add(FAR_AHEAD))
        // An `Instant` a century from now always exists on the systems
        // the host runs on; `now` is only a last resort that cannot panic.
        .unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> SupervisorPolicy {
        SupervisorPolicy {
            backoff_initial: Duration::from_millis(100),
            backoff_max: Duration::from_millis(350),
            quarantine_after: 4,
            quarantine_window: Duration::from_secs(10),
            quarantine_cooldown: Duration::from_secs(60),
            buffer_readings: 10,
        }
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn backoff_doubles_up_to_the_maximum_then_quarantine() {
        let t0 = Instant::now();
        let mut supervisor = Supervisor::new(policy());
        assert_eq!(supervisor.failed(t0), Decision::Restart(100 * MS));
        assert_eq!(supervisor.health(t0 + 99 * MS), Health::BackingOff(t0 + 100 * MS));
        assert_eq!(supervisor.wait(t0 + 40 * MS), Some(60 * MS));
        assert_eq!(supervisor.health(t0 + 100 * MS), Health::Running);
        assert_eq!(supervisor.failed(t0 + MS * 200), Decision::Restart(200 * MS));
        assert_eq!(supervisor.failed(t0 + MS * 500), Decision::Restart(350 * MS));
        assert_eq!(
            supervisor.failed(t0 + MS * 900),
            Decision::Quarantine(Duration::from_secs(60))
        );
        assert_eq!(supervisor.health(t0 + MS * 900).name(), "quarantined");
        assert_eq!(supervisor.wait(t0 + MS * 60_900), None);
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let t0 = Instant::now();
        let mut supervisor = Supervisor::new(policy());
        for i in 0..10u32 {
            // One failure every 4 s: never 4 within 10 s.
            let decision = supervisor.failed(t0 + Duration::from_secs(4) * i);
            assert!(matches!(decision, Decision::Restart(_)), "failure {i}: {decision:?}");
        }
    }

    #[test]
    fn a_failed_trial_goes_straight_back_to_quarantine_and_a_success_ends_the_trial() {
        let t0 = Instant::now();
        let mut supervisor = Supervisor::new(policy());
        for i in 0..4u32 {
            supervisor.failed(t0 + MS * i);
        }
        let trial = t0 + Duration::from_secs(61);
        assert_eq!(supervisor.health(trial), Health::Running);
        assert_eq!(supervisor.failed(trial), Decision::Quarantine(Duration::from_secs(60)));
        let second_trial = trial + Duration::from_secs(61);
        assert_eq!(supervisor.health(second_trial), Health::Running);
        supervisor.succeeded();
        assert_eq!(supervisor.failed(second_trial + MS), Decision::Restart(100 * MS));
    }

    #[test]
    fn a_pause_past_the_end_of_time_is_a_very_long_one_not_a_panic() {
        // The configuration bounds its durations; this one must not panic
        // whatever it is given (a panic here once killed the worker thread
        // silently).
        let t0 = Instant::now();
        let endless = SupervisorPolicy {
            backoff_initial: Duration::MAX,
            backoff_max: Duration::MAX,
            quarantine_cooldown: Duration::MAX,
            ..policy()
        };
        let mut supervisor = Supervisor::new(endless);
        assert_eq!(supervisor.failed(t0), Decision::Restart(Duration::MAX));
        assert_eq!(
            supervisor.health(t0 + Duration::from_secs(1 << 30)).name(),
            "restarting"
        );
        assert!(
            supervisor
                .wait(t0)
                .is_some_and(|wait| wait > Duration::from_secs(1 << 30))
        );
        for i in 1..4u32 {
            supervisor.failed(t0 + MS * i);
        }
        assert_eq!(
            supervisor.health(t0 + Duration::from_secs(1 << 30)).name(),
            "quarantined"
        );
    }
}
