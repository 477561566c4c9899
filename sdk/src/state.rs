//! The plugin's private key-value state, kept by the host for the life of
//! one instance.
//!
//! Not durable: the host keeps it in memory only, so it is lost when the
//! instance is replaced (after a trap, a deadline or a broken limit), when the
//! host restarts, and on an upgrade. Keep nothing here that an alert depends
//! on across those.
//!
//! In a component these call the host's `state-get` / `state-set`; natively
//! (in unit tests) they use a per-thread map.

/// Read the value stored under `key`, if any.
pub fn get(key: &str) -> Option<Vec<u8>> {
    imp::get(key)
}

/// Store `value` under `key`.
pub fn set(key: &str, value: &[u8]) {
    imp::set(key, value)
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use crate::guest::bindings::edgewise::plugin::host;

    pub fn get(key: &str) -> Option<Vec<u8>> {
        host::state_get(key)
    }

    pub fn set(key: &str, value: &[u8]) {
        host::state_set(key, value)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use std::cell::RefCell;
    use std::collections::HashMap;

    thread_local! {
        static STATE: RefCell<HashMap<String, Vec<u8>>> = RefCell::new(HashMap::new());
    }

    pub fn get(key: &str) -> Option<Vec<u8>> {
        STATE.with(|state| state.borrow().get(key).cloned())
    }

    pub fn set(key: &str, value: &[u8]) {
        STATE.with(|state| state.borrow_mut().insert(key.to_owned(), value.to_vec()));
    }
}
