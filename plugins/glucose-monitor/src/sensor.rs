//! Everything the plugin knows about one sensor, and how a reading or a tick
//! moves it forward.

use edgewise_sdk::{Outputs, Reading};
use serde::{Deserialize, Serialize};

use crate::alerts::{self, AlertRules};
use crate::config::Settings;
use crate::episodes::Episodes;
use crate::interval::IntervalEstimate;
use crate::recent::Recent;
use crate::windows::Windows;

/// Readings further than this from the epoch (2^53 ms, about 285,000 years)
/// are dropped: within it every timestamp sum and difference fits in `i64`
/// and converts exactly to `f64`.
pub const MAX_ABS_TIMESTAMP_MS: i64 = 1 << 53;

/// Whether a reading at `timestamp_ms` is taken at all (see [`MAX_ABS_TIMESTAMP_MS`]).
pub fn timestamp_in_range(timestamp_ms: i64) -> bool {
    (-MAX_ABS_TIMESTAMP_MS..=MAX_ABS_TIMESTAMP_MS).contains(&timestamp_ms)
}

/// The state of one sensor: bounded memory (the trend buffer holds the
/// readings of the last `max(trend_window, rate_window)`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SensorState {
    /// Newest timestamp seen (valid or invalid): older ones are late, equal
    /// ones duplicates.
    newest_ms: Option<i64>,
    /// Timestamp of the newest valid in-order reading.
    last_valid_ms: Option<i64>,
    /// Whether signal-loss was raised and not resolved yet.
    signal_lost: bool,
    interval: IntervalEstimate,
    recent: Recent,
    episodes: Episodes,
    alerts: AlertRules,
    windows: Windows,
    /// The earliest tick that would do more than move the window horizon
    /// (see [`SensorState::tick_due_ms`]).
    tick_due_ms: i64,
}

impl SensorState {
    /// A sensor never seen before.
    pub fn new(settings: &Settings) -> SensorState {
        SensorState {
            newest_ms: None,
            last_valid_ms: None,
            signal_lost: false,
            interval: IntervalEstimate::new(settings.default_interval_ms, settings.interval_min_spacings),
            recent: Recent::new(settings),
            episodes: Episodes::new(settings),
            alerts: AlertRules::new(settings),
            windows: Windows::new(),
            tick_due_ms: i64::MAX,
        }
    }

    /// The earliest tick time at which [`SensorState::on_tick`] may emit or
    /// change state beyond moving the window horizon (`i64::MAX`: none).
    /// Cached: refreshed by [`SensorState::refresh_tick_due`].
    pub fn tick_due_ms(&self) -> i64 {
        self.tick_due_ms
    }

    /// Recompute [`SensorState::tick_due_ms`] after a reading or a tick.
    /// It may be early (a visit then changes nothing) but never late.
    pub fn refresh_tick_due(&mut self, settings: &Settings) -> i64 {
        let mut due = self.windows.next_close_ms().unwrap_or(i64::MAX);
        if let Some(forget) = self.forget_due_ms(settings) {
            due = due.min(forget);
        }
        // Summaries a call had no room for (`crate::call_has_room`): due now.
        if let Some(horizon) = self.summaries_due_ms() {
            due = due.min(horizon);
        }
        if let Some(last) = self.last_valid_ms {
            if !self.signal_lost {
                due = due.min(last.saturating_add(settings.signal_loss_ms));
            }
            if !self.episodes.is_reset() {
                due = due.min(last.saturating_add(settings.episode_gap_ms).saturating_add(1));
            }
        }
        self.tick_due_ms = due;
        due
    }

    /// The tick time from which this sensor is forgotten: `forget_after`
    /// after its newest timestamp, less one tick step, so that the tick that
    /// forgets it comes no later than `forget_after` (the host frees its
    /// place among `max_sensors` then). `None` before any reading.
    fn forget_due_ms(&self, settings: &Settings) -> Option<i64> {
        self.newest_ms.map(|newest| {
            newest
                .saturating_add(settings.forget_after_ms)
                .saturating_sub(crate::TICK_GRID_MS)
        })
    }

    /// Whether a tick at `now_ms` forgets this sensor (see
    /// [`SensorState::forget_due_ms`]): after that tick's outputs, every
    /// window of it long closed and emitted (one a call had no room for
    /// keeps it until a tick emits it).
    pub fn is_forgotten_at(&self, now_ms: i64, settings: &Settings) -> bool {
        self.forget_due_ms(settings).is_some_and(|due| now_ms >= due) && !self.summaries_wait()
    }

    /// As a state saved by 0.2.1 or earlier left a silent sensor: no tick
    /// due at all (forgetting did not exist).
    #[cfg(test)]
    pub fn as_saved_before_forgetting(&mut self) {
        self.tick_due_ms = i64::MAX;
    }

    /// Do what the ticks skipped since this sensor's last visit did: before
    /// [`SensorState::tick_due_ms`] a tick only moves the window horizon.
    pub fn catch_up(&mut self, tick_horizon_ms: i64) {
        self.windows.close_until(tick_horizon_ms, self.interval.current_ms());
    }

    /// Handle one reading of this sensor.
    pub fn on_reading(&mut self, reading: &Reading, settings: &Settings, out: &mut Outputs) {
        let ts = reading.timestamp_ms;
        if !timestamp_in_range(ts) {
            return;
        }
        let value = settings.is_valid(reading.value).then_some(reading.value);
        match self.newest_ms {
            Some(newest) if ts == newest => return,
            Some(newest) if ts < newest => {
                // Late: only the window metrics take it (if still pending).
                self.windows.record(ts, value, settings);
                return;
            }
            _ => self.newest_ms = Some(ts),
        }
        // Close first, so the interval noted at close does not depend on
        // whether a reading or a tick closed the window.
        self.windows.close_until(ts, self.interval.current_ms());
        if value.is_some() {
            self.on_valid(reading, settings, out);
        }
        self.windows.record(ts, value, settings);
        self.emit(reading.sensor, out);
    }

    /// A valid in-order reading: interval, episodes, alerts.
    fn on_valid(&mut self, reading: &Reading, settings: &Settings, out: &mut Outputs) {
        let (ts, v) = (reading.timestamp_ms, reading.value);
        if let Some(last) = self.last_valid_ms {
            let spacing = ts.saturating_sub(last);
            // A gap no tick saw (ticks are further apart than the gap, or
            // the clock trails the data): report it now, so that whether an
            // outage is reported never depends on when ticks happen.
            if !self.signal_lost && spacing >= settings.signal_loss_ms {
                self.signal_lost = true;
                out.alert(alerts::signal_loss(reading.sensor, last, settings));
            }
            if spacing > settings.episode_gap_ms {
                self.episodes.reset();
            }
            self.interval.add(spacing);
        }
        self.last_valid_ms = Some(ts);

        let started = self
            .episodes
            .update(ts, v, self.interval.current_ms(), settings.episode_duration_ms);
        for (kind, start) in started.into_iter().enumerate() {
            if let Some(start_ms) = start {
                self.windows.count_episode(kind, start_ms);
            }
        }

        if self.signal_lost {
            self.signal_lost = false;
            out.alert(alerts::signal_restored(reading));
        }
        self.recent.push(ts, v);
        self.alerts.evaluate(reading, &self.recent, settings, out);
    }

    /// Handle a tick at `now_ms`: signal loss, the episode gap, window closing.
    pub fn on_tick(&mut self, sensor: &str, now_ms: i64, settings: &Settings, out: &mut Outputs) {
        if let Some(last) = self.last_valid_ms {
            if !self.signal_lost && now_ms >= last.saturating_add(settings.signal_loss_ms) {
                self.signal_lost = true;
                out.alert(alerts::signal_loss(sensor, last, settings));
            }
            // The reading after the gap would do the same; doing it now
            // releases windows held for a run the gap has broken.
            if now_ms > last.saturating_add(settings.episode_gap_ms) {
                self.episodes.reset();
            }
        }
        self.windows.close_until(now_ms, self.interval.current_ms());
        self.emit(sensor, out);
    }

    /// Emit the windows that are due, if the call has room for them (else
    /// they are due at the next tick, [`SensorState::refresh_tick_due`]).
    fn emit(&mut self, sensor: &str, out: &mut Outputs) {
        if !crate::call_has_room(out) {
            return;
        }
        let hold_from = self.episodes.undecided_since();
        self.windows.emit(sensor, hold_from, self.interval.current_ms(), out);
    }

    /// Whether summaries of this sensor wait for a call with room.
    pub fn summaries_wait(&self) -> bool {
        self.summaries_due_ms().is_some()
    }

    /// When the summaries that wait for a call with room are due (`None`:
    /// none waits).
    fn summaries_due_ms(&self) -> Option<i64> {
        self.windows.emit_due_ms(self.episodes.undecided_since())
    }
}
