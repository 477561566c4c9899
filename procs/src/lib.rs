//! The processes the integration tests, the benchmarks (`edgewise-bench`)
//! and `cargo xtask demo` start, in one place: each is held by a guard that
//! kills and reaps it when dropped, so no path (error, panic, Ctrl-C) leaves
//! one behind.
//!
//! - [`child`]: the guard of a child process, and signals.
//! - [`nats`]: a private `nats-server` on an ephemeral port (JetStream in a
//!   temporary or given directory, extra arguments or configuration, an
//!   HTTP monitor, a leafnode listener, stop, kill, start again).
//! - [`topology`]: a fleet's NATS: the cloud's server (JetStream domain
//!   `cloud`) and per device a local server that is its leaf node, through
//!   a link that can be cut and restored.
//! - [`nats_binary`]: finding `nats-server`, installing it on first use.
//! - [`chromium`]: finding the Chromium the browser tests drive, installing
//!   the distribution's package for `cargo xtask test`.
//! - [`executable`]: finding an executable on `PATH`.
//! - [`workspace`]: where the built binary and plugin components are, and
//!   building them on first use (once per process).
//! - [`signing`]: a signing key with its trust directory, and bundles signed
//!   with it.
//! - [`device`]: `edgewise run` as a device runs it: its configuration, its
//!   start (until it answers status requests), its stop and its final counts.
//!
//! One crate for the three users, not a test-support crate beside it: the
//! demo and the benchmarks need the same launcher and device as the tests,
//! and none of this depends on the host's code (only on its binary), so the
//! `xtask` build stays free of wasmtime.

#![deny(missing_docs)]

pub mod child;
pub mod chromium;
pub mod componentize;
pub mod device;
pub mod executable;
pub mod nats;
pub mod nats_binary;
pub mod pip;
pub mod signing;
pub mod topology;
pub mod workspace;

pub use child::ChildGuard;
pub use device::{Device, RunConfig, Stopped};
pub use nats::NatsServer;
pub use signing::SigningKey;
pub use topology::{CLOUD_DOMAIN, CloudServer, EdgeServer, LeafLink};
