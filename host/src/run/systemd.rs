//! The service manager (systemd, `Type=notify`; sd_notify(3), the
//! `sd-notify` crate's states): told when the host serves (`READY=1`, once every
//! plugin started is subscribed and the status responder too, and the
//! plugins' first `init` has ended, for at most 15 s), what it
//! monitors (`STATUS=`, shown by `systemctl status`), and when it stops
//! (`STOPPING=1`). With `WatchdogSec=`, pinged (`WATCHDOG=1`) at least four
//! times a period while the pipeline moves: the async threads run this
//! task, and no plugin's worker is gone or has had work waiting in its queue
//! without a step (a turn of its loop, a call into the plugin begun or
//! ended) for longer than the stall limit. A host that hangs (a bug, a
//! deadlock) is then killed and restarted by systemd instead of staying up,
//! silent. Without `NOTIFY_SOCKET` (not started by a service manager) none
//! of this runs.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio::sync::watch;

use super::plugins::{Plugins, Progress};
use super::serve::TaskError;
use crate::worker::STARTING;

/// How often the workers are looked at (and the status told if it
/// changed), at most: a short watchdog period is looked at four times in
/// each.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The longest `READY=1` waits for plugins `starting` (well within
/// systemd's default start timeout, 90 s).
const STARTING_WAIT: Duration = Duration::from_secs(15);

/// How often `READY=1` looks whether plugins are still `starting`.
const STARTING_LOOK: Duration = Duration::from_millis(20);

/// The service manager that started the host, if one did.
#[derive(Debug, Clone)]
pub(super) struct ServiceManager {
    /// Its socket (`NOTIFY_SOCKET`): a path, or `@name` in the abstract
    /// namespace.
    socket: PathBuf,
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
        let socket = std::env::var_os("NOTIFY_SOCKET")?;
        Some(ServiceManager {
            socket: socket.into(),
            watchdog: sd_notify::watchdog_enabled().filter(|period| !period.is_zero()),
            failing: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The host serves: `READY=1` with what it monitors, once no plugin is
    /// `starting` (each one's first `init` ended, or failed and is
    /// supervised) or after [`STARTING_WAIT`], whichever comes first: a
    /// unit that orders itself after this one finds the plugins monitoring,
    /// and a plugin still recovering a long input log is shown `starting`,
    /// not waited for past the service manager's start timeout.
    pub(super) async fn ready(&self, plugins: &Plugins) {
        let until = Instant::now() + STARTING_WAIT;
        // The states waited on are the ones told: a plugin that leaves
        // `starting` and starts again between two looks is not told as
        // `starting` after the wait ended.
        let mut states = plugins.states();
        while Instant::now() < until && states.iter().any(|(_, state)| *state == STARTING) {
            tokio::time::sleep(STARTING_LOOK).await;
            states = plugins.states();
        }
        self.notify(&[NotifyState::Ready, NotifyState::Status(&monitoring(&states))]);
    }

    /// The host stops (a signal came): `STOPPING=1`.
    pub(super) fn stopping(&self) {
        self.notify(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    /// Look at the workers every [`LOOK_EVERY`] (a quarter of the watchdog
    /// period if that is less) until `stop`: tell the status when it
    /// changes, and ping the watchdog at each look while no worker is
    /// stuck for `stall_limit`.
    pub(super) async fn watch(
        self,
        plugins: Arc<Plugins>,
        stall_limit: Duration,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), TaskError> {
        let mut stalls = Stalls::default();
        let mut told = String::new();
        let mut stuck_before = false;
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
            let stuck = stalls.stuck(&plugins.progress(), Instant::now(), stall_limit);
            let status = match stuck.first() {
                None => monitoring(&plugins.states()),
                Some(Stuck { plugin, gone: true, .. }) => {
                    format!("STUCK: the worker of `{plugin}` is gone; no longer telling the watchdog the host is alive")
                }
                Some(Stuck { plugin, .. }) => format!(
                    "STUCK: the worker of `{plugin}` has taken no step for over {} s while work waits; no \
                     longer telling the watchdog the host is alive",
                    stall_limit.as_secs()
                ),
            };
            if let Some(Stuck { plugin, waited, gone }) = stuck.first()
                && !stuck_before
            {
                tracing::error!(
                    %plugin,
                    waited_s = waited.as_secs(),
                    gone,
                    "A plugin's worker takes no step while work waits: the watchdog is no longer told the host \
                     is alive, and the service manager will restart it"
                );
            }
            stuck_before = !stuck.is_empty();
            if status != told {
                self.notify(&[NotifyState::Status(&status)]);
                told = status;
            }
            if self.watchdog.is_some() && stuck.is_empty() {
                self.notify(&[NotifyState::Watchdog]);
            }
        }
    }

    /// Send `states`. A failure (the service manager gone, its socket
    /// full) is logged once, and its end: there is nothing else to do
    /// about it, and the watchdog, if any, will tell.
    fn notify(&self, states: &[NotifyState<'_>]) {
        match self.send(states) {
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

impl ServiceManager {
    /// One datagram of `states`, a line each, as sd_notify(3) sends it (the
    /// crate's own `notify` does not take an abstract socket, `@name`).
    fn send(&self, states: &[NotifyState<'_>]) -> std::io::Result<()> {
        use std::os::linux::net::SocketAddrExt;
        use std::os::unix::ffi::OsStrExt;
        use std::os::unix::net::{SocketAddr, UnixDatagram};
        let message: String = states.iter().map(|state| format!("{state}\n")).collect();
        let socket = UnixDatagram::unbound()?;
        // A service manager that reads nothing must not hold the thread
        // (its queue full, a send would wait): then it fails, logged once.
        socket.set_nonblocking(true)?;
        let address = match self.socket.as_os_str().as_bytes().strip_prefix(b"@") {
            Some(name) => SocketAddr::from_abstract_name(name)?,
            None => SocketAddr::from_pathname(&self.socket)?,
        };
        let sent = socket.send_to_addr(message.as_bytes(), &address)?;
        if sent < message.len() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                "the notification was cut",
            ));
        }
        Ok(())
    }
}

/// The status line: which plugins monitor, and what the others do.
fn monitoring(states: &[(String, &'static str)]) -> String {
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

/// A worker the watchdog holds stuck.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stuck {
    plugin: String,
    /// How long it has stood still with work waiting.
    waited: Duration,
    /// Its thread is gone.
    gone: bool,
}

/// The workers as the watchdog saw them: each one's steps, and since when
/// they stand still with work waiting.
#[derive(Debug, Default)]
struct Stalls {
    seen: HashMap<String, (u64, Instant)>,
}

impl Stalls {
    /// The workers gone, or that have had work waiting and not stepped for
    /// longer than `limit` as of `now`; the longest first.
    fn stuck(&mut self, progress: &[Progress], now: Instant, limit: Duration) -> Vec<Stuck> {
        self.seen
            .retain(|plugin, _| progress.iter().any(|p| &p.plugin == plugin));
        let mut stuck = Vec::new();
        for worker in progress {
            let seen = self.seen.entry(worker.plugin.clone()).or_insert((worker.steps, now));
            if !worker.gone && (seen.0 != worker.steps || worker.waiting == 0) {
                // It moved, or has nothing to do: idle is not stuck.
                *seen = (worker.steps, now);
                continue;
            }
            let waited = now.duration_since(seen.1);
            if worker.gone || waited > limit {
                stuck.push(Stuck {
                    plugin: worker.plugin.clone(),
                    waited,
                    gone: worker.gone,
                });
            }
        }
        stuck.sort_by_key(|stuck| std::cmp::Reverse(stuck.waited));
        stuck
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(plugin: &str, waiting: usize, steps: u64) -> Progress {
        Progress {
            plugin: plugin.to_owned(),
            waiting,
            steps,
            gone: false,
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
            vec![Stuck {
                plugin: "idle".to_owned(),
                waited: Duration::from_secs(11),
                gone: false
            }]
        );
        // One turn, and it is fresh again.
        assert!(stalls.stuck(&[worker("idle", 3, 8)], at(72), limit).is_empty());
        assert!(stalls.stuck(&[worker("idle", 3, 8)], at(82), limit).is_empty());
        // A plugin removed is forgotten; one added starts fresh.
        assert!(stalls.stuck(&[worker("new", 3, 0)], at(90), limit).is_empty());
        assert!(!stalls.seen.contains_key("idle"));
        // A worker gone (its queue closed) is stuck at once, work or not.
        let gone = Progress {
            gone: true,
            ..worker("new", 0, 0)
        };
        assert_eq!(stalls.stuck(&[gone], at(91), limit)[0].plugin, "new");
    }
}
