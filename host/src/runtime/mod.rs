//! Runs plugins: the wasmtime engine, compiled components, instances with
//! limits and per-call deadlines, and the host side of the WIT contract.
//!
//! Architecture invariant: only this module knows wasmtime and the types
//! generated from `wit/`. Everything else talks in [`crate::model`] types.

mod bindings;
pub mod bounded;
mod cache;
mod clock;
mod engine;
mod error;
mod host_api;
mod instance;
mod isolated;
mod limits;
mod stderr;
#[cfg(test)]
mod test_plugins;
mod wasi;
mod world;

pub use cache::{CACHE_KEY_FILE, CacheOutcome};
pub use clock::PluginClock;
pub use engine::{Allocator, CompiledPlugin, Runtime, RuntimeOptions};
pub use error::{Call, LoadError, PluginError, PluginErrorKind, RuntimeError, SchemaRefused, WasmtimeError};
pub use instance::{FuelUsed, InitOutputs, MAX_READINGS_PER_CALL, PluginInstance};
pub use isolated::{
    CHILD_COMMAND, CHILD_COMPILE_ERROR, ChildCompiler, ChildError, ChildMainError, ChildRequest, Compiler, child_main,
};
pub use limits::{Clamped, LimitExceeded, Limits, MAX_WASI_RESOURCES, OUTPUTS_PER_READING};
pub use world::{Assets, MIN_WAKE_INTERVAL_MS, Snapshot, SnapshotSchemas, Wake, World};
