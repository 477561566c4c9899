//! The size limit: what to evict, in which order, to make room for a new entry.
//!
//! Each plugin holding entries (and the plugin of the new entry) has an equal
//! **share** of the outbox: `max_bytes / n`. A plugin is **over its share** when
//! the bytes it holds (with the new entry, for its own plugin) exceed it. Only
//! plugins over their share lose entries, so one plugin's flood can never evict
//! another plugin's alerts while that plugin stays within its share.
//!
//! 1. Summaries first: the oldest summary of the plugin furthest over its
//!    share, one at a time (the furthest is chosen again after each eviction;
//!    ties go to the plugin whose name sorts first).
//! 2. A new summary never evicts an alert: if the summaries of plugins over
//!    their share cannot make room, the new summary is refused and nothing is
//!    evicted for it.
//! 3. A new alert that still does not fit evicts the oldest alert of the plugin
//!    furthest over its share, the same way. With one plugin that is its own
//!    oldest alert. The choice: the outbox is bounded, and when alerts alone
//!    fill it, the newest alert describes the patient's current condition,
//!    while the oldest is the most stale (and upstream has been unreachable for
//!    its whole age). Refusing the new alert would keep stale news and lose
//!    current news.
//! 4. Only when a new alert is larger than its plugin's whole share while that
//!    plugin holds nothing (no plugin is over its share), the plugin holding
//!    the most bytes pays: summaries first, then its oldest alerts.
//!
//! Telemetry (`Kind::Telemetry`) belongs to no plugin and takes no share; it
//! is the least of what the outbox holds:
//!
//! 0. When an alert or a summary needs room, telemetry goes first, oldest
//!    first, before any rule above. A new telemetry entry is kept within
//!    [`TELEMETRY_MAX_ENTRIES`] and `max_bytes / TELEMETRY_SHARE` by dropping
//!    the oldest telemetry, and may take room only from older telemetry:
//!    if the outbox is full of alerts and summaries, it is refused (never
//!    one of those evicted for it).
//!
//! Every eviction is counted by reason. An entry larger than the whole limit
//! is refused by the caller before any of this, so evicting cannot empty the
//! outbox for nothing.

use rusqlite::Connection;

use super::entry::{Kind, SIZE_SQL};
use super::limits::{DropCounts, DropReason, TELEMETRY_MAX_ENTRIES, TELEMETRY_SHARE};
use super::tally::Tally;

/// Whether the new entry may be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Room {
    /// There is room now (possibly after evicting).
    Made,
    /// A summary that does not fit without evicting alerts, or telemetry
    /// that does not fit without evicting an alert or a summary: not stored.
    Refused,
}

/// The new entry that needs room.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Incoming<'a> {
    pub(crate) plugin: &'a str,
    pub(crate) kind: Kind,
    pub(crate) size: u64,
}

/// Make room for `incoming` under `max_bytes`, deleting rows in `conn` (inside
/// the caller's transaction) and counting them in `tally` and `drops`.
pub(crate) fn make_room(
    conn: &Connection,
    tally: &mut Tally,
    drops: &mut DropCounts,
    incoming: Incoming<'_>,
    max_bytes: u64,
) -> Result<Room, rusqlite::Error> {
    Evictor {
        conn,
        tally,
        drops,
        incoming,
        max_bytes,
    }
    .make_room()
}

/// Making room for one new entry: the table (in the caller's transaction),
/// what it holds and what was dropped, the entry, and the limit.
struct Evictor<'c, 'i> {
    conn: &'c Connection,
    tally: &'c mut Tally,
    drops: &'c mut DropCounts,
    incoming: Incoming<'i>,
    max_bytes: u64,
}

impl Evictor<'_, '_> {
    /// The rules of the module's documentation, in order.
    fn make_room(&mut self) -> Result<Room, rusqlite::Error> {
        if self.incoming.kind == Kind::Telemetry {
            return self.telemetry_room();
        }
        if self.excess() == 0 {
            return Ok(Room::Made);
        }
        if self.incoming.kind == Kind::Summary {
            // A summary may be refused after some telemetry and summaries
            // were evicted for it: a savepoint undoes those.
            let (tally_before, drops_before) = (self.tally.clone(), *self.drops);
            self.conn.execute_batch("SAVEPOINT make_room")?;
            let made = self.evict_telemetry()? || self.evict_while_over(Kind::Summary)?;
            if made {
                self.conn.execute_batch("RELEASE make_room")?;
                return Ok(Room::Made);
            }
            self.conn.execute_batch("ROLLBACK TO make_room; RELEASE make_room")?;
            *self.tally = tally_before;
            *self.drops = drops_before;
            return Ok(Room::Refused);
        }
        if self.evict_telemetry()? {
            return Ok(Room::Made);
        }
        for kind in [Kind::Summary, Kind::Alert] {
            if self.evict_while_over(kind)? {
                return Ok(Room::Made);
            }
        }
        // Rule 4: nobody is over their share, yet the new alert does not fit.
        while self.excess() > 0 {
            let Some((plugin, kind)) = largest_holder(self.tally) else {
                break;
            };
            self.evict_oldest(&plugin, kind)?;
        }
        Ok(Room::Made)
    }

    /// Rule 0 for a new telemetry entry: drop the oldest telemetry until the
    /// new one is within the telemetry bounds and the outbox; refused
    /// (nothing dropped) when even all the telemetry held would not make room.
    fn telemetry_room(&mut self) -> Result<Room, rusqlite::Error> {
        let share = self.max_bytes / TELEMETRY_SHARE;
        let held_bytes = self.tally.total().bytes_of(Kind::Telemetry);
        if self.incoming.size > share || self.excess() > held_bytes {
            return Ok(Room::Refused);
        }
        loop {
            let held = *self.tally.total();
            let within = held.entries_of(Kind::Telemetry) < TELEMETRY_MAX_ENTRIES
                && held.bytes_of(Kind::Telemetry).saturating_add(self.incoming.size) <= share
                && self.excess() == 0;
            if within {
                return Ok(Room::Made);
            }
            if held.entries_of(Kind::Telemetry) == 0 {
                return Ok(Room::Refused);
            }
            self.evict_oldest(self.incoming.plugin, Kind::Telemetry)?;
        }
    }

    /// Rule 0 for a new alert or summary: evict telemetry, oldest first,
    /// until the new entry fits (`true`) or none is left (`false`).
    fn evict_telemetry(&mut self) -> Result<bool, rusqlite::Error> {
        while self.excess() > 0 {
            if self.tally.total().entries_of(Kind::Telemetry) == 0 {
                return Ok(false);
            }
            self.evict_oldest("", Kind::Telemetry)?;
        }
        Ok(true)
    }

    /// Bytes over the limit once the new entry is added.
    fn excess(&self) -> u64 {
        self.tally
            .bytes()
            .saturating_add(self.incoming.size)
            .saturating_sub(self.max_bytes)
    }

    /// Evict entries of `kind`, one at a time, from the plugin furthest over
    /// its share, until the new entry fits (`true`) or no plugin over its
    /// share holds an entry of `kind` (`false`).
    fn evict_while_over(&mut self, kind: Kind) -> Result<bool, rusqlite::Error> {
        while self.excess() > 0 {
            let Some(victim) = self.furthest_over(kind) else {
                return Ok(false);
            };
            self.evict_oldest(&victim, kind)?;
        }
        Ok(true)
    }

    /// The plugin furthest over its share among those holding an entry of
    /// `kind`.
    fn furthest_over(&self, kind: Kind) -> Option<String> {
        let plugins = self.tally.plugins();
        let incoming = self.incoming;
        let sharers = plugins.len() + usize::from(!plugins.contains_key(incoming.plugin));
        let share = self.max_bytes / u64::try_from(sharers.max(1)).unwrap_or(u64::MAX);
        let mut furthest: Option<(&String, u64)> = None;
        for (plugin, counts) in plugins {
            if counts.entries_of(kind) == 0 {
                continue;
            }
            let mut held = counts.bytes();
            if plugin == incoming.plugin {
                held = held.saturating_add(incoming.size);
            }
            let over = held.saturating_sub(share);
            if over > 0 && furthest.is_none_or(|(_, most)| over > most) {
                furthest = Some((plugin, over));
            }
        }
        furthest.map(|(plugin, _)| plugin.clone())
    }

    /// Delete the oldest entry of `plugin` and `kind` (of `kind` alone for
    /// telemetry, which belongs to no plugin), counted.
    fn evict_oldest(&mut self, plugin: &str, kind: Kind) -> Result<(), rusqlite::Error> {
        // Telemetry belongs to no plugin: the oldest of the kind.
        let telemetry = kind == Kind::Telemetry;
        let which = if telemetry {
            "kind = ?1"
        } else {
            "kind = ?1 AND plugin = ?2"
        };
        let mut oldest = self.conn.prepare_cached(&format!(
            "DELETE FROM entries WHERE id = \
             (SELECT id FROM entries WHERE {which} ORDER BY id LIMIT 1) \
             RETURNING {SIZE_SQL}"
        ))?;
        let mut rows = if telemetry {
            oldest.query(rusqlite::params![kind.to_sql()])?
        } else {
            oldest.query(rusqlite::params![kind.to_sql(), plugin])?
        };
        match rows.next()? {
            Some(row) => {
                let size = u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0);
                self.tally.remove(plugin, kind, 1, size);
                self.drops.add(DropReason::for_space(kind), 1);
            }
            // The tally says there is one: it is out of step with the table.
            // Forget the plugin's entries of this kind rather than loop
            // forever.
            None => {
                let counts = if telemetry {
                    *self.tally.total()
                } else {
                    self.tally.plugins().get(plugin).copied().unwrap_or_default()
                };
                self.tally
                    .remove(plugin, kind, counts.entries_of(kind), counts.bytes_of(kind));
            }
        }
        Ok(())
    }
}

/// The plugin holding the most bytes (ties: the name that sorts first), and
/// the kind it loses first.
fn largest_holder(tally: &Tally) -> Option<(String, Kind)> {
    let mut largest: Option<(&String, u64)> = None;
    for (plugin, counts) in tally.plugins() {
        if largest.is_none_or(|(_, most)| counts.bytes() > most) {
            largest = Some((plugin, counts.bytes()));
        }
    }
    let (plugin, _) = largest?;
    let counts = tally.plugins().get(plugin)?;
    let kind = if counts.entries_of(Kind::Summary) > 0 {
        Kind::Summary
    } else {
        Kind::Alert
    };
    Some((plugin.clone(), kind))
}
