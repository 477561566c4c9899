//! `edgewise replay`: run a plugin over recorded data on a virtual clock.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::{Args, ValueEnum};

use edgewise_host::bundle::{self, ManifestLimits, TrustStore};
use edgewise_host::envelope::to_json_line;
use edgewise_host::load::{self, LoadError, Loaded, Operator, Trust};
use edgewise_host::replay::{self, Format, ReplayReport, Restarts, SnapshotStats, Stops, golden};
use edgewise_host::runtime::{
    CompiledPlugin, FuelUsed, Limits, MIN_WAKE_INTERVAL_MS, PluginClock, PluginErrorKind, PluginInstance, Runtime,
    RuntimeOptions, SchemaRefused, SnapshotSchemas, World,
};

use super::Failure;
use super::exit::about;

/// Differences printed when output and golden file disagree.
const MAX_DIFFS_SHOWN: usize = 5;
/// Refuse a `--tick` that would need more ticks than this over the recording.
const MAX_TICKS: i64 = 100_000_000;

#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The plugin: a component built for wasm32-wasip2.
    #[arg(long, value_name = "FILE.wasm")]
    plugin: PathBuf,

    /// The recording to replay.
    #[arg(long, value_name = "FILE")]
    input: PathBuf,

    /// Recording format [default: jsonl for *.jsonl files, else iglu-csv].
    #[arg(long, value_enum)]
    format: Option<FormatArg>,

    /// Plugin configuration, repeatable: `--config low=65 --config repeat=15m`.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    config: Vec<(String, String)>,

    /// Virtual time between two `on-tick` calls of a 0.1 plugin, e.g. `5m`,
    /// `30s` (a 0.2 plugin is ticked when it asks, at most once a second).
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_tick)]
    tick: i64,

    /// Write the output (JSON lines) here instead of standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,

    /// Compare the output with this golden file: exit 1 on a difference.
    #[arg(long, value_name = "GOLDEN")]
    expect: Option<PathBuf>,

    /// With --expect: rewrite the golden file with this run's output.
    #[arg(long, requires = "expect")]
    update: bool,

    /// Skip unparsable rows (counted and reported) instead of failing.
    #[arg(long)]
    skip_invalid: bool,

    /// For an unsigned component: its name in the output [default: the file
    /// name without extension, `_` as `-`]. A bundle's name is its manifest's.
    #[arg(long)]
    name: Option<String>,

    /// Verify the plugin (a signed bundle) against this trust store first,
    /// and refuse it if verification fails.
    #[arg(long, value_name = "DIR")]
    trust: Option<PathBuf>,

    /// Override a resource limit of the plugin, repeatable, with the keys of a
    /// manifest's `[limits]`: `--limit call_deadline_ms=100 --limit memory_mb=16`.
    #[arg(long = "limit", value_name = "KEY=VALUE", value_parser = parse_key_value)]
    limits: Vec<(String, String)>,

    /// Count fuel (WebAssembly operators executed, a deterministic CPU
    /// measure) and report it per reading on standard error.
    #[arg(long)]
    fuel: bool,

    /// Stop the plugin after every N readings, take its snapshot and go on in
    /// a fresh instance started from it; fail (exit 1) if the output differs
    /// from the uninterrupted replay's, which is run too (a 0.2 plugin whose
    /// manifest declares its snapshot schemas, or a plain 0.2 component).
    #[arg(long, value_name = "N", conflicts_with = "fuel")]
    snapshot_every: Option<NonZeroUsize>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    /// iglu CSV: header `id,time,gl`.
    IgluCsv,
    /// JSON lines of recorded bus messages.
    Jsonl,
}

fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.trim().to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

fn parse_tick(text: &str) -> Result<i64, String> {
    let duration = humantime::parse_duration(text).map_err(|e| format!("`{text}`: {e}"))?;
    match i64::try_from(duration.as_millis()) {
        Ok(ms) if ms > 0 => Ok(ms),
        _ => Err(format!("`{text}`: the tick must be at least 1ms")),
    }
}

pub fn run(args: ReplayArgs) -> Result<(), Failure> {
    let format = match args.format {
        Some(FormatArg::IgluCsv) => Format::IgluCsv,
        Some(FormatArg::Jsonl) => Format::Jsonl,
        None if args.input.extension().is_some_and(|e| e == "jsonl") => Format::Jsonl,
        None => Format::IgluCsv,
    };
    let recording = replay::load(&args.input, format, args.skip_invalid).map_err(Failure::usage)?;
    if let (Some(first), Some(last)) = (recording.readings.first(), recording.readings.last()) {
        let span = last.timestamp_ms.saturating_sub(first.timestamp_ms);
        if span / args.tick > MAX_TICKS {
            return Err(Failure::usage(anyhow!(
                "--tick {}ms is too fine for a recording spanning {} days: it would need over {MAX_TICKS} ticks",
                args.tick,
                span / 86_400_000
            )));
        }
    }

    let plugin = load_plugin(&args)?;
    let runtime = Runtime::new(RuntimeOptions {
        deterministic: true,
        fuel: args.fuel,
        ..RuntimeOptions::default()
    })
    .map_err(Failure::runtime)?;
    let (compiled, _) = plugin.compile(&runtime, None).map_err(Failure::usage)?;
    if args.snapshot_every.is_some() {
        takes_snapshots(&compiled)?;
    }
    // The plugin reads virtual time through WASI: the recording's start
    // during `init`, then the time of each call (byte-identical replays).
    let start_ms = recording.readings.first().map_or(0, |r| r.timestamp_ms);
    // With --snapshot-every, the replay to compare with: run first, whole,
    // on its own instance and clock, its batches cut at the same readings
    // (a wake is answered per call: the restarts must be the only
    // difference). The two cannot go in lockstep: a plugin that forgot a
    // state may ask for other ticks.
    let uninterrupted = match args.snapshot_every {
        Some(every) => Some(uninterrupted(
            &runtime, &compiled, &plugin, &recording, args.tick, every, start_ms,
        )?),
        None => None,
    };
    let clock = PluginClock::virtual_at(start_ms);
    let mut instance = start(&runtime, &compiled, &plugin, clock.clone())?;
    let mut restarts = Restarts::new(&runtime, &compiled, plugin.limits.clone(), &plugin.config, clock);
    let stops = match args.snapshot_every {
        Some(every) => Stops::Restart(every, &mut restarts),
        None => Stops::Never,
    };

    let provenance = &plugin.provenance;
    let keep_lines = args.expect.is_some() || uninterrupted.is_some();
    let mut lines: Vec<String> = Vec::new();
    let mut writer = open_output(args.out.as_deref(), args.expect.is_none()).map_err(Failure::usage)?;
    let mut write_error: Option<std::io::Error> = None;
    let mut seq = 0u64;
    let result = replay::replay(&mut instance, &recording, args.tick, stops, &mut |output| {
        seq += 1;
        let line = to_json_line(provenance, seq, output);
        if let (Some(out), None) = (writer.as_mut(), &write_error)
            && let Err(e) = writeln!(out, "{line}")
        {
            write_error = Some(e);
        }
        if keep_lines {
            lines.push(line);
        }
    });
    if let Some(mut out) = writer
        && write_error.is_none()
    {
        write_error = out.flush().err();
    }
    match write_error {
        Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            return Err(Failure::usage(anyhow!(e).context("cannot write the output")));
        }
        _ => {}
    }
    if let Some(fuel) = instance.fuel_used() {
        print_fuel(&fuel, recording.readings.len());
    }
    let report = result.map_err(Failure::runtime)?;
    let difference = uninterrupted
        .as_deref()
        .and_then(|expected| first_difference(expected, &lines));
    let round_trip = args.snapshot_every.map(|every| (every, difference.is_none()));
    print_report(&recording.stats, &report, round_trip);
    if let (Some(every), Some(difference)) = (args.snapshot_every, difference) {
        return Err(round_trip_failure(every, &report.snapshots, &difference));
    }

    match (&args.expect, args.update) {
        (Some(golden_path), true) => update_golden(golden_path, &lines),
        (Some(golden_path), false) => check_golden(golden_path, &lines),
        (None, _) => Ok(()),
    }
}

/// A fresh instance of `compiled` on `clock`, initialised with the plugin's
/// configuration (a configuration the plugin refuses is a usage error).
fn start(
    runtime: &Runtime,
    compiled: &CompiledPlugin,
    plugin: &Loaded,
    clock: PluginClock,
) -> Result<PluginInstance, Failure> {
    let mut instance =
        PluginInstance::with_clock(runtime, compiled, plugin.limits.clone(), clock).map_err(Failure::runtime)?;
    match instance.init(&plugin.config) {
        Ok(()) => Ok(instance),
        Err(error) => Err(match error.kind {
            PluginErrorKind::Returned(_) => Failure::usage(anyhow!("{error}: its configuration was refused")),
            _ => Failure::runtime(error),
        }),
    }
}

/// `--snapshot-every` needs a plugin that hands over snapshots: refused, as
/// a usage error, before any replay for a 0.1 plugin or a 0.2 bundle whose
/// manifest declares no snapshot schema.
fn takes_snapshots(compiled: &CompiledPlugin) -> Result<(), Failure> {
    let name = compiled.name();
    match (compiled.world(), compiled.snapshot_schemas()) {
        (World::V0_1, _) => Err(Failure::usage(anyhow!(
            "--snapshot-every: {name} targets {}, which has no snapshot",
            World::V0_1
        ))),
        (_, SnapshotSchemas::Undeclared) => Err(Failure::usage(about(
            format!("--snapshot-every: {name}"),
            SchemaRefused::Undeclared,
        ))),
        _ => Ok(()),
    }
}

/// The output lines of the uninterrupted replay, batched as the one that
/// restarts the plugin every `every` readings, to compare it with.
fn uninterrupted(
    runtime: &Runtime,
    compiled: &CompiledPlugin,
    plugin: &Loaded,
    recording: &replay::Recording,
    tick_ms: i64,
    every: NonZeroUsize,
    start_ms: i64,
) -> Result<Vec<String>, Failure> {
    let mut instance = start(runtime, compiled, plugin, PluginClock::virtual_at(start_ms))?;
    let mut lines = Vec::new();
    let mut seq = 0u64;
    replay::replay(&mut instance, recording, tick_ms, Stops::Every(every), &mut |output| {
        seq += 1;
        lines.push(to_json_line(&plugin.provenance, seq, output));
    })
    .map_err(|error| Failure::runtime(about("the uninterrupted replay (to compare with)", error)))?;
    Ok(lines)
}

/// The first line where the snapshotting replay's output differs from the
/// uninterrupted one's.
fn first_difference(uninterrupted: &[String], snapshotted: &[String]) -> Option<golden::LineDiff> {
    let uninterrupted: Vec<&str> = uninterrupted.iter().map(String::as_str).collect();
    let snapshotted: Vec<&str> = snapshotted.iter().map(String::as_str).collect();
    golden::compare(&uninterrupted, &snapshotted, 1).into_iter().next()
}

/// Report the first output a snapshot round trip changed, and the restore
/// point before it: the state the plugin left out of its snapshot was
/// needed from there on.
fn round_trip_failure(every: NonZeroUsize, snapshots: &SnapshotStats, difference: &golden::LineDiff) -> Failure {
    let index = difference.line as u64 - 1;
    let restored = match snapshots.restore_before_output(index) {
        Some(restore) => format!("restored after reading {} before it", restore.after_reading),
        // Both runs are batched alike, and the plugin is the same until the
        // first restore: only a plugin that is not a function of its inputs
        // (randomness, memory addresses) differs there.
        None => "before any restore: the plugin's outputs are not a function of its inputs".to_owned(),
    };
    let heading = format!(
        "output {} differs from the uninterrupted replay ({restored})",
        difference.line
    );
    let end = "(end of output)";
    print_difference(&heading, difference, [("uninterrupted", end), ("snapshotted", end)]);
    Failure::runtime(anyhow!(
        "the output with snapshots every {every} readings differs from the uninterrupted replay: \
         the plugin's snapshot leaves out state that shapes its outputs"
    ))
}

/// Load the plugin as a device would ([`load`]): with `--trust`, verified;
/// without, a signed bundle's manifest gives the name, version, digest,
/// default configuration and limits (with a warning that it was not
/// verified), and an unsigned component is named after its file.
fn load_plugin(args: &ReplayArgs) -> Result<Loaded, Failure> {
    let trust_store = match &args.trust {
        Some(trust_dir) => Some(TrustStore::load(trust_dir).map_err(Failure::usage)?),
        None => None,
    };
    let trust = match &trust_store {
        Some(store) => Trust::Verified { store, rollback: None },
        None => Trust::Unverified {
            name: args.name.clone().unwrap_or_else(|| plugin_name(&args.plugin)),
        },
    };
    let config: BTreeMap<String, String> = args.config.iter().cloned().collect();
    let limits = operator_limits(&args.limits)?;
    let operator = Operator {
        device: "replay",
        config: &config,
        limits: &limits,
        // Replay runs on virtual time as fast as the CPU goes: a real-time
        // output rate means nothing here (the per-call limits still hold).
        base: Limits {
            max_outputs_per_second: None,
            ..Limits::default()
        },
        ceilings: None,
    };
    let path = args.plugin.display();
    let loaded = load::load(&args.plugin, &trust, &operator).map_err(|error| match error {
        LoadError::Read(bundle::ReadBundleError::TooLarge(e)) => Failure::usage(anyhow!("plugin {path}: {e}")),
        LoadError::Read(bundle::ReadBundleError::Io { path, source }) => {
            Failure::usage(anyhow!("cannot read plugin {}: {source}", path.display()))
        }
        LoadError::Refused(e) => Failure::runtime(anyhow!("{path}: refused: {e}")),
        other => Failure::usage(anyhow!("{path}: {other}")),
    })?;
    if loaded.unverified_manifest {
        eprintln!("warning: {path} is signed but not verified (pass --trust DIR to verify it)");
    }
    Ok(loaded)
}

/// `--limit KEY=VALUE` options as limits over the manifest's.
fn operator_limits(pairs: &[(String, String)]) -> Result<ManifestLimits, Failure> {
    let text: String = pairs.iter().map(|(key, value)| format!("{key} = {value}\n")).collect();
    let limits: ManifestLimits =
        toml::from_str(&text).map_err(|e| Failure::usage(anyhow!("--limit: {}", e.message())))?;
    if let Some(key) = limits.zero_key() {
        return Err(Failure::usage(anyhow!("--limit {key}: must be greater than 0")));
    }
    Ok(limits)
}

/// Fuel per reading on standard error (`--fuel`).
fn print_fuel(fuel: &FuelUsed, readings: usize) {
    let per_reading = |fuel: u64| fuel as f64 / readings.max(1) as f64;
    eprintln!(
        "fuel: {:.0} per reading ({:.0} in on-readings, {:.0} in on-tick); init {}",
        per_reading(fuel.on_readings + fuel.on_tick),
        per_reading(fuel.on_readings),
        per_reading(fuel.on_tick),
        fuel.init
    );
}

/// The plugin name from its file: `glucose_monitor.wasm` -> `glucose-monitor`.
fn plugin_name(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().replace('_', "-"))
        .unwrap_or_else(|| "plugin".to_owned())
}

/// Where lines go: `--out`, else stdout unless a golden comparison was asked for.
fn open_output(out: Option<&Path>, stdout_by_default: bool) -> anyhow::Result<Option<Box<dyn Write>>> {
    Ok(match out {
        Some(path) => {
            let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
            Some(Box::new(BufWriter::new(file)))
        }
        None if stdout_by_default => Some(Box::new(BufWriter::new(std::io::stdout().lock()))),
        None => None,
    })
}

/// The replay's report on standard error; with `--snapshot-every`, the
/// snapshots and whether the output is the uninterrupted replay's.
fn print_report(stats: &replay::ReadStats, report: &ReplayReport, round_trip: Option<(NonZeroUsize, bool)>) {
    let skipped = stats.na + stats.duplicates + stats.invalid;
    let seconds = report.elapsed.as_secs_f64();
    let rate = if seconds > 0.0 {
        report.readings as f64 / seconds
    } else {
        0.0
    };
    eprintln!(
        "replay: {} rows read, {} readings replayed",
        stats.rows, report.readings
    );
    eprintln!(
        "  skipped: {skipped} (NA: {}, duplicate timestamp: {}, invalid row: {}); out of order (sorted): {}",
        stats.na, stats.duplicates, stats.invalid, stats.out_of_order
    );
    eprintln!(
        "  alerts: {}, summaries: {}, ticks: {}",
        report.alerts, report.summaries, report.ticks
    );
    if report.wakes_deferred > 0 {
        eprintln!(
            "  wakes deferred: {} (asked sooner than {} ms after the last tick: ticked then)",
            report.wakes_deferred, MIN_WAKE_INTERVAL_MS
        );
    }
    if let Some((every, identical)) = round_trip {
        let snapshots = &report.snapshots;
        eprintln!(
            "  snapshots: {} (every {every} readings), {} bytes in all, {} at most; output {} the uninterrupted replay",
            snapshots.taken,
            snapshots.total_bytes,
            snapshots.max_bytes,
            if identical { "identical to" } else { "differs from" }
        );
    }
    eprintln!("  {seconds:.3} s, {rate:.0} readings/s");
}

/// `heading`, the field that differs first, and both lines, each under its
/// label (what the expected and the actual lines are, and what stands for
/// a line past the end).
fn print_difference(heading: &str, diff: &golden::LineDiff, labels: [(&str, &str); 2]) {
    let [(expected, expected_end), (actual, actual_end)] = labels;
    match diff.first_field_difference() {
        Some((field, expected_value, actual_value)) => {
            eprintln!("{heading}: field `{field}`: {expected} {expected_value}, {actual} {actual_value}")
        }
        None => eprintln!("{heading}:"),
    }
    let width = expected.len().max(actual.len()) + 1;
    let expected_label = format!("{expected}:");
    let actual_label = format!("{actual}:");
    eprintln!(
        "  {expected_label:width$} {}",
        diff.expected.as_deref().unwrap_or(expected_end)
    );
    eprintln!(
        "  {actual_label:width$} {}",
        diff.actual.as_deref().unwrap_or(actual_end)
    );
}

fn update_golden(path: &Path, lines: &[String]) -> Result<(), Failure> {
    let mut text = lines.join("\n");
    if !lines.is_empty() {
        text.push('\n');
    }
    use edgewise_host::files::{Access, Existing, write_atomic};
    write_atomic(path, text.as_bytes(), Access::Shared, Existing::Replace)
        .with_context(|| format!("cannot write golden file {}", path.display()))
        .map_err(Failure::usage)?;
    eprintln!("updated {} ({} lines)", path.display(), lines.len());
    Ok(())
}

fn check_golden(path: &Path, lines: &[String]) -> Result<(), Failure> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read golden file {}", path.display()))
        .map_err(Failure::usage)?;
    let expected: Vec<&str> = text.lines().collect();
    let actual: Vec<&str> = lines.iter().map(String::as_str).collect();
    let diffs = golden::compare(&expected, &actual, MAX_DIFFS_SHOWN);
    if diffs.is_empty() {
        eprintln!("output matches {} ({} lines)", path.display(), lines.len());
        return Ok(());
    }
    eprintln!(
        "output differs from {} (golden: {} lines, output: {} lines); first differences:",
        path.display(),
        expected.len(),
        actual.len()
    );
    for diff in &diffs {
        let labels = [("expected", "(end of file)"), ("actual", "(end of output)")];
        print_difference(&format!("line {}", diff.line), diff, labels);
    }
    Err(Failure::runtime(anyhow!(
        "output differs from golden file {} (rerun with --update to accept)",
        path.display()
    )))
}
