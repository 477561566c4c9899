//! The sensors seen so far: found by name without string-by-string tree
//! search (slow in wasm, where `memcmp` is a byte loop), visited in name order.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use serde::{Deserialize, Serialize};

use crate::sensor::SensorState;

/// FNV-1a: a fixed (deterministic) and cheap hash for short sensor names.
#[derive(Debug, Clone, Copy)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Every sensor's state, by name. A snapshot holds the names once: the index
/// by name is rebuilt on restore.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "Stored")]
pub struct Sensors {
    /// Names and states in order of first appearance.
    states: Vec<(String, SensorState)>,
    /// Name to position in `states`.
    #[serde(skip)]
    by_name: HashMap<String, usize, BuildHasherDefault<Fnv>>,
    /// Positions in `states`, in name order (ticks handle sensors in name order).
    name_order: Vec<usize>,
    /// Position of the sensor found last: consecutive readings often share one.
    last: usize,
}

/// [`Sensors`] as a snapshot holds it: its fields but the index, in order.
#[derive(Deserialize)]
struct Stored {
    states: Vec<(String, SensorState)>,
    name_order: Vec<usize>,
    last: usize,
}

impl From<Stored> for Sensors {
    fn from(stored: Stored) -> Sensors {
        let by_name = stored
            .states
            .iter()
            .enumerate()
            .map(|(at, (name, _))| (name.clone(), at))
            .collect();
        Sensors {
            states: stored.states,
            by_name,
            name_order: stored.name_order,
            last: stored.last,
        }
    }
}

impl Sensors {
    /// The state of `name`, created by `new` if the sensor is new.
    pub fn get_or_insert(&mut self, name: &str, new: impl FnOnce() -> SensorState) -> Option<&mut SensorState> {
        let at = match self.states.get(self.last) {
            Some((last, _)) if last == name => self.last,
            _ => match self.by_name.get(name) {
                Some(&at) => at,
                None => self.insert(name, new()),
            },
        };
        self.last = at;
        self.states.get_mut(at).map(|(_, state)| state)
    }

    fn insert(&mut self, name: &str, state: SensorState) -> usize {
        let at = self.states.len();
        let states = &self.states;
        let order_at = self
            .name_order
            .partition_point(|&i| states.get(i).is_some_and(|(other, _)| other.as_str() < name));
        self.name_order.insert(order_at, at);
        self.by_name.insert(name.to_owned(), at);
        self.states.push((name.to_owned(), state));
        at
    }

    /// How many sensors there are.
    pub fn len(&self) -> usize {
        self.states.len()
    }

    /// Keep only the sensors `keep` says yes to, in the same order (rare: a
    /// sensor silent for days); the indices are rebuilt.
    pub fn retain(&mut self, mut keep: impl FnMut(&str, &SensorState) -> bool) {
        let before = self.states.len();
        self.states.retain(|(name, state)| keep(name, state));
        if self.states.len() == before {
            return;
        }
        self.by_name = self
            .states
            .iter()
            .enumerate()
            .map(|(at, (name, _))| (name.clone(), at))
            .collect();
        let mut order: Vec<(&str, usize)> = self
            .states
            .iter()
            .enumerate()
            .map(|(at, (name, _))| (name.as_str(), at))
            .collect();
        order.sort_unstable();
        self.name_order = order.into_iter().map(|(_, at)| at).collect();
        self.last = 0;
    }

    /// Call `visit` with every sensor, in name order.
    pub fn for_each_in_name_order(&mut self, mut visit: impl FnMut(&str, &mut SensorState)) {
        for &at in &self.name_order {
            if let Some((name, state)) = self.states.get_mut(at) {
                visit(name, state);
            }
        }
    }
}
