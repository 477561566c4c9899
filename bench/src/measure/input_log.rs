//! What the input log costs live ingest (issue #14): the ladder of "Live
//! ingest" (the highest rate without loss) through the JetStream source,
//! where the log is on the acknowledgement path (a sensor message is
//! acknowledged once its input is committed), once with the default
//! configuration and once with `[outbox] input_log = false`, each on a
//! nats-server and stream of its own, in the same run.

use anyhow::Context;
use edgewise_procs::NatsServer;

use crate::device::{Device, PluginEntry, SENSOR_STREAM, Setup, sensor_stream};
use crate::ladder::{self, Ladder, Sink};
use crate::load::{CgmTraffic, now_ms};
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target};

/// Issue #14: the log costs at most 20% of the throughput.
const TARGET: f64 = 0.8;
/// Messages the sensor stream keeps: a backlog this deep fails the step
/// long before the oldest message would go.
const STREAM_MESSAGES: i64 = 2_000_000;

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let (on, off) = ctx.rt.block_on(async {
        let on = climb(ctx, true).await?;
        let off = climb(ctx, false).await?;
        anyhow::Ok((on, off))
    })?;
    let figure = on
        .best()
        .context("with the input log, edgewise run lost or delayed readings even at the lowest rate")?;
    let baseline = off
        .best()
        .context("without the input log, edgewise run lost or delayed readings even at the lowest rate")?;
    Ok(Outcome {
        rows: vec![Row::measured(
            "live ingest through the JetStream source, input log on (the default; `edgewise run`, glucose-monitor)",
            "the same, `[outbox] input_log = false`",
            Some(baseline),
            figure,
            "readings/s",
            Target::RatioAtLeast(TARGET),
        )],
        details: vec![
            format!("input log on, steps: {}", on.summary()),
            format!("input log off, steps: {}", off.summary()),
        ],
    })
}

/// The ladder of `edgewise run` with glucose-monitor on the JetStream
/// source, its input log on or off.
async fn climb(ctx: &Ctx, input_log: bool) -> anyhow::Result<Ladder> {
    let name = if input_log { "log-on" } else { "log-off" };
    let server = NatsServer::options(&ctx.paths.nats_server)
        .name(&format!("bench-{name}"))
        .jetstream()?
        .start()?;
    let url = server.url();
    let publisher = async_nats::connect(url.as_str())
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    sensor_stream(&publisher, STREAM_MESSAGES).await?;
    let setup = Setup {
        jetstream: Some(SENSOR_STREAM),
        input_log,
        ..Setup::default()
    };
    tracing::info!(input_log, "ladder: edgewise run on the JetStream source");
    let mut device = Device::start_with(
        name,
        &ctx.paths.work.join(format!("ingest-{name}")),
        &ctx.bundles.trust,
        &url,
        &setup,
        &[PluginEntry::glucose(&ctx.bundles.glucose)],
    )
    .await?;
    let traffic = CgmTraffic::new(&ctx.hall2018, now_ms());
    let ladder = ladder::climb(&publisher, &traffic, Sink::Host(&mut device, "glucose-monitor")).await?;
    device.stop().await?;
    Ok(ladder)
}
