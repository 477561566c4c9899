//! Recovery time after a day of 100 sensors (issue #14): a device on the
//! JetStream source takes a day of readings (100 sensors, one every five
//! minutes), is killed with SIGKILL once every reading is acknowledged (so
//! committed to its journal), and is started again; the time from the start
//! of the process to the plugin having resumed (restored its last saved
//! state and been given the inputs logged after it again) and taken a new
//! reading. Baseline: the same device started the same way with an empty
//! journal, in the same run.

use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use edgewise_host::input_log::Input;
use edgewise_host::outbox::reset::KEY_FILE;
use edgewise_host::outbox::{FILE_NAME, Outbox, OutboxKey, OutboxLimits};
use edgewise_procs::NatsServer;
use futures::StreamExt;

use super::snapshot::{PER_DAY, SENSORS, one_day};
use crate::device::{Device, PluginEntry, SENSOR_STREAM, Setup, jetstream_server, sensor_stream};
use crate::load::{now_ms, payload};
use crate::stats::median;
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target, number};

/// The row (the "why" section finds it by this name).
pub const ROW: &str = "recovery after kill -9, a day of 100 sensors in the journal: process start to the plugin \
                       resumed and taking readings (`edgewise run`, glucose-monitor, JetStream source); the \
                       target is absolute";
/// The row of what the recovery adds to a start.
pub const ADDED_ROW: &str = "recovery after kill -9, a day of 100 sensors: what the recovery adds to a start (the \
                             row above, figure less baseline in each round, median)";
/// Issue #14's target, absolute: recovery within a second.
pub(super) const TARGET_MS: f64 = 1_000.0;
/// Rounds (each a fresh server and device); medians are reported.
const ROUNDS: usize = 3;
/// The device id.
const ID: &str = "recovery";
/// The plugin.
const PLUGIN: &str = "glucose-monitor";
/// Longest wait for any one phase.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the status is read while waiting for the day to be taken.
const POLL: Duration = Duration::from_millis(20);

/// One start of `edgewise run`, timed from the start of its process.
#[derive(Debug, Clone, Copy)]
pub(super) struct Start {
    /// Until it answered a status request.
    pub(super) ready: Duration,
    /// Until the alert about the new reading arrived: the plugin had resumed
    /// (the worker gives the inputs again before it takes new ones).
    pub(super) resumed: Duration,
    /// Until the host logged that it runs (its plugins started, before it
    /// connects to the bus), by the time of the log line.
    pub(super) running: Option<Duration>,
    /// Until the host logged that the plugin resumed from its saved state and
    /// input log (a recovery only), by the time of the log line.
    pub(super) resumed_logged: Option<Duration>,
}

/// The host's log line when it has started its plugins.
pub(super) const RUNNING_LINE: &str = "Edgewise is running";
/// The host's log line when a plugin has resumed.
pub(super) const RESUMED_LINE: &str = "Plugin resumed from its saved state and input log";

/// One round: a start with an empty journal, then a day, a kill, a recovery.
#[derive(Debug, Clone, Copy)]
struct Round {
    empty: Start,
    recovery: Start,
    /// What the killed device's journal held.
    journal: Journal,
}

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let rounds = ctx.rt.block_on(async {
        let mut rounds = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            rounds.push(one_round(ctx, round).await?);
        }
        anyhow::Ok(rounds)
    })?;
    let (recovery, recovery_runs) = milliseconds(&rounds, |r| r.recovery.resumed);
    let (empty, empty_runs) = milliseconds(&rounds, |r| r.empty.resumed);
    let (recovery_ready, _) = milliseconds(&rounds, |r| r.recovery.ready);
    let (empty_ready, _) = milliseconds(&rounds, |r| r.empty.ready);
    // Per round: the recovery's start less the empty one's, same device.
    let added: Vec<f64> = recovery_runs.iter().zip(&empty_runs).map(|(r, e)| r - e).collect();
    let added_median = median(&added).unwrap_or(f64::NAN);
    let mut details = vec![format!(
        "{} readings a day ({SENSORS} sensors x {PER_DAY}); {ROUNDS} rounds, medians: the plugin resumed and \
         took a new reading {} ms after the process started (runs {}), against {} ms with an empty journal \
         (runs {}); the host answered its first status request after {} and {} ms",
        SENSORS * PER_DAY,
        number(recovery),
        runs(&recovery_runs),
        number(empty),
        runs(&empty_runs),
        number(recovery_ready),
        number(empty_ready),
    )];
    let logged = |at: Option<Duration>| at.map_or("-".to_owned(), |at| number(at.as_secs_f64() * 1e3));
    for (k, round) in rounds.iter().enumerate() {
        details.push(format!(
            "round {}: {}. By the host's log (ms after the spawn): with an empty journal `{RUNNING_LINE}` {}; at \
             the recovery `{RUNNING_LINE}` {}, `{RESUMED_LINE}` {}",
            k + 1,
            round.journal.given_again(),
            logged(round.empty.running),
            logged(round.recovery.running),
            logged(round.recovery.resumed_logged),
        ));
    }
    Ok(Outcome {
        rows: vec![
            Row::measured(
                ROW,
                "the same start with an empty journal",
                Some(empty),
                recovery,
                "ms",
                Target::AtMost(TARGET_MS),
            ),
            Row::measured(ADDED_ROW, "-", None, added_median, "ms", Target::None),
        ],
        details,
    })
}

/// A fresh nats-server and device: killed before its first input and
/// started again (the baseline), then given the day, killed, started again.
async fn one_round(ctx: &Ctx, round: usize) -> anyhow::Result<Round> {
    let mut fresh = Fresh::start(ctx, ID, PLUGIN, PluginEntry::glucose(&ctx.bundles.glucose), round).await?;
    let (jetstream, stream, device) = (&fresh.jetstream, &mut fresh.stream, &mut fresh.device);

    // The day, yesterday: one round of the 100 sensors at a time, as fast
    // as the stream takes them.
    let day = one_day(now_ms() - 2 * 86_400_000);
    for round_of_sensors in day.chunks(SENSORS) {
        let mut acks = Vec::with_capacity(round_of_sensors.len());
        for reading in round_of_sensors {
            acks.push(
                jetstream
                    .publish(
                        format!("sensors.cgm.{}", reading.sensor),
                        payload(reading.timestamp_ms, reading.value),
                    )
                    .await
                    .context("cannot publish a reading")?,
            );
        }
        for ack in acks {
            ack.await.context("the stream did not take a reading")?;
        }
    }
    let total = day.len() as u64 + 1;
    let deadline = Instant::now() + PHASE_TIMEOUT;
    // Every reading taken and acknowledged: each input is in the journal.
    loop {
        let taken = device.plugin_status(PLUGIN).await?.readings_in >= total;
        if taken && unacknowledged(stream).await? == 0 {
            break;
        }
        if Instant::now() > deadline {
            bail!("the day was not taken and acknowledged after {PHASE_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
    }
    let empty = fresh.empty;
    let (journal, recovery) = fresh.recover(ctx, round).await?;
    Ok(Round {
        empty,
        recovery,
        journal,
    })
}

/// A device of its own nats-server (JetStream, the sensor stream, the
/// JetStream source), started once with an empty journal and timed: the
/// baseline of a recovery.
pub(super) struct Fresh {
    /// Kept running while the round lasts.
    _server: NatsServer,
    /// The device's id.
    id: String,
    /// The plugin timed.
    plugin: String,
    /// Publishes the readings.
    pub(super) jetstream: async_nats::jetstream::Context,
    /// The sensor stream (its consumers tell what is acknowledged).
    pub(super) stream: async_nats::jetstream::stream::Stream,
    /// The device, running.
    pub(super) device: Device,
    /// The plugin's alerts on the local bus.
    alerts: async_nats::Subscriber,
    /// Its start with an empty journal.
    pub(super) empty: Start,
}

impl Fresh {
    /// Start the server and the device `id` with `plugin` (`entry`): once to
    /// compile the plugin into the device's cache, killed before any input
    /// (its journal stays empty), then again, timed by a new sensor
    /// `probe-empty-<round>`.
    pub(super) async fn start(
        ctx: &Ctx,
        id: &str,
        plugin: &str,
        entry: PluginEntry,
        round: usize,
    ) -> anyhow::Result<Fresh> {
        let (server, client) = jetstream_server(&ctx.paths.nats_server, &format!("bench-{id}-{round}")).await?;
        let jetstream = async_nats::jetstream::new(client.clone());
        let stream = sensor_stream(&client, -1).await?;
        let setup = Setup {
            jetstream: Some(SENSOR_STREAM),
            ..Setup::default()
        };
        let mut device = Device::start_with(
            id,
            &ctx.paths.work.join(id),
            &ctx.bundles.trust,
            &server.url(),
            &setup,
            &[entry],
        )
        .await?;
        // Its status shows the plugin once it is compiled (and cached).
        device.plugin_status(plugin).await?;
        device.kill();
        let mut alerts = client
            .subscribe(format!("edgewise.{id}.alerts.{plugin}"))
            .await
            .context("cannot subscribe to the alerts")?;
        client.flush().await.context("cannot flush")?;
        let empty = timed_start(&mut device, &jetstream, &mut alerts, &format!("probe-empty-{round}")).await?;
        let status = device.plugin_status(plugin).await?;
        if status.recoveries != 0 || status.readings_in != 1 {
            bail!("the start with an empty journal was not a clean start: {status:?}");
        }
        Ok(Fresh {
            _server: server,
            id: id.to_owned(),
            plugin: plugin.to_owned(),
            jetstream,
            stream,
            device,
            alerts,
            empty,
        })
    }

    /// Kill the device (every input it was given committed: the caller
    /// waits for that), read its journal from a copy, and start it again,
    /// timed by a new sensor `probe-recovery-<round>`; the plugin must have
    /// resumed from its saved state. Then stop it.
    pub(super) async fn recover(mut self, ctx: &Ctx, round: usize) -> anyhow::Result<(Journal, Start)> {
        let device = &mut self.device;
        device.kill();
        let copy = ctx.paths.work.join(format!("{}-copy", self.id));
        let journal = journal(&device.data_dir(), &copy, &self.plugin)?;
        let probe = format!("probe-recovery-{round}");
        let recovery = timed_start(device, &self.jetstream, &mut self.alerts, &probe).await?;
        let status = device.plugin_status(&self.plugin).await?;
        if status.recoveries != 1 || status.state_lost != 0 || status.state != "running" || status.readings_in != 1 {
            bail!("the plugin did not resume from its saved state: {status:?}");
        }
        self.device.stop().await?;
        Ok((journal, recovery))
    }
}

/// The median of `pick` over `rounds`, in milliseconds, and every round's.
pub(super) fn milliseconds<R>(rounds: &[R], pick: impl Fn(&R) -> Duration) -> (f64, Vec<f64>) {
    let samples: Vec<f64> = rounds.iter().map(|r| pick(r).as_secs_f64() * 1e3).collect();
    (median(&samples).unwrap_or(f64::NAN), samples)
}

/// Samples as the notes list them.
pub(super) fn runs(samples: &[f64]) -> String {
    samples.iter().map(|&s| number(s)).collect::<Vec<_>>().join(", ")
}

/// Publish a low reading of a new sensor `sensor` to the stream (the host is
/// down), start the host and time it: until it answers a status request,
/// and until glucose-monitor's alert about that reading arrives.
pub(super) async fn timed_start(
    device: &mut Device,
    jetstream: &async_nats::jetstream::Context,
    alerts: &mut async_nats::Subscriber,
    sensor: &str,
) -> anyhow::Result<Start> {
    jetstream
        .publish(format!("sensors.cgm.{sensor}"), payload(now_ms(), 45.0))
        .await
        .context("cannot publish the new reading")?
        .await
        .context("the stream did not take the new reading")?;
    let spawned_at = time::OffsetDateTime::now_utc();
    let started = Instant::now();
    device.spawn()?;
    let ready = async {
        device.wait_ready().await?;
        anyhow::Ok(started.elapsed())
    };
    let resumed = async {
        let wait = async {
            while let Some(message) = alerts.next().await {
                let alert: serde_json::Value = serde_json::from_slice(&message.payload).unwrap_or_default();
                if alert["sensor"].as_str().is_some_and(|s| s.ends_with(sensor)) {
                    return Ok(started.elapsed());
                }
            }
            bail!("the alert subscription ended")
        };
        tokio::time::timeout(PHASE_TIMEOUT, wait)
            .await
            .with_context(|| format!("no alert about {sensor} within {PHASE_TIMEOUT:?}"))?
    };
    let (ready, resumed) = tokio::join!(ready, resumed);
    let log = device.log();
    Ok(Start {
        ready: ready?,
        resumed: resumed?,
        running: logged_after(&log, RUNNING_LINE, spawned_at),
        resumed_logged: logged_after(&log, RESUMED_LINE, spawned_at),
    })
}

/// When the first line of `log` holding `what` was logged, after `since`:
/// its time stamp (RFC 3339, the first word of each line) less `since`.
fn logged_after(log: &str, what: &str, since: time::OffsetDateTime) -> Option<Duration> {
    let line = log.lines().find(|line| line.contains(what))?;
    let stamp = line.split_whitespace().next()?;
    let at = time::OffsetDateTime::parse(stamp, &time::format_description::well_known::Rfc3339).ok()?;
    Duration::try_from(at - since).ok()
}

/// Messages of `stream` not yet acknowledged by its consumers (pending or
/// delivered and not acknowledged).
pub(super) async fn unacknowledged(stream: &mut async_nats::jetstream::stream::Stream) -> anyhow::Result<u64> {
    let mut consumers = stream.consumers();
    let mut left = 0;
    while let Some(info) = consumers.next().await {
        let info = info.context("cannot read a consumer's state")?;
        left += info.num_pending + info.num_ack_pending as u64;
    }
    Ok(left)
}

/// What a killed device's journal holds of one plugin.
#[derive(Debug, Clone, Copy)]
pub(super) struct Journal {
    /// The last input's position.
    pub(super) inputs: u64,
    /// The saved state's position.
    pub(super) saved_at: u64,
    /// Inputs after it (given again at the recovery).
    pub(super) again: u64,
    /// Readings in them.
    pub(super) readings_again: u64,
    /// The saved state's bytes.
    pub(super) state_bytes: usize,
}

impl Journal {
    /// What was given again, as the notes say it.
    pub(super) fn given_again(&self) -> String {
        format!(
            "the last saved state ({} bytes) was at input {} of {}, so {} inputs ({} readings) were given again",
            self.state_bytes, self.saved_at, self.inputs, self.again, self.readings_again
        )
    }
}

/// The killed device's journal of `plugin`, read from a copy of its outbox
/// (opening the device's own file would recover its write-ahead log before
/// the host does).
pub(super) fn journal(data_dir: &Path, copy: &Path, plugin: &str) -> anyhow::Result<Journal> {
    if copy.exists() {
        std::fs::remove_dir_all(copy).with_context(|| format!("cannot remove {}", copy.display()))?;
    }
    // Readable by this user only, as the host wants a data directory.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(copy)
        .with_context(|| format!("cannot create {}", copy.display()))?;
    for name in [
        KEY_FILE.to_owned(),
        FILE_NAME.to_owned(),
        format!("{FILE_NAME}-wal"),
        format!("{FILE_NAME}-shm"),
    ] {
        let from = data_dir.join(&name);
        if from.exists() {
            std::fs::copy(&from, copy.join(&name)).with_context(|| format!("cannot copy {}", from.display()))?;
        }
    }
    let key = OutboxKey::load_or_create(&copy.join(KEY_FILE)).context("cannot read the outbox key")?;
    let mut outbox = Outbox::open(copy, &key, OutboxLimits::default()).context("cannot open the outbox copy")?;
    let journal = outbox
        .plugin_journal(plugin, 1_000_000, false)
        .context("cannot read the plugin's journal")?;
    let state = journal.state.as_ref().context("no saved state in the journal")?;
    let inputs = journal
        .inputs
        .context("the input log after the saved state is not whole")?;
    let readings = inputs
        .iter()
        .filter_map(|logged| logged.data.as_deref().and_then(|data| Input::decode(data).ok()))
        .map(|input| input.readings() as u64)
        .sum();
    Ok(Journal {
        inputs: journal.last_position,
        saved_at: state.position,
        again: inputs.len() as u64,
        readings_again: readings,
        state_bytes: state.data.len(),
    })
}
