//! The processes the demo starts: child-process guards and private
//! nats-servers, shared with the benchmarks in the `edgewise-procs` crate.

pub use edgewise_procs::{ChildGuard, NatsServer};
