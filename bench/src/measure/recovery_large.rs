//! Recovery after kill -9 at the worst the snapshot cadence allows: a
//! plugin with a large state (glucose-forecast serving as many sensors as
//! its manifest allows, ids of the longest the bus takes, a reading a
//! minute: about 9 MB) is saved only once the inputs since hold a quarter
//! of its bytes, so a recovery may have to give thousands of inputs again.
//! The device is killed a 32nd of the cadence's period before its next save
//! (found by watching the status's `snapshots_saved`), and started again:
//! the time from the start of the process to the plugin having resumed and
//! taken a new reading, against the same start with an empty journal.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::recovery::{
    Fresh, Journal, RESUMED_LINE, RUNNING_LINE, Start, TARGET_MS, milliseconds, runs, unacknowledged,
};
use crate::device::{Device, PluginEntry};
use crate::load::{now_ms, payload};
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target, number};

/// The row.
pub const ROW: &str = "recovery after kill -9 at the snapshot cadence's worst: a 9 MB state (glucose-forecast, \
                       998 sensors, 1-minute readings) killed just before its next save, process start to the \
                       plugin resumed and taking readings; the target is absolute";
/// Rounds (each a fresh server and device); medians are reported.
const ROUNDS: usize = 3;
/// The device id.
const ID: &str = "recovery-large";
/// The plugin.
const PLUGIN: &str = "glucose-forecast";
/// Sensors: the manifest's `max_sensors` (1000) less the two new sensors
/// each round's starts are timed by.
const SENSORS: usize = 998;
/// Length of each sensor id (`cgm.` and the rest), the longest the bus takes.
const ID_BYTES: usize = 256;
/// The warm-up: an hour of readings, a minute apart (a sensor's state stops
/// growing after an hour).
const WARM_MINUTES: usize = 60;
/// How far short of the next save the device is killed, as a part of the
/// period: one period differs from the next by up to about 1.5% (the ticks
/// between readings are inputs too, and the state's size moves a little),
/// and the status counts a save once it is committed, a few inputs late.
const MARGIN_PART: u64 = 32;
/// Longest wait for any one phase.
const PHASE_TIMEOUT: Duration = Duration::from_secs(300);

/// One round.
#[derive(Debug, Clone, Copy)]
struct Round {
    empty: Start,
    recovery: Start,
    /// One-reading inputs from one save to the next (the cadence's period).
    period: u64,
    /// What the killed device's journal held.
    journal: Journal,
}

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let bundle = ctx.bundles.forecast(&ctx.paths)?;
    let rounds = ctx.rt.block_on(async {
        let mut rounds = Vec::with_capacity(ROUNDS);
        for round in 0..ROUNDS {
            rounds.push(one_round(ctx, &bundle, round).await?);
        }
        anyhow::Ok(rounds)
    })?;
    let (recovery, recovery_runs) = milliseconds(&rounds, |r| r.recovery.resumed);
    let (empty, empty_runs) = milliseconds(&rounds, |r| r.empty.resumed);
    let mut details = vec![format!(
        "{SENSORS} sensors with {ID_BYTES}-byte ids, warmed by {WARM_MINUTES} minutes of 1-minute readings, then \
         one reading per input; {ROUNDS} rounds, medians: the plugin resumed and took a new reading {} ms after \
         the process started (runs {}), against {} ms with an empty journal (runs {})",
        number(recovery),
        runs(&recovery_runs),
        number(empty),
        runs(&empty_runs),
    )];
    let logged = |at: Option<Duration>| at.map_or("-".to_owned(), |at| number(at.as_secs_f64() * 1e3));
    for (k, round) in rounds.iter().enumerate() {
        details.push(format!(
            "round {}: the state was saved every {} one-reading inputs; {}. By the host's log (ms after the \
             spawn): `{RUNNING_LINE}` {}, `{RESUMED_LINE}` {}",
            k + 1,
            round.period,
            round.journal.given_again(),
            logged(round.recovery.running),
            logged(round.recovery.resumed_logged),
        ));
    }
    Ok(Outcome {
        rows: vec![Row::measured(
            ROW,
            "the same start with an empty journal",
            Some(empty),
            recovery,
            "ms",
            Target::AtMost(TARGET_MS),
        )],
        details,
    })
}

/// The sensor id of sensor `k`, [`ID_BYTES`] long.
fn sensor(k: usize) -> String {
    let id = format!("cgm.patient-{k:04}-");
    format!("{id}{}", "x".repeat(ID_BYTES - id.len()))
}

/// A glucose value of sensor `k` at minute `minute`: slow waves, never low.
fn glucose(k: usize, minute: usize) -> f64 {
    let angle = (minute as f64 / 240.0 + k as f64 / SENSORS as f64) * std::f64::consts::TAU;
    (150.0 + 50.0 * angle.sin()).round()
}

/// A fresh nats-server and device: killed before its first input and
/// started again (the baseline); warmed, fed single readings until it is
/// about to save its state, killed, started again.
async fn one_round(ctx: &Ctx, bundle: &std::path::Path, round: usize) -> anyhow::Result<Round> {
    let mut fresh = Fresh::start(ctx, ID, PLUGIN, PluginEntry::forecast(bundle), round).await?;
    let (jetstream, stream, device) = (&fresh.jetstream, &mut fresh.stream, &mut fresh.device);

    // Minutes are counted from a start far enough back that every reading
    // is in the past.
    let start_ms = now_ms() - 2 * 86_400_000;
    let at = |minute: usize| start_ms + minute as i64 * 60_000;
    let ids: Vec<String> = (0..SENSORS).map(sensor).collect();
    // Taken before the singles: the probe of the empty start and the warm-up.
    let warm = 1 + (SENSORS * WARM_MINUTES) as u64;
    // The warm-up, a minute of every sensor at a time, as fast as the
    // stream takes it.
    for minute in 0..WARM_MINUTES {
        let mut acks = Vec::with_capacity(SENSORS);
        for (k, id) in ids.iter().enumerate() {
            acks.push(
                jetstream
                    .publish(format!("sensors.{id}"), payload(at(minute), glucose(k, minute)))
                    .await
                    .context("cannot publish a reading")?,
            );
        }
        for ack in acks {
            ack.await.context("the stream did not take a reading")?;
        }
    }
    wait_taken(device, warm).await?;

    // Then one reading per input: each published once the last is taken.
    let mut next = 0usize;
    let mut single = async |device: &mut Device| -> anyhow::Result<u64> {
        let (k, minute) = (next % SENSORS, WARM_MINUTES + next / SENSORS);
        next += 1;
        let taken = warm + next as u64;
        jetstream
            .publish(format!("sensors.{}", ids[k]), payload(at(minute), glucose(k, minute)))
            .await
            .context("cannot publish a reading")?
            .await
            .context("the stream did not take a reading")?;
        wait_taken(device, taken).await?;
        Ok(device.plugin_status(PLUGIN).await?.snapshots_saved)
    };
    // To a save (the cadence's phase), to the next (its period), then to
    // just short of the one after.
    let saved = device.plugin_status(PLUGIN).await?.snapshots_saved;
    while single(device).await? == saved {}
    let mut period: u64 = 0;
    loop {
        period += 1;
        if single(device).await? > saved + 1 {
            break;
        }
    }
    for _ in 0..period - period / MARGIN_PART {
        single(device).await?;
    }
    let deadline = Instant::now() + PHASE_TIMEOUT;
    while unacknowledged(stream).await? != 0 {
        if Instant::now() > deadline {
            bail!("the readings were not all acknowledged after {PHASE_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status = device.plugin_status(PLUGIN).await?;
    if status.snapshots_saved != saved + 2 {
        bail!("the state was saved again before the kill: {status:?}");
    }
    let empty = fresh.empty;
    let (journal, recovery) = fresh.recover(ctx, round).await?;
    Ok(Round {
        empty,
        recovery,
        period,
        journal,
    })
}

/// Wait until the plugin has taken `readings` readings.
async fn wait_taken(device: &mut Device, readings: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    while device.plugin_status(PLUGIN).await?.readings_in < readings {
        if Instant::now() > deadline {
            bail!("{readings} readings were not taken after {PHASE_TIMEOUT:?}");
        }
        tokio::task::yield_now().await;
    }
    Ok(())
}
