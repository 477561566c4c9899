//! Snapshot round trips in a replay (`edgewise replay --snapshot-every N`):
//! after every N readings the plugin hands over its snapshot, its instance
//! is dropped, and a fresh instance of the same compiled plugin (same
//! configuration, limits and virtual clock) is started from the snapshot.
//! A state the plugin forgot to snapshot then shows as an output that
//! differs from the uninterrupted replay's.

use crate::runtime::{CompiledPlugin, Limits, PluginClock, PluginError, PluginInstance, Runtime};

/// What a replay needs to start its plugin again from its snapshot, and
/// what it counted doing so.
pub struct Restarts<'a> {
    runtime: &'a Runtime,
    plugin: &'a CompiledPlugin,
    limits: Limits,
    config: &'a [(String, String)],
    clock: PluginClock,
    stats: SnapshotStats,
}

/// The snapshots a replay took and restored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotStats {
    /// Snapshots taken (each restored into a fresh instance).
    pub taken: u64,
    /// Their sizes added up, in bytes.
    pub total_bytes: u64,
    /// The largest, in bytes.
    pub max_bytes: u64,
    /// Where each restore happened, in order.
    pub restores: Vec<RestorePoint>,
}

/// Where a replay restored its plugin from a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestorePoint {
    /// Readings delivered before it.
    pub after_reading: u64,
    /// Outputs emitted before it.
    pub outputs: u64,
}

impl SnapshotStats {
    /// The last restore before output `index` (0-based) was emitted, if any.
    pub fn restore_before_output(&self, index: u64) -> Option<RestorePoint> {
        let after = self.restores.partition_point(|restore| restore.outputs <= index);
        after.checked_sub(1).and_then(|last| self.restores.get(last).copied())
    }
}

/// A snapshot round trip that failed, at the restore point it was for.
#[derive(Debug, thiserror::Error)]
pub enum RestartError {
    /// The plugin's snapshot was refused: by the runtime (over the state
    /// limit, in another schema than the manifest writes) or by the plugin
    /// (its `err`).
    #[error("the snapshot after reading {after_reading} was refused")]
    Snapshot {
        /// Readings delivered before it.
        after_reading: u64,
        /// Why.
        #[source]
        source: PluginError,
    },
    /// No fresh instance could be started from the snapshot: it failed to
    /// instantiate, or its `init` refused the snapshot (or the runtime did,
    /// for its size or schema).
    #[error("no fresh instance could be started from the snapshot taken after reading {after_reading}")]
    Restore {
        /// Readings delivered before it.
        after_reading: u64,
        /// Why.
        #[source]
        source: PluginError,
    },
}

impl<'a> Restarts<'a> {
    /// Restarts of `plugin`, each fresh instance with `limits`, `config` and
    /// the replay's virtual `clock` (shared with the first instance, so the
    /// time the plugin reads goes on).
    pub fn new(
        runtime: &'a Runtime,
        plugin: &'a CompiledPlugin,
        limits: Limits,
        config: &'a [(String, String)],
        clock: PluginClock,
    ) -> Restarts<'a> {
        Restarts {
            runtime,
            plugin,
            limits,
            config,
            clock,
            stats: SnapshotStats::default(),
        }
    }

    /// What the restarts so far took.
    pub fn stats(&self) -> &SnapshotStats {
        &self.stats
    }

    /// Take `instance`'s snapshot (after `after_reading` readings and
    /// `outputs` outputs) and replace `instance` by a fresh one started from
    /// it, which goes on from the same place in the host's schedule. On a
    /// failure `instance` is left as it was.
    pub(super) fn restart(
        &mut self,
        instance: &mut PluginInstance,
        after_reading: u64,
        outputs: u64,
    ) -> Result<(), RestartError> {
        let snapshot = instance
            .snapshot()
            .map_err(|source| RestartError::Snapshot { after_reading, source })?;
        let restore = |source| RestartError::Restore { after_reading, source };
        let mut fresh = PluginInstance::with_clock(self.runtime, self.plugin, self.limits.clone(), self.clock.clone())
            .map_err(restore)?;
        fresh.init_from(self.config, Some(&snapshot)).map_err(restore)?;
        fresh.continue_schedule(instance);
        *instance = fresh;
        let size = snapshot.data.len() as u64;
        self.stats.taken += 1;
        self.stats.total_bytes = self.stats.total_bytes.saturating_add(size);
        self.stats.max_bytes = self.stats.max_bytes.max(size);
        self.stats.restores.push(RestorePoint { after_reading, outputs });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_is_after_the_last_restore_made_before_it_was_emitted() {
        let restore = |after_reading, outputs| RestorePoint { after_reading, outputs };
        let stats = SnapshotStats {
            restores: vec![restore(5, 0), restore(10, 3), restore(15, 3), restore(20, 7)],
            ..SnapshotStats::default()
        };
        assert_eq!(stats.restore_before_output(0), Some(restore(5, 0)));
        assert_eq!(stats.restore_before_output(2), Some(restore(5, 0)));
        // Two restores with no output between: the later one.
        assert_eq!(stats.restore_before_output(3), Some(restore(15, 3)));
        assert_eq!(stats.restore_before_output(100), Some(restore(20, 7)));
        let first = SnapshotStats {
            restores: vec![restore(5, 2)],
            ..SnapshotStats::default()
        };
        assert_eq!(first.restore_before_output(1), None);
    }
}
