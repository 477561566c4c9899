//! `edgewise compile-child` (hidden): the compiler process of `edgewise run`
//! (`edgewise_host::runtime::Compiler::Child`). Not for people: the host
//! starts it with the component on standard input.

use clap::Args;

use edgewise_host::runtime::{Allocator, CHILD_COMPILE_ERROR, ChildMainError, ChildRequest, child_main};

use super::Failure;
use super::exit::FAILURE;

// The host tells a compile error from any other failure by this exit code.
const _: () = assert!(CHILD_COMPILE_ERROR == FAILURE as i32);

#[derive(Debug, Args)]
pub struct CompileChildArgs {
    /// The engine counts fuel.
    #[arg(long)]
    fuel: bool,
    /// The engine's pooling allocator: instances and their largest memory.
    #[arg(long, value_name = "INSTANCES,MAX_MEMORY_BYTES", value_parser = pooling)]
    pooling: Option<Allocator>,
}

fn pooling(text: &str) -> Result<Allocator, String> {
    let (instances, max_memory_bytes) = text.split_once(',').ok_or("expected INSTANCES,MAX_MEMORY_BYTES")?;
    Ok(Allocator::Pooling {
        instances: instances.parse().map_err(|e| format!("instances: {e}"))?,
        max_memory_bytes: max_memory_bytes.parse().map_err(|e| format!("max memory bytes: {e}"))?,
    })
}

pub fn run(args: CompileChildArgs) -> Result<(), Failure> {
    let request = ChildRequest {
        fuel: args.fuel,
        allocator: args.pooling.unwrap_or_default(),
    };
    // Exit 1 (`CHILD_COMPILE_ERROR`) only when wasmtime refuses the code;
    // 2 when the process could not be set up.
    child_main(request).map_err(|error| match error {
        ChildMainError::Compile(_) => Failure::runtime(error),
        _ => Failure::usage(error),
    })
}
