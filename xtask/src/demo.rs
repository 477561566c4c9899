//! `cargo xtask demo`: sign the plugins with a fresh demo key, verify and
//! inspect the bundles, replay a real CGM recording through the verified
//! glucose-monitor bundle, and print what a clinician would see: the alerts
//! and the daily summaries.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::format_description;

use crate::{cargo, plugins};

/// The recording the demo replays (real data, see tests/data/cgm/README.md).
const RECORDING: &str = "tests/data/cgm/ExampleData5Subjects.csv";
/// Critical-alert rows printed before the list is cut (the full output is on disk).
const MAX_ALERT_ROWS: usize = 40;

pub fn run(root: &Path) -> anyhow::Result<()> {
    plugins::build(root)?;
    cargo(root, &["build", "--release", "-p", "edgewise-host"])?;
    let out_dir = root.join("target").join("demo");
    let edgewise = root.join("target").join("release").join("edgewise");
    let bundles = sign_plugins(root, &edgewise, &out_dir)?;
    let trust = out_dir.join("trust");
    let glucose_bundle = bundles.join("glucose-monitor.wasm");

    println!(
        "\nVerifying the bundles as a device would (edgewise verify --trust {})...",
        trust.display()
    );
    for plugin in PLUGINS {
        let bundle = bundles.join(format!("{plugin}.wasm"));
        run_edgewise(
            &edgewise,
            root,
            &[
                "verify".as_ref(),
                "--trust".as_ref(),
                trust.as_os_str(),
                bundle.as_os_str(),
            ],
        )?;
    }
    println!("\nWhat the glucose-monitor bundle holds (edgewise inspect, no trust needed):\n");
    run_edgewise(&edgewise, root, &["inspect".as_ref(), glucose_bundle.as_os_str()])?;

    let out_file = out_dir.join("glucose-monitor.jsonl");
    println!("\nReplaying {RECORDING} through the verified glucose-monitor bundle...\n");
    run_edgewise(
        &edgewise,
        root,
        &[
            "replay".as_ref(),
            "--trust".as_ref(),
            trust.as_os_str(),
            "--plugin".as_ref(),
            glucose_bundle.as_os_str(),
            "--input".as_ref(),
            root.join(RECORDING).as_os_str(),
            "--out".as_ref(),
            out_file.as_os_str(),
        ],
    )?;
    let text = std::fs::read_to_string(&out_file).with_context(|| format!("cannot read {}", out_file.display()))?;
    let outputs: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    print_alerts(&outputs);
    print_daily_summaries(&outputs);
    println!("\nFull output (JSON lines): {}", out_file.display());
    println!(
        "Signed bundles: {} (trust store: {})",
        bundles.display(),
        trust.display()
    );
    Ok(())
}

/// Alert codes in the order the table shows them (their `-resolved` info alerts are not counted).
const ALERT_CODES: &[&str] = &[
    "urgent-low",
    "low",
    "urgent-low-soon",
    "high",
    "rising-fast",
    "falling-fast",
    "signal-loss",
];

/// The plugins the demo signs (each has an `edgewise.toml` in its crate).
const PLUGINS: &[&str] = &["glucose-monitor", "threshold"];

/// Make a fresh demo key and trust store under `out_dir`, and sign every
/// plugin with it, as an operator would. Returns the bundle directory.
fn sign_plugins(root: &Path, edgewise: &Path, out_dir: &Path) -> anyhow::Result<PathBuf> {
    let keys = out_dir.join("keys");
    let trust = out_dir.join("trust");
    let bundles = out_dir.join("bundles");
    // A new key per demo run: keygen refuses to overwrite, so clear the old one.
    for dir in [&keys, &trust, &bundles] {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| format!("cannot remove {}", dir.display()))?;
        }
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let prefix = keys.join("demo");
    println!("\nMaking a demo signing key (edgewise keygen)...");
    run_edgewise(
        edgewise,
        root,
        &["keygen".as_ref(), "--out".as_ref(), prefix.as_os_str()],
    )?;
    std::fs::copy(keys.join("demo.pub"), trust.join("demo.pub")).context("cannot fill the trust store")?;
    println!("\nSigning the plugins (edgewise sign)...");
    for plugin in PLUGINS {
        let manifest = root.join("plugins").join(plugin).join("edgewise.toml");
        let bundle = bundles.join(format!("{plugin}.wasm"));
        run_edgewise(
            edgewise,
            root,
            &[
                "sign".as_ref(),
                "--key".as_ref(),
                keys.join("demo.key").as_os_str(),
                "--manifest".as_ref(),
                manifest.as_os_str(),
                "--out".as_ref(),
                bundle.as_os_str(),
                plugins::component_path(root, plugin).as_os_str(),
            ],
        )?;
    }
    Ok(bundles)
}

/// Run `edgewise ARGS` with inherited output; fail if it fails.
fn run_edgewise(edgewise: &Path, root: &Path, args: &[&std::ffi::OsStr]) -> anyhow::Result<()> {
    let status = Command::new(edgewise)
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("cannot run {}", edgewise.display()))?;
    if !status.success() {
        bail!(
            "`edgewise {}` failed ({status})",
            args.first().map(|a| a.to_string_lossy()).unwrap_or_default()
        );
    }
    Ok(())
}

fn print_alerts(outputs: &[Value]) {
    let alerts: Vec<&Value> = outputs.iter().filter(|o| o["type"] == "alert").collect();
    let mut sensors: Vec<String> = alerts.iter().map(|a| text(&a["sensor"])).collect();
    sensors.sort();
    sensors.dedup();
    println!(
        "\nALERTS RAISED, by sensor ({} alerts in all, repeats and all-clears included)",
        alerts.len()
    );
    print!("{:<10}", "sensor");
    ALERT_CODES.iter().for_each(|code| print!(" {code:>15}"));
    println!();
    for sensor in &sensors {
        print!("{sensor:<10}");
        for code in ALERT_CODES {
            let count = alerts
                .iter()
                .filter(|a| text(&a["sensor"]) == *sensor && a["code"] == *code)
                .count();
            print!(" {count:>15}");
        }
        println!();
    }

    let critical: Vec<&&Value> = alerts.iter().filter(|a| a["severity"] == "critical").collect();
    println!("\nCRITICAL ALERTS ({})", critical.len());
    println!(
        "{:<17} {:<10} {:<16} {:>6}  message",
        "time (UTC)", "sensor", "code", "mg/dL"
    );
    for alert in critical.iter().take(MAX_ALERT_ROWS) {
        println!(
            "{:<17} {:<10} {:<16} {:>6}  {}",
            utc(alert["ts"].as_i64(), false),
            text(&alert["sensor"]),
            text(&alert["code"]),
            alert["value"].as_f64().map_or("-".to_owned(), |v| format!("{v:.0}")),
            text(&alert["message"]),
        );
    }
    if critical.len() > MAX_ALERT_ROWS {
        println!("... and {} more", critical.len() - MAX_ALERT_ROWS);
    }
}

fn print_daily_summaries(outputs: &[Value]) {
    let daily: Vec<&Value> = outputs
        .iter()
        .filter(|o| {
            o["type"] == "summary"
                && o["window_end"]
                    .as_i64()
                    .zip(o["window_start"].as_i64())
                    .is_some_and(|(e, s)| e - s == 86_400_000)
        })
        .collect();
    println!("\nDAILY SUMMARIES ({})", daily.len());
    println!(
        "{:<10} {:<10} {:>4} {:>6} {:>5} {:>5} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>5} {:>6}",
        "day",
        "sensor",
        "n",
        "mean",
        "sd",
        "cv%",
        "gmi%",
        "TIR%",
        "<54%",
        "54-69%",
        "181-250",
        ">250%",
        "active%",
        "hypo",
        "hyper"
    );
    for summary in daily {
        let m = &summary["metrics"];
        let f = |name: &str, decimals: usize| m[name].as_f64().map_or("-".to_owned(), |v| format!("{v:.decimals$}"));
        let episodes = |a: &str, b: &str| {
            format!(
                "{}/{}",
                m[a].as_f64().unwrap_or(0.0) as i64,
                m[b].as_f64().unwrap_or(0.0) as i64
            )
        };
        println!(
            "{:<10} {:<10} {:>4} {:>6} {:>5} {:>5} {:>5} {:>6} {:>6} {:>6} {:>6} {:>6} {:>7} {:>5} {:>6}",
            utc(summary["window_start"].as_i64(), true),
            text(&summary["sensor"]),
            f("n", 0),
            f("mean", 1),
            f("sd", 1),
            f("cv", 1),
            f("gmi", 2),
            f("tir_70_180", 1),
            f("tbr_below_54", 1),
            f("tbr_54_69", 1),
            f("tar_181_250", 1),
            f("tar_above_250", 1),
            f("active_pct", 0),
            episodes("hypo_l1_episodes", "hypo_l2_episodes"),
            episodes("hyper_l1_episodes", "hyper_l2_episodes"),
        );
    }
    println!("(hypo and hyper: level 1 / level 2 episodes, International Consensus 2023)");
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("-").to_owned()
}

/// Milliseconds since the epoch as `YYYY-MM-DD HH:MM` (or `YYYY-MM-DD`).
fn utc(ms: Option<i64>, date_only: bool) -> String {
    let Some(time) = ms.and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok())
    else {
        return "-".to_owned();
    };
    let formatted = if date_only {
        time.format(format_description!("[year]-[month]-[day]"))
    } else {
        time.format(format_description!("[year]-[month]-[day] [hour]:[minute]"))
    };
    formatted.unwrap_or_else(|_| "-".to_owned())
}
