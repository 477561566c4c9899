//! Issue #5: glucose-monitor in `edgewise run` alone vs beside a hostile
//! plugin (`faulty-plugin` with `fail = "loop"`, which loops in every
//! `on-readings` until its deadline) reading the same subjects: sustained
//! ingest and reading-to-alert latency at 1,000 readings/s.

use anyhow::Context;
use edgewise_procs::NatsServer;

use super::latency::{PLANS, host_latency, rows_for};
use crate::device::{Device, PluginEntry};
use crate::ladder::{self, Sink};
use crate::load::{CgmTraffic, now_ms};
use crate::suite::{Ctx, Outcome};
use crate::table::{Row, Target};

/// The measurement.
pub fn run(ctx: &mut Ctx) -> anyhow::Result<Outcome> {
    let plan = PLANS[0];
    let (alone_ingest, beside_ingest, alone_latency, beside_latency, ladders) = ctx.rt.block_on(async {
        let server = NatsServer::options(&ctx.paths.nats_server).name("bench").start()?;
        let url = server.url();
        let traffic = CgmTraffic::new(&ctx.hall2018, now_ms());
        let publisher = async_nats::connect(url.as_str())
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        let glucose = PluginEntry::glucose(&ctx.bundles.glucose);
        let faulty = PluginEntry::hostile(&ctx.bundles.faulty);
        let mut ladders = Vec::new();
        // Alone: measured by the ingest and latency rows of this run, else now.
        let alone_ingest = match ctx.shared.alone_ingest {
            Some(rate) => rate,
            None => {
                tracing::info!("ladder: edgewise run, glucose-monitor alone");
                let mut device = Device::start(
                    &ctx.paths.work.join("isolation-alone"),
                    &ctx.bundles.trust,
                    &url,
                    std::slice::from_ref(&glucose),
                )
                .await?;
                let alone = ladder::climb(&publisher, &traffic, Sink::Host(&mut device, "glucose-monitor")).await?;
                device.stop().await?;
                ladders.push(format!("alone steps: {}", alone.summary()));
                alone
                    .best()
                    .context("edgewise run lost readings even at the lowest rate")?
            }
        };
        tracing::info!("ladder: edgewise run, glucose-monitor beside a looping plugin");
        let mut device = Device::start(
            &ctx.paths.work.join("isolation-beside"),
            &ctx.bundles.trust,
            &url,
            &[glucose, faulty],
        )
        .await?;
        let beside = ladder::climb(&publisher, &traffic, Sink::Host(&mut device, "glucose-monitor")).await?;
        // What the host made of the looping plugin, as evidence it was there.
        let status = device.status().await?;
        device.stop().await?;
        ladders.push(format!("beside steps: {}", beside.summary()));
        for plugin in &status.plugins {
            ladders.push(format!(
                "after the beside ladder, `edgewise status` of {}: `{}`",
                plugin.name,
                serde_json::to_string(plugin).unwrap_or_default()
            ));
        }
        let beside_ingest = beside.best();

        let alone_latency = match ctx.shared.alone_latency {
            Some(latency) => latency,
            None => host_latency(ctx, &url, plan, false).await?,
        };
        tracing::info!(rate = plan.rate, "latency: edgewise run beside a looping plugin");
        let beside_latency = host_latency(ctx, &url, plan, true).await?;
        anyhow::Ok((alone_ingest, beside_ingest, alone_latency, beside_latency, ladders))
    })?;
    let label = "glucose-monitor alone";
    let suffix = ", beside a looping plugin";
    let mut rows = vec![match beside_ingest {
        Some(rate) => Row::measured(
            format!("live ingest, highest sustained rate with no loss{suffix}"),
            label,
            Some(alone_ingest),
            rate,
            "readings/s",
            Target::None,
        ),
        None => Row {
            baseline_label: label.to_owned(),
            baseline: Some(alone_ingest),
            ..Row::missing(
                format!("live ingest, highest sustained rate with no loss{suffix}"),
                "readings/s",
                Target::None,
                crate::table::Verdict::NotMeasured(format!(
                    "readings were lost or late even at the lowest rate tried ({})",
                    ladders.last().cloned().unwrap_or_default()
                )),
            )
        },
    }];
    rows.extend(rows_for(
        plan.rate,
        &alone_latency,
        &beside_latency,
        label,
        suffix,
        false,
    ));
    let mut details = ladders;
    details.push(format!("alone at {}/s: {}", plan.rate, alone_latency.summary()));
    details.push(format!("beside at {}/s: {}", plan.rate, beside_latency.summary()));
    Ok(Outcome { rows, details })
}
