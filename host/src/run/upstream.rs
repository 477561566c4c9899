//! Store-and-forward: outputs leave the outbox for the upstream JetStream
//! stream, with `Nats-Msg-Id`, and are deleted only after the acknowledgement.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::config::UpstreamConfig;
use super::subjects::Subjects;
use crate::outbox::Outbox;

/// Entries sent per round.
const BATCH: usize = 128;
/// How long to wait for an acknowledgement.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Deliver outbox entries upstream until `stop`, then make one last attempt.
pub async fn run_upstream(
    config: UpstreamConfig,
    subjects: Subjects,
    outbox: Arc<Mutex<Outbox>>,
    written: Arc<Notify>,
    connected: Arc<AtomicBool>,
    mut stop: watch::Receiver<bool>,
) {
    let client =
        match crate::bus::connect::connect(&config.nats, &format!("edgewise-{}-up", subjects.device()), true).await {
            Ok(client) => client,
            Err(error) => {
                tracing::error!(%error, "Cannot set up the upstream connection; outputs stay in the outbox");
                return;
            }
        };
    let jetstream = async_nats::jetstream::new(client.clone());
    let mut stream_ready = !config.create_stream;
    loop {
        let is_connected = client.connection_state() == async_nats::connection::State::Connected;
        connected.store(is_connected, Ordering::Relaxed);
        if is_connected && !stream_ready {
            let stream = async_nats::jetstream::stream::Config {
                name: config.stream.clone(),
                subjects: vec![subjects.upstream_filter()],
                // Ids are remembered this long (server memory per id); an
                // entry retried later is stored again (docs/operators.md).
                duplicate_window: config.duplicate_window,
                ..Default::default()
            };
            match jetstream.get_or_create_stream(stream).await {
                Ok(_) => stream_ready = true,
                Err(error) => tracing::warn!(%error, "Cannot create the upstream stream yet"),
            }
        }
        let mut delivered_all = true;
        if is_connected && stream_ready {
            delivered_all = deliver(&jetstream, &outbox).await;
        }
        if *stop.borrow() {
            break;
        }
        let wait = if delivered_all {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(200)
        };
        tokio::select! {
            _ = written.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = stop.changed() => {}
        }
    }
    // Shutting down: whatever is not acknowledged stays in the outbox for the next start.
    let _ = tokio::time::timeout(Duration::from_secs(2), client.flush()).await;
}

/// Send one batch in order; delete what was acknowledged. Returns whether the
/// outbox looked empty afterwards.
async fn deliver(jetstream: &async_nats::jetstream::Context, outbox: &Arc<Mutex<Outbox>>) -> bool {
    let batch = {
        let outbox = outbox.clone();
        match tokio::task::spawn_blocking(move || {
            outbox.lock().map_err(|_| ()).and_then(|o| {
                o.next_batch(BATCH)
                    .map_err(|error| tracing::error!(%error, "Cannot read the outbox"))
            })
        })
        .await
        {
            Ok(Ok(batch)) => batch,
            _ => return false,
        }
    };
    if batch.is_empty() {
        return true;
    }
    // Publish the whole batch, then wait for the acknowledgements in order:
    // a resend after a failure is harmless (deduplicated by Nats-Msg-Id).
    let mut pending = Vec::with_capacity(batch.len());
    for entry in &batch {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, entry.msg_id.as_str());
        match jetstream
            .publish_with_headers(entry.subject.clone(), headers, entry.payload.clone().into())
            .await
        {
            Ok(ack) => pending.push((entry.id, ack)),
            Err(error) => {
                tracing::warn!(%error, "Upstream publish failed; will retry");
                break;
            }
        }
    }
    let mut acknowledged = Vec::with_capacity(pending.len());
    for (id, ack) in pending {
        match tokio::time::timeout(ACK_TIMEOUT, ack).await {
            Ok(Ok(_)) => acknowledged.push(id),
            Ok(Err(error)) => {
                tracing::warn!(%error, "Upstream did not acknowledge; will retry");
                break;
            }
            Err(_) => {
                tracing::warn!("Upstream acknowledgement timed out; will retry");
                break;
            }
        }
    }
    let complete = acknowledged.len() == batch.len();
    if !acknowledged.is_empty() {
        let outbox = outbox.clone();
        let deleted = tokio::task::spawn_blocking(move || match outbox.lock() {
            Ok(mut outbox) => outbox.delete(&acknowledged).map_err(|e| e.to_string()),
            Err(_) => Err("the outbox lock is poisoned".to_owned()),
        })
        .await;
        if !matches!(deleted, Ok(Ok(()))) {
            tracing::error!("Cannot delete acknowledged outbox entries; they will be resent (and deduplicated)");
            return false;
        }
    }
    complete && batch.len() < BATCH
}
