//! The one place the host runs the bindings generator: once per contract
//! version, each over its own WIT package under `wit/` (a WIT directory is one
//! package). Nothing outside `runtime` sees these types.

/// `edgewise:plugin@0.1.0` (`wit/v0.1/`): readings as records with strings,
/// `on-tick` every interval, key-value state.
pub(crate) mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.1",
        world: "edgewise:plugin/sensor-plugin@0.1.0",
        // Every import may trap: that is how output quotas stop a runaway plugin.
        imports: { default: trappable },
    });

    pub(crate) use edgewise::plugin::{host, types};
}

/// `edgewise:plugin@0.2.0` (`wit/v0.2/`): batches of scalars, wakes, snapshots, assets.
pub(crate) mod v0_2 {
    wasmtime::component::bindgen!({
        path: "../wit/v0.2",
        world: "edgewise:plugin/sensor-plugin@0.2.0",
        imports: { default: trappable },
    });

    pub(crate) use edgewise::plugin::{host, types};
}
