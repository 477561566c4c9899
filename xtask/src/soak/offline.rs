//! Variant 1, offline for a long time: the cloud is stopped while readings
//! flow at a steady rate for `--offline` (default 3 minutes), so the outbox
//! queues every output of that time; then the cloud comes back and the
//! outbox drains. Measured: outputs queued, time to reconnect, time to
//! drain, drain rate. Checked: nothing evicted or parked, and the cloud holds
//! every output exactly once (each plugin's numbers 1..N where N is what the
//! plugin made, no gap, no duplicate).
//!
//! The volume comes from faulty-plugin in `chatty` mode (`--burst` alerts per
//! reading, numbered like any output); glucose-monitor takes one reading in
//! ten (real values of the Hall2018 recording, stamped now, on 20 sensors)
//! for realistic alerts and summaries beside them.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use tokio::time::Instant;

use super::cloud::{Tally, read_stream};
use super::rig::{Bundles, Rig, UP, now_ms, outbox_depth, outbox_losses, plugin};
use super::{Options, Report};

const CHATTY: &str = "faulty-plugin";
const GLUCOSE: &str = "glucose-monitor";
/// One reading in this many also goes to glucose-monitor.
const GLUCOSE_EVERY: u64 = 10;
/// glucose-monitor's sensors.
const GLUCOSE_SENSORS: u64 = 20;
/// How often a progress line is printed while offline.
const PROGRESS: Duration = Duration::from_secs(30);
/// The most outputs one plugin call may make (`[host_limits] outputs_per_call`).
const OUTPUTS_PER_CALL: u64 = 10_000;

/// The configuration after `[ingest]`: an outbox that does not fill, the
/// output-rate guards (real-time flood guards) out of the way, batches small
/// enough that a chatty call stays within `outputs_per_call`.
fn config(bundles: &Bundles, burst: u64) -> String {
    let batch_max = (OUTPUTS_PER_CALL / burst.max(1)).clamp(1, 256);
    format!(
        "\n[outbox]\nmax_mb = 1048576\n\n[limits]\nbatch_max = {batch_max}\n\n\
         [host_limits]\noutputs_per_second = 100000000\noutputs_per_call = {OUTPUTS_PER_CALL}\n\n\
         [[plugins]]\nbundle = \"{}\"\n[plugins.config]\nfail = \"chatty\"\nburst = \"{burst}\"\n\
         [plugins.limits]\noutputs_per_second = 100000000\noutputs_per_call = {OUTPUTS_PER_CALL}\n\n\
         [[plugins]]\nbundle = \"{}\"\n[plugins.limits]\noutputs_per_second = 100000000\n",
        bundles.faulty_plugin.display(),
        bundles.glucose_monitor.display(),
    )
}

pub async fn run(options: &Options, setup: &super::Setup) -> anyhow::Result<Report> {
    let mut report = Report::new("offline");
    let dir = setup.dir.join("offline");
    let mut rig = Rig::start(
        &setup.nats_server,
        &dir,
        &setup.bundles.trust,
        &config(&setup.bundles, options.burst),
    )
    .await?;
    println!(
        "offline: host in {} (log edgewise.log); local bus {}, cloud {}; {} readings/s, {} alerts each, for {:?}",
        dir.display(),
        rig.local.url(),
        rig.cloud.url(),
        options.rate,
        options.burst,
        options.offline
    );
    rig.status_until("the host to connect upstream", Duration::from_secs(60), |s| {
        s["upstream_connected"] == true
    })
    .await?;
    rig.cloud.stop()?;
    rig.status_until("the host to see the cloud gone", Duration::from_secs(60), |s| {
        s["upstream_connected"] == false
    })
    .await?;
    println!("offline: cloud stopped; readings flowing");

    let values: Vec<f64> = crate::cgm::rows(&setup.root.join(super::HALL2018))?
        .into_iter()
        .map(|row| row.value)
        .collect();
    let total = (options.rate as f64 * options.offline.as_secs_f64()).round() as u64;
    let publisher = {
        let jetstream = rig.jetstream.clone();
        let rate = options.rate as f64;
        tokio::spawn(async move {
            let start = Instant::now();
            for k in 0..total {
                tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / rate)).await;
                let ts = now_ms();
                let chatty = format!(r#"{{"ts":{ts},"value":100,"unit":"mg/dL"}}"#);
                Rig::publish(&jetstream, "sensors.hostile.soak".to_owned(), chatty).await?;
                if k % GLUCOSE_EVERY == 0 {
                    let i = k / GLUCOSE_EVERY;
                    let value = values[(i as usize) % values.len()];
                    let reading = format!(r#"{{"ts":{ts},"value":{value},"unit":"mg/dL"}}"#);
                    let sensor = i % GLUCOSE_SENSORS;
                    Rig::publish(&jetstream, format!("sensors.cgm.soak-{sensor}"), reading).await?;
                }
            }
            anyhow::Ok(())
        })
    };
    let offline_start = Instant::now();
    let mut next_report = offline_start + PROGRESS;
    while !publisher.is_finished() {
        tokio::time::sleep(super::rig::POLL).await;
        if Instant::now() >= next_report {
            next_report += PROGRESS;
            let status = rig.status().await?;
            println!(
                "offline: {:>5.0} s: {} readings taken, {} outputs queued",
                offline_start.elapsed().as_secs_f64(),
                plugin(&status, CHATTY)?["readings_in"],
                outbox_depth(&status)
            );
        }
    }
    publisher.await.context("the publisher failed")??;
    let glucose_total = total.div_ceil(GLUCOSE_EVERY);
    // Every reading taken and every output it made in the outbox.
    let taken = rig
        .status_until("every reading taken and queued", Duration::from_secs(600), |s| {
            let made = |name: &str| {
                plugin(s, name).map_or(0, |p| {
                    p["alerts_out"].as_u64().unwrap_or(0) + p["summaries_out"].as_u64().unwrap_or(0)
                })
            };
            let taken = |name: &str| plugin(s, name).map_or(0, |p| p["readings_in"].as_u64().unwrap_or(0));
            taken(CHATTY) >= total && taken(GLUCOSE) >= glucose_total && outbox_depth(s) >= made(CHATTY) + made(GLUCOSE)
        })
        .await?;
    let offline_for = offline_start.elapsed();
    let queued = outbox_depth(&taken);
    let made = |status: &serde_json::Value, name: &str| -> anyhow::Result<u64> {
        let p = plugin(status, name)?;
        Ok(p["alerts_out"].as_u64().unwrap_or(0) + p["summaries_out"].as_u64().unwrap_or(0))
    };
    report.figure(
        "readings published (chatty / glucose)",
        format!("{total} / {glucose_total}"),
    );
    report.figure("offline for", format!("{:.0} s", offline_for.as_secs_f64()));
    report.figure(
        "outputs queued",
        format!(
            "{queued} ({} chatty, {} glucose-monitor)",
            made(&taken, CHATTY)?,
            made(&taken, GLUCOSE)?
        ),
    );
    if plugin(&taken, CHATTY)?["alerts_out"].as_u64() != Some(total * options.burst) {
        report.violation(format!(
            "faulty-plugin took {} readings and made {} alerts, not {} x {}",
            plugin(&taken, CHATTY)?["readings_in"],
            plugin(&taken, CHATTY)?["alerts_out"],
            total,
            options.burst
        ));
    }
    let outbox_file = std::fs::metadata(dir.join("data").join("outbox.sqlite3")).map_or(0, |m| m.len());
    if outbox_file > 0 {
        report.figure("outbox file", format!("{:.0} MiB", outbox_file as f64 / 1048576.0));
    }

    println!("offline: {queued} outputs queued; starting the cloud again");
    rig.cloud.start_again()?;
    let back = Instant::now();
    let mut reconnected = None;
    let within = Duration::from_secs(600).max(Duration::from_millis(queued));
    let deadline = back + within;
    let drained = loop {
        let status = match rig.status().await {
            Ok(status) => status,
            Err(_) if Instant::now() < deadline => continue,
            Err(error) => return Err(error),
        };
        if reconnected.is_none() && status["upstream_connected"] == true {
            reconnected = Some(back.elapsed());
        }
        if outbox_depth(&status) == 0 {
            break status;
        }
        if Instant::now() >= deadline {
            anyhow::bail!("the outbox did not drain within {within:?}: {status}");
        }
        tokio::time::sleep(super::rig::POLL).await;
    };
    let drain = back.elapsed();
    let reconnected = reconnected.unwrap_or(drain);
    let draining = drain.saturating_sub(reconnected).as_secs_f64().max(0.001);
    report.figure("reconnected after", format!("{:.2} s", reconnected.as_secs_f64()));
    report.figure(
        "time to drain (from the cloud's return)",
        format!("{:.1} s", drain.as_secs_f64()),
    );
    report.figure(
        "drain rate (from the reconnection)",
        format!("{:.0} outputs/s", queued as f64 / draining),
    );
    for loss in outbox_losses(&drained) {
        report.violation(format!("the outbox let go of entries: {loss}"));
    }

    let expected = BTreeMap::from([
        (CHATTY.to_owned(), made(&drained, CHATTY)?),
        (GLUCOSE.to_owned(), made(&drained, GLUCOSE)?),
    ]);
    rig.stop_host().await?;
    let mut tally = Tally::default();
    let started = Instant::now();
    let stored = read_stream(&rig.cloud.url(), UP, |id, payload| {
        tally.add(id, payload);
        Ok(())
    })
    .await?;
    let (series, violations) = tally.check(&expected);
    report.figure(
        "cloud stream",
        format!(
            "{stored} messages (read back in {:.1} s)",
            started.elapsed().as_secs_f64()
        ),
    );
    for one in series {
        report.figure(
            &format!("  {}", one.name),
            format!("numbers 1..{}, {} distinct", one.highest, one.distinct),
        );
    }
    for violation in violations {
        report.violation(violation);
    }
    Ok(report)
}
