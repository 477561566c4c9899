//! Exit codes and how failures are reported.

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

    /// Print `error: ...` with its causes on one line each, return the exit code.
    pub fn report(self) -> ExitCode {
        let message = self.error.to_string();
        eprintln!("error: {message}");
        // Library errors often repeat their cause in their own message: print
        // a cause only when it adds something.
        for cause in self.error.chain().skip(1) {
            let cause = cause.to_string();
            if !message.contains(&cause) {
                eprintln!("  caused by: {cause}");
            }
        }
        ExitCode::from(self.code)
    }
}
