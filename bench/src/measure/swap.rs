//! Hot swap while readings flow (issue #15): a device deployed from the
//! cloud's buckets gets glucose-monitor 1.0.0, then, while readings arrive
//! at 1,000/s, one new version after the other; each swap reports how long
//! the plugin's input waited (`pause_us`), and once the readings stop every
//! one of them must have reached the plugin.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use edgewise_host::bus::status::PluginStatus;
use edgewise_host::deploy::Cloud;
use edgewise_host::deploy::model::{self, Deployment, Phase};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::device::{Device, Setup, jetstream_server};
use crate::load::{CgmTraffic, Traffic, now_ms};
use crate::stats::{percentile, sorted};
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target, number};

/// Swaps made while the readings flow (versions 2.0.0 to `SWAPS + 1`.0.0).
const SWAPS: usize = 12;
/// Readings per second published during the swaps.
const RATE: f64 = 1_000.0;
/// The device id.
const ID: &str = "swap";
/// The plugin.
const PLUGIN: &str = "glucose-monitor";
/// The device's `[deploy]` table: its own local server's buckets, a short
/// probation (each swap waits for the previous one to be healthy), resync
/// and report period.
const DEPLOY: &str = "probation = \"1s\"\nresync = \"2s\"\nreport_every = \"1s\"\n";
/// The traffic plays hours of readings per second, from now on: the plugin
/// must take readings far ahead of its clock (as in every live measurement).
const CONFIG: &[(&str, &str)] = &[("max_ahead", "87600000h")];
/// Longest wait for a deployment to end, or the readings to arrive.
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the report and the status are read while waiting.
const POLL: Duration = Duration::from_millis(20);
/// After the publisher stopped: the readings have all arrived once
/// `readings_in` has not moved for this long.
const QUIET: Duration = Duration::from_secs(2);

/// The pause row (the p50).
const PAUSE_ROW: &str = "hot swap: pause of a plugin's readings (p50)";
/// The pause row (the max).
const PAUSE_MAX_ROW: &str = "hot swap: pause of a plugin's readings (max)";

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let bundles = (1..=SWAPS + 1)
        .map(|major| {
            let path = ctx.bundles.glucose_as(&ctx.paths, &format!("{major}.0.0"))?;
            std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let swaps = ctx.rt.block_on(swap_while_readings_flow(ctx, &bundles))?;
    let pauses_ms: Vec<f64> = swaps.pauses_us.iter().map(|&us| us as f64 / 1e3).collect();
    let ordered = sorted(&pauses_ms);
    let p50 = percentile(&ordered, 50.0).context("no swap timed")?;
    let max = percentile(&ordered, 100.0).context("no swap timed")?;
    let lost = swaps.published.saturating_sub(swaps.taken);
    let status = &swaps.status;
    let sensors = ctx
        .hall2018
        .readings
        .iter()
        .map(|r| r.sensor.as_str())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let runs = pauses_ms.iter().map(|&ms| number(ms)).collect::<Vec<_>>().join(", ");
    Ok(Outcome {
        rows: vec![
            Row::measured(PAUSE_ROW, "-", None, p50, "ms", Target::None),
            Row::measured(PAUSE_MAX_ROW, "-", None, max, "ms", Target::None),
            Row::measured(
                format!(
                    "hot swap: readings lost over {} swaps at {}/s",
                    swaps.pauses_us.len(),
                    number(RATE)
                ),
                "-",
                None,
                lost as f64,
                "readings",
                Target::AtMost(0.0),
            ),
        ],
        details: vec![
            format!(
                "{} swaps of glucose-monitor (2.0.0 to {}.0.0), each pushed once the previous one was healthy; \
                 pause of each swap in ms, in order: {runs}; each swap took {} s from the push to healthy \
                 (median, with the 1 s probation)",
                swaps.pauses_us.len(),
                SWAPS + 1,
                number(swaps.push_to_healthy_s),
            ),
            format!(
                "{} readings of {sensors} sensors published over {} s ({}/s); the host received {} and \
                 dead-lettered {}; glucose-monitor took {} (lost {lost}, taken more than published {}), dropped {}, \
                 failed {} calls, was restarted {} times; it ran {} at the end",
                number(swaps.published as f64),
                number(swaps.publish_s),
                number(swaps.published as f64 / swaps.publish_s.max(1e-9)),
                number(swaps.ingested as f64),
                swaps.deadlettered,
                number(swaps.taken as f64),
                swaps.taken.saturating_sub(swaps.published),
                status.readings_dropped,
                status.errors,
                status.restarts,
                status.version,
            ),
        ],
    })
}

/// What the swaps did.
struct Swaps {
    /// `pause_us` of each swap, in order.
    pauses_us: Vec<u64>,
    /// Median time from a push to its deployment healthy, in seconds.
    push_to_healthy_s: f64,
    /// Readings published while swapping.
    published: u64,
    /// For how long, in seconds.
    publish_s: f64,
    /// Messages the host received (`ingest.messages`).
    ingested: u64,
    /// Of them, dead-lettered.
    deadlettered: u64,
    /// Readings the plugin took while and after they were published.
    taken: u64,
    /// The plugin's status at the end.
    status: PluginStatus,
}

/// Start a nats-server with JetStream and a device deployed from its
/// buckets, deploy `bundles[0]`, then publish readings while deploying each
/// of the others in turn; count what reached the plugin.
async fn swap_while_readings_flow(ctx: &Ctx, bundles: &[Vec<u8>]) -> anyhow::Result<Swaps> {
    let (server, client) = jetstream_server(&ctx.paths.nats_server, "bench-swap").await?;
    let url = server.url();
    let cloud = Cloud::new(client.clone(), None);
    cloud
        .ensure_buckets()
        .await
        .context("cannot create the deployment buckets")?;
    let setup = Setup {
        deploy: Some(DEPLOY),
        ..Setup::default()
    };
    let mut device =
        Device::start_with(ID, &ctx.paths.work.join("swap"), &ctx.bundles.trust, &url, &setup, &[]).await?;
    let key = model::device_key(ID);
    let (first, others) = bundles.split_first().context("no bundle to deploy")?;
    deploy(&cloud, &key, first).await?;
    let before = device.plugin_status(PLUGIN).await?;

    let publisher = Publisher::start(&url, CgmTraffic::new(&ctx.hall2018, now_ms())).await?;
    let mut pauses_us = Vec::with_capacity(others.len());
    let mut push_to_healthy = Vec::with_capacity(others.len());
    for bundle in others {
        let pushed = Instant::now();
        let deployment = deploy(&cloud, &key, bundle).await?;
        push_to_healthy.push(pushed.elapsed().as_secs_f64());
        pauses_us.push(
            deployment
                .pause_us
                .with_context(|| format!("swap to {} reported no pause", deployment.version))?,
        );
        if publisher.is_finished() {
            bail!("the publisher stopped during the swaps");
        }
    }
    let (published, publish_s) = publisher.stop().await?;

    // Every reading published has been received or lost once the count of
    // readings taken stops moving (or reaches the count published).
    let deadline = Instant::now() + PHASE_TIMEOUT;
    let mut last = device.readings_in(PLUGIN).await?;
    let mut quiet_since = Instant::now();
    while last.saturating_sub(before.readings_in) < published && quiet_since.elapsed() < QUIET {
        if Instant::now() > deadline {
            bail!("the readings were still arriving after {PHASE_TIMEOUT:?}");
        }
        tokio::time::sleep(POLL).await;
        let now = device.readings_in(PLUGIN).await?;
        if now != last {
            last = now;
            quiet_since = Instant::now();
        }
    }
    let host = device.status().await?;
    let status = device.plugin_status(PLUGIN).await?;
    device.stop().await?;
    Ok(Swaps {
        pauses_us,
        push_to_healthy_s: crate::stats::median(&push_to_healthy).unwrap_or(f64::NAN),
        published,
        publish_s,
        ingested: host.ingest.messages,
        deadlettered: host.ingest.deadlettered,
        taken: status.readings_in.saturating_sub(before.readings_in),
        status,
    })
}

/// Push `bundle` as glucose-monitor to `key`, as `edgewise push` does
/// (store the bundle, then write the desired set with compare-and-set), and
/// wait until the device reports it healthy: its deployment.
async fn deploy(cloud: &Cloud, key: &str, bundle: &[u8]) -> anyhow::Result<Deployment> {
    let config: BTreeMap<String, String> = CONFIG.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let generation = cloud
        .push_plugin(key, PLUGIN, bundle, "", config, "edgewise-bench", crate::load::now_ms())
        .await
        .context("cannot push the bundle")?;
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let report = cloud.report_of(ID).await.context("cannot read the device's report")?;
        let deployment = report
            .as_ref()
            .and_then(|r| r.plugins.get(PLUGIN))
            .and_then(|p| p.deployment.clone());
        match deployment {
            Some(d) if d.generation == generation && d.phase == Phase::Healthy => return Ok(d),
            Some(d) if d.generation == generation && d.phase.is_final() => bail!(
                "generation {generation} ended {}: {}",
                d.phase.name(),
                d.reason.unwrap_or_default()
            ),
            _ if Instant::now() > deadline => {
                bail!("generation {generation} not healthy after {PHASE_TIMEOUT:?}: {report:?}")
            }
            _ => tokio::time::sleep(POLL).await,
        }
    }
}

/// Readings published at [`RATE`] on a connection of its own, in 1 ms
/// steps, until stopped.
struct Publisher {
    stop: Arc<AtomicBool>,
    task: JoinHandle<anyhow::Result<(u64, f64)>>,
}

impl Publisher {
    async fn start(url: &str, traffic: CgmTraffic) -> anyhow::Result<Publisher> {
        let client = async_nats::connect(url)
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let started = Instant::now();
            let mut ticks = tokio::time::interval(Duration::from_millis(1));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut sent = 0u64;
            while !stopped.load(Ordering::Relaxed) {
                ticks.tick().await;
                // Behind after a stall: catch up, as sensors that buffered would.
                let due = (started.elapsed().as_secs_f64() * RATE) as u64;
                for k in sent..due {
                    let (subject, payload) = traffic.message(k);
                    client.publish(subject, payload).await.context("cannot publish")?;
                }
                sent = sent.max(due);
            }
            client.flush().await.context("cannot flush the publisher")?;
            Ok((sent, started.elapsed().as_secs_f64()))
        });
        Ok(Publisher { stop, task })
    }

    fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stop: the readings published and for how long, in seconds.
    async fn stop(self) -> anyhow::Result<(u64, f64)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.context("the publisher panicked")?
    }
}
