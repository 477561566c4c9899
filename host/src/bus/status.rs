//! The status of a running host, answered on `edgewise.<device>.status`:
//! what a status says ([`Status`], the JSON `edgewise status` reads) and the
//! responder. What goes into it is gathered by `run::status`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// What `edgewise status` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Device id.
    pub device: String,
    /// Seconds since start.
    pub uptime_s: f64,
    /// The host clock (ms since the epoch; simulated when configured).
    pub clock_ms: i64,
    /// Whether the upstream connection is up.
    pub upstream_connected: bool,
    /// Outbox depth.
    pub outbox: OutboxStatus,
    /// Ingest counters.
    pub ingest: IngestStatus,
    /// Every plugin (those refused at start included, state `refused`).
    pub plugins: Vec<PluginStatus>,
    /// The control subjects.
    #[serde(default)]
    pub control: ControlStatus,
    /// The host's own tasks (`ticker`, `expiry`, `upstream`, `status`) that
    /// ended before shutdown, and why; empty while all run. (A plugin's
    /// ingest shows in its plugin's state instead.)
    #[serde(default)]
    pub tasks: BTreeMap<String, String>,
    /// Log lines dropped because stderr took no more (its reader stalled):
    /// the host never waits for its log (`log_output`).
    #[serde(default)]
    pub log_lines_dropped: u64,
    /// Alerts and telemetry not published on the local bus: its client took
    /// nothing for a while (the server away); they still went to the outbox
    /// (`bus::local`).
    #[serde(default)]
    pub local_publishes_dropped: u64,
    /// Publishes of the host the local server refused (a permissions
    /// violation: it drops them and says so only on the connection).
    #[serde(default)]
    pub local_publishes_refused: u64,
    /// Alerts published on the local bus shortened, their message cut: in
    /// full, each was larger than the local server's `max_payload`. They went
    /// to the outbox in full (`bus::local`).
    #[serde(default)]
    pub local_alerts_shortened: u64,
    /// Subscriptions of the host the local server refused past its limit of
    /// subscriptions (`maximum subscriptions exceeded`): each one's input
    /// or requests get nothing until the host restarts (`bus::violations`).
    #[serde(default)]
    pub local_subscriptions_over_limit: u64,
}

/// What the control subjects refused.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ControlStatus {
    /// Status requests not answered: their reply subject is not an inbox.
    pub status_refused: u64,
}

/// Counters of the control subjects.
#[derive(Debug, Default)]
pub struct ControlStats {
    /// Status requests not answered (reply subject not an inbox).
    pub status_refused: AtomicU64,
}

/// The prefix of the reply subjects a status is published to: request
/// inboxes. Anything else (an alert subject, a sensor subject) would have the
/// host publish its status there with its own rights.
pub const INBOX_PREFIX: &str = "_INBOX.";

/// Outbox depth and age.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutboxStatus {
    /// Alerts waiting.
    pub alerts: u64,
    /// Summaries waiting.
    pub summaries: u64,
    /// Telemetry messages waiting (best-effort, within their own bound).
    #[serde(default)]
    pub telemetry: u64,
    /// Age of the oldest undelivered entry, ms.
    pub oldest_age_ms: Option<i64>,
    /// Entries let go without an upstream acknowledgement, by reason (since
    /// the outbox file was created; `undecryptable` since the host started).
    #[serde(default)]
    pub dropped: OutboxDrops,
    /// Set when the outbox was unusable at start and a new one was started:
    /// what happened and where the old files are.
    #[serde(default)]
    pub reset: Option<String>,
    /// Set when no outbox file could be used at start (a read-only or
    /// failing disk) and the outbox is in memory: why. Outputs are still
    /// delivered, but nothing waiting outlives the process.
    #[serde(default)]
    pub in_memory: Option<String>,
    /// Entries upstream refused for good and the host moved aside, by reason
    /// (since the outbox file was created), and how many are kept for
    /// inspection.
    #[serde(default)]
    pub parked: OutboxParked,
    /// Delivery rounds since start in which something was not acknowledged
    /// (upstream down, stream missing, refusals): retried, never lost.
    #[serde(default)]
    pub rounds_failed: u64,
    /// Outputs kept in memory because the disk refuses writes (full, an I/O
    /// error): stored once it takes them again (JetStream input is
    /// acknowledged only then). 0 when the disk takes writes.
    #[serde(default)]
    pub waiting_for_disk: u64,
}

/// Entries moved aside because upstream refused them for good (`outbox::park`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutboxParked {
    /// Larger than the server's `max_payload` or the stream's largest message.
    pub too_large: u64,
    /// On a subject the device may not publish to.
    pub permission_denied: u64,
    /// Refused or unacknowledged while the entries behind them were acknowledged.
    pub refused: u64,
    /// Kept now in the outbox's side table, for an operator to inspect.
    pub entries: u64,
}

/// Outbox drops by reason: the size limit, the age limit (`[outbox]`), and rows
/// that failed to decrypt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutboxDrops {
    /// Oldest summaries evicted to make room.
    pub summaries_for_space: u64,
    /// New summaries not stored (only alerts were left to evict).
    pub summaries_refused: u64,
    /// Oldest alerts evicted to make room for a newer alert.
    pub alerts_for_space: u64,
    /// Alerts removed for age (`[outbox] max_age`).
    pub expired_alerts: u64,
    /// Summaries removed for age (`[outbox] max_age`).
    pub expired_summaries: u64,
    /// Rows skipped because they failed to decrypt.
    pub undecryptable: u64,
    /// Moved-aside entries removed from the side table to keep it within its bound.
    pub parked_discarded: u64,
    /// Logged inputs removed for age (`[outbox] max_age`).
    #[serde(default)]
    pub inputs_expired: u64,
    /// Oldest logged inputs removed to keep the log within `[outbox] log_max_mb`.
    #[serde(default)]
    pub inputs_for_space: u64,
    /// Telemetry messages let go: beyond their bound in the outbox (the
    /// oldest first), for an alert or a summary, or for age.
    #[serde(default)]
    pub telemetry: u64,
}

/// Ingest counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IngestStatus {
    /// Messages received.
    pub messages: u64,
    /// Dead letters published (one per refused message, or per reason for the
    /// refused readings of a message).
    pub deadlettered: u64,
    /// Dead letters by reason: `malformed`, `future`, `too-old`,
    /// `sensor-mismatch`, `too-many-sensors` (only reasons seen).
    #[serde(default)]
    pub deadletters_by_reason: BTreeMap<String, u64>,
    /// Messages from the local bus dropped before ingest took them (the
    /// client's buffer or ingest's pending limits full: ingest slower than
    /// the bus).
    #[serde(default)]
    pub dropped_by_client: u64,
    /// Deliveries of JetStream messages held in the stream because their
    /// readings were from the future of the host clock while no new reading was
    /// taken (a clock behind, not yet set right).
    #[serde(default)]
    pub held_for_clock: u64,
}

/// One plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginStatus {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Code digest.
    pub digest: String,
    /// `running`, `restarting` (backing off after a failure), `quarantined`,
    /// `degraded` (its input is gone: ingest failed and is being retried;
    /// `last_error` says why), or `refused` (its bundle could not start;
    /// `last_error` says why).
    pub state: String,
    /// Readings delivered.
    pub readings_in: u64,
    /// Alerts emitted.
    pub alerts_out: u64,
    /// Summaries emitted.
    pub summaries_out: u64,
    /// Failed calls.
    pub errors: u64,
    /// Instances rebuilt.
    pub restarts: u64,
    /// Times put in quarantine.
    pub quarantines: u64,
    /// Failures by reason (`deadline`, `trap`, `memory-limit`, `returned-error`...).
    pub failures: BTreeMap<String, u64>,
    /// The last failure, as reported.
    pub last_error: Option<String>,
    /// Readings held while the plugin is down.
    pub readings_held: u64,
    /// Readings dropped (hold buffer full, or stopped while quarantined).
    pub readings_dropped: u64,
    /// Log lines dropped by the log budget.
    pub logs_dropped: u64,
    /// Wakes asked sooner than a second after the last tick (contract 0.2),
    /// each deferred to that second.
    #[serde(default)]
    pub wakes_deferred: u64,
    /// Outputs that could not be written to the outbox (a full disk, a
    /// failing file): alerts among them were still published locally; none
    /// is counted in `alerts_out` or `summaries_out`.
    #[serde(default)]
    pub outbox_failures: u64,
    /// New instances started from the last snapshot after a failure and
    /// given the inputs since again.
    #[serde(default)]
    pub recoveries: u64,
    /// Inputs that made the plugin fail twice: set aside, never given again.
    #[serde(default)]
    pub inputs_set_aside: u64,
    /// Snapshots asked for and not obtained.
    #[serde(default)]
    pub snapshot_failures: u64,
    /// Snapshots saved in the journal (a recovery starts from the last one).
    #[serde(default)]
    pub snapshots_saved: u64,
    /// Restarts that could not keep the plugin's state (it started afresh).
    #[serde(default)]
    pub state_lost: u64,
    /// Outputs with problems (an alert with no code, a time before 1970,
    /// an empty window, a metric name empty or given twice): sent on as
    /// made, each naming its problems in its envelope (`problems`).
    #[serde(default)]
    pub outputs_flagged: u64,
}

/// Longest `last_error` in a status reply, in bytes. The error text comes
/// from the plugin (an `Err` it returns): unbounded, it could make the reply
/// larger than the bus's `max_payload`, and then no status is answered at all.
pub const MAX_LAST_ERROR: usize = 1024;

/// `error` cut to [`MAX_LAST_ERROR`] bytes on a character boundary, marked.
pub fn bounded_error(error: &str) -> String {
    if error.len() <= MAX_LAST_ERROR {
        return error.to_owned();
    }
    let mut end = MAX_LAST_ERROR;
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &error[..end], error.len())
}

/// How long the responder waits for the server to have its subscription
/// before it says it answers.
const SUBSCRIBED_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// Answer status requests on `subject` until `stop`, with the status
/// `current` gathers (called off the async threads: it may read the disk).
/// `answering` is told once the server has the subscription (or it waited
/// [`SUBSCRIBED_WITHIN`] for it).
pub async fn run_status(
    client: async_nats::Client,
    subject: String,
    control: Arc<ControlStats>,
    current: Arc<dyn Fn() -> Status + Send + Sync>,
    answering: tokio::sync::oneshot::Sender<()>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), async_nats::SubscribeError> {
    let mut requests = client.subscribe(subject).await?;
    let _ = tokio::time::timeout(SUBSCRIBED_WITHIN, client.flush()).await;
    let _ = answering.send(());
    loop {
        let request = tokio::select! {
            _ = stop.changed() => break,
            request = requests.next() => match request {
                Some(request) => request,
                None => break,
            },
        };
        let Some(reply) = request.reply else { continue };
        if !reply.as_str().starts_with(INBOX_PREFIX) {
            control.status_refused.fetch_add(1, Ordering::Relaxed);
            let shown: String = reply.as_str().chars().take(200).collect();
            tracing::warn!(reply = %shown, "Status request not answered: its reply subject is not an inbox (`{INBOX_PREFIX}`)");
            continue;
        }
        let current = current.clone();
        let status = tokio::task::spawn_blocking(move || current()).await;
        if let Ok(status) = status {
            let body = serde_json::to_vec(&status).unwrap_or_default();
            if let Err(error) = answer(&client, reply, body).await {
                tracing::warn!(%error, "Cannot answer a status request");
            }
        }
    }
    Ok(())
}

/// The header of an error answer, as NATS services (`micro`) name it.
pub const SERVICE_ERROR: &str = "Nats-Service-Error";
/// The header of an error answer's code, as NATS services name it.
pub const SERVICE_ERROR_CODE: &str = "Nats-Service-Error-Code";

/// Whether a status too large for the local server has been said in the log.
static TOO_LARGE_SAID: AtomicBool = AtomicBool::new(false);

/// Answer `body` on `reply`; a body larger than the local server's
/// `max_payload`, which the client would refuse (and the asker wait for in
/// vain, told no host answered), as an empty answer with an error saying so
/// ([`SERVICE_ERROR`], code 413), which `edgewise status` prints.
async fn answer(
    client: &async_nats::Client,
    reply: async_nats::Subject,
    body: Vec<u8>,
) -> Result<(), async_nats::PublishError> {
    let max_payload = client.max_payload();
    if body.len() <= max_payload {
        return client.publish(reply, body.into()).await;
    }
    let error = format!(
        "the status is {} bytes, more than the local NATS server's max_payload ({max_payload} bytes): \
         raise max_payload in the local server's configuration",
        body.len()
    );
    if !TOO_LARGE_SAID.swap(true, Ordering::Relaxed) {
        tracing::warn!("Status requests are answered with an error: {error}");
    }
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(SERVICE_ERROR, error.as_str());
    headers.insert(SERVICE_ERROR_CODE, "413");
    client.publish_with_headers(reply, headers, bytes::Bytes::new()).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_last_error_is_cut_so_the_reply_fits_the_bus() {
        let huge = "é".repeat(1 << 20);
        let cut = bounded_error(&huge);
        assert!(cut.len() < MAX_LAST_ERROR + 64, "{}", cut.len());
        assert!(cut.ends_with(&format!("({} bytes in all)", huge.len())));
        assert_eq!(bounded_error("short"), "short");
    }
}
