//! The live run: two nats-servers, `edgewise run` on a simulated clock, the
//! recording played at the pace of that clock, a cloud outage, and the totals.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use edgewise_procs::{Device, NatsServer, RunConfig};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::task::JoinHandle;
use tokio::time::Instant;

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
    pub nats_server: PathBuf,
    pub demo_dir: PathBuf,
    /// The trust directory that accepts the demo key.
    pub trust: PathBuf,
    /// glucose-monitor, signed with the demo key.
    pub glucose_bundle: PathBuf,
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

/// Sleep until `until` (pacing: the outage lasts that long), failing early
/// if the host exits.
async fn sleep_until(host: &mut Device, until: Instant) -> anyhow::Result<()> {
    loop {
        host.check_running()?;
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        tokio::time::sleep_until(until.min(now + Duration::from_millis(200))).await;
    }
}

/// Its status, as far as the demo uses it; if it does not answer, say
/// whether it has exited.
async fn status(host: &mut Device, local: &async_nats::Client) -> anyhow::Result<HostStatus> {
    HostStatus::from_json(&host.status(local).await?)
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
    let edge = NatsServer::options(&setup.nats_server).name("edge").start()?;
    let mut cloud = NatsServer::options(&setup.nats_server)
        .name("cloud")
        .jetstream_in(&store)
        .start()?;
    let (first, last) = (recording.first_ms(), recording.last_ms());
    let span = last - first;
    let speed = (span as f64 / 1000.0 / PLAY_SECONDS).round().max(1.0);
    let start = OffsetDateTime::from_unix_timestamp_nanos(i128::from(first) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .context("the recording's first time cannot be written in RFC 3339")?;
    // Paths relative to the configuration file, as an operator writes them.
    let relative = |path: &Path| path.strip_prefix(&setup.demo_dir).unwrap_or(path).display().to_string();
    let config = RunConfig {
        device: DEVICE.to_owned(),
        trust_dir: relative(&setup.trust),
        tick: Some("1m".to_owned()),
        local_url: edge.url(),
        upstream: Some((cloud.url(), STREAM.to_owned())),
        rest: format!(
            "[clock]\nstart = \"{start}\"\nspeed = {speed:.1}\n\n[[plugins]]\nbundle = \"{}\"\n",
            relative(&setup.glucose_bundle)
        ),
    };
    let mut host = Device::new(&setup.demo_dir, DEVICE);
    host.write_config(&format!(
        "# Written by `cargo xtask demo` (see edgewise.example.toml). Paths are relative to this file.\n{}",
        config.to_toml()
    ))?;
    let config_path = host.config_path();
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
    println!(
        "  config     {}  (host log: {})",
        show(&config_path),
        show(&host.log_path())
    );

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

    let mut command = host.run_command();
    // Its log goes to a file: `info` unless the caller chose.
    command.env(
        "RUST_LOG",
        std::env::var_os("RUST_LOG").unwrap_or_else(|| "info".into()),
    );
    host.spawn_command(command)?;
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
    sleep_until(&mut host, clock.instant_at(first + span / 3)).await?;
    say(
        clock.now_ms(),
        "outage",
        "stopping the cloud nats-server (SIGTERM); the device goes on, its outputs wait in the outbox",
    );
    drop(watcher);
    cloud.stop()?;
    let stopped = Instant::now();
    let mut shown = None;
    for report in 1..=OUTAGE_REPORTS {
        sleep_until(&mut host, stopped + OUTAGE * report / OUTAGE_REPORTS).await?;
        let line = status(&mut host, &local).await?.outbox_line();
        say(clock.now_ms(), "outbox", &line);
        shown = Some(line);
    }
    cloud.start_again()?;
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
        let status = status(&mut host, &local).await?;
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
                host.log_path().display()
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
    let settled = settle(&local, &mut host, played.count, settle_ms, clock.instant_at(settle_ms)).await?;

    let stopped = host.stop(HOST_STOP_TIMEOUT).await?;
    if stopped.code != Some(0) {
        bail!(
            "edgewise run exited with {:?} after SIGTERM; the end of {}:\n{}",
            stopped.code,
            host.log_path().display(),
            host.log_tail()
        );
    }
    // The counts when the host stopped: its final status (`--summary-json`).
    let summary = stopped
        .summary
        .with_context(|| format!("edgewise run wrote no final status; see {}", host.log_path().display()))?;
    let counts = HostStatus::from_json(&summary)?;
    say(
        clock.now_ms(),
        "device",
        &format!(
            "edgewise run stopped on SIGTERM, exit code 0: {} readings, {} alerts, {} summaries; {}",
            counts.readings_in,
            counts.alerts_out,
            counts.summaries_out,
            counts.outbox_line()
        ),
    );

    let (stored_alerts, stored_summaries) = watch::stored_upstream(&cloud.url()).await?;
    // Let the consumer show the last daily summary before the totals.
    let deadline = Instant::now() + Duration::from_secs(5);
    while view.summaries() < stored_summaries && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(watcher);

    let emitted = counts.alerts_out + counts.summaries_out;
    let stored = stored_alerts + stored_summaries;
    let left = counts.outbox();
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
        counts.alerts_out,
        alerts_seen.load(Ordering::Relaxed)
    );
    println!(
        "  summaries emitted                 {:>5}   stored upstream {stored_summaries:>4}   ({daily} daily, {} hourly)",
        counts.summaries_out,
        counts.summaries_out.saturating_sub(daily)
    );
    println!("  left in the outbox                {left:>5}");
    println!("  lost: {lost}   (emitted - stored upstream - left in the outbox)");
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
    host: &mut Device,
    start_ms: i64,
    speed: f64,
) -> anyhow::Result<(SimClock, f64)> {
    let begun = Instant::now();
    let status = host.wait_ready(local, HOST_START_TIMEOUT).await?;
    let received = Instant::now();
    // The host's clock started just before it began answering. If the answer
    // reports the clock, align on it (read within a round trip of now).
    let anchor = match status["clock_ms"].as_i64() {
        Some(clock_ms) => {
            let ahead = Duration::from_secs_f64((clock_ms - start_ms).max(0) as f64 / 1000.0 / speed);
            received.checked_sub(ahead).unwrap_or(received)
        }
        None => received,
    };
    let clock = SimClock {
        anchor,
        start_ms,
        speed,
    };
    Ok((clock, begun.elapsed().as_secs_f64()))
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

/// Wait until the host's clock has reached `settle_ms` and the host has
/// every reading, an empty outbox, an upstream connection, and the same counts
/// twice in a row; returns that status. `due` is when the clock should reach
/// `settle_ms`.
async fn settle(
    local: &async_nats::Client,
    host: &mut Device,
    published: u64,
    settle_ms: i64,
    due: Instant,
) -> anyhow::Result<HostStatus> {
    let deadline = due.max(Instant::now()) + DRAIN_TIMEOUT;
    let mut previous = None;
    loop {
        let status = status(host, local).await?;
        let counts = (status.readings_in, status.alerts_out, status.summaries_out);
        let past = status.clock_ms.is_none_or(|clock_ms| clock_ms >= settle_ms);
        let quiet = past && status.outbox() == 0 && status.upstream_connected;
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
        // Polling the status: "the same counts twice" is 300 ms apart.
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
