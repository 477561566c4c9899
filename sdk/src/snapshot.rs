//! Snapshots for free: a plugin keeps everything that shapes its outputs in
//! one value whose type derives serde's `Serialize` and `Deserialize`, and
//! [`snapshot_state!`](crate::snapshot_state) writes [`Plugin::snapshot`]
//! and [`Plugin::restore`] for it, in postcard's compact binary encoding.
//!
//! ```
//! use edgewise_sdk::{Config, Outputs, Plugin, Reading};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Default, Serialize, Deserialize)]
//! struct Counts {
//!     readings: u64,
//! }
//!
//! struct Counter {
//!     state: Counts,
//! }
//!
//! impl Plugin for Counter {
//!     edgewise_sdk::snapshot_state!(state);
//!
//!     fn init(config: Config) -> Result<Self, String> {
//!         config.finish()?;
//!         Ok(Counter { state: Counts::default() })
//!     }
//!
//!     fn on_readings(&mut self, readings: &[Reading<'_>], _: &mut Outputs) -> Result<(), String> {
//!         self.state.readings += readings.len() as u64;
//!         Ok(())
//!     }
//! }
//!
//! let mut old = Counter::init(Config::default()).unwrap();
//! old.state.readings = 41;
//! let mut new = Counter::init(Config::default()).unwrap();
//! new.restore(Counter::SNAPSHOT_SCHEMA, &old.snapshot().unwrap()).unwrap();
//! assert_eq!(new.state.readings, 41);
//! ```
//!
//! Settings stay out of the state: they come from the configuration, which
//! the host hands to the new instance (an upgrade may change it).

use serde::Serialize;
use serde::de::DeserializeOwned;

/// What a plugin without snapshots answers when asked for one.
pub(crate) const NOT_SUPPORTED: &str = "this plugin keeps no snapshot (it implements neither `snapshot` nor `restore`)";

/// `value` in postcard's encoding: what [`snapshot_state!`](crate::snapshot_state) writes.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, String> {
    postcard::to_allocvec(value).map_err(|e| format!("snapshot: cannot encode the state: {e}"))
}

/// The value `data` encodes; refuses bytes left over (a snapshot of another layout).
pub fn decode<T: DeserializeOwned>(data: &[u8]) -> Result<T, String> {
    match postcard::take_from_bytes(data) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(format!(
            "snapshot: {} bytes left over after the state (another layout?)",
            rest.len()
        )),
        Err(e) => Err(format!("snapshot: cannot decode the state: {e}")),
    }
}

/// Refuse a snapshot in another schema than the plugin's
/// [`Plugin::SNAPSHOT_SCHEMA`](crate::Plugin::SNAPSHOT_SCHEMA).
pub fn expect_schema(schema: u32, own: u32) -> Result<(), String> {
    if schema == own {
        Ok(())
    } else {
        Err(format!(
            "snapshot: schema {schema}, this version reads only {own}; restoring an older layout \
             needs a `restore` of its own"
        ))
    }
}

/// Write [`Plugin::snapshot`](crate::Plugin::snapshot) and
/// [`Plugin::restore`](crate::Plugin::restore) for the field `$state` of the
/// plugin, whose type derives `Serialize` and `Deserialize`. Use it inside
/// `impl Plugin for ...`; see [`snapshot`](crate::snapshot).
#[macro_export]
macro_rules! snapshot_state {
    ($state:ident) => {
        fn snapshot(&self) -> ::std::result::Result<::std::vec::Vec<u8>, ::std::string::String> {
            $crate::snapshot::encode(&self.$state)
        }

        fn restore(&mut self, schema: u32, data: &[u8]) -> ::std::result::Result<(), ::std::string::String> {
            $crate::snapshot::expect_schema(schema, <Self as $crate::Plugin>::SNAPSHOT_SCHEMA)?;
            self.$state = $crate::snapshot::decode(data)?;
            ::std::result::Result::Ok(())
        }
    };
}
