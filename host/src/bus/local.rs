//! Publishing on the local bus without waiting on it for long.
//!
//! The NATS client queues what is published for its connection task (2,048
//! commands, async-nats' default). While the server is away, that task is
//! busy reconnecting and takes nothing off the queue; once it is full, a
//! publish waits until the server is back. A plugin's worker publishes each
//! alert before it hands its outputs to the outbox, and the owner task does
//! the same with the host's alerts: had they waited, a local server down
//! for an hour or a day (a crash loop, a full disk under its JetStream)
//! would have stopped every plugin after its first two thousand alerts,
//! their outputs upstream with them, and every tick and reading after.
//!
//! So a publish waits at most [`PUBLISH_WAIT`] for room in the queue; one
//! that times out is given up, counted ([`publishes_dropped`]) and logged.
//! After that, a publish only takes room there is at once, without
//! waiting, until one goes through: a server away, or one still connected
//! that reads nothing (hung), costs one wait, not one per alert. What is
//! given up on the local bus still goes upstream through the outbox.
//!
//! An alert larger than the local server's `max_payload` (known from its
//! INFO) would be refused by the client, and the clinician's screens would
//! get nothing of it: it is published there shortened instead
//! ([`LocalBus::publish_alert`], counted in [`alerts_shortened`]); its full
//! line is stored in the outbox as any output's, and goes upstream from there.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures::FutureExt;

/// The longest a publish waits for room in the client's queue. A connected
/// client takes a publish in microseconds; only a server that is away, or
/// one that reads nothing, makes it wait this long.
pub const PUBLISH_WAIT: Duration = Duration::from_secs(2);

/// Publishes given up since the process started (all [`LocalBus`]es).
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Publishes on the local bus given up since the process started: the
/// client's queue stayed full for [`PUBLISH_WAIT`] (the server away), or
/// was still full after such a time-out.
pub fn publishes_dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Alerts published shortened since the process started (all
/// [`LocalBus`]es).
static SHORTENED: AtomicU64 = AtomicU64::new(0);

/// Alerts published on the local bus shortened since the process started:
/// in full, each was larger than the local server's `max_payload`.
pub fn alerts_shortened() -> u64 {
    SHORTENED.load(Ordering::Relaxed)
}

/// The local bus, for what the host publishes there itself (alerts,
/// telemetry): never waiting on it for longer than [`PUBLISH_WAIT`].
#[derive(Debug, Clone)]
pub struct LocalBus {
    client: async_nats::Client,
    /// Set when a publish timed out; cleared by one that goes through. While
    /// set, a publish takes room there is at once, or is given up.
    stalled: Arc<AtomicBool>,
}

/// Why a publish on the local bus did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LocalPublishError {
    /// No room in the client's queue within [`PUBLISH_WAIT`].
    #[error("the local NATS client took nothing for {}s (its server is away?): not published", PUBLISH_WAIT.as_secs())]
    TimedOut,
    /// A publish timed out, and the client's queue has had no room since.
    #[error("the local NATS client's queue is still full (its server away?): not published")]
    Stalled,
    /// An alert larger than the local server's `max_payload`, and no shorter
    /// form of it fits either.
    #[error(
        "an alert of {bytes} bytes, larger than the local NATS server's max_payload ({max_payload} bytes) even shortened: not published"
    )]
    TooLarge {
        /// The alert's size in full.
        bytes: usize,
        /// The local server's `max_payload`.
        max_payload: usize,
    },
    /// The client refused it.
    #[error(transparent)]
    Client(#[from] async_nats::PublishError),
}

impl LocalBus {
    /// Publishes through `client`.
    pub fn new(client: async_nats::Client) -> LocalBus {
        LocalBus {
            client,
            stalled: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Publish an alert's `line` on `subject`, as [`LocalBus::publish`]. A
    /// line larger than the local server's `max_payload` is published as
    /// `shorten(max_payload)` makes it instead (a line of at most that many
    /// bytes, or `None` when none fits): the alert, if not all its words,
    /// reaches the local bus. Said once in the log, and counted.
    pub async fn publish_alert(
        &self,
        subject: impl Into<async_nats::Subject>,
        line: String,
        shorten: impl FnOnce(usize) -> Option<String>,
    ) -> Result<(), LocalPublishError> {
        let (bytes, max_payload) = (line.len(), self.client.max_payload());
        let (payload, shortened) = fit_alert(line, max_payload, shorten)?;
        if shortened && SHORTENED.fetch_add(1, Ordering::Relaxed) == 0 {
            tracing::warn!(
                bytes,
                max_payload,
                "An alert is larger than the local NATS server's max_payload: it is published there shortened \
                 (its full line is stored in the outbox as any output's); raise max_payload in the local \
                 server's configuration"
            );
        }
        self.publish(subject, payload.into()).await
    }

    /// Publish `payload` on `subject`, waiting at most [`PUBLISH_WAIT`].
    /// A publish given up is counted in [`publishes_dropped`].
    pub async fn publish(
        &self,
        subject: impl Into<async_nats::Subject>,
        payload: bytes::Bytes,
    ) -> Result<(), LocalPublishError> {
        if self.stalled.load(Ordering::Relaxed) {
            // Polled once: room in the queue now, or nothing sent (the
            // send is cancel-safe: dropped unsent, the message is not queued).
            return match self.client.publish(subject.into(), payload).now_or_never() {
                Some(Ok(())) => {
                    if self.stalled.swap(false, Ordering::Relaxed) {
                        tracing::warn!("The local NATS client takes publishes again");
                    }
                    Ok(())
                }
                Some(Err(error)) => Err(error.into()),
                None => {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                    Err(LocalPublishError::Stalled)
                }
            };
        }
        match tokio::time::timeout(PUBLISH_WAIT, self.client.publish(subject.into(), payload)).await {
            Ok(Ok(())) => {
                self.stalled.store(false, Ordering::Relaxed);
                Ok(())
            }
            Ok(Err(error)) => Err(error.into()),
            Err(_) => {
                if !self.stalled.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        "The local NATS client took nothing for {}s: until it takes publishes again, alerts and \
                         telemetry are not published on the local bus (they still go upstream through the outbox)",
                        PUBLISH_WAIT.as_secs()
                    );
                }
                DROPPED.fetch_add(1, Ordering::Relaxed);
                Err(LocalPublishError::TimedOut)
            }
        }
    }
}

/// What of an alert's `line` goes on a local bus whose server carries at
/// most `max_payload` bytes: the line, or `shorten(max_payload)` when the
/// line is larger (`true`: shortened). [`LocalPublishError::TooLarge`] when
/// no form of it fits.
fn fit_alert(
    line: String,
    max_payload: usize,
    shorten: impl FnOnce(usize) -> Option<String>,
) -> Result<(String, bool), LocalPublishError> {
    if line.len() <= max_payload {
        return Ok((line, false));
    }
    // Past the limit the client refuses the publish (and a server whose
    // INFO the client has not read yet would close the connection).
    match shorten(max_payload).filter(|short| short.len() <= max_payload) {
        Some(short) => Ok((short, true)),
        None => Err(LocalPublishError::TooLarge {
            bytes: line.len(),
            max_payload,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alert_that_fits_is_published_as_made() {
        let line = "x".repeat(100);
        let fitted = fit_alert(line.clone(), 100, |_| panic!("not shortened"));
        assert_eq!(fitted.ok(), Some((line, false)));
    }

    #[test]
    fn an_alert_over_max_payload_is_published_as_shortened_to_it() {
        let fitted = fit_alert("x".repeat(101), 100, |max| Some("y".repeat(max)));
        assert_eq!(fitted.ok(), Some(("y".repeat(100), true)));
    }

    #[test]
    fn an_alert_no_form_of_which_fits_is_too_large() {
        for shorten in [None, Some("y".repeat(101))] {
            let fitted = fit_alert("x".repeat(300), 100, |_| shorten.clone());
            assert!(
                matches!(
                    fitted,
                    Err(LocalPublishError::TooLarge {
                        bytes: 300,
                        max_payload: 100
                    })
                ),
                "{fitted:?}"
            );
        }
    }
}
