//! The contract versions this host runs, side by side, and the types of the
//! 0.2 contract that callers see in host terms ([`Wake`], [`Snapshot`],
//! [`Assets`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A WIT world a plugin can target. A fleet keeps old bundles for years: the
/// host runs every version here, and only `runtime` knows how they differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum World {
    /// `edgewise:plugin/sensor-plugin@0.1.0`: `on-tick` every interval, no snapshot.
    V0_1,
    /// `edgewise:plugin/sensor-plugin@0.2.0`: batches of scalars, woken on
    /// demand, snapshot and restore, signed assets.
    V0_2,
}

impl World {
    /// Every world this host runs, oldest first.
    pub const ALL: [World; 2] = [World::V0_1, World::V0_2];

    /// The name a manifest's `world` field gives it.
    pub const fn name(self) -> &'static str {
        match self {
            World::V0_1 => "edgewise:plugin/sensor-plugin@0.1.0",
            World::V0_2 => "edgewise:plugin/sensor-plugin@0.2.0",
        }
    }

    /// The world a manifest names, if this host runs it.
    pub fn from_name(name: &str) -> Option<World> {
        World::ALL.into_iter().find(|world| world.name() == name)
    }

    /// The world a component targets, told by its exports alone (no
    /// compile; the rule the runtime links it by): 0.2 if it exports
    /// `snapshot`, which 0.1 has not.
    pub fn of_exports<S: AsRef<str>>(exports: &[S]) -> World {
        if exports.iter().any(|name| name.as_ref() == "snapshot") {
            World::V0_2
        } else {
            World::V0_1
        }
    }
}

impl fmt::Display for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The one-second floor of wakes: a plugin is ticked at most once per second
/// of its clock (virtual in replay). Without it a plugin that asks for a
/// tick every millisecond (or always for one already past) would make a
/// replay of months run billions of calls, and keep a device's core busy.
pub const MIN_WAKE_INTERVAL_MS: i64 = 1_000;

/// When a plugin next needs `on-tick`, as the host must honour it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// At every tick of the host's interval (a 0.1 plugin).
    Interval,
    /// Once the host clock has reached this time (ms since the epoch); the
    /// one-second floor ([`MIN_WAKE_INTERVAL_MS`]) already applied.
    At(i64),
    /// Not until a reading arrives.
    Idle,
}

impl Wake {
    /// Whether a tick at `now_ms` of the host clock is due.
    pub fn due(self, now_ms: i64) -> bool {
        match self {
            Wake::Interval => true,
            Wake::At(at) => at <= now_ms,
            Wake::Idle => false,
        }
    }
}

/// A plugin's state as it handed it over (`snapshot`), labelled with the
/// schema it is written in; opaque to the host.
#[derive(Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The plugin's number for the layout of `data`.
    pub schema: u32,
    /// The state.
    pub data: Vec<u8>,
}

/// Schema and size: the data may be megabytes.
impl fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Snapshot")
            .field("schema", &self.schema)
            .field("bytes", &self.data.len())
            .finish()
    }
}

/// What the host checks a plugin's snapshots against: the schemas its
/// manifest declares (`snapshot`, DESIGN: a new version says whether it may
/// take an old version's state).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum SnapshotSchemas {
    /// No manifest says (a plain component: the runtime API, or a replay of
    /// a plugin author's own unsigned build): the host checks no schema,
    /// the plugin alone decides what it takes.
    #[default]
    Unchecked,
    /// The plugin's manifest declares no `snapshot`: it is never given a
    /// snapshot, and none is taken from it.
    Undeclared,
    /// The plugin's manifest declares these.
    Declared {
        /// The schema its snapshots must be labelled with.
        writes: u32,
        /// The schemas it can be started from.
        reads: Vec<u32>,
    },
}

/// The signed assets a plugin can read by name (`asset`), shared by all its
/// instances without copies.
#[derive(Debug, Clone, Default)]
pub struct Assets(Arc<BTreeMap<String, Arc<[u8]>>>);

impl Assets {
    /// The assets named in `assets`.
    pub fn new(assets: impl IntoIterator<Item = (String, Arc<[u8]>)>) -> Assets {
        Assets(Arc::new(assets.into_iter().collect()))
    }

    /// The bytes of the asset `name`, if there is one.
    pub fn get(&self, name: &str) -> Option<&Arc<[u8]>> {
        self.0.get(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worlds_are_named_as_manifests_name_them() {
        for world in World::ALL {
            assert_eq!(World::from_name(world.name()), Some(world));
        }
        assert_eq!(World::from_name("edgewise:plugin/sensor-plugin@0.3.0"), None);
    }

    #[test]
    fn a_wake_is_due_once_the_clock_reaches_it() {
        assert!(Wake::Interval.due(0));
        assert!(!Wake::At(10).due(9));
        assert!(Wake::At(10).due(10));
        assert!(!Wake::Idle.due(i64::MAX));
    }
}
