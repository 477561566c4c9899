//! The virtual clock that drives a plugin through a recording.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use super::recording::Recording;
use super::restart::{RestartError, Restarts, SnapshotStats};
use crate::model::Output;
use crate::runtime::{PluginError, PluginInstance, Wake};

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;
/// Readings delivered per `on-readings` call at most (between two ticks).
const MAX_BATCH: usize = crate::runtime::MAX_READINGS_PER_CALL;
/// The ticks a replay makes at most unless told otherwise (`--max-ticks`):
/// a plugin ticked once a virtual second for three years, or every 5
/// minutes for a millennium. Bounds the CPU a mistyped timestamp can cost.
pub const MAX_TICKS: u64 = 100_000_000;

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReplayReport {
    /// Readings delivered to the plugin.
    pub readings: u64,
    /// `on-tick` calls.
    pub ticks: u64,
    /// Wakes a plugin asked for sooner than a second after its last tick,
    /// each moved to that second ([`crate::runtime::MIN_WAKE_INTERVAL_MS`]).
    pub wakes_deferred: u64,
    /// Alerts emitted.
    pub alerts: u64,
    /// Summaries emitted.
    pub summaries: u64,
    /// The snapshots taken and restored (`--snapshot-every`; none without).
    pub snapshots: SnapshotStats,
    /// Wall time spent.
    pub elapsed: Duration,
}

/// Where a replay stops its plugin between two readings, and what for.
pub enum Stops<'r, 'a> {
    /// Nowhere: batches as the clock makes them.
    Never,
    /// After reading N, 2N...: a batch ends there, nothing else (the
    /// uninterrupted replay a snapshotting one is compared with, batched alike).
    Every(NonZeroUsize),
    /// After reading N, 2N...: the plugin goes on in a fresh instance started
    /// from its snapshot.
    Restart(NonZeroUsize, &'r mut Restarts<'a>),
}

impl Stops<'_, '_> {
    fn every(&self) -> Option<NonZeroUsize> {
        match self {
            Stops::Never => None,
            Stops::Every(every) | Stops::Restart(every, _) => Some(*every),
        }
    }
}

/// Why a replay stopped before the end of the recording.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The plugin failed a call.
    #[error(transparent)]
    Plugin(#[from] PluginError),
    /// A snapshot or the fresh instance started from it was refused.
    #[error(transparent)]
    Restart(#[from] RestartError),
    /// The replay made its `limit` ticks and the plugin asked for another,
    /// at `at_ms` (a 0.2 plugin is ticked when it asks, up to once a
    /// virtual second: a recording spanning years asks for tens of millions).
    #[error("the replay made its {limit} ticks and the plugin asks for another (at {at_ms} ms)")]
    TooManyTicks {
        /// The most ticks the replay makes.
        limit: u64,
        /// The virtual time of the tick refused.
        at_ms: i64,
    },
}

/// One step of the virtual clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step<'a, R> {
    /// Deliver these readings in one `on-readings` call.
    Readings(&'a [R]),
    /// Call `on-tick` at this virtual time (ms).
    Tick(i64),
}

/// The virtual clock's steps over `readings` (in timestamp order, as
/// `timestamp` gives it) with a tick every `tick_ms`: readings in batches of
/// at most `MAX_BATCH` (256) up to each tick (a reading at the tick's time comes
/// before it), the first tick at or after the first reading, the last an hour
/// past the end of the last reading's day. `step` gets each in order; the
/// first error stops the schedule. Generic over the reading type so that a
/// benchmark can drive native plugin code through the very same clock.
pub fn schedule<R, E>(
    readings: &[R],
    timestamp: impl Fn(&R) -> i64,
    tick_ms: i64,
    mut step: impl FnMut(Step<'_, R>) -> Result<(), E>,
) -> Result<(), E> {
    drive(readings, timestamp, tick_ms, None, Wake::Interval, |s| {
        step(s).map(|()| Wake::Interval)
    })
}

/// The virtual clock's steps over `readings` (in timestamp order) for a
/// plugin that says when it needs a tick: `wake` after `init`, then what
/// each step answers ([`schedule`] is this with every wake
/// [`Wake::Interval`]).
///
/// - [`Wake::Interval`]: at the next multiple of `tick_ms` (the first at or
///   after the first reading).
/// - [`Wake::At`]: exactly then, or at once if that time is past (the clock
///   never goes back: a reading delivered or a tick already made it later).
/// - [`Wake::Idle`]: no tick until a reading.
///
/// Readings up to a tick's time (inclusive) come before it, in batches of at
/// most `MAX_BATCH`; with `stop_every` N, a batch also ends after reading N,
/// 2N... (where [`replay`] can stop the plugin). After the last reading,
/// ticks go on up to an hour past the end of that reading's UTC day (on the
/// interval, the first tick at or after it), so every window that holds data
/// can close; a wake beyond that is not honoured. Tick times strictly
/// increase.
pub fn drive<R, E>(
    readings: &[R],
    timestamp: impl Fn(&R) -> i64,
    tick_ms: i64,
    stop_every: Option<NonZeroUsize>,
    mut wake: Wake,
    mut step: impl FnMut(Step<'_, R>) -> Result<Wake, E>,
) -> Result<(), E> {
    let (Some(first), Some(last)) = (readings.first(), readings.last()) else {
        return Ok(());
    };
    let (first, last) = (timestamp(first), timestamp(last));
    let tick_ms = tick_ms.max(1);
    // The first tick on the interval: at or after the first reading (the
    // last instant there is when no multiple of the interval is left).
    let mut next_interval = Some(if first.rem_euclid(tick_ms) == 0 {
        first
    } else {
        grid_after(first, tick_ms).unwrap_or(i64::MAX)
    });
    let end = last
        .div_euclid(DAY_MS)
        .saturating_add(1)
        .saturating_mul(DAY_MS)
        .saturating_add(HOUR_MS);

    // The virtual clock: the latest reading delivered or tick made.
    let mut now = first;
    let mut last_tick: Option<i64> = None;
    let mut position = 0;
    loop {
        // Tick times strictly increase: after a tick at the last instant
        // there is (i64::MAX ms), none is due any more. Saturating there
        // instead would tick at that instant for ever.
        let after_last_tick = match last_tick {
            None => Some(i64::MIN),
            Some(tick) => tick.checked_add(1),
        };
        let due = match wake {
            Wake::Interval => next_interval,
            Wake::At(at) => after_last_tick.map(|after| at.max(now).max(after)),
            Wake::Idle => None,
        };
        if position < readings.len() {
            // Deliver the readings up to the next tick (inclusive), in batches.
            let room = batch_room(position, stop_every);
            let batch_end = readings[position..]
                .iter()
                .take(room)
                .position(|r| due.is_some_and(|due| timestamp(r) > due))
                .map_or((position + room).min(readings.len()), |offset| position + offset);
            if batch_end > position {
                let batch = &readings[position..batch_end];
                now = batch.iter().map(&timestamp).fold(now, i64::max);
                wake = step(Step::Readings(batch))?;
                position = batch_end;
                continue;
            }
        } else {
            // Past the last reading: on to the end of its day and an hour.
            let go_on = match (wake, due) {
                (Wake::Interval, _) => last_tick.is_none_or(|tick| tick < end),
                (_, Some(due)) => due <= end,
                (_, None) => false,
            };
            if !go_on {
                break;
            }
        }
        // Readings remain only past `due`, so there is one.
        let Some(due) = due else { break };
        wake = step(Step::Tick(due))?;
        now = now.max(due);
        last_tick = Some(due);
        // The next tick on the interval is the first multiple past this one
        // (computed, not stepped to: a wake far ahead would take that many
        // steps); none past i64::MAX.
        if next_interval.is_some_and(|next| next <= due) {
            next_interval = grid_after(due, tick_ms);
        }
    }
    Ok(())
}

/// The first multiple of `tick_ms` strictly after `t`, if it is within i64.
fn grid_after(t: i64, tick_ms: i64) -> Option<i64> {
    t.div_euclid(tick_ms).checked_add(1)?.checked_mul(tick_ms)
}

/// How many readings the batch starting at `position` may hold: at most
/// `MAX_BATCH`, and none past the next multiple of `stop_every`.
fn batch_room(position: usize, stop_every: Option<NonZeroUsize>) -> usize {
    match stop_every {
        Some(every) => MAX_BATCH.min(every.get() - position % every.get()),
        None => MAX_BATCH,
    }
}

/// Run `recording` through `instance` (already initialised) on a virtual
/// clock ([`drive`]): a 0.1 plugin ticked every `tick_ms`, a 0.2 plugin when
/// it asks; each output handed to `sink` in order. At its `stops` a batch
/// ends; with [`Stops::Restart`] the plugin goes on there in a fresh
/// instance started from its snapshot ([`Restarts`]; `instance` is then the
/// last of them), the clock as if nothing happened. At most `max_ticks`
/// ticks are made ([`ReplayError::TooManyTicks`] past them). Stops at the
/// first failure; outputs emitted before it are still handed to `sink`.
pub fn replay(
    instance: &mut PluginInstance,
    recording: &Recording,
    tick_ms: i64,
    max_ticks: u64,
    mut stops: Stops<'_, '_>,
    sink: &mut dyn FnMut(&Output),
) -> Result<ReplayReport, ReplayError> {
    let started = Instant::now();
    let mut report = ReplayReport::default();
    let wake = instance.wake();
    let stop_every = stops.every();
    drive(
        &recording.readings,
        |r| r.timestamp_ms,
        tick_ms,
        stop_every,
        wake,
        |step| {
            match step {
                Step::Readings(batch) => {
                    let result = instance.on_readings(batch);
                    drain(instance, &mut report, sink);
                    result?;
                    report.readings += batch.len() as u64;
                    if let Stops::Restart(every, restarts) = &mut stops
                        && report.readings % every.get() as u64 == 0
                    {
                        let outputs = report.alerts + report.summaries;
                        restarts.restart(instance, report.readings, outputs)?;
                    }
                }
                Step::Tick(now_ms) => {
                    // Counted here, as made: a 0.2 plugin's ticks are its
                    // wakes, which no bound on the recording's span foresees.
                    if report.ticks >= max_ticks {
                        return Err(ReplayError::TooManyTicks {
                            limit: max_ticks,
                            at_ms: now_ms,
                        });
                    }
                    tick(instance, now_ms, &mut report, sink)?;
                }
            }
            Ok::<_, ReplayError>(instance.wake())
        },
    )?;
    report.wakes_deferred = instance.wakes_deferred();
    if let Stops::Restart(_, restarts) = stops {
        report.snapshots = restarts.stats().clone();
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

fn tick(
    instance: &mut PluginInstance,
    now_ms: i64,
    report: &mut ReplayReport,
    sink: &mut dyn FnMut(&Output),
) -> Result<(), PluginError> {
    let result = instance.on_tick(now_ms);
    drain(instance, report, sink);
    report.ticks += 1;
    result
}

fn drain(instance: &mut PluginInstance, report: &mut ReplayReport, sink: &mut dyn FnMut(&Output)) {
    for output in instance.take_outputs() {
        match output {
            Output::Alert(_) => report.alerts += 1,
            Output::Summary(_) => report.summaries += 1,
        }
        sink(&output);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_up_to_each_tick_come_before_it_and_ticks_run_past_the_last_day() {
        let readings = [0_i64, 1_000, 300_000, 300_001];
        let mut steps = Vec::new();
        let done: Result<(), ()> = schedule(
            &readings,
            |t| *t,
            300_000,
            |step| {
                steps.push(match step {
                    Step::Readings(batch) => format!("readings {batch:?}"),
                    Step::Tick(now) => format!("tick {now}"),
                });
                Ok(())
            },
        );
        assert_eq!(done, Ok(()));
        assert_eq!(
            steps[..6],
            [
                "readings [0]",
                "tick 0",
                "readings [1000, 300000]",
                "tick 300000",
                "readings [300001]",
                "tick 600000"
            ]
        );
        assert_eq!(steps.last().map(String::as_str), Some("tick 90000000")); // 1 day + 1 hour
        // Three batches, and a tick at every multiple of 5 min from 0 to the end.
        assert_eq!(steps.len(), 3 + 90_000_000 / 300_000 + 1);
    }

    /// The steps `drive` makes for a plugin whose wakes `answer` gives.
    fn driven(readings: &[i64], wake: Wake, answer: impl FnMut(&Step<'_, i64>) -> Wake) -> Vec<String> {
        driven_stopping(readings, None, wake, answer)
    }

    /// [`driven`], stopping every `stop_every` readings.
    fn driven_stopping(
        readings: &[i64],
        stop_every: Option<NonZeroUsize>,
        wake: Wake,
        mut answer: impl FnMut(&Step<'_, i64>) -> Wake,
    ) -> Vec<String> {
        let mut steps = Vec::new();
        let done: Result<(), ()> = drive(
            readings,
            |t| *t,
            300_000,
            stop_every,
            wake,
            |step| {
                steps.push(match step {
                    Step::Readings(batch) => format!("readings {batch:?}"),
                    Step::Tick(now) => format!("tick {now}"),
                });
                Ok(answer(&step))
            },
        );
        assert_eq!(done, Ok(()));
        steps
    }

    #[test]
    fn a_plugin_is_ticked_when_it_asks_after_the_readings_up_to_then_and_not_on_the_interval() {
        // Asks for a tick 5 s after each batch's last reading; none after a tick.
        let steps = driven(&[0, 10_000, 20_000], Wake::At(5_000), |step| match step {
            Step::Readings(batch) => Wake::At(batch.last().unwrap() + 5_000),
            Step::Tick(_) => Wake::Idle,
        });
        assert_eq!(
            steps,
            ["readings [0]", "tick 5000", "readings [10000, 20000]", "tick 25000"]
        );
    }

    #[test]
    fn a_wake_already_past_is_due_at_once_and_one_beyond_the_end_never() {
        // Past: the clock never goes back, and tick times strictly increase.
        let mut asked = 0;
        let steps = driven(&[1_000, 2_000], Wake::At(-5), |_| {
            asked += 1;
            if asked < 3 {
                Wake::At(i64::MIN)
            } else {
                Wake::At(i64::MAX)
            }
        });
        assert_eq!(steps, ["readings [1000]", "tick 1000", "tick 1001", "readings [2000]"]);
        // A wake within the end (an hour past the last reading's day) is kept.
        let steps = driven(&[0], Wake::Idle, |step| match step {
            Step::Readings(_) => Wake::At(90_000_000),
            Step::Tick(_) => Wake::At(90_000_001),
        });
        assert_eq!(steps, ["readings [0]", "tick 90000000"]);
    }

    #[test]
    fn ticks_near_the_end_of_time_strictly_increase_and_the_drive_ends() {
        // A reading within a day of i64::MAX ms: the end saturates to
        // i64::MAX, and so does every wake a plugin asks (a second after its
        // last tick, as the runtime's floor makes it). One tick there, then
        // the clock has nowhere left to go. The step count is capped so that
        // the old behaviour (the same instant for ever) fails instead of hanging.
        let near_max = 9_223_372_036_854_775_000_i64;
        for first in [Wake::Idle, Wake::Interval, Wake::At(i64::MAX)] {
            let mut steps = Vec::new();
            let done: Result<(), &str> = drive(
                &[near_max],
                |t| *t,
                300_000,
                None,
                first,
                |step| {
                    steps.push(match step {
                        Step::Readings(batch) => format!("readings {batch:?}"),
                        Step::Tick(now) => format!("tick {now}"),
                    });
                    if steps.len() > 10 {
                        Err("runaway")
                    } else {
                        Ok(Wake::At(i64::MAX))
                    }
                },
            );
            assert_eq!(done, Ok(()), "{first:?}: {steps:?}");
            assert_eq!(
                steps,
                [format!("readings [{near_max}]"), format!("tick {}", i64::MAX)],
                "{first:?}"
            );
        }
        // On the interval too: the grid stops at the last representable tick.
        let mut ticks = 0;
        let done: Result<(), &str> = schedule(
            &[near_max],
            |t| *t,
            300_000,
            |step| {
                ticks += u64::from(matches!(step, Step::Tick(_)));
                if ticks > 1_000_000 { Err("runaway") } else { Ok(()) }
            },
        );
        assert_eq!(done, Ok(()));
    }

    /// The sizes of the batches `drive` makes over `count` readings at one
    /// time (no tick between them), stopping every `every`.
    fn batch_sizes(count: usize, every: usize) -> Vec<usize> {
        let readings = vec![7_i64; count];
        let mut sizes = Vec::new();
        let done: Result<(), ()> = drive(
            &readings,
            |t| *t,
            10,
            NonZeroUsize::new(every),
            Wake::Idle,
            |step| {
                if let Step::Readings(batch) = step {
                    sizes.push(batch.len());
                }
                Ok(Wake::Idle)
            },
        );
        assert_eq!(done, Ok(()));
        sizes
    }

    #[test]
    fn with_stops_every_n_readings_a_batch_ends_after_reading_n_2n_and_holds_at_most_max_batch() {
        assert_eq!(batch_sizes(5, 1), [1; 5]);
        assert_eq!(batch_sizes(20, 7), [7, 7, 6]);
        assert_eq!(
            batch_sizes(700, 300),
            [MAX_BATCH, 300 - MAX_BATCH, MAX_BATCH, 300 - MAX_BATCH, 100]
        );
        assert_eq!(batch_sizes(2 * MAX_BATCH, MAX_BATCH), [MAX_BATCH, MAX_BATCH]);
        // Beyond the recording: as without stops.
        assert_eq!(batch_sizes(MAX_BATCH + 1, 1_000_000), [MAX_BATCH, 1]);
        assert_eq!(batch_sizes(MAX_BATCH + 1, 0), [MAX_BATCH, 1]);
        assert_eq!(batch_room(0, NonZeroUsize::new(7)), 7);
        assert_eq!(batch_room(13, NonZeroUsize::new(7)), 1);
        assert_eq!(batch_room(14, NonZeroUsize::new(7)), 7);
    }

    #[test]
    fn a_stop_cuts_a_batch_but_moves_no_tick() {
        // Without stops: [0], tick 0, [1000, 300000], tick 300000, [300001].
        let readings = [0_i64, 1_000, 300_000, 300_001];
        let steps = driven_stopping(&readings, NonZeroUsize::new(2), Wake::Interval, |_| Wake::Interval);
        assert_eq!(
            steps[..7],
            [
                "readings [0]",
                "tick 0",
                "readings [1000]",
                "readings [300000]",
                "tick 300000",
                "readings [300001]",
                "tick 600000"
            ]
        );
    }

    #[test]
    fn batches_hold_at_most_max_batch_readings_and_an_error_stops_the_schedule() {
        let readings = vec![7_i64; MAX_BATCH * 2 + 1];
        let mut sizes = Vec::new();
        let stopped = schedule(
            &readings,
            |t| *t,
            10,
            |step| match step {
                Step::Readings(batch) => {
                    sizes.push(batch.len());
                    Ok(())
                }
                Step::Tick(_) => Err("stop"),
            },
        );
        assert_eq!(stopped, Err("stop"));
        assert_eq!(sizes, [MAX_BATCH, MAX_BATCH, 1]);
    }
}
