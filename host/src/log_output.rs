//! Where the host's log lines go: stderr, written for the long-running
//! `edgewise run` by a thread of its own through a bounded queue, so that no
//! thread of the pipeline ever waits for the log.
//!
//! stderr is often a pipe (journald, a container runtime's log driver,
//! `2>&1 | logger`). When its reader stalls, the pipe fills and every write
//! to it waits. A host writing its lines itself would then stop in the first
//! thread that logs: a plugin's worker inside a call (a wait in the host,
//! which no call deadline interrupts), then the async threads that carry
//! every plugin's readings. Alerts matter more than the log: past
//! [`QUEUED_LINES`] waiting, a line is dropped and counted
//! ([`lines_dropped`], in the status and the metrics), as
//! `tracing-appender`'s lossy writer does.
//!
//! The other commands write their lines themselves, in order, none dropped:
//! they end, and an operator reads them.

use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};

/// Lines waiting for stderr before more are dropped. A line is a few hundred
/// bytes, at most about 20 KiB (a failure's message with a plugin's stderr),
/// so the queue holds at most some 20 MiB, about 200 KiB as a rule.
pub const QUEUED_LINES: usize = 1024;

/// How long [`finish`] waits for the queued lines to be written.
pub const FINISH_WITHIN: Duration = Duration::from_secs(2);

/// The queue in front of stderr, once [`init`] set it up with `queued`.
struct Queued {
    writer: NonBlocking,
    dropped: ErrorCounter,
    /// Taken by [`finish`].
    guard: Mutex<Option<WorkerGuard>>,
}

static QUEUED: OnceLock<Queued> = OnceLock::new();

/// Send the process's log lines (as `RUST_LOG` selects them, warnings and
/// errors by default) to stderr: through the bounded queue when `queued`,
/// else written by the thread that logs. Call once, first thing.
pub fn init(queued: bool) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    if !queued {
        builder.with_writer(std::io::stderr).init();
        return;
    }
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("edgewise-log")
        .finish(std::io::stderr());
    let queued = QUEUED.get_or_init(|| Queued {
        dropped: writer.error_counter(),
        writer,
        guard: Mutex::new(Some(guard)),
    });
    builder.with_writer(queued.writer.clone()).init();
}

/// The log lines dropped so far because stderr did not take them (0 when
/// the lines are not queued).
pub fn lines_dropped() -> u64 {
    QUEUED.get().map_or(0, |queued| {
        u64::try_from(queued.dropped.dropped_lines()).unwrap_or(u64::MAX)
    })
}

/// Write `line` to stderr after the log lines before it: through the queue
/// (dropped, and counted, if it is full) when there is one.
pub fn write_line(line: &str) {
    match QUEUED.get() {
        Some(queued) => {
            // One write is one line of the queue: written whole or dropped.
            let _ = queued.writer.clone().write(format!("{line}\n").as_bytes());
        }
        None => {
            let _ = writeln!(std::io::stderr(), "{line}");
        }
    }
}

/// Let the queued lines be written, waiting at most [`FINISH_WITHIN`]: at
/// exit, so that the last lines are not lost, nor the exit held by a stderr
/// that takes nothing. (The queue's own shutdown would wait 1.1 s, then say
/// so on stdout, which may be the same stalled pipe: it waits on a thread of
/// its own, left behind if it does not finish.)
pub fn finish() {
    let Some(guard) = QUEUED.get().and_then(|queued| queued.guard.lock().ok()?.take()) else {
        return;
    };
    let (done, finished) = std::sync::mpsc::channel();
    let flushing = std::thread::Builder::new()
        .name("edgewise-log-end".into())
        .spawn(move || {
            drop(guard);
            let _ = done.send(());
        });
    if flushing.is_ok() {
        let _ = finished.recv_timeout(FINISH_WITHIN);
    }
}
