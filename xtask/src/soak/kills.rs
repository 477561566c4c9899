//! Variant 2, repeated kills over a long recording: the CI test
//! `tests/all/kill_recovery.rs` at length. The whole Hall2018 recording
//! (57 subjects, over 100,000 readings) plays at `--kill-rate` readings/s
//! through the JetStream source while `edgewise run` (glucose-monitor) is
//! killed with SIGKILL `--kills` times at random moments and started again
//! each time. Then the cloud stream must hold exactly the outputs of an
//! uninterrupted `edgewise replay` of the recording: the same numbers, no
//! gap, no duplicate, each envelope equal (but for what names the run), up
//! to the outputs replay makes after the last reading (its ticks past the
//! end, which the live host never reaches).
//!
//! As in the test, the host's clock is simulated from an hour before the
//! first reading at real speed, so no host tick is due during the run and
//! the plugin ticks itself at its wakes inside the batches, as in replay.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

use super::cloud::{Tally, read_stream};
use super::rig::{Random, Rig, UP, outbox_depth, outbox_losses, plugin};
use super::{HALL2018, Options, Report};

const GLUCOSE: &str = "glucose-monitor";
/// How far ahead of the clock readings (and glucose-monitor's `max_ahead`)
/// may be: the recording spans three and a half years.
const AHEAD_HOURS: u64 = 5 * 366 * 24;

/// One reading as played: (subject, timestamp, value).
type Row = (String, i64, f64);

/// The recording in the order replay plays it: by timestamp, then subject
/// in order of first appearance in the file, then file order; of readings
/// of one subject at one time, the last (`host/src/replay/recording.rs`).
fn recording(path: &std::path::Path) -> anyhow::Result<Vec<Row>> {
    let mut first_seen: HashMap<String, usize> = HashMap::new();
    let mut rows: Vec<(i64, usize, usize, crate::cgm::Row)> = Vec::new();
    for (order, row) in crate::cgm::rows(path)?.into_iter().enumerate() {
        let next = first_seen.len();
        let subject = *first_seen.entry(row.id.clone()).or_insert(next);
        rows.push((row.ts_ms, subject, order, row));
    }
    rows.sort_by_key(|(ts, subject, order, _)| (*ts, *subject, *order));
    let mut played: Vec<(usize, Row)> = Vec::with_capacity(rows.len());
    for (ts, subject, _, row) in rows {
        if played.last().is_some_and(|(s, (_, t, _))| *s == subject && *t == ts) {
            played.pop();
        }
        played.push((subject, (row.id, ts, row.value)));
    }
    Ok(played.into_iter().map(|(_, row)| row).collect())
}

/// The configuration after `[ingest]`: readings far ahead of the clock
/// allowed, the clock an hour before `first_ms` at real speed, the
/// subject's id read from the payload (as replay reads it from the file).
fn config(bundle: &std::path::Path, first_ms: i64) -> anyhow::Result<String> {
    let start = OffsetDateTime::from_unix_timestamp_nanos(i128::from(first_ms - 3_600_000) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .context("the recording's first time cannot be written in RFC 3339")?;
    Ok(format!(
        "max_future = \"{AHEAD_HOURS}h\"\n\n[clock]\nstart = \"{start}\"\nspeed = 1.0\n\n\
         [[plugins]]\nbundle = \"{}\"\npayload_sensors = [\"sensors.cgm.>\"]\n\
         [plugins.config]\nmax_ahead = \"{AHEAD_HOURS}h\"\n",
        bundle.display()
    ))
}

/// The envelope without what names the run rather than the output.
fn comparable(envelope: &Value) -> Value {
    let mut envelope = envelope.as_object().cloned().unwrap_or_default();
    for field in ["device", "plugin", "version", "digest"] {
        envelope.remove(field);
    }
    Value::Object(envelope)
}

pub async fn run(options: &Options, setup: &super::Setup) -> anyhow::Result<Report> {
    let mut report = Report::new("kills");
    let recording_path = setup.root.join(HALL2018);
    let rows = recording(&recording_path)?;
    let (first, last) = (rows[0].1, rows[rows.len() - 1].1);
    let dir = setup.dir.join("kills");
    let mut rig = Rig::start(
        &setup.nats_server,
        &dir,
        &setup.bundles.trust,
        &config(&setup.bundles.glucose_monitor, first)?,
    )
    .await?;
    println!(
        "kills: host in {}; {} readings of {HALL2018} at {}/s, {} kills",
        dir.display(),
        rows.len(),
        options.kill_rate,
        options.kills
    );
    let started = Instant::now();
    let publisher = {
        let rows = rows.clone();
        let jetstream = rig.jetstream.clone();
        let rate = options.kill_rate as f64;
        tokio::spawn(async move {
            let start = Instant::now();
            for (k, (subject, ts, value)) in rows.into_iter().enumerate() {
                tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / rate)).await;
                let payload = format!(r#"{{"ts":{ts},"value":{value},"unit":"mg/dL","sensor":"{subject}"}}"#);
                Rig::publish(&jetstream, format!("sensors.cgm.{subject}"), payload).await?;
            }
            anyhow::Ok(())
        })
    };
    // Each kill comes once the plugin has taken a random number of readings
    // in this run of the host, at most a (kills + 1)th of the recording, so
    // that every kill comes while it plays.
    let mut random = Random::new(options.seed);
    let most = (rows.len() / (options.kills + 1)) as u64;
    let mut kills = 0;
    while kills < options.kills {
        let due = 1 + random.below(most);
        let status = rig
            .status_until(
                "the plugin to take readings before the next kill",
                Duration::from_secs(120),
                |s| plugin(s, GLUCOSE).is_ok_and(|p| p["readings_in"].as_u64() >= Some(due)) || publisher.is_finished(),
            )
            .await?;
        if plugin(&status, GLUCOSE)?["readings_in"].as_u64() < Some(due) {
            break; // Everything was published and taken.
        }
        rig.kill_and_restart().await?;
        kills += 1;
        if kills % 10 == 0 {
            println!("kills: {kills} kills after {:.0} s", started.elapsed().as_secs_f64());
        }
    }
    publisher.await.context("the publisher failed")??;
    // Every reading taken and acknowledged, every output delivered.
    let sensors = rig.jetstream.get_stream(super::rig::SENSORS).await?;
    let end = loop {
        let status = rig
            .status_until("every output delivered", Duration::from_secs(600), |s| {
                outbox_depth(s) == 0
            })
            .await?;
        let mut pending = 0;
        let names: Vec<String> = {
            use futures::TryStreamExt;
            sensors.consumer_names().try_collect().await?
        };
        for name in names {
            let info = sensors.consumer_info(&name).await?;
            pending += info.num_pending + info.num_ack_pending as u64;
        }
        if pending == 0 && outbox_depth(&status) == 0 {
            break status;
        }
        if started.elapsed() > Duration::from_secs(3600 * 24) {
            bail!("readings still pending: {pending}");
        }
        tokio::time::sleep(super::rig::POLL).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    for loss in outbox_losses(&end) {
        report.violation(format!("the outbox let go of entries: {loss}"));
    }
    rig.stop_host().await?;
    report.figure("readings played", rows.len().to_string());
    report.figure("kills (SIGKILL, then restart)", format!("{kills} in {seconds:.0} s"));
    if kills < options.kills {
        report.violation(format!(
            "only {kills} of {} kills came while the recording played",
            options.kills
        ));
    }

    // The cloud's outputs: numbers, then contents.
    let mut tally = Tally::default();
    let mut live: BTreeMap<u64, Value> = BTreeMap::new();
    let mut degraded = 0;
    read_stream(&rig.cloud.url(), UP, |id, payload| {
        tally.add(id, payload);
        let envelope: Value = serde_json::from_slice(payload).context("an envelope is not JSON")?;
        if id.rsplit('/').next().is_some_and(|n| n.starts_with("host-")) || id.contains("/_host/") {
            degraded += 1;
        } else if let Some(seq) = envelope["seq"].as_u64() {
            live.insert(seq, envelope);
        }
        Ok(())
    })
    .await?;
    let (_, violations) = tally.check(&BTreeMap::new());
    for violation in violations {
        report.violation(violation);
    }
    if degraded > 0 {
        report.violation(format!(
            "{degraded} host alerts in the cloud (glucose-monitor should never fail)"
        ));
    }

    let replayed = replay(setup, &recording_path)?;
    let mut differ = Vec::new();
    for (seq, envelope) in &live {
        match replayed.get(*seq as usize - 1) {
            Some(expected) if comparable(expected) == comparable(envelope) => {}
            Some(expected) => differ.push(format!("output {seq}: live {envelope} vs replay {expected}")),
            None => differ.push(format!("output {seq}: live {envelope}, replay has no such output")),
        }
    }
    let compared = live.len() - differ.len();
    if !differ.is_empty() {
        report.violation(format!(
            "{} outputs differ from the replay's; the first: {}",
            differ.len(),
            differ[0]
        ));
    }
    let tail = replayed.get(live.len()..).unwrap_or_default();
    let within: Vec<&Value> = tail
        .iter()
        .filter(|o| {
            o["ts"]
                .as_i64()
                .or(o["window_end"].as_i64())
                .is_none_or(|when| when <= last)
        })
        .collect();
    if !within.is_empty() {
        report.violation(format!(
            "{} outputs of the replay within the recording are not in the cloud; the first: {}",
            within.len(),
            within[0]
        ));
    }
    report.figure(
        "outputs compared with the replay",
        format!(
            "{compared} equal of {} in the cloud ({} replayed; {} after the last reading)",
            live.len(),
            replayed.len(),
            tail.len()
        ),
    );
    Ok(report)
}

/// `edgewise replay` of the recording through the signed glucose-monitor: its outputs.
fn replay(setup: &super::Setup, recording: &std::path::Path) -> anyhow::Result<Vec<Value>> {
    let max_ahead = format!("max_ahead={AHEAD_HOURS}h");
    let output = edgewise_procs::workspace::run_edgewise(&[
        "replay".as_ref(),
        "--plugin".as_ref(),
        setup.bundles.glucose_monitor.as_os_str(),
        "--trust".as_ref(),
        setup.bundles.trust.as_os_str(),
        "--input".as_ref(),
        recording.as_os_str(),
        "--config".as_ref(),
        max_ahead.as_ref(),
    ])?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).context("a replay output is not JSON"))
        .collect()
}
