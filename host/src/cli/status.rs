//! `edgewise status`: ask a running host what it is doing.

use std::time::Duration;

use anyhow::anyhow;
use clap::Args;

use edgewise_host::run::{Status, Subjects};

use super::Failure;

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The device's local NATS server.
    #[arg(long, value_name = "URL", default_value = "nats://127.0.0.1:4222")]
    nats: String,
    /// The device id.
    #[arg(long, value_name = "ID")]
    device: String,
    /// Print the raw JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: StatusArgs) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(anyhow!("cannot start the async runtime: {e}")))?;
    let subject = Subjects::new(&args.device).status();
    let reply = runtime.block_on(async {
        let client = async_nats::connect(args.nats.as_str())
            .await
            .map_err(|e| Failure::usage(anyhow!("cannot connect to {}: {e}", args.nats)))?;
        match tokio::time::timeout(Duration::from_secs(3), client.request(subject.clone(), "".into())).await {
            Ok(Ok(message)) => Ok(message.payload),
            Ok(Err(e)) => Err(Failure::runtime(anyhow!("no host answered on {subject}: {e}"))),
            Err(_) => Err(Failure::runtime(anyhow!("no host answered on {subject} within 3 s"))),
        }
    })?;
    let status: Status = serde_json::from_slice(&reply)
        .map_err(|e| Failure::runtime(anyhow!("the host's answer is not a status: {e}")))?;
    if args.json {
        println!("{}", String::from_utf8_lossy(&reply));
        return Ok(());
    }
    println!("device:     {} (up {:.0} s)", status.device, status.uptime_s);
    let clock = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(status.clock_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| status.clock_ms.to_string());
    println!("clock:      {clock}");
    println!(
        "upstream:   {}",
        if status.upstream_connected {
            "connected"
        } else {
            "not connected"
        }
    );
    println!(
        "outbox:     {} alerts, {} summaries undelivered; oldest {}",
        status.outbox.alerts,
        status.outbox.summaries,
        status
            .outbox
            .oldest_age_ms
            .map_or("-".to_owned(), |ms| format!("{:.1} s old", ms as f64 / 1000.0))
    );
    let dropped = &status.outbox.dropped;
    println!(
        "dropped:    {} alerts, {} summaries expired; {} alerts, {} summaries evicted for space; {} summaries refused; {} undecryptable",
        dropped.expired_alerts,
        dropped.expired_summaries,
        dropped.alerts_for_space,
        dropped.summaries_for_space,
        dropped.summaries_refused,
        dropped.undecryptable
    );
    let parked = &status.outbox.parked;
    println!(
        "refused:    {} too large, {} permission denied, {} refused upstream: moved aside ({} kept, {} discarded)",
        parked.too_large, parked.permission_denied, parked.refused, parked.entries, dropped.parked_discarded
    );
    println!(
        "ingest:     {} messages, {} dead-lettered",
        status.ingest.messages, status.ingest.deadlettered
    );
    println!(
        "{:<20} {:<10} {:<18} {:<11} {:>10} {:>8} {:>10} {:>7} {:>8} {:>11} {:>8}",
        "plugin",
        "version",
        "digest",
        "state",
        "readings",
        "alerts",
        "summaries",
        "errors",
        "restarts",
        "quarantines",
        "dropped"
    );
    for plugin in &status.plugins {
        println!(
            "{:<20} {:<10} {:<18} {:<11} {:>10} {:>8} {:>10} {:>7} {:>8} {:>11} {:>8}",
            plugin.name,
            plugin.version,
            plugin.digest.chars().take(18).collect::<String>(),
            plugin.state,
            plugin.readings_in,
            plugin.alerts_out,
            plugin.summaries_out,
            plugin.errors,
            plugin.restarts,
            plugin.quarantines,
            plugin.readings_dropped
        );
    }
    for plugin in status.plugins.iter().filter(|p| p.last_error.is_some()) {
        let failures: Vec<String> = plugin
            .failures
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        println!(
            "{}: failures {}; last: {}",
            plugin.name,
            failures.join(", "),
            plugin.last_error.as_deref().unwrap_or_default()
        );
    }
    Ok(())
}
