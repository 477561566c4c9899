//! The running count of what the outbox holds, in total and per plugin, kept
//! in memory so that an append can enforce the size limit (and each plugin's
//! share of it) without scanning the table.

use std::collections::BTreeMap;

use super::entry::Kind;
use super::limits::Depth;

/// Entries and bytes per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    alerts: u64,
    summaries: u64,
    telemetry: u64,
    alert_bytes: u64,
    summary_bytes: u64,
    telemetry_bytes: u64,
}

impl Counts {
    fn add(&mut self, kind: Kind, entries: u64, bytes: u64) {
        let (count, size) = self.slots(kind);
        *count = count.saturating_add(entries);
        *size = size.saturating_add(bytes);
    }

    fn remove(&mut self, kind: Kind, entries: u64, bytes: u64) {
        let (count, size) = self.slots(kind);
        *count = count.saturating_sub(entries);
        *size = size.saturating_sub(bytes);
    }

    /// Entries of `kind`.
    pub(crate) fn entries_of(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Alert => self.alerts,
            Kind::Summary => self.summaries,
            Kind::Telemetry => self.telemetry,
        }
    }

    /// Bytes taken by entries of `kind`.
    pub(crate) fn bytes_of(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Alert => self.alert_bytes,
            Kind::Summary => self.summary_bytes,
            Kind::Telemetry => self.telemetry_bytes,
        }
    }

    /// Bytes taken by all entries.
    pub(crate) fn bytes(&self) -> u64 {
        self.alert_bytes
            .saturating_add(self.summary_bytes)
            .saturating_add(self.telemetry_bytes)
    }

    fn is_empty(&self) -> bool {
        self.alerts == 0 && self.summaries == 0 && self.telemetry == 0
    }

    fn slots(&mut self, kind: Kind) -> (&mut u64, &mut u64) {
        match kind {
            Kind::Alert => (&mut self.alerts, &mut self.alert_bytes),
            Kind::Summary => (&mut self.summaries, &mut self.summary_bytes),
            Kind::Telemetry => (&mut self.telemetry, &mut self.telemetry_bytes),
        }
    }
}

/// What the outbox holds, in total and per plugin (telemetry, which belongs
/// to no plugin, in the total only: it takes no plugin's share). Loaded from the table when
/// the outbox opens and updated only after a transaction commits, so it always
/// matches the file (the outbox's connection holds the database exclusively).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    total: Counts,
    /// Only plugins holding entries (a plugin whose last entry leaves is removed).
    plugins: BTreeMap<String, Counts>,
}

impl Tally {
    /// Count `entries` more entries of `plugin` and `kind` taking `bytes` bytes.
    pub(crate) fn add(&mut self, plugin: &str, kind: Kind, entries: u64, bytes: u64) {
        self.total.add(kind, entries, bytes);
        if kind == Kind::Telemetry {
            return;
        }
        match self.plugins.get_mut(plugin) {
            Some(counts) => counts.add(kind, entries, bytes),
            None => {
                let mut counts = Counts::default();
                counts.add(kind, entries, bytes);
                self.plugins.insert(plugin.to_owned(), counts);
            }
        }
    }

    /// Count `entries` fewer entries of `plugin` and `kind` taking `bytes` bytes.
    pub(crate) fn remove(&mut self, plugin: &str, kind: Kind, entries: u64, bytes: u64) {
        self.total.remove(kind, entries, bytes);
        if kind == Kind::Telemetry {
            return;
        }
        if let Some(counts) = self.plugins.get_mut(plugin) {
            counts.remove(kind, entries, bytes);
            if counts.is_empty() {
                self.plugins.remove(plugin);
            }
        }
    }

    /// Bytes taken by all entries.
    pub(crate) fn bytes(&self) -> u64 {
        self.total.bytes()
    }

    /// What the whole outbox holds.
    pub(crate) fn total(&self) -> &Counts {
        &self.total
    }

    /// What each plugin holding entries holds, by name (telemetry aside).
    pub(crate) fn plugins(&self) -> &BTreeMap<String, Counts> {
        &self.plugins
    }

    /// The public view.
    pub(crate) fn depth(&self) -> Depth {
        Depth {
            alerts: self.total.alerts,
            summaries: self.total.summaries,
            telemetry: self.total.telemetry,
            bytes: self.bytes(),
        }
    }
}
