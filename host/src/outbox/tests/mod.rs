//! Tests of the outbox on real SQLite files in temporary directories.

mod crash;
mod encryption;
mod journal;
mod limits;
mod migration;
mod model;
mod parking;
mod round_trip;
mod shares;
mod telemetry;
mod writer;

use std::path::Path;

use super::{Entry, Kind, NewEntry, Outbox, OutboxKey, OutboxLimits};

/// The test device key.
fn key() -> OutboxKey {
    OutboxKey::from_bytes(&[0x5a; 32]).unwrap()
}

fn open(dir: &Path) -> Outbox {
    Outbox::open(dir, &key(), OutboxLimits::default()).unwrap()
}

fn open_with(dir: &Path, limits: OutboxLimits) -> Outbox {
    Outbox::open(dir, &key(), limits).unwrap()
}

/// An outbox of at most `max_bytes`, other limits the defaults.
fn open_max_bytes(dir: &Path, max_bytes: u64) -> Outbox {
    open_with(
        dir,
        OutboxLimits {
            max_bytes,
            ..OutboxLimits::default()
        },
    )
}

/// An entry as the host would make it for `plugin`'s output number `seq`.
fn entry(kind: Kind, plugin: &str, seq: u64, payload: &[u8]) -> NewEntry {
    let subject = match kind {
        Kind::Alert => format!("edgewise.edge-01.up.alerts.{plugin}"),
        Kind::Summary => format!("edgewise.edge-01.up.summaries.{plugin}"),
        Kind::Telemetry => "edgewise.edge-01.up.telemetry".to_owned(),
    };
    NewEntry {
        kind,
        plugin: plugin.to_owned(),
        subject,
        msg_id: format!("edge-01/{plugin}/{seq}"),
        payload: payload.to_vec(),
        created_ms: 1_700_000_000_000 + i64::try_from(seq).unwrap(),
    }
}

fn alert(plugin: &str, seq: u64) -> NewEntry {
    entry(Kind::Alert, plugin, seq, format!("alert {plugin} {seq}").as_bytes())
}

fn summary(plugin: &str, seq: u64) -> NewEntry {
    entry(Kind::Summary, plugin, seq, format!("summary {plugin} {seq}").as_bytes())
}

/// Telemetry number `seq`, as the host makes it (no plugin).
fn telemetry(seq: u64) -> NewEntry {
    let mut e = entry(Kind::Telemetry, "", seq, format!("telemetry {seq}").as_bytes());
    e.msg_id = format!("edge-01/telemetry/0123/{seq}");
    e
}

fn append(outbox: &mut Outbox, entry: NewEntry) -> u64 {
    outbox.append(entry).unwrap().unwrap()
}

/// Everything in delivery order.
fn all(outbox: &Outbox) -> Vec<Entry> {
    outbox.next_batch(usize::MAX).unwrap()
}

fn ids(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.id).collect()
}

#[test]
fn the_outbox_can_move_to_its_own_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Outbox>();
    assert_send::<OutboxKey>();
}
