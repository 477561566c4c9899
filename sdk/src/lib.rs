//! Write Edgewise sensor plugins in plain Rust.
//!
//! A plugin is a type that implements [`Plugin`], exported with
//! [`export_plugin!`]. The same code builds as a WebAssembly component
//! (`cargo build --target wasm32-wasip2`) and as a native library, so its
//! logic can be unit-tested with `cargo test` on the host: the plugin receives
//! readings and writes alerts and summaries into an [`Outputs`] value, which the
//! export glue forwards to the host (in wasm) and which tests inspect (natively).
//!
//! Start with `sdk/README.md`, the plugin author guide. The helpers that
//! sensor plugins need are in [`stats`] (Welford mean and variance),
//! [`window`] (time-windowed buffers), [`trend`] (least-squares rate of change)
//! and [`suppress`] (alert repeat suppression with an "all clear").
//!
//! # Example
//!
//! ```
//! use edgewise_sdk::{Alert, Config, Outputs, Plugin, Reading, Severity};
//!
//! struct TooHot {
//!     limit: f64,
//! }
//!
//! impl Plugin for TooHot {
//!     fn init(mut config: Config) -> Result<Self, String> {
//!         let limit = config.f64("limit", 8.0)?;
//!         config.finish()?;
//!         Ok(TooHot { limit })
//!     }
//!
//!     fn on_readings(&mut self, readings: &[Reading], out: &mut Outputs) -> Result<(), String> {
//!         for reading in readings.iter().filter(|r| r.value > self.limit) {
//!             out.alert(Alert::new(reading, Severity::Warning, "too-hot", "Above the limit"));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! edgewise_sdk::export_plugin!(TooHot);
//!
//! let mut plugin = TooHot::init(Config::default()).unwrap();
//! let mut out = Outputs::default();
//! plugin.on_readings(&[Reading::new("probe-1", 0, 9.5, "degC")], &mut out).unwrap();
//! assert_eq!(out.alerts()[0].code, "too-hot");
//! ```

#![deny(missing_docs)]

mod config;
mod outputs;
pub mod state;
pub mod stats;
pub mod suppress;
pub mod time;
pub mod trend;
mod types;
pub mod window;

#[cfg(target_arch = "wasm32")]
#[doc(hidden)]
pub mod guest;

pub use config::Config;
pub use outputs::Outputs;
pub use types::{Alert, LogLevel, Metric, Reading, Severity, Summary};

/// A sensor plugin: plain Rust, no WebAssembly in sight.
///
/// The host creates one instance with [`Plugin::init`], then calls
/// [`Plugin::on_readings`] with batches of readings and [`Plugin::on_tick`] at
/// regular intervals of its clock. Time comes only from reading timestamps and
/// ticks: never read the wall clock, so that a replay of a recording gives the
/// same outputs as the live run.
///
/// Returning `Err` fails that one call; the host reports it with the plugin's
/// name. Outputs written before the error are still delivered.
pub trait Plugin: Sized + 'static {
    /// Build the plugin from its configuration. Read every key you use with
    /// the typed getters of [`Config`] and call [`Config::finish`] to refuse
    /// unknown keys.
    fn init(config: Config) -> Result<Self, String>;

    /// Handle a batch of readings. Within one sensor, readings are in arrival order.
    fn on_readings(&mut self, readings: &[Reading], out: &mut Outputs) -> Result<(), String>;

    /// Handle a clock tick: `now_ms` is the host clock (virtual in replay), in
    /// milliseconds since the Unix epoch. The default does nothing.
    fn on_tick(&mut self, now_ms: i64, out: &mut Outputs) -> Result<(), String> {
        let _ = (now_ms, out);
        Ok(())
    }
}

/// Export a [`Plugin`] type as the component's implementation of the
/// `edgewise:plugin/sensor-plugin` world.
///
/// Use it once, at the crate root of a `cdylib` plugin crate. On native
/// targets it expands to nothing, so the crate also builds and tests natively.
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            ::std::thread_local! {
                static EDGEWISE_PLUGIN: ::std::cell::RefCell<::std::option::Option<$plugin>> =
                    const { ::std::cell::RefCell::new(::std::option::Option::None) };
            }

            struct EdgewiseGuest;

            impl $crate::guest::bindings::Guest for EdgewiseGuest {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::guest::init::<$plugin>(&EDGEWISE_PLUGIN, config)
                }

                fn on_readings(
                    readings: ::std::vec::Vec<$crate::guest::bindings::edgewise::plugin::types::Reading>,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::guest::on_readings::<$plugin>(&EDGEWISE_PLUGIN, readings)
                }

                fn on_tick(now_ms: i64) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::guest::on_tick::<$plugin>(&EDGEWISE_PLUGIN, now_ms)
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
