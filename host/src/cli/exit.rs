//! Exit codes, how failures are reported, and how results reach standard
//! output.
//!
//! A closed standard output (the reader, e.g. `head`, has what it wanted) ends
//! a command quietly with exit 0, as ripgrep does: Rust ignores `SIGPIPE`, so
//! a C tool's silent death by that signal becomes a `BrokenPipe` write error
//! here, which travels up like any error and is recognised in [`Failure::report`].
//! Commands write their results through [`to_stdout`], never `println!`
//! (which panics when the pipe is closed).

use std::io::Write;
use std::process::ExitCode;

/// Exit code: a failure at run time (a plugin failed, the output differs from
/// the golden file).
pub const FAILURE: u8 = 1;
/// Exit code: bad usage or bad input (arguments, files, recordings).
pub const USAGE: u8 = 2;

/// A command's failure: the message already says what went wrong and where.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    /// Bad usage or input: exit 2.
    pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: USAGE,
            error: error.into(),
        }
    }

    /// A failure at run time: exit 1.
    pub fn runtime(error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code: FAILURE,
            error: error.into(),
        }
    }

    /// The error, for a caller that reports it its own way.
    pub fn into_error(self) -> anyhow::Error {
        self.error
    }

    /// Print `error: ...` with its causes on one line each, return the exit
    /// code; a broken pipe anywhere in the chain is a quiet success.
    pub fn report(self) -> ExitCode {
        let broken_pipe = self.error.chain().any(|cause| {
            cause
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
        });
        if broken_pipe {
            return ExitCode::SUCCESS;
        }
        let message = self.error.to_string();
        // Through the log's queue for `run` (a stderr that takes nothing
        // must not hold the exit), after the lines before it.
        let write_line = edgewise_host::log_output::write_line;
        write_line(&format!("error: {message}"));
        // Library errors often repeat their cause in their own message: print
        // a cause only when it adds something.
        for cause in self.error.chain().skip(1) {
            let cause = cause.to_string();
            if !message.contains(&cause) {
                write_line(&format!("  caused by: {cause}"));
            }
        }
        ExitCode::from(self.code)
    }
}

/// An error with what it is about in front, on one line (`{about}: {error}`),
/// keeping `error` as the typed source of the chain (never flattened into a
/// string): `about(path, error)`.
#[derive(Debug, thiserror::Error)]
#[error("{about}: {source}")]
pub struct About {
    about: String,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

/// `{about}: {error}`, with `error` kept as the source.
pub fn about(about: impl std::fmt::Display, error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> About {
    About {
        about: about.to_string(),
        source: error.into(),
    }
}

/// Write a command's results to standard output with `write`, then flush. A
/// failed write is a run-time failure that [`Failure::report`] ends quietly if
/// the pipe was closed.
pub fn to_stdout(write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    write(&mut out)
        .and_then(|()| out.flush())
        .map_err(|e| Failure::runtime(anyhow::Error::new(e).context("cannot write to standard output")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_anywhere_in_the_chain_is_a_quiet_success() {
        let closed = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let failure = Failure::runtime(anyhow::Error::new(closed).context("cannot write to standard output"));
        assert_eq!(failure.report(), ExitCode::SUCCESS);
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        assert_eq!(
            about("file.wasm", std::io::Error::other("truncated")).to_string(),
            "file.wasm: truncated"
        );
        let failure = Failure::runtime(anyhow::Error::new(full).context("cannot write to standard output"));
        assert_eq!(failure.report(), ExitCode::from(FAILURE));
    }
}
