//! [`Outbox`]: append, read in delivery order, delete after the acknowledgement,
//! expire.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ring::aead::LessSafeKey;
use ring::rand::SystemRandom;
use rusqlite::{Connection, Row, TransactionBehavior};

use super::crypto;
use super::entry::{Entry, Kind, NewEntry, SIZE_SQL, stored_size};
use super::error::OutboxError;
use super::evict::{self, Incoming, Room};
use super::journal::{self, JournalWrite};
use super::key::OutboxKey;
use super::limits::{Depth, DropCounts, DropReason, OutboxLimits};
use super::park::{self, ParkedCounts};
use super::schema::{self, FILE_NAME};
use super::tally::Tally;

/// The columns `read_entry` decodes, in its order.
pub(super) const ENTRY_COLUMNS: &str = "id, kind, subject, msg_id, created_ms, nonce, ciphertext, plugin";

/// One group of [`Outbox::append_all`]: entries and what they add to a
/// plugin's journal.
#[derive(Debug, Default)]
pub struct Append {
    /// What the group adds to a plugin's journal.
    pub journal: Option<JournalWrite>,
    /// The outputs.
    pub entries: Vec<NewEntry>,
}

impl Append {
    fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.journal.as_ref().is_none_or(|j| j.records.is_empty())
    }
}

/// The store-and-forward queue of outputs waiting to go upstream.
///
/// Synchronous: run it on a dedicated thread or in `spawn_blocking`. One
/// `Outbox` per data directory; the file is locked for the life of the value.
pub struct Outbox {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
    pub(super) key: LessSafeKey,
    /// The device key, for the journal's derived keys.
    pub(super) keys: OutboxKey,
    pub(super) rng: SystemRandom,
    pub(super) limits: OutboxLimits,
    pub(super) tally: Tally,
    pub(super) drops: DropCounts,
    /// Entries moved aside (see `park`).
    pub(super) parked: ParkedCounts,
    /// Rows that failed to decrypt since open: skipped by `next_batch`.
    undecryptable: RefCell<BTreeSet<u64>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("path", &self.path)
            .field("limits", &self.limits)
            .field("depth", &self.tally.depth())
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// Open (or create) the outbox `<data_dir>/outbox.sqlite3`.
    ///
    /// Creates `data_dir` if needed. Refuses a file with a newer schema
    /// ([`OutboxError::UnknownSchema`]), a file created under another key
    /// ([`OutboxError::WrongKey`]), and a file another process has open
    /// ([`OutboxError::Locked`], after waiting 5 s for it to close).
    pub fn open(data_dir: &Path, key: &OutboxKey, limits: OutboxLimits) -> Result<Outbox, OutboxError> {
        crate::files::private_dir(data_dir).map_err(|source| OutboxError::Io {
            path: data_dir.to_owned(),
            operation: "create the data directory",
            source,
        })?;
        let path = data_dir.join(FILE_NAME);
        // SQLite creates the database with mode 0644 less the umask, and its
        // -wal and -shm with the database's mode: an empty 0600 file made
        // first (a valid empty database) keeps all three private.
        for suffix in ["", "-wal", "-shm"] {
            let mut file = path.clone().into_os_string();
            file.push(suffix);
            let file = PathBuf::from(file);
            let made = if suffix.is_empty() {
                crate::files::private_file(&file)
            } else {
                crate::files::narrow(&file, crate::files::PRIVATE_FILE)
            };
            made.map_err(|source| OutboxError::Io {
                path: file,
                operation: "make the database private (mode 0600)",
                source,
            })?;
        }
        let mut conn = schema::connect(&path)?;
        schema::prepare(&mut conn, &path, key.aead())?;
        // A new file's directory entry must be durable too.
        crate::files::sync_dir(data_dir).map_err(|source| OutboxError::Io {
            path: data_dir.to_owned(),
            operation: "sync the data directory",
            source,
        })?;
        Outbox::over(conn, path, key, limits)
    }

    /// An outbox in memory, standing in for the file at `path` when that
    /// cannot be opened (a read-only or failing disk at boot): it stores,
    /// bounds and delivers as the file does, under a key kept nowhere, but
    /// nothing in it outlives the process ([`super::reset::open_outbox`]).
    pub fn open_in_memory(path: &Path, limits: OutboxLimits) -> Result<Outbox, OutboxError> {
        let key = OutboxKey::ephemeral()?;
        let mut conn = Connection::open_in_memory().map_err(OutboxError::sql(path, "open an outbox in memory"))?;
        schema::prepare(&mut conn, path, key.aead())?;
        Outbox::over(conn, path.to_owned(), &key, limits)
    }

    /// The outbox over an open, prepared connection.
    fn over(conn: Connection, path: PathBuf, key: &OutboxKey, limits: OutboxLimits) -> Result<Outbox, OutboxError> {
        let tally = load_tally(&conn, &path)?;
        let drops = load_drops(&conn, &path)?;
        let parked = park::load_counts(&conn, &path)?;
        Ok(Outbox {
            conn,
            path,
            key: key.aead().clone(),
            keys: key.clone(),
            rng: SystemRandom::new(),
            limits,
            tally,
            drops,
            parked,
            undecryptable: RefCell::new(BTreeSet::new()),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The limits in force.
    pub fn limits(&self) -> OutboxLimits {
        self.limits
    }

    /// Store one entry. When this returns `Ok(Some(id))` the entry is committed
    /// and fsynced: that is the durability promise, the moment an output counts
    /// as emitted.
    ///
    /// `Ok(None)`: a summary that did not fit without evicting alerts, not
    /// stored (counted in [`DropCounts::summaries_refused`]), or telemetry
    /// that did not fit without evicting an alert or a summary (counted in
    /// [`DropCounts::telemetry`]). Making room may
    /// evict older entries (see [`OutboxLimits`] and [`DropCounts`]).
    pub fn append(&mut self, entry: NewEntry) -> Result<Option<u64>, OutboxError> {
        Ok(self.append_batch(vec![entry])?.into_iter().next().flatten())
    }

    /// Store entries in one transaction (one fsync): for each, in order, its id,
    /// or `None` for a refused summary as in [`Outbox::append`]. Nothing is
    /// stored if any entry could never fit ([`OutboxError::EntryTooLarge`]) or
    /// anything fails.
    pub fn append_batch(&mut self, entries: Vec<NewEntry>) -> Result<Vec<Option<u64>>, OutboxError> {
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        self.append_groups(vec![entries])?
            .into_iter()
            .next()
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// Group commit: store several independent groups of entries in one
    /// transaction (one fsync for all of them). Each group is all or nothing,
    /// as [`Outbox::append_batch`], on its own: a group that fails by itself
    /// (an entry that could never fit) is rolled back alone and gets its
    /// error; the others are stored. When this returns, every group with an
    /// `Ok` is committed and fsynced.
    ///
    /// The outer error is a failure of the transaction itself (begin or
    /// commit), or a refusal that is not the group's own
    /// ([`OutboxError::is_transient`]: a full disk): then nothing of any
    /// group was stored.
    #[allow(clippy::type_complexity)]
    pub fn append_groups(
        &mut self,
        groups: Vec<Vec<NewEntry>>,
    ) -> Result<Vec<Result<Vec<Option<u64>>, OutboxError>>, OutboxError> {
        let groups: Vec<Append> = groups
            .into_iter()
            .map(|entries| Append { journal: None, entries })
            .collect();
        self.append_all(&groups)
    }

    /// As [`Outbox::append_groups`], each group with what it adds to a
    /// plugin's journal (stored with its entries, all or nothing).
    #[allow(clippy::type_complexity)]
    pub fn append_all(&mut self, groups: &[Append]) -> Result<Vec<Result<Vec<Option<u64>>, OutboxError>>, OutboxError> {
        if groups.iter().all(Append::is_empty) {
            return Ok(groups.iter().map(|_| Ok(Vec::new())).collect());
        }
        // Groups rarely fail: first all of them in one plain transaction; only
        // if one fails, again with a savepoint per group (savepoints cost a
        // sub-journal copy of every page they touch).
        match self.store_groups(groups, false)? {
            Some(results) => Ok(results),
            None => Ok(self.store_groups(groups, true)?.unwrap_or_default()),
        }
    }

    /// One transaction over `groups`. With `isolate`, each group in a
    /// savepoint, a failed one undone alone; without, the first failure
    /// rolls everything back and gives `None`.
    #[allow(clippy::type_complexity)]
    fn store_groups(
        &mut self,
        groups: &[Append],
        isolate: bool,
    ) -> Result<Option<Vec<Result<Vec<Option<u64>>, OutboxError>>>, OutboxError> {
        let path = &self.path;
        let sql = |operation| OutboxError::sql(path, operation);
        let mut results: Vec<Result<Vec<Option<u64>>, OutboxError>> = Vec::with_capacity(groups.len());
        let mut tally = self.tally.clone();
        let mut drops = DropCounts::default();
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("begin an append"))?;
        for group in groups {
            if group.is_empty() {
                results.push(Ok(Vec::new()));
                continue;
            }
            let entries = &group.entries;
            let mut group_tally = tally.clone();
            let mut group_drops = DropCounts::default();
            let mut store = |conn: &Connection| {
                too_large(path, self.limits.max_bytes, entries)?;
                if let Some(write) = &group.journal {
                    journal::store(conn, path, &self.keys, &self.rng, write)?;
                }
                insert_entries(
                    conn,
                    path,
                    &self.key,
                    &self.rng,
                    self.limits.max_bytes,
                    &mut group_tally,
                    &mut group_drops,
                    entries,
                )
            };
            let stored = if isolate {
                let savepoint = tx.savepoint().map_err(sql("begin an append"))?;
                match store(&savepoint) {
                    Ok(ids) => {
                        savepoint.commit().map_err(sql("commit an append"))?;
                        Ok(ids)
                    }
                    // The disk refused it, not the group: the groups after it
                    // must not be stored before it (a plugin's journal and
                    // numbers go in order). Nothing is stored; the writer
                    // tries them all again.
                    Err(error) if error.is_transient() => return Err(error),
                    // Dropping the savepoint rolls the group back.
                    Err(error) => Err(error),
                }
            } else {
                match store(&tx) {
                    Ok(ids) => Ok(ids),
                    // Dropping the transaction rolls it back.
                    Err(_) => return Ok(None),
                }
            };
            if stored.is_ok() {
                tally = group_tally;
                drops.add_all(&group_drops);
            }
            results.push(stored);
        }
        persist_drops(&tx, &drops).map_err(sql("count dropped entries"))?;
        tx.commit().map_err(sql("commit an append"))?;
        self.tally = tally;
        self.drops.add_all(&drops);
        Ok(Some(results))
    }

    /// Up to `max` of the oldest entries in delivery order: every alert (by id)
    /// before any summary (by id), and every summary before any telemetry. Each subject carries one kind, so each
    /// subject's entries come in append order, across reopens too.
    ///
    /// A row that fails to decrypt (tampered with, corrupted), or one with a
    /// column of the wrong type, is never delivered: it is logged as an
    /// [`OutboxError::Decrypt`] or [`OutboxError::CorruptRow`] naming the
    /// row, counted in [`DropCounts::undecryptable`], listed by
    /// [`Outbox::undecryptable`], and skipped; the rows after it are still
    /// delivered.
    pub fn next_batch(&self, max: usize) -> Result<Vec<Entry>, OutboxError> {
        self.next_batch_probing(max, &BTreeSet::new())
    }

    /// As [`Outbox::next_batch`], but of each subject in `probing` only its
    /// oldest entry (upstream has no stream for them: one entry finds out
    /// when it has, and the entries behind the rest go on).
    pub fn next_batch_probing(&self, max: usize, probing: &BTreeSet<String>) -> Result<Vec<Entry>, OutboxError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        if probing.is_empty() {
            return self.oldest(max);
        }
        // The batch a walk of the whole table would make, without the walk:
        // a subject upstream has no stream for may have a backlog of
        // hundreds of thousands of entries, passed over every round. Each
        // subject's first entries in delivery order come from
        // `entries_by_subject` (keys only, no row read): the oldest of a
        // subject probed, up to `max` of any other; merged, the first `max`
        // are read.
        let mut keys = Vec::new();
        for subject in self.subjects()? {
            let take = if probing.contains(&subject) { 1 } else { max };
            self.first_keys(&subject, take, &mut keys)?;
        }
        keys.sort_unstable();
        keys.truncate(max);
        let mut batch = Vec::with_capacity(keys.len());
        for (_, id) in keys {
            let Ok(id) = u64::try_from(id) else { continue };
            if let Some(opened) = self.open_row(id)? {
                self.keep_opened(opened, id, &mut batch);
            }
        }
        Ok(batch)
    }

    /// Up to `max` of the oldest entries in delivery order (see
    /// [`Outbox::next_batch`]).
    fn oldest(&self, max: usize) -> Result<Vec<Entry>, OutboxError> {
        let mut batch = Vec::new();
        let sql = |operation| OutboxError::sql(&self.path, operation);
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {ENTRY_COLUMNS} FROM entries ORDER BY kind, id"))
            .map_err(sql("read entries"))?;
        let mut rows = stmt.query([]).map_err(sql("read entries"))?;
        while batch.len() < max {
            let Some(row) = rows.next().map_err(sql("read entries"))? else {
                break;
            };
            let id = row_id(row, &self.path)?;
            if !self.undecryptable.borrow().contains(&id) {
                self.keep_opened(self.read_entry(row, id)?, id, &mut batch);
            }
        }
        Ok(batch)
    }

    /// Add the entry `opened` from row `id` to `batch`; a row that could not
    /// be opened is logged and never delivered.
    fn keep_opened(&self, opened: Result<Entry, OutboxError>, id: u64, batch: &mut Vec<Entry>) {
        match opened {
            Ok(entry) => batch.push(entry),
            Err(error) => {
                tracing::error!("{error}; the row is skipped, never delivered");
                self.undecryptable.borrow_mut().insert(id);
            }
        }
    }

    /// Every subject with an entry, one step of `entries_by_subject` each
    /// (not one per entry). A subject that is not text (a row damaged on
    /// disk) is left out; the walk of [`Outbox::next_batch`] reports it.
    fn subjects(&self) -> Result<Vec<String>, OutboxError> {
        const SUBJECTS: &str = "
            WITH RECURSIVE subjects(subject) AS (
                SELECT min(subject) FROM entries
                UNION ALL
                SELECT (SELECT min(entries.subject) FROM entries WHERE entries.subject > subjects.subject)
                    FROM subjects WHERE subjects.subject IS NOT NULL
            )
            SELECT subject FROM subjects WHERE subject IS NOT NULL";
        let sql = |operation| OutboxError::sql(&self.path, operation);
        let mut stmt = self.conn.prepare_cached(SUBJECTS).map_err(sql("read the subjects"))?;
        let mut rows = stmt.query([]).map_err(sql("read the subjects"))?;
        let mut subjects = Vec::new();
        while let Some(row) = rows.next().map_err(sql("read the subjects"))? {
            if let Ok(subject) = row.get_ref(0).and_then(|value| Ok(value.as_str()?.to_owned())) {
                subjects.push(subject);
            }
        }
        Ok(subjects)
    }

    /// The (kind, id) of the first `take` entries of `subject` in delivery
    /// order, those that cannot be opened left out, into `keys`.
    fn first_keys(&self, subject: &str, take: usize, keys: &mut Vec<(i64, i64)>) -> Result<(), OutboxError> {
        let sql = |operation| OutboxError::sql(&self.path, operation);
        let mut stmt = self
            .conn
            .prepare_cached("SELECT kind, id FROM entries WHERE subject = ?1 ORDER BY kind, id")
            .map_err(sql("read a subject's entries"))?;
        let mut rows = stmt.query([subject]).map_err(sql("read a subject's entries"))?;
        let mut taken = 0;
        while taken < take {
            let Some(row) = rows.next().map_err(sql("read a subject's entries"))? else {
                break;
            };
            let key: (i64, i64) = (
                row.get(0).map_err(sql("read a subject's entries"))?,
                row.get(1).map_err(sql("read a subject's entries"))?,
            );
            if u64::try_from(key.1).is_ok_and(|id| self.undecryptable.borrow().contains(&id)) {
                continue;
            }
            keys.push(key);
            taken += 1;
        }
        Ok(())
    }

    /// The entry with row id `id`, if it is still in the outbox; an
    /// [`OutboxError::Decrypt`] naming the row if it fails to decrypt.
    pub fn get(&self, id: u64) -> Result<Option<Entry>, OutboxError> {
        self.open_row(id)?.transpose()
    }

    /// Row `id` opened (`Err` inside: it cannot be, see
    /// [`Outbox::read_entry`]), if it is still in the outbox; the outer
    /// error is the database's.
    fn open_row(&self, id: u64) -> Result<Option<Result<Entry, OutboxError>>, OutboxError> {
        let Ok(sql_id) = i64::try_from(id) else {
            return Ok(None);
        };
        let sql = |operation| OutboxError::sql(&self.path, operation);
        let mut stmt = self
            .conn
            .prepare_cached(&format!("SELECT {ENTRY_COLUMNS} FROM entries WHERE id = ?1"))
            .map_err(sql("read an entry"))?;
        let mut rows = stmt.query([sql_id]).map_err(sql("read an entry"))?;
        match rows.next().map_err(sql("read an entry"))? {
            Some(row) => Ok(Some(self.read_entry(row, id)?)),
            None => Ok(None),
        }
    }

    /// Remove entries once upstream has acknowledged them (the publisher calls
    /// this after the JetStream PubAck), in one transaction. Ids no longer in
    /// the outbox are ignored, so a repeated acknowledgement is harmless.
    pub fn delete(&mut self, ids: &[u64]) -> Result<(), OutboxError> {
        if ids.is_empty() {
            return Ok(());
        }
        let path = &self.path;
        let sql = |operation| OutboxError::sql(path, operation);
        let mut tally = self.tally.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("begin a delete"))?;
        for &id in ids {
            let Ok(id) = i64::try_from(id) else { continue };
            delete_entries(&tx, path, "delete entries", "id = ?1", id, &mut tally, |_| {})?;
        }
        tx.commit().map_err(sql("commit a delete"))?;
        self.tally = tally;
        Ok(())
    }

    /// Remove entries older than `OutboxLimits::max_age_ms` at `now_ms` (ms
    /// since the Unix epoch), counted in [`DropCounts::expired_alerts`] and
    /// [`DropCounts::expired_summaries`]; returns how many were removed. An entry
    /// exactly `max_age_ms` old stays. Call it periodically.
    ///
    /// Ages are corrected for the forward jumps of the wall clock recorded
    /// with [`Outbox::clock_jumped`]: an entry written before a jump is not
    /// that much older.
    pub fn expire(&mut self, now_ms: i64) -> Result<u64, OutboxError> {
        let max_age = i64::try_from(self.limits.max_age_ms).unwrap_or(i64::MAX);
        let cutoff = now_ms.saturating_sub(max_age);
        let path = &self.path;
        let sql = |operation| OutboxError::sql(path, operation);
        let mut tally = self.tally.clone();
        let mut drops = DropCounts::default();
        let mut removed = 0u64;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("begin an expiry"))?;
        let jumps: i64 = tx
            .query_row("SELECT count(*) FROM clock_jumps", [], |row| row.get(0))
            .map_err(sql("read the clock's jumps"))?;
        // Without a jump (nearly always) the plain stamp, which the index serves.
        let (entries_age, inputs_age) = match jumps {
            0 => ("created_ms".to_owned(), "created_ms".to_owned()),
            _ => (stamp_corrected("entries"), stamp_corrected("journal_inputs")),
        };
        delete_entries(
            &tx,
            path,
            "expire entries",
            &format!("{entries_age} < ?1"),
            cutoff,
            &mut tally,
            |kind| {
                drops.add(DropReason::expired(kind), 1);
                removed += 1;
            },
        )?;
        let inputs = super::journal::expire_inputs(&tx, &inputs_age, cutoff).map_err(sql("expire logged inputs"))?;
        drops.add(DropReason::InputsExpired, inputs);
        let inputs = super::journal::shrink_log(&tx, self.limits.log_max_bytes)
            .map_err(sql("keep the input log within its size"))?;
        drops.add(DropReason::InputsForSpace, inputs);
        if jumps > 0 {
            // A jump before every stamp left corrects none of them.
            tx.execute(
                "DELETE FROM clock_jumps WHERE before_ms <= coalesce((SELECT min(m) FROM \
                 (SELECT min(created_ms) AS m FROM entries UNION ALL SELECT min(created_ms) FROM journal_inputs)), \
                 9223372036854775807)",
                [],
            )
            .map_err(sql("forget the clock's old jumps"))?;
        }
        persist_drops(&tx, &drops).map_err(sql("count expired entries"))?;
        tx.commit().map_err(sql("commit an expiry"))?;
        self.tally = tally;
        self.drops.add_all(&drops);
        Ok(removed)
    }

    /// Record that the wall clock jumped forward by `by_ms` (more than the
    /// time that passed): entries and logged inputs stamped before
    /// `before_ms` (the clock's reading, before the jump, at the moment it
    /// was seen) are `by_ms` younger than their stamps say. A device with no
    /// real-time clock boots at a stale time and jumps when NTP sets it:
    /// without this, every alert waiting for the cloud would expire at once.
    pub fn clock_jumped(&mut self, before_ms: i64, by_ms: i64) -> Result<(), OutboxError> {
        self.conn
            .execute(
                "INSERT INTO clock_jumps (before_ms, by_ms) VALUES (?1, ?2)",
                rusqlite::params![before_ms, by_ms],
            )
            .map(|_| ())
            .map_err(OutboxError::sql(&self.path, "record a jump of the clock"))
    }

    /// How much is waiting: alerts, summaries, telemetry, bytes.
    pub fn depth(&self) -> Result<Depth, OutboxError> {
        Ok(self.tally.depth())
    }

    /// Creation time of the oldest entry waiting, if any (ms since the Unix
    /// epoch): how far behind upstream is.
    pub fn oldest_created_ms(&self) -> Result<Option<i64>, OutboxError> {
        self.conn
            .query_row(
                // Without a jump (nearly always) the plain stamp, whose
                // minimum the index serves: the status asks at every request.
                &format!(
                    "SELECT CASE WHEN EXISTS (SELECT 1 FROM clock_jumps) \
                     THEN (SELECT min({}) FROM entries) ELSE (SELECT min(created_ms) FROM entries) END",
                    stamp_corrected("entries")
                ),
                [],
                |row| row.get(0),
            )
            .map_err(OutboxError::sql(&self.path, "read the oldest entry"))
    }

    /// Creation time of the first entry of `kind` still waiting (ms since
    /// the Unix epoch): the one waiting longest, entries being numbered in
    /// the order they are written (one index lookup).
    pub fn first_waiting_created_ms(&self, kind: Kind) -> Result<Option<i64>, OutboxError> {
        use rusqlite::OptionalExtension;
        self.conn
            .query_row(
                &format!(
                    "SELECT {} FROM entries WHERE kind = ?1 ORDER BY id LIMIT 1",
                    stamp_corrected("entries")
                ),
                [kind.to_sql()],
                |row| row.get(0),
            )
            .optional()
            .map_err(OutboxError::sql(&self.path, "read the first entry of a class"))
    }

    /// What the outbox let go without an acknowledgement, by reason.
    pub fn dropped(&self) -> DropCounts {
        let mut drops = self.drops;
        drops.undecryptable = u64::try_from(self.undecryptable.borrow().len()).unwrap_or(u64::MAX);
        drops
    }

    /// Ids of the rows that [`Outbox::next_batch`] found undecryptable and
    /// skipped since open, ascending (including any deleted, evicted or expired
    /// since: ids are never reused).
    pub fn undecryptable(&self) -> Vec<u64> {
        self.undecryptable.borrow().iter().copied().collect()
    }

    /// Decode and decrypt one row selected with [`ENTRY_COLUMNS`]. The outer
    /// error is a failure to read the outbox; the inner one, a row that
    /// cannot be used: it fails to decrypt, or a column has the wrong type.
    pub(super) fn read_entry(&self, row: &Row<'_>, id: u64) -> Result<Result<Entry, OutboxError>, OutboxError> {
        // A column of the wrong type (the file edited or damaged) makes this
        // row unreadable, not the outbox: the inner error, like a row that
        // fails to decrypt, so the rows after it are still delivered.
        type Columns = (i64, String, String, i64, Vec<u8>, Vec<u8>, String);
        let read = || -> rusqlite::Result<Columns> {
            Ok((
                row.get(1)?,
                row.get(2)?,
                row.get(3)?,
                row.get(4)?,
                row.get(5)?,
                row.get(6)?,
                row.get(7)?,
            ))
        };
        let (raw_kind, subject, msg_id, created_ms, nonce, ciphertext, plugin) = match read() {
            Ok(columns) => columns,
            Err(error) => {
                return Ok(Err(OutboxError::CorruptRow {
                    path: self.path.clone(),
                    id: i64::try_from(id).unwrap_or(i64::MAX),
                    reason: format!("a column cannot be read ({error})"),
                }));
            }
        };
        let Some(kind) = Kind::from_sql(raw_kind) else {
            return Ok(Err(OutboxError::Decrypt {
                path: self.path.clone(),
                id,
                msg_id,
            }));
        };
        let aad = crypto::row_aad(kind, &subject, &msg_id, created_ms);
        Ok(match crypto::open(&self.key, &nonce, &aad, ciphertext) {
            Some(payload) => Ok(Entry {
                id,
                kind,
                plugin,
                subject,
                msg_id,
                payload,
                created_ms,
            }),
            None => Err(OutboxError::Decrypt {
                path: self.path.clone(),
                id,
                msg_id,
            }),
        })
    }

    /// Count the table again, bypassing the in-memory tally (for tests).
    #[cfg(test)]
    pub(crate) fn recount(&self) -> Result<Depth, OutboxError> {
        load_tally(&self.conn, &self.path).map(|tally| tally.depth())
    }
}

pub(super) fn corrupt(path: &Path, id: i64, reason: &str) -> OutboxError {
    OutboxError::CorruptRow {
        path: path.to_owned(),
        id,
        reason: reason.to_owned(),
    }
}

/// Column 0 as a row id.
fn row_id(row: &Row<'_>, path: &Path) -> Result<u64, OutboxError> {
    let id: i64 = row.get(0).map_err(OutboxError::sql(path, "read an entry"))?;
    u64::try_from(id).map_err(|_| corrupt(path, id, "negative id"))
}

/// Delete, in `tx`, the entries `condition` selects (its `?1` bound to
/// `param`): each one is taken out of `tally` and its kind given to `removed`.
/// One statement for the deletes of acknowledged entries and for expiry.
/// The stamp of a row of `table` (`entries` or `journal_inputs`) corrected
/// for the clock's forward jumps after it (see [`Outbox::clock_jumped`]).
fn stamp_corrected(table: &str) -> String {
    format!(
        "({table}.created_ms + coalesce((SELECT sum(by_ms) FROM clock_jumps WHERE before_ms > {table}.created_ms), 0))"
    )
}

fn delete_entries(
    tx: &rusqlite::Transaction<'_>,
    path: &Path,
    operation: &'static str,
    condition: &str,
    param: i64,
    tally: &mut Tally,
    mut removed: impl FnMut(Kind),
) -> Result<(), OutboxError> {
    let sql = |operation| OutboxError::sql(path, operation);
    let mut delete = tx
        .prepare_cached(&format!(
            "DELETE FROM entries WHERE {condition} RETURNING id, kind, {SIZE_SQL}, plugin"
        ))
        .map_err(sql(operation))?;
    let mut rows = delete.query([param]).map_err(sql(operation))?;
    while let Some(row) = rows.next().map_err(sql(operation))? {
        let id: i64 = row.get(0).map_err(sql(operation))?;
        let kind = Kind::from_sql(row.get(1).map_err(sql(operation))?)
            .ok_or_else(|| corrupt(path, id, "kind is not 0 (alert), 1 (summary) or 2 (telemetry)"))?;
        let size: i64 = row.get(2).map_err(sql(operation))?;
        let plugin: String = row.get(3).map_err(sql(operation))?;
        tally.remove(&plugin, kind, 1, u64::try_from(size).unwrap_or(0));
        removed(kind);
    }
    Ok(())
}

/// Count entries and bytes per kind from the table.
fn load_tally(conn: &Connection, path: &Path) -> Result<Tally, OutboxError> {
    let sql = |operation| OutboxError::sql(path, operation);
    let mut stmt = conn
        .prepare(&format!(
            "SELECT kind, count(*), coalesce(sum({SIZE_SQL}), 0), plugin FROM entries GROUP BY plugin, kind"
        ))
        .map_err(sql("count entries"))?;
    let mut rows = stmt.query([]).map_err(sql("count entries"))?;
    let mut tally = Tally::default();
    while let Some(row) = rows.next().map_err(sql("count entries"))? {
        let raw_kind: i64 = row.get(0).map_err(sql("count entries"))?;
        let count: i64 = row.get(1).map_err(sql("count entries"))?;
        let bytes: i64 = row.get(2).map_err(sql("count entries"))?;
        let plugin: String = row.get(3).map_err(sql("count entries"))?;
        let kind = Kind::from_sql(raw_kind).ok_or_else(|| OutboxError::NotAnOutbox {
            path: path.to_owned(),
            reason: format!("entries of unknown kind {raw_kind}"),
        })?;
        tally.add(
            &plugin,
            kind,
            u64::try_from(count).unwrap_or(0),
            u64::try_from(bytes).unwrap_or(0),
        );
    }
    Ok(tally)
}

/// The persisted drop counters.
fn load_drops(conn: &Connection, path: &Path) -> Result<DropCounts, OutboxError> {
    let sql = |operation| OutboxError::sql(path, operation);
    let mut stmt = conn
        .prepare("SELECT reason, count FROM drops")
        .map_err(sql("read the drop counters"))?;
    let mut rows = stmt.query([]).map_err(sql("read the drop counters"))?;
    let mut drops = DropCounts::default();
    while let Some(row) = rows.next().map_err(sql("read the drop counters"))? {
        let name: String = row.get(0).map_err(sql("read the drop counters"))?;
        let count: i64 = row.get(1).map_err(sql("read the drop counters"))?;
        // A reason this build does not know (from a newer build) is ignored.
        if let Some(reason) = DropReason::ALL.into_iter().find(|r| r.name() == name) {
            drops.add(reason, u64::try_from(count).unwrap_or(0));
        }
    }
    Ok(drops)
}

/// Add `delta` to the persisted drop counters (inside the caller's transaction).
pub(super) fn persist_drops(conn: &Connection, delta: &DropCounts) -> Result<(), rusqlite::Error> {
    for reason in DropReason::ALL {
        let n = delta.get(reason);
        if n == 0 {
            continue;
        }
        conn.prepare_cached(
            "INSERT INTO drops (reason, count) VALUES (?1, ?2) \
             ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count",
        )?
        .execute(rusqlite::params![reason.name(), i64::try_from(n).unwrap_or(i64::MAX)])?;
    }
    Ok(())
}

/// [`OutboxError::EntryTooLarge`] for the first of `entries` that could never
/// fit in an outbox of `max_bytes`.
pub(super) fn too_large(path: &Path, max_bytes: u64, entries: &[NewEntry]) -> Result<(), OutboxError> {
    match entries
        .iter()
        .map(|e| (e, stored_size(&e.subject, &e.msg_id, e.payload.len())))
        .find(|(_, size)| *size > max_bytes)
    {
        Some((entry, size)) => Err(OutboxError::EntryTooLarge {
            path: path.to_owned(),
            msg_id: entry.msg_id.clone(),
            size,
            max_bytes,
        }),
        None => Ok(()),
    }
}

/// Insert `entries` (sealed, making room first) inside the caller's
/// transaction or savepoint; `tally` and `drops` follow. Each entry's id, or
/// `None` for a refused summary.
#[allow(clippy::too_many_arguments)]
pub(super) fn insert_entries(
    conn: &Connection,
    path: &Path,
    key: &LessSafeKey,
    rng: &SystemRandom,
    max_bytes: u64,
    tally: &mut Tally,
    drops: &mut DropCounts,
    entries: &[NewEntry],
) -> Result<Vec<Option<u64>>, OutboxError> {
    let sql = |operation| OutboxError::sql(path, operation);
    let mut ids = Vec::with_capacity(entries.len());
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO entries (kind, subject, msg_id, created_ms, nonce, ciphertext, plugin) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(sql("insert an entry"))?;
    for entry in entries {
        let size = stored_size(&entry.subject, &entry.msg_id, entry.payload.len());
        let incoming = Incoming {
            plugin: &entry.plugin,
            kind: entry.kind,
            size,
        };
        let room =
            evict::make_room(conn, tally, drops, incoming, max_bytes).map_err(sql("evict entries to make room"))?;
        if room == Room::Refused {
            if let Some(reason) = DropReason::refused(entry.kind) {
                drops.add(reason, 1);
            }
            ids.push(None);
            continue;
        }
        let aad = crypto::row_aad(entry.kind, &entry.subject, &entry.msg_id, entry.created_ms);
        let (nonce, ciphertext) =
            crypto::seal(key, rng, &aad, entry.payload.clone()).map_err(|_| OutboxError::Crypto {
                operation: "encrypt an outbox entry",
            })?;
        insert
            .execute(rusqlite::params![
                entry.kind.to_sql(),
                &entry.subject,
                &entry.msg_id,
                entry.created_ms,
                &nonce[..],
                ciphertext,
                &entry.plugin,
            ])
            .map_err(sql("insert an entry"))?;
        let rowid = conn.last_insert_rowid();
        let id = u64::try_from(rowid).map_err(|_| corrupt(path, rowid, "SQLite assigned a negative id"))?;
        tally.add(&entry.plugin, entry.kind, 1, size);
        ids.push(Some(id));
    }
    Ok(ids)
}
