//! Reading-to-answer latency: a publisher thread that sleeps until each
//! reading is due sends [`AlarmTraffic`], a subscriber notes when the first
//! answer about each reading arrives (an echo, or an alert of `edgewise
//! run`), both on this process's clock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use futures::StreamExt;
use serde_json::Value;

use crate::disk::DiskLatency;
use crate::load::{AlarmTraffic, Traffic};
use crate::stats::{percentile, sorted};

/// Sensors the alarm traffic cycles through.
pub const SENSORS: u64 = 50;
/// One reading in this many (per sensor) raises an alert; only those are timed.
pub const ALERT_EVERY: u64 = 10;
/// Answers stop being awaited once none came for this long.
const QUIET: Duration = Duration::from_secs(1);
/// ... or at the latest this long after the last reading.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// Where answers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The echo process republishes each reading on `echo.<subject>`.
    Echo,
    /// `edgewise run` publishes glucose-monitor's alerts.
    Alert,
}

impl Answer {
    fn subject(self) -> String {
        match self {
            Answer::Echo => "echo.>".to_owned(),
            Answer::Alert => format!("edgewise.{}.alerts.glucose-monitor", crate::device::DEVICE),
        }
    }
}

/// One latency run: what to send and for how long.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Readings per second.
    pub rate: f64,
    /// Readings sent before the measured ones (not counted).
    pub warmup: Duration,
    /// How long the measured readings are sent.
    pub measure: Duration,
}

/// Latency percentiles of one run, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Measured alerting readings that were answered.
    pub samples: usize,
    /// Measured alerting readings never answered.
    pub missing: usize,
    /// The rate the publisher reached.
    pub achieved_rate: f64,
    /// The disk's durable-write latency during the run, where the answers
    /// depend on it (`edgewise run`'s commits).
    pub disk: Option<DiskLatency>,
}

impl Latency {
    /// One line for the method notes.
    pub fn summary(&self) -> String {
        format!(
            "{} samples at {}/s, {} unanswered; p50 {} ms, p99 {} ms, p99.9 {} ms",
            self.samples,
            crate::table::number(self.achieved_rate),
            self.missing,
            crate::table::number(self.p50),
            crate::table::number(self.p99),
            crate::table::number(self.p999)
        ) + &self
            .disk
            .map(|disk| format!("; {}", disk.summary()))
            .unwrap_or_default()
    }
}

/// Send `plan`'s readings on `url` and time the answers.
pub async fn measure(url: &str, answer: Answer, plan: Plan) -> anyhow::Result<Latency> {
    let traffic = Arc::new(AlarmTraffic::new(SENSORS, ALERT_EVERY, crate::load::now_ms()));
    let listener = async_nats::connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let mut answers = listener
        .subscribe(answer.subject())
        .await
        .context("cannot subscribe to the answers")?;
    listener.flush().await.context("cannot flush the subscriber")?;
    let publisher = async_nats::connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;

    let warmup_count = (plan.rate * plan.warmup.as_secs_f64()) as u64;
    let total = warmup_count + (plan.rate * plan.measure.as_secs_f64()) as u64;
    let handle = tokio::runtime::Handle::current();
    let sender_traffic = traffic.clone();
    let rate = plan.rate;
    let sender = std::thread::Builder::new()
        .name("bench-publisher".into())
        .spawn(move || send_paced(&handle, &publisher, sender_traffic.as_ref(), total, rate))
        .context("cannot start the publisher thread")?;

    // Collect (arrival, message) until the publisher is done and answers stop.
    let mut received: Vec<(Instant, async_nats::Message)> = Vec::with_capacity(total as usize * 2);
    let mut publisher_done = false;
    let mut last_arrival = Instant::now();
    let mut drain_deadline: Option<Instant> = None;
    loop {
        if !publisher_done && sender.is_finished() {
            publisher_done = true;
            drain_deadline = Some(Instant::now() + DRAIN_TIMEOUT);
        }
        if publisher_done && (last_arrival.elapsed() >= QUIET || drain_deadline.is_some_and(|d| Instant::now() >= d)) {
            break;
        }
        match tokio::time::timeout(Duration::from_millis(50), answers.next()).await {
            Ok(Some(message)) => {
                let now = Instant::now();
                last_arrival = now;
                received.push((now, message));
            }
            Ok(None) => return Err(anyhow!("the answer subscription ended")),
            Err(_) => {}
        }
    }
    let (sent, took) = sender.join().map_err(|_| anyhow!("the publisher thread panicked"))??;

    // The first answer about each reading.
    let mut first: Vec<Option<Instant>> = vec![None; sent.len()];
    for (arrival, message) in &received {
        if let Some(k) = reading_number(&traffic, answer, message)
            && let Some(slot) = first.get_mut(k as usize)
            && slot.is_none()
        {
            *slot = Some(*arrival);
        }
    }
    let mut latencies = Vec::new();
    let mut missing = 0;
    for (k, sent_at) in sent.iter().enumerate().skip(warmup_count as usize) {
        if !traffic.alerts(k as u64) {
            continue;
        }
        match first.get(k).copied().flatten() {
            Some(arrival) => latencies.push(arrival.saturating_duration_since(*sent_at).as_secs_f64() * 1000.0),
            None => missing += 1,
        }
    }
    let latencies = sorted(&latencies);
    let at = |p| percentile(&latencies, p).ok_or_else(|| anyhow!("no reading was answered"));
    Ok(Latency {
        p50: at(50.0)?,
        p99: at(99.0)?,
        p999: at(99.9)?,
        samples: latencies.len(),
        missing,
        achieved_rate: total as f64 / took.as_secs_f64().max(1e-9),
        disk: None,
    })
}

/// Publish readings `0..total` at `rate`, sleeping until each is due.
/// Returns when each was handed to the client, and the time it all took.
fn send_paced(
    handle: &tokio::runtime::Handle,
    client: &async_nats::Client,
    traffic: &dyn Traffic,
    total: u64,
    rate: f64,
) -> anyhow::Result<(Vec<Instant>, Duration)> {
    let mut sent = Vec::with_capacity(total as usize);
    let start = Instant::now() + Duration::from_millis(20);
    for k in 0..total {
        let due = start + Duration::from_secs_f64(k as f64 / rate);
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let (subject, payload) = traffic.message(k);
        sent.push(Instant::now());
        handle
            .block_on(client.publish(subject, payload))
            .context("cannot publish")?;
    }
    handle.block_on(client.flush()).context("cannot flush the publisher")?;
    Ok((sent, start.elapsed()))
}

/// Which reading an answer is about.
fn reading_number(traffic: &AlarmTraffic, answer: Answer, message: &async_nats::Message) -> Option<u64> {
    let json: Value = serde_json::from_slice(&message.payload).ok()?;
    let ts = json.get("ts")?.as_i64()?;
    match answer {
        Answer::Echo => traffic.number_of(message.subject.as_str(), ts),
        Answer::Alert => traffic.number_of(json.get("sensor")?.as_str()?, ts),
    }
}
