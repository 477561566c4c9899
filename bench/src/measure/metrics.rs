//! What the metrics endpoint costs live ingest when nobody scrapes it
//! (issue #17): the ladder of "Live ingest" on core NATS, once with
//! `[metrics]` configured (the endpoint listening, every plugin call timed
//! for its histogram) and once without, each on a nats-server of its own,
//! in the same run.

use anyhow::Context;
use edgewise_procs::NatsServer;

use crate::device::Setup;
use crate::ladder::Ladder;
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target};

/// The row.
pub const ROW: &str =
    "live ingest on core NATS, metrics endpoint configured and not scraped (`edgewise run`, glucose-monitor)";
/// Issue #17: nothing measurable. The ladder's resolution is one bisection
/// step (its rates are 2^(1/8), about 9%, apart): within it.
const TARGET: f64 = 0.9;

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let (on, off) = ctx
        .rt
        .block_on(async { anyhow::Ok((climb(ctx, true).await?, climb(ctx, false).await?)) })?;
    let best = |ladder: &Ladder, what: &str| {
        ladder
            .best()
            .with_context(|| format!("{what}: edgewise run lost or delayed readings even at the lowest rate"))
    };
    Ok(Outcome {
        rows: vec![Row::measured(
            ROW,
            "the same without `[metrics]`",
            Some(best(&off, "metrics off")?),
            best(&on, "metrics on")?,
            "readings/s",
            Target::RatioAtLeast(TARGET),
        )],
        details: vec![
            format!("metrics configured, steps: {}", on.summary()),
            format!("metrics off, steps: {}", off.summary()),
        ],
    })
}

/// The ladder of `edgewise run` with glucose-monitor on core NATS, the
/// metrics endpoint configured or not.
async fn climb(ctx: &Ctx, metrics: bool) -> anyhow::Result<Ladder> {
    let name = if metrics { "metrics-on" } else { "metrics-off" };
    let server = NatsServer::options(&ctx.paths.nats_server)
        .name(&format!("bench-{name}"))
        .start()?;
    let url = server.url();
    let publisher = async_nats::connect(url.as_str())
        .await
        .with_context(|| format!("cannot connect to {url}"))?;
    let setup = Setup {
        // A port the system picks: never scraped.
        metrics: metrics.then_some("127.0.0.1:0"),
        ..Setup::default()
    };
    tracing::info!(metrics, "ladder: edgewise run");
    super::input_log::glucose_ladder(ctx, name, &url, &publisher, &setup).await
}
