//! The live run: two nats-servers, `edgewise run` on a simulated clock, the
//! recording played at the pace of that clock, a cloud outage, and the totals.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::process::{ChildGuard, NatsServer};
use super::recording::{DAY_MS, Reading, Recording};
use super::watch::{self, CloudView, DEVICE, HostStatus, STREAM, SimClock, say, utc};

/// Real time the recording takes to play (the clock speed follows from it).
const PLAY_SECONDS: f64 = 45.0;
/// How long the cloud stays down.
const OUTAGE: Duration = Duration::from_secs(10);
/// Status lines printed while the cloud is down.
const OUTAGE_REPORTS: u32 = 4;
/// How long `edgewise run` may take to answer its first status request.
const HOST_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the outbox may take to drain, and the host to settle at the end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `edgewise run` may take to exit after SIGTERM.
const HOST_STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// Clock time after the last reading for its signal-loss alert and the
/// release of windows held for an episode (`episode_gap` is 45 min).
const SETTLE_AFTER_LAST_MS: i64 = 50 * 60_000;

/// What the live run needs.
pub struct Setup {
    pub root: PathBuf,
    pub edgewise: PathBuf,
    pub nats_server: PathBuf,
    pub demo_dir: PathBuf,
    pub recording: Recording,
    pub recording_name: &'static str,
}

/// A task aborted when dropped, so that nothing outlives the live run.
struct Task<T>(Option<JoinHandle<T>>);

impl<T> Task<T> {
    fn new(handle: JoinHandle<T>) -> Task<T> {
        Task(Some(handle))
    }

    /// Wait for the task's result.
    async fn join(&mut self) -> anyhow::Result<T> {
        let handle = self.0.as_mut().ok_or_else(|| anyhow!("the task was already joined"))?;
        let result = handle.await;
        self.0 = None;
        result.map_err(|e| anyhow!("a demo task failed: {e}"))
    }
}

impl<T> Drop for Task<T> {
    fn drop(&mut self) {
        if let Some(handle) = &self.0 {
            handle.abort();
        }
    }
}

/// `edgewise run`, with its log file.
struct Host {
    process: ChildGuard,
    log: PathBuf,
}

impl Host {
    /// Fail with the end of its log if it has exited.
    fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.process.try_wait()? {
            bail!(
                "edgewise run exited ({status}); the end of {}:\n{}",
                self.log.display(),
                self.log_tail(20)
            );
        }
        Ok(())
    }

    /// Sleep until `until`, failing early if the host exits.
    async fn sleep_until(&mut self, until: Instant) -> anyhow::Result<()> {
        loop {
            self.check_running()?;
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            tokio::time::sleep_until(until.min(now + Duration::from_millis(200))).await;
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Its status; if it does not answer, say whether it has exited.
    async fn status(&mut self, local: &async_nats::Client) -> anyhow::Result<HostStatus> {
        match watch::status(local).await {
            Ok(status) => Ok(status),
            Err(error) => {
                self.check_running()?;
                Err(error)
            }
        }
    }
}

/// What the publisher did.
struct Played {
    count: u64,
    /// The most a reading was published after its time (real time).
    max_late: Duration,
}

pub async fn run(setup: &Setup) -> anyhow::Result<()> {
    let recording = &setup.recording;
    let show = |path: &Path| path.strip_prefix(&setup.root).unwrap_or(path).display().to_string();
    let data_dir = setup.demo_dir.join("data");
    let store = setup.demo_dir.join("cloud-js");
    for dir in [&data_dir, &store] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
    }

    println!("\nStarting the live demo: edgewise run as device {DEVICE}, on a simulated clock");
    let edge = NatsServer::start("edge", &setup.nats_server, None).await?;
    let mut cloud = NatsServer::start("cloud", &setup.nats_server, Some(store.clone())).await?;
    let (first, last) = (recording.first_ms(), recording.last_ms());
    let span = last - first;
    let speed = (span as f64 / 1000.0 / PLAY_SECONDS).round().max(1.0);
    let start = OffsetDateTime::from_unix_timestamp_nanos(i128::from(first) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .context("the recording's first time cannot be written in RFC 3339")?;
    let config_path = setup.demo_dir.join("edgewise.toml");
    let config = format!(
        "# Written by `cargo xtask demo` (see edgewise.example.toml). Paths are relative to this file.\n\
         device = \"{DEVICE}\"\n\
         data_dir = \"data\"\n\
         trust_dir = \"trust\"\n\
         tick = \"1m\"\n\n\
         [clock]\n\
         start = \"{start}\"\n\
         speed = {speed:.1}\n\n\
         [local]\n\
         url = \"{}\"\n\n\
         [upstream]\n\
         url = \"{}\"\n\
         stream = \"{STREAM}\"\n\
         create_stream = true\n\n\
         [[plugins]]\n\
         bundle = \"bundles/glucose-monitor.wasm\"\n",
        edge.url(),
        cloud.url()
    );
    std::fs::write(&config_path, config).with_context(|| format!("cannot write {}", config_path.display()))?;
    let sensor_subject = format!("sensors.cgm.{}", recording.sensor_token());
    let pid = |server: &NatsServer| server.pid().map_or("-".to_owned(), |p| p.to_string());
    println!("  local bus  {}  (nats-server, pid {})", edge.url(), pid(&edge));
    println!(
        "  cloud      {}  (nats-server with JetStream in {}, pid {})",
        cloud.url(),
        show(&store),
        pid(&cloud)
    );
    println!(
        "  recording  {} of {}: {} readings, {} to {} UTC, played on {sensor_subject}",
        recording.subject,
        setup.recording_name,
        recording.readings.len(),
        utc(first),
        utc(last)
    );
    println!(
        "  clock      starts at {start}, {speed:.0} times real time (an hour of the recording in {:.2} s)",
        3600.0 / speed
    );
    let log_path = setup.demo_dir.join("edgewise.log");
    println!("  config     {}  (host log: {})", show(&config_path), show(&log_path));

    let local = async_nats::connect(edge.url())
        .await
        .with_context(|| format!("cannot connect to {}", edge.url()))?;
    let alerts = local
        .subscribe(format!("edgewise.{DEVICE}.alerts.>"))
        .await
        .context("cannot subscribe to the alerts")?;
    local.flush().await.context("cannot reach the local bus")?;
    let alerts_seen = Arc::new(AtomicU64::new(0));
    let _alert_printer = Task::new(watch::spawn_alert_printer(alerts, alerts_seen.clone()));

    let log = std::fs::File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut command = Command::new(&setup.edgewise);
    command
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("cannot share the log file")?)
        .stderr(log);
    // Its log goes to a file: no colours.
    command.env("NO_COLOR", "1");
    if std::env::var_os("RUST_LOG").is_none() {
        command.env("RUST_LOG", "info");
    }
    let child = command
        .spawn()
        .with_context(|| format!("cannot run {}", setup.edgewise.display()))?;
    let mut host = Host {
        process: ChildGuard::new("edgewise run", child),
        log: log_path,
    };
    let (clock, took) = wait_for_host(&local, &mut host, first, speed).await?;
    println!();
    say(
        first,
        "device",
        &format!("edgewise run answered its first status request after {took:.1} s; playing the recording"),
    );

    let view = Arc::new(CloudView::default());
    let mut watcher = Task::new(watch::spawn_summary_watcher(cloud.url(), view.clone(), clock));
    let mut publisher = Task::new(tokio::spawn(publish(
        local.clone(),
        sensor_subject.clone(),
        recording.readings.clone(),
        clock,
    )));

    // The outage, a third of the way through.
    host.sleep_until(clock.instant_at(first + span / 3)).await?;
    say(
        clock.now_ms(),
        "outage",
        "stopping the cloud nats-server (SIGTERM); the device goes on, its outputs wait in the outbox",
    );
    drop(watcher);
    cloud.stop().await?;
    let stopped = Instant::now();
    let mut shown = None;
    for report in 1..=OUTAGE_REPORTS {
        host.sleep_until(stopped + OUTAGE * report / OUTAGE_REPORTS).await?;
        let line = host.status(&local).await?.outbox_line();
        say(clock.now_ms(), "outbox", &line);
        shown = Some(line);
    }
    cloud.start_again().await?;
    let restarted = Instant::now();
    say(
        clock.now_ms(),
        "outage",
        &format!(
            "the cloud nats-server is back on {} after {:.1} s",
            cloud.url(),
            stopped.elapsed().as_secs_f64()
        ),
    );
    watcher = Task::new(watch::spawn_summary_watcher(cloud.url(), view.clone(), clock));
    loop {
        let status = host.status(&local).await?;
        if status.outbox() == 0 && status.upstream_connected {
            say(
                clock.now_ms(),
                "outbox",
                &format!(
                    "drained {:.1} s after the restart: the cloud has every output",
                    restarted.elapsed().as_secs_f64()
                ),
            );
            break;
        }
        let line = status.outbox_line();
        if shown.as_ref() != Some(&line) {
            say(clock.now_ms(), "outbox", &line);
            shown = Some(line);
        }
        if restarted.elapsed() > DRAIN_TIMEOUT {
            bail!(
                "the outbox did not drain within {DRAIN_TIMEOUT:?} of the cloud's restart ({}); see {}",
                status.outbox_line(),
                host.log.display()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    let played_by = clock.instant_at(last) + DRAIN_TIMEOUT;
    let played = loop {
        tokio::select! {
            result = publisher.join() => break result??,
            () = tokio::time::sleep(Duration::from_millis(200)) => {
                host.check_running()?;
                if Instant::now() > played_by {
                    bail!("the recording was not played out in time");
                }
            }
        }
    };
    say(
        clock.now_ms(),
        "device",
        "the recording is played out; waiting for the last windows to close and the outbox to empty",
    );

    // Past the last reading's signal-loss, its held windows and its day.
    let next_midnight = last - last.rem_euclid(DAY_MS) + DAY_MS;
    let settle_ms = (last + SETTLE_AFTER_LAST_MS).max(next_midnight + 5 * 60_000);
    host.sleep_until(clock.instant_at(settle_ms) + Duration::from_millis(500))
        .await?;
    let settled = settle(&local, &mut host, played.count).await?;

    host.process.terminate().await?;
    let exit = host
        .process
        .wait_timeout(HOST_STOP_TIMEOUT)
        .await?
        .ok_or_else(|| anyhow!("edgewise run did not exit within {HOST_STOP_TIMEOUT:?} of SIGTERM"))?;
    if exit.code() != Some(0) {
        bail!(
            "edgewise run exited with {exit} after SIGTERM; the end of {}:\n{}",
            host.log.display(),
            host.log_tail(20)
        );
    }
    let log_text = std::fs::read_to_string(&host.log).unwrap_or_default();
    let stopped_line = log_text.lines().find(|l| l.starts_with("edgewise stopped"));
    let final_counts = stopped_line.and_then(FinalCounts::parse);
    say(
        clock.now_ms(),
        "device",
        &format!(
            "edgewise run stopped on SIGTERM, exit code 0: {}",
            stopped_line.unwrap_or("(no final line in its log)")
        ),
    );

    let (stored_alerts, stored_summaries) = watch::stored_upstream(&cloud.url()).await?;
    // Let the consumer show the last daily summary before the totals.
    let deadline = Instant::now() + Duration::from_secs(5);
    while view.summaries() < stored_summaries && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(watcher);

    // The counts when the host stopped (its last line), else its last status.
    let counts = final_counts.unwrap_or(FinalCounts {
        alerts: settled.alerts_out,
        summaries: settled.summaries_out,
        left_alerts: settled.outbox_alerts,
        left_summaries: settled.outbox_summaries,
    });
    let emitted = counts.alerts + counts.summaries;
    let stored = stored_alerts + stored_summaries;
    let left = counts.left_alerts + counts.left_summaries;
    let lost = i128::from(emitted) - i128::from(stored) - i128::from(left);
    let daily = view.daily.load(Ordering::Relaxed);

    println!("\nTotals");
    println!(
        "  readings published                {:>5}   (on {sensor_subject}, at most {} ms after their time)",
        played.count,
        played.max_late.as_millis()
    );
    println!("  readings the plugin received      {:>5}", settled.readings_in);
    println!(
        "  alerts raised                     {:>5}   stored upstream {stored_alerts:>4}   (seen live on the local bus: {})",
        counts.alerts,
        alerts_seen.load(Ordering::Relaxed)
    );
    println!(
        "  summaries emitted                 {:>5}   stored upstream {stored_summaries:>4}   ({daily} daily, {} hourly)",
        counts.summaries,
        counts.summaries.saturating_sub(daily)
    );
    println!("  left in the outbox                {left:>5}");
    println!("  lost: {lost}   (emitted - stored upstream - left in the outbox)");
    if final_counts.is_none() {
        println!("  (the host logged no final counts: the emitted counts are from its last status)");
    }
    if lost != 0 {
        bail!(
            "{lost} outputs lost: {emitted} emitted, {stored} stored in the cloud stream {STREAM}, {left} left in the outbox"
        );
    }
    if settled.readings_in != played.count {
        bail!(
            "{} readings were published but the plugin received {}",
            played.count,
            settled.readings_in
        );
    }
    Ok(())
}

/// Poll the host's status until it answers, as soon as `edgewise run` has
/// started; returns the clock it runs on, and how long it took.
async fn wait_for_host(
    local: &async_nats::Client,
    host: &mut Host,
    start_ms: i64,
    speed: f64,
) -> anyhow::Result<(SimClock, f64)> {
    let begun = Instant::now();
    let subject = watch::status_subject();
    loop {
        let sent = Instant::now();
        let asked = tokio::time::timeout(Duration::from_millis(500), local.request(subject.clone(), "".into())).await;
        if let Ok(Ok(reply)) = asked {
            let received = Instant::now();
            // The host's clock started just before it began answering. If the
            // answer reports the clock, align on it (read about halfway
            // through the round trip).
            let reported = serde_json::from_slice::<Value>(&reply.payload)
                .ok()
                .and_then(|status| status["clock_ms"].as_i64());
            let mut anchor = sent;
            if let Some(clock_ms) = reported {
                let ahead = Duration::from_secs_f64((clock_ms - start_ms).max(0) as f64 / 1000.0 / speed);
                let read_at = sent + (received - sent) / 2;
                anchor = read_at.checked_sub(ahead).unwrap_or(sent);
            }
            let clock = SimClock {
                anchor,
                start_ms,
                speed,
            };
            return Ok((clock, begun.elapsed().as_secs_f64()));
        }
        host.check_running()?;
        if begun.elapsed() > HOST_START_TIMEOUT {
            bail!(
                "edgewise run did not answer on {subject} within {HOST_START_TIMEOUT:?}; the end of {}:\n{}",
                host.log.display(),
                host.log_tail(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publish each reading on `subject` when the clock reaches its time.
async fn publish(
    client: async_nats::Client,
    subject: String,
    readings: Vec<Reading>,
    clock: SimClock,
) -> anyhow::Result<Played> {
    let mut max_late = Duration::ZERO;
    for reading in &readings {
        let due = clock.instant_at(reading.ts_ms);
        tokio::time::sleep_until(due).await;
        max_late = max_late.max(Instant::now().saturating_duration_since(due));
        let payload = format!(r#"{{"ts":{},"value":{},"unit":"mg/dL"}}"#, reading.ts_ms, reading.value);
        client
            .publish(subject.clone(), payload.into())
            .await
            .context("cannot publish a reading on the local bus")?;
    }
    client.flush().await.context("cannot flush the local bus")?;
    Ok(Played {
        count: readings.len() as u64,
        max_late,
    })
}

/// Wait until the host has every reading, an empty outbox, an upstream
/// connection, and the same counts twice in a row; returns that status.
async fn settle(local: &async_nats::Client, host: &mut Host, published: u64) -> anyhow::Result<HostStatus> {
    let deadline = Instant::now() + DRAIN_TIMEOUT;
    let mut previous = None;
    loop {
        let status = host.status(local).await?;
        let counts = (status.readings_in, status.alerts_out, status.summaries_out);
        let quiet = status.outbox() == 0 && status.upstream_connected;
        let late = Instant::now() > deadline;
        // Settled; or settled but short of readings, which the caller reports.
        if quiet && previous == Some(counts) && (status.readings_in >= published || late) {
            return Ok(status);
        }
        if late {
            bail!(
                "the host did not settle within {DRAIN_TIMEOUT:?}: {} readings of {published} received, {}",
                status.readings_in,
                status.outbox_line()
            );
        }
        previous = Some(counts);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The counts of the host's last line: `edgewise stopped after ...: N
/// messages (D dead-lettered), R readings, A alerts, S summaries; outbox
/// holds X alerts and Y summaries for upstream`.
#[derive(Debug, Clone, Copy)]
struct FinalCounts {
    alerts: u64,
    summaries: u64,
    left_alerts: u64,
    left_summaries: u64,
}

impl FinalCounts {
    fn parse(line: &str) -> Option<FinalCounts> {
        let (emitted, left) = line.split_once("outbox holds")?;
        let before = |text: &str, word: &str| -> Option<u64> {
            let words: Vec<&str> = text.split_whitespace().collect();
            let at = words.iter().position(|w| w.trim_end_matches([',', ';']) == word)?;
            words.get(at.checked_sub(1)?)?.parse().ok()
        };
        Some(FinalCounts {
            alerts: before(emitted, "alerts")?,
            summaries: before(emitted, "summaries")?,
            left_alerts: before(left, "alerts")?,
            left_summaries: before(left, "summaries")?,
        })
    }
}
