//! `edgewise rollout`: a bundle to a group in waves. Each wave's devices get
//! the plugin in their own desired key and must report it healthy; when more
//! than a set share of the devices so far failed, the rollout stops and the
//! device keys are put back as they were. When every wave is healthy, the
//! group's key gets the plugin and the per-device entries go away.
//!
//! The planning (which devices in which wave) and the decisions (how a
//! device's report ends its deployment, when to abort) are pure functions,
//! tested below; the rest is reading and writing the cloud's buckets.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::anyhow;
use clap::Args;
use serde::Serialize;

use edgewise_host::deploy::model::{device_key, group_key, valid_name};
use edgewise_host::deploy::{Cloud, CloudError, DesiredPlugin, Phase, Reported};

use super::cloud_args::{CloudArgs, EntryArgs, block_on, checked_name};
use super::push::{PushBundle, edit_desired, read_desired, write_desired};
use super::{Failure, about, to_stdout};

/// Roll a bundle out to a group, in waves, stopping when too many fail
///
/// The group's members are the devices whose latest report lists the group,
/// ordered by device id. Waves are cumulative sizes: `--waves 1,10%,100%`
/// means the first member, then up to 10% of them (rounded up), then all. A
/// last wave with every member is added if the list stops short.
///
/// Each wave writes the plugin into each new member's own key
/// (`device.<ID>`, compare-and-set as `push`), then waits until each of them
/// reports that generation in a final phase. The PHASE of each device:
///   `healthy`      success;
///   `refused`, `failed`, `rolled-back`
///                  failures, with the device's reason;
///   `timeout`      a failure: no final phase within `--timeout`;
///   `superseded`   someone else wrote a later generation of the device's
///                  key meanwhile: not a failure of the bundle, it counts
///                  neither way (and its entry is left alone).
/// After each wave, when the failures so far are more than `--max-failures`
/// of the devices so far (superseded ones aside), the rollout ABORTS: the
/// entries it added to the keys of the devices that failed are removed (a
/// device key that had an entry for the plugin gets exactly that entry
/// back), so each of them goes back to what it ran before; the devices
/// healthy on the new version keep it (anti-rollback would refuse the old
/// one). It says which devices failed and why, and exits 1.
///
/// When every wave passes, the plugin is written into the group's key
/// (`group.<NAME>`) and the per-device entries are removed: the members
/// then follow the group, which names the same bundle. Exit 0.
///
/// An entry the rollout wrote that someone else changed meanwhile is left
/// alone, and said so.
#[derive(Debug, Args)]
#[command(verbatim_doc_comment)]
pub struct RolloutArgs {
    /// The signed bundle (at most 32 MiB).
    #[arg(value_name = "BUNDLE.wasm")]
    bundle: PathBuf,
    /// The group to roll out to.
    #[arg(long, value_name = "NAME")]
    group: String,
    /// Cumulative wave sizes: device counts or percentages of the members
    /// (rounded up, at least 1).
    #[arg(
        long,
        value_name = "SIZES",
        value_delimiter = ',',
        default_value = "1,10%,100%",
        value_parser = parse_wave
    )]
    waves: Vec<WaveSize>,
    /// Abort when more than this share of the devices so far failed.
    #[arg(long, value_name = "PERCENT", default_value = "20%", value_parser = parse_share)]
    max_failures: Share,
    /// How long each wave waits for its devices' final phases.
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = parse_timeout)]
    timeout: Duration,
    #[command(flatten)]
    entry: EntryArgs,
    /// Print a JSON summary (progress goes to standard error).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    cloud: CloudArgs,
}

/// How often a wave asks for its devices' reports.
const POLL: Duration = Duration::from_millis(250);

/// One `--waves` size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaveSize {
    /// This many members (at most all).
    Count(usize),
    /// This percentage of the members, rounded up.
    Percent(u32),
}

fn parse_wave(text: &str) -> Result<WaveSize, String> {
    let text = text.trim();
    let size = match text.strip_suffix('%') {
        Some(percent) => match percent.parse::<u32>() {
            Ok(percent @ 1..=100) => WaveSize::Percent(percent),
            _ => return Err(format!("`{text}`: a percentage from 1% to 100%")),
        },
        None => match text.parse::<usize>() {
            Ok(count @ 1..) => WaveSize::Count(count),
            _ => return Err(format!("`{text}`: a device count (1 or more) or a percentage")),
        },
    };
    Ok(size)
}

/// The failure share `--max-failures` allows, in percent.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Share(f64);

fn parse_share(text: &str) -> Result<Share, String> {
    text.trim()
        .strip_suffix('%')
        .and_then(|percent| percent.parse::<f64>().ok())
        .filter(|percent| (0.0..=100.0).contains(percent))
        .map(Share)
        .ok_or_else(|| format!("`{text}`: a percentage from 0% to 100%, e.g. 20%"))
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(duration) if !duration.is_zero() => Ok(duration),
        Ok(_) => Err("a timeout of zero lets no device report".to_owned()),
        Err(e) => Err(format!("`{text}`: {e}")),
    }
}

/// The waves for `members` devices: each one's cumulative end, strictly
/// increasing, the last one `members`. A size that adds nobody (10% of 5
/// after 1) is skipped; a list that stops short gets a last wave of all.
pub fn plan_waves(members: usize, sizes: &[WaveSize]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut last = 0;
    for size in sizes {
        let end = match *size {
            WaveSize::Count(count) => count,
            WaveSize::Percent(percent) => (members * percent as usize).div_ceil(100),
        }
        .clamp(1, members.max(1))
        .min(members);
        if end > last {
            ends.push(end);
            last = end;
        }
    }
    if last < members {
        ends.push(members);
    }
    ends
}

/// Whether `failures` of `so_far` devices is more than `share` allows.
pub fn exceeded(failures: usize, so_far: usize, share: Share) -> bool {
    failures as f64 * 100.0 > share.0 * so_far as f64
}

/// The phase shown for a device that reported no final phase within
/// `--timeout`: a failure.
pub const TIMEOUT: &str = "timeout";
/// The phase shown for a device whose deployment of the wave's generation a
/// later one replaced: neither a success nor a failure.
pub const SUPERSEDED: &str = "superseded";

/// Where one device's deployment of the wave's generation stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Healthy: the wave's success.
    Healthy,
    /// Ended otherwise: the phase and the device's reason.
    Failed {
        /// The device's phase.
        phase: String,
        /// Why.
        reason: String,
    },
    /// Replaced before it could prove anything (a later generation of the
    /// device's key, written by someone else): not a failure of the bundle,
    /// so it counts neither way. Why.
    Superseded(String),
    /// Not final yet: what the report says now.
    Pending(String),
}

/// What `report` says of the deployment of `plugin` written as `generation`
/// of `key` with bundle `bundle`.
pub fn progress(report: &Reported, plugin: &str, key: &str, generation: u64, bundle: &str) -> Progress {
    let Some(deployment) = report.plugins.get(plugin).and_then(|p| p.deployment.as_ref()) else {
        return Progress::Pending(format!("no deployment of {plugin} reported"));
    };
    let running = report.plugins.get(plugin).map(|p| p.running_bundle.as_str());
    if deployment.key == key && deployment.generation == generation {
        return match deployment.phase {
            Phase::Healthy => Progress::Healthy,
            // As a device of an earlier version reports a newer deployment
            // from another key replacing it during its probation.
            _ if deployment.was_superseded() => Progress::Superseded(format!(
                "a newer deployment of {plugin} replaced it during its probation"
            )),
            phase if phase.is_final() => Progress::Failed {
                phase: phase.name().to_owned(),
                reason: deployment
                    .reason
                    .clone()
                    .unwrap_or_else(|| "no reason given".to_owned()),
            },
            phase => Progress::Pending(phase.name().to_owned()),
        };
    }
    if deployment.key == key && deployment.generation > generation {
        return Progress::Superseded(format!(
            "generation {} of `{key}` was written since (by someone else)",
            deployment.generation
        ));
    }
    // A device already healthy on this very bundle (from another key) has
    // nothing to change for the new generation.
    if deployment.bundle == bundle && deployment.phase == Phase::Healthy && running == Some(bundle) {
        return Progress::Healthy;
    }
    Progress::Pending(format!(
        "at generation {} of `{}` ({})",
        deployment.generation,
        deployment.key,
        deployment.phase.name()
    ))
}

/// How one device's part of a wave ended.
#[derive(Debug, Clone, Serialize)]
struct DeviceOutcome {
    device: String,
    phase: String,
    reason: Option<String>,
    #[serde(skip)]
    failed: bool,
}

impl DeviceOutcome {
    /// Whether it counts for the failure share: a superseded device proved
    /// nothing either way.
    fn counted(&self) -> bool {
        self.phase != SUPERSEDED
    }
}

/// The devices of `waves` that count for the failure share.
fn counted(waves: &[WaveOutcome]) -> usize {
    waves
        .iter()
        .flat_map(|wave| &wave.devices)
        .filter(|device| device.counted())
        .count()
}

#[derive(Debug, Serialize)]
struct WaveOutcome {
    devices: Vec<DeviceOutcome>,
}

/// A device key the rollout wrote: what to put back.
#[derive(Debug)]
struct Touched {
    device: String,
    /// The plugin's entry in that key before, if it had one.
    previous: Option<DesiredPlugin>,
}

#[derive(Debug, Serialize)]
struct Summary<'a> {
    group: &'a str,
    plugin: &'a str,
    version: &'a str,
    bundle: String,
    waves: Vec<WaveOutcome>,
    aborted: bool,
    failed: Vec<DeviceOutcome>,
    /// The group key's new generation, once written.
    generation: Option<u64>,
    /// Device keys the rollout could not put back (or clean up).
    problems: Vec<String>,
}

pub fn run(args: RolloutArgs) -> Result<(), Failure> {
    let group = checked_name("group name", &args.group)?.to_owned();
    let config = args.entry.config()?;
    let bundle = PushBundle::read(&args.bundle)?;
    let by = args.entry.writer();
    let progress_out = ProgressLines { json: args.json };
    let summary = block_on(async {
        let cloud = args.cloud.connect().await?;
        // The members first: a group nobody is in (a cloud nothing was
        // pushed to, say) stores nothing and creates no bucket.
        let members = members(&cloud, &group).await?;
        if members.is_empty() {
            return Err(Failure::runtime(anyhow!(
                "no device reports being in group `{group}`: nothing rolled out"
            )));
        }
        let entry = bundle.store(&cloud, config).await?;
        let plan = plan_waves(members.len(), &args.waves);
        progress_out.line(&format!(
            "rollout of {} {} ({}) to group {group}: {} devices in {} waves ({}); aborting when more than {}% fail",
            bundle.name,
            bundle.version,
            entry.bundle,
            members.len(),
            plan.len(),
            plan.iter().map(usize::to_string).collect::<Vec<_>>().join(", "),
            args.max_failures.0
        ));
        let rollout = Rollout {
            cloud: &cloud,
            plugin: &bundle.name,
            entry: &entry,
            by: &by,
            timeout: args.timeout,
            out: &progress_out,
        };
        let mut summary = Summary {
            group: &group,
            plugin: &bundle.name,
            version: &bundle.version,
            bundle: entry.bundle.clone(),
            waves: Vec::new(),
            aborted: false,
            failed: Vec::new(),
            generation: None,
            problems: Vec::new(),
        };
        let mut touched = Vec::new();
        let mut start = 0;
        for (index, &end) in plan.iter().enumerate() {
            let wave = &members[start..end];
            progress_out.line(&format!("wave {}/{}: {}", index + 1, plan.len(), wave.join(", ")));
            let outcome = rollout.wave(wave, &mut touched).await;
            let devices = match outcome {
                Ok(devices) => devices,
                Err(failure) => {
                    // A device key could not be written: nothing more is
                    // written, what was is put back.
                    summary.problems = rollout.put_back(&touched, true).await;
                    summary.aborted = true;
                    for problem in &summary.problems {
                        progress_out.line(problem);
                    }
                    return Err(failure);
                }
            };
            summary.failed.extend(devices.iter().filter(|d| d.failed).cloned());
            summary.waves.push(WaveOutcome { devices });
            let so_far = counted(&summary.waves);
            if exceeded(summary.failed.len(), so_far, args.max_failures) {
                progress_out.line(&format!(
                    "  {} of {so_far} devices failed, more than {}%: aborting",
                    summary.failed.len(),
                    args.max_failures.0
                ));
                summary.aborted = true;
                break;
            }
            start = end;
        }
        if summary.aborted {
            // The devices that failed go back to what their keys said. Those
            // healthy on the new version keep it: anti-rollback does not let
            // a device go back to an older version once a newer one proved
            // healthy (release the old code as a higher version for that).
            let failed: Vec<Touched> = touched
                .into_iter()
                .filter(|t| summary.failed.iter().any(|f| f.device == t.device))
                .collect();
            summary.problems = rollout.put_back(&failed, true).await;
            progress_out.line(&format!(
                "device keys of the failed devices put back: {}",
                failed.iter().map(|t| t.device.as_str()).collect::<Vec<_>>().join(", ")
            ));
            return Ok(summary);
        }
        let key = group_key(&group);
        let written = async {
            let (mut desired, read) = read_desired(&cloud, &key).await?;
            desired.plugins.insert(bundle.name.clone(), entry.clone());
            write_desired(&cloud, &key, desired, read, &by).await
        };
        let generation = written.await.map_err(|e| {
            Failure::runtime(about(
                format!(
                    "every wave is healthy, but `{key}` was not written: the members keep their per-device entries (the new bundle); push it to the group with `edgewise push --group {group}`"
                ),
                e,
            ))
        })?;
        summary.generation = Some(generation);
        progress_out.line(&format!("{key}: generation {generation}"));
        summary.problems = rollout.put_back(&touched, false).await;
        Ok(summary)
    })?;
    for problem in &summary.problems {
        progress_out.line(problem);
    }
    to_stdout(|out| {
        if args.json {
            writeln!(out, "{}", serde_json::to_string_pretty(&summary).unwrap_or_default())
        } else {
            write!(out, "{}", summary_table(&summary))
        }
    })?;
    if summary.aborted {
        let failed: Vec<String> = summary
            .failed
            .iter()
            .map(|d| format!("{} ({}: {})", d.device, d.phase, d.reason.as_deref().unwrap_or("-")))
            .collect();
        let devices = counted(&summary.waves);
        return Err(Failure::runtime(anyhow!(
            "rollout aborted at wave {}: {} of {devices} devices failed: {}; their device keys are as before (the devices healthy on the new version keep it)",
            summary.waves.len(),
            summary.failed.len(),
            failed.join(", ")
        )));
    }
    Ok(())
}

/// The devices whose latest report lists `group`, by id. An unreadable
/// report, or one with a device id that cannot be a key, is skipped with a
/// warning: that device cannot be told apart.
async fn members(cloud: &Cloud, group: &str) -> Result<Vec<String>, Failure> {
    let mut members = Vec::new();
    for report in cloud.reports().await.map_err(Failure::runtime)? {
        match report {
            Ok(report) if report.groups.iter().any(|g| g == group) => {
                if valid_name(&report.device) {
                    members.push(report.device);
                } else {
                    tracing::warn!(
                        "skipped a report of device `{}`: not a valid id",
                        report.device.escape_debug()
                    );
                }
            }
            Ok(_) => {}
            Err(e @ CloudError::Document { .. }) => tracing::warn!("skipped an unreadable report: {e}"),
            Err(e) => return Err(Failure::runtime(e)),
        }
    }
    members.sort();
    members.dedup();
    Ok(members)
}

/// Where progress lines go: standard output, or standard error with
/// `--json` (so that standard output is the JSON alone).
struct ProgressLines {
    json: bool,
}

impl ProgressLines {
    fn line(&self, line: &str) {
        use std::io::Write;
        // Progress is for people watching: a closed stream does not stop the
        // rollout (the summary's write reports it).
        let _ = if self.json {
            writeln!(std::io::stderr(), "{line}")
        } else {
            writeln!(std::io::stdout(), "{line}")
        };
    }
}

/// What every wave shares.
struct Rollout<'a> {
    cloud: &'a Cloud,
    plugin: &'a str,
    entry: &'a DesiredPlugin,
    by: &'a str,
    timeout: Duration,
    out: &'a ProgressLines,
}

impl Rollout<'_> {
    /// Write the plugin into each device's key (recorded in `touched`), then
    /// wait for each one's final phase.
    async fn wave(&self, devices: &[String], touched: &mut Vec<Touched>) -> Result<Vec<DeviceOutcome>, Failure> {
        let mut written = Vec::new();
        for device in devices {
            let key = device_key(device);
            let (generation, previous) = edit_desired(self.cloud, &key, self.by, |desired| {
                Ok(desired.plugins.insert(self.plugin.to_owned(), self.entry.clone()))
            })
            .await?;
            touched.push(Touched {
                device: device.clone(),
                previous,
            });
            written.push((device.clone(), key, generation));
        }
        let outcomes = self.wait(&written).await;
        for outcome in &outcomes {
            self.out.line(&format!(
                "  {}: {}{}",
                outcome.device,
                outcome.phase,
                outcome.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
            ));
        }
        Ok(outcomes)
    }

    /// Ask for each device's report every [`POLL`] until each one's
    /// deployment of its generation is final, or the timeout.
    async fn wait(&self, written: &[(String, String, u64)]) -> Vec<DeviceOutcome> {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut pending: BTreeMap<&str, String> = written.iter().map(|(d, _, _)| (d.as_str(), String::new())).collect();
        let mut done: BTreeMap<&str, DeviceOutcome> = BTreeMap::new();
        loop {
            for (device, key, generation) in written {
                let Some(last) = pending.get_mut(device.as_str()) else {
                    continue;
                };
                let seen = match self.cloud.report_of(device).await {
                    Ok(Some(report)) => progress(&report, self.plugin, key, *generation, &self.entry.bundle),
                    Ok(None) => Progress::Pending("no report".to_owned()),
                    // Unreadable now, or the cloud unreachable: it may pass.
                    Err(e) => Progress::Pending(e.to_string()),
                };
                let outcome = match seen {
                    Progress::Healthy => DeviceOutcome {
                        device: device.clone(),
                        phase: Phase::Healthy.name().to_owned(),
                        reason: None,
                        failed: false,
                    },
                    Progress::Failed { phase, reason } => DeviceOutcome {
                        device: device.clone(),
                        phase,
                        reason: Some(reason),
                        failed: true,
                    },
                    Progress::Superseded(reason) => DeviceOutcome {
                        device: device.clone(),
                        phase: SUPERSEDED.to_owned(),
                        reason: Some(reason),
                        failed: false,
                    },
                    Progress::Pending(now) => {
                        *last = now;
                        continue;
                    }
                };
                pending.remove(device.as_str());
                done.insert(device, outcome);
            }
            if pending.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                let within = humantime::format_duration(self.timeout);
                for (device, last) in std::mem::take(&mut pending) {
                    done.insert(
                        device,
                        DeviceOutcome {
                            device: device.to_owned(),
                            phase: TIMEOUT.to_owned(),
                            reason: Some(format!("no final phase within {within} (last: {last})")),
                            failed: true,
                        },
                    );
                }
                break;
            }
            tokio::time::sleep(POLL).await;
        }
        done.into_values().collect()
    }

    /// Take the plugin's entry the rollout wrote out of each touched device
    /// key: with `restore`, a key that had an entry before gets exactly that
    /// one back. An entry someone else changed since is left alone. What
    /// could not be done, one line each.
    async fn put_back(&self, touched: &[Touched], restore: bool) -> Vec<String> {
        let mut problems = Vec::new();
        for Touched { device, previous } in touched {
            let key = device_key(device);
            let result = async {
                let (mut desired, read) = read_desired(self.cloud, &key).await?;
                if desired.plugins.get(self.plugin) != Some(self.entry) {
                    return Ok(Some(format!(
                        "`{key}`: left alone: its {} entry was changed by someone else during the rollout",
                        self.plugin
                    )));
                }
                match previous.clone().filter(|_| restore) {
                    Some(previous) => desired.plugins.insert(self.plugin.to_owned(), previous),
                    None => desired.plugins.remove(self.plugin),
                };
                write_desired(self.cloud, &key, desired, read, self.by).await?;
                Ok::<_, CloudError>(None)
            }
            .await;
            match result {
                Ok(None) => {}
                Ok(Some(problem)) => problems.push(problem),
                Err(e) => problems.push(format!("`{key}`: could not be put back: {e}")),
            }
        }
        problems
    }
}

/// The per-device summary for people.
fn summary_table(summary: &Summary<'_>) -> String {
    let header = ["WAVE", "DEVICE", "PHASE", "REASON"].map(str::to_owned);
    let mut rows = vec![header];
    for (index, wave) in summary.waves.iter().enumerate() {
        for device in &wave.devices {
            rows.push([
                (index + 1).to_string(),
                device.device.clone(),
                device.phase.clone(),
                device.reason.clone().unwrap_or_else(|| "-".to_owned()),
            ]);
        }
    }
    let width = |column: usize| rows.iter().map(|row| row[column].chars().count()).max().unwrap_or(0);
    let (w0, w1, w2) = (width(0), width(1), width(2));
    let mut text = String::new();
    for [wave, device, phase, reason] in &rows {
        text.push_str(&format!("{wave:<w0$}  {device:<w1$}  {phase:<w2$}  {reason}\n"));
    }
    if summary.aborted {
        text.push_str("aborted: the failed devices' keys are as before; the healthy ones keep the new version\n");
    }
    text
}

#[cfg(test)]
mod tests {
    use edgewise_host::deploy::{Deployment, Origin, ReportedPlugin};

    use super::*;

    #[test]
    fn waves_are_cumulative_rounded_up_at_least_one_and_end_with_everyone() {
        let default = [WaveSize::Count(1), WaveSize::Percent(10), WaveSize::Percent(100)];
        assert_eq!(plan_waves(5, &default), vec![1, 5]);
        assert_eq!(plan_waves(100, &default), vec![1, 10, 100]);
        assert_eq!(plan_waves(101, &default), vec![1, 11, 101]);
        assert_eq!(plan_waves(1, &default), vec![1]);
        assert_eq!(plan_waves(0, &default), Vec::<usize>::new());
        // A list stopping short gets a last wave of all; counts over the
        // members are all of them; a size adding nobody is skipped.
        assert_eq!(plan_waves(7, &[WaveSize::Count(2)]), vec![2, 7]);
        assert_eq!(plan_waves(3, &[WaveSize::Count(10)]), vec![3]);
        assert_eq!(plan_waves(10, &[WaveSize::Count(5), WaveSize::Count(2)]), vec![5, 10]);
        assert_eq!(plan_waves(10, &[WaveSize::Percent(1)]), vec![1, 10]);
    }

    #[test]
    fn sizes_and_shares_parse_or_say_what_they_expect() {
        assert_eq!(parse_wave("10%"), Ok(WaveSize::Percent(10)));
        assert_eq!(parse_wave("3"), Ok(WaveSize::Count(3)));
        for bad in ["0", "0%", "101%", "-1", "x", "1.5%", ""] {
            assert!(parse_wave(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_share("20%"), Ok(Share(20.0)));
        assert_eq!(parse_share("0%"), Ok(Share(0.0)));
        for bad in ["20", "101%", "-1%", "x%"] {
            assert!(parse_share(bad).is_err(), "{bad}");
        }
        assert!(parse_timeout("0s").is_err());
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
    }

    #[test]
    fn a_rollout_aborts_only_when_the_failures_so_far_are_more_than_the_share() {
        let share = Share(20.0);
        assert!(exceeded(1, 1, share));
        assert!(!exceeded(0, 1, share));
        assert!(!exceeded(1, 5, share), "exactly 20% is allowed");
        assert!(exceeded(2, 5, share));
        assert!(exceeded(1, 4, share));
        assert!(!exceeded(0, 0, Share(0.0)));
        assert!(exceeded(1, 100, Share(0.0)));
        assert!(!exceeded(100, 100, Share(100.0)));
    }

    fn reported(key: &str, generation: u64, bundle: &str, phase: Phase, running: &str) -> Reported {
        let origin = Origin {
            key: key.to_owned(),
            generation,
        };
        let plugin = DesiredPlugin {
            bundle: bundle.to_owned(),
            version: "2.0.0".to_owned(),
            size: 1,
            config: BTreeMap::new(),
            pushed_ms: 0,
        };
        let mut deployment = Deployment::new(&origin, &plugin, 1);
        if phase != Phase::Received {
            deployment.enter(phase, Some("why".to_owned()), 2);
        }
        Reported {
            device: "d1".to_owned(),
            plugins: [(
                "gm".to_owned(),
                ReportedPlugin {
                    running_bundle: running.to_owned(),
                    deployment: Some(deployment),
                    last_failure: None,
                    ..ReportedPlugin::default()
                },
            )]
            .into(),
            ..Reported::default()
        }
    }

    #[test]
    fn a_report_ends_the_wave_generation_only_in_a_final_phase() {
        let new = format!("sha256-{}", "1".repeat(64));
        let old = format!("sha256-{}", "0".repeat(64));
        let at = |generation, phase, running: &str| {
            progress(
                &reported("device.d1", generation, &new, phase, running),
                "gm",
                "device.d1",
                42,
                &new,
            )
        };
        assert_eq!(at(42, Phase::Healthy, &new), Progress::Healthy);
        assert_eq!(at(42, Phase::Running, &new), Progress::Pending("running".to_owned()));
        assert_eq!(
            at(42, Phase::RolledBack, &old),
            Progress::Failed {
                phase: "rolled-back".to_owned(),
                reason: "why".to_owned()
            }
        );
        assert!(matches!(at(42, Phase::Refused, &old), Progress::Failed { .. }));
        assert!(matches!(at(43, Phase::Received, &old), Progress::Superseded(_)));
        assert!(matches!(at(41, Phase::Healthy, &old), Progress::Pending(_)));
        // Healthy on this very bundle from the group key already: nothing to wait for.
        let from_group = reported("group.ward", 7, &new, Phase::Healthy, &new);
        assert_eq!(progress(&from_group, "gm", "device.d1", 42, &new), Progress::Healthy);
        let other_plugin = progress(&from_group, "th", "device.d1", 42, &new);
        assert_eq!(
            other_plugin,
            Progress::Pending("no deployment of th reported".to_owned())
        );
    }

    #[test]
    fn a_later_write_of_the_device_key_supersedes_the_wave_entry_without_failing_it() {
        let new = format!("sha256-{}", "1".repeat(64));
        let other = format!("sha256-{}", "2".repeat(64));
        // Someone else pushed another bundle to the device key (generation
        // 43) while the wave waited for 42: 42 did not fail, it was replaced.
        for phase in [Phase::Received, Phase::Running, Phase::Healthy, Phase::RolledBack] {
            let later = reported("device.d1", 43, &other, phase, &other);
            let seen = progress(&later, "gm", "device.d1", 42, &new);
            assert!(!matches!(seen, Progress::Failed { .. }), "{phase:?}: {seen:?}");
            assert!(!matches!(seen, Progress::Pending(_)), "{phase:?}: {seen:?}");
        }
        // A device of an earlier version reported a deployment a newer one
        // (from another key) replaced during its probation as rolled back.
        let mut older_device = reported("device.d1", 42, &new, Phase::Running, &other);
        if let Some(deployment) = older_device
            .plugins
            .get_mut("gm")
            .and_then(|plugin| plugin.deployment.as_mut())
        {
            let reason = edgewise_host::deploy::model::SUPERSEDED_BY_AN_OLDER_DEVICE.to_owned();
            deployment.enter(Phase::RolledBack, Some(reason), 3);
        }
        let seen = progress(&older_device, "gm", "device.d1", 42, &new);
        assert!(matches!(seen, Progress::Superseded(_)), "{seen:?}");
    }
}
