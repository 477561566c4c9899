//! Live ingest: the highest rate `edgewise run` sustains without losing a
//! reading, against a bare async-nats subscriber on the same nats-server,
//! fed the same messages by the same paced publisher in the same run.
//!
//! Then, at the rate of the edgewise figure, one more step on each side with
//! the CPU time of every process read before and after it: what a delivered
//! reading costs nats-server, this process (the publisher; and the bare
//! subscriber on its side) and `edgewise run` (by thread), and the rate the
//! machine's cores allow at those costs.

use std::time::{Duration, Instant};

use anyhow::Context;
use edgewise_procs::NatsServer;

use crate::cpu::{self, Snapshot, Usage};
use crate::device::{Device, PluginEntry};
use crate::ladder::{self, Counter, Ladder, Sink, Step};
use crate::load::{CgmTraffic, Traffic, now_ms};
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target, number};

/// DESIGN: at least 0.6x the bare publish-subscribe rate.
const TARGET: f64 = 0.6;
/// The unit of the CPU rows.
const CPU_UNIT: &str = "µs/reading";

/// Both ladders and the CPU steps after them.
struct Runs {
    bare: Ladder,
    host: Ladder,
    /// The rate of the CPU steps (asked).
    rate: f64,
    bare_cost: Cost,
    host_cost: Cost,
    /// Where the host's ladder lost readings.
    losses: String,
}

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let runs = ctx.rt.block_on(async {
        let server = NatsServer::options(&ctx.paths.nats_server).name("bench").start()?;
        let nats_pid = server.pid().context("nats-server is not running")?;
        let url = server.url();
        let traffic = CgmTraffic::new(&ctx.hall2018, now_ms());
        let publisher = async_nats::connect(url.as_str())
            .await
            .with_context(|| format!("cannot connect to {url}"))?;

        tracing::info!("ladder: bare async-nats subscriber");
        let counter = Counter::start(&url, "sensors.>").await?;
        let bare = ladder::climb(&publisher, &traffic, Sink::Counter(&counter.count)).await?;
        drop(counter);

        tracing::info!("ladder: edgewise run with glucose-monitor");
        let mut device = Device::start(
            &ctx.paths.work.join("ingest-device"),
            &ctx.bundles.trust,
            &url,
            &[PluginEntry::glucose(&ctx.bundles.glucose)],
        )
        .await?;
        let host = ladder::climb(&publisher, &traffic, Sink::Host(&mut device, "glucose-monitor")).await?;
        let rate = host
            .best_asked()
            .context("edgewise run lost or delayed readings even at the lowest rate")?;
        // Where the failed steps' readings went: dropped before ingest took
        // them (the client's or ingest's pending limits), or by the plugin's
        // full queue; the rest were late.
        let status = device.status().await?;
        let losses = format!(
            "messages dropped before ingest over the ladder: {}; readings dropped by glucose-monitor's full queue: {}",
            crate::table::number(status.ingest.dropped_by_client as f64),
            crate::table::number(
                status
                    .plugins
                    .iter()
                    .find(|p| p.name == "glucose-monitor")
                    .map_or(0, |p| p.readings_dropped) as f64
            ),
        );
        // The host's readings must stay in order: go on after the ladder's.
        let mut cursor = host.next;

        tracing::info!(rate, "CPU step: edgewise run");
        let host_pid = device.pid().context("edgewise run is not running")?;
        let mut sink = Sink::Host(&mut device, "glucose-monitor");
        let host_cost = cpu_step(
            &publisher,
            &traffic,
            &mut sink,
            &mut cursor,
            rate,
            nats_pid,
            Some(host_pid),
        )
        .await?;
        device.stop().await?;

        tracing::info!(rate, "CPU step: bare async-nats subscriber");
        let counter = Counter::start(&url, "sensors.>").await?;
        let mut sink = Sink::Counter(&counter.count);
        let bare_cost = cpu_step(&publisher, &traffic, &mut sink, &mut cursor, rate, nats_pid, None).await?;
        drop(counter);
        anyhow::Ok(Runs {
            bare,
            host,
            rate,
            bare_cost,
            host_cost,
            losses,
        })
    })?;
    let baseline = runs
        .bare
        .best()
        .context("the bare subscriber lost messages even at the lowest rate")?;
    let figure = runs
        .host
        .best()
        .context("edgewise run lost or delayed readings even at the lowest rate")?;
    ctx.shared.alone_ingest = Some(figure);
    let mut rows = vec![Row::measured(
        "live ingest, highest sustained rate with no loss (`edgewise run`, glucose-monitor)",
        "bare async-nats publish-subscribe",
        Some(baseline),
        figure,
        "readings/s",
        Target::RatioAtLeast(TARGET),
    )];
    rows.extend(cpu_rows(&runs));
    let mut details = vec![
        format!("bare steps: {}", runs.bare.summary()),
        format!("edgewise run steps: {}", runs.host.summary()),
        runs.losses.clone(),
    ];
    details.extend(cpu_details(&runs, baseline, figure));
    Ok(Outcome { rows, details })
}

/// One step at a fixed rate and the CPU time each process used over it.
struct Cost {
    /// The step.
    step: Step,
    /// Readings delivered by the end of the window, late ones included.
    delivered: u64,
    /// Wall time of the window.
    wall: Duration,
    /// nats-server.
    nats: Usage,
    /// This process: the publisher, and the bare subscriber if it is the sink.
    bench: Usage,
    /// `edgewise run`, if it is the sink.
    host: Option<Usage>,
    /// The whole machine, ns of busy CPU.
    machine_ns: u64,
}

impl Cost {
    /// `ns` of CPU per delivered reading, in µs.
    fn per_reading(&self, ns: u64) -> f64 {
        ns as f64 / 1_000.0 / self.delivered.max(1) as f64
    }

    /// `ns` of CPU over the window, in cores kept busy.
    fn cores(&self, ns: u64) -> f64 {
        ns as f64 / (self.wall.as_nanos() as f64).max(1.0)
    }

    /// `edgewise run`'s CPU per reading (0 on the bare side).
    fn host_per_reading(&self) -> f64 {
        self.host.as_ref().map_or(0.0, |h| self.per_reading(h.total_ns))
    }

    /// The step and its deliveries, for the notes.
    fn summary(&self) -> String {
        format!(
            "{}/s achieved, {} of {} delivered ({}), {:.1} s",
            number(self.step.achieved),
            number(self.delivered as f64),
            number(self.step.published as f64),
            if self.step.passed {
                "ok"
            } else {
                "failed: lost, late or publisher short"
            },
            self.wall.as_secs_f64()
        )
    }
}

/// One step at `rate`, with the CPU time of nats-server (`nats_pid`), this
/// process and `edgewise run` (`host_pid`) read before it and after every
/// reading it published was delivered (or deliveries stopped).
async fn cpu_step(
    publisher: &async_nats::Client,
    traffic: &dyn Traffic,
    sink: &mut Sink<'_>,
    cursor: &mut u64,
    rate: f64,
    nats_pid: u32,
    host_pid: Option<u32>,
) -> anyhow::Result<Cost> {
    let bench_pid = std::process::id();
    let counted = sink.delivered().await?;
    let started = Instant::now();
    let machine = cpu::machine_busy_ns()?;
    let nats = Snapshot::take(nats_pid)?;
    let bench = Snapshot::take(bench_pid)?;
    let host = host_pid.map(Snapshot::take).transpose()?;
    let step = ladder::step(publisher, traffic, sink, cursor, rate).await?;
    let delivered = sink.delivered().await?.saturating_sub(counted);
    let host = match (host_pid, host) {
        (Some(pid), Some(before)) => Some(Snapshot::take(pid)?.since(&before)),
        _ => None,
    };
    let bench = Snapshot::take(bench_pid)?.since(&bench);
    let nats = Snapshot::take(nats_pid)?.since(&nats);
    let machine_ns = cpu::machine_busy_ns()?.saturating_sub(machine);
    Ok(Cost {
        step,
        delivered,
        wall: started.elapsed(),
        nats,
        bench,
        host,
        machine_ns,
    })
}

/// The CPU rows: `edgewise run`, nats-server and this process per reading.
fn cpu_rows(runs: &Runs) -> Vec<Row> {
    let (bare, host) = (&runs.bare_cost, &runs.host_cost);
    let at = format!("CPU per reading at {}/s", number(runs.rate));
    let publisher = host.per_reading(host.bench.total_ns);
    let bare_bench = bare.per_reading(bare.bench.total_ns);
    vec![
        Row::measured(
            format!("{at}: `edgewise run`, all threads"),
            "bare subscriber (bench process, bare step minus edgewise step)",
            Some(bare_bench - publisher),
            host.host_per_reading(),
            CPU_UNIT,
            Target::None,
        ),
        Row::measured(
            format!("{at}: nats-server"),
            "nats-server, bare step",
            Some(bare.per_reading(bare.nats.total_ns)),
            host.per_reading(host.nats.total_ns),
            CPU_UNIT,
            Target::None,
        ),
        Row::measured(
            format!("{at}: bench process (publisher)"),
            "bench process, bare step (publisher + bare subscriber)",
            Some(bare_bench),
            publisher,
            CPU_UNIT,
            Target::None,
        ),
    ]
}

/// The notes of the CPU steps: the steps, `edgewise run` by thread, the
/// cores kept busy, and the budget of the machine's cores.
fn cpu_details(runs: &Runs, baseline: f64, figure: f64) -> Vec<String> {
    let (bare, host) = (&runs.bare_cost, &runs.host_cost);
    let mut details = vec![format!(
        "CPU steps at {}/s: edgewise run {}; bare {}",
        number(runs.rate),
        host.summary(),
        bare.summary()
    )];
    if let Some(usage) = &host.host {
        details.push(format!(
            "`edgewise run` by thread at {}/s, {CPU_UNIT}: {}",
            number(runs.rate),
            by_thread(host, usage)
        ));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    details.push(format!(
        "cores kept busy over the CPU steps (CPU time / wall time): edgewise step: nats-server {}, bench \
         process {}, `edgewise run` {}, whole machine {} of {cores}; bare step: nats-server {}, bench \
         process {}, whole machine {} of {cores} (the whole machine's time is sampled at the clock \
         tick: approximate)",
        number(host.cores(host.nats.total_ns)),
        number(host.cores(host.bench.total_ns)),
        number(host.host.as_ref().map_or(0.0, |h| host.cores(h.total_ns))),
        number(host.cores(host.machine_ns)),
        number(bare.cores(bare.nats.total_ns)),
        number(bare.cores(bare.bench.total_ns)),
        number(bare.cores(bare.machine_ns)),
    ));
    details.push(budget(runs, cores, baseline, figure));
    details
}

/// `edgewise run`'s threads by name, most first, then what exited threads
/// (and the clock-tick rounding of the process total) account for.
fn by_thread(cost: &Cost, usage: &Usage) -> String {
    let mut threads = usage.threads.clone();
    threads.sort_by_key(|(_, ns)| std::cmp::Reverse(*ns));
    let mut parts: Vec<String> = threads
        .iter()
        .map(|(name, ns)| format!("{name} {}", number(cost.per_reading(*ns))))
        .collect();
    let rest = usage.total_ns as f64 - usage.threads_ns() as f64;
    parts.push(format!(
        "exited threads and rounding {} (threads {} of process total {})",
        number(rest / 1_000.0 / cost.delivered.max(1) as f64),
        number(cost.per_reading(usage.threads_ns())),
        number(cost.per_reading(usage.total_ns))
    ));
    parts.join(", ")
}

/// The budget: `cores` × 1,000,000 µs of CPU per second, shared by
/// nats-server, the publisher and the subscriber; the rates it allows at
/// the measured costs, and what the target leaves `edgewise run`.
fn budget(runs: &Runs, cores: usize, baseline: f64, figure: f64) -> String {
    let (bare, host) = (&runs.bare_cost, &runs.host_cost);
    let per_second = cores as f64 * 1e6;
    let nats = host.per_reading(host.nats.total_ns);
    let publisher = host.per_reading(host.bench.total_ns);
    let edgewise = host.host_per_reading();
    let host_total = nats + publisher + edgewise;
    let bare_nats = bare.per_reading(bare.nats.total_ns);
    let bare_bench = bare.per_reading(bare.bench.total_ns);
    let bare_total = bare_nats + bare_bench;
    let others_at_baseline = (nats + publisher) * baseline;
    let target_rate = TARGET * baseline;
    format!(
        "CPU budget: {cores} cores = {} µs of CPU per second, costs per reading taken as measured at {}/s. \
         Edgewise side: nats-server {} + publisher {} + `edgewise run` {} = {} µs per reading, so at most \
         ≈ {}/s (measured {}/s). Bare side: nats-server {} + publisher and subscriber {} = {} µs, at most \
         ≈ {}/s (measured {}/s). At the bare figure ({}/s) nats-server and the publisher alone take {} µs \
         per second ({}% of the cores); the {TARGET}x target ({}/s) leaves `edgewise run` at most {} µs \
         per reading, and it spends {}.",
        number(per_second),
        number(runs.rate),
        number(nats),
        number(publisher),
        number(edgewise),
        number(host_total),
        number(per_second / host_total.max(1e-9)),
        number(figure),
        number(bare_nats),
        number(bare_bench),
        number(bare_total),
        number(per_second / bare_total.max(1e-9)),
        number(baseline),
        number(baseline),
        number(others_at_baseline),
        number(100.0 * others_at_baseline / per_second),
        number(target_rate),
        number(per_second / target_rate.max(1e-9) - nats - publisher),
        number(edgewise),
    )
}
