//! Where the dashboard's [`Fleet`] comes from: the upstream streams (alerts,
//! summaries, telemetry), each read from its start by an ordered consumer
//! (nothing acknowledged, nothing taken from anyone), and the reported
//! bucket of the deployments, read again every few seconds.
//!
//! A stream is followed when named with `--stream`, or, without any, when
//! its subjects are all upstream subjects (`edgewise.<device>.up.…`): new
//! devices' streams are found as they appear. A consumer that fails is made
//! again from the stream sequence after the last message taken, so nothing
//! is shown twice and nothing is skipped.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use futures::StreamExt;
use tokio::sync::{broadcast, watch};

use super::state::{FeedAlert, Fleet};
use crate::deploy::Cloud;
use crate::outbox::wall_ms;

/// How often the stream list is read again (for new devices' streams).
const DISCOVER_EVERY: Duration = Duration::from_secs(5);
/// How often the reported bucket is read again.
const REPORTS_EVERY: Duration = Duration::from_secs(2);
/// Wait before making a failed consumer again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What the dashboard reads, and where it puts it.
#[derive(Clone)]
pub struct Feed {
    /// The cloud: its deployment buckets, and the JetStream (in its domain)
    /// the upstream streams are read from.
    pub cloud: Cloud,
    /// Streams to follow; empty: every upstream stream found.
    pub streams: Vec<String>,
    /// The fleet the messages are folded into.
    pub fleet: Arc<Mutex<Fleet>>,
    /// Each alert, as it arrives, for the live feed.
    pub alerts: broadcast::Sender<FeedAlert>,
}

/// Whether a stream with `subjects` holds upstream messages only.
pub fn is_upstream_stream(subjects: &[String]) -> bool {
    !subjects.is_empty()
        && subjects.iter().all(|subject| {
            let parts: Vec<&str> = subject.split('.').collect();
            parts.len() >= 4 && parts.first() == Some(&"edgewise") && parts.get(2) == Some(&"up")
        })
}

impl Feed {
    /// Follow the streams and the reports until `stop` turns true.
    pub async fn run(self, stop: watch::Receiver<bool>) {
        let reports = tokio::spawn(self.clone().reports(stop.clone()));
        self.streams(stop).await;
        reports.abort();
    }

    /// Find the streams to follow, and follow each on its own task.
    async fn streams(self, mut stop: watch::Receiver<bool>) {
        let mut followed = BTreeSet::new();
        let mut tasks = Vec::new();
        loop {
            for name in self.to_follow().await {
                if followed.insert(name.clone()) {
                    tracing::info!(stream = %name, "following an upstream stream");
                    tasks.push(tokio::spawn(self.clone().follow(name, stop.clone())));
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(DISCOVER_EVERY) => {}
                _ = stop.wait_for(|stop| *stop) => break,
            }
        }
        for task in tasks {
            task.abort();
        }
    }

    /// The streams named, or those found that hold upstream subjects.
    async fn to_follow(&self) -> Vec<String> {
        if !self.streams.is_empty() {
            return self.streams.clone();
        }
        let mut found = Vec::new();
        let mut streams = self.cloud.jetstream().streams();
        while let Some(info) = streams.next().await {
            match info {
                Ok(info) if is_upstream_stream(&info.config.subjects) => found.push(info.config.name),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the streams");
                    break;
                }
            }
        }
        found
    }

    /// Read one stream from its start, and on from there, for good.
    async fn follow(self, stream: String, mut stop: watch::Receiver<bool>) {
        let mut next = 1u64;
        loop {
            if let Err(e) = self.read(&stream, &mut next).await {
                tracing::warn!(stream = %stream, error = %e, "reading an upstream stream failed; again shortly");
            }
            tokio::select! {
                _ = tokio::time::sleep(RETRY_AFTER) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }

    /// Read `stream` from sequence `next` until the consumer fails.
    async fn read(&self, stream: &str, next: &mut u64) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let consumer = self
            .cloud
            .jetstream()
            .get_stream(stream)
            .await?
            .create_consumer(OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: *next },
                ..OrderedConfig::default()
            })
            .await?;
        let mut messages = consumer.messages().await?;
        while let Some(message) = messages.next().await {
            let message = message?;
            let sequence = message.info()?.stream_sequence;
            if sequence < *next {
                continue;
            }
            *next = sequence.saturating_add(1);
            let alert = match self.fleet.lock() {
                Ok(mut fleet) => fleet.take(message.subject.as_str(), &message.payload, wall_ms()),
                Err(_) => return Err("the dashboard's state is poisoned".into()),
            };
            if let Some(alert) = alert {
                // No page listening is not an error.
                let _ = self.alerts.send(alert);
            }
        }
        Ok(())
    }

    /// Read the reported bucket now and then.
    async fn reports(self, mut stop: watch::Receiver<bool>) {
        loop {
            match self.cloud.reports().await {
                Ok(reports) => {
                    if let Ok(mut fleet) = self.fleet.lock() {
                        let mut unreadable = 0;
                        for report in reports {
                            match report {
                                Ok(report) => fleet.take_report(report),
                                Err(_) => unreadable += 1,
                            }
                        }
                        fleet.refused.unreadable_reports = unreadable;
                    }
                }
                // No deployment yet: the bucket may not exist.
                Err(e) => tracing::debug!(error = %e, "cannot read the deployment reports"),
            }
            tokio::select! {
                _ = tokio::time::sleep(REPORTS_EVERY) => {}
                _ = stop.wait_for(|stop| *stop) => return,
            }
        }
    }
}
