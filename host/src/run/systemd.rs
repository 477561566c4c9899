//! The service manager (systemd, `Type=notify`; sd_notify(3) through the
//! `sd-notify` crate): told when the host serves (`READY=1`, once every
//! plugin started is subscribed and the status answers), what it monitors
//! (`STATUS=`, shown by `systemctl status`), and when it stops
//! (`STOPPING=1`). With `WatchdogSec=`, pinged (`WATCHDOG=1`) every half of
//! it while the pipeline moves: the async threads run this task, and no
//! plugin's worker has had work waiting in its queue without taking any for
//! longer than the stall limit. A host that hangs (a bug, a disk that
//! stops answering) is then killed and restarted by systemd instead of
//! staying up, silent. Without `NOTIFY_SOCKET` (not started by a service
//! manager) none of this runs.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::sync::watch;

use super::plugins::{Plugins, Progress};
use super::serve::TaskError;

/// How often the workers are looked at (and the status told if it
/// changed), at most: a short watchdog period is looked at four times in
/// each.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The service manager that started the host, if one did.
#[derive(Debug, Clone)]
pub(super) struct ServiceManager {
    /// `WatchdogSec=`, if set for this process.
    watchdog: Option<Duration>,
    /// Whether the last notification failed (a failure is logged once, and
    /// its end).
    failing: Arc<AtomicBool>,
}

impl ServiceManager {
    /// The service manager named by the environment (`NOTIFY_SOCKET`,
    /// `WATCHDOG_USEC` for this process's id), or `None`.
    pub(super) fn from_env() -> Option<ServiceManager> {
        std::env::var_os("NOTIFY_SOCKET")?;
        Some(ServiceManager {
            watchdog: sd_notify::watchdog_enabled().filter(|period| !period.is_zero()),
            failing: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The host serves: `READY=1` with what it monitors.
    pub(super) fn ready(&self, plugins: &Plugins) {
        self.notify(&[NotifyState::Ready, NotifyState::Status(&monitoring(plugins))]);
    }

    /// The host stops (a signal came): `STOPPING=1`.
    pub(super) fn stopping(&self) {
        self.notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// Look at the workers every [`LOOK_EVERY`] (or less) until `stop`: tell the
    /// status when it changes, and ping the watchdog every half of its
    /// period while no worker is stuck for `stall_limit`.
    pub(super) async fn watch(
        self,
        plugins: Arc<Plugins>,
        stall_limit: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), TaskError> {
        let mut stalls = Stalls::default();
        let mut told = String::new();
        let mut pinged = Instant::now();
        let every = self.watchdog.map_or(LOOK_EVERY, |period| {
            (period / 4).clamp(Duration::from_millis(10), LOOK_EVERY)
        });
        let mut looks = tokio::time::interval(every);
        looks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.changed() => return Ok(()),
                _ = looks.tick() => {}
            }
            let now = Instant::now();
            let stuck = stalls.stuck(&plugins.progress(), now, stall_limit);
            let status = match stuck.first() {
                None => monitoring(&plugins),
                Some((plugin, waited)) => format!(
                    "STUCK: the worker of `{plugin}` has taken no work for {} s while work waits; \
                     no longer telling the watchdog the host is alive",
                    waited.as_secs()
                ),
            };
            if status != told {
                if let Some((plugin, waited)) = stuck.first() {
                    tracing::error!(
                        %plugin,
                        waited_s = waited.as_secs(),
                        "A plugin's worker takes no work while work waits: the watchdog is no longer told the \
                         host is alive, and the service manager will restart it"
                    );
                }
                self.notify(&[NotifyState::Status(&status)]);
                told = status;
            }
            if let Some(period) = self.watchdog
                && stuck.is_empty()
                && now.duration_since(pinged) >= period / 2
            {
                self.notify(&[NotifyState::Watchdog]);
                pinged = now;
            }
        }
    }

    /// Send `states`. A failure (the service manager gone, its socket
    /// full) is logged once, and its end: there is nothing else to do
    /// about it, and the watchdog, if any, will tell.
    fn notify(&self, states: &[NotifyState<'_>]) {
        match sd_notify::notify(states) {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    tracing::warn!("The service manager is notified again");
                }
            }
            Err(error) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    tracing::warn!(%error, "Cannot notify the service manager");
                }
            }
        }
    }
}

/// The status line: which plugins monitor, and what the others do.
fn monitoring(plugins: &Plugins) -> String {
    let states = plugins.states();
    let running: Vec<&str> = states
        .iter()
        .filter(|(_, state)| *state == "running")
        .map(|(name, _)| name.as_str())
        .collect();
    let others: Vec<String> = states
        .iter()
        .filter(|(_, state)| *state != "running")
        .map(|(name, state)| format!("{name} {state}"))
        .collect();
    let mut line = if running.is_empty() {
        "NOT MONITORING: no plugin runs".to_owned()
    } else {
        format!("monitoring with {}", running.join(", "))
    };
    if !others.is_empty() {
        line.push_str(&format!("; {}", others.join(", ")));
    }
    line
}

/// The workers as the watchdog saw them: each one's loop turns, and since
/// when they stand still with work waiting.
#[derive(Debug, Default)]
struct Stalls {
    seen: HashMap<String, (u64, Instant)>,
}

impl Stalls {
    /// The workers that have had work waiting and not turned for longer
    /// than `limit` as of `now`, with how long, the longest first.
    fn stuck(&mut self, progress: &[Progress], now: Instant, limit: Duration) -> Vec<(String, Duration)> {
        self.seen
            .retain(|plugin, _| progress.iter().any(|p| &p.plugin == plugin));
        let mut stuck = Vec::new();
        for worker in progress {
            let seen = self.seen.entry(worker.plugin.clone()).or_insert((worker.turns, now));
            if seen.0 != worker.turns || worker.waiting == 0 {
                // It moved, or has nothing to do: idle is not stuck.
                *seen = (worker.turns, now);
                continue;
            }
            let waited = now.duration_since(seen.1);
            if waited > limit {
                stuck.push((worker.plugin.clone(), waited));
            }
        }
        stuck.sort_by_key(|(_, waited)| std::cmp::Reverse(*waited));
        stuck
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(plugin: &str, waiting: usize, turns: u64) -> Progress {
        Progress {
            plugin: plugin.to_owned(),
            waiting,
            turns,
        }
    }

    #[test]
    fn a_worker_is_stuck_only_when_work_waits_and_it_stands_still_past_the_limit() {
        let limit = Duration::from_secs(10);
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut stalls = Stalls::default();
        // Idle (nothing waiting) for a minute: not stuck.
        for s in 0..60 {
            assert!(stalls.stuck(&[worker("idle", 0, 7)], at(s), limit).is_empty());
        }
        // Busy and moving: not stuck, however much waits.
        for s in 0..60 {
            assert!(stalls.stuck(&[worker("busy", 500, s)], at(s), limit).is_empty());
        }
        // Work waits from 60 s and the loop stands still: stuck past the limit only.
        assert!(stalls.stuck(&[worker("idle", 3, 7)], at(60), limit).is_empty());
        assert!(stalls.stuck(&[worker("idle", 3, 7)], at(70), limit).is_empty());
        assert_eq!(
            stalls.stuck(&[worker("idle", 3, 7)], at(71), limit),
            vec![("idle".to_owned(), Duration::from_secs(11))]
        );
        // One turn, and it is fresh again.
        assert!(stalls.stuck(&[worker("idle", 3, 8)], at(72), limit).is_empty());
        assert!(stalls.stuck(&[worker("idle", 3, 8)], at(82), limit).is_empty());
        // A plugin removed is forgotten; one added starts fresh.
        assert!(stalls.stuck(&[worker("new", 3, 0)], at(90), limit).is_empty());
        assert!(!stalls.seen.contains_key("idle"));
    }
}
