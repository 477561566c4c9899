//! Compiling a component in a child process, watched and bounded
//! (`edgewise run`'s `[compile]`).
//!
//! Cranelift's memory grows with the code it compiles: about 470 MB for a
//! Python bundle (CPython in wasm). A device that runs out of memory while
//! its host compiles a new plugin would lose the whole host to the kernel's
//! OOM killer, every running plugin and the alert path with it, and the host
//! restarted would compile again: a crash loop with no alerts. Compiled by a
//! child process instead, the compilation
//!
//! - is stopped (`SIGKILL`) once its resident memory passes the limit: the
//!   host reads the child's `VmRSS` every [`WATCH_EVERY`] (an allocator-
//!   independent measure of what an OOM would be about; `RLIMIT_DATA` is not
//!   one: mimalloc reserves its arenas writable up front, and a Rust process
//!   that fails an allocation while printing a panic deadlocks instead of
//!   dying);
//! - is stopped once it has run longer than its deadline (a compilation that
//!   never ends would hold the plugin's start for ever);
//! - is the kernel's first choice if memory runs out anyway (`oom_score_adj`
//!   1000, which a process may always raise for itself);
//! - dies with the host (`PR_SET_PDEATHSIG`), so an abandoned compilation does
//!   not go on holding memory;
//! - fails as one plugin refused with its reason, while the host and its
//!   other plugins go on.
//!
//! Protocol: `<program> compile-child [--fuel] [--pooling
//! INSTANCES,MAX_MEMORY_BYTES]`, the component on standard input; the child
//! writes `Engine::precompile_component`'s artifact to standard output and
//! exits 0, or a compile error to standard error and exits
//! [`CHILD_COMPILE_ERROR`]. The program is the host's own executable as the
//! kernel knows it (`/proc/self/exe`: the same build even if the file was
//! replaced since), so the artifact is what this process would have compiled
//! itself with the same engine configuration, and it comes over a private
//! pipe: deserializing it trusts nothing more than compiling in-process does.
//! wasmtime checks the artifact's engine compatibility again when it is
//! deserialized.

use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rustix::process::Signal;
use wasmtime::Engine;
use wasmtime::component::Component;

use super::engine::{Allocator, RuntimeOptions, new_engine};
use super::error::WasmtimeError;

/// The name of the hidden `edgewise` subcommand the child runs.
pub const CHILD_COMMAND: &str = "compile-child";

/// The child's exit code when wasmtime refuses the component (any other
/// failure exits otherwise).
pub const CHILD_COMPILE_ERROR: i32 = 1;

/// How often the host reads the child's resident memory and clock.
pub const WATCH_EVERY: Duration = Duration::from_millis(10);

/// Standard error kept from a failed child: enough for wasmtime's message.
const STDERR_KEPT: usize = 4096;

/// Where a [`Runtime`](super::Runtime) compiles components.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Compiler {
    /// In this process (replay, tests, tools: the process is the only thing a
    /// failure could take down).
    #[default]
    InProcess,
    /// In a child process (see the module documentation).
    Child(ChildCompiler),
}

/// A child process running `program` [`CHILD_COMMAND`], stopped if its
/// resident memory passes `memory_limit_bytes` or it runs longer than
/// `deadline`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildCompiler {
    /// The host's executable: `/proc/self/exe` for `edgewise run`.
    pub program: PathBuf,
    /// The most resident memory the child may use.
    pub memory_limit_bytes: u64,
    /// The longest a compilation may take (wall time).
    pub deadline: Duration,
}

/// Why a child process did not compile a component.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// The child could not be started or talked to.
    #[error("cannot run the compiler process {program}: {source}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// wasmtime refused the component (the child's message).
    #[error("{0}")]
    Compile(String),
    /// The child's resident memory passed the limit: it was stopped.
    #[error(
        "compiling it needs more memory than the {limit_mib} MiB allowed (`[compile] memory_mb`): the compiler process reached {used_mib} MiB and was stopped"
    )]
    Memory {
        /// The limit, in MiB.
        limit_mib: u64,
        /// The resident memory seen last, in MiB.
        used_mib: u64,
    },
    /// The compilation ran past its deadline: it was stopped.
    #[error(
        "compiling it takes longer than the {deadline:?} allowed (`[compile] timeout`): the compiler process was stopped"
    )]
    Deadline {
        /// The deadline.
        deadline: Duration,
    },
    /// The child was killed by someone else (`SIGKILL`: the kernel's OOM
    /// killer when the device ran out of memory, or an operator).
    #[error(
        "the compiler process was killed (SIGKILL: the kernel's OOM killer if the device ran out of memory, or an operator)"
    )]
    Killed,
    /// The child ended any other way.
    #[error("the compiler process failed ({status}): {stderr}")]
    Crashed {
        /// Its exit status.
        status: String,
        /// The end of what it wrote to standard error.
        stderr: String,
    },
    /// The child's artifact does not load in this engine.
    #[error("the compiler process's artifact does not load: {0}")]
    Artifact(#[source] WasmtimeError),
}

/// Compile `code` of plugin `name` for `engine` (made with `fuel` and
/// `allocator`) in the child process of `compiler`.
pub(crate) fn compile(
    name: &str,
    engine: &Engine,
    fuel: bool,
    allocator: Allocator,
    compiler: &ChildCompiler,
    code: &[u8],
) -> Result<Component, ChildError> {
    let ChildCompiler {
        program,
        memory_limit_bytes,
        deadline,
    } = compiler;
    let (memory_limit_bytes, deadline) = (*memory_limit_bytes, *deadline);
    let started = Instant::now();
    let spawn = |source| ChildError::Spawn {
        program: program.to_owned(),
        source,
    };
    let mut command = Command::new(program);
    command.arg(CHILD_COMMAND);
    if fuel {
        command.arg("--fuel");
    }
    if let Allocator::Pooling {
        instances,
        max_memory_bytes,
    } = allocator
    {
        command.arg("--pooling").arg(format!("{instances},{max_memory_bytes}"));
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    let (mut stdin, mut stdout, mut stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    // The pipes are served by threads of their own while this one watches:
    // a child that fails early stops reading, one that writes much fills its
    // pipe, and neither side may wait on the other. A write error (the child
    // gone) shows in its exit status.
    let (watched, artifact, errors) = std::thread::scope(|scope| {
        scope.spawn(move || {
            if let Some(stdin) = stdin.as_mut() {
                let _ = stdin.write_all(code);
            }
        });
        let artifact = scope.spawn(move || read_all(stdout.as_mut()));
        let errors = scope.spawn(move || read_all(stderr.as_mut()));
        let watched = watch(&mut child, memory_limit_bytes, deadline);
        if watched.is_err() {
            // Not watched to its end (the system refused to say): end it, so
            // that its pipes close and the readers return.
            let _ = child.kill();
            let _ = child.wait();
        }
        // The child has exited (or was killed and reaped): the pipes close.
        (watched, artifact.join(), errors.join())
    });
    let (status, peak_bytes) = match watched.map_err(spawn)? {
        Watched::Exited { status, peak_bytes } => (status, peak_bytes),
        Watched::OverMemory { used_bytes } => {
            return Err(ChildError::Memory {
                limit_mib: memory_limit_bytes >> 20,
                used_mib: used_bytes >> 20,
            });
        }
        Watched::OverDeadline => return Err(ChildError::Deadline { deadline }),
    };
    // A reader thread only reads (it cannot panic but out of memory, which
    // aborts the host anyway).
    let lost = || Err(std::io::Error::other("a pipe reader panicked"));
    let artifact = artifact.unwrap_or_else(|_| lost()).map_err(spawn)?;
    let stderr = tail(&errors.unwrap_or_else(|_| lost()).unwrap_or_default());
    if status.success() {
        // What an operator sizes `[compile] memory_mb` by.
        tracing::info!(
            plugin = name,
            peak_mib = peak_bytes >> 20,
            took_ms = started.elapsed().as_millis() as u64,
            "Compiled in a child process"
        );
        return deserialize(engine, &artifact).map_err(|e| ChildError::Artifact(e.into()));
    }
    match (status.code(), status.signal()) {
        (Some(CHILD_COMPILE_ERROR), _) => Err(ChildError::Compile(stderr)),
        (_, Some(signal)) if signal == Signal::KILL.as_raw() => Err(ChildError::Killed),
        _ => Err(ChildError::Crashed {
            status: status.to_string(),
            stderr,
        }),
    }
}

/// How the watch of a child ended.
enum Watched {
    /// It exited by itself, its resident memory having peaked at
    /// `peak_bytes` as last seen (`VmHWM`; 0 if never seen).
    Exited {
        /// How it ended.
        status: ExitStatus,
        /// Its peak resident memory.
        peak_bytes: u64,
    },
    /// It was stopped: its resident memory passed the limit.
    OverMemory {
        /// What it had.
        used_bytes: u64,
    },
    /// It was stopped: it ran past the deadline.
    OverDeadline,
}

/// Wait for `child`, reading its resident memory every [`WATCH_EVERY`];
/// kill it (and reap it) if that passes `memory_limit_bytes` or the time
/// passes `deadline`.
fn watch(child: &mut Child, memory_limit_bytes: u64, deadline: Duration) -> std::io::Result<Watched> {
    let started = Instant::now();
    let status_file = PathBuf::from(format!("/proc/{}/status", child.id()));
    let mut peak_bytes = 0;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Watched::Exited { status, peak_bytes });
        }
        // Unreadable only once the child is gone: `try_wait` says next time.
        let status = std::fs::read_to_string(&status_file).unwrap_or_default();
        let used_bytes = kib_field(&status, "VmRSS:").unwrap_or(0);
        peak_bytes = kib_field(&status, "VmHWM:").unwrap_or(peak_bytes);
        let over = if used_bytes > memory_limit_bytes {
            Some(Watched::OverMemory { used_bytes })
        } else if started.elapsed() > deadline {
            Some(Watched::OverDeadline)
        } else {
            None
        };
        if let Some(over) = over {
            // An error means it has exited meanwhile: it is reaped below.
            let _ = child.kill();
            child.wait()?;
            return Ok(over);
        }
        std::thread::sleep(WATCH_EVERY);
    }
}

/// A field in kB of a `/proc/<pid>/status` (`VmRSS:`, `VmHWM:`), in bytes.
fn kib_field(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(field))?;
    let kib: u64 = line[field.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}

/// Everything `pipe` gives until it closes.
fn read_all(pipe: Option<&mut impl Read>) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if let Some(pipe) = pipe {
        pipe.read_to_end(&mut bytes)?;
    }
    Ok(bytes)
}

/// Deserialize what the compiler process wrote.
#[allow(unsafe_code)]
fn deserialize(engine: &Engine, artifact: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: `Component::deserialize` must only see unmodified output of
    // wasmtime's own serialization. These bytes are
    // `Engine::precompile_component`'s output for an engine of this
    // configuration, made by this very executable (`/proc/self/exe`) from
    // code this process verified, received whole over a pipe only the two
    // processes hold (the child exited 0: it wrote all of it), what
    // `Component::new` here would have made (see the module documentation).
    // An artifact of another wasmtime version or configuration is refused by
    // wasmtime with an error, safely.
    unsafe { Component::deserialize(engine, artifact) }
}

/// The last [`STDERR_KEPT`] bytes of `stderr`, as text, on one line.
fn tail(stderr: &[u8]) -> String {
    let start = stderr.len().saturating_sub(STDERR_KEPT);
    String::from_utf8_lossy(&stderr[start..]).trim().replace('\n', "; ")
}

/// What [`CHILD_COMMAND`] is asked: the engine configuration.
#[derive(Debug, Clone, Copy)]
pub struct ChildRequest {
    /// The engine counts fuel.
    pub fuel: bool,
    /// The engine's allocator (it shapes the compiled code's memory accesses).
    pub allocator: Allocator,
}

/// Why [`child_main`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ChildMainError {
    /// Setting up the process or reading and writing the pipes failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The engine could not be made.
    #[error("{0}")]
    Engine(#[source] super::RuntimeError),
    /// wasmtime refused the component.
    #[error("{0}")]
    Compile(#[source] WasmtimeError),
}

/// The child's side: read a component from standard input, compile it, write
/// the artifact to standard output.
pub fn child_main(request: ChildRequest) -> Result<(), ChildMainError> {
    let io = |what| move |source| ChildMainError::Io { what, source };
    // Die with the host: nobody would read the artifact. (The signal comes
    // when the thread that started this process ends; that thread waits for
    // this process, so only when the host dies.)
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))
        .map_err(|e| io("cannot ask to die with the host")(e.into()))?;
    // The kernel's first choice if memory runs out: this process, not the host.
    std::fs::write("/proc/self/oom_score_adj", "1000").map_err(io("cannot raise oom_score_adj"))?;
    let mut code = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut code)
        .map_err(io("cannot read the component"))?;
    let options = RuntimeOptions {
        fuel: request.fuel,
        allocator: request.allocator,
        ..RuntimeOptions::default()
    };
    let engine = new_engine(&options, request.allocator).map_err(ChildMainError::Engine)?;
    let artifact = engine
        .precompile_component(&code)
        .map_err(|e| ChildMainError::Compile(e.into()))?;
    drop(code);
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&artifact)
        .and_then(|()| stdout.flush())
        .map_err(io("cannot write the compiled component"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_proc_status() {
        let status = "Name:\tedgewise\nVmHWM:\t   48720 kB\nVmRSS:\t   47932 kB\nVmData:\t 1051256 kB\n";
        assert_eq!(kib_field(status, "VmRSS:"), Some(47_932 * 1024));
        assert_eq!(kib_field(status, "VmHWM:"), Some(48_720 * 1024));
        assert_eq!(kib_field("Name:\tx\n", "VmRSS:"), None);
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(kib_field(&own, "VmRSS:").unwrap() > 0, "{own}");
    }
}
