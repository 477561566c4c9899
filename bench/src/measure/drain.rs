//! Outbox drain after an upstream outage (issue #14): a device forwarding to
//! a JetStream server that is down while glucose-monitor makes an alert for
//! each of many new sensors; then the server comes back on the same port
//! and store, and the backlog is timed until the outbox is empty. Target: at
//! least 5x the 500 readings/s of #14's acceptance, so a backlog drains
//! while readings keep coming.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use edgewise_procs::NatsServer;

use crate::device::{Device, PluginEntry, Setup};
use crate::load::{now_ms, payload};
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target, number};

/// New sensors, one low reading each: one urgent-low alert each.
const SENSORS: u64 = 1_000;
/// Readings per sensor, five minutes apart (five hours: alerts repeat every
/// 30 minutes, and hourly summaries close).
const READINGS_PER_SENSOR: u64 = 60;
/// The input rate of #14's acceptance; the target is 5x it.
const INPUT_RATE: f64 = 500.0;
/// How often the status is read while waiting.
const POLL: Duration = Duration::from_millis(20);
/// Longest wait for any one phase.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let work = ctx.paths.work.clone();
    let (backlog, took) = ctx.rt.block_on(async {
        let local = NatsServer::options(&ctx.paths.nats_server)
            .name("bench-drain-local")
            .start()?;
        let mut cloud = NatsServer::options(&ctx.paths.nats_server)
            .name("bench-drain-cloud")
            .jetstream()?
            .start()?;
        let cloud_url = cloud.url();
        let setup = Setup {
            upstream: Some(&cloud_url),
            ..Setup::default()
        };
        let mut device = Device::start_with(
            "drain",
            &work.join("drain"),
            &ctx.bundles.trust,
            &local.url(),
            &setup,
            &[PluginEntry::glucose(&ctx.bundles.glucose)],
        )
        .await?;
        wait(&mut device, "the upstream connected", |s| s.upstream_connected).await?;
        cloud.stop()?;
        // The host must have seen the outage: otherwise its status could
        // still say "connected" when the cloud is back, and the drain's
        // clock would start before the host is connected again.
        wait(&mut device, "the upstream seen down", |s| !s.upstream_connected).await?;
        let client = async_nats::connect(local.url()).await.context("cannot connect")?;
        let start = now_ms() - 24 * 3_600_000;
        for k in 0..READINGS_PER_SENSOR {
            for sensor in 0..SENSORS {
                let ts = start + (k * 300_000) as i64;
                client
                    .publish(format!("sensors.cgm.drain-{sensor}"), payload(ts, 45.0))
                    .await
                    .context("cannot publish a reading")?;
            }
            client.flush().await.context("cannot flush the readings")?;
            // A round (one reading of each sensor) at a time: all 60,000 in
            // one burst would overflow the plugin's queue (4,096 readings),
            // and core NATS ingest drops what does not fit. This measures
            // the drain, not a burst.
            let published = (k + 1) * SENSORS;
            wait(&mut device, "the round taken", |s| {
                s.plugins.iter().any(|p| p.readings_in >= published)
            })
            .await?;
        }
        let total = SENSORS * READINGS_PER_SENSOR;
        let waiting = wait(&mut device, "every reading taken and its outputs stored", |s| {
            let made: u64 = s.plugins.iter().map(|p| p.alerts_out + p.summaries_out).sum();
            s.plugins.iter().any(|p| p.readings_in >= total) && s.outbox.alerts + s.outbox.summaries >= made
        })
        .await?;
        let backlog = waiting.outbox.alerts + waiting.outbox.summaries;
        if backlog == 0 {
            bail!("nothing waited in the outbox");
        }
        cloud.start_again()?;
        let returned = Instant::now();
        wait(&mut device, "the upstream connected again", |s| s.upstream_connected).await?;
        let connected = Instant::now();
        wait(&mut device, "the outbox empty", |s| {
            s.outbox.alerts + s.outbox.summaries == 0
        })
        .await?;
        let (reconnect, took) = (connected - returned, connected.elapsed());
        device.stop().await?;
        anyhow::Ok((backlog, (reconnect, took)))
    })?;
    let (reconnect, took) = took;
    let rate = backlog as f64 / took.as_secs_f64().max(1e-9);
    let whole = backlog as f64 / (reconnect + took).as_secs_f64().max(1e-9);
    Ok(Outcome {
        rows: vec![Row::measured(
            "outbox drain after an upstream outage (from the reconnection to an empty outbox)".to_owned(),
            "the input rate of #14's acceptance",
            Some(INPUT_RATE),
            rate,
            "outputs/s",
            Target::RatioAtLeast(5.0),
        )],
        details: vec![format!(
            "{backlog} outputs waited (glucose-monitor, {SENSORS} sensors x {READINGS_PER_SENSOR} low readings \
             while the cloud was down); the host reconnected {:.2} s after the cloud was back (status polled \
             every {} ms) and emptied the outbox {:.2} s later: {} outputs/s, {} outputs/s counted from the \
             cloud's return",
            reconnect.as_secs_f64(),
            POLL.as_millis(),
            took.as_secs_f64(),
            number(rate),
            number(whole)
        )],
    })
}

/// Read the status until `done` holds: the status then.
async fn wait(
    device: &mut Device,
    what: &str,
    done: impl Fn(&edgewise_host::bus::status::Status) -> bool,
) -> anyhow::Result<edgewise_host::bus::status::Status> {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let status = device.status().await?;
        if done(&status) {
            return Ok(status);
        }
        if Instant::now() > deadline {
            let taken: u64 = status.plugins.iter().map(|p| p.readings_in).sum();
            bail!(
                "not {what} after {PHASE_TIMEOUT:?} ({taken} readings taken, {} dropped by the local client, {} outputs waiting)",
                status.ingest.dropped_by_client,
                status.outbox.alerts + status.outbox.summaries
            );
        }
        tokio::time::sleep(POLL).await;
    }
}
