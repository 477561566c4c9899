//! `edgewise fleet`: what every device reports (its plugins, versions,
//! bundles, the phase of each one's latest deployment, the last error, when
//! it was last seen) and whether it has read the latest generation of each
//! desired key it follows. A table for people, `--json` for scripts.

use std::collections::BTreeMap;

use anyhow::anyhow;
use clap::Args;
use serde::Serialize;

use edgewise_host::deploy::model::{device_key, group_key, valid_name};
use edgewise_host::deploy::{Cloud, CloudError, Reported, ReportedPlugin};

use super::cloud_args::{CloudArgs, block_on, checked_name, now_ms};
use super::{Failure, to_stdout};

/// Show what every device runs and how its deployments went
///
/// One row per device and plugin: the device, its groups, when it last
/// reported (by its own clock), whether it is in sync, then the plugin's
/// running version and BUNDLE (its digest as `push` prints it,
/// `sha256-<hex of the bundle file>`, shortened; `(file)` for the version
/// of the device's configuration file), and its latest deployment: the
/// generation, the phase (received, verified, refused, running, healthy,
/// failed, rolled-back, removed, kept), since when, and the reason the
/// device gave.
///
/// With no report at all (nothing pushed to this cloud yet, or no device
/// has reported), it says `no device has reported yet` and exits 0.
///
/// SYNC compares, for each desired key the device follows (`device.<ID>`
/// and `group.<NAME>` of each of its groups), the generation it last read
/// with the key's current one: `behind: group.ward 41<42` means the device
/// has not yet seen generation 42 (offline, or still catching up).
///
/// A report that cannot be read is shown as a row with its error. `--json`
/// prints an array of the reports sorted by device, each with a `behind`
/// list (empty when in sync); an unreadable one as `{"device", "error"}`.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct FleetArgs {
    /// Only this device.
    #[arg(long, value_name = "ID")]
    device: Option<String>,
    /// Print the reports as JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cloud: CloudArgs,
}

/// Groups of one report whose keys are checked for SYNC: a report may list
/// any number, and each is one request.
const MAX_GROUPS_CHECKED: usize = 32;
/// Characters of a device-written text shown in the table (the JSON has all).
const MAX_SHOWN: usize = 160;

/// A key the device has not caught up with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct Behind {
    key: String,
    /// The generation it last read (`None`: never).
    read: Option<u64>,
    /// The key's generation now (`None`: no such key), or why it cannot be
    /// read.
    current: Result<Option<u64>, String>,
}

/// One device as `fleet` shows it.
#[derive(Debug)]
enum Entry {
    Reported { report: Reported, behind: Vec<Behind> },
    Unreadable { device: String, error: String },
}

impl Entry {
    fn device(&self) -> &str {
        match self {
            Entry::Reported { report, .. } => &report.device,
            Entry::Unreadable { device, .. } => device,
        }
    }
}

pub fn run(args: FleetArgs) -> Result<(), Failure> {
    if let Some(device) = &args.device {
        checked_name("device id", device)?;
    }
    let entries = block_on(async {
        let cloud = args.cloud.connect().await?;
        let reports = match &args.device {
            Some(device) => match cloud.report_of(device).await {
                Ok(Some(report)) => vec![Ok(report)],
                Ok(None) => {
                    return Err(Failure::runtime(anyhow!("device `{device}` has not reported")));
                }
                Err(e @ CloudError::Document { .. }) => vec![Err(e)],
                Err(e) => return Err(Failure::runtime(e)),
            },
            None => cloud.reports().await.map_err(Failure::runtime)?,
        };
        entries(&cloud, reports).await
    })?;
    if args.json {
        return to_stdout(|out| writeln!(out, "{}", json(&entries)));
    }
    if entries.is_empty() {
        // A cloud nothing was pushed to (no reported bucket) or whose
        // devices have not reported yet: an empty fleet, not an error.
        return to_stdout(|out| writeln!(out, "no device has reported yet"));
    }
    let now = now_ms();
    to_stdout(|out| write!(out, "{}", table(&entries, now)))
}

/// The reports with what each is behind, sorted by device; each desired key
/// is read once.
async fn entries(cloud: &Cloud, reports: Vec<Result<Reported, CloudError>>) -> Result<Vec<Entry>, Failure> {
    let mut current: BTreeMap<String, Result<Option<u64>, String>> = BTreeMap::new();
    let mut entries = Vec::new();
    for report in reports {
        let report = match report {
            Ok(report) => report,
            Err(CloudError::Document { key, reason }) => {
                let device = key.strip_prefix("device.").unwrap_or(&key).to_owned();
                entries.push(Entry::Unreadable { device, error: reason });
                continue;
            }
            Err(e) => return Err(Failure::runtime(e)),
        };
        for (key, valid) in followed_keys(&report) {
            if valid && !current.contains_key(&key) {
                let generation = match cloud.desired(&key).await {
                    Ok(desired) => Ok(desired.map(|(_, generation)| generation)),
                    Err(CloudError::NoBucket { .. }) => Ok(None),
                    Err(CloudError::Document { reason, .. }) => Err(reason),
                    Err(e) => return Err(Failure::runtime(e)),
                };
                current.insert(key, generation);
            }
        }
        let behind = behind(&report, &current);
        entries.push(Entry::Reported { report, behind });
    }
    entries.sort_by(|a, b| a.device().cmp(b.device()));
    Ok(entries)
}

/// The desired keys a device follows, by its report: its own, then its
/// groups' (at most [`MAX_GROUPS_CHECKED`]); each with whether its name can
/// be a key at all (one that cannot is never asked for).
fn followed_keys(report: &Reported) -> Vec<(String, bool)> {
    let own = std::iter::once((&report.device, device_key(&report.device)));
    let groups = report
        .groups
        .iter()
        .take(MAX_GROUPS_CHECKED)
        .map(|group| (group, group_key(group)));
    own.chain(groups).map(|(name, key)| (key, valid_name(name))).collect()
}

/// The keys `report`'s device has not caught up with, given each key's
/// current generation.
fn behind(report: &Reported, current: &BTreeMap<String, Result<Option<u64>, String>>) -> Vec<Behind> {
    let mut behind = Vec::new();
    for (key, valid) in followed_keys(report) {
        let now = if valid {
            current.get(&key).cloned().unwrap_or(Ok(None))
        } else {
            Err("not a valid name".to_owned())
        };
        let read = report.generations.get(&key).copied();
        if now != Ok(read) {
            behind.push(Behind {
                key: shown(&key),
                read,
                current: now,
            });
        }
    }
    behind
}

/// The SYNC column.
fn sync_text(behind: &[Behind]) -> String {
    if behind.is_empty() {
        return "in sync".to_owned();
    }
    let keys: Vec<String> = behind
        .iter()
        .map(|b| {
            let read = b.read.map_or("-".to_owned(), |g| g.to_string());
            match &b.current {
                Ok(now) => format!("{} {read}<{}", b.key, now.map_or("-".to_owned(), |g| g.to_string())),
                Err(reason) => format!("{}: unreadable ({})", b.key, shown(reason)),
            }
        })
        .collect();
    format!("behind: {}", keys.join(", "))
}

/// A device-written text as the table shows it: escaped (`cli::shown`), at
/// most [`MAX_SHOWN`] characters.
fn shown(text: &str) -> String {
    let escaped = super::shown(text).into_owned();
    match escaped.char_indices().nth(MAX_SHOWN) {
        Some((cut, _)) => format!("{}…", &escaped[..cut]),
        None => escaped,
    }
}

/// How long ago `then_ms` was, for people: `3s ago`, `4m ago`, `2h ago`,
/// `5d ago`; `-` for never (0).
fn age(now_ms: i64, then_ms: i64) -> String {
    if then_ms == 0 {
        return "-".to_owned();
    }
    let seconds = now_ms.saturating_sub(then_ms) / 1000;
    let magnitude = seconds.unsigned_abs();
    let amount = match magnitude {
        0..60 => format!("{magnitude}s"),
        60..3600 => format!("{}m", magnitude / 60),
        3600..86400 => format!("{}h", magnitude / 3600),
        _ => format!("{}d", magnitude / 86400),
    };
    if seconds < 0 {
        format!("in {amount} (clock ahead)")
    } else {
        format!("{amount} ago")
    }
}

/// `sha256-0123456789ab` of a longer bundle name (digest).
fn short_digest(digest: &str) -> String {
    let shown = shown(digest);
    match shown.char_indices().nth("sha256-".len() + 12) {
        Some((cut, _)) => shown[..cut].to_owned(),
        None => shown,
    }
}

/// The BUNDLE column: the bundle that runs, by its digest as `push` prints
/// it and stores it (`sha256-<hex of the whole file>`, shortened); `(file)`
/// for the version of the device's configuration file (no bundle of the
/// cloud's); `-` when nothing runs. The code digest the device also reports
/// (`running_digest`, what anti-rollback and `revoked` know) is in `--json`.
fn bundle_text(plugin: &ReportedPlugin) -> String {
    match (plugin.running_bundle.is_empty(), plugin.running_version.is_empty()) {
        (false, _) => short_digest(&plugin.running_bundle),
        (true, false) => "(file)".to_owned(),
        (true, true) => "-".to_owned(),
    }
}

const HEADER: [&str; 11] = [
    "DEVICE",
    "GROUPS",
    "LAST SEEN",
    "SYNC",
    "PLUGIN",
    "VERSION",
    "BUNDLE",
    "GEN",
    "PHASE",
    "SINCE",
    "REASON",
];

/// The table: one row per device and plugin, then the devices' last errors.
fn table(entries: &[Entry], now_ms: i64) -> String {
    let mut rows: Vec<Vec<String>> = vec![HEADER.iter().map(|h| (*h).to_owned()).collect()];
    let mut notes = Vec::new();
    for entry in entries {
        let (report, behind) = match entry {
            Entry::Reported { report, behind } => (report, behind),
            Entry::Unreadable { device, error } => {
                rows.push(vec![shown(device), format!("unreadable report: {}", shown(error))]);
                continue;
            }
        };
        let device = [
            shown(&report.device),
            shown(&report.groups.join(",")),
            age(now_ms, report.last_seen_ms),
            sync_text(behind),
        ];
        if report.plugins.is_empty() {
            rows.push(device.iter().cloned().chain(["-".to_owned()]).collect());
        }
        for (name, plugin) in &report.plugins {
            let mut row: Vec<String> = device.to_vec();
            row.push(shown(name));
            row.push(or_dash(shown(&plugin.running_version)));
            row.push(bundle_text(plugin));
            match &plugin.deployment {
                Some(deployment) => {
                    row.push(deployment.generation.to_string());
                    row.push(deployment.phase.name().to_owned());
                    row.push(age(now_ms, deployment.since_ms));
                    row.push(deployment.reason.as_deref().map_or("-".to_owned(), shown));
                }
                None => row.extend(["-", "-", "-", "-"].map(str::to_owned)),
            }
            rows.push(row);
            // A failure the latest deployment (a return to what ran) replaced.
            // (A deployment superseded during its probation did not fail:
            // older devices reported it as rolled back.)
            if let Some(failure) = &plugin.last_failure
                && plugin.deployment.as_ref() != Some(failure)
                && !failure.was_superseded()
            {
                notes.push(format!(
                    "{}: {}: last failure {}: {} of `{}` generation {} ({}): {}",
                    shown(&report.device),
                    shown(name),
                    age(now_ms, failure.since_ms),
                    failure.phase.name(),
                    shown(&failure.key),
                    failure.generation,
                    or_dash(shown(&failure.version)),
                    failure.reason.as_deref().map_or("-".to_owned(), shown),
                ));
            }
        }
        if let Some(error) = &report.last_error {
            notes.push(format!("{}: last error: {}", shown(&report.device), shown(error)));
        }
    }
    let mut text = aligned(&rows);
    for note in notes {
        text.push_str(&note);
        text.push('\n');
    }
    text
}

fn or_dash(text: String) -> String {
    if text.is_empty() { "-".to_owned() } else { text }
}

/// `rows` as left-aligned columns two spaces apart; a row's last cell is not
/// padded (a short row, such as an unreadable report's, runs on).
fn aligned(rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = Vec::new();
    for row in rows {
        for (column, cell) in row.iter().enumerate().take(row.len().saturating_sub(1)) {
            if widths.len() <= column {
                widths.push(0);
            }
            widths[column] = widths[column].max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in rows {
        let mut line = String::new();
        for (column, cell) in row.iter().enumerate() {
            if column + 1 < row.len() {
                let width = widths.get(column).copied().unwrap_or(0);
                line.push_str(&format!("{cell:<width$}  "));
            } else {
                line.push_str(cell);
            }
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// The JSON array `--json` prints.
fn json(entries: &[Entry]) -> String {
    #[derive(Serialize)]
    #[serde(untagged)]
    enum Shown<'a> {
        Reported {
            #[serde(flatten)]
            report: &'a Reported,
            behind: Vec<BehindJson<'a>>,
        },
        Unreadable {
            device: &'a str,
            error: &'a str,
        },
    }
    #[derive(Serialize)]
    struct BehindJson<'a> {
        key: &'a str,
        read: Option<u64>,
        current: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    }
    let shown: Vec<Shown<'_>> = entries
        .iter()
        .map(|entry| match entry {
            Entry::Reported { report, behind } => Shown::Reported {
                report,
                behind: behind
                    .iter()
                    .map(|b| BehindJson {
                        key: &b.key,
                        read: b.read,
                        current: b.current.clone().ok().flatten(),
                        error: b.current.as_ref().err().map(String::as_str),
                    })
                    .collect(),
            },
            Entry::Unreadable { device, error } => Shown::Unreadable { device, error },
        })
        .collect();
    serde_json::to_string_pretty(&shown).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use edgewise_host::deploy::{Deployment, Phase};

    use super::*;

    fn report(device: &str, groups: &[&str], generations: &[(&str, u64)]) -> Reported {
        Reported {
            device: device.to_owned(),
            groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            generations: generations.iter().map(|(k, g)| ((*k).to_owned(), *g)).collect(),
            ..Reported::default()
        }
    }

    #[test]
    fn ages_read_as_people_say_them() {
        assert_eq!(age(10_000, 7_000), "3s ago");
        assert_eq!(age(1_000_000, 1_000), "16m ago");
        assert_eq!(age(90_000_000, 1), "1d ago");
        assert_eq!(age(1_000, 5_000), "in 4s (clock ahead)");
        assert_eq!(age(1_000, 0), "-");
    }

    #[test]
    fn a_device_is_behind_on_each_key_whose_generation_it_has_not_read() {
        let current: BTreeMap<String, Result<Option<u64>, String>> = [
            ("device.d1".to_owned(), Ok(Some(7))),
            ("group.ward".to_owned(), Ok(Some(42))),
            ("group.icu".to_owned(), Ok(None)),
        ]
        .into();
        let synced = report("d1", &["ward", "icu"], &[("device.d1", 7), ("group.ward", 42)]);
        assert_eq!(sync_text(&behind(&synced, &current)), "in sync");
        let late = report("d1", &["ward", "icu"], &[("group.ward", 41)]);
        assert_eq!(
            sync_text(&behind(&late, &current)),
            "behind: device.d1 -<7, group.ward 41<42"
        );
        let hostile = report("d1", &["a.b"], &[("device.d1", 7)]);
        assert_eq!(
            sync_text(&behind(&hostile, &current)),
            "behind: group.a.b: unreadable (not a valid name)"
        );
    }

    #[test]
    fn device_written_text_is_escaped_and_bounded() {
        assert_eq!(shown("a\nb\u{1b}[2J"), "a\\nb\\u{1b}[2J");
        assert_eq!(shown(&"x".repeat(500)).chars().count(), MAX_SHOWN + 1);
        assert_eq!(
            short_digest(&format!("sha256-{}", "ab".repeat(32))),
            "sha256-abababababab"
        );
    }

    /// The digest of what runs is the bundle's, as `push` prints it (its
    /// object name), not the code's: an operator matches one with the other.
    #[test]
    fn the_table_names_what_runs_by_its_bundle_as_push_prints_it() {
        let mut device = report("d1", &[], &[]);
        let bundle = format!("sha256-{}", "3f1c09ab21d4".repeat(5) + "abcd");
        device.plugins.insert(
            "gm".to_owned(),
            ReportedPlugin {
                running_version: "2.0.0".to_owned(),
                running_digest: format!("sha256:{}", "c".repeat(64)),
                running_bundle: bundle,
                deployment: None,
                last_failure: None,
            },
        );
        device.plugins.insert(
            "th".to_owned(),
            ReportedPlugin {
                running_version: "1.0.0".to_owned(),
                running_digest: format!("sha256:{}", "d".repeat(64)),
                running_bundle: String::new(),
                deployment: None,
                last_failure: None,
            },
        );
        let entries = [Entry::Reported {
            report: device,
            behind: Vec::new(),
        }];
        let text = table(&entries, 5_000);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains(" BUNDLE ") && !lines[0].contains("DIGEST"), "{text}");
        assert!(lines[1].contains("2.0.0    sha256-3f1c09ab21d4  "), "{text}");
        assert!(!text.contains("sha256:cccc") && !text.contains("sha256:dddd"), "{text}");
        // The configuration file's version has no bundle in the cloud.
        assert!(lines[2].contains("1.0.0    (file)  "), "{text}");
    }

    #[test]
    fn the_table_has_a_row_per_plugin_and_one_for_an_unreadable_report() {
        let mut good = report("d1", &["ward"], &[]);
        let mut deployment = Deployment::new(
            &edgewise_host::deploy::Origin {
                key: "group.ward".to_owned(),
                generation: 42,
            },
            &edgewise_host::deploy::DesiredPlugin {
                bundle: format!("sha256-{}", "0".repeat(64)),
                version: "2.0.0".to_owned(),
                size: 1,
                config: BTreeMap::new(),
                pushed_ms: 0,
            },
            1_000,
        );
        deployment.enter(Phase::RolledBack, Some("init failed".to_owned()), 2_000);
        good.plugins.insert(
            "gm".to_owned(),
            ReportedPlugin {
                running_version: "1.0.0".to_owned(),
                running_digest: format!("sha256:{}", "c".repeat(64)),
                running_bundle: String::new(),
                deployment: Some(deployment),
                last_failure: None,
            },
        );
        good.last_seen_ms = 4_000;
        good.last_error = Some("cannot fetch".to_owned());
        let entries = [
            Entry::Reported {
                report: good,
                behind: Vec::new(),
            },
            Entry::Unreadable {
                device: "d2".to_owned(),
                error: "expected value".to_owned(),
            },
        ];
        let text = table(&entries, 5_000);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("DEVICE  GROUPS  LAST SEEN  SYNC"), "{text}");
        assert!(
            lines[1].contains("1.0.0    (file)  42   rolled-back  3s ago  init failed"),
            "{text}"
        );
        assert_eq!(lines[2], "d2      unreadable report: expected value");
        assert_eq!(lines[3], "d1: last error: cannot fetch");
    }
}
