//! The local bus, NATS side of the host: the connection settings and
//! connecting with the configured authentication, the device's subjects and
//! subject filters, the sensor payload codec (shared with replays of recorded
//! messages), ingest (core or JetStream, admission, dead letters) and the
//! status responder, and recording live traffic for replays (`record`). Nothing here knows plugins, workers or the outbox: ingest
//! hands batches to whatever queue it is given.

pub mod admission;
pub mod config;
pub mod connect;
pub mod filter;
pub mod ingest;
pub mod local;
pub mod overlap;
pub mod payload;
pub mod record;
pub mod status;
pub mod subjects;
pub mod violations;

pub use config::{NatsConfig, Plausibility, Source};
pub use local::LocalBus;
pub use subjects::Subjects;
