//! Hypo- and hyperglycaemia episodes (International Consensus 2023): four
//! independent state machines per sensor.

use crate::config::Settings;
use serde::{Deserialize, Serialize};

/// Number of episode kinds, in the order of [`Episodes::update`]'s result and
/// of the `*_episodes` summary metrics.
pub const KINDS: usize = 4;

/// Which side of the threshold meets the condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Side {
    /// Value < threshold (hypoglycaemia).
    Below,
    /// Value > threshold (hyperglycaemia).
    Above,
}

/// Consecutive readings that meet (or, during an episode, fail) the condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Run {
    start_ms: i64,
    readings: i64,
}

impl Run {
    /// Extend the run with one reading at `timestamp_ms` (starting it if needed)
    /// and tell whether it now lasts `duration_ms`: readings x sensor interval.
    fn extend(run: &mut Option<Run>, timestamp_ms: i64, interval_ms: i64, duration_ms: i64) -> Option<Run> {
        let run = run.get_or_insert(Run {
            start_ms: timestamp_ms,
            readings: 0,
        });
        run.readings = run.readings.saturating_add(1);
        (run.readings.saturating_mul(interval_ms) >= duration_ms).then_some(*run)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Phase {
    /// No episode; `run` is the candidate run meeting the condition, if any.
    Idle { run: Option<Run> },
    /// In an episode; `recovery` is the run of readings not meeting it, if any.
    Open { recovery: Option<Run> },
}

/// One episode state machine (e.g. level 1 hypoglycaemia).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Machine {
    side: Side,
    threshold: f64,
    phase: Phase,
}

impl Machine {
    fn new(side: Side, threshold: f64) -> Machine {
        Machine {
            side,
            threshold,
            phase: Phase::Idle { run: None },
        }
    }

    fn meets(&self, value: f64) -> bool {
        match self.side {
            Side::Below => value < self.threshold,
            Side::Above => value > self.threshold,
        }
    }

    /// Feed one valid in-order reading; `Some(start)` when an episode starts,
    /// `start` being the first reading of the qualifying run.
    fn update(&mut self, timestamp_ms: i64, value: f64, interval_ms: i64, duration_ms: i64) -> Option<i64> {
        let meets = self.meets(value);
        match &mut self.phase {
            Phase::Idle { run } if meets => {
                let done = Run::extend(run, timestamp_ms, interval_ms, duration_ms)?;
                self.phase = Phase::Open { recovery: None };
                Some(done.start_ms)
            }
            Phase::Idle { run } => {
                *run = None;
                None
            }
            // The condition holds again: the episode goes on, recovery restarts.
            Phase::Open { recovery } if meets => {
                *recovery = None;
                None
            }
            Phase::Open { recovery } => {
                if Run::extend(recovery, timestamp_ms, interval_ms, duration_ms).is_some() {
                    self.phase = Phase::Idle { run: None };
                }
                None
            }
        }
    }
}

/// The four episode machines of a sensor: level 1 and 2 hypo, level 1 and 2 hyper.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Episodes {
    machines: [Machine; KINDS],
}

impl Episodes {
    /// Machines for the thresholds of `settings`.
    pub fn new(settings: &Settings) -> Episodes {
        Episodes {
            machines: [
                Machine::new(Side::Below, settings.hypo_l1),
                Machine::new(Side::Below, settings.hypo_l2),
                Machine::new(Side::Above, settings.hyper_l1),
                Machine::new(Side::Above, settings.hyper_l2),
            ],
        }
    }

    /// Feed one valid in-order reading. For each kind, `Some(start)` when an
    /// episode started whose first reading is at `start`.
    pub fn update(
        &mut self,
        timestamp_ms: i64,
        value: f64,
        interval_ms: i64,
        duration_ms: i64,
    ) -> [Option<i64>; KINDS] {
        self.machines
            .each_mut()
            .map(|machine| machine.update(timestamp_ms, value, interval_ms, duration_ms))
    }

    /// A gap in the data: end every open episode and drop every run in progress.
    pub fn reset(&mut self) {
        for machine in &mut self.machines {
            machine.phase = Phase::Idle { run: None };
        }
    }

    /// Whether every machine is idle with no run: [`Episodes::reset`] would
    /// change nothing.
    pub fn is_reset(&self) -> bool {
        self.machines
            .iter()
            .all(|machine| machine.phase == Phase::Idle { run: None })
    }

    /// The earliest first reading of a candidate run that may still become an
    /// episode (the summary windows from there on must wait for it).
    pub fn undecided_since(&self) -> Option<i64> {
        self.machines
            .iter()
            .filter_map(|machine| match machine.phase {
                Phase::Idle { run } => run.map(|run| run.start_ms),
                Phase::Open { .. } => None,
            })
            .min()
    }

    /// Which kinds are in an episode right now.
    #[cfg(test)]
    pub fn open(&self) -> [bool; KINDS] {
        self.machines
            .each_ref()
            .map(|machine| matches!(machine.phase, Phase::Open { .. }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use edgewise_sdk::Config;

    const MIN: i64 = 60_000;

    fn feed(episodes: &mut Episodes, minute: i64, value: f64) -> [Option<i64>; KINDS] {
        episodes.update(minute * MIN, value, 5 * MIN, 15 * MIN)
    }

    #[test]
    fn open_and_close_with_runs_of_fifteen_minutes() {
        let settings = Settings::from_config(Config::default()).unwrap();
        let mut e = Episodes::new(&settings);
        assert_eq!(feed(&mut e, 0, 65.0), [None; KINDS]);
        assert_eq!(e.undecided_since(), Some(0));
        assert_eq!(feed(&mut e, 5, 50.0), [None; KINDS]);
        // Level 1 starts at the first reading of its run; level 2's run began at 5.
        assert_eq!(feed(&mut e, 10, 50.0), [Some(0), None, None, None]);
        assert_eq!(e.undecided_since(), Some(5 * MIN));
        assert_eq!(feed(&mut e, 15, 50.0), [None, Some(5 * MIN), None, None]);
        assert_eq!(e.undecided_since(), None);
        assert_eq!(e.open(), [true, true, false, false]);
        // Two readings >= 70 then one below: both episodes go on.
        feed(&mut e, 20, 80.0);
        feed(&mut e, 25, 80.0);
        feed(&mut e, 30, 60.0);
        assert_eq!(e.open(), [true, false, false, false], "level 2 recovered over 15 min");
        feed(&mut e, 35, 80.0);
        feed(&mut e, 40, 80.0);
        assert_eq!(e.open(), [true, false, false, false]);
        feed(&mut e, 45, 80.0);
        assert_eq!(e.open(), [false; KINDS]);
        // A gap ends everything.
        for minute in [50, 55, 60] {
            feed(&mut e, minute, 300.0);
        }
        assert_eq!(e.open(), [false, false, true, true]);
        feed(&mut e, 65, 300.0);
        e.reset();
        assert_eq!(e.open(), [false; KINDS]);
        assert_eq!(e.undecided_since(), None);
    }
}
