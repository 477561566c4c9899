// The crate's documentation is the plugin author's guide, so that every
// example in it is a doctest (`cargo test -p edgewise-sdk --doc`).
#![doc = include_str!("../README.md")]
#![deny(missing_docs)]

pub mod asset;
mod config;
mod driver;
pub mod outputs;
pub mod snapshot;
pub mod stats;
pub mod suppress;
pub mod time;
pub mod trend;
mod types;
pub mod wake;
pub mod window;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod guest;

pub use config::Config;
pub use driver::Driver;
pub use outputs::Outputs;
pub use types::{Alert, LogLevel, Metric, Reading, Severity, Summary};
pub use wake::Wake;

/// A sensor plugin: plain Rust, no WebAssembly in sight.
///
/// The host creates one instance with [`Plugin::init`], then calls
/// [`Plugin::on_readings`] with readings and [`Plugin::on_tick`] when the
/// plugin asks for it ([`Plugin::next_wake`]; by default every five minutes
/// of its clock, as contract 0.1 did). Time comes only from reading
/// timestamps and ticks: never read the wall clock, so that a replay of a
/// recording gives the same outputs as the live run.
///
/// Returning `Err` fails that one call; the host reports it with the plugin's
/// name. Outputs written before the error are still delivered.
///
/// A plugin that implements [`Plugin::snapshot`] and [`Plugin::restore`]
/// (one line: [`snapshot_state!`]) keeps its state across restarts and
/// upgrades; declare `[snapshot]` in its `edgewise.toml` to match.
pub trait Plugin: Sized + 'static {
    /// The layout version of what [`Plugin::snapshot`] writes: the bundle's
    /// `[snapshot] writes`. Change it (and `reads`) when the layout changes.
    const SNAPSHOT_SCHEMA: u32 = 1;

    /// Build the plugin from its configuration. Read every key you use with
    /// the typed getters of [`Config`] and call [`Config::finish`] to refuse
    /// unknown keys.
    fn init(config: Config) -> Result<Self, String>;

    /// Handle readings. Within one sensor, readings are in arrival order. The
    /// SDK may hand over a batch in parts, to tick the plugin at a wake that
    /// falls between two of its readings.
    fn on_readings(&mut self, readings: &[Reading<'_>], out: &mut Outputs) -> Result<(), String>;

    /// The host's clock as it hands over readings, before
    /// [`Plugin::on_readings`]: live, its clock; in replay, the virtual clock
    /// (at the batch's latest reading). It never goes back. For judging a
    /// reading's timestamp against now (a plugin woken rarely has no other
    /// now); the default ignores it.
    fn on_clock(&mut self, now_ms: i64) {
        let _ = now_ms;
    }

    /// Handle a clock tick: `now_ms` is the host clock (virtual in replay), in
    /// milliseconds since the Unix epoch. The default does nothing.
    fn on_tick(&mut self, now_ms: i64, out: &mut Outputs) -> Result<(), String> {
        let _ = (now_ms, out);
        Ok(())
    }

    /// When the plugin next needs [`Plugin::on_tick`], asked after every
    /// reading and tick. The default ticks every five minutes, as contract
    /// 0.1 did; a plugin that knows when it has something to do says so, and
    /// one without ticks says [`Wake::Idle`] (each tick costs a call).
    fn next_wake(&self) -> Wake {
        Wake::default()
    }

    /// The plugin's state in [`Plugin::SNAPSHOT_SCHEMA`]: everything that
    /// shapes its future outputs. The default has none to give.
    fn snapshot(&self) -> Result<Vec<u8>, String> {
        Err(snapshot::NOT_SUPPORTED.to_owned())
    }

    /// Take the state a [`Plugin::snapshot`] of this or another version wrote
    /// in `schema`, right after [`Plugin::init`].
    fn restore(&mut self, schema: u32, data: &[u8]) -> Result<(), String> {
        let _ = (schema, data);
        Err(snapshot::NOT_SUPPORTED.to_owned())
    }
}

/// Export a [`Plugin`] type as the component's implementation of the
/// `edgewise:plugin/sensor-plugin@0.2.0` world.
///
/// Use it once, at the crate root of a `cdylib` plugin crate. On native
/// targets it expands to nothing, so the crate also builds and tests natively.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static EDGEWISE_PLUGIN: $crate::guest::Cell<$plugin> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            struct EdgewiseGuest;

            impl $crate::guest::bindings::Guest for EdgewiseGuest {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                    resume: ::std::option::Option<$crate::guest::bindings::edgewise::plugin::types::Snapshot>,
                ) -> $crate::guest::Answer {
                    $crate::guest::init::<$plugin>(&EDGEWISE_PLUGIN, config, resume)
                }

                fn on_readings(
                    batch: $crate::guest::bindings::edgewise::plugin::types::Batch,
                ) -> $crate::guest::Answer {
                    $crate::guest::on_readings::<$plugin>(&EDGEWISE_PLUGIN, batch)
                }

                fn on_tick(now_ms: i64) -> $crate::guest::Answer {
                    $crate::guest::on_tick::<$plugin>(&EDGEWISE_PLUGIN, now_ms)
                }

                fn snapshot() -> ::std::result::Result<
                    $crate::guest::bindings::edgewise::plugin::types::Snapshot,
                    ::std::string::String,
                > {
                    $crate::guest::snapshot::<$plugin>(&EDGEWISE_PLUGIN)
                }
            }

    $crate::guest::bindings::export!(EdgewiseGuest with_types_in $crate::guest::bindings);
        };

        // Natively there is nothing to export; referring to `init` checks that
        // the type implements `Plugin` and keeps it from looking unused.
        #[cfg(not(target_arch = "wasm32"))]
        const _: fn($crate::Config) -> ::std::result::Result<$plugin, ::std::string::String> =
            <$plugin as $crate::Plugin>::init;
    };
}
