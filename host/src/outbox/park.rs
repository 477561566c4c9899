//! Entries upstream refuses for good, moved aside so that the ones behind them
//! are delivered.
//!
//! The publisher decides what a refusal is (see `run::upstream`): it calls
//! [`Outbox::refused`] after each attempt in which upstream refused an entry
//! for good, and [`Outbox::park`] once that has happened [`PARK_AFTER`] times.
//! A transient failure (no connection, no stream, an acknowledgement that
//! times out while nothing else is acknowledged) is never counted, so an
//! outage of any length moves nothing aside.
//!
//! A parked entry is not deleted: it moves, still sealed, to the `parked`
//! table of the same file, with the columns its associated data binds, for an
//! operator to inspect ([`Outbox::parked`]). The table is bounded: at most
//! [`PARKED_MAX_ENTRIES`] entries and a quarter of `OutboxLimits::max_bytes`;
//! beyond that its oldest entries go (counted in
//! `DropCounts::parked_discarded`), the newest is always kept.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior, params};

use super::entry::{Entry, Kind, NewEntry, SIZE_SQL};
use super::error::OutboxError;
use super::limits::{DropCounts, DropReason};
use super::store::{ENTRY_COLUMNS, Outbox, corrupt, insert_entries, persist_drops, too_large};

/// Attempts in which upstream refused an entry for good before it is moved
/// aside. More than one: a server restarted with a smaller limit by mistake,
/// or a permission being changed, gets a few chances to be put right.
pub const PARK_AFTER: u32 = 3;

/// Most entries the side table keeps.
pub const PARKED_MAX_ENTRIES: u64 = 1_000;

/// Why upstream refused an entry for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Larger than the server's `max_payload` (known from its INFO) or the
    /// stream's largest message.
    TooLarge,
    /// The device's account may not publish to the entry's subject (the
    /// server said so).
    PermissionDenied,
    /// Refused, or never acknowledged, while the entries behind it were
    /// acknowledged: upstream was working, and not for this entry.
    Refused,
}

impl Refusal {
    /// Every reason.
    pub const ALL: [Refusal; 3] = [Refusal::TooLarge, Refusal::PermissionDenied, Refusal::Refused];

    /// Its name in logs, alerts and the `parked` table: `too-large`,
    /// `permission-denied`, `refused`.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::TooLarge => "too-large",
            Refusal::PermissionDenied => "permission-denied",
            Refusal::Refused => "refused",
        }
    }

    /// Its counter in the `drops` table.
    fn counter(self) -> &'static str {
        match self {
            Refusal::TooLarge => "parked_too_large",
            Refusal::PermissionDenied => "parked_permission_denied",
            Refusal::Refused => "parked_refused",
        }
    }
}

/// Entries moved aside, by reason, since the outbox file was created (kept in
/// the file), and how many the side table holds now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ParkedCounts {
    /// Moved aside as [`Refusal::TooLarge`].
    pub too_large: u64,
    /// Moved aside as [`Refusal::PermissionDenied`].
    pub permission_denied: u64,
    /// Moved aside as [`Refusal::Refused`].
    pub refused: u64,
    /// Entries in the side table now.
    pub entries: u64,
}

impl ParkedCounts {
    fn slot(&mut self, reason: Refusal) -> &mut u64 {
        match reason {
            Refusal::TooLarge => &mut self.too_large,
            Refusal::PermissionDenied => &mut self.permission_denied,
            Refusal::Refused => &mut self.refused,
        }
    }
}

/// An entry in the side table, decrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParkedEntry {
    /// The entry as it was in the outbox.
    pub entry: Entry,
    /// Why it was moved aside (a [`Refusal::name`]).
    pub reason: String,
    /// When (ms since the Unix epoch).
    pub parked_ms: i64,
}

impl Outbox {
    /// Count one more attempt in which upstream refused entry `id` for good;
    /// returns the attempts counted so far (kept in the file), or 0 if the
    /// entry is no longer in the outbox.
    pub fn refused(&mut self, id: u64) -> Result<u32, OutboxError> {
        let Ok(id) = i64::try_from(id) else { return Ok(0) };
        let count: Option<i64> = self
            .conn
            .prepare_cached("UPDATE entries SET refusals = refusals + 1 WHERE id = ?1 RETURNING refusals")
            .and_then(|mut stmt| {
                let mut rows = stmt.query([id])?;
                rows.next()?.map(|row| row.get(0)).transpose()
            })
            .map_err(OutboxError::sql(&self.path, "count a refusal"))?;
        Ok(count.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)))
    }

    /// Move entry `id` aside for `reason` at `now_ms` and, in the same
    /// transaction, store `report` (the host's small alert about it, which
    /// takes room like any alert). Returns `false` (and stores nothing) if the
    /// entry is no longer in the outbox.
    pub fn park(
        &mut self,
        id: u64,
        reason: Refusal,
        now_ms: i64,
        report: Option<NewEntry>,
    ) -> Result<bool, OutboxError> {
        let Ok(sql_id) = i64::try_from(id) else {
            return Ok(false);
        };
        let path = self.path.clone();
        let sql = |operation| OutboxError::sql(&path, operation);
        if let Some(report) = &report {
            too_large(&path, self.limits.max_bytes, std::slice::from_ref(report))?;
        }
        let mut tally = self.tally.clone();
        let mut drops = DropCounts::default();
        let parked_max_bytes = (self.limits.max_bytes / 4).max(1);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("begin moving an entry aside"))?;
        let copied = tx
            .execute(
                "INSERT INTO parked (id, kind, plugin, subject, msg_id, created_ms, nonce, ciphertext, reason, parked_ms) \
                 SELECT id, kind, plugin, subject, msg_id, created_ms, nonce, ciphertext, ?2, ?3 \
                 FROM entries WHERE id = ?1",
                params![sql_id, reason.name(), now_ms],
            )
            .map_err(sql("move an entry aside"))?;
        if copied == 0 {
            return Ok(false);
        }
        let (plugin, raw_kind, size): (String, i64, i64) = tx
            .query_row(
                &format!("DELETE FROM entries WHERE id = ?1 RETURNING plugin, kind, {SIZE_SQL}"),
                [sql_id],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .map_err(sql("move an entry aside"))?;
        let kind = Kind::from_sql(raw_kind)
            .ok_or_else(|| corrupt(&path, sql_id, "kind is not 0 (alert), 1 (summary) or 2 (telemetry)"))?;
        tally.remove(&plugin, kind, 1, u64::try_from(size).unwrap_or(0));
        let entries =
            bound_parked(&tx, sql_id, parked_max_bytes, &mut drops).map_err(sql("bound the parked entries"))?;
        if let Some(report) = report {
            insert_entries(
                &tx,
                &path,
                &self.key,
                &self.rng,
                self.limits.max_bytes,
                &mut tally,
                &mut drops,
                &[report],
            )?;
        }
        add_counter(&tx, reason.counter(), 1).map_err(sql("count a parked entry"))?;
        persist_drops(&tx, &drops).map_err(sql("count dropped entries"))?;
        tx.commit().map_err(sql("commit moving an entry aside"))?;
        self.tally = tally;
        self.drops.add_all(&drops);
        *self.parked.slot(reason) += 1;
        self.parked.entries = entries;
        Ok(true)
    }

    /// Entries moved aside so far, by reason, and how many the side table holds.
    pub fn parked_counts(&self) -> ParkedCounts {
        self.parked
    }

    /// The side table, oldest first, decrypted (for an operator). A row that
    /// fails to decrypt is an [`OutboxError::Decrypt`] naming it.
    pub fn parked(&self) -> Result<Vec<ParkedEntry>, OutboxError> {
        let sql = |operation| OutboxError::sql(&self.path, operation);
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {ENTRY_COLUMNS}, reason, parked_ms FROM parked ORDER BY parked_ms, id"
            ))
            .map_err(sql("read the parked entries"))?;
        let mut rows = stmt.query([]).map_err(sql("read the parked entries"))?;
        let mut parked = Vec::new();
        while let Some(row) = rows.next().map_err(sql("read the parked entries"))? {
            let id: i64 = row.get(0).map_err(sql("read the parked entries"))?;
            let id = u64::try_from(id).map_err(|_| corrupt(&self.path, id, "negative id"))?;
            let entry = self.read_entry(row, id)??;
            parked.push(ParkedEntry {
                entry,
                reason: row.get(8).map_err(sql("read the parked entries"))?,
                parked_ms: row.get(9).map_err(sql("read the parked entries"))?,
            });
        }
        Ok(parked)
    }
}

/// Remove the oldest parked entries (never `newest`) until the side table
/// holds at most [`PARKED_MAX_ENTRIES`] and `max_bytes`; returns how many it
/// holds.
fn bound_parked(
    conn: &Connection,
    newest: i64,
    max_bytes: u64,
    drops: &mut DropCounts,
) -> Result<u64, rusqlite::Error> {
    let (mut entries, mut bytes): (i64, i64) = conn.query_row(
        &format!("SELECT count(*), coalesce(sum({SIZE_SQL}), 0) FROM parked"),
        [],
        |row| Ok((row.get(0)?, row.get(1)?)),
    )?;
    let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
    let max_entries = i64::try_from(PARKED_MAX_ENTRIES).unwrap_or(i64::MAX);
    let mut oldest = conn.prepare_cached(&format!(
        "DELETE FROM parked WHERE id = \
         (SELECT id FROM parked WHERE id != ?1 ORDER BY parked_ms, id LIMIT 1) RETURNING {SIZE_SQL}"
    ))?;
    while entries > max_entries || bytes > max_bytes {
        let mut rows = oldest.query([newest])?;
        let Some(row) = rows.next()? else { break };
        let size: i64 = row.get(0)?;
        entries -= 1;
        bytes -= size;
        drops.add(DropReason::ParkedDiscarded, 1);
    }
    Ok(u64::try_from(entries).unwrap_or(0))
}

/// Add `n` to the persisted counter `name` (inside the caller's transaction).
fn add_counter(conn: &Connection, name: &str, n: u64) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "INSERT INTO drops (reason, count) VALUES (?1, ?2) \
         ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count",
    )?
    .execute(params![name, i64::try_from(n).unwrap_or(i64::MAX)])?;
    Ok(())
}

/// Load the persisted parked counters and count the side table.
pub(super) fn load_counts(conn: &Connection, path: &Path) -> Result<ParkedCounts, OutboxError> {
    let sql = |operation| OutboxError::sql(path, operation);
    let mut counts = ParkedCounts::default();
    let mut stmt = conn
        .prepare("SELECT reason, count FROM drops")
        .map_err(sql("read the parked counters"))?;
    let mut rows = stmt.query([]).map_err(sql("read the parked counters"))?;
    while let Some(row) = rows.next().map_err(sql("read the parked counters"))? {
        let name: String = row.get(0).map_err(sql("read the parked counters"))?;
        let count: i64 = row.get(1).map_err(sql("read the parked counters"))?;
        if let Some(reason) = Refusal::ALL.into_iter().find(|r| r.counter() == name) {
            *counts.slot(reason) = u64::try_from(count).unwrap_or(0);
        }
    }
    let entries: i64 = conn
        .query_row("SELECT count(*) FROM parked", [], |row| row.get(0))
        .map_err(sql("count the parked entries"))?;
    counts.entries = u64::try_from(entries).unwrap_or(0);
    Ok(counts)
}
