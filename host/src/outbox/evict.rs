//! The size limit: what to evict, in which order, to make room for a new entry.
//!
//! 1. Oldest summaries first.
//! 2. A new summary never evicts an alert: if evicting every summary would not
//!    make room, the new summary is refused (and nothing is evicted for it).
//! 3. A new alert that still does not fit once no summary is left evicts the
//!    oldest alerts. The choice: the outbox is bounded, and when alerts alone
//!    fill it, the newest alert describes the patient's current condition, while
//!    the oldest is the most stale (and upstream has been unreachable for its
//!    whole age). Refusing the new alert would keep stale news and lose current
//!    news. Every eviction is counted by reason.
//!
//! An entry larger than the whole limit is refused by the caller before any of
//! this, so evicting cannot empty the outbox for nothing.

use rusqlite::Connection;

use super::entry::{Kind, SIZE_SQL};
use super::limits::{DropCounts, DropReason};
use super::tally::Tally;

/// Whether the new entry may be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Room {
    /// There is room now (possibly after evicting).
    Made,
    /// A summary that does not fit without evicting alerts: not stored.
    Refused,
}

/// Make room for an entry of `kind` taking `size` bytes under `max_bytes`,
/// deleting rows in `conn` (inside the caller's transaction) and counting them
/// in `tally` and `drops`.
pub(crate) fn make_room(
    conn: &Connection,
    tally: &mut Tally,
    drops: &mut DropCounts,
    kind: Kind,
    size: u64,
    max_bytes: u64,
) -> Result<Room, rusqlite::Error> {
    let excess = tally.bytes().saturating_add(size).saturating_sub(max_bytes);
    if excess == 0 {
        return Ok(Room::Made);
    }
    if kind == Kind::Summary && tally.bytes_of(Kind::Summary) < excess {
        return Ok(Room::Refused);
    }
    let freed = evict_oldest(conn, tally, drops, Kind::Summary, excess)?;
    if freed < excess && kind == Kind::Alert {
        evict_oldest(conn, tally, drops, Kind::Alert, excess - freed)?;
    }
    Ok(Room::Made)
}

/// Delete the oldest entries of `kind` until at least `needed` bytes are
/// freed (or none is left); returns the bytes freed.
fn evict_oldest(
    conn: &Connection,
    tally: &mut Tally,
    drops: &mut DropCounts,
    kind: Kind,
    needed: u64,
) -> Result<u64, rusqlite::Error> {
    let mut freed = 0u64;
    let mut count = 0u64;
    let mut last_id = None;
    {
        let mut oldest = conn.prepare_cached(&format!(
            "SELECT id, {SIZE_SQL} FROM entries WHERE kind = ?1 ORDER BY id"
        ))?;
        let mut rows = oldest.query([kind.to_sql()])?;
        while freed < needed {
            let Some(row) = rows.next()? else { break };
            last_id = Some(row.get::<_, i64>(0)?);
            freed = freed.saturating_add(u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0));
            count += 1;
        }
    }
    if let Some(last_id) = last_id {
        conn.prepare_cached("DELETE FROM entries WHERE kind = ?1 AND id <= ?2")?
            .execute([kind.to_sql(), last_id])?;
        tally.remove(kind, count, freed);
        drops.add(DropReason::for_space(kind), count);
    }
    Ok(freed)
}
