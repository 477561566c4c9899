//! The one place the host runs the bindings generator: once per contract
//! version, each over its own WIT package under `wit/` (a WIT directory is one
//! package). Nothing outside `runtime` sees these types.

/// A module `$module` with the host bindings of the world `$world` in the
/// WIT package at `$path`, and its `host` and `types` interfaces.
macro_rules! contract {
    ($(#[$doc:meta])* $module:ident, $path:literal, $world:literal) => {
        $(#[$doc])*
        pub(crate) mod $module {
            wasmtime::component::bindgen!({
                path: $path,
                world: $world,
                // Every import may trap: that is how output quotas stop a runaway plugin.
                imports: { default: trappable },
            });

            pub(crate) use edgewise::plugin::{host, types};
        }
    };
}

contract!(
    /// `edgewise:plugin@0.1.0` (`wit/v0.1/`): readings as records with strings,
    /// `on-tick` every interval, key-value state.
    v0_1,
    "../wit/v0.1",
    "edgewise:plugin/sensor-plugin@0.1.0"
);

contract!(
    /// `edgewise:plugin@0.2.0` (`wit/v0.2/`): batches of scalars, wakes, snapshots, assets.
    v0_2,
    "../wit/v0.2",
    "edgewise:plugin/sensor-plugin@0.2.0"
);
