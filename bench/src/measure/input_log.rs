//! What the input log costs live ingest (issue #14): the ladder of "Live
//! ingest" (the highest rate without loss) through the JetStream source,
//! where the log is on the acknowledgement path (a sensor message is
//! acknowledged once its input is committed), once with the default
//! configuration and once with `[outbox] input_log = false`, each on a
//! nats-server and stream of its own, in the same run. Then the same on core
//! NATS, where the host is bound by its CPU rather than by the consumer's
//! acknowledgements, so that the log's own cost shows.

use anyhow::Context;
use edgewise_procs::NatsServer;

use crate::device::{Device, PluginEntry, SENSOR_STREAM, Setup, sensor_stream};
use crate::ladder::{self, Ladder, Sink};
use crate::load::{CgmTraffic, now_ms};
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target};

/// The row (the "why" section finds it by this name).
pub const ROW: &str =
    "live ingest through the JetStream source, input log on (the default; `edgewise run`, glucose-monitor)";
/// The row on core NATS.
pub const CORE_ROW: &str = "live ingest on core NATS, input log on (the default; `edgewise run`, glucose-monitor)";
/// Issue #14: the log costs at most 20% of the throughput.
const TARGET: f64 = 0.8;
/// Messages the sensor stream keeps: a backlog this deep fails the step
/// long before the oldest message would go.
const STREAM_MESSAGES: i64 = 2_000_000;

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let ladders = ctx.rt.block_on(async {
        let mut ladders = Vec::new();
        for jetstream in [true, false] {
            for input_log in [true, false] {
                ladders.push(climb(ctx, jetstream, input_log).await?);
            }
        }
        anyhow::Ok(ladders)
    })?;
    let [js_on, js_off, core_on, core_off] =
        <[Ladder; 4]>::try_from(ladders).map_err(|_| anyhow::anyhow!("four ladders were climbed"))?;
    let best = |ladder: &Ladder, what: &str| {
        ladder
            .best()
            .with_context(|| format!("{what}: edgewise run lost or delayed readings even at the lowest rate"))
    };
    let row = |name: &str, on: f64, off: f64| {
        Row::measured(
            name,
            "the same, `[outbox] input_log = false`",
            Some(off),
            on,
            "readings/s",
            Target::RatioAtLeast(TARGET),
        )
    };
    Ok(Outcome {
        rows: vec![
            row(
                ROW,
                best(&js_on, "JetStream, log on")?,
                best(&js_off, "JetStream, log off")?,
            ),
            row(
                CORE_ROW,
                best(&core_on, "core NATS, log on")?,
                best(&core_off, "core NATS, log off")?,
            ),
        ],
        details: vec![
            format!("JetStream source, input log on, steps: {}", js_on.summary()),
            format!("JetStream source, input log off, steps: {}", js_off.summary()),
            format!("core NATS, input log on, steps: {}", core_on.summary()),
            format!("core NATS, input log off, steps: {}", core_off.summary()),
        ],
    })
}

/// The ladder of `edgewise run` with glucose-monitor on the JetStream
/// source (or core NATS), its input log on or off.
async fn climb(ctx: &Ctx, jetstream: bool, input_log: bool) -> anyhow::Result<Ladder> {
    let name = match (jetstream, input_log) {
        (true, true) => "js-log-on",
        (true, false) => "js-log-off",
        (false, true) => "core-log-on",
        (false, false) => "core-log-off",
    };
    let options = NatsServer::options(&ctx.paths.nats_server).name(&format!("bench-{name}"));
    let server = if jetstream { options.jetstream()? } else { options }.start()?;
    let url = server.url();
    let publisher = async_nats::connect(url.as_str())
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    if jetstream {
        sensor_stream(&publisher, STREAM_MESSAGES).await?;
    }
    let setup = Setup {
        jetstream: jetstream.then_some(SENSOR_STREAM),
        input_log,
        ..Setup::default()
    };
    tracing::info!(jetstream, input_log, "ladder: edgewise run");
    glucose_ladder(ctx, name, &url, &publisher, &setup).await
}

/// The ladder of a device `name` running glucose-monitor as `setup` says,
/// on the server at `url` that `publisher` publishes to.
pub(super) async fn glucose_ladder(
    ctx: &Ctx,
    name: &str,
    url: &str,
    publisher: &async_nats::Client,
    setup: &Setup<'_>,
) -> anyhow::Result<Ladder> {
    let mut device = Device::start_with(
        name,
        &ctx.paths.work.join(format!("ingest-{name}")),
        &ctx.bundles.trust,
        url,
        setup,
        &[PluginEntry::glucose(&ctx.bundles.glucose)],
    )
    .await?;
    let traffic = CgmTraffic::new(&ctx.hall2018, now_ms());
    let ladder = ladder::climb(publisher, &traffic, Sink::Host(&mut device, "glucose-monitor")).await?;
    device.stop().await?;
    Ok(ladder)
}
