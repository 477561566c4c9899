//! The signed assets of the plugin's bundle (a model's weights, a lookup
//! table), read by name.
//!
//! In a component, [`read`] asks the host, which verified the asset with the
//! bundle's signature. Natively (in unit tests) it reads what [`provide`]
//! stored for the current thread.

/// A copy of the bytes of the asset `name`, or `None` if the bundle has no
/// such asset. The copy counts against the plugin's memory: read an asset
/// once (in `init`) and keep what you need.
///
/// ```
/// use edgewise_sdk::asset;
///
/// asset::provide("table.bin", b"\x01\x02"); // natively: what the bundle would carry
/// assert_eq!(asset::read("table.bin"), Some(vec![1, 2]));
/// assert_eq!(asset::read("other.bin"), None);
/// ```
pub fn read(name: &str) -> Option<Vec<u8>> {
    imp::read(name)
}

/// Make `bytes` the asset `name` for [`read`] on this thread: for native
/// tests (see [`read`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn provide(name: &str, bytes: &[u8]) {
    imp::provide(name, bytes)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    pub fn read(name: &str) -> Option<Vec<u8>> {
        crate::guest::bindings::edgewise::plugin::host::asset(name)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use std::cell::RefCell;
    use std::collections::HashMap;

    thread_local! {
        static ASSETS: RefCell<HashMap<String, Vec<u8>>> = RefCell::new(HashMap::new());
    }

    pub fn read(name: &str) -> Option<Vec<u8>> {
        ASSETS.with(|assets| assets.borrow().get(name).cloned())
    }

    pub fn provide(name: &str, bytes: &[u8]) {
        ASSETS.with(|assets| assets.borrow_mut().insert(name.to_owned(), bytes.to_vec()));
    }
}
