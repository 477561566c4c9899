//! `cargo xtask demo`: replay a real CGM recording through glucose-monitor
//! and print what a clinician would see: the alerts and the daily summaries.

use std::path::Path;
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
    std::fs::create_dir_all(&out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let out_file = out_dir.join("glucose-monitor.jsonl");
    let plugin = plugins::component_path(root, "glucose-monitor");
    let edgewise = root.join("target").join("release").join("edgewise");

    println!("\nReplaying {RECORDING} through glucose-monitor...\n");
    let status = Command::new(&edgewise)
        .arg("replay")
        .arg("--plugin")
        .arg(&plugin)
        .arg("--input")
        .arg(root.join(RECORDING))
        .arg("--out")
        .arg(&out_file)
        .current_dir(root)
        .status()
        .with_context(|| format!("cannot run {}", edgewise.display()))?;
    if !status.success() {
        bail!("edgewise replay failed ({status})");
    }
    let text = std::fs::read_to_string(&out_file).with_context(|| format!("cannot read {}", out_file.display()))?;
    let outputs: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    print_alerts(&outputs);
    print_daily_summaries(&outputs);
    println!("\nFull output (JSON lines): {}", out_file.display());
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
