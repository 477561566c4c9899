//! What the demo watches and prints while the host runs: the host's status,
//! alerts on the local bus, summaries as the cloud stores them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow};
use futures::StreamExt;
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::format_description;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::recording::DAY_MS;

/// The device id of the demo.
pub const DEVICE: &str = "demo-01";
/// The cloud's JetStream stream.
pub const STREAM: &str = "EDGEWISE_UP";

/// The clock the host runs on, as seen from here: it reads `start_ms` at
/// `anchor` and runs `speed` times faster than real time.
#[derive(Debug, Clone, Copy)]
pub struct SimClock {
    pub anchor: Instant,
    pub start_ms: i64,
    pub speed: f64,
}

impl SimClock {
    /// The simulated time now, ms since the epoch.
    pub fn now_ms(&self) -> i64 {
        let elapsed_ms = self.anchor.elapsed().as_secs_f64() * 1000.0;
        self.start_ms.saturating_add((elapsed_ms * self.speed) as i64)
    }

    /// The real instant the clock reads `ms` (the anchor for earlier times).
    pub fn instant_at(&self, ms: i64) -> Instant {
        let real_s = (ms.saturating_sub(self.start_ms)).max(0) as f64 / 1000.0 / self.speed;
        self.anchor + Duration::from_secs_f64(real_s)
    }
}

/// The host's status, as far as the demo uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostStatus {
    pub upstream_connected: bool,
    pub outbox_alerts: u64,
    pub outbox_summaries: u64,
    pub readings_in: u64,
    pub alerts_out: u64,
    pub summaries_out: u64,
    /// The host clock, if the status reports it.
    pub clock_ms: Option<i64>,
}

impl HostStatus {
    /// The fields the demo uses of a status (or a final status) as JSON.
    pub fn from_json(status: &Value) -> anyhow::Result<HostStatus> {
        let number = |value: &Value, what: &str| {
            value
                .as_u64()
                .ok_or_else(|| anyhow!("the status has no number `{what}`: {status}"))
        };
        let plugins = status["plugins"]
            .as_array()
            .ok_or_else(|| anyhow!("the status has no `plugins`: {status}"))?;
        let sum = |field: &str| -> anyhow::Result<u64> { plugins.iter().map(|p| number(&p[field], field)).sum() };
        Ok(HostStatus {
            upstream_connected: status["upstream_connected"].as_bool().unwrap_or(false),
            outbox_alerts: number(&status["outbox"]["alerts"], "outbox.alerts")?,
            outbox_summaries: number(&status["outbox"]["summaries"], "outbox.summaries")?,
            readings_in: sum("readings_in")?,
            alerts_out: sum("alerts_out")?,
            summaries_out: sum("summaries_out")?,
            clock_ms: status["clock_ms"].as_i64(),
        })
    }

    /// Outputs waiting in the outbox.
    pub fn outbox(&self) -> u64 {
        self.outbox_alerts + self.outbox_summaries
    }

    /// `N alerts + M summaries waiting (upstream ...)`.
    pub fn outbox_line(&self) -> String {
        format!(
            "{} alerts + {} summaries waiting in the outbox; upstream {}",
            self.outbox_alerts,
            self.outbox_summaries,
            if self.upstream_connected {
                "connected"
            } else {
                "not connected"
            }
        )
    }
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM` (UTC).
pub fn utc(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(format_description!("[year]-[month]-[day] [hour]:[minute]"))
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// One line of the live log: simulated time, what, text.
pub fn say(at_ms: i64, what: &str, text: &str) {
    println!("  {}  {what:<7} {text}", utc(at_ms));
}

/// Print every alert published on the local bus as it arrives; count them.
pub fn spawn_alert_printer(mut alerts: async_nats::Subscriber, seen: Arc<AtomicU64>) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(message) = alerts.next().await {
            seen.fetch_add(1, Ordering::Relaxed);
            let Ok(alert) = serde_json::from_slice::<Value>(&message.payload) else {
                println!("  (an alert that is not JSON on {})", message.subject);
                continue;
            };
            let text = |key: &str| alert[key].as_str().unwrap_or("-").to_owned();
            say(
                alert["ts"].as_i64().unwrap_or(0),
                "alert",
                &format!(
                    "{:<8}  {:<24} {}  {}",
                    text("severity"),
                    text("code"),
                    text("sensor"),
                    text("message")
                ),
            );
        }
    })
}

/// Summaries the cloud has handed to the demo's consumer.
#[derive(Debug, Default)]
pub struct CloudView {
    /// The stream sequence to read from next.
    pub next_sequence: AtomicU64,
    pub hourly: AtomicU64,
    pub daily: AtomicU64,
}

impl CloudView {
    pub fn summaries(&self) -> u64 {
        self.hourly.load(Ordering::Relaxed) + self.daily.load(Ordering::Relaxed)
    }
}

/// Follow the summaries stored in the cloud stream with an ordered consumer,
/// from `view.next_sequence` on. A failed consumer or connection is made
/// again after a short pause; abort the task while the cloud is down and
/// spawn another once it is back.
pub fn spawn_summary_watcher(cloud_url: String, view: Arc<CloudView>, clock: SimClock) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Err(error) = watch_summaries(&cloud_url, &view, &clock).await {
                say(
                    clock.now_ms(),
                    "cloud",
                    &format!("(summary consumer: {error:#}; trying again)"),
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    })
}

async fn watch_summaries(cloud_url: &str, view: &CloudView, clock: &SimClock) -> anyhow::Result<()> {
    let client = async_nats::connect(cloud_url)
        .await
        .with_context(|| format!("cannot connect to {cloud_url}"))?;
    let jetstream = async_nats::jetstream::new(client);
    // The host creates the stream once it has connected.
    let stream = loop {
        match jetstream.get_stream(STREAM).await {
            Ok(stream) => break stream,
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let start_sequence = view.next_sequence.load(Ordering::Relaxed).max(1);
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("edgewise.{DEVICE}.up.summaries.>"),
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence },
            ..Default::default()
        })
        .await
        .context("cannot create a consumer on the cloud stream")?;
    let mut messages = consumer.messages().await.context("cannot consume the cloud stream")?;
    while let Some(message) = messages.next().await {
        let message = message.context("the cloud consumer failed")?;
        let sequence = message.info().map_err(|e| anyhow!("{e}"))?.stream_sequence;
        match serde_json::from_slice::<Value>(&message.payload) {
            Ok(summary) => show_summary(&summary, view, clock),
            Err(_) => say(clock.now_ms(), "cloud", "(a summary that is not JSON)"),
        }
        view.next_sequence.store(sequence + 1, Ordering::Relaxed);
    }
    Ok(())
}

/// Daily summaries get a line; hourly ones are counted.
fn show_summary(summary: &Value, view: &CloudView, clock: &SimClock) {
    let start = summary["window_start"].as_i64().unwrap_or(0);
    let end = summary["window_end"].as_i64().unwrap_or(0);
    if end - start != DAY_MS {
        view.hourly.fetch_add(1, Ordering::Relaxed);
        return;
    }
    view.daily.fetch_add(1, Ordering::Relaxed);
    let metrics = &summary["metrics"];
    let metric = |name: &str, decimals: usize| {
        metrics[name]
            .as_f64()
            .map_or("-".to_owned(), |v| format!("{v:.decimals$}"))
    };
    let day = utc(start);
    say(
        clock.now_ms(),
        "cloud",
        &format!(
            "daily summary of {} for {}: {} readings, mean {} mg/dL, in range {}%, GMI {}% \
             (and {} hourly summaries so far)",
            day.get(..10).unwrap_or(&day),
            summary["sensor"].as_str().unwrap_or("-"),
            metric("n", 0),
            metric("mean", 0),
            metric("tir_70_180", 1),
            metric("gmi", 1),
            view.hourly.load(Ordering::Relaxed)
        ),
    );
}

/// Messages stored in the cloud stream: (alerts, summaries) of the device.
pub async fn stored_upstream(cloud_url: &str) -> anyhow::Result<(u64, u64)> {
    let client = async_nats::connect(cloud_url)
        .await
        .with_context(|| format!("cannot connect to {cloud_url}"))?;
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream
        .get_stream(STREAM)
        .await
        .with_context(|| format!("no stream {STREAM} in the cloud"))?;
    let mut subjects = stream
        .info_with_subjects(format!("edgewise.{DEVICE}.up.>"))
        .await
        .with_context(|| format!("cannot read the subjects of {STREAM}"))?;
    let (mut alerts, mut summaries) = (0, 0);
    while let Some(entry) = subjects.next().await {
        let (subject, count) = entry.with_context(|| format!("cannot read the subjects of {STREAM}"))?;
        if subject.starts_with(&format!("edgewise.{DEVICE}.up.alerts.")) {
            alerts += count as u64;
        } else if subject.starts_with(&format!("edgewise.{DEVICE}.up.summaries.")) {
            summaries += count as u64;
        }
    }
    Ok((alerts, summaries))
}
