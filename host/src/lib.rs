//! The Edgewise host: verifies, sandboxes and runs WebAssembly sensor plugins
//! on an edge device, and replays recorded sensor data through them.
//!
//! Start with [`runtime`] (wasmtime, instances, limits), then [`bundle`]
//! (signed bundles and the one verification pipeline) and [`replay`]
//! (recordings, virtual clock, golden files). The live pipeline of `edgewise
//! run` (ingest, workers, outbox, upstream) is mapped in `ARCHITECTURE.md`.
//! [`model`] holds the data types that flow between the stages, [`envelope`]
//! the JSON form of outputs, and [`files`] how the host writes what it keeps.

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
