//! The running count of what the outbox holds, kept in memory so that an
//! append can enforce the size limit without scanning the table.

use super::entry::Kind;
use super::limits::Depth;

/// Entries and bytes per kind. Loaded from the table when the outbox opens and
/// updated only after a transaction commits, so it always matches the file
/// (the outbox's connection holds the database exclusively).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    alerts: u64,
    summaries: u64,
    alert_bytes: u64,
    summary_bytes: u64,
}

impl Tally {
    /// Count `entries` more entries of `kind` taking `bytes` bytes.
    pub(crate) fn add(&mut self, kind: Kind, entries: u64, bytes: u64) {
        let (count, size) = self.slots(kind);
        *count = count.saturating_add(entries);
        *size = size.saturating_add(bytes);
    }

    /// Count `entries` fewer entries of `kind` taking `bytes` bytes.
    pub(crate) fn remove(&mut self, kind: Kind, entries: u64, bytes: u64) {
        let (count, size) = self.slots(kind);
        *count = count.saturating_sub(entries);
        *size = size.saturating_sub(bytes);
    }

    /// Bytes taken by entries of `kind`.
    pub(crate) fn bytes_of(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Alert => self.alert_bytes,
            Kind::Summary => self.summary_bytes,
        }
    }

    /// Bytes taken by all entries.
    pub(crate) fn bytes(&self) -> u64 {
        self.alert_bytes.saturating_add(self.summary_bytes)
    }

    /// The public view.
    pub(crate) fn depth(&self) -> Depth {
        Depth {
            alerts: self.alerts,
            summaries: self.summaries,
            bytes: self.bytes(),
        }
    }

    fn slots(&mut self, kind: Kind) -> (&mut u64, &mut u64) {
        match kind {
            Kind::Alert => (&mut self.alerts, &mut self.alert_bytes),
            Kind::Summary => (&mut self.summaries, &mut self.summary_bytes),
        }
    }
}
