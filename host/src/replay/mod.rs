//! Replays recorded sensor data through a plugin on a virtual clock, for
//! plugin authors and CI: the same recording always gives the same bytes.
//!
//! Clock rules: readings go to the plugin in timestamp order; `on-tick(t)` is
//! called, once every reading with timestamp <= `t` has been delivered, at
//! every multiple `t` of the tick interval for a 0.1 plugin, and at the time
//! `t` a 0.2 plugin asked for (its wake; at once if already past, at most once
//! per virtual second); after the last reading the clock runs on to one hour
//! past the end of that reading's UTC day, so every hourly and daily window
//! that holds data closes.
//!
//! With `--snapshot-every N` ([`Stops`], [`Restarts`]), the plugin is
//! stopped after every N readings and started again in a fresh instance from
//! its snapshot; its output must be that of a replay batched alike without
//! the restarts.

mod clock;
pub mod golden;
mod iglu;
mod jsonl;
mod recording;
mod restart;

pub use clock::{MAX_TICKS, ReplayError, ReplayReport, Step, Stops, drive, replay, schedule};
pub use recording::{
    Format, Location, ReadStats, Recording, RecordingError, RowError, Subscriptions, iglu_subject, load,
    load_subscribed,
};
pub use restart::{RestartError, Restarts, RestorePoint, SnapshotStats};
