//! Host CPU of a device whose sensors have gone quiet (issue #13): two
//! `edgewise run`s side by side, one with glucose-monitor 0.2 (the current
//! bundle), one with the frozen 0.1 bundle, each given one reading for each
//! of 100 sensors and then nothing; the CPU time of each host process over
//! the same fixed window once the readings are in, scaled to an hour.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use edgewise_procs::NatsServer;

use crate::cpu;
use crate::device::{Device, PluginEntry};
use crate::load::{now_ms, payload};
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target, number};

/// Sensors that each report once.
const SENSORS: u64 = 100;
/// The idle window measured: a whole number of the host's 5 s ticks.
const WINDOW: Duration = Duration::from_secs(25);
/// How long the readings may take to reach the plugin.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Between two status requests while waiting for the readings.
const POLL: Duration = Duration::from_millis(20);
/// The plugin's name, in the status and (cut to 15 bytes) its thread's.
const PLUGIN: &str = "glucose-monitor";
/// The name of the plugin's thread, as `/proc` gives it.
const PLUGIN_THREAD: &str = "plugin-glucose-";
const HOUR: f64 = 3600.0;

/// The CPU one idle device used.
struct Idle {
    /// The whole process over the window, ns, at clock-tick resolution
    /// (10 ms: a few ticks in an idle window; the notes only).
    total_ns: u64,
    /// Its live threads by name, ns.
    threads: Vec<(String, u64)>,
    /// The window's wall time.
    wall: Duration,
}

impl Idle {
    /// CPU-seconds per hour of `ns` over the window.
    fn per_hour(&self, ns: u64) -> f64 {
        ns as f64 / 1e9 / self.wall.as_secs_f64().max(1e-9) * HOUR
    }

    /// Every live thread's CPU over the window, ns (exact: the scheduler's
    /// run time; no thread of an idle host exits).
    fn threads_ns(&self) -> u64 {
        self.threads.iter().map(|(_, ns)| ns).sum()
    }

    /// The plugin thread's CPU over the window, ns.
    fn plugin_ns(&self) -> u64 {
        self.threads
            .iter()
            .filter(|(name, _)| name == PLUGIN_THREAD)
            .map(|(_, ns)| ns)
            .sum()
    }

    /// Every thread's CPU-seconds per hour, for the notes.
    fn by_thread(&self) -> String {
        let mut threads = self.threads.clone();
        threads.sort_by_key(|(_, ns)| std::cmp::Reverse(*ns));
        threads
            .iter()
            .map(|(name, ns)| format!("{name} {}", number(self.per_hour(*ns))))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let (frozen, frozen_trust) = ctx.paths.frozen_v01();
    let work = ctx.paths.work.clone();
    let (v02, v01) = ctx.rt.block_on(async {
        let server = NatsServer::options(&ctx.paths.nats_server).name("bench-idle").start()?;
        let url = server.url();
        let mut v02 = Device::start_as(
            "idle-v02",
            &work.join("idle-v02"),
            &ctx.bundles.trust,
            &url,
            &[PluginEntry::glucose(&ctx.bundles.glucose)],
        )
        .await?;
        let mut v01 = Device::start_as(
            "idle-v01",
            &work.join("idle-v01"),
            &frozen_trust,
            &url,
            &[PluginEntry::glucose(&frozen)],
        )
        .await?;
        let [v02_idle, v01_idle] = idle_cpu(&url, [&mut v02, &mut v01]).await?;
        v02.stop().await?;
        v01.stop().await?;
        anyhow::Ok((v02_idle, v01_idle))
    })?;
    let row = |name: String, cpu: fn(&Idle) -> u64| {
        Row::measured(
            name,
            "a device beside it, same window: glucose-monitor 0.1 (the frozen bundle)",
            Some(v01.per_hour(cpu(&v01))),
            v02.per_hour(cpu(&v02)),
            "CPU-s/hour",
            Target::None,
        )
    };
    Ok(Outcome {
        rows: vec![
            row(
                format!("host CPU per hour, {SENSORS} idle sensors (`edgewise run`, glucose-monitor 0.2)"),
                Idle::threads_ns,
            ),
            row(
                format!("plugin thread CPU per hour, {SENSORS} idle sensors (glucose-monitor 0.2)"),
                Idle::plugin_ns,
            ),
        ],
        details: vec![
            format!(
                "window: {:.1} s of wall time; the processes as `/proc/<pid>/stat` counts them (at 10 ms clock \
                 ticks, coarse over an idle window): 0.2 {}, 0.1 {} CPU-s/hour",
                v02.wall.as_secs_f64(),
                number(v02.per_hour(v02.total_ns)),
                number(v01.per_hour(v01.total_ns)),
            ),
            format!("0.2 by thread, CPU-s/hour: {}", v02.by_thread()),
            format!("0.1 by thread, CPU-s/hour: {}", v01.by_thread()),
        ],
    })
}

/// Give the devices (both subscribed to `sensors.cgm.>`) one reading for
/// each of [`SENSORS`] sensors, wait until their status shows them all
/// delivered to the plugin, then measure their CPU over one and the same
/// [`WINDOW`] (so that whatever else the machine does weighs on both).
async fn idle_cpu(url: &str, mut devices: [&mut Device; 2]) -> anyhow::Result<[Idle; 2]> {
    let client = async_nats::connect(url)
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let ts = now_ms();
    for sensor in 0..SENSORS {
        client
            .publish(format!("sensors.cgm.idle-{sensor}"), payload(ts, 120.0))
            .await
            .context("cannot publish a reading")?;
    }
    client.flush().await.context("cannot flush the readings")?;
    let deadline = Instant::now() + DELIVERY_TIMEOUT;
    for device in devices.iter_mut() {
        loop {
            let delivered = device.readings_in(PLUGIN).await?;
            if delivered >= SENSORS {
                break;
            }
            if Instant::now() > deadline {
                bail!("after {DELIVERY_TIMEOUT:?}, {PLUGIN} had {delivered} of {SENSORS} readings");
            }
            tokio::time::sleep(POLL).await;
        }
    }
    let pids = devices
        .iter()
        .map(|device| device.pid().context("edgewise run is not running"))
        .collect::<anyhow::Result<Vec<u32>>>()?;
    let before = pids
        .iter()
        .map(|pid| cpu::Snapshot::take(*pid))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let started = Instant::now();
    tokio::time::sleep(WINDOW).await;
    let after = pids
        .iter()
        .map(|pid| cpu::Snapshot::take(*pid))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let wall = started.elapsed();
    for device in devices.iter_mut() {
        let delivered = device.readings_in(PLUGIN).await?;
        if delivered != SENSORS {
            bail!("{PLUGIN} got {delivered} readings, {SENSORS} were sent");
        }
    }
    let idle = |i: usize| -> anyhow::Result<Idle> {
        let (after, before) = after.get(i).zip(before.get(i)).context("a CPU snapshot is missing")?;
        let usage = after.since(before);
        Ok(Idle {
            total_ns: usage.total_ns,
            threads: usage.threads,
            wall,
        })
    };
    Ok([idle(0)?, idle(1)?])
}
