//! `edgewise test [PLUGIN_DIR]`: replay every recording of a plugin's
//! `tests/replay/` folder and compare each output with its golden file, for
//! plugin authors and their CI.
//!
//! The folder (docs/operators.md, "Testing a plugin"):
//! - `NAME.csv` (iglu CSV) or `NAME.jsonl` (JSON lines): a recording;
//! - `NAME.golden.jsonl`: its golden output (`--update` writes it);
//! - `NAME.toml` (optional): that recording's replay options, `config`,
//!   `tick` and `skip_invalid`, as `edgewise replay`'s flags.
//!
//! The plugin is `--plugin FILE` (a component or a signed bundle), else the
//! crate's release build for wasm32-wasip2, found with `cargo metadata`.
//! A plain component is replayed as the bundle the folder's `edgewise.toml`
//! (if any) will make of it: its subscriptions, configuration defaults,
//! limits and assets (`edgewise replay --manifest`).
//!
//! Exit codes: 0 every pair matches (or was written with `--update`), 1 an
//! output differs, a golden file is missing or the plugin failed, 2 bad
//! usage or unreadable input (a recording, an options file, the plugin).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, anyhow};
use clap::Args;
use serde::Deserialize;

use edgewise_host::bundle::manifest::config_value_text;
use edgewise_host::load::Loaded;
use edgewise_host::replay::Stops;
use edgewise_host::runtime::{CompiledPlugin, PluginClock, Runtime};

use super::Failure;
use super::exit::{FAILURE, USAGE, to_stdout};
use super::golden::{self, Verdict};
use super::replay::{self, PluginSource};

/// Where a plugin's recordings and golden files are, under its folder.
pub const REPLAY_DIR: &str = "tests/replay";
/// The end of a golden file's name: `NAME.golden.jsonl`.
const GOLDEN_SUFFIX: &str = ".golden.jsonl";
/// The WebAssembly target plugins are built for.
const WASM_TARGET: &str = "wasm32-wasip2";

#[derive(Debug, Args)]
pub struct TestArgs {
    /// The plugin's crate folder [default: the current directory].
    #[arg(value_name = "PLUGIN_DIR")]
    dir: Option<PathBuf>,

    /// The plugin to test: a component or a signed bundle [default: the
    /// crate's `target/wasm32-wasip2/release/<lib name>.wasm`, found with
    /// `cargo metadata`; build it first].
    #[arg(long, value_name = "FILE")]
    plugin: Option<PathBuf>,

    /// Verify the plugin (a signed bundle) against this trust store first.
    #[arg(long, value_name = "DIR")]
    trust: Option<PathBuf>,

    /// Write every golden file from this run's output (creating the folder's
    /// missing ones) instead of comparing.
    #[arg(long)]
    update: bool,
}

/// One recording's replay options (`NAME.toml`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// `--config KEY=VALUE`: strings, numbers or booleans.
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
    /// `--tick` (a 0.1 plugin's tick interval), e.g. `"1m"`.
    tick: Option<String>,
    /// `--skip-invalid`.
    #[serde(default)]
    skip_invalid: bool,
}

/// A recording with its golden file and options.
#[derive(Debug)]
struct Pair {
    name: String,
    recording: PathBuf,
    golden: PathBuf,
    options: Option<PathBuf>,
}

/// What became of one pair.
enum Outcome {
    Matches(usize),
    Updated(usize),
    Differs(Vec<u8>),
    Missing,
    /// The plugin failed while replaying it (exit 1).
    Failed(anyhow::Error),
    /// Its recording, options or golden file could not be read (exit 2).
    Unreadable(anyhow::Error),
}

pub fn run(args: TestArgs) -> Result<(), Failure> {
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from("."));
    if !dir.is_dir() {
        return Err(Failure::usage(anyhow!("{} is not a folder", dir.display())));
    }
    let pairs = find_pairs(&dir.join(REPLAY_DIR))?;
    let plugin_path = match &args.plugin {
        Some(path) => path.clone(),
        None => built_component(&dir)?,
    };
    // A plain component runs as the bundle the folder's manifest will make
    // of it: subscriptions, configuration defaults, limits, assets. The
    // crate's own build is one; a `--plugin` may be a signed bundle (and
    // `--trust` asks for one), so it is loaded first to see.
    let manifest_file = dir.join("edgewise.toml");
    let folder_manifest = manifest_file.is_file().then_some(manifest_file.as_path());
    let no_config = BTreeMap::new();
    let mut source = PluginSource {
        path: &plugin_path,
        trust: args.trust.as_deref(),
        name: None,
        manifest: folder_manifest.filter(|_| args.plugin.is_none() && args.trust.is_none()),
        config: &no_config,
        limits: &[],
    };
    let mut plugin = replay::load_plugin(&source)?;
    // (Loaded with a manifest, it has one.)
    if plugin.manifest.is_none() && folder_manifest.is_some() {
        source.manifest = folder_manifest;
        plugin = replay::load_plugin(&source)?;
    }
    let (runtime, compiled) = replay::compile(&plugin, false)?;
    let tester = Tester {
        runtime: &runtime,
        compiled: &compiled,
        plugin: &plugin,
        source: &source,
        update: args.update,
    };
    let mut counts = Counts::default();
    for pair in &pairs {
        let outcome = tester.run(pair);
        to_stdout(|out| print_outcome(out, pair, &outcome))?;
        counts.add(&outcome);
    }
    to_stdout(|out| counts.print(out, &plugin_path))?;
    counts.result()
}

/// Everything a pair's replay needs, loaded and compiled once.
struct Tester<'a> {
    runtime: &'a Runtime,
    compiled: &'a CompiledPlugin,
    plugin: &'a Loaded,
    source: &'a PluginSource<'a>,
    update: bool,
}

impl Tester<'_> {
    fn run(&self, pair: &Pair) -> Outcome {
        let options = match read_options(pair.options.as_deref()) {
            Ok(options) => options,
            Err(error) => return Outcome::Unreadable(error),
        };
        let tick = match options.tick.as_deref().map(replay::parse_tick).transpose() {
            Ok(tick) => tick.unwrap_or(replay::DEFAULT_TICK_MS),
            Err(reason) => return Outcome::Unreadable(anyhow!("{}: tick {reason}", display(&pair.options))),
        };
        // The options' configuration over the manifest's: loaded again
        // (cheap), compiled once.
        let reloaded;
        let plugin = match options.config.is_empty() {
            true => self.plugin,
            false => {
                let config = match config_texts(&options.config, &pair.options) {
                    Ok(config) => config,
                    Err(error) => return Outcome::Unreadable(error),
                };
                let source = PluginSource {
                    config: &config,
                    ..*self.source
                };
                reloaded = match replay::load_plugin(&source) {
                    Ok(plugin) => plugin,
                    Err(failure) => return Outcome::Unreadable(failure.into_error()),
                };
                &reloaded
            }
        };
        let format = replay::format_of(&pair.recording, None);
        let filters = replay::subscriptions(plugin);
        let recording = match replay::load_recording(
            &pair.recording,
            format,
            options.skip_invalid,
            filters,
            tick,
            edgewise_host::replay::MAX_TICKS,
        ) {
            Ok(recording) => recording,
            Err(failure) => return Outcome::Unreadable(failure.into_error()),
        };
        let start_ms = recording.readings.first().map_or(0, |r| r.timestamp_ms);
        let instance = match replay::start(self.runtime, self.compiled, plugin, PluginClock::virtual_at(start_ms)) {
            Ok(instance) => instance,
            Err(failure) => return Outcome::Failed(failure.into_error()),
        };
        let lines = match replay::replay_lines(
            instance,
            plugin,
            &recording,
            tick,
            edgewise_host::replay::MAX_TICKS,
            Stops::Never,
        ) {
            Ok((lines, _)) => lines,
            Err(error) => return Outcome::Failed(error.into()),
        };
        if self.update {
            return match golden::update(&pair.golden, &lines) {
                Ok(()) => Outcome::Updated(lines.len()),
                Err(error) => Outcome::Unreadable(error),
            };
        }
        match golden::check(&pair.golden, &lines) {
            Ok(Verdict::Matches(count)) => Outcome::Matches(count),
            Ok(Verdict::Missing) => Outcome::Missing,
            Ok(Verdict::Differs {
                expected,
                actual,
                diffs,
            }) => {
                let mut text = Vec::new();
                // Writing into a Vec cannot fail.
                let _ = golden::write_mismatch(&mut text, &pair.golden, expected, actual, &diffs);
                Outcome::Differs(text)
            }
            Err(error) => Outcome::Unreadable(error),
        }
    }
}

fn display(path: &Option<PathBuf>) -> String {
    path.as_deref().map_or_else(String::new, |p| p.display().to_string())
}

/// The recordings of `folder` with their golden files and options, by name.
fn find_pairs(folder: &Path) -> Result<Vec<Pair>, Failure> {
    let entries = std::fs::read_dir(folder).map_err(|e| {
        Failure::usage(anyhow!(
            "cannot read {}: {e} (a plugin's recordings are {REPLAY_DIR}/NAME.csv or NAME.jsonl, \
             each with NAME{GOLDEN_SUFFIX})",
            folder.display()
        ))
    })?;
    let mut pairs = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|e| Failure::usage(anyhow!("cannot read {}: {e}", folder.display())))?
            .path();
        let Some(file_name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(stem) = file_name.strip_suffix(GOLDEN_SUFFIX) {
            if !["csv", "jsonl"]
                .iter()
                .any(|ext| folder.join(format!("{stem}.{ext}")).exists())
            {
                eprintln!(
                    "warning: {} has no recording ({stem}.csv or {stem}.jsonl)",
                    path.display()
                );
            }
            continue;
        }
        let Some((name, "csv" | "jsonl")) = file_name.rsplit_once('.') else {
            continue;
        };
        let options = folder.join(format!("{name}.toml"));
        pairs.push(Pair {
            name: name.to_owned(),
            recording: path.clone(),
            golden: folder.join(format!("{name}{GOLDEN_SUFFIX}")),
            options: options.exists().then_some(options),
        });
    }
    if pairs.is_empty() {
        return Err(Failure::usage(anyhow!(
            "no recordings in {} (NAME.csv or NAME.jsonl, each with NAME{GOLDEN_SUFFIX})",
            folder.display()
        )));
    }
    pairs.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.recording.cmp(&b.recording)));
    // NAME.csv and NAME.jsonl would share NAME.golden.jsonl: `--update`
    // would write one recording's output over the other's.
    if let Some(twins) = pairs.windows(2).find(|two| two[0].name == two[1].name) {
        return Err(Failure::usage(anyhow!(
            "{} and {} would share the golden file {}: rename one",
            twins[0].recording.display(),
            twins[1].recording.display(),
            twins[0].golden.display()
        )));
    }
    Ok(pairs)
}

fn read_options(path: Option<&Path>) -> anyhow::Result<Options> {
    let Some(path) = path else {
        return Ok(Options::default());
    };
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    toml::from_str(&text)
        .with_context(|| format!("{}: not replay options (config, tick, skip_invalid)", path.display()))
}

fn config_texts(
    config: &BTreeMap<String, toml::Value>,
    path: &Option<PathBuf>,
) -> anyhow::Result<BTreeMap<String, String>> {
    config
        .iter()
        .map(|(key, value)| match config_value_text(value) {
            Some(text) => Ok((key.clone(), text)),
            None => Err(anyhow!(
                "{}: config `{key}` = {value}: values must be strings, numbers or booleans",
                display(path)
            )),
        })
        .collect()
}

/// The crate's release component: `<target dir>/wasm32-wasip2/release/<lib
/// name>.wasm`, the target folder and the library's name from `cargo metadata`.
fn built_component(dir: &Path) -> Result<PathBuf, Failure> {
    let manifest = dir.join("Cargo.toml");
    if !manifest.is_file() {
        return Err(Failure::usage(anyhow!(
            "{} has no Cargo.toml: give the plugin with --plugin FILE",
            dir.display()
        )));
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(&cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .map_err(|e| Failure::usage(anyhow!("cannot run cargo metadata (or give --plugin FILE): {e}")))?;
    if !output.status.success() {
        return Err(Failure::usage(anyhow!(
            "cargo metadata failed for {}: {}",
            manifest.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    let metadata: Metadata = serde_json::from_slice(&output.stdout)
        .map_err(|e| Failure::usage(anyhow!("cargo metadata: unexpected output: {e}")))?;
    let manifest = manifest
        .canonicalize()
        .map_err(|e| Failure::usage(anyhow!("{}: {e}", manifest.display())))?;
    let package = metadata
        .packages
        .iter()
        .find(|p| p.manifest_path.canonicalize().is_ok_and(|m| m == manifest))
        .ok_or_else(|| Failure::usage(anyhow!("{} is not a package (a workspace root?)", manifest.display())))?;
    let library = package
        .targets
        .iter()
        .find(|t| t.kind.iter().any(|k| k == "cdylib"))
        .ok_or_else(|| {
            Failure::usage(anyhow!(
                "package `{}` has no cdylib library (a plugin's Cargo.toml has crate-type = [\"cdylib\"])",
                package.name
            ))
        })?;
    let path = metadata
        .target_directory
        .join(WASM_TARGET)
        .join("release")
        .join(format!("{}.wasm", library.name.replace('-', "_")));
    if !path.is_file() {
        return Err(Failure::usage(anyhow!(
            "{} is not built: run `cargo build --release --target {WASM_TARGET}` in {} first (or give --plugin FILE)",
            path.display(),
            dir.display()
        )));
    }
    Ok(path)
}

/// What `cargo metadata` says that this command needs.
#[derive(Deserialize)]
struct Metadata {
    packages: Vec<Package>,
    target_directory: PathBuf,
}

#[derive(Deserialize)]
struct Package {
    name: String,
    manifest_path: PathBuf,
    targets: Vec<Target>,
}

#[derive(Deserialize)]
struct Target {
    name: String,
    kind: Vec<String>,
}

fn print_outcome(out: &mut dyn Write, pair: &Pair, outcome: &Outcome) -> std::io::Result<()> {
    let name = &pair.name;
    match outcome {
        Outcome::Matches(lines) => writeln!(out, "replay {name} ... ok ({lines} lines)"),
        Outcome::Updated(lines) => writeln!(
            out,
            "replay {name} ... updated {} ({lines} lines)",
            pair.golden.display()
        ),
        Outcome::Differs(diff) => {
            writeln!(out, "replay {name} ... FAILED")?;
            out.write_all(diff)
        }
        Outcome::Missing => writeln!(
            out,
            "replay {name} ... missing golden: {}",
            golden::missing(&pair.golden)
        ),
        Outcome::Failed(error) => writeln!(out, "replay {name} ... FAILED: {error:#}"),
        Outcome::Unreadable(error) => writeln!(out, "replay {name} ... error: {error:#}"),
    }
}

#[derive(Debug, Default)]
struct Counts {
    passed: usize,
    updated: usize,
    failed: usize,
    missing: usize,
    unreadable: usize,
}

impl Counts {
    fn add(&mut self, outcome: &Outcome) {
        match outcome {
            Outcome::Matches(_) => self.passed += 1,
            Outcome::Updated(_) => self.updated += 1,
            Outcome::Differs(_) | Outcome::Failed(_) => self.failed += 1,
            Outcome::Missing => self.missing += 1,
            Outcome::Unreadable(_) => self.unreadable += 1,
        }
    }

    fn print(&self, out: &mut dyn Write, plugin: &Path) -> std::io::Result<()> {
        let verdict = match self.failed + self.missing + self.unreadable {
            0 => "ok",
            _ => "FAILED",
        };
        writeln!(
            out,
            "\ntest result: {verdict}. {} passed; {} failed; {} missing; {} unreadable; {} updated ({})",
            self.passed,
            self.failed,
            self.missing,
            self.unreadable,
            self.updated,
            plugin.display()
        )
    }

    fn result(&self) -> Result<(), Failure> {
        let code = if self.unreadable > 0 {
            USAGE
        } else if self.failed + self.missing > 0 {
            FAILURE
        } else {
            return Ok(());
        };
        let error = anyhow!(
            "{} of {} recordings did not pass",
            self.failed + self.missing + self.unreadable,
            self.passed + self.updated + self.failed + self.missing + self.unreadable
        );
        Err(match code {
            USAGE => Failure::usage(error),
            _ => Failure::runtime(error),
        })
    }
}
