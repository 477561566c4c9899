//! The NATS side of the host. For now: the sensor payload codec, shared by
//! live ingest and by replays of recorded messages.

pub mod payload;
