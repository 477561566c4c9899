//! The Edgewise host: verifies, sandboxes and runs WebAssembly sensor plugins
//! on an edge device, and replays recorded sensor data through them.
//!
//! Start with [`runtime`] (wasmtime, instances, limits), then [`replay`]
//! (recordings, virtual clock, golden files). [`model`] holds the data types
//! that flow between them, and [`envelope`] the JSON form of outputs.

#![deny(missing_docs)]
// `deny`, not `forbid`: the one exception is `runtime/cache.rs`, which
// deserializes compiled components it authenticated (`#[allow(unsafe_code)]`).
#![deny(unsafe_code)]

pub mod bundle;
pub mod bus;
pub mod envelope;
pub mod files;
pub mod model;
pub mod outbox;
pub mod replay;
pub mod run;
pub mod runtime;
