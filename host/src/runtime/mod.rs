//! Runs plugins: the wasmtime engine, compiled components, instances with
//! limits and per-call deadlines, and the host side of the WIT contract.
//!
//! Architecture invariant: only this module knows wasmtime and the types
//! generated from `wit/`. Everything else talks in [`crate::model`] types.

mod bindings;
mod engine;
mod error;
mod host_api;
mod instance;
mod limits;

pub use engine::{CompiledPlugin, Runtime, RuntimeOptions};
pub use error::{Call, LoadError, PluginError, PluginErrorKind, RuntimeError};
pub use instance::PluginInstance;
pub use limits::{LimitExceeded, Limits};
