//! What can go wrong when compiling, instantiating or calling a plugin.

use std::fmt;
use std::time::Duration;

use super::limits::LimitExceeded;

/// The export being called when a plugin failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Instantiation (linking the imports, running start functions).
    Instantiate,
    /// The `init` export.
    Init,
    /// The `on-readings` export.
    OnReadings,
    /// The `on-tick` export.
    OnTick,
    /// The `snapshot` export (contract 0.2).
    Snapshot,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Call::Instantiate => "instantiate",
            Call::Init => "init",
            Call::OnReadings => "on-readings",
            Call::OnTick => "on-tick",
            Call::Snapshot => "snapshot",
        })
    }
}

/// A plugin failed a call. The instance is unusable afterwards unless the
/// kind is [`PluginErrorKind::Returned`] (see [`PluginErrorKind::poisons`]).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("plugin `{plugin}` {kind} (in `{call}`)")]
pub struct PluginError {
    /// The plugin's name.
    pub plugin: String,
    /// The export that failed.
    pub call: Call,
    /// What happened.
    pub kind: PluginErrorKind,
}

/// Why a plugin call failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PluginErrorKind {
    /// The plugin returned `err(message)`: its own, orderly failure.
    #[error("returned an error: {0}")]
    Returned(String),
    /// The plugin trapped (a panic, an out-of-bounds access, a stack overflow...).
    #[error("trapped: {reason}{}", stderr_suffix(.stderr))]
    Trapped {
        /// The trap, e.g. `call stack exhausted`.
        reason: String,
        /// The last line the plugin wrote to stderr before trapping (e.g. its panic message).
        stderr: String,
    },
    /// The call ran past its CPU deadline and was interrupted.
    #[error("exceeded its CPU deadline of {0:?} (`[limits] call_deadline_ms`)")]
    Deadline(Duration),
    /// The plugin broke a resource limit.
    #[error("{0}")]
    Limit(LimitExceeded),
    /// The plugin called a WASI function that would have to wait (`sleep`,
    /// `poll` or `block` on a pollable that is not ready, a blocking read):
    /// plugins may not wait, since the deadline cannot interrupt a host call.
    #[error("called `{0}`, which would block: plugins may not wait (sleep, poll, blocking I/O)")]
    Blocking(String),
    /// The component does not fit the `sensor-plugin` world or failed to start.
    #[error("could not be instantiated: {0}")]
    Instantiate(String),
    /// The call is not part of the plugin's contract (a snapshot of a 0.1
    /// plugin, which has none). The instance stays usable.
    #[error("cannot do that: its contract ({0}) has no snapshot")]
    NoSnapshot(super::world::World),
    /// A snapshot whose schema the plugin's manifest does not declare
    /// (refused before the plugin sees it, or as it hands it over). The
    /// instance stays usable.
    #[error("{0}")]
    Schema(SchemaRefused),
    /// The instance failed earlier and can no longer be called.
    #[error("cannot be called: the instance failed earlier and must be restarted")]
    Poisoned,
}

/// A snapshot refused for its schema, against the plugin's manifest
/// ([`super::SnapshotSchemas`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaRefused {
    /// Its manifest declares no `snapshot`: it is given none, and none is
    /// taken from it.
    #[error("takes no snapshot: its manifest declares no snapshot schema")]
    Undeclared,
    /// A snapshot to start from in a schema the manifest does not read.
    #[error("cannot be started from a snapshot of schema {schema}: its manifest reads schemas {reads:?}")]
    NotRead {
        /// The snapshot's schema.
        schema: u32,
        /// The schemas the manifest reads.
        reads: Vec<u32>,
    },
    /// The plugin handed over a snapshot in another schema than the one its
    /// manifest writes.
    #[error("handed over a snapshot of schema {schema}, but its manifest writes schema {writes}")]
    NotWritten {
        /// The snapshot's schema.
        schema: u32,
        /// The schema the manifest writes.
        writes: u32,
    },
}

impl PluginErrorKind {
    /// Whether the instance must be discarded after this failure (a Store is
    /// never reused after a trap). A snapshot refused for its size or its
    /// schema, or asked of a plugin that has none, leaves the Store as it was.
    pub fn poisons(&self) -> bool {
        !matches!(
            self,
            PluginErrorKind::Returned(_)
                | PluginErrorKind::NoSnapshot(_)
                | PluginErrorKind::Schema(_)
                | PluginErrorKind::Limit(LimitExceeded::Snapshot { .. })
        )
    }

    /// Whether a second attempt with the same inputs may well not fail so:
    /// the failure depends on the device as much as on what the plugin was
    /// given (CPU load for a deadline; memory, the runtime, the world
    /// around). A refusal (`Returned`, a snapshot's schema or size, a
    /// contract without snapshots) is the plugin's answer to its inputs, and
    /// a trap its deterministic crash on them: both come again.
    ///
    /// Recovery keeps a saved state whose start failed so for a few attempts
    /// in a row, where it sets a refused one aside at once.
    pub fn is_transient(&self) -> bool {
        // Every variant named: a new one must be placed on one side.
        match self {
            PluginErrorKind::Returned(_)
            | PluginErrorKind::Trapped { .. }
            | PluginErrorKind::NoSnapshot(_)
            | PluginErrorKind::Schema(_)
            | PluginErrorKind::Limit(LimitExceeded::Snapshot { .. }) => false,
            PluginErrorKind::Deadline(_)
            | PluginErrorKind::Limit(_)
            | PluginErrorKind::Blocking(_)
            | PluginErrorKind::Instantiate(_)
            | PluginErrorKind::Poisoned => true,
        }
    }

    /// A short stable tag for counters and exit messages.
    pub fn tag(&self) -> &'static str {
        match self {
            PluginErrorKind::Returned(_) => "returned-error",
            PluginErrorKind::Trapped { .. } => "trap",
            PluginErrorKind::Deadline(_) => "deadline",
            PluginErrorKind::Limit(LimitExceeded::Memory { .. }) => "memory-limit",
            PluginErrorKind::Limit(LimitExceeded::Outputs(_)) => "output-limit",
            PluginErrorKind::Limit(LimitExceeded::OutputRate(_)) => "output-rate",
            PluginErrorKind::Limit(LimitExceeded::OutputSize { .. }) => "output-size",
            PluginErrorKind::Limit(LimitExceeded::State(_)) => "state-limit",
            PluginErrorKind::Limit(LimitExceeded::Resources(_)) => "resource-limit",
            PluginErrorKind::Limit(LimitExceeded::Snapshot { .. }) => "snapshot-limit",
            PluginErrorKind::NoSnapshot(_) => "no-snapshot",
            PluginErrorKind::Schema(_) => "snapshot-schema",
            PluginErrorKind::Blocking(_) => "blocking-call",
            PluginErrorKind::Instantiate(_) => "instantiate",
            PluginErrorKind::Poisoned => "poisoned",
        }
    }
}

fn stderr_suffix(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!(" (plugin stderr: {stderr})")
    }
}

/// A component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The bytes are not WebAssembly.
    #[error("`{plugin}` is not a WebAssembly file (no `\\0asm` header)")]
    NotWasm {
        /// Plugin name.
        plugin: String,
    },
    /// A core module where a component is needed.
    #[error("`{plugin}` is a core WebAssembly module, not a component: build it with `--target wasm32-wasip2`")]
    CoreModule {
        /// Plugin name.
        plugin: String,
    },
    /// wasmtime refused to compile or link it.
    #[error("`{plugin}` could not be compiled: {source}")]
    Compile {
        /// Plugin name.
        plugin: String,
        /// wasmtime's explanation.
        #[source]
        source: WasmtimeError,
    },
    /// The compiler process did not compile it (`edgewise run`).
    #[error("`{plugin}` could not be compiled: {source}")]
    CompileChild {
        /// Plugin name.
        plugin: String,
        /// What happened in the compiler process.
        #[source]
        source: super::isolated::ChildError,
    },
    /// The component does not fit the `sensor-plugin` world it targets
    /// (0.2 if it exports `snapshot`, else 0.1).
    #[error("`{plugin}` does not fit the {world} world: {source}")]
    World {
        /// Plugin name.
        plugin: String,
        /// The world it was linked against.
        world: super::world::World,
        /// What is missing or mismatched.
        #[source]
        source: WasmtimeError,
    },
}

/// The runtime itself could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// wasmtime refused the engine configuration.
    #[error("cannot start the WebAssembly runtime: {0}")]
    Engine(#[source] WasmtimeError),
    /// WASI or the host imports could not be added to the linker.
    #[error("cannot start the WebAssembly runtime: linking {what}: {source}")]
    Link {
        /// What was being linked.
        what: &'static str,
        /// wasmtime's explanation.
        #[source]
        source: WasmtimeError,
    },
    /// The thread that moves the epoch (the call deadlines) did not start.
    #[error("cannot start the WebAssembly runtime: starting the epoch thread: {0}")]
    EpochThread(#[source] std::io::Error),
}

/// An error from wasmtime, kept whole as the source of ours. It shows as its
/// whole chain on one line (`{:#}`): wasmtime's own error type is not a
/// `std::error::Error`, and its outer message alone is often too vague.
#[derive(Debug)]
pub struct WasmtimeError(wasmtime::Error);

impl WasmtimeError {
    /// The error as wasmtime made it (to downcast), for this module only:
    /// nothing outside `runtime` knows wasmtime.
    #[allow(dead_code)]
    pub(crate) fn inner(&self) -> &wasmtime::Error {
        &self.0
    }
}

impl From<wasmtime::Error> for WasmtimeError {
    fn from(error: wasmtime::Error) -> WasmtimeError {
        WasmtimeError(error)
    }
}

impl fmt::Display for WasmtimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for WasmtimeError {}
