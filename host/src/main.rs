//! The `edgewise` command: see `edgewise --help`.

mod cli;

fn main() -> std::process::ExitCode {
    cli::main()
}
