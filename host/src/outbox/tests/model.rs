//! Model-based test (as Vector's disk buffer tests): random sequences of
//! actions run against the real outbox and a tiny in-memory model; after every
//! step the batches, depth and drop counts must agree.

use proptest::prelude::*;

use super::*;
use crate::outbox::{Depth, DropCounts, TELEMETRY_MAX_ENTRIES, TELEMETRY_SHARE};

const MAX_AGE_MS: u64 = 1_000;
/// Milliseconds the clock advances per action.
const TICK_MS: i64 = 100;

#[derive(Debug, Clone)]
enum Action {
    /// Append an entry of `kind` to subject number `subject` with a payload of `len` bytes.
    Append { kind: Kind, subject: u8, len: usize },
    /// The same, several in one transaction.
    AppendBatch(Vec<(Kind, u8, usize)>),
    /// Telemetry messages of `len` bytes, `n` in one transaction (enough to
    /// pass `TELEMETRY_MAX_ENTRIES` in a few steps).
    TelemetryBurst { n: usize, len: usize },
    /// Read up to n entries in delivery order.
    NextBatch(usize),
    /// Acknowledge the entries of the last batch picked by the mask.
    Delete(Vec<bool>),
    /// Expire at the current time.
    Expire,
    /// Close and open again.
    Reopen,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![Just(Kind::Alert), Just(Kind::Summary), Just(Kind::Telemetry)]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (kind(), 0u8..3, 0usize..64).prop_map(|(kind, subject, len)| Action::Append { kind, subject, len }),
        1 => prop::collection::vec((kind(), 0u8..3, 0usize..64), 1..4).prop_map(Action::AppendBatch),
        1 => (1usize..40, 0usize..64).prop_map(|(n, len)| Action::TelemetryBurst { n, len }),
        3 => (0usize..8).prop_map(Action::NextBatch),
        3 => prop::collection::vec(any::<bool>(), 0..8).prop_map(Action::Delete),
        1 => Just(Action::Expire),
        1 => Just(Action::Reopen),
    ]
}

/// What the outbox should hold: entries with their ids, in append order.
#[derive(Debug, Default)]
struct Model {
    entries: Vec<(Entry, u64)>,
    drops: DropCounts,
    max_bytes: u64,
}

impl Model {
    fn bytes(&self, kind: Option<Kind>) -> u64 {
        self.entries
            .iter()
            .filter(|(e, _)| kind.is_none_or(|k| e.kind == k))
            .map(|(_, size)| size)
            .sum()
    }

    /// Bytes held by `plugin` (telemetry belongs to no plugin).
    fn held(&self, plugin: &str) -> u64 {
        self.entries
            .iter()
            .filter(|(e, _)| e.plugin == plugin && e.kind != Kind::Telemetry)
            .map(|(_, size)| size)
            .sum()
    }

    /// The plugins holding entries, and `also`, by name (telemetry belongs
    /// to no plugin).
    fn sharers(&self, also: &str) -> std::collections::BTreeSet<String> {
        let mut plugins: std::collections::BTreeSet<String> = self
            .entries
            .iter()
            .filter(|(e, _)| e.kind != Kind::Telemetry)
            .map(|(e, _)| e.plugin.clone())
            .collect();
        plugins.insert(also.to_owned());
        plugins
    }

    /// The plugin furthest over its share (with the new entry of `new_plugin`,
    /// `size` bytes, counted) among those holding an entry of `kind`; ties go
    /// to the first name.
    fn furthest_over(&self, new_plugin: &str, size: u64, kind: Kind) -> Option<String> {
        let sharers = self.sharers(new_plugin);
        let share = self.max_bytes / sharers.len() as u64;
        let mut best: Option<(String, u64)> = None;
        for plugin in sharers {
            if !self.entries.iter().any(|(e, _)| e.plugin == plugin && e.kind == kind) {
                continue;
            }
            let held = self.held(&plugin) + if plugin == new_plugin { size } else { 0 };
            let over = held.saturating_sub(share);
            if over > 0 && best.as_ref().is_none_or(|(_, most)| over > *most) {
                best = Some((plugin, over));
            }
        }
        best.map(|(plugin, _)| plugin)
    }

    /// Remove the oldest entry of `plugin` and `kind` (any telemetry), counted.
    fn evict_oldest(&mut self, plugin: &str, kind: Kind) {
        if let Some(i) = self
            .entries
            .iter()
            .position(|(e, _)| e.kind == kind && (kind == Kind::Telemetry || e.plugin == plugin))
        {
            self.entries.remove(i);
            match kind {
                Kind::Alert => self.drops.alerts_for_space += 1,
                Kind::Summary => self.drops.summaries_for_space += 1,
                Kind::Telemetry => self.drops.telemetry += 1,
            }
        }
    }

    fn telemetry_held(&self) -> (u64, u64) {
        let held = self.entries.iter().filter(|(e, _)| e.kind == Kind::Telemetry);
        (held.clone().count() as u64, held.map(|(_, size)| size).sum())
    }

    /// Telemetry, stated plainly: it may take the room of older telemetry
    /// only; the oldest goes while it is over its count, its share or the
    /// outbox.
    fn append_telemetry(&mut self, entry: Entry, size: u64) -> bool {
        let share = self.max_bytes / TELEMETRY_SHARE;
        let others = self.bytes(None) - self.telemetry_held().1;
        if size > share || others + size > self.max_bytes {
            self.drops.telemetry += 1;
            return false;
        }
        loop {
            let (count, bytes) = self.telemetry_held();
            if count < TELEMETRY_MAX_ENTRIES && bytes + size <= share && self.bytes(None) + size <= self.max_bytes {
                break;
            }
            self.evict_oldest("", Kind::Telemetry);
        }
        self.entries.push((entry, size));
        true
    }

    /// The size rule, stated plainly (see `evict`): returns whether the entry is stored.
    fn append(&mut self, entry: Entry) -> bool {
        let size = (entry.subject.len() + entry.msg_id.len() + 12 + entry.payload.len() + 16) as u64;
        if entry.kind == Kind::Telemetry {
            return self.append_telemetry(entry, size);
        }
        let fits = |m: &Model| m.bytes(None) + size <= m.max_bytes;
        let (entries_before, drops_before) = (self.entries.clone(), self.drops);
        while !fits(self) && self.telemetry_held().0 > 0 {
            self.evict_oldest("", Kind::Telemetry);
        }
        while !fits(self) {
            let Some(victim) = self.furthest_over(&entry.plugin, size, Kind::Summary) else {
                break;
            };
            self.evict_oldest(&victim, Kind::Summary);
        }
        if !fits(self) && entry.kind == Kind::Summary {
            self.entries = entries_before;
            self.drops = drops_before;
            self.drops.summaries_refused += 1;
            return false;
        }
        while !fits(self) {
            let Some(victim) = self.furthest_over(&entry.plugin, size, Kind::Alert) else {
                break;
            };
            self.evict_oldest(&victim, Kind::Alert);
        }
        while !fits(self) {
            // Nobody over their share: the largest holder pays, summaries first.
            let sharers = self.sharers(&entry.plugin);
            let mut largest: Option<(String, u64)> = None;
            for plugin in sharers {
                let held = self.held(&plugin);
                if held > 0 && largest.as_ref().is_none_or(|(_, most)| held > *most) {
                    largest = Some((plugin, held));
                }
            }
            let Some((plugin, _)) = largest else { break };
            let has_summary = self
                .entries
                .iter()
                .any(|(e, _)| e.plugin == plugin && e.kind == Kind::Summary);
            self.evict_oldest(&plugin, if has_summary { Kind::Summary } else { Kind::Alert });
        }
        self.entries.push((entry, size));
        true
    }

    fn next_batch(&self, max: usize) -> Vec<Entry> {
        let mut order: Vec<&Entry> = self.entries.iter().map(|(e, _)| e).collect();
        order.sort_by_key(|e| (e.kind, e.id));
        order.into_iter().take(max).cloned().collect()
    }

    fn expire(&mut self, now_ms: i64) -> u64 {
        let cutoff = now_ms - MAX_AGE_MS as i64;
        let before = self.entries.len();
        for (e, _) in self.entries.iter().filter(|(e, _)| e.created_ms < cutoff) {
            match e.kind {
                Kind::Alert => self.drops.expired_alerts += 1,
                Kind::Summary => self.drops.expired_summaries += 1,
                Kind::Telemetry => self.drops.telemetry += 1,
            }
        }
        self.entries.retain(|(e, _)| e.created_ms >= cutoff);
        (before - self.entries.len()) as u64
    }

    fn depth(&self) -> Depth {
        Depth {
            alerts: self.entries.iter().filter(|(e, _)| e.kind == Kind::Alert).count() as u64,
            summaries: self.entries.iter().filter(|(e, _)| e.kind == Kind::Summary).count() as u64,
            telemetry: self.entries.iter().filter(|(e, _)| e.kind == Kind::Telemetry).count() as u64,
            bytes: self.bytes(None),
        }
    }
}

fn new_entry(kind: Kind, subject: u8, len: usize, seq: u64, now_ms: i64) -> NewEntry {
    let mut e = match kind {
        Kind::Telemetry => telemetry(seq),
        _ => entry(kind, &format!("plugin-{subject}"), seq, &[]),
    };
    e.payload = vec![(seq % 251) as u8; len];
    e.created_ms = now_ms;
    e
}

fn stored(e: &NewEntry, id: u64) -> Entry {
    Entry {
        id,
        kind: e.kind,
        plugin: e.plugin.clone(),
        subject: e.subject.clone(),
        msg_id: e.msg_id.clone(),
        payload: e.payload.clone(),
        created_ms: e.created_ms,
    }
}

fn run(actions: Vec<Action>, max_bytes: u64) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let limits = OutboxLimits {
        max_bytes,
        max_age_ms: MAX_AGE_MS,
        ..OutboxLimits::default()
    };
    let mut outbox = Some(open_with(dir.path(), limits));
    let mut model = Model {
        max_bytes,
        ..Model::default()
    };
    let mut last_batch: Vec<u64> = Vec::new();
    let mut last_id = 0u64;
    let mut seq = 0u64;
    let mut now_ms = 0i64;
    for action in actions {
        now_ms += TICK_MS;
        let real = outbox.as_mut().unwrap();
        match action {
            Action::Append { kind, subject, len } => {
                seq += 1;
                let e = new_entry(kind, subject, len, seq, now_ms);
                let got = real.append(e.clone()).unwrap();
                let expect_stored = model.append(stored(&e, got.unwrap_or(0)));
                prop_assert_eq!(got.is_some(), expect_stored);
                if let Some(id) = got {
                    prop_assert!(id > last_id, "ids increase: {} after {}", id, last_id);
                    last_id = id;
                }
            }
            Action::AppendBatch(specs) => {
                let entries: Vec<NewEntry> = specs
                    .into_iter()
                    .map(|(kind, subject, len)| {
                        seq += 1;
                        new_entry(kind, subject, len, seq, now_ms)
                    })
                    .collect();
                let got = real.append_batch(entries.clone()).unwrap();
                prop_assert_eq!(got.len(), entries.len());
                for (e, got) in entries.iter().zip(got) {
                    prop_assert_eq!(got.is_some(), model.append(stored(e, got.unwrap_or(0))));
                    if let Some(id) = got {
                        prop_assert!(id > last_id);
                        last_id = id;
                    }
                }
            }
            Action::TelemetryBurst { n, len } => {
                let entries: Vec<NewEntry> = (0..n)
                    .map(|_| {
                        seq += 1;
                        new_entry(Kind::Telemetry, 0, len, seq, now_ms)
                    })
                    .collect();
                let got = real.append_batch(entries.clone()).unwrap();
                for (e, got) in entries.iter().zip(got) {
                    prop_assert_eq!(got.is_some(), model.append(stored(e, got.unwrap_or(0))));
                    if let Some(id) = got {
                        prop_assert!(id > last_id);
                        last_id = id;
                    }
                }
            }
            Action::NextBatch(n) => {
                let batch = real.next_batch(n).unwrap();
                prop_assert_eq!(&batch, &model.next_batch(n));
                last_batch = ids(&batch);
            }
            Action::Delete(mask) => {
                let picked: Vec<u64> = last_batch
                    .iter()
                    .zip(mask.iter().chain(std::iter::repeat(&false)))
                    .filter(|(_, pick)| **pick)
                    .map(|(id, _)| *id)
                    .collect();
                real.delete(&picked).unwrap();
                model.entries.retain(|(e, _)| !picked.contains(&e.id));
            }
            Action::Expire => {
                prop_assert_eq!(real.expire(now_ms).unwrap(), model.expire(now_ms));
            }
            Action::Reopen => {
                drop(outbox.take());
                outbox = Some(open_with(dir.path(), limits));
            }
        }
        let real = outbox.as_ref().unwrap();
        prop_assert_eq!(real.depth().unwrap(), model.depth());
        prop_assert_eq!(real.recount().unwrap(), model.depth());
        prop_assert_eq!(real.dropped(), model.drops);
        prop_assert!(real.depth().unwrap().bytes <= max_bytes);
        let oldest = model.entries.iter().map(|(e, _)| e.created_ms).min();
        prop_assert_eq!(real.oldest_created_ms().unwrap(), oldest);
    }
    // Everything left is delivered in the model's order.
    prop_assert_eq!(all(outbox.as_ref().unwrap()), model.next_batch(usize::MAX));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 64,
        // Never write regression files into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// A third of the cases with room for everything (telemetry meets its
    /// count), a third with a limit of a few entries (no room for telemetry
    /// at all), a third with room for a few telemetry messages besides the
    /// rest, so that eviction and refusal of every kind happen.
    #[test]
    fn the_outbox_agrees_with_a_model(
        actions in prop::collection::vec(action(), 1..=30),
        max_bytes in prop_oneof![Just(OutboxLimits::DEFAULT_MAX_BYTES), 400u64..1_200, 2_000u64..6_000],
    ) {
        run(actions, max_bytes)?;
    }
}
