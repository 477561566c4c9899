//! What goes into the outbox ([`NewEntry`]) and what comes out ([`Entry`]),
//! and how many bytes an entry counts for.

use ring::aead::{AES_256_GCM, NONCE_LEN};

/// What an entry is; decides delivery order and who gets evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// An alert: delivered before every summary, never evicted to make room for one.
    Alert,
    /// A summary of a closed window: delivered after every alert, evicted
    /// (after telemetry) when the outbox is full.
    Summary,
    /// The host's fleet telemetry (`crate::telemetry`), best-effort: delivered
    /// after every alert and summary, kept within a small bound of its own
    /// (`TELEMETRY_MAX_ENTRIES`, `TELEMETRY_SHARE`), the oldest dropped first,
    /// evicted first when an alert or a summary needs room, and never stored
    /// by evicting one (see `evict`). It belongs to no plugin.
    Telemetry,
}

impl Kind {
    /// The value in the `kind` column.
    pub(crate) fn to_sql(self) -> i64 {
        match self {
            Kind::Alert => 0,
            Kind::Summary => 1,
            Kind::Telemetry => 2,
        }
    }

    /// The kind stored as `value`, if it is one.
    pub(crate) fn from_sql(value: i64) -> Option<Kind> {
        match value {
            0 => Some(Kind::Alert),
            1 => Some(Kind::Summary),
            2 => Some(Kind::Telemetry),
            _ => None,
        }
    }
}

/// The `plugin` of a telemetry entry: none (no plugin name is empty).
pub const TELEMETRY_PLUGIN: &str = "";

/// An output to store until upstream acknowledges it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEntry {
    /// Alert, summary or telemetry.
    ///
    /// A subject carries one kind (upstream subjects name it:
    /// `edgewise.<device>.up.alerts.<plugin>`, `…up.summaries.<plugin>`,
    /// `…up.telemetry`), so delivering all alerts before all summaries, and
    /// those before any telemetry, keeps each subject's order.
    pub kind: Kind,
    /// The plugin whose output this is (the host's own alerts about a plugin
    /// count as that plugin's): its share of the outbox is what the size rule
    /// weighs (see `evict`). Empty for telemetry ([`TELEMETRY_PLUGIN`]), which
    /// has a bound of its own instead.
    pub plugin: String,
    /// The upstream subject, e.g. `edgewise.edge-01.up.alerts.glucose-monitor`.
    pub subject: String,
    /// The `Nats-Msg-Id`, e.g. `edge-01/glucose-monitor/17`: JetStream stores a
    /// resend with the same id once.
    pub msg_id: String,
    /// The message body (the JSON envelope). Encrypted at rest.
    pub payload: Vec<u8>,
    /// When the output was made (ms since the Unix epoch); `Outbox::expire` ages
    /// entries by it.
    pub created_ms: i64,
}

/// A stored entry, decrypted, as `Outbox::next_batch` hands it to the publisher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Row id: increases with every append and is never reused, so a late
    /// `Outbox::delete` of an acknowledged id can never remove a newer entry.
    pub id: u64,
    /// Alert, summary or telemetry.
    pub kind: Kind,
    /// The plugin whose output this is (empty for telemetry).
    pub plugin: String,
    /// The upstream subject.
    pub subject: String,
    /// The `Nats-Msg-Id`.
    pub msg_id: String,
    /// The message body, decrypted.
    pub payload: Vec<u8>,
    /// When the output was made (ms since the Unix epoch).
    pub created_ms: i64,
}

/// Bytes an entry counts for against `OutboxLimits::max_bytes` and in
/// `Depth::bytes`: its subject, message id, nonce and ciphertext (payload and
/// tag). [`SIZE_SQL`] computes the same figure from a stored row.
pub(crate) fn stored_size(subject: &str, msg_id: &str, payload_len: usize) -> u64 {
    let bytes = subject
        .len()
        .saturating_add(msg_id.len())
        .saturating_add(NONCE_LEN)
        .saturating_add(payload_len)
        .saturating_add(AES_256_GCM.tag_len());
    u64::try_from(bytes).unwrap_or(u64::MAX)
}

/// SQL expression over an `entries` row giving [`stored_size`].
pub(crate) const SIZE_SQL: &str = "(octet_length(subject) + octet_length(msg_id) + length(nonce) + length(ciphertext))";

/// Wall-clock ms since the Unix epoch: when an output entered the outbox
/// ([`NewEntry::created_ms`]), whatever the plugin clock; ages are measured
/// on it ([`crate::outbox::Outbox::expire`], the status).
pub fn wall_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
