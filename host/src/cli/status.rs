//! `edgewise status`: ask a running host what it is doing.

use std::time::Duration;

use anyhow::anyhow;
use clap::Args;

use edgewise_host::bus::status::{SERVICE_ERROR, Status};
use edgewise_host::bus::{NatsConfig, Subjects};

use super::Failure;
use super::connection::ConnectionArgs;

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// The device id (required without `--config`).
    #[arg(long, value_name = "ID")]
    device: Option<String>,
    /// Print the raw JSON.
    #[arg(long)]
    json: bool,
}

/// The connection, the device id and the connection name from `--config`
/// and the flags. With the device's own configuration the request inbox is
/// the device's (`_INBOX.edgewise-<device>`), the only one its NATS
/// permissions let it read.
fn target(args: &StatusArgs) -> Result<(NatsConfig, String, String), Failure> {
    let (nats, device) = args.connection.resolve()?;
    let device = args.device.clone().or(device).ok_or_else(|| {
        Failure::usage(anyhow!(
            "give the device with `--device ID` or `--config edgewise.toml`"
        ))
    })?;
    let name = if args.connection.config.is_some() {
        format!("edgewise-{device}")
    } else {
        "edgewise-status".to_owned()
    };
    Ok((nats, device, name))
}

pub fn run(args: StatusArgs) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(anyhow!("cannot start the async runtime: {e}")))?;
    let (nats, device, name) = target(&args)?;
    let subject = Subjects::new(&device).status();
    let reply = runtime.block_on(async {
        let client = edgewise_host::bus::connect::connect(&nats, &name, false)
            .await
            .map_err(|e| Failure::usage(anyhow!("cannot connect to {}: {e}", nats.url)))?;
        match tokio::time::timeout(Duration::from_secs(3), client.request(subject.clone(), "".into())).await {
            Ok(Ok(message)) => match message.headers.as_ref().and_then(|h| h.get(SERVICE_ERROR)) {
                // The host answered, with why it cannot give its status.
                Some(error) => Err(Failure::runtime(anyhow!("the host answered on {subject}: {error}"))),
                None => Ok(message.payload),
            },
            // The server knows no subscriber (async-nats says "no
            // responders" twice: kind and source).
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Err(Failure::runtime(anyhow!(
                "no host answered on {subject}: no `edgewise run` of device `{device}` is connected to {}",
                edgewise_host::bus::connect::without_credentials(&nats.url)
            ))),
            Ok(Err(e)) => Err(Failure::runtime(anyhow!("no host answered on {subject}: {e}"))),
            Err(_) => Err(Failure::runtime(anyhow!("no host answered on {subject} within 3 s"))),
        }
    })?;
    let status: Status = serde_json::from_slice(&reply)
        .map_err(|e| Failure::runtime(anyhow!("the host's answer is not a status: {e}")))?;
    if args.json {
        return super::to_stdout(|out| writeln!(out, "{}", String::from_utf8_lossy(&reply)));
    }
    super::to_stdout(|out| print_status(out, &status))
}

/// The status as a table for people.
fn print_status(out: &mut dyn std::io::Write, status: &Status) -> std::io::Result<()> {
    writeln!(out, "device:     {} (up {:.0} s)", status.device, status.uptime_s)?;
    let clock = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(status.clock_ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| status.clock_ms.to_string());
    writeln!(out, "clock:      {clock}")?;
    writeln!(
        out,
        "upstream:   {}",
        if status.upstream_connected {
            "connected"
        } else {
            "not connected"
        }
    )?;
    writeln!(
        out,
        "outbox:     {} alerts, {} summaries undelivered; oldest {}",
        status.outbox.alerts,
        status.outbox.summaries,
        status
            .outbox
            .oldest_age_ms
            .map_or("-".to_owned(), |ms| format!("{:.1} s old", ms as f64 / 1000.0))
    )?;
    let dropped = &status.outbox.dropped;
    writeln!(
        out,
        "dropped:    {} alerts, {} summaries expired; {} alerts, {} summaries evicted for space; {} summaries refused; {} undecryptable",
        dropped.expired_alerts,
        dropped.expired_summaries,
        dropped.alerts_for_space,
        dropped.summaries_for_space,
        dropped.summaries_refused,
        dropped.undecryptable
    )?;
    writeln!(
        out,
        "telemetry:  {} waiting (best-effort, at most {}), {} dropped",
        status.outbox.telemetry,
        edgewise_host::outbox::TELEMETRY_MAX_ENTRIES,
        dropped.telemetry
    )?;
    let reasons: Vec<String> = status
        .ingest
        .deadletters_by_reason
        .iter()
        .map(|(reason, count)| format!("{reason} {count}"))
        .collect();
    let parked = &status.outbox.parked;
    writeln!(
        out,
        "refused:    {} too large, {} permission denied, {} refused upstream: moved aside ({} kept, {} discarded)",
        parked.too_large, parked.permission_denied, parked.refused, parked.entries, dropped.parked_discarded
    )?;
    writeln!(
        out,
        "ingest:     {} messages, {} dead-lettered{}{}",
        status.ingest.messages,
        status.ingest.deadlettered,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        },
        match status.ingest.held_for_clock {
            0 => String::new(),
            held => format!("; {held} deliveries held in the stream for the clock (from the future)"),
        }
    )?;
    if let Some(reset) = &status.outbox.reset {
        writeln!(out, "OUTBOX RESET at start: {reset}")?;
    }
    if let Some(in_memory) = &status.outbox.in_memory {
        writeln!(out, "OUTBOX IN MEMORY: {in_memory}")?;
    }
    for (task, reason) in &status.tasks {
        writeln!(out, "TASK ENDED: {task}: {reason}")?;
    }
    if status.control.status_refused > 0 {
        writeln!(
            out,
            "control:    {} status requests refused (reply subject not an inbox)",
            status.control.status_refused
        )?;
    }
    writeln!(
        out,
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
    )?;
    for plugin in &status.plugins {
        writeln!(
            out,
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
        )?;
    }
    for plugin in status.plugins.iter().filter(|p| p.last_error.is_some()) {
        let failures: Vec<String> = plugin
            .failures
            .iter()
            .map(|(reason, n)| format!("{reason} {n}"))
            .collect();
        let last = plugin.last_error.as_deref().unwrap_or_default();
        match failures.is_empty() {
            // Refused at start: never ran, so no failure to count.
            true => writeln!(out, "{}: {last}", plugin.name)?,
            false => writeln!(out, "{}: failures {}; last: {last}", plugin.name, failures.join(", "))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_telemetry_and_ended_tasks_on_its_output() {
        let status: Status = serde_json::from_str(
            r#"{
            "device": "edge-01", "uptime_s": 12.5, "clock_ms": 1700000000000, "upstream_connected": false,
            "outbox": {"alerts": 3, "summaries": 2, "telemetry": 60, "oldest_age_ms": 1500,
                       "dropped": {"telemetry": 7}},
            "ingest": {"messages": 9, "deadlettered": 0, "held_for_clock": 3},
            "plugins": [],
            "tasks": {"ticker": "panicked: boom"}
        }"#,
        )
        .unwrap();
        let mut out = Vec::new();
        print_status(&mut out, &status).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("telemetry:  60 waiting"), "{text}");
        assert!(text.contains(", 7 dropped"), "{text}");
        assert!(text.contains("TASK ENDED: ticker: panicked: boom"), "{text}");
        assert!(
            text.contains("; 3 deliveries held in the stream for the clock"),
            "{text}"
        );
    }
}
