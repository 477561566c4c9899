//! The highest sustained rate without loss: publish at a paced rate for a
//! while, check that every message was delivered shortly after, double the
//! rate until a step fails, then bisect between the last pass and the fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::device::Device;
use crate::load::Traffic;

/// First rate tried, messages/s.
const START_RATE: f64 = 4_000.0;
/// Highest rate tried.
const MAX_RATE: f64 = 4_096_000.0;
/// How long each step publishes.
const STEP: Duration = Duration::from_secs(2);
/// How long after the last publish every message must have been delivered.
const GRACE: Duration = Duration::from_millis(500);
/// Attempts at a rate before it counts as failed: the machine is shared, and
/// one stall of another process should not decide the figure.
const ATTEMPTS: usize = 2;
/// Bisection rounds after the first failure (each halves the gap in log scale).
const BISECTIONS: u32 = 3;
/// A step passes only if the publisher reached this share of the asked rate.
const PUBLISHER_SHARE: f64 = 0.95;
/// After a failed step: wait until deliveries have stopped for this long.
const QUIET: Duration = Duration::from_millis(500);
/// ... but no longer than this.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Where delivered messages are counted.
pub enum Sink<'a> {
    /// A bare subscriber's counter.
    Counter(&'a AtomicU64),
    /// `readings_in` of a plugin in `edgewise run`'s status.
    Host(&'a mut Device, &'static str),
}

impl Sink<'_> {
    /// Messages delivered so far.
    pub async fn delivered(&mut self) -> anyhow::Result<u64> {
        match self {
            Sink::Counter(counter) => Ok(counter.load(Ordering::Relaxed)),
            Sink::Host(device, plugin) => device.readings_in(plugin).await,
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// The rate asked for.
    pub target: f64,
    /// The rate the publisher reached.
    pub achieved: f64,
    /// Messages published.
    pub published: u64,
    /// Messages delivered within the grace period.
    pub delivered: u64,
    /// Whether the step passed.
    pub passed: bool,
}

/// The result of a ladder.
#[derive(Debug, Clone)]
pub struct Ladder {
    /// Every step, in order.
    pub steps: Vec<Step>,
    /// The number of the next message of the traffic (the ladder published
    /// every one before it), for further steps that must stay in order.
    pub next: u64,
}

impl Ladder {
    /// The highest achieved rate of a passing step.
    pub fn best(&self) -> Option<f64> {
        self.steps
            .iter()
            .filter(|s| s.passed)
            .map(|s| s.achieved)
            .max_by(f64::total_cmp)
    }

    /// The rate asked of the passing step with the highest achieved rate.
    pub fn best_asked(&self) -> Option<f64> {
        self.steps
            .iter()
            .filter(|s| s.passed)
            .max_by(|a, b| a.achieved.total_cmp(&b.achieved))
            .map(|s| s.target)
    }

    /// One line about the steps, for the method notes.
    pub fn summary(&self) -> String {
        self.steps
            .iter()
            .map(|s| {
                format!(
                    "{}/s (asked {}) {}",
                    crate::table::number(s.achieved),
                    crate::table::number(s.target),
                    if s.passed {
                        "ok".to_owned()
                    } else if s.delivered < s.published {
                        format!("lost-or-late {}", s.published - s.delivered)
                    } else {
                        "publisher short".to_owned()
                    }
                )
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Run the ladder: `publisher` publishes `traffic`, `sink` counts deliveries.
pub async fn climb(
    publisher: &async_nats::Client,
    traffic: &dyn Traffic,
    mut sink: Sink<'_>,
) -> anyhow::Result<Ladder> {
    let mut cursor = 0u64;
    let mut steps = Vec::new();
    let mut rate = START_RATE;
    let mut passed: Option<f64> = None;
    let mut failed: Option<f64> = None;
    while rate <= MAX_RATE {
        if attempt(publisher, traffic, &mut sink, &mut cursor, rate, &mut steps).await? {
            passed = Some(rate);
            rate *= 2.0;
        } else {
            failed = Some(rate);
            break;
        }
    }
    if let (Some(mut low), Some(mut high)) = (passed, failed) {
        for _ in 0..BISECTIONS {
            let middle = (low * high).sqrt();
            if attempt(publisher, traffic, &mut sink, &mut cursor, middle, &mut steps).await? {
                low = middle;
            } else {
                high = middle;
            }
        }
    }
    Ok(Ladder { steps, next: cursor })
}

/// Up to [`ATTEMPTS`] steps at `rate`, until one passes; whether one did.
async fn attempt(
    publisher: &async_nats::Client,
    traffic: &dyn Traffic,
    sink: &mut Sink<'_>,
    cursor: &mut u64,
    rate: f64,
    steps: &mut Vec<Step>,
) -> anyhow::Result<bool> {
    for _ in 0..ATTEMPTS {
        let step = step(publisher, traffic, sink, cursor, rate).await?;
        steps.push(step);
        if step.passed {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Publish at `rate` for [`STEP`] from message `cursor` on (moved past the
/// messages it published), then check every message was delivered; also one
/// step outside a ladder. A failed step has settled when this returns.
pub async fn step(
    publisher: &async_nats::Client,
    traffic: &dyn Traffic,
    sink: &mut Sink<'_>,
    cursor: &mut u64,
    rate: f64,
) -> anyhow::Result<Step> {
    let before = sink.delivered().await?;
    let total = (rate * STEP.as_secs_f64()) as u64;
    let started = Instant::now();
    let mut sent = 0u64;
    while sent < total {
        let owed = ((started.elapsed().as_secs_f64() * rate) as u64).min(total);
        while sent < owed {
            let (subject, payload) = traffic.message(*cursor + sent);
            publisher.publish(subject, payload).await.context("cannot publish")?;
            sent += 1;
        }
        if sent < total {
            // Sleep between bursts: the machine has two cores to share.
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    publisher.flush().await.context("cannot flush the publisher")?;
    let took = started.elapsed();
    *cursor += total;
    let achieved = total as f64 / took.as_secs_f64().max(1e-9);
    let deadline = Instant::now() + GRACE;
    let mut delivered = sink.delivered().await?.saturating_sub(before);
    while delivered < total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        delivered = sink.delivered().await?.saturating_sub(before);
    }
    let all = delivered >= total;
    if !all {
        settle(sink).await?;
    }
    let step = Step {
        target: rate,
        achieved,
        published: total,
        delivered: delivered.min(total),
        passed: all && achieved >= PUBLISHER_SHARE * rate,
    };
    tracing::info!(
        target_rate = rate.round(),
        achieved = achieved.round(),
        published = total,
        delivered = step.delivered,
        passed = step.passed,
        "ladder step"
    );
    Ok(step)
}

/// Wait until deliveries stop, so that a failed step's backlog does not
/// count for the next one.
async fn settle(sink: &mut Sink<'_>) -> anyhow::Result<()> {
    let deadline = Instant::now() + SETTLE_TIMEOUT;
    let mut last = sink.delivered().await?;
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = sink.delivered().await?;
        if now != last {
            last = now;
            quiet_since = Instant::now();
        } else if quiet_since.elapsed() >= QUIET {
            break;
        }
    }
    Ok(())
}

/// A bare subscriber on `subject` counting messages; aborted when dropped.
pub struct Counter {
    /// Messages received.
    pub count: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Counter {
    /// Subscribe on a connection of its own.
    pub async fn start(url: &str, subject: &str) -> anyhow::Result<Counter> {
        let client = async_nats::connect(url)
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        let mut subscriber = client
            .subscribe(subject.to_owned())
            .await
            .with_context(|| format!("cannot subscribe to {subject}"))?;
        client.flush().await.context("cannot flush the subscriber")?;
        let count = Arc::new(AtomicU64::new(0));
        let counted = count.clone();
        let task = tokio::spawn(async move {
            let _client = client;
            while subscriber.next().await.is_some() {
                counted.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(Counter { count, task })
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.task.abort();
    }
}
