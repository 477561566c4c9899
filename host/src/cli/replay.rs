//! `edgewise replay`: run a plugin over recorded data on a virtual clock.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};
use clap::{Args, ValueEnum};

use edgewise_host::bundle::{self, ManifestLimits, TrustStore};
use edgewise_host::envelope::plugin_output_line;
use edgewise_host::load::{self, LoadError, Loaded, Operator, Trust};
use edgewise_host::output_check::Problems;
use edgewise_host::replay::{self, Format, ReplayReport, Restarts, SnapshotStats, Stops, Subscriptions, golden};
use edgewise_host::runtime::{
    CompiledPlugin, FuelUsed, Limits, MIN_WAKE_INTERVAL_MS, PluginClock, PluginErrorKind, PluginInstance, Runtime,
    RuntimeOptions, SchemaRefused, SnapshotSchemas, World,
};

use super::Failure;
use super::exit::about;
use super::golden::{self as golden_file, Labels, Verdict};

/// `--tick`'s default: 5 minutes (as `5m` in the help).
pub(super) const DEFAULT_TICK_MS: i64 = 5 * 60 * 1000;

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

    /// Replay a plain component as the bundle `edgewise sign --manifest FILE`
    /// would make of it: the manifest's name, version, configuration
    /// defaults, limits, subscriptions, snapshot schemas and assets, without
    /// signing it.
    #[arg(long, value_name = "edgewise.toml", conflicts_with_all = ["trust", "name"])]
    manifest: Option<PathBuf>,

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

    /// The most `on-tick` calls the replay makes: past them it stops with an
    /// error (a 0.2 plugin is ticked when it asks, up to once a virtual
    /// second; a recording spanning centuries would take hours).
    #[arg(long, value_name = "N", default_value_t = replay::MAX_TICKS,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_ticks: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum FormatArg {
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

pub(super) fn parse_tick(text: &str) -> Result<i64, String> {
    let duration = humantime::parse_duration(text).map_err(|e| format!("`{text}`: {e}"))?;
    match i64::try_from(duration.as_millis()) {
        Ok(ms) if ms > 0 => Ok(ms),
        _ => Err(format!("`{text}`: the tick must be at least 1ms")),
    }
}

pub fn run(args: ReplayArgs) -> Result<(), Failure> {
    let config: BTreeMap<String, String> = args.config.iter().cloned().collect();
    let plugin = load_plugin(&PluginSource {
        path: &args.plugin,
        trust: args.trust.as_deref(),
        name: args.name.as_deref(),
        manifest: args.manifest.as_deref(),
        config: &config,
        limits: &args.limits,
    })?;
    // The plugin first: its manifest says which readings of the recording
    // it takes, and what is wrong with it is said before the recording's
    // problems.
    let (runtime, compiled) = compile(&plugin, args.fuel)?;
    if args.snapshot_every.is_some() {
        takes_snapshots(&compiled)?;
    }
    let format = format_of(&args.input, args.format);
    let recording = load_recording(
        &args.input,
        format,
        args.skip_invalid,
        subscriptions(&plugin),
        args.tick,
        args.max_ticks,
    )?;
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
            &runtime,
            &compiled,
            &plugin,
            &recording,
            (args.tick, args.max_ticks),
            every,
            start_ms,
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
    let mut flagged = (0u64, Problems::default());
    let result = replay::replay(
        &mut instance,
        &recording,
        args.tick,
        args.max_ticks,
        stops,
        &mut |output| {
            seq += 1;
            let (line, problems) = plugin_output_line(provenance, seq, output);
            if !problems.is_empty() {
                flagged = (flagged.0 + 1, flagged.1.union(problems));
            }
            if let (Some(out), None) = (writer.as_mut(), &write_error)
                && let Err(e) = writeln!(out, "{line}")
            {
                write_error = Some(e);
            }
            if keep_lines {
                lines.push(line);
            }
        },
    );
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
    let report = result.map_err(failure)?;
    let difference = uninterrupted
        .as_deref()
        .and_then(|expected| first_difference(expected, &lines));
    let round_trip = args.snapshot_every.map(|every| (every, difference.is_none()));
    print_report(&recording.stats, &report, round_trip, subscriptions(&plugin));
    if flagged.0 > 0 {
        eprintln!(
            "  outputs with problems: {} ({}): each written as made, naming its problems in `problems`",
            flagged.0,
            flagged.1.names()
        );
    }
    if let (Some(every), Some(difference)) = (args.snapshot_every, difference) {
        return Err(round_trip_failure(every, &report.snapshots, &difference));
    }

    match (&args.expect, args.update) {
        (Some(golden_path), true) => update_golden(golden_path, &lines),
        (Some(golden_path), false) => check_golden(golden_path, &lines),
        (None, _) => Ok(()),
    }
}

/// The recording's format: `--format`, else by its extension (`.jsonl` in
/// any case: JSON lines, as the trainer reads it; anything else iglu CSV).
pub(super) fn format_of(input: &Path, format: Option<FormatArg>) -> Format {
    match format {
        Some(FormatArg::IgluCsv) => Format::IgluCsv,
        Some(FormatArg::Jsonl) => Format::Jsonl,
        None if input.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl")) => Format::Jsonl,
        None => Format::IgluCsv,
    }
}

/// The subject filters a replay of `plugin` applies: its manifest's
/// subscriptions; `None` (every reading) for a plain component.
pub(super) fn subscriptions(plugin: &Loaded) -> Option<&[String]> {
    plugin
        .manifest
        .as_ref()
        .map(|manifest| manifest.subscriptions.as_slice())
}

/// Load the recording at `input`: the readings on the subjects `filters`
/// match (every reading without); none of them is a usage error (the wrong recording for
/// this plugin), as is a tick too fine for its span (over `max_ticks`).
pub(super) fn load_recording(
    input: &Path,
    format: Format,
    skip_invalid: bool,
    filters: Option<&[String]>,
    tick: i64,
    max_ticks: u64,
) -> Result<replay::Recording, Failure> {
    let taken = filters.map_or(Subscriptions::All, Subscriptions::Filters);
    let recording = replay::load_subscribed(input, format, skip_invalid, taken).map_err(Failure::usage)?;
    if let Some(filters) = filters
        && recording.readings.is_empty()
        && recording.stats.unsubscribed > 0
    {
        return Err(Failure::usage(anyhow!(
            "{}: none of its {} readings is on a subject the plugin subscribes to ({}); {}",
            input.display(),
            recording.stats.unsubscribed,
            filters.join(", "),
            SUBJECTS_OF_RECORDINGS
        )));
    }
    if let (Some(first), Some(last)) = (recording.readings.first(), recording.readings.last()) {
        let span = last.timestamp_ms.saturating_sub(first.timestamp_ms);
        if span / tick > i64::try_from(max_ticks).unwrap_or(i64::MAX) {
            return Err(Failure::usage(anyhow!(
                "--tick {tick}ms is too fine for a recording spanning {} days: it would need over {max_ticks} ticks",
                span / 86_400_000
            )));
        }
    }
    Ok(recording)
}

/// Where a recording's subjects come from, for the messages that name them.
const SUBJECTS_OF_RECORDINGS: &str =
    "a JSON-lines recording's subjects are its messages', an iglu CSV row's is `sensors.cgm.<id>`";

/// A deterministic runtime (counting fuel with `fuel`) and `plugin` compiled in it.
pub(super) fn compile(plugin: &Loaded, fuel: bool) -> Result<(Runtime, CompiledPlugin), Failure> {
    let runtime = Runtime::new(RuntimeOptions {
        deterministic: true,
        fuel,
        ..RuntimeOptions::default()
    })
    .map_err(Failure::runtime)?;
    let (compiled, _) = plugin.compile(&runtime, None).map_err(Failure::usage)?;
    Ok((runtime, compiled))
}

/// A fresh instance of `compiled` on `clock`, initialised with the plugin's
/// configuration (a configuration the plugin refuses is a usage error).
pub(super) fn start(
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
    (tick_ms, max_ticks): (i64, u64),
    every: NonZeroUsize,
    start_ms: i64,
) -> Result<Vec<String>, Failure> {
    let instance = start(runtime, compiled, plugin, PluginClock::virtual_at(start_ms))?;
    replay_lines(instance, plugin, recording, tick_ms, max_ticks, Stops::Every(every))
        .map(|(lines, _)| lines)
        .map_err(|error| match error {
            too_many @ replay::ReplayError::TooManyTicks { .. } => failure(too_many),
            error => Failure::runtime(about("the uninterrupted replay (to compare with)", error)),
        })
}

/// A replay's failure: too many ticks is a usage error (the recording's
/// timestamps or `--max-ticks`), anything else the plugin's (exit 1).
pub(super) fn failure(error: replay::ReplayError) -> Failure {
    match error {
        replay::ReplayError::TooManyTicks { limit, at_ms } => Failure::usage(anyhow!(
            "the replay made its {limit} ticks (--max-ticks) by {} and the plugin asks for more: \
             a 0.2 plugin is ticked when it asks, up to once a virtual second; check the recording's \
             timestamps, or raise --max-ticks",
            utc(at_ms)
        )),
        error => Failure::runtime(error),
    }
}

/// `ms` since the epoch as an RFC 3339 UTC time (the number if out of range).
fn utc(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Replay `recording` through `instance` (started on the recording's
/// virtual clock): its output lines and the report.
pub(super) fn replay_lines(
    mut instance: PluginInstance,
    plugin: &Loaded,
    recording: &replay::Recording,
    tick_ms: i64,
    max_ticks: u64,
    stops: Stops,
) -> Result<(Vec<String>, ReplayReport), replay::ReplayError> {
    let mut lines = Vec::new();
    let mut seq = 0u64;
    let report = replay::replay(&mut instance, recording, tick_ms, max_ticks, stops, &mut |output| {
        seq += 1;
        lines.push(plugin_output_line(&plugin.provenance, seq, output).0);
    })?;
    Ok((lines, report))
}

/// The first output where the snapshotting replay differs from the
/// uninterrupted one, aligned.
fn first_difference(uninterrupted: &[String], snapshotted: &[String]) -> Option<golden::LineDiff> {
    let uninterrupted: Vec<&str> = uninterrupted.iter().map(String::as_str).collect();
    let snapshotted: Vec<&str> = snapshotted.iter().map(String::as_str).collect();
    golden::diff(&uninterrupted, &snapshotted).into_iter().next()
}

/// Report the first output a snapshot round trip changed, and the restore
/// point before it: the state the plugin left out of its snapshot was
/// needed from there on.
fn round_trip_failure(every: NonZeroUsize, snapshots: &SnapshotStats, difference: &golden::LineDiff) -> Failure {
    let index = difference.output_line as u64 - 1;
    let restored = match snapshots.restore_before_output(index) {
        Some(restore) => format!("restored after reading {} before it", restore.after_reading),
        // Both runs are batched alike, and the plugin is the same until the
        // first restore: only a plugin that is not a function of its inputs
        // (randomness, memory addresses) differs there.
        None => "before any restore: the plugin's outputs are not a function of its inputs".to_owned(),
    };
    let heading = format!(
        "output {} differs from the uninterrupted replay ({restored})",
        difference.output_line
    );
    let labels = Labels {
        expected_file: "uninterrupted",
        expected: "uninterrupted",
        actual_file: "snapshotted",
        actual: "snapshotted",
    };
    // Standard error is where the report goes; a failed write there has
    // nowhere to be reported.
    let _ = golden_file::write_diff(&mut std::io::stderr().lock(), Some(&heading), difference, labels);
    Failure::runtime(anyhow!(
        "the output with snapshots every {every} readings differs from the uninterrupted replay: \
         the plugin's snapshot leaves out state that shapes its outputs"
    ))
}

/// Which plugin file to load, and the operator's settings over its manifest.
pub(super) struct PluginSource<'a> {
    /// The component or bundle.
    pub path: &'a Path,
    /// `--trust DIR`: verify it first.
    pub trust: Option<&'a Path>,
    /// `--name`: an unsigned component's name.
    pub name: Option<&'a str>,
    /// `--manifest`: the manifest source of a plain component.
    pub manifest: Option<&'a Path>,
    /// `--config` values.
    pub config: &'a BTreeMap<String, String>,
    /// `--limit` values.
    pub limits: &'a [(String, String)],
}

/// Load the plugin as a device would ([`load`]): with `--trust`, verified;
/// without, a signed bundle's manifest gives the name, version, digest,
/// default configuration, limits and subscriptions (with a warning that it
/// was not verified), and an unsigned component is named after its file.
pub(super) fn load_plugin(source: &PluginSource) -> Result<Loaded, Failure> {
    let trust_store = match source.trust {
        Some(trust_dir) => Some(TrustStore::load(trust_dir).map_err(Failure::usage)?),
        None => None,
    };
    let trust = match &trust_store {
        Some(store) => Trust::Verified { store, rollback: None },
        None => Trust::Unverified {
            name: source.name.map_or_else(|| plugin_name(source.path), str::to_owned),
        },
    };
    let limits = operator_limits(source.limits)?;
    let operator = Operator {
        device: "replay",
        config: source.config,
        limits: &limits,
        // Replay runs on virtual time as fast as the CPU goes: a real-time
        // output rate means nothing here (the per-call limits still hold).
        base: Limits {
            max_outputs_per_second: None,
            ..Limits::default()
        },
        ceilings: None,
    };
    let path = source.path.display();
    let loaded = match source.manifest {
        Some(manifest) => load_with_manifest(source.path, manifest, &operator)?,
        None => load::load(source.path, &trust, &operator),
    };
    let mut loaded = loaded.map_err(|error| match error {
        LoadError::Read(bundle::ReadBundleError::TooLarge(e)) => Failure::usage(anyhow!("plugin {path}: {e}")),
        LoadError::Read(bundle::ReadBundleError::Io { path, source }) => {
            Failure::usage(anyhow!("cannot read plugin {}: {source}", path.display()))
        }
        LoadError::Refused(e) => Failure::runtime(anyhow!("{path}: refused: {e}")),
        other => Failure::usage(anyhow!("{path}: {other}")),
    })?;
    // Not the manifest's (or `--limit`'s) either: `outputs_per_second` is
    // for `edgewise run` (docs/manifest.md); over virtual time it would
    // make a replay's output depend on how fast the machine is.
    loaded.limits.max_outputs_per_second = None;
    if loaded.unverified_manifest && source.manifest.is_none() {
        eprintln!("warning: {path} is signed but not verified (pass --trust DIR to verify it)");
    }
    Ok(loaded)
}

/// [`load::load_with_manifest`] with the manifest source at `path` (the
/// assets' paths relative to its folder). A source that cannot be read or
/// parsed is a usage error here; what loading says is the caller's.
fn load_with_manifest(
    component: &Path,
    path: &Path,
    operator: &Operator<'_>,
) -> Result<Result<Loaded, LoadError>, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(anyhow!("cannot read manifest {}: {e}", path.display())))?;
    let source = bundle::ManifestSource::from_toml(&text).map_err(|e| Failure::usage(about(path.display(), e)))?;
    let dir = path.parent().unwrap_or_else(|| Path::new(""));
    Ok(load::load_with_manifest(component, source, dir, operator))
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
fn print_report(
    stats: &replay::ReadStats,
    report: &ReplayReport,
    round_trip: Option<(NonZeroUsize, bool)>,
    subscriptions: Option<&[String]>,
) {
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
    match subscriptions {
        Some(filters) => eprintln!(
            "  subscriptions: {}; readings on other subjects (skipped): {}",
            filters.join(", "),
            stats.unsubscribed
        ),
        None => eprintln!("  subscriptions: none (a plain component): every reading replayed"),
    }
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

fn update_golden(path: &Path, lines: &[String]) -> Result<(), Failure> {
    golden_file::update(path, lines).map_err(Failure::usage)?;
    eprintln!("updated {} ({} lines)", path.display(), lines.len());
    Ok(())
}

fn check_golden(path: &Path, lines: &[String]) -> Result<(), Failure> {
    match golden_file::check(path, lines).map_err(Failure::usage)? {
        Verdict::Matches(count) => {
            eprintln!("output matches {} ({count} lines)", path.display());
            Ok(())
        }
        Verdict::Missing => Err(Failure::usage(anyhow!(golden_file::missing(path)))),
        Verdict::Differs {
            expected,
            actual,
            diffs,
        } => {
            let _ = golden_file::write_mismatch(&mut std::io::stderr().lock(), path, expected, actual, &diffs);
            Err(Failure::runtime(anyhow!(
                "output differs from golden file {} (rerun with --update to accept)",
                path.display()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::{Format, FormatArg, format_of};

    #[test]
    fn the_default_tick_is_the_one_the_help_shows() {
        assert_eq!(super::parse_tick("5m"), Ok(super::DEFAULT_TICK_MS));
    }

    #[test]
    fn json_lines_are_known_by_their_extension_in_any_case_unless_told() {
        for name in ["edge.jsonl", "EDGE.JSONL", "a/b.JsonL"] {
            assert!(matches!(format_of(Path::new(name), None), Format::Jsonl), "{name}");
        }
        for name in ["edge.csv", "edge.jsonl.csv", "jsonl"] {
            assert!(matches!(format_of(Path::new(name), None), Format::IgluCsv), "{name}");
        }
        assert!(matches!(
            format_of(Path::new("edge.jsonl"), Some(FormatArg::IgluCsv)),
            Format::IgluCsv
        ));
    }
}
