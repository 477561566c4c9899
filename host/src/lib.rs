//! The Edgewise host: verifies, sandboxes and runs WebAssembly sensor plugins
//! on an edge device, and replays recorded sensor data through them.
//!
//! Start with [`runtime`] (wasmtime, instances, limits), then [`bundle`]
//! (signed bundles and the one verification pipeline) and [`replay`]
//! (recordings, virtual clock, golden files). [`model`] holds the data types
//! that flow between the stages, [`envelope`] the JSON form of outputs, and
//! [`files`] how the host writes what it keeps.
//!
//! The live pipeline (`edgewise run`), one folder per stage:
//! [`bus`] (local NATS: ingest, subjects, status responder) → [`worker`]
//! (one plugin on its thread) → [`outbox`] (durable, then upstream). [`load`]
//! turns a bundle into a ready plugin for both `run` and `replay`; [`run`]
//! starts, serves and stops the whole. No module imports from one that
//! imports it back (checked by a test of this crate, `module_graph`).

#![deny(missing_docs)]
// `deny`, not `forbid`: the two exceptions deserialize compiled components
// (`#[allow(unsafe_code)]`): `runtime/cache.rs`, those it authenticated;
// `runtime/isolated.rs`, those its own compiler process made.
#![deny(unsafe_code)]

pub mod bundle;
pub mod bus;
pub mod clock;
pub mod dashboard;
pub mod deploy;
pub mod envelope;
pub mod files;
pub mod input_log;
pub mod load;
pub mod log_output;
pub mod metrics;
pub mod model;
pub mod outbox;
pub mod output_check;
pub mod replay;
pub mod run;
pub mod runtime;
pub mod scaffold;
pub mod telemetry;
pub mod worker;

#[cfg(test)]
mod module_graph;

/// `error` and its sources, `: `-separated, a source left out when the text
/// so far already says it (many errors repeat their cause in their own
/// message): what a log line or a status shows of an error kept typed until then.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}
