//! `edgewise export`: the readings a plugin was given, from the input log in a
//! device's outbox file, as a recording (JSON lines, the format of `edgewise
//! record`) that `edgewise replay` reads, so CI can replay what a real device
//! saw.
//!
//! The outbox file is locked by a running `edgewise run` (one process per
//! data directory): export reads a stopped device's data directory, or a
//! copy of a running one's. Rows of the log that do not open or decode are
//! skipped and counted, never the end of the export.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::anyhow;
use clap::{ArgGroup, Args};
use serde::Serialize;

use edgewise_host::bus::record::Recorder;
use edgewise_host::input_log::Input;
use edgewise_host::outbox::reset::KEY_FILE;
use edgewise_host::outbox::{FILE_NAME, LoggedInput, Outbox, OutboxError, OutboxKey, OutboxLimits};
use edgewise_host::run::config::RunConfig;

use super::Failure;

/// Logged inputs read from the outbox at a time: bounds the memory of an
/// export whatever the size of the log.
const PAGE: usize = 256;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("device").required(true).args(["config", "data_dir"])))]
pub struct ExportArgs {
    /// The device configuration: the log is in its `data_dir`.
    #[arg(long, value_name = "edgewise.toml")]
    config: Option<PathBuf>,
    /// The device's data directory (or a copy of it).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The plugin whose input log to export (its name in the bundle's manifest).
    #[arg(long, value_name = "NAME")]
    plugin: String,
    /// Only readings stamped at or after this time (RFC 3339, e.g.
    /// `2026-01-31T08:00:00Z`): the readings' own timestamps, not when the
    /// device logged them.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    from: Option<i64>,
    /// Only readings stamped before this time (RFC 3339; the readings' own
    /// timestamps).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    to: Option<i64>,
    /// The recording to write: a new file (never overwritten, written whole
    /// or not at all), readable by its owner only; `-` for standard output.
    /// Plaintext: the readings decrypted (patient data, for a CGM).
    #[arg(long, value_name = "FILE.jsonl")]
    out: PathBuf,
}

fn parse_time(text: &str) -> Result<i64, String> {
    use time::format_description::well_known::Rfc3339;
    let time =
        time::OffsetDateTime::parse(text, &Rfc3339).map_err(|e| format!("`{text}`: not an RFC 3339 time: {e}"))?;
    i64::try_from(time.unix_timestamp_nanos() / 1_000_000).map_err(|_| format!("`{text}`: out of range"))
}

/// The readings' timestamps kept: `from` included, `to` excluded.
#[derive(Debug, Clone, Copy)]
struct Window {
    from: i64,
    to: i64,
}

impl Window {
    fn contains(&self, timestamp_ms: i64) -> bool {
        self.from <= timestamp_ms && timestamp_ms < self.to
    }
}

/// What an export wrote and what it skipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ExportCounts {
    /// Readings written.
    readings: u64,
    /// Readings of the log outside the window.
    outside: u64,
    /// Rows of the log that did not open or decode (or held a reading no
    /// live host logs): their readings are missing from the recording.
    damaged: u64,
}

/// One reading as the payload of a recording line: `sensor` explicit, so the
/// subject only says where it would have come from.
#[derive(Serialize)]
struct Payload<'a> {
    sensor: &'a str,
    ts: i64,
    value: f64,
    unit: &'a str,
}

pub fn run(args: ExportArgs) -> Result<(), Failure> {
    let window = Window {
        from: args.from.unwrap_or(i64::MIN),
        to: args.to.unwrap_or(i64::MAX),
    };
    if window.from >= window.to {
        return Err(Failure::usage(anyhow!("--from must be before --to")));
    }
    let (data_dir, limits) = match (&args.config, &args.data_dir) {
        (Some(config), _) => {
            let config = RunConfig::load(config).map_err(Failure::usage)?;
            (config.data_dir, config.outbox)
        }
        (None, Some(dir)) => (dir.clone(), OutboxLimits::default()),
        (None, None) => return Err(Failure::usage(anyhow!("give `--config` or `--data-dir`"))),
    };
    let to_stdout = args.out.as_os_str() == "-";
    if !to_stdout && args.out.exists() {
        return Err(Failure::usage(anyhow!(
            "{} exists (an export never overwrites a file)",
            args.out.display()
        )));
    }
    let outbox = open(&data_dir, limits)?;
    let plugins = outbox.journal_plugins().map_err(Failure::runtime)?;
    if !plugins.contains(&args.plugin) {
        let known = match plugins.is_empty() {
            true => "none".to_owned(),
            false => plugins.join(", "),
        };
        return Err(Failure::usage(anyhow!(
            "no plugin `{}` in the input log of {}; the log has: {known}",
            args.plugin,
            data_dir.display()
        )));
    }
    eprintln!(
        "exporting the input log of `{}` from {} into {}\n  plaintext: it holds the readings the plugin was given \
         (patient data, for a CGM), outside the device's encryption: keep it as you keep the device's data",
        args.plugin,
        data_dir.display(),
        if to_stdout {
            "standard output".to_owned()
        } else {
            args.out.display().to_string()
        }
    );
    let counts = if to_stdout {
        export(&outbox, &args.plugin, window, &mut std::io::stdout().lock())
            .map_err(|e| e.written_to(Path::new("standard output")))?
    } else {
        export_to_file(&outbox, &args.plugin, window, &args.out)?
    };
    report(&args, counts)
}

/// Open the outbox of `data_dir` to read it: never creates one (nor a key).
fn open(data_dir: &Path, limits: OutboxLimits) -> Result<Outbox, Failure> {
    for name in [FILE_NAME, KEY_FILE] {
        let path = data_dir.join(name);
        if !path.is_file() {
            return Err(Failure::usage(anyhow!(
                "{} does not exist: {} is not a device's data directory (give the directory `data_dir` names)",
                path.display(),
                data_dir.display()
            )));
        }
    }
    let key = OutboxKey::load_or_create(&data_dir.join(KEY_FILE)).map_err(Failure::usage)?;
    Outbox::open(data_dir, &key, limits).map_err(|error| match error {
        OutboxError::Locked { .. } => Failure::runtime(
            anyhow::Error::new(error)
                .context("the device is running; stop it or export from a copy of its data directory"),
        ),
        other => Failure::runtime(other),
    })
}

/// Why an export stopped: the log could not be read, or the output written.
enum ExportError {
    Log(OutboxError),
    Write(std::io::Error),
}

impl ExportError {
    fn written_to(self, out: &Path) -> Failure {
        match self {
            ExportError::Log(error) => Failure::runtime(error),
            // Kept typed: a closed standard output ends the command quietly.
            ExportError::Write(error) => {
                Failure::runtime(anyhow::Error::new(error).context(format!("cannot write to {}", out.display())))
            }
        }
    }
}

/// Export into a temporary file beside `out`, then link it as `out` (never
/// replacing a file): `out` appears whole, synced, or not at all.
fn export_to_file(outbox: &Outbox, plugin: &str, window: Window, out: &Path) -> Result<ExportCounts, Failure> {
    let dir = match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = out.file_name().map(|name| name.to_string_lossy()).unwrap_or_default();
    let io = |e: std::io::Error| ExportError::Write(e).written_to(out);
    // Deleted when dropped, on any early return.
    let mut file = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .tempfile_in(dir)
        .map_err(io)?;
    let counts = export(outbox, plugin, window, &mut file).map_err(|e| e.written_to(out))?;
    if counts.readings == 0 {
        return Err(nothing_exported(plugin, counts));
    }
    file.as_file().sync_all().map_err(io)?;
    file.persist_noclobber(out).map_err(|e| {
        Failure::usage(anyhow::Error::new(e.error).context(format!(
            "cannot create {} (an export never overwrites a file)",
            out.display()
        )))
    })?;
    edgewise_host::files::sync_dir(dir).map_err(io)?;
    Ok(counts)
}

/// Write the readings of `plugin`'s log in `window` to `out`, in log order.
fn export(outbox: &Outbox, plugin: &str, window: Window, out: &mut impl Write) -> Result<ExportCounts, ExportError> {
    let mut recorder = Recorder::new(BufWriter::new(out));
    let mut counts = ExportCounts::default();
    let mut after = 0;
    loop {
        let page = outbox
            .logged_inputs(plugin, after, i64::MIN, i64::MAX, PAGE)
            .map_err(ExportError::Log)?;
        let Some(last) = page.last() else { break };
        after = last.position;
        for input in &page {
            export_input(input, window, &mut recorder, &mut counts).map_err(ExportError::Write)?;
        }
    }
    recorder.writer().flush().map_err(ExportError::Write)?;
    Ok(counts)
}

/// Write the readings of one logged input that fall in `window`; a row that
/// does not open or decode, or that holds a reading no replay could read, is
/// counted as damaged and left out whole. Ticks are left out: a replay makes
/// its own.
fn export_input<W: Write>(
    input: &LoggedInput,
    window: Window,
    recorder: &mut Recorder<W>,
    counts: &mut ExportCounts,
) -> std::io::Result<()> {
    let decoded = input.data.as_deref().map(Input::decode);
    let readings = match decoded {
        Some(Ok(Input::Readings { readings, .. })) if readings.iter().all(|r| r.value.is_finite()) => readings,
        Some(Ok(Input::Tick(_))) => return Ok(()),
        _ => {
            counts.damaged += 1;
            return Ok(());
        }
    };
    for reading in &readings {
        if !window.contains(reading.timestamp_ms) {
            counts.outside += 1;
            continue;
        }
        let payload = serde_json::to_vec(&Payload {
            sensor: &reading.sensor,
            ts: reading.timestamp_ms,
            value: reading.value,
            unit: &reading.unit,
        })
        .map_err(std::io::Error::other)?;
        recorder.record(&format!("sensors.{}", reading.sensor), &payload)?;
        counts.readings += 1;
    }
    Ok(())
}

fn nothing_exported(plugin: &str, counts: ExportCounts) -> Failure {
    Failure::runtime(anyhow!(
        "nothing exported: the input log of `{plugin}` holds no readings in the window \
         ({} outside it, {} damaged rows skipped); no file written",
        counts.outside,
        counts.damaged
    ))
}

fn report(args: &ExportArgs, counts: ExportCounts) -> Result<(), Failure> {
    if counts.readings == 0 {
        return Err(nothing_exported(&args.plugin, counts));
    }
    eprintln!(
        "exported {} readings of `{}` into {} (plaintext); {} outside the window",
        counts.readings,
        args.plugin,
        if args.out.as_os_str() == "-" {
            "standard output".to_owned()
        } else {
            args.out.display().to_string()
        },
        counts.outside
    );
    if counts.damaged > 0 {
        eprintln!(
            "warning: skipped {} damaged rows of the input log (they do not open or decode): their readings are \
             missing from the recording",
            counts.damaged
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use edgewise_host::model::Reading;

    use super::*;

    fn logged(position: u64, data: Option<Vec<u8>>) -> LoggedInput {
        LoggedInput {
            position,
            created_ms: 0,
            data,
        }
    }

    #[test]
    fn a_row_gives_its_readings_in_the_window_and_a_damaged_row_is_counted_out_whole() {
        let reading = |timestamp_ms, value| Reading {
            sensor: "cgm-1".to_owned(),
            timestamp_ms,
            value,
            unit: "mg/dL".to_owned(),
        };
        let batch = |readings| Input::Readings {
            now_ms: 0,
            readings,
            sources: vec![],
        };
        let rows = [
            logged(
                1,
                Some(batch(vec![reading(5, 100.5), reading(10, 45.0), reading(20, 1.0)]).encode()),
            ),
            logged(2, Some(Input::Tick(15).encode())),
            logged(3, None),
            logged(4, Some(vec![9, 9, 9])),
            logged(5, Some(batch(vec![reading(11, f64::NAN)]).encode())),
        ];
        let mut recorder = Recorder::new(Vec::new());
        let mut counts = ExportCounts::default();
        let window = Window { from: 10, to: 20 };
        for row in &rows {
            export_input(row, window, &mut recorder, &mut counts).unwrap();
        }
        assert_eq!(
            counts,
            ExportCounts {
                readings: 1,
                outside: 2,
                damaged: 3
            }
        );
        assert_eq!(
            String::from_utf8(recorder.writer().clone()).unwrap(),
            "{\"subject\":\"sensors.cgm-1\",\"payload\":{\"sensor\":\"cgm-1\",\"ts\":10,\"unit\":\"mg/dL\",\"value\":45.0}}\n"
        );
    }

    #[test]
    fn times_are_rfc_3339() {
        assert_eq!(parse_time("2023-11-14T22:13:20Z"), Ok(1_700_000_000_000));
        assert_eq!(parse_time("2023-11-14T23:13:20.5+01:00"), Ok(1_700_000_000_500));
        assert!(parse_time("yesterday").is_err());
    }
}
