//! `edgewise record`: capture live bus traffic on given subjects into a
//! recording (JSON lines) that `edgewise replay` reads, so CI can replay what
//! a real bus carried.

use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, anyhow};
use clap::Args;
use futures::StreamExt;

use edgewise_host::bus::record::{RecordCounts, Recorder};

use super::Failure;
use super::connection::ConnectionArgs;

/// How often what was recorded reaches the file while messages flow.
const FLUSH_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, Args)]
pub struct RecordArgs {
    #[command(flatten)]
    connection: ConnectionArgs,
    /// A subject to record, wildcards allowed (`sensors.cgm.>`); repeatable.
    /// Each subject's messages are written in the order received; subjects
    /// interleave as they come (a replay orders readings by time).
    #[arg(long = "subject", value_name = "SUBJECT", required = true)]
    subjects: Vec<String>,
    /// The recording to write: a new file (never overwritten), readable by
    /// its owner only. Plaintext: see below.
    #[arg(long, value_name = "FILE.jsonl")]
    out: PathBuf,
    /// Stop after this many messages are recorded.
    #[arg(long, value_name = "N")]
    count: Option<u64>,
    /// Stop after this long, e.g. `10m`.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
}

/// Record until `--count`, `--duration`, SIGINT or SIGTERM; the file is
/// flushed and synced before the command ends.
pub fn run(args: RecordArgs) -> Result<(), Failure> {
    let (nats, _) = args.connection.resolve()?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&args.out)
        .map_err(|error| {
            let out = args.out.display();
            match error.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    anyhow!("{out} already exists: a recording never overwrites a file")
                }
                _ => anyhow::Error::new(error).context(format!("cannot create {out}")),
            }
        })
        .map_err(Failure::usage)?;
    let mut recorder = Recorder::new(BufWriter::new(file));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::runtime(anyhow!("cannot start the async runtime: {e}")))?;
    let counts = runtime.block_on(async {
        let client = edgewise_host::bus::connect::connect(&nats, "edgewise-record", false)
            .await
            .map_err(|e| Failure::usage(anyhow!("cannot connect to {}: {e}", nats.url)))?;
        let mut messages = futures::stream::select_all(Vec::new());
        for subject in &args.subjects {
            let subscriber = client
                .subscribe(subject.clone())
                .await
                .map_err(|e| Failure::usage(anyhow!("cannot subscribe to `{subject}`: {e}")))?;
            messages.push(subscriber);
        }
        // Subscribed at the server once the flush returns: only then say so.
        client
            .flush()
            .await
            .map_err(|e| Failure::runtime(anyhow!("cannot reach {}: {e}", nats.url)))?;
        eprintln!(
            "recording {} from {} into {}\n  plaintext: it holds the readings as they crossed the bus (patient \
             data, for a CGM), outside the device's encryption: keep it as you keep the device's data",
            args.subjects.join(", "),
            nats.url,
            args.out.display()
        );
        record(&mut recorder, &mut messages, &args).await?;
        Ok::<_, Failure>(recorder.counts())
    })?;
    recorder
        .writer()
        .get_ref()
        .sync_all()
        .with_context(|| format!("cannot sync {}", args.out.display()))
        .map_err(Failure::runtime)?;
    report(&args, counts);
    Ok(())
}

/// Write messages until a limit or a signal stops the recording.
async fn record(
    recorder: &mut Recorder<BufWriter<std::fs::File>>,
    messages: &mut (impl futures::Stream<Item = async_nats::Message> + Unpin),
    args: &RecordArgs,
) -> Result<(), Failure> {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = |kind| signal(kind).map_err(|e| Failure::runtime(anyhow!("cannot watch signals: {e}")));
    let (mut terminate, mut interrupt) = (signals(SignalKind::terminate())?, signals(SignalKind::interrupt())?);
    let deadline = tokio::time::sleep(args.duration.unwrap_or(Duration::MAX));
    tokio::pin!(deadline);
    let mut flush = tokio::time::interval(FLUSH_EVERY);
    let write_error = |e: std::io::Error| Failure::runtime(anyhow!("cannot write {}: {e}", args.out.display()));
    while args.count.is_none_or(|count| recorder.counts().recorded < count) {
        tokio::select! {
            message = messages.next() => match message {
                Some(message) => {
                    recorder.record(&message.subject, &message.payload).map_err(write_error)?;
                }
                None => return Err(Failure::runtime(anyhow!("the connection to the bus ended"))),
            },
            _ = flush.tick() => recorder.writer().flush().map_err(write_error)?,
            _ = &mut deadline, if args.duration.is_some() => break,
            _ = terminate.recv() => break,
            _ = interrupt.recv() => break,
        }
    }
    recorder.writer().flush().map_err(write_error)
}

fn report(args: &RecordArgs, counts: RecordCounts) {
    eprintln!(
        "recorded {} messages into {} (plaintext){}",
        counts.recorded,
        args.out.display(),
        match counts.not_json {
            0 => String::new(),
            n => format!("; left out {n} whose payload is not JSON (a replay could not read them)"),
        }
    );
}
