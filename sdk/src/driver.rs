//! Drives a [`Plugin`] as the host would: readings in order, a tick at every
//! wake it asks for, snapshots that carry the clock with the state.
//!
//! The component glue runs a plugin through a [`Driver`], and so can a native
//! test: what a test sees is what the device does. Two rules make a 0.2
//! plugin's outputs independent of how the host batches readings:
//! - **A wake inside a batch is kept.** Before a reading later than the
//!   plugin's wake, the driver ticks the plugin at that wake, as if the host
//!   had cut the batch there (the cut a replay makes when it knows the wake
//!   beforehand). So a wake that a reading asks for takes effect before the
//!   next reading of the same batch, and [`Wake::Every`] ticks on the same grid
//!   as contract 0.1 did.
//! - **A snapshot holds the clock too** (the last tick and the newest
//!   reading), so a restored plugin wakes when the old one would have.

use serde::{Deserialize, Serialize};

use crate::wake::{MIN_WAKE_INTERVAL_MS, Wake, grid_at_or_after};
use crate::{Config, Outputs, Plugin, Reading};

/// Version of the SDK's own part of a snapshot (the clock before the
/// plugin's bytes); a driver refuses any other.
const SNAPSHOT_FORMAT: u8 = 1;

/// The SDK's part of a snapshot, written before the plugin's own bytes.
#[derive(Serialize, Deserialize)]
struct Clock {
    format: u8,
    last_tick_ms: Option<i64>,
    newest_ms: Option<i64>,
}

/// A plugin and what it has seen of the host clock.
///
/// ```
/// use edgewise_sdk::{Alert, Config, Driver, Outputs, Plugin, Reading, Severity, Wake};
///
/// /// Says when a sensor has been silent for a minute.
/// struct Silence {
///     last: Option<(String, i64)>,
/// }
///
/// impl Plugin for Silence {
///     fn init(config: Config) -> Result<Self, String> {
///         config.finish()?;
///         Ok(Silence { last: None })
///     }
///     fn on_readings(&mut self, readings: &[Reading<'_>], _: &mut Outputs) -> Result<(), String> {
///         if let Some(r) = readings.last() {
///             self.last = Some((r.sensor.to_owned(), r.timestamp_ms));
///         }
///         Ok(())
///     }
///     fn next_wake(&self) -> Wake {
///         self.last.as_ref().map_or(Wake::Idle, |(_, at)| Wake::At(at + 60_000))
///     }
///     fn on_tick(&mut self, now_ms: i64, out: &mut Outputs) -> Result<(), String> {
///         if let Some((sensor, _)) = self.last.take() {
///             out.alert(Alert::at(&sensor, now_ms, Severity::Warning, "silent", "No reading for a minute"));
///         }
///         Ok(())
///     }
/// }
///
/// let mut driver = Driver::<Silence>::start(Config::default(), None)?;
/// let mut out = Outputs::default();
/// let readings = [Reading::new("probe", 0, 4.0, "degC"), Reading::new("probe", 90_000, 4.1, "degC")];
/// // As the host would: the wake at 60 s falls inside the batch, so the
/// // plugin is ticked then, before the reading at 90 s.
/// driver.on_readings(90_000, &readings, &mut out)?;
/// assert_eq!(out.alerts()[0].timestamp_ms, 60_000);
/// assert_eq!(driver.wake(), Some(150_000));
/// # Ok::<(), String>(())
/// ```
#[derive(Debug)]
pub struct Driver<P> {
    plugin: P,
    /// The time of the latest tick.
    last_tick_ms: Option<i64>,
    /// The newest reading timestamp seen.
    newest_ms: Option<i64>,
}

impl<P: Plugin> Driver<P> {
    /// Build the plugin from its configuration and, when given, the snapshot
    /// (`schema`, `data`) a driver of this or another version wrote.
    pub fn start(config: Config, resume: Option<(u32, &[u8])>) -> Result<Driver<P>, String> {
        let mut plugin = P::init(config)?;
        let (mut last_tick_ms, mut newest_ms) = (None, None);
        if let Some((schema, data)) = resume {
            let (clock, state) = postcard::take_from_bytes::<Clock>(data)
                .map_err(|e| format!("the snapshot was not written by this SDK: {e}"))?;
            if clock.format != SNAPSHOT_FORMAT {
                return Err(format!(
                    "the snapshot's SDK format is {}; this SDK reads {SNAPSHOT_FORMAT}",
                    clock.format
                ));
            }
            plugin.restore(schema, state)?;
            (last_tick_ms, newest_ms) = (clock.last_tick_ms, clock.newest_ms);
        }
        Ok(Driver {
            plugin,
            last_tick_ms,
            newest_ms,
        })
    }

    /// The plugin.
    pub fn plugin(&self) -> &P {
        &self.plugin
    }

    /// Handle a batch of readings handed over when the host clock stood at
    /// `now_ms` (in replay: the batch's latest reading), ticking the plugin at
    /// every wake it asks for that a reading of the batch is past.
    pub fn on_readings(&mut self, now_ms: i64, readings: &[Reading<'_>], out: &mut Outputs) -> Result<(), String> {
        self.on_clock(now_ms);
        readings.iter().try_for_each(|reading| self.on_reading(reading, out))
    }

    /// Tell the plugin the host's clock, before the readings of a batch.
    pub fn on_clock(&mut self, now_ms: i64) {
        self.plugin.on_clock(now_ms);
    }

    /// Handle one reading of a batch (after [`Driver::on_clock`]), after the
    /// ticks due before it.
    pub fn on_reading(&mut self, reading: &Reading<'_>, out: &mut Outputs) -> Result<(), String> {
        while let Some(due) = self.tick_due_before(reading.timestamp_ms) {
            self.on_tick(due, out)?;
        }
        self.deliver(reading, out)
    }

    /// The time of a tick due before a reading at `timestamp_ms`: the
    /// plugin's wake, if the reading is past it (by the host's rules: never
    /// before the clock, nor sooner than a second after the last tick). Tick
    /// the plugin then and ask again; deliver the reading once there is none.
    fn tick_due_before(&self, timestamp_ms: i64) -> Option<i64> {
        // Before any reading, a replay's clock stands at the first reading.
        let now = self.newest_ms.unwrap_or(timestamp_ms);
        let floor = self
            .last_tick_ms
            .map_or(i64::MIN, |tick| tick.saturating_add(MIN_WAKE_INTERVAL_MS));
        let due = self.wake()?.max(floor).max(now);
        (timestamp_ms > due).then_some(due)
    }

    /// Hand one reading to the plugin, with no tick before it.
    fn deliver(&mut self, reading: &Reading<'_>, out: &mut Outputs) -> Result<(), String> {
        self.plugin.on_readings(std::slice::from_ref(reading), out)?;
        self.newest_ms = Some(
            self.newest_ms
                .map_or(reading.timestamp_ms, |n| n.max(reading.timestamp_ms)),
        );
        Ok(())
    }

    /// Handle a tick of the host clock at `now_ms`.
    pub fn on_tick(&mut self, now_ms: i64, out: &mut Outputs) -> Result<(), String> {
        self.last_tick_ms = Some(now_ms);
        self.plugin.on_tick(now_ms, out)
    }

    /// When the plugin next needs a tick, as the host is told: `None` not
    /// until a reading arrives.
    pub fn wake(&self) -> Option<i64> {
        match self.plugin.next_wake() {
            Wake::Idle => None,
            Wake::At(at) => Some(at),
            Wake::Every(step_ms) => match (self.last_tick_ms, self.newest_ms) {
                (Some(tick), _) => Some(grid_at_or_after(tick.saturating_add(1), step_ms)),
                (None, Some(newest)) => Some(grid_at_or_after(newest, step_ms)),
                (None, None) => None,
            },
        }
    }

    /// The plugin's state and the clock, labelled with the plugin's schema.
    pub fn snapshot(&self) -> Result<(u32, Vec<u8>), String> {
        let clock = Clock {
            format: SNAPSHOT_FORMAT,
            last_tick_ms: self.last_tick_ms,
            newest_ms: self.newest_ms,
        };
        let mut data = postcard::to_allocvec(&clock).map_err(|e| format!("snapshot: {e}"))?;
        data.extend_from_slice(&self.plugin.snapshot()?);
        Ok((P::SNAPSHOT_SCHEMA, data))
    }
}
