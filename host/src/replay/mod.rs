//! Replays recorded sensor data through a plugin on a virtual clock, for
//! plugin authors and CI: the same recording always gives the same bytes.
//!
//! Clock rules: readings go to the plugin in timestamp order; `on-tick(t)` is
//! called at every multiple `t` of the tick interval once every reading with
//! timestamp <= `t` has been delivered; after the last reading the clock runs
//! on to one hour past the end of that reading's UTC day, so every hourly and
//! daily window that holds data closes.

mod clock;
pub mod golden;
mod iglu;
mod jsonl;
mod recording;

pub use clock::{ReplayReport, Step, replay, schedule};
pub use recording::{Format, Location, ReadStats, Recording, RecordingError, RowError, load};
