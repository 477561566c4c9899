//! Reading-to-local-alert latency of `edgewise run` against a bare NATS
//! echo hop (a process that republishes each reading), at 1,000 and 10,000
//! readings/s, with a publisher that sleeps until each reading is due.

use std::time::Duration;

use edgewise_procs::NatsServer;

use crate::device::{Device, PluginEntry};
use crate::disk::DiskProbe;
use crate::echo::{Echo, Hop};
use crate::latency::{self, Answer, Latency, Plan};
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target};

/// DESIGN: p50 and p99 within 1.5x of the echo hop.
const TARGET: f64 = 1.5;

/// The rates and how long each is measured.
pub const PLANS: [Plan; 2] = [
    Plan {
        rate: 1_000.0,
        warmup: Duration::from_secs(1),
        measure: Duration::from_secs(20),
    },
    Plan {
        rate: 10_000.0,
        warmup: Duration::from_secs(1),
        measure: Duration::from_secs(5),
    },
];

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let results = ctx.rt.block_on(async {
        let server = NatsServer::options(&ctx.paths.nats_server).name("bench").start()?;
        let url = server.url();
        let mut results = Vec::new();
        for plan in PLANS {
            tracing::info!(rate = plan.rate, "latency: bare NATS echo hop");
            let echo = Echo::start(&ctx.paths.bench, &url, Hop::Direct).await?;
            let bare = latency::measure(&url, Answer::Echo, plan).await?;
            drop(echo);
            tracing::info!(rate = plan.rate, "latency: echo through a worker thread");
            let echo = Echo::start(&ctx.paths.bench, &url, Hop::WorkerThread).await?;
            let threaded = latency::measure(&url, Answer::Echo, plan).await?;
            drop(echo);
            tracing::info!(rate = plan.rate, "latency: edgewise run");
            let host = host_latency(ctx, &url, plan, false).await?;
            results.push((plan, bare, threaded, host));
        }
        anyhow::Ok(results)
    })?;
    let mut rows = Vec::new();
    let mut details = Vec::new();
    for (plan, bare, threaded, host) in &results {
        if plan.rate == 1_000.0 {
            ctx.shared.alone_latency = Some(*host);
        }
        rows.extend(rows_for(plan.rate, bare, host, "bare NATS echo hop", "", true));
        rows.extend(rows_for(
            plan.rate,
            bare,
            threaded,
            "bare NATS echo hop",
            ", threading floor: echo through a worker thread as `edgewise run` hops",
            false,
        ));
        details.push(format!("{}/s echo: {}", plan.rate, bare.summary()));
        details.push(format!(
            "{}/s echo through a worker thread: {}",
            plan.rate,
            threaded.summary()
        ));
        details.push(format!("{}/s edgewise run: {}", plan.rate, host.summary()));
    }
    Ok(Outcome { rows, details })
}

/// Start `edgewise run` with glucose-monitor (and the looping plugin when
/// `hostile`) on `url`, measure, stop it.
pub async fn host_latency(ctx: &Ctx, url: &str, plan: Plan, hostile: bool) -> anyhow::Result<Latency> {
    let mut plugins = vec![PluginEntry::glucose(&ctx.bundles.glucose)];
    if hostile {
        plugins.push(PluginEntry::hostile(&ctx.bundles.faulty));
    }
    let name = if hostile { "latency-hostile" } else { "latency-device" };
    let dir = ctx.paths.work.join(format!("{name}-{}", plan.rate));
    let device = Device::start(&dir, &ctx.bundles.trust, url, &plugins).await?;
    // The device is stopped whatever became of the measurement.
    let measured = measure_beside_disk(&dir, url, plan).await;
    device.stop().await?;
    measured
}

/// The latency of the device on `url`, with the durable-write latency of the
/// disk under `dir` during it.
async fn measure_beside_disk(dir: &std::path::Path, url: &str, plan: Plan) -> anyhow::Result<Latency> {
    let probe = DiskProbe::start(dir)?;
    let measured = latency::measure(url, Answer::Alert, plan).await;
    let disk = probe.finish()?;
    Ok(Latency {
        disk: Some(disk),
        ..measured?
    })
}

/// The p50, p99 (and p99.9) rows of one comparison.
pub fn rows_for(rate: f64, baseline: &Latency, figure: &Latency, label: &str, suffix: &str, targets: bool) -> Vec<Row> {
    let rate = crate::table::number(rate);
    let target = if targets {
        Target::RatioAtMost(TARGET)
    } else {
        Target::None
    };
    let mut rows = vec![
        Row::measured(
            format!("reading-to-local-alert p50 at {rate}/s{suffix}"),
            label,
            Some(baseline.p50),
            figure.p50,
            "ms",
            target,
        ),
        Row::measured(
            format!("reading-to-local-alert p99 at {rate}/s{suffix}"),
            label,
            Some(baseline.p99),
            figure.p99,
            "ms",
            target,
        ),
    ];
    if targets {
        rows.push(Row::measured(
            format!("reading-to-local-alert p99.9 at {rate}/s{suffix}"),
            label,
            Some(baseline.p999),
            figure.p999,
            "ms",
            Target::None,
        ));
    }
    rows
}
