//! The one place the host runs the bindings generator over `wit/`.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "edgewise:plugin/sensor-plugin",
    // Every import may trap: that is how output quotas stop a runaway plugin.
    imports: { default: trappable },
});

pub use edgewise::plugin::types;
