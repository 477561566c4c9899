//! A real `nats-server` for tests, on a port of its own: the launcher of
//! `edgewise-procs` (shared with the benchmarks and the demo), with
//! constructors that panic with the server's log instead of returning errors.
//!
//! The binary is the one named by `NATS_SERVER`, else a `nats-server` on
//! `PATH`, else nats-server 2.15.1 installed under `target/nats-server/` on
//! first use (see `edgewise_procs::nats_binary`).
//!
//! [`start_cloud`] and [`start_edge`] start a fleet's topology: the cloud's
//! server and device servers that are its leaf nodes
//! (`edgewise_procs::topology`).

use std::ops::{Deref, DerefMut};

use edgewise_procs::nats::NatsOptions;
use edgewise_procs::{CloudServer, EdgeServer};

use crate::nats_server_binary;

/// A running `nats-server`, killed and cleaned up on drop. Everything but
/// starting and stopping is the launcher's (through `Deref`): `url`, `port`,
/// `store_dir`, `is_running`, `log`, `kill`.
#[derive(Debug)]
pub struct NatsServer(edgewise_procs::NatsServer);

impl NatsServer {
    /// Start a server without JetStream. Blocks until it accepts clients.
    pub fn start() -> NatsServer {
        NatsServer::launch(options())
    }

    /// Start a server with JetStream, storing in a temporary directory that
    /// outlives [`stop`](Self::stop) and goes away on drop.
    pub fn start_with_jetstream() -> NatsServer {
        NatsServer::launch(jetstream(options()))
    }

    /// Start a server with extra arguments, e.g. `["--user", "u", "--pass", "p"]`,
    /// with JetStream if `jetstream`.
    pub fn start_with_args(jetstream_on: bool, args: &[&str]) -> NatsServer {
        let options = options().args(args);
        NatsServer::launch(if jetstream_on { jetstream(options) } else { options })
    }

    fn launch(options: NatsOptions) -> NatsServer {
        NatsServer(options.start().unwrap_or_else(|e| panic!("{e:#}")))
    }

    /// Stop the server cleanly (SIGTERM; killed after 10 s), keeping its
    /// JetStream store for [`start_again`](Self::start_again).
    pub fn stop(&mut self) {
        self.0.stop().unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Start the stopped server again on the same port and with the same
    /// JetStream store, so clients reconnect to the URL they had.
    pub fn start_again(&mut self) {
        self.0.start_again().unwrap_or_else(|e| panic!("{e:#}"));
    }
}

impl Deref for NatsServer {
    type Target = edgewise_procs::NatsServer;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for NatsServer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

fn options() -> NatsOptions {
    edgewise_procs::NatsServer::options(nats_server_binary())
}

fn jetstream(options: NatsOptions) -> NatsOptions {
    options.jetstream().unwrap_or_else(|e| panic!("{e:#}"))
}

/// The cloud's server: JetStream in domain `cloud`, a leafnode listener.
pub fn start_cloud() -> CloudServer {
    CloudServer::start(nats_server_binary()).unwrap_or_else(|e| panic!("{e:#}"))
}

/// The local server of `device` (its JetStream in domain `device`), a leaf
/// node of `cloud`, once the cloud's JetStream answers through it.
pub fn start_edge(cloud: &CloudServer, device: &str) -> EdgeServer {
    let edge = EdgeServer::start(nats_server_binary(), cloud, device).unwrap_or_else(|e| panic!("{e:#}"));
    edge.wait_linked().unwrap_or_else(|e| panic!("{e:#}"));
    edge
}
