//! The `edgewise` command: see `edgewise --help`.

mod cli;

/// mimalloc instead of the system allocator: see BENCHMARKS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
