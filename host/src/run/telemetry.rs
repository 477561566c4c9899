//! The device's fleet telemetry (`crate::telemetry`, `[telemetry]`): every
//! interval of wall-clock time, one message made from the status, published
//! on `edgewise.<device>.telemetry` and, with `[upstream]`, stored in the
//! outbox for `edgewise.<device>.up.telemetry`, where it is best-effort
//! (`outbox::Kind::Telemetry`: a small bounded share, after every alert and
//! summary, never at the cost of one).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};

use super::status::StatusSources;
use crate::bus::LocalBus;
use crate::bus::local::LocalPublishError;
use crate::outbox::{Kind, NewEntry, OutboxError, SharedOutbox, TELEMETRY_PLUGIN, wall_ms, with_outbox};
use crate::telemetry::Telemetry;

/// Where the telemetry goes upstream: the outbox, and what wakes delivery.
pub(super) struct Upstream {
    /// The outbox.
    pub(super) outbox: SharedOutbox,
    /// Woken after each append.
    pub(super) written: Arc<Notify>,
}

/// Publish the device's telemetry at once and then every `interval`, until
/// `stop`. Nothing here fails the task: a message that cannot be published
/// or stored is logged and the next one is made on time.
pub(super) async fn run_telemetry(
    interval: Duration,
    sources: Arc<StatusSources>,
    local: LocalBus,
    upstream: Option<Upstream>,
    stop: watch::Receiver<bool>,
) {
    // The message ids of this run: never one an earlier run used.
    let incarnation = match crate::outbox::new_incarnation() {
        Ok(incarnation) => Some(incarnation),
        Err(error) => {
            tracing::error!(%error, "Cannot name this run's telemetry; it is only published locally");
            None
        }
    };
    let subjects = sources.subjects.clone();
    let mut number = 0u64;
    crate::clock::every(interval, stop, || {
        number += 1;
        let (sources, local, subjects) = (sources.clone(), local.clone(), subjects.clone());
        let upstream = upstream
            .as_ref()
            .zip(incarnation.as_deref())
            .map(|(upstream, incarnation)| {
                (
                    upstream.outbox.clone(),
                    upstream.written.clone(),
                    subjects.telemetry_msg_id(incarnation, number),
                )
            });
        async move {
            let Some(line) = make(sources).await else { return };
            match local.publish(subjects.local_telemetry(), line.clone().into()).await {
                Ok(()) | Err(LocalPublishError::Stalled) => {} // Said once, when it stalled.
                Err(error) => tracing::warn!(%error, "Cannot publish telemetry on the local bus"),
            }
            let Some((outbox, written, msg_id)) = upstream else {
                return;
            };
            let entry = NewEntry {
                kind: Kind::Telemetry,
                plugin: TELEMETRY_PLUGIN.to_owned(),
                subject: subjects.upstream_telemetry(),
                msg_id,
                payload: line,
                created_ms: wall_ms(),
            };
            match store(&outbox, entry).await {
                Ok(true) => written.notify_one(),
                // Counted in the outbox's drops.
                Ok(false) => tracing::debug!("No room for telemetry in the outbox; dropped"),
                Err(error) => tracing::warn!(%error, "Cannot store telemetry in the outbox"),
            }
        }
    })
    .await;
}

/// The telemetry now, as JSON (`None`, logged, if it cannot be made).
async fn make(sources: Arc<StatusSources>) -> Option<Vec<u8>> {
    // The status reads the outbox under its lock: off the async threads.
    let made = tokio::task::spawn_blocking(move || {
        let status = sources.status();
        let usage = crate::metrics::process::usage();
        Telemetry::from_status(
            &status,
            wall_ms(),
            usage.map(|u| u.cpu_seconds),
            usage.map(|u| u.resident_bytes),
        )
    })
    .await;
    let telemetry = match made {
        Ok(telemetry) => telemetry,
        Err(error) => {
            tracing::error!(%error, "Cannot gather the telemetry");
            return None;
        }
    };
    match serde_json::to_vec(&telemetry) {
        Ok(line) => Some(line),
        Err(error) => {
            tracing::error!(%error, "Cannot encode the telemetry");
            None
        }
    }
}

/// Store `entry`: whether it was (telemetry without room is not, and counted).
async fn store(outbox: &SharedOutbox, entry: NewEntry) -> Result<bool, OutboxError> {
    with_outbox(outbox, move |outbox| outbox.append(entry))
        .await
        .map(|id| id.is_some())
}
