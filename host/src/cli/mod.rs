//! Command-line interface: one file per subcommand. Clap structs stay dumb;
//! each command validates its arguments once, then runs.
//!
//! Exit codes (`exit.rs`): 0 success, 1 failure at run time (a plugin failed,
//! output differs from the golden file), 2 bad usage or bad input (clap's own
//! code for usage errors). Results go to standard output through
//! `to_stdout`: a reader that stops early (`| head`) ends the command quietly
//! with 0.

mod cloud_args;
mod compile_child;
mod connection;
mod dashboard;
mod exit;
mod export;
mod fleet;
mod golden;
mod inspect;
mod keygen;
mod new;
mod push;
mod record;
mod replay;
mod rollout;
mod run;
mod sign;
mod status;
mod test;
mod undeploy;
mod verify;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use exit::{Failure, about, to_stdout};

/// Edgewise: run signed WebAssembly sensor plugins on edge devices.
#[derive(Debug, Parser)]
#[command(name = "edgewise", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Replay recorded sensor data through a plugin on a virtual clock.
    Replay(replay::ReplayArgs),
    /// Replay every recording under a plugin's tests/replay/ and compare
    /// each output with its golden file.
    Test(test::TestArgs),
    /// Write a new plugin crate: code, manifest, tests, a sample recording
    /// with its golden file, and a README with the commands.
    New(new::NewArgs),
    /// Make an Ed25519 signing key pair.
    Keygen(keygen::KeygenArgs),
    /// Sign a component into a bundle.
    Sign(sign::SignArgs),
    /// Verify a bundle against a trust store.
    Verify(verify::VerifyArgs),
    /// Show what a bundle holds (no trust needed).
    Inspect(inspect::InspectArgs),
    /// Run the live pipeline of a device (until SIGINT or SIGTERM).
    Run(run::RunArgs),
    /// Ask a running host for its status.
    Status(status::StatusArgs),
    /// Record live bus traffic into a recording for `replay` (plaintext).
    Record(record::RecordArgs),
    /// Export a plugin's input log (a stopped device's) as a recording for
    /// `replay` (plaintext).
    Export(export::ExportArgs),
    // The deployment commands' help is their arguments' doc comments (long).
    Push(push::PushArgs),
    Undeploy(undeploy::UndeployArgs),
    Rollout(rollout::RolloutArgs),
    Fleet(fleet::FleetArgs),
    Dashboard(dashboard::DashboardArgs),
    /// The compiler process of `edgewise run` (started by the host).
    #[command(name = edgewise_host::runtime::CHILD_COMMAND, hide = true)]
    CompileChild(compile_child::CompileChildArgs),
}

/// Parse the command line, run the command, map the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // `run` never waits for its log (see `log_output`); the other commands
    // end, and write every line.
    edgewise_host::log_output::init(matches!(cli.command, Command::Run(_)));
    let result = match cli.command {
        Command::Replay(args) => replay::run(args),
        Command::Test(args) => test::run(args),
        Command::New(args) => new::run(args),
        Command::Keygen(args) => keygen::run(args),
        Command::Sign(args) => sign::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Inspect(args) => inspect::run(args),
        Command::Run(args) => run::run(args),
        Command::Status(args) => status::run(args),
        Command::Record(args) => record::run(args),
        Command::Export(args) => export::run(args),
        Command::Push(args) => push::run(args),
        Command::Undeploy(args) => undeploy::run(args),
        Command::Rollout(args) => rollout::run(args),
        Command::Fleet(args) => fleet::run(args),
        Command::Dashboard(args) => dashboard::run(args),
        Command::CompileChild(args) => compile_child::run(args),
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    };
    edgewise_host::log_output::finish();
    code
}

/// `, N asset(s), B bytes` for the one-line summaries of `sign` and
/// `verify`, given the assets' sizes; empty without assets, so that the line
/// of a bundle without assets reads as it always has.
fn assets_summary(sizes: impl Iterator<Item = u64>) -> String {
    let (count, bytes) = sizes.fold((0usize, 0u64), |(count, bytes), size| (count + 1, bytes + size));
    match count {
        0 => String::new(),
        1 => format!(", 1 asset, {bytes} bytes"),
        n => format!(", {n} assets, {bytes} bytes"),
    }
}

/// A text from outside (a bundle, a device's report) as a terminal shows it:
/// control characters (a newline that would forge a line, an escape
/// sequence that would rewrite the screen) and the bidirectional overrides
/// (which reorder what is read) escaped, the rest as it is.
fn shown(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        super::Cli::command().debug_assert();
    }

    #[test]
    fn shown_escapes_control_and_bidi_characters_and_keeps_the_rest() {
        use super::shown;
        assert!(matches!(
            shown("glucose-monitor 1.0.0 é"),
            std::borrow::Cow::Borrowed(_)
        ));
        assert_eq!(shown("a\nsigned: by key trusted"), "a\\nsigned: by key trusted");
        assert_eq!(shown("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(shown("abc\u{202e}fed"), "abc\\u{202e}fed");
    }
}
