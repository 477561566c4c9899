//! The NATS side of the host: connecting with the configured authentication,
//! subject filters, and the sensor payload codec, shared by live ingest and by
//! replays of recorded messages.

pub mod connect;
pub mod filter;
pub mod payload;
