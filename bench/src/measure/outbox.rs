//! Outbox: durable appends per second (each committed and fsynced before it
//! returns), one at a time and in batches, against bare SQLite inserts with
//! the same durability (WAL, `synchronous=FULL`) on the same disk.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Context;
use edgewise_host::outbox::{Kind, NewEntry, Outbox, OutboxKey, OutboxLimits};

use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target};

/// How long each side appends.
const RUN: Duration = Duration::from_secs(2);
/// Entries per transaction in the batched rows (a worker's batch of outputs).
const BATCH: usize = 64;

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let dir = ctx.paths.work.join("outbox");
    let payload = sample_payload();
    let mut rows = Vec::new();
    let mut details = Vec::new();
    for batch in [1, BATCH] {
        let outbox_dir = dir.join(format!("edgewise-{batch}"));
        let sqlite_dir = dir.join(format!("sqlite-{batch}"));
        let bare = bare_sqlite_rate(&sqlite_dir, &payload, batch)?;
        let figure = outbox_rate(&outbox_dir, &payload, batch)?;
        rows.push(Row::measured(
            if batch == 1 {
                "outbox durable appends, one per transaction".to_owned()
            } else {
                format!("outbox durable appends, {batch} per transaction")
            },
            "bare SQLite insert, WAL, synchronous=FULL",
            Some(bare),
            figure,
            "appends/s",
            Target::None,
        ));
        details.push(format!(
            "batch {batch}: {} B payload, {} s per side",
            payload.len(),
            RUN.as_secs()
        ));
    }
    Ok(Outcome { rows, details })
}

/// A glucose-monitor alert envelope, as the worker stores it.
fn sample_payload() -> Vec<u8> {
    br#"{"device":"bench","plugin":"glucose-monitor","version":"0.1.0","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","seq":1,"kind":"alert","sensor":"cgm.lat-1","ts":1700000000000,"severity":"critical","code":"urgent-low","message":"Glucose 45 mg/dL is below 54 mg/dL","value":45.0}"#.to_vec()
}

/// Entries per second through [`Outbox::append_batch`].
fn outbox_rate(dir: &Path, payload: &[u8], batch: usize) -> anyhow::Result<f64> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key = OutboxKey::load_or_create(&dir.join("outbox.key")).context("cannot make the outbox key")?;
    let mut outbox = Outbox::open(dir, &key, OutboxLimits::default()).context("cannot open the outbox")?;
    let started = Instant::now();
    let mut appended = 0u64;
    while started.elapsed() < RUN {
        let entries = (0..batch)
            .map(|i| NewEntry {
                kind: Kind::Alert,
                plugin: "glucose-monitor".to_owned(),
                subject: "edgewise.bench.up.alerts.glucose-monitor".to_owned(),
                msg_id: format!("bench/glucose-monitor/{}", appended + i as u64),
                payload: payload.to_vec(),
                created_ms: 1_700_000_000_000,
            })
            .collect();
        outbox.append_batch(entries).context("an outbox append failed")?;
        appended += batch as u64;
    }
    Ok(appended as f64 / started.elapsed().as_secs_f64())
}

/// Rows per second inserted into a plain SQLite table with the outbox's
/// durability settings, `batch` rows per transaction, no encryption.
fn bare_sqlite_rate(dir: &Path, payload: &[u8], batch: usize) -> anyhow::Result<f64> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join("bare.sqlite");
    let mut db = rusqlite::Connection::open(&path).with_context(|| format!("cannot open {}", path.display()))?;
    db.pragma_update(None, "journal_mode", "WAL")
        .context("cannot set WAL")?;
    db.pragma_update(None, "synchronous", "FULL")
        .context("cannot set synchronous=FULL")?;
    db.execute_batch(
        "CREATE TABLE entries (id INTEGER PRIMARY KEY AUTOINCREMENT, kind INTEGER NOT NULL, \
         subject TEXT NOT NULL, msg_id TEXT NOT NULL, payload BLOB NOT NULL, created_ms INTEGER NOT NULL)",
    )
    .context("cannot create the table")?;
    let started = Instant::now();
    let mut appended = 0u64;
    while started.elapsed() < RUN {
        let transaction = db.transaction().context("cannot begin")?;
        {
            let mut insert = transaction
                .prepare_cached(
                    "INSERT INTO entries (kind, subject, msg_id, payload, created_ms) VALUES (0, ?1, ?2, ?3, ?4)",
                )
                .context("cannot prepare the insert")?;
            for i in 0..batch {
                insert
                    .execute(rusqlite::params![
                        "edgewise.bench.up.alerts.glucose-monitor",
                        format!("bench/glucose-monitor/{}", appended + i as u64),
                        payload,
                        1_700_000_000_000i64
                    ])
                    .context("an insert failed")?;
            }
        }
        transaction.commit().context("a commit failed")?;
        appended += batch as u64;
    }
    Ok(appended as f64 / started.elapsed().as_secs_f64())
}
