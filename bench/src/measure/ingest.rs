//! Live ingest: the highest rate `edgewise run` sustains without losing a
//! reading, against a bare async-nats subscriber on the same nats-server,
//! fed the same messages by the same paced publisher in the same run.

use anyhow::Context;
use edgewise_procs::NatsServer;

use crate::device::{Device, PluginEntry};
use crate::ladder::{self, Counter, Sink};
use crate::load::{CgmTraffic, now_ms};
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target};

/// DESIGN: at least 0.6x the bare publish-subscribe rate.
const TARGET: f64 = 0.6;

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let (bare, host) = ctx.rt.block_on(async {
        let server = NatsServer::start("bench", &ctx.paths.nats_server, None).await?;
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
            &ctx.paths.edgewise,
            &ctx.paths.work.join("ingest-device"),
            &ctx.bundles.trust,
            &url,
            &[PluginEntry::glucose(&ctx.bundles.glucose)],
        )
        .await?;
        let host = ladder::climb(&publisher, &traffic, Sink::Host(&mut device, "glucose-monitor")).await?;
        device.stop().await?;
        anyhow::Ok((bare, host))
    })?;
    let baseline = bare
        .best()
        .context("the bare subscriber lost messages even at the lowest rate")?;
    let figure = host
        .best()
        .context("edgewise run lost or delayed readings even at the lowest rate")?;
    ctx.shared.alone_ingest = Some(figure);
    Ok(Outcome {
        rows: vec![Row::measured(
            "live ingest, highest sustained rate with no loss (`edgewise run`, glucose-monitor)",
            "bare async-nats publish-subscribe",
            Some(baseline),
            figure,
            "readings/s",
            Target::RatioAtLeast(TARGET),
        )],
        details: vec![
            format!("bare steps: {}", bare.summary()),
            format!("edgewise run steps: {}", host.summary()),
        ],
    })
}
