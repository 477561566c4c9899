//! `cargo xtask soak`: the long variants of the durability tests (issue
//! #14), with real processes (nats-servers, `edgewise run`, signed plugins),
//! too long for CI. Each variant takes a few minutes at its defaults and
//! scales to hours with its flags:
//!
//! - `offline.rs`: the cloud down for a long time while readings flow; the
//!   outbox queues millions of outputs, then drains; every output arrives
//!   exactly once.
//! - `kills.rs`: the Hall2018 recording through the JetStream source with
//!   `kill -9` at random moments; the cloud then holds exactly an
//!   uninterrupted replay's outputs.
//! - `cloud.rs`: reading the cloud stream back, the exactly-once check.
//! - `rig.rs`: signing, the servers and the host, its status.
//!
//! It prints a table of what each variant measured and fails (non-zero
//! exit) on any violation: a loss, a duplicate, a difference, an error.

mod cloud;
mod kills;
mod offline;
mod rig;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use edgewise_procs::nats_binary;

/// The long recording both variants draw on (tests/data/cgm/README.md).
const HALL2018: &str = "tests/data/cgm/Hall2018_processed.csv";

const USAGE: &str = "usage: cargo xtask soak [offline|kills] [--offline DURATION] [--rate N] [--burst N] \
                     [--kills N] [--kill-rate N] [--seed N]
  offline      only the long outage (default: both variants)
  kills        only the repeated kills
  --offline    how long the cloud is down while readings flow (default 3m; e.g. 2h, 90s)
  --rate       readings per second while offline (default 500)
  --burst      alerts per reading of the chatty plugin (default 20: 10,000 outputs/s)
  --kills      SIGKILLs of the host over the recording (default 50)
  --kill-rate  readings of the recording per second (default 500: about 3.5 minutes)
  --seed       the random seed of the kill moments (default: from the clock)";

/// The command line.
#[derive(Debug, Clone)]
pub struct Options {
    run_offline: bool,
    run_kills: bool,
    pub offline: Duration,
    pub rate: u64,
    pub burst: u64,
    pub kills: usize,
    pub kill_rate: u64,
    pub seed: Option<u64>,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Options> {
        let mut options = Options {
            run_offline: true,
            run_kills: true,
            offline: Duration::from_secs(180),
            rate: 500,
            burst: 20,
            kills: 50,
            kill_rate: 500,
            seed: None,
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| anyhow!("{arg} needs a value\n{USAGE}"));
            match arg.as_str() {
                "offline" => options.run_kills = false,
                "kills" => options.run_offline = false,
                "--offline" => options.offline = duration(value()?)?,
                "--rate" => options.rate = number(value()?)?,
                "--burst" => options.burst = number(value()?)?,
                "--kills" => options.kills = number(value()?)?,
                "--kill-rate" => options.kill_rate = number(value()?)?,
                "--seed" => options.seed = Some(number(value()?)?),
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                other => bail!("unknown argument `{other}`\n{USAGE}"),
            }
        }
        if !options.run_offline && !options.run_kills {
            bail!("name at most one variant\n{USAGE}");
        }
        if options.rate == 0 || options.burst == 0 || options.kills == 0 || options.kill_rate == 0 {
            bail!("--rate, --burst, --kills and --kill-rate must be at least 1");
        }
        Ok(options)
    }
}

/// A positive whole number.
fn number<T: std::str::FromStr>(text: &str) -> anyhow::Result<T> {
    text.parse().map_err(|_| anyhow!("`{text}` is not a number\n{USAGE}"))
}

/// `90s`, `3m`, `2h`, or seconds.
fn duration(text: &str) -> anyhow::Result<Duration> {
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = number(digits)?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => bail!("`{text}` is not a duration (90s, 3m, 2h)\n{USAGE}"),
    };
    if seconds == 0 {
        bail!("--offline must be at least 1s");
    }
    Ok(Duration::from_secs(seconds))
}

/// What every variant needs.
pub struct Setup {
    pub root: PathBuf,
    pub nats_server: PathBuf,
    /// `target/soak`: each variant's device directory is under it, kept.
    pub dir: PathBuf,
    pub bundles: rig::Bundles,
}

/// What a variant measured, and what it found wrong.
pub struct Report {
    variant: &'static str,
    figures: Vec<(String, String)>,
    violations: Vec<String>,
}

impl Report {
    fn new(variant: &'static str) -> Report {
        Report {
            variant,
            figures: Vec::new(),
            violations: Vec::new(),
        }
    }

    fn figure(&mut self, name: &str, value: String) {
        println!("{}: {name}: {value}", self.variant);
        self.figures.push((name.to_owned(), value));
    }

    fn violation(&mut self, what: String) {
        println!("{}: VIOLATION: {what}", self.variant);
        self.violations.push(what);
    }
}

pub fn run(root: &Path, args: &[String]) -> anyhow::Result<()> {
    let options = Options::parse(args)?;
    let nats_server = nats_binary::ensure(root)?;
    crate::build_all()?;
    let dir = edgewise_procs::workspace::target_dir().join("soak");
    let setup = Setup {
        root: root.to_owned(),
        nats_server,
        bundles: rig::Bundles::sign(root, &dir)?,
        dir,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let mut reports = Vec::new();
    let variants: [(&'static str, bool); 2] = [("offline", options.run_offline), ("kills", options.run_kills)];
    for (variant, wanted) in variants {
        if !wanted {
            continue;
        }
        let started = Instant::now();
        // Each variant owns the processes it starts: when it ends, fails or
        // is dropped on Ctrl-C, its guards kill and reap them.
        let result = runtime.block_on(async {
            let work = async {
                match variant {
                    "offline" => offline::run(&options, &setup).await,
                    _ => kills::run(&options, &setup).await,
                }
            };
            tokio::select! {
                result = work => result,
                Ok(()) = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
            }
        });
        let mut report = result.unwrap_or_else(|error| {
            let mut report = Report::new(variant);
            report.violation(format!("did not complete: {error:#}"));
            report
        });
        report.figure("took", format!("{:.0} s", started.elapsed().as_secs_f64()));
        reports.push(report);
    }
    runtime.shutdown_timeout(Duration::from_secs(5));
    print_table(&reports);
    let violations: usize = reports.iter().map(|r| r.violations.len()).sum();
    if violations > 0 {
        bail!(
            "soak: {violations} violations (above); the device directories are under {}",
            setup.dir.display()
        );
    }
    println!("soak: no violation");
    Ok(())
}

/// The summary: one row per figure, then the violations.
fn print_table(reports: &[Report]) {
    let width = reports
        .iter()
        .flat_map(|r| r.figures.iter().map(|(name, _)| name.len() + r.variant.len() + 3))
        .max()
        .unwrap_or(0);
    println!("\n| {:width$} | result", "variant: figure");
    println!("|-{}-|-------", "-".repeat(width));
    for report in reports {
        for (name, value) in &report.figures {
            println!("| {:width$} | {value}", format!("{}: {}", report.variant, name.trim()));
        }
        let verdict = if report.violations.is_empty() {
            "PASS".to_owned()
        } else {
            format!("FAIL ({} violations)", report.violations.len())
        };
        println!("| {:width$} | {verdict}", format!("{}: verdict", report.variant));
    }
    for report in reports {
        for violation in &report.violations {
            println!("{}: VIOLATION: {violation}", report.variant);
        }
    }
}
