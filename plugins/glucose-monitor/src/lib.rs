//! Glucose monitor: the Edgewise plugin for continuous glucose monitors (CGM).
//!
//! Per sensor it raises alerts (urgent low, low, urgent low soon, high,
//! rising / falling fast, signal loss) and emits hourly and daily summaries
//! with the consensus CGM metrics and hypo- / hyperglycaemia episode counts.
//! See `README.md` for the configuration keys and the clinical rules.
//!
//! Modules, one job each: `config` settings, `registry` sensors by name,
//! `sensor` per-sensor orchestration (and when its tick is due), `alerts`
//! alert rules, `recent` trend buffer and fits, `episodes` episode state
//! machines, `interval` median sensor interval, `windows` window closing /
//! holding / emitting, `summary` window metrics.

use edgewise_sdk::time::MINUTE_MS;
use edgewise_sdk::wake::grid_at_or_after;
use edgewise_sdk::{Config, LogLevel, Outputs, Plugin, Reading, Wake};
use glucose_units::in_mg_dl;
use serde::{Deserialize, Serialize};

mod alerts;
mod config;
mod episodes;
mod interval;
mod recent;
mod registry;
mod sensor;
mod summary;
mod windows;

#[cfg(test)]
mod tests;

use config::Settings;
use registry::Sensors;
use sensor::SensorState;

/// The grid ticks fall on: every five minutes of the host clock, as contract
/// 0.1 ticked. Waking on it (rather than at the exact time a sensor is due)
/// keeps every output, and its order among readings, as it was.
const TICK_GRID_MS: i64 = 5 * MINUTE_MS;

/// Outputs one call makes before the summaries still due wait for the next
/// tick (a second later). The manifest allows 8,000 a call
/// (`outputs_per_call`), and the host fails a call past it: a bus publisher
/// could make hundreds of sensors hold their windows for hours (runs below
/// 70 left undecided) and release them in one tick, every tick failing the
/// same way, the plugin quarantined and no alert made. Alerts never wait;
/// beside these 4,000, a call makes at most one signal loss per sensor (1,000
/// sensors, `max_sensors`), a few per reading of its batch (256 at most),
/// and the windows of the sensor that reached the bound. A device at its
/// 1,000 sensors makes at most 2,000 summaries at midnight (an hour and a
/// day each) and about 1,800 alerts beside them: no summary ever waits
/// unless the plugin is made to hold windows, so outputs do not depend on
/// how readings are batched.
const OUTPUTS_BEFORE_SUMMARIES_WAIT: usize = 4_000;

/// Whether the call that made `out` may make more summaries.
fn call_has_room(out: &Outputs) -> bool {
    out.alerts().len() + out.summaries().len() < OUTPUTS_BEFORE_SUMMARIES_WAIT
}

/// The plugin: settings (from the configuration) and state (in snapshots).
#[derive(Debug, Clone)]
pub struct GlucoseMonitor {
    settings: Settings,
    state: State,
}

/// Everything that shapes the plugin's future outputs: what a snapshot holds.
/// Ticks handle sensors in name order, deterministically.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct State {
    sensors: Sensors,
    /// The latest tick seen (`i64::MIN` before the first).
    tick_horizon_ms: i64,
    /// The host's clock as it last handed over readings (`i64::MIN` before).
    host_now_ms: i64,
    /// How far the latest tick moved the horizon (0 before the second tick).
    tick_step_ms: i64,
    /// Readings ignored for being too far ahead of the horizon.
    ahead_ignored: u64,
    /// No sensor's tick is due before this (may be early, never late).
    next_due_ms: i64,
    /// Summaries wait for a call with room (`call_has_room`): the next tick
    /// is asked for at once, not on the 5-minute grid. Not in snapshots (a
    /// restored plugin finds them at its next due tick, on the grid).
    #[serde(skip)]
    summaries_wait: bool,
}

impl Plugin for GlucoseMonitor {
    fn snapshot(&self) -> Result<Vec<u8>, String> {
        edgewise_sdk::snapshot::encode(&self.state)
    }

    /// The saved state, with every sensor's tick due time worked out again:
    /// a state saved by 0.2.1 or earlier has none for forgetting, and a
    /// sensor silent there would otherwise never be visited, so never
    /// forgotten. Working it out again never makes a due time later (it may
    /// be early, never late), so the outputs are those of the saved state.
    fn restore(&mut self, schema: u32, data: &[u8]) -> Result<(), String> {
        edgewise_sdk::snapshot::expect_schema(schema, <Self as Plugin>::SNAPSHOT_SCHEMA)?;
        let mut state: State = edgewise_sdk::snapshot::decode(data)?;
        let settings = &self.settings;
        let mut next_due = i64::MAX;
        state.sensors.for_each_in_name_order(|_, sensor_state| {
            next_due = next_due.min(sensor_state.refresh_tick_due(settings));
        });
        state.next_due_ms = next_due;
        self.state = state;
        Ok(())
    }

    fn init(config: Config) -> Result<Self, String> {
        Ok(GlucoseMonitor {
            settings: Settings::from_config(config)?,
            state: State {
                sensors: Sensors::default(),
                tick_horizon_ms: i64::MIN,
                host_now_ms: i64::MIN,
                tick_step_ms: 0,
                ahead_ignored: 0,
                next_due_ms: i64::MAX,
                summaries_wait: false,
            },
        })
    }

    fn on_clock(&mut self, now_ms: i64) {
        self.state.host_now_ms = self.state.host_now_ms.max(now_ms);
    }

    fn on_readings(&mut self, readings: &[Reading<'_>], out: &mut Outputs) -> Result<(), String> {
        for reading in readings {
            let reading = &in_mg_dl(reading);
            // Checked before creating a sensor, so such readings leave no trace.
            if !sensor::timestamp_in_range(reading.timestamp_ms) {
                continue;
            }
            if self.is_ahead(reading.timestamp_ms) {
                self.ignore_ahead(reading, out);
                continue;
            }
            let settings = &self.settings;
            let state = &mut self.state;
            let Some(sensor) = state
                .sensors
                .get_or_insert(reading.sensor, || SensorState::new(settings))
            else {
                continue;
            };
            sensor.catch_up(state.tick_horizon_ms);
            sensor.on_reading(reading, settings, out);
            let due = sensor.refresh_tick_due(settings);
            state.next_due_ms = state.next_due_ms.min(due);
            state.summaries_wait |= sensor.summaries_wait();
        }
        Ok(())
    }

    fn on_tick(&mut self, now_ms: i64, out: &mut Outputs) -> Result<(), String> {
        // Ticks that find nothing to do are skipped in O(1), and only the
        // sensors that are due are visited. A skipped sensor catches up on
        // the horizon at its next visit.
        let state = &mut self.state;
        let horizon = state.tick_horizon_ms;
        if horizon != i64::MIN && now_ms > horizon {
            state.tick_step_ms = now_ms.saturating_sub(horizon);
        }
        state.tick_horizon_ms = horizon.max(now_ms);
        if now_ms < state.next_due_ms {
            return Ok(());
        }
        // This call made its share already (the SDK ticks at the wakes
        // inside a batch, in the same call): the sensors due wait for the
        // next tick, a second later.
        if !call_has_room(out) {
            state.summaries_wait = true;
            return Ok(());
        }
        let settings = &self.settings;
        let mut next_due = i64::MAX;
        let mut forgotten = 0usize;
        let mut waiting = 0usize;
        state.sensors.for_each_in_name_order(|sensor, sensor_state| {
            if now_ms >= sensor_state.tick_due_ms() {
                sensor_state.catch_up(horizon);
                sensor_state.on_tick(sensor, now_ms, settings, out);
                sensor_state.refresh_tick_due(settings);
                if sensor_state.is_forgotten_at(now_ms, settings) {
                    forgotten += 1;
                    return;
                }
                waiting += usize::from(sensor_state.summaries_wait());
            }
            next_due = next_due.min(sensor_state.tick_due_ms());
        });
        state.next_due_ms = next_due;
        state.summaries_wait = waiting > 0;
        if waiting > 0 {
            out.log(
                LogLevel::Warn,
                format!(
                    "the summaries of {waiting} sensor(s) wait for the next tick: this call made \
                     {OUTPUTS_BEFORE_SUMMARIES_WAIT} outputs"
                ),
            );
        }
        if forgotten > 0 {
            state
                .sensors
                .retain(|_, sensor_state| !sensor_state.is_forgotten_at(now_ms, settings));
            out.log(
                LogLevel::Info,
                format!(
                    "forgot {forgotten} sensor(s) silent for `forget_after` ({} h); {} remain",
                    settings.forget_after_ms / (60 * MINUTE_MS),
                    state.sensors.len()
                ),
            );
        }
        Ok(())
    }

    /// Woken only when a sensor is due, at the first five-minute mark at or
    /// after it (where a 0.1 tick would have found it due).
    fn next_wake(&self) -> Wake {
        match self.state.next_due_ms {
            i64::MAX => Wake::Idle,
            // At once: the host's floor makes it a second after this tick.
            _ if self.state.summaries_wait => Wake::At(self.state.tick_horizon_ms.max(self.state.host_now_ms)),
            due => Wake::At(grid_at_or_after(due, TICK_GRID_MS)),
        }
    }
}

impl GlucoseMonitor {
    /// Whether a reading at `timestamp_ms` is too far ahead of now to be
    /// believed: by more than `max_ahead`, or one tick step if that is
    /// longer. Now is the later of the latest tick and the host's clock as it
    /// handed the readings over (contract 0.2 ticks the plugin only when a
    /// sensor is due, so the clock is what keeps now current). A replay's
    /// clock stands at the latest reading of each batch, so a replay ignores
    /// nothing, and its outputs are those of a plugin without this rule.
    /// Without the step, a plugin ticked but not told the clock (unit tests)
    /// would lose readings between ticks further apart than `max_ahead`.
    /// Before any tick or clock there is no now, and every reading is taken
    /// (the host refuses readings ahead of its clock before they reach a
    /// plugin).
    fn is_ahead(&self, timestamp_ms: i64) -> bool {
        let state = &self.state;
        let now = state.tick_horizon_ms.max(state.host_now_ms);
        now != i64::MIN && timestamp_ms > now.saturating_add(self.settings.max_ahead_ms.max(state.tick_step_ms))
    }

    /// Drop an outlier reading, logging the 1st, 10th, 100th... (a stream of
    /// them must not flood the log).
    fn ignore_ahead(&mut self, reading: &Reading<'_>, out: &mut Outputs) {
        let state = &mut self.state;
        state.ahead_ignored = state.ahead_ignored.saturating_add(1);
        let count = state.ahead_ignored;
        if count == 10u64.saturating_pow(count.ilog10()) {
            out.log(
                LogLevel::Warn,
                format!(
                    "ignored a reading of sensor `{}` at {} ms: over max_ahead ahead of the latest tick ({} ms) and \
                     the host clock ({} ms); {count} such readings so far",
                    reading.sensor, reading.timestamp_ms, state.tick_horizon_ms, state.host_now_ms
                ),
            );
        }
    }
}

// Off only where these sources are compiled as a library for another
// plugin's export (tests/fixtures/glucose-chaos/glucose-monitor-lib).
#[cfg(feature = "export")]
edgewise_sdk::export_plugin!(GlucoseMonitor);
