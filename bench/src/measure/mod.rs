//! One module per measurement; each turns into rows of the table.

pub mod allocator;
pub mod drain;
pub mod forecast;
pub mod glucose;
pub mod idle;
pub mod ingest;
pub mod input_log;
pub mod isolation;
pub mod latency;
pub mod memory;
pub mod metrics;
pub mod outbox;
pub mod python;
pub mod recovery;
pub mod recovery_large;
pub mod replay;
pub mod snapshot;
pub mod startup;
pub mod swap;
