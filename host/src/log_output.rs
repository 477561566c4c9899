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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::fmt::MakeWriter;

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
    /// Lines offered to the queue (taken or dropped).
    offered: AtomicU64,
    /// Lines the queue's thread wrote to stderr (or failed to: a closed
    /// stderr).
    written: AtomicU64,
    /// Taken by [`finish`].
    guard: Mutex<Option<WorkerGuard>>,
}

static QUEUED: OnceLock<Queued> = OnceLock::new();

/// The front of the queue: each write is one line, offered whole.
#[derive(Clone)]
struct Front;

impl Write for Front {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        match QUEUED.get() {
            Some(queued) => {
                queued.offered.fetch_add(1, Ordering::Relaxed);
                // Lossy: taken or dropped (and counted), never waited for.
                queued.writer.clone().write(line)
            }
            None => std::io::stderr().write_all(line).map(|()| line.len()),
        }
    }

    fn write_all(&mut self, line: &[u8]) -> std::io::Result<()> {
        self.write(line).map(|_| ())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Front {
    type Writer = Front;

    fn make_writer(&'a self) -> Front {
        Front
    }
}

/// The back of the queue, on its own thread: stderr, each line counted
/// once written (or failed).
struct Back(std::io::Stderr);

impl Write for Back {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.write(bytes)
    }

    /// The queue's thread writes each line with one `write_all`.
    fn write_all(&mut self, line: &[u8]) -> std::io::Result<()> {
        let result = self.0.write_all(line);
        if let Some(queued) = QUEUED.get() {
            queued.written.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

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
        .finish(Back(std::io::stderr()));
    QUEUED.get_or_init(|| Queued {
        dropped: writer.error_counter(),
        writer,
        offered: AtomicU64::new(0),
        written: AtomicU64::new(0),
        guard: Mutex::new(Some(guard)),
    });
    builder.with_writer(Front).init();
    // A panic's message too: the default hook writes it from the panicking
    // thread, which a stalled stderr would hold (a worker's panic is
    // caught, and the host goes on). The main thread's ends the process:
    // the queue is let finish first.
    std::panic::set_hook(Box::new(move |info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("<unnamed>");
        let backtrace = std::backtrace::Backtrace::capture();
        match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => {
                write_line(&format!("thread '{name}' {info}\nstack backtrace:\n{backtrace}"));
            }
            _ => write_line(&format!("thread '{name}' {info}")),
        }
        if name == "main" {
            finish();
        }
    }));
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
    let _ = Front.write(format!("{line}\n").as_bytes());
}

/// Let the queued lines be written, waiting at most [`FINISH_WITHIN`]: at
/// exit, so that the last lines are not lost, nor the exit held by a stderr
/// that takes nothing. Lines logged after it are dropped.
pub fn finish() {
    let Some(queued) = QUEUED.get() else { return };
    let Some(guard) = queued.guard.lock().ok().and_then(|mut guard| guard.take()) else {
        return;
    };
    let deadline = Instant::now() + FINISH_WITHIN;
    let dropped = || u64::try_from(queued.dropped.dropped_lines()).unwrap_or(u64::MAX);
    while queued.written.load(Ordering::Relaxed).saturating_add(dropped()) < queued.offered.load(Ordering::Relaxed)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    // The queue's own end waits up to 1.1 s for its thread, then says so on
    // stdout, which may be the same stalled pipe: on a thread of its own,
    // left behind if it does not end at once.
    let (done, ended) = std::sync::mpsc::channel();
    let ending = std::thread::Builder::new()
        .name("edgewise-log-end".into())
        .spawn(move || {
            drop(guard);
            let _ = done.send(());
        });
    if ending.is_ok() {
        let _ = ended.recv_timeout(Duration::from_millis(200));
    }
}
