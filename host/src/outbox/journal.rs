//! The plugins' journal, in the outbox file (issue #14): what recovering a
//! plugin after any crash needs, committed in the same transactions as the
//! outputs it explains.
//!
//! - `journal_plugins`: per plugin, the highest output number and host-alert
//!   number stored, and the last position logged. (Its `incarnation`, made
//!   with the row, is no longer what names the numbers: see
//!   [`PluginJournal::incarnation`].)
//! - `journal_inputs`: the **input log**, one row per input a plugin was
//!   given (a batch of readings or a tick), at consecutive positions, sealed
//!   with the input-log key (HKDF of the device key); the associated data
//!   binds plugin and position.
//! - `journal_states`: the latest saved state (snapshot) of each plugin, with
//!   the position of the last input in it and the number its next output
//!   gets; sealed with the states key. `journal_states_aside`: states moved
//!   aside (unreadable, or refused by the plugin), kept for an operator.
//! - `journal_set_aside`: inputs (or single readings of a batch) that made a
//!   plugin fail again while it was recovered: never given again.
//!
//! A writer job carries a [`JournalWrite`]; its records are stored in the
//! same savepoint as the job's outputs, so an output is never durable without
//! the input that made it, and a state never without the outputs before it.

use std::collections::BTreeSet;
use std::path::Path;

use ring::aead::LessSafeKey;
use ring::rand::SystemRandom;
use rusqlite::{Connection, OptionalExtension, params};

use super::crypto;
use super::error::OutboxError;
use super::key::{OutboxKey, Purpose};
use super::store::{Outbox, corrupt};

/// The tables of the journal (schema version 3).
pub(super) const SCHEMA_V3: &str = "
CREATE TABLE journal_plugins (
    plugin TEXT PRIMARY KEY,
    incarnation TEXT NOT NULL,
    high_seq INTEGER NOT NULL,
    host_seq INTEGER NOT NULL,
    last_position INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE journal_inputs (
    id INTEGER PRIMARY KEY,
    plugin TEXT NOT NULL,
    position INTEGER NOT NULL,
    created_ms INTEGER NOT NULL,
    readings INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL
);
CREATE UNIQUE INDEX journal_inputs_by_position ON journal_inputs (plugin, position);
CREATE INDEX journal_inputs_by_age ON journal_inputs (created_ms);
CREATE TABLE journal_states (
    plugin TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    next_seq INTEGER NOT NULL,
    schema INTEGER NOT NULL,
    saved_ms INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL
);
CREATE TABLE journal_states_aside (
    id INTEGER PRIMARY KEY,
    plugin TEXT NOT NULL,
    position INTEGER NOT NULL,
    next_seq INTEGER NOT NULL,
    schema INTEGER NOT NULL,
    saved_ms INTEGER NOT NULL,
    nonce BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    reason TEXT NOT NULL,
    aside_ms INTEGER NOT NULL
);
CREATE TABLE journal_set_aside (
    plugin TEXT NOT NULL,
    position INTEGER NOT NULL,
    reading INTEGER NOT NULL,
    reason TEXT NOT NULL,
    aside_ms INTEGER NOT NULL,
    PRIMARY KEY (plugin, position, reading)
) WITHOUT ROWID;
";

/// States moved aside kept at most per plugin (the oldest go first).
const STATES_ASIDE_MAX: i64 = 8;

/// What a writer job adds to one plugin's journal.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JournalWrite {
    /// The plugin.
    pub plugin: String,
    /// The records, stored in order.
    pub records: Vec<Record>,
}

/// One record of a plugin's journal.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An input the plugin was given, at `position` (the next after the last
    /// one logged), made `created_ms` (wall clock; the age limit uses it).
    Input {
        /// Its position.
        position: u64,
        /// When it was logged (ms since the epoch, wall clock).
        created_ms: i64,
        /// Readings in it (0 for a tick).
        readings: u32,
        /// The encoded input (sealed here).
        data: Vec<u8>,
    },
    /// The highest output and host-alert numbers among the job's entries.
    Numbered {
        /// Highest output number stored so far.
        high_seq: u64,
        /// Highest host-alert number stored so far.
        host_seq: u64,
    },
    /// A saved state: the plugin after the input at `position`.
    State(SavedState),
    /// An input (or one reading of it) set aside for good.
    SetAside {
        /// The input's position.
        position: u64,
        /// The reading of the batch, or `None` for the whole input.
        reading: Option<u32>,
        /// Why.
        reason: String,
    },
}

impl Record {
    /// The bytes it holds beyond its fixed fields (an input, a state, a reason).
    pub fn data_len(&self) -> usize {
        match self {
            Record::Input { data, .. } => data.len(),
            Record::Numbered { .. } => 0,
            Record::State(state) => state.data.len(),
            Record::SetAside { reason, .. } => reason.len(),
        }
    }
}

/// A plugin's saved state and where it stands in the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedState {
    /// The position of the last input it has seen (0: none).
    pub position: u64,
    /// The number its next output gets; [`NEXT_AFTER_HIGHEST`] for the state
    /// a deployment switched from.
    pub next_seq: u64,
    /// The snapshot's schema.
    pub schema: u32,
    /// The snapshot's bytes.
    pub data: Vec<u8>,
}

/// [`SavedState::next_seq`] of the old version's state at a deployment's
/// switch: its outputs for the inputs after it are numbered on from the
/// highest number stored. The numbers after the switch went to the new
/// version's outputs (other code: the same number is another output), so
/// the old version, started from this state again (a rollback, or a restart
/// during the probation), must not take its outputs for ones already emitted.
/// Output numbers start at 1, so 0 is never a real next number. The worker
/// saves the state again with the number it resolved to before any of those
/// outputs is stored: a crash after that gives them again under the same
/// numbers (not emitted twice).
pub const NEXT_AFTER_HIGHEST: u64 = 0;

/// One logged input, opened.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedInput {
    /// Its position.
    pub position: u64,
    /// When it was logged (ms since the epoch, wall clock).
    pub created_ms: i64,
    /// The encoded input; `None` if the row failed to open (damaged).
    pub data: Option<Vec<u8>>,
}

/// What a plugin's journal holds at start: where numbering and recovery
/// begin.
#[derive(Debug, Clone, Default)]
pub struct PluginJournal {
    /// Names the numbers this plugin's outputs get from now on, in the
    /// `Nats-Msg-Id`: 32 lowercase hex digits, made anew each time the
    /// journal is read to start the plugin. The numbers go on from what the
    /// file holds, and a file can be set back (a backup restored, a copy
    /// started on another device): outputs made after that get numbers
    /// outputs made before it already had, and with the same name upstream
    /// would drop them as duplicates. What the outbox holds already keeps
    /// the id it was stored with, so a retry is still recognised.
    pub incarnation: String,
    /// Highest output number stored.
    pub high_seq: u64,
    /// Highest host-alert number stored.
    pub host_seq: u64,
    /// Position of the last input logged.
    pub last_position: u64,
    /// The saved state, if there is one and it opened.
    pub state: Option<SavedState>,
    /// Why a saved state was there but could not be used (it is moved aside).
    pub state_unreadable: Option<String>,
    /// The inputs after the saved state (after position 0 without one), in
    /// order, at most `max_inputs`; `None` if there were more.
    pub inputs: Option<Vec<LoggedInput>>,
    /// Inputs set aside: (position, reading or `None` for the whole input).
    pub set_aside: BTreeSet<(u64, Option<u32>)>,
    /// The latest inputs logged, newest first, whatever the saved state (at
    /// most [`RECENT_INPUTS`], and no more once [`RECENT_BYTES`] of them are
    /// read), when asked for: the messages among them may come again (the
    /// JetStream source).
    pub recent: Vec<LoggedInput>,
}

/// Inputs [`PluginJournal::recent`] holds at most. A JetStream consumer
/// started again from its ack floor delivers again every message after it,
/// acknowledged or not: one left unacknowledged (a batch dropped while the
/// plugin was down, the ack wait not yet over) can have as many after it as
/// arrive in that time, each already given to the plugin. The worker
/// remembers as many messages.
pub const RECENT_INPUTS: usize = 1 << 16;

/// Bytes of opened inputs [`PluginJournal::recent`] reads at most: inputs of
/// one reading each are a few dozen bytes, so all [`RECENT_INPUTS`] of them
/// fit. Inputs of large messages (2,000 readings, about 60 KB) stop the read
/// sooner, at about 140 of them: a redelivery from further back gives those
/// older ones to the plugin again.
pub const RECENT_BYTES: usize = 8 << 20;

/// Domain of the associated data of an input row.
const INPUT_DOMAIN: &[u8] = b"edgewise-input-v1";
/// Domain of the associated data of a saved state.
const STATE_DOMAIN: &[u8] = b"edgewise-state-v1";

fn input_aad(plugin: &str, position: u64) -> Vec<u8> {
    let mut aad = Vec::with_capacity(INPUT_DOMAIN.len() + 16 + plugin.len());
    aad.extend_from_slice(INPUT_DOMAIN);
    aad.extend_from_slice(&(plugin.len() as u64).to_be_bytes());
    aad.extend_from_slice(plugin.as_bytes());
    aad.extend_from_slice(&position.to_be_bytes());
    aad
}

fn state_aad(plugin: &str, position: u64, next_seq: u64, schema: u32) -> Vec<u8> {
    let mut aad = Vec::with_capacity(STATE_DOMAIN.len() + 28 + plugin.len());
    aad.extend_from_slice(STATE_DOMAIN);
    aad.extend_from_slice(&(plugin.len() as u64).to_be_bytes());
    aad.extend_from_slice(plugin.as_bytes());
    aad.extend_from_slice(&position.to_be_bytes());
    aad.extend_from_slice(&next_seq.to_be_bytes());
    aad.extend_from_slice(&schema.to_be_bytes());
    aad
}

fn to_sql(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn from_sql(path: &Path, value: i64, what: &str) -> Result<u64, OutboxError> {
    u64::try_from(value).map_err(|_| corrupt(path, value, what))
}

/// Store `write`'s records inside the caller's transaction or savepoint.
pub(super) fn store(
    conn: &Connection,
    path: &Path,
    keys: &OutboxKey,
    rng: &SystemRandom,
    write: &JournalWrite,
) -> Result<(), OutboxError> {
    let sql = |operation| OutboxError::sql(path, operation);
    let plugin = write.plugin.as_str();
    ensure_plugin(conn, path, plugin)?;
    for record in &write.records {
        match record {
            Record::Input {
                position,
                created_ms,
                readings,
                data,
            } => {
                let aad = input_aad(plugin, *position);
                let (nonce, ciphertext) = seal(keys.derived(Purpose::InputLog), rng, &aad, data.clone())?;
                conn.prepare_cached(
                    "INSERT INTO journal_inputs (plugin, position, created_ms, readings, nonce, ciphertext) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut insert| {
                    insert.execute(params![
                        plugin,
                        to_sql(*position),
                        created_ms,
                        readings,
                        &nonce[..],
                        ciphertext
                    ])
                })
                .map_err(sql("log an input"))?;
                conn.prepare_cached(
                    "UPDATE journal_plugins SET last_position = max(last_position, ?2) WHERE plugin = ?1",
                )
                .and_then(|mut update| update.execute(params![plugin, to_sql(*position)]))
                .map_err(sql("log an input"))?;
            }
            Record::Numbered { high_seq, host_seq } => {
                conn.prepare_cached(
                    "UPDATE journal_plugins SET high_seq = max(high_seq, ?2), host_seq = max(host_seq, ?3) \
                     WHERE plugin = ?1",
                )
                .and_then(|mut update| update.execute(params![plugin, to_sql(*high_seq), to_sql(*host_seq)]))
                .map_err(sql("record output numbers"))?;
            }
            Record::State(state) => {
                let aad = state_aad(plugin, state.position, state.next_seq, state.schema);
                let (nonce, ciphertext) = seal(keys.derived(Purpose::States), rng, &aad, state.data.clone())?;
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO journal_states \
                     (plugin, position, next_seq, schema, saved_ms, nonce, ciphertext) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .and_then(|mut insert| {
                    insert.execute(params![
                        plugin,
                        to_sql(state.position),
                        to_sql(state.next_seq),
                        state.schema,
                        super::entry::wall_ms(),
                        &nonce[..],
                        ciphertext
                    ])
                })
                .map_err(sql("save a plugin's state"))?;
            }
            Record::SetAside {
                position,
                reading,
                reason,
            } => {
                let reading = reading.map_or(-1, i64::from);
                conn.execute(
                    "INSERT OR REPLACE INTO journal_set_aside (plugin, position, reading, reason, aside_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![plugin, to_sql(*position), reading, reason, super::entry::wall_ms()],
                )
                .map_err(sql("record an input set aside"))?;
            }
        }
    }
    Ok(())
}

fn seal(
    key: &LessSafeKey,
    rng: &SystemRandom,
    aad: &[u8],
    plaintext: Vec<u8>,
) -> Result<([u8; ring::aead::NONCE_LEN], Vec<u8>), OutboxError> {
    crypto::seal(key, rng, aad, plaintext).map_err(|_| OutboxError::Crypto {
        operation: "seal a journal record",
    })
}

/// The plugin's row, made if there is none (its `incarnation` column, from
/// schema 3, is filled and no longer read).
fn ensure_plugin(conn: &Connection, path: &Path, plugin: &str) -> Result<(), OutboxError> {
    let sql = |operation| OutboxError::sql(path, operation);
    let exists = conn
        .prepare_cached("SELECT 1 FROM journal_plugins WHERE plugin = ?1")
        .and_then(|mut select| select.exists([plugin]))
        .map_err(sql("read a plugin's journal"))?;
    if !exists {
        conn.execute(
            "INSERT INTO journal_plugins (plugin, incarnation, high_seq, host_seq, last_position) \
             VALUES (?1, ?2, 0, 0, 0)",
            params![plugin, new_incarnation()?],
        )
        .map_err(sql("start a plugin's journal"))?;
    }
    Ok(())
}

/// 128 random bits, lowercase hex.
fn new_incarnation() -> Result<String, OutboxError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    SystemRandom::new().fill(&mut bytes).map_err(|_| OutboxError::Crypto {
        operation: "make an incarnation",
    })?;
    Ok(hex::encode(bytes))
}

impl Outbox {
    /// What `plugin`'s journal holds: its numbers (made now, committed, for
    /// a plugin the journal has not seen), its saved state, and the inputs
    /// after it (at most `max_inputs`). A saved state that does not open is
    /// moved aside here, and said so in [`PluginJournal::state_unreadable`].
    pub fn plugin_journal(
        &mut self,
        plugin: &str,
        max_inputs: usize,
        recent: bool,
    ) -> Result<PluginJournal, OutboxError> {
        self.read_journal(plugin, max_inputs, true, recent)
    }

    /// Read every plugin's journal as its worker reads it at start
    /// ([`Outbox::plugin_journal`] with `max_inputs`), changing nothing: a
    /// damaged page of the file there ([`OutboxError::is_damaged_file`]) is
    /// found when the outbox opens, where the outbox can be moved aside and a
    /// new one started, rather than by each worker, which could only refuse
    /// its plugin (every plugin, the page holding them all). A row whose
    /// values the checks refuse costs its own plugin only: its worker
    /// refuses it, and the others' journals and outputs are kept.
    pub fn check_journals(&mut self, max_inputs: usize) -> Result<(), OutboxError> {
        let plugins = match self.journal_plugins() {
            Err(error) if !error.is_damaged_file() => return Ok(()),
            plugins => plugins?,
        };
        for plugin in plugins {
            match self.read_journal(&plugin, max_inputs, false, false) {
                Err(error) if error.is_damaged_file() => return Err(error),
                _ => {}
            }
        }
        Ok(())
    }

    /// [`Outbox::plugin_journal`]; what it writes (a new plugin's numbers,
    /// a saved state moved aside) is committed only if `keep`.
    fn read_journal(
        &mut self,
        plugin: &str,
        max_inputs: usize,
        keep: bool,
        recent: bool,
    ) -> Result<PluginJournal, OutboxError> {
        let path = self.path.clone();
        let sql = |operation| OutboxError::sql(&path, operation);
        let tx = self
            .conn
            .transaction()
            .map_err(sql("begin reading a plugin's journal"))?;
        ensure_plugin(&tx, &path, plugin)?;
        let (high_seq, host_seq, last_position): (i64, i64, i64) = tx
            .query_row(
                "SELECT high_seq, host_seq, last_position FROM journal_plugins WHERE plugin = ?1",
                [plugin],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
            )
            .map_err(sql("read a plugin's journal"))?;
        let mut journal = PluginJournal {
            incarnation: new_incarnation()?,
            high_seq: from_sql(&path, high_seq, "negative output number")?,
            host_seq: from_sql(&path, host_seq, "negative host-alert number")?,
            last_position: from_sql(&path, last_position, "negative position")?,
            ..PluginJournal::default()
        };
        // A row whose columns have the wrong types (the file edited or
        // damaged) is unreadable like one that does not open: moved aside.
        type StateRow = (i64, i64, u32, Vec<u8>, Vec<u8>);
        let state: Option<Option<StateRow>> = tx
            .query_row(
                "SELECT position, next_seq, schema, nonce, ciphertext FROM journal_states WHERE plugin = ?1",
                [plugin],
                |row| {
                    let read = || -> rusqlite::Result<StateRow> {
                        Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
                    };
                    Ok(read().ok())
                },
            )
            .optional()
            .map_err(sql("read a plugin's saved state"))?;
        let opened = state.map(|row| {
            let (position, next_seq, schema, nonce, ciphertext) = row?;
            let (position, next_seq) = (u64::try_from(position).ok()?, u64::try_from(next_seq).ok()?);
            let aad = state_aad(plugin, position, next_seq, schema);
            let data = crypto::open(self.keys.derived(Purpose::States), &nonce, &aad, ciphertext)?;
            Some(SavedState {
                position,
                next_seq,
                schema,
                data,
            })
        });
        match opened {
            Some(Some(state)) => journal.state = Some(state),
            Some(None) => {
                let reason = "it does not open under this device's key (damaged, or from elsewhere)";
                move_state_aside(&tx, plugin, reason).map_err(sql("move a saved state aside"))?;
                journal.state_unreadable = Some(reason.to_owned());
            }
            None => {}
        }
        let after = journal.state.as_ref().map_or(0, |state| state.position);
        let limit = i64::try_from(max_inputs.saturating_add(1)).unwrap_or(i64::MAX);
        let inputs = read_inputs(
            &tx,
            &path,
            &self.keys,
            plugin,
            "WHERE plugin = ?1 AND position > ?2 ORDER BY position LIMIT ?3",
            params![plugin, to_sql(after), limit],
            usize::MAX,
        )?;
        journal.inputs = (inputs.len() <= max_inputs).then_some(inputs);
        {
            let mut select = tx
                .prepare("SELECT position, reading FROM journal_set_aside WHERE plugin = ?1 AND position > ?2")
                .map_err(sql("read the inputs set aside"))?;
            let rows = select
                .query_map(params![plugin, to_sql(after)], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
                })
                .map_err(sql("read the inputs set aside"))?;
            for row in rows {
                let (position, reading) = row.map_err(sql("read the inputs set aside"))?;
                let position = from_sql(&path, position, "negative position")?;
                journal.set_aside.insert((position, u32::try_from(reading).ok()));
            }
        }
        if recent {
            journal.recent = read_inputs(
                &tx,
                &path,
                &self.keys,
                plugin,
                "WHERE plugin = ?1 ORDER BY position DESC LIMIT ?2",
                params![plugin, RECENT_INPUTS as i64],
                RECENT_BYTES,
            )?;
        }
        if keep {
            tx.commit().map_err(sql("commit reading a plugin's journal"))?;
        }
        // Otherwise dropped: rolled back.
        Ok(journal)
    }

    /// Move `plugin`'s saved state aside (the plugin refused it): kept for
    /// an operator, the plugin starts without it.
    pub fn set_state_aside(&mut self, plugin: &str, reason: &str) -> Result<(), OutboxError> {
        move_state_aside(&self.conn, plugin, reason).map_err(OutboxError::sql(&self.path, "move a saved state aside"))
    }

    /// Logged inputs of `plugin` made within `[from_ms, to_ms]` (wall
    /// clock when logged), in order, after position `after`, at most `max`.
    pub fn logged_inputs(
        &self,
        plugin: &str,
        after: u64,
        from_ms: i64,
        to_ms: i64,
        max: usize,
    ) -> Result<Vec<LoggedInput>, OutboxError> {
        read_inputs(
            &self.conn,
            &self.path,
            &self.keys,
            plugin,
            "WHERE plugin = ?1 AND position > ?2 AND created_ms BETWEEN ?3 AND ?4 ORDER BY position LIMIT ?5",
            params![
                plugin,
                to_sql(after),
                from_ms,
                to_ms,
                i64::try_from(max).unwrap_or(i64::MAX)
            ],
            usize::MAX,
        )
    }

    /// The plugins with a journal.
    pub fn journal_plugins(&self) -> Result<Vec<String>, OutboxError> {
        let sql = |e| OutboxError::sql(&self.path, "read the journal's plugins")(e);
        let mut select = self
            .conn
            .prepare("SELECT plugin FROM journal_plugins ORDER BY plugin")
            .map_err(&sql)?;
        let rows = select.query_map([], |row| row.get(0)).map_err(&sql)?;
        rows.collect::<Result<_, _>>().map_err(sql)
    }
}

/// Remove logged inputs whose `stamp` (the SQL of a row's age stamp) is before
/// `cutoff_ms`, never one after its
/// plugin's saved state (recovery needs those). A plugin without a saved
/// state keeps none back: recovering it would need every input since its
/// first, and finding the first ones gone it starts afresh, reported.
/// Returns how many.
pub(super) fn expire_inputs(conn: &Connection, stamp: &str, cutoff_ms: i64) -> Result<u64, rusqlite::Error> {
    let removed = conn.execute(
        &format!("DELETE FROM journal_inputs WHERE {stamp} < ?1 AND {REMOVABLE}"),
        [cutoff_ms],
    )?;
    Ok(removed as u64)
}

/// The condition of an input row that recovery does not need: at or before
/// its plugin's saved state (none without one: see [`expire_inputs`]).
const REMOVABLE: &str = "position <= coalesce(\
     (SELECT position FROM journal_states s WHERE s.plugin = journal_inputs.plugin), \
     9223372036854775807)";

/// Remove the oldest inputs (by row id: the order they were logged in)
/// until the log takes at most `max_bytes`: those no saved state needs
/// first; then, if the log is still over, the oldest of the rest. The limit
/// is a bound the disk can rely on: a plugin whose snapshots keep failing
/// keeps every input since its last saved state, and its log would
/// otherwise grow without end. Those removed are reported at its next start
/// ("inputs .. of the log are missing": its state goes on without them).
/// Returns how many.
pub(super) fn shrink_log(conn: &Connection, max_bytes: u64) -> Result<u64, rusqlite::Error> {
    let total: i64 = conn.query_row(
        &format!("SELECT coalesce(sum({INPUT_BYTES}), 0) FROM journal_inputs"),
        [],
        |row| row.get(0),
    )?;
    let mut excess = total.saturating_sub(i64::try_from(max_bytes).unwrap_or(i64::MAX));
    if excess <= 0 {
        return Ok(0);
    }
    let mut removed = remove_oldest(conn, REMOVABLE, &mut excess)?;
    if excess > 0 {
        removed += remove_oldest(conn, "1 = 1", &mut excess)?;
    }
    Ok(removed)
}

/// The bytes an input row takes.
const INPUT_BYTES: &str = "length(nonce) + length(ciphertext)";

/// Remove the oldest input rows that meet `condition` until `excess` bytes
/// are gone (or none is left), taking them off `excess`. Returns how many.
fn remove_oldest(conn: &Connection, condition: &str, excess: &mut i64) -> Result<u64, rusqlite::Error> {
    let mut last = None;
    {
        let mut oldest = conn.prepare(&format!(
            "SELECT id, {INPUT_BYTES} FROM journal_inputs WHERE {condition} ORDER BY id"
        ))?;
        let mut rows = oldest.query([])?;
        while let Some(row) = rows.next()? {
            last = Some(row.get::<_, i64>(0)?);
            *excess -= row.get::<_, i64>(1)?;
            if *excess <= 0 {
                break;
            }
        }
    }
    let Some(last) = last else { return Ok(0) };
    let removed = conn.execute(
        &format!("DELETE FROM journal_inputs WHERE id <= ?1 AND {condition}"),
        [last],
    )?;
    Ok(removed as u64)
}

/// The input rows of `plugin` that `filter` (the query after `FROM
/// journal_inputs`) selects with `params`, opened (`data` `None` for a row
/// that does not).
fn read_inputs(
    conn: &Connection,
    path: &Path,
    keys: &OutboxKey,
    plugin: &str,
    filter: &str,
    params: impl rusqlite::Params,
    max_bytes: usize,
) -> Result<Vec<LoggedInput>, OutboxError> {
    let sql = |e| OutboxError::sql(path, "read the input log")(e);
    let mut select = conn
        .prepare_cached(&format!(
            "SELECT position, created_ms, nonce, ciphertext FROM journal_inputs {filter}"
        ))
        .map_err(sql)?;
    // A column of the wrong type (the file edited or damaged) makes the row
    // unreadable, not the log: such a row is damaged (`data` `None`), or
    // missing if even its position is unreadable.
    let rows = select
        .query_map(params, |row| {
            Ok((
                row.get::<_, i64>(0).ok().and_then(|p| u64::try_from(p).ok()),
                row.get::<_, i64>(1).unwrap_or(0),
                row.get::<_, Vec<u8>>(2).ok(),
                row.get::<_, Vec<u8>>(3).ok(),
            ))
        })
        .map_err(sql)?;
    let mut inputs = Vec::new();
    let mut bytes = 0usize;
    for row in rows {
        if bytes >= max_bytes {
            break;
        }
        let (position, created_ms, nonce, ciphertext) = row.map_err(sql)?;
        let Some(position) = position else { continue };
        let data = nonce.zip(ciphertext).and_then(|(nonce, ciphertext)| {
            crypto::open(
                keys.derived(Purpose::InputLog),
                &nonce,
                &input_aad(plugin, position),
                ciphertext,
            )
        });
        bytes = bytes.saturating_add(data.as_ref().map_or(0, Vec::len));
        inputs.push(LoggedInput {
            position,
            created_ms,
            data,
        });
    }
    Ok(inputs)
}

/// Move `plugin`'s state (if any) into the aside table, keeping the newest
/// [`STATES_ASIDE_MAX`] there.
fn move_state_aside(conn: &Connection, plugin: &str, reason: &str) -> Result<(), rusqlite::Error> {
    conn.execute(
        "INSERT INTO journal_states_aside \
         (plugin, position, next_seq, schema, saved_ms, nonce, ciphertext, reason, aside_ms) \
         SELECT plugin, position, next_seq, schema, saved_ms, nonce, ciphertext, ?2, ?3 \
         FROM journal_states WHERE plugin = ?1",
        params![plugin, reason, super::entry::wall_ms()],
    )?;
    conn.execute("DELETE FROM journal_states WHERE plugin = ?1", [plugin])?;
    conn.execute(
        "DELETE FROM journal_states_aside WHERE plugin = ?1 AND id NOT IN \
         (SELECT id FROM journal_states_aside WHERE plugin = ?1 ORDER BY id DESC LIMIT ?2)",
        params![plugin, STATES_ASIDE_MAX],
    )?;
    Ok(())
}
