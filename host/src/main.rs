//! The `edgewise` command: see `edgewise --help`.

mod cli;

/// mimalloc instead of glibc's malloc: less CPU per reading on every host
/// thread (measured in live ingest; see the workspace `Cargo.toml`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    cli::main()
}
