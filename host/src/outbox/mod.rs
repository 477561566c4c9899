//! The outbox (DESIGN "Outbox (store-and-forward)"): outputs waiting to go
//! upstream, kept on disk while the cloud is unreachable, and their delivery
//! ([`upstream`]): everything from "an output is durable" to "upstream
//! acknowledged it".
//!
//! **Invariant: a row leaves the outbox only after a JetStream ack (`delete`
//! is called by the publisher after the PubAck).** The only other ways out are
//! the bounded, counted ones: eviction by the size limit and expiry by age
//! ([`DropCounts`]), and moving aside an entry upstream refused for good
//! ([`Outbox::park`], [`ParkedCounts`]: kept, sealed, in a bounded side table).
//!
//! - **Durable before emitted**: [`Outbox::append`] returns once the entry is
//!   committed to an SQLite file in WAL mode with `synchronous=FULL`, i.e.
//!   fsynced; it survives `kill -9` and power loss. Upstream deduplicates
//!   resends by `Nats-Msg-Id`, so a crash between the PubAck and `delete`
//!   costs a resend, never a duplicate.
//! - **Delivery order**: [`Outbox::next_batch`] gives every alert (oldest
//!   first) before any summary (oldest first), and every summary before any
//!   telemetry (oldest first). A subject carries one kind, so
//!   each subject's order is kept across reconnects and restarts.
//! - **Encrypted at rest**: payloads are sealed with AES-256-GCM under the
//!   device key ([`OutboxKey`]), a fresh random nonce per row, and associated
//!   data binding the ciphertext to its row (kind, subject, message id,
//!   creation time). Subjects and message ids stay in clear: the publisher
//!   routes by them. A row that fails to decrypt is reported and skipped,
//!   never delivered; a wrong key is refused at open.
//! - **Bounded**: [`OutboxLimits`] by size (enforced on append: each plugin
//!   has an equal share, only a plugin over its share loses entries, summaries
//!   are evicted first and alerts are never evicted for a summary; telemetry
//!   is kept within a small bound of its own, evicted before anything else
//!   and never stored at the cost of an alert or a summary) and by age
//!   ([`Outbox::expire`]).
//!
//! The API is synchronous: callers run it on a dedicated thread or in
//! `spawn_blocking` ([`with_outbox`]); [`Writer`] is such a thread for
//! appends, committing what several producers queued in one transaction
//! (group commit). Files: `key` (device key), `crypto` (sealing), `schema`
//! (file settings, versions, migrations), `store` ([`Outbox`]), `evict` (the
//! size rule), `park` (entries refused for good), `tally` (in-memory
//! counts), `writer` (group commit), `shared` (the one connection of a
//! running host), `reset` (an unusable outbox moved aside), `expiry` (the
//! age limit, periodically), `sequence` (the never-reused numbers behind
//! `Nats-Msg-Id`), `upstream` (delivery, delete on acknowledgement),
//! `entry`, `limits`, `error`.

mod crypto;
mod entry;
mod error;
mod evict;
pub mod expiry;
mod journal;
mod key;
mod limits;
mod park;
pub mod reset;
mod schema;
mod sequence;
mod shared;
mod store;
mod tally;
pub mod upstream;
mod writer;

#[cfg(test)]
mod tests;

pub use entry::{Entry, Kind, NewEntry, TELEMETRY_PLUGIN, wall_ms};
pub use error::OutboxError;
pub use journal::{JournalWrite, LoggedInput, NEXT_AFTER_HIGHEST, PluginJournal, RECENT_INPUTS, Record, SavedState};
pub use key::OutboxKey;
pub use limits::{Depth, DropCounts, OutboxLimits, TELEMETRY_MAX_ENTRIES, TELEMETRY_SHARE};
pub use park::{PARK_AFTER, PARKED_MAX_ENTRIES, ParkedCounts, ParkedEntry, Refusal};
pub use schema::FILE_NAME;
pub(crate) use sequence::{Sequence, new_incarnation};
pub use shared::{SharedOutbox, with_outbox};
pub use store::{Append, Outbox};
pub use writer::{
    Committed, Outcome, PRODUCER_QUEUED_MAX_BYTES, QUEUE_APPENDS, WAITING_MAX_BYTES, Writer, WriterHandle, WriterStats,
    WriterStopped,
};
