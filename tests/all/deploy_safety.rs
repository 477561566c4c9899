//! Deployment safety across crashes and rollbacks, with real processes (a
//! cloud nats-server, a device's leaf server, `edgewise run` killed with
//! SIGKILL): whatever happens to a deployment, the device goes on monitoring
//! glucose, and no alert of the version that runs is lost.
//!
//! - A crash once a new version is recorded for anti-rollback, the
//!   deployment loop held up by an unanswering cloud, still runs the plugin
//!   at the next start (the healthy set is durable first).
//! - A rollback, or a restart during a probation, gives the old version's
//!   alerts for the inputs since the switch numbers the failed version never
//!   used: none is taken for one already emitted.
//! - A deployed version that overrides a plugin of the configuration file,
//!   undeployed, keeps the device monitoring (the file's older version is
//!   refused by anti-rollback), now and after a restart.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use serde_json::Value;

use edgewise_host::deploy::model::Phase;
use edgewise_host::deploy::{Deployment, Reported};
use edgewise_tests::{deploy_bundles, edgewise};

use crate::deploy_device::{
    Edge, PLUGIN, Site, deploy, in_phase, jsonl_recording, now_ms, push, report_now, running_v1_with, settled,
};
use crate::device::{DEVICE, WAIT, reading};
use crate::kill_recovery::upstream_outputs;
use crate::support::{
    collect_until, find_plugin, host_status, plugin, poll_until, status_until, subscribe_alerts, value_until,
};

/// The sensor the readings here are of (`sensors.cgm.<it>`).
const SENSOR: &str = "subject-1";

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_once_a_new_version_is_recorded_for_anti_rollback_still_runs_the_plugin() {
    // A probation long enough to hold up the cloud within it.
    let (site, mut edge) = running_v1_with("probation = \"5s\"\n").await;
    let generation = push(&site.operator, &edge.key(), &deploy_bundles().v2.bytes(), &[]).await;
    in_phase(&site.operator, DEVICE, generation, Phase::Running).await;
    // The cloud stops answering: the deployment loop waits on it (reports,
    // reads of the desired sets), while the worker's probation runs out.
    let cloud = site.cloud.server().pid().unwrap();
    edgewise_procs::child::sigstop(cloud).unwrap();
    let installed = edge.device.path("data/installed-versions.json");
    poll_until("2.0.0 recorded for anti-rollback", WAIT, || async {
        let text = std::fs::read_to_string(&installed).map_err(|e| e.to_string())?;
        match text.contains("\"2.0.0\"") {
            true => Ok(()),
            false => Err(text),
        }
    })
    .await;
    edge.device.kill();
    edgewise_procs::child::sigcont(cloud).unwrap();
    let healthy = std::fs::read_to_string(edge.device.path("data/deploy/healthy.json")).unwrap_or_default();

    edge.start().await;
    let status = host_status(&edge.client).await;
    let listed = status["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == PLUGIN);
    assert!(
        listed,
        "no glucose monitoring after the restart; healthy set {healthy}: {status:#}"
    );
    assert_eq!(plugin(&status, PLUGIN)["state"], "running", "{status:#}");
    assert_eq!(plugin(&status, PLUGIN)["version"], "2.0.0", "{status:#}");
    // And it monitors: a low reading raises its alert.
    let mut alerts = subscribe_alerts(&edge.client, PLUGIN).await;
    edge.client
        .publish(format!("sensors.cgm.{SENSOR}"), reading(now_ms(), 60.0))
        .await
        .unwrap();
    collect_until(&mut alerts, "the low alert of 2.0.0", |seen| {
        seen.iter().any(|(_, a)| a["code"] == "low" && a["version"] == "2.0.0")
    })
    .await;
}

/// A device running glucose-monitor 1.0.0 from its configuration file, on
/// the wall clock, with deployments on a probation longer than the test
/// (only a failure ends it), and a subscription to its alerts.
async fn v1_from_the_configuration() -> (Site, Edge, async_nats::Subscriber) {
    let site = Site::start().await;
    let tables = format!("[[plugins]]\nbundle = \"{}\"\n", deploy_bundles().v1.path.display());
    let mut edge = Edge::new(&site, DEVICE, "100ms", "probation = \"1h\"\n", &tables).await;
    edge.start().await;
    let alerts = subscribe_alerts(&edge.client, PLUGIN).await;
    (site, edge, alerts)
}

/// Publish `value` now for [`SENSOR`] and wait until the plugin has taken
/// it (each reading its own call): its timestamp, later than every earlier
/// one's (two readings can be taken within a millisecond, and glucose-monitor
/// drops a reading no newer than the last as a duplicate).
async fn give(edge: &Edge, value: f64) -> i64 {
    static LAST: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let before = plugin(&host_status(&edge.client).await, PLUGIN)["readings_in"]
        .as_u64()
        .unwrap_or(0);
    let now = now_ms();
    let ts = match LAST.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(now.max(last + 1))) {
        Ok(last) | Err(last) => now.max(last + 1),
    };
    edge.client
        .publish(format!("sensors.cgm.{SENSOR}"), reading(ts, value))
        .await
        .unwrap();
    value_until(
        "the reading taken",
        WAIT,
        || host_status(&edge.client),
        |status| plugin(status, PLUGIN)["readings_in"].as_u64() > Some(before),
    )
    .await;
    ts
}

/// An alert as the tests compare them: sensor, time, code, message.
fn alert_key(alert: &Value) -> (String, i64, String, String) {
    (
        alert["sensor"].as_str().unwrap_or_default().to_owned(),
        alert["ts"].as_i64().unwrap_or_default(),
        alert["code"].as_str().unwrap_or_default().to_owned(),
        alert["message"].as_str().unwrap_or_default().to_owned(),
    )
}

/// The alerts a replay of 1.0.0 over `readings` (time, value) gives, up to
/// the last reading (the replay's later ticks, signal loss, have no live
/// counterpart here).
fn v1_alerts(edge: &Edge, readings: &[(i64, f64)]) -> BTreeSet<(String, i64, String, String)> {
    let rows: Vec<_> = readings.iter().map(|&(ts, value)| (1, ts, value)).collect();
    let recording = edge.device.path("v1-replay.jsonl");
    std::fs::write(&recording, jsonl_recording(&rows)).unwrap();
    let replay = edgewise([
        "replay",
        "--plugin",
        deploy_bundles().v1.path.to_str().unwrap(),
        "--trust",
        edge.device.path("trust").to_str().unwrap(),
        "--input",
        recording.to_str().unwrap(),
    ]);
    assert_eq!(replay.code, Some(0), "{}", replay.stderr);
    let last = readings.iter().map(|&(ts, _)| ts).max().unwrap();
    let alerts: BTreeSet<_> = crate::live_pipeline::output_lines(&replay.stdout)
        .iter()
        .filter(|e| e["type"] == "alert" && e["ts"].as_i64() <= Some(last))
        .map(alert_key)
        .collect();
    assert!(
        alerts.iter().any(|(_, _, code, _)| code == "low"),
        "the replay raises `low`: {}",
        replay.stdout
    );
    alerts
}

/// Wait until every alert of `expected` came from 1.0.0 on the local bus,
/// then until each is upstream too; no output number used twice upstream.
async fn every_v1_alert_out(
    site: &Site,
    alerts: &mut async_nats::Subscriber,
    expected: &BTreeSet<(String, i64, String, String)>,
) {
    let v1 = |seen: &[(String, Value)]| -> BTreeSet<_> {
        seen.iter()
            .filter(|(_, a)| a["version"] == "1.0.0")
            .map(|(_, a)| alert_key(a))
            .collect()
    };
    let seen = collect_until(alerts, "every alert of 1.0.0's replay on the local bus", |seen| {
        v1(seen).is_superset(expected)
    })
    .await;
    eprintln!("local alerts: {seen:#?}");
    let url = site.cloud.url();
    let upstream = poll_until("every alert of 1.0.0's replay upstream", WAIT, || async {
        let stored = upstream_outputs(&url).await;
        let got: BTreeSet<_> = stored
            .iter()
            .filter(|(_, e)| e["version"] == "1.0.0" && e["type"] == "alert")
            .map(|(_, e)| alert_key(e))
            .collect();
        match got.is_superset(expected) {
            true => Ok(stored),
            false => Err(format!("{stored:#?}")),
        }
    })
    .await;
    let plugin_seqs: Vec<u64> = upstream
        .iter()
        .filter(|(id, _)| !id.rsplit('/').next().unwrap_or_default().starts_with("host-"))
        .filter_map(|(_, e)| e["seq"].as_u64())
        .collect();
    let distinct: BTreeSet<_> = plugin_seqs.iter().collect();
    assert_eq!(distinct.len(), plugin_seqs.len(), "a number used twice: {upstream:#?}");
}

/// Push glucose-chaos as 2.1.0 (`high` above 150, a trap on its third
/// batch) and wait until it runs: its generation.
async fn push_trapping_on_its_third_batch(site: &Site, edge: &Edge) -> u64 {
    let generation = push(
        &site.operator,
        &edge.key(),
        &deploy_bundles().traps_third.bytes(),
        &[("high", "150")],
    )
    .await;
    in_phase(&site.operator, DEVICE, generation, Phase::Running).await;
    generation
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_rollback_every_alert_of_the_old_version_for_the_inputs_since_the_switch_comes_out() {
    let (site, edge, mut alerts) = v1_from_the_configuration().await;
    let generation = push_trapping_on_its_third_batch(&site, &edge).await;
    let mut readings = Vec::new();
    for value in [200.0, 200.0, 60.0] {
        readings.push((give(&edge, value).await, value));
    }
    let (report, deployment) = settled(&site.operator, DEVICE, generation).await;
    assert_eq!(deployment.phase, Phase::RolledBack, "{report:#?}");
    let expected = v1_alerts(&edge, &readings);
    every_v1_alert_out(&site, &mut alerts, &expected).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_crash_during_a_probation_every_alert_of_the_old_version_for_the_inputs_since_the_switch_comes_out() {
    let (site, mut edge, mut alerts) = v1_from_the_configuration().await;
    push_trapping_on_its_third_batch(&site, &edge).await;
    // Two batches: 2.1.0 raises `high` and then `low`, and does not trap.
    let mut readings = Vec::new();
    for value in [200.0, 60.0] {
        readings.push((give(&edge, value).await, value));
    }
    collect_until(&mut alerts, "2.1.0's low alert", |seen| {
        seen.iter().any(|(_, a)| a["version"] == "2.1.0" && a["code"] == "low")
    })
    .await;
    // Stored (the journal's highest number with them): they are upstream.
    let url = site.cloud.url();
    poll_until("2.1.0's alerts upstream", WAIT, || async {
        let stored = upstream_outputs(&url).await;
        match stored
            .iter()
            .any(|(_, e)| e["version"] == "2.1.0" && e["code"] == "low")
        {
            true => Ok(()),
            false => Err(format!("{stored:#?}")),
        }
    })
    .await;
    edge.device.kill();
    // The restart runs 1.0.0 (2.1.0 was never healthy), from its state at
    // the switch and the readings since.
    edge.start().await;
    let status = host_status(&edge.client).await;
    assert_eq!(plugin(&status, PLUGIN)["version"], "1.0.0", "{status:#}");
    let expected = v1_alerts(&edge, &readings);
    every_v1_alert_out(&site, &mut alerts, &expected).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_a_superseded_probation_and_a_rollback_the_superseded_version_is_not_taken_for_what_runs() {
    let (site, edge, _alerts) = v1_from_the_configuration().await;
    let bundles = deploy_bundles();
    // 2.0.0 on probation (it never ends here), superseded by 2.1.0, which
    // traps on its third batch: back to the last healthy version, 1.0.0.
    let superseded = push(&site.operator, &edge.key(), &bundles.v2.bytes(), &[]).await;
    in_phase(&site.operator, DEVICE, superseded, Phase::Running).await;
    let failing = push(&site.operator, &edge.key(), &bundles.traps_third.bytes(), &[]).await;
    in_phase(&site.operator, DEVICE, failing, Phase::Running).await;
    for value in [120.0, 120.0, 120.0] {
        give(&edge, value).await;
    }
    let (report, deployment) = settled(&site.operator, DEVICE, failing).await;
    assert_eq!(deployment.phase, Phase::RolledBack, "{report:#?}");
    let running = &report.plugins[PLUGIN];
    assert_eq!(running.running_version, "1.0.0", "{report:#?}");
    assert_eq!(
        running.running_bundle, "",
        "the configuration file's version runs, not the superseded bundle: {report:#?}"
    );
    assert_eq!(plugin(&host_status(&edge.client).await, PLUGIN)["version"], "1.0.0");

    // 2.0.0 pushed again is a deployment: it does not run already.
    let again = push(&site.operator, &edge.key(), &bundles.v2.bytes(), &[]).await;
    let (report, deployment) =
        crate::deploy_device::deployment_where(&site.operator, DEVICE, "2.0.0 pushed again running, or settled", |d| {
            d.generation == again && (d.phase == Phase::Running || d.phase.is_final())
        })
        .await;
    assert_eq!(deployment.phase, Phase::Running, "{report:#?}");
    assert_eq!(plugin(&host_status(&edge.client).await, PLUGIN)["version"], "2.0.0");
}

/// Publish an urgently low reading now for `sensor` and wait for
/// `version`'s `urgent-low` alert on the local bus: the device monitors
/// glucose.
async fn alerts_low(edge: &Edge, sensor: &str, version: &str) {
    let mut alerts = subscribe_alerts(&edge.client, PLUGIN).await;
    edge.client
        .publish(format!("sensors.cgm.{sensor}"), reading(now_ms(), 50.0))
        .await
        .unwrap();
    collect_until(
        &mut alerts,
        &format!("the urgent-low alert of {version} for {sensor}"),
        |seen| {
            seen.iter().any(|(_, a)| {
                a["code"] == "urgent-low" && a["version"] == version && a["sensor"] == format!("cgm.{sensor}")
            })
        },
    )
    .await;
}

/// The status once it shows [`PLUGIN`] running `version`; no plugin in it
/// is refused.
async fn running_unrefused(edge: &Edge, version: &str) -> Value {
    let status = status_until(&edge.client, &format!("{PLUGIN} {version} running"), |status| {
        find_plugin(status, PLUGIN).is_some_and(|p| p["state"] == "running" && p["version"] == version)
    })
    .await;
    let refused: Vec<&Value> = status["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "refused")
        .collect();
    assert!(refused.is_empty(), "a plugin refused: {status:#}");
    status
}

/// Restart `edge` cleanly: the file's `version` runs and alerts, and the
/// device reports, with `back` its deployment still (nothing more said).
async fn restarted_unchanged(site: &Site, edge: &mut Edge, version: &str, back: &Deployment) {
    edge.device.terminate_cleanly().await;
    let stopped = now_ms();
    edge.start().await;
    running_unrefused(edge, version).await;
    alerts_low(edge, "subject-2", version).await;
    let report = poll_until("a report of the restarted device", WAIT, || async {
        let report = report_now(&site.operator, DEVICE).await?;
        match report.last_seen_ms > stopped {
            true => Ok(report),
            false => Err(format!("{report:#?}")),
        }
    })
    .await;
    assert_eq!(report.plugins[PLUGIN].deployment.as_ref(), Some(back), "{report:#?}");
}

/// glucose-monitor 1.0.0 from the configuration file, overridden by 2.0.0
/// from the cloud, healthy, so recorded for anti-rollback (1.0.0 can never
/// run again on this device); then undeployed by the operator (a set
/// without it): 2.0.0 is kept. The site, the device, the report and the
/// `kept` deployment.
async fn kept_override() -> (Site, Edge, Reported, Deployment) {
    let site = Site::start().await;
    let bundles = deploy_bundles();
    let tables = format!("[[plugins]]\nbundle = \"{}\"\n", bundles.v1.path.display());
    let mut edge = Edge::new(&site, DEVICE, "100ms", "", &tables).await;
    edge.start().await;
    let (report, deployment) = deploy(&site, &edge, &bundles.v2, &[]).await;
    assert_eq!(deployment.phase, Phase::Healthy, "{report:#?}");
    let undeployed = site.cli(&["undeploy", PLUGIN, "--device", DEVICE]).await;
    assert_eq!(undeployed.code, Some(0), "{}", undeployed.stderr);
    let generation = site.operator.desired(&edge.key()).await.unwrap().unwrap().1;
    let (report, kept) = settled(&site.operator, DEVICE, generation).await;
    assert_eq!(
        kept.phase,
        Phase::Kept,
        "the device still monitors glucose: {report:#?}"
    );
    (site, edge, report, kept)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undeployed_override_of_a_configuration_file_plugin_keeps_monitoring_and_across_restarts() {
    let (site, mut edge, report, kept) = kept_override().await;
    let reason = kept.reason.clone().unwrap_or_default();
    for wanted in ["configuration file", "anti-rollback", "1.0.0", "2.0.0"] {
        assert!(reason.contains(wanted), "`{wanted}` not in the reason `{reason}`");
    }
    assert_eq!(report.plugins[PLUGIN].running_version, "2.0.0", "{report:#?}");
    running_unrefused(&edge, "2.0.0").await;
    alerts_low(&edge, "subject-1", "2.0.0").await;
    let fleet = site.cli(&["fleet"]).await;
    assert_eq!(fleet.code, Some(0), "{}", fleet.stderr);
    let row = fleet.stdout.lines().find(|l| l.contains(PLUGIN)).unwrap_or_default();
    for wanted in ["2.0.0", "kept", "configuration file"] {
        assert!(row.contains(wanted), "`{wanted}` not in `{row}`:\n{}", fleet.stdout);
    }

    // Not reported again at each read of the desired sets: another plugin
    // pushed (a generation the device reads) leaves the record as it was.
    let (other, report) = crate::deploy_device::push_threshold_until_healthy(&site, &edge).await;
    assert_eq!(report.plugins[PLUGIN].deployment.as_ref(), Some(&kept), "{report:#?}");

    // Restarted: 2.0.0 runs from the healthy set, the file's 1.0.0 gives
    // way to it without a refusal, and the record stays.
    edge.device.terminate_cleanly().await;
    let stopped = now_ms();
    edge.start().await;
    running_unrefused(&edge, "2.0.0").await;
    alerts_low(&edge, "subject-2", "2.0.0").await;
    let report = poll_until("a report of the restarted device", WAIT, || async {
        let report = report_now(&site.operator, DEVICE).await?;
        match report.last_seen_ms > stopped && report.generations.get(&edge.key()) == Some(&other) {
            true => Ok(report),
            false => Err(format!("{report:#?}")),
        }
    })
    .await;
    assert_eq!(report.plugins[PLUGIN].deployment.as_ref(), Some(&kept), "{report:#?}");
    assert_eq!(report.plugins[PLUGIN].running_version, "2.0.0", "{report:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_configuration_file_version_installed_behind_a_kept_override_runs_after_the_restart() {
    // As above: 2.0.0 kept in front of the file's 1.0.0.
    let (site, mut edge, _, _) = kept_override().await;
    let bundles = deploy_bundles();

    // The operator installs a later release in the configuration file (a
    // fix, say) and restarts the device: anti-rollback accepts 3.1.0, so
    // the file's version runs again, swapped in as the undeployment of the
    // override would have done; the deployed 2.0.0 must not stay in front
    // of it for good.
    edge.device.terminate_cleanly().await;
    let (old, new) = (
        bundles.v1.path.display().to_string(),
        bundles.v3.path.display().to_string(),
    );
    edge.device.edit_config(|config| {
        assert!(config.contains(&old), "{config}");
        config.replace(&old, &new)
    });
    let stopped = now_ms();
    edge.start().await;
    let (report, back) = poll_until(
        "the configuration file's 3.1.0 back in place of 2.0.0",
        WAIT,
        || async {
            let report = report_now(&site.operator, DEVICE).await?;
            let deployment = report.plugins.get(PLUGIN).and_then(|p| p.deployment.clone());
            match deployment {
                Some(d) if report.last_seen_ms > stopped && d.phase == Phase::Removed => Ok((report, d)),
                _ => Err(format!("{report:#?}")),
            }
        },
    )
    .await;
    let reason = back.reason.clone().unwrap_or_default();
    for wanted in ["configuration file", "3.1.0"] {
        assert!(reason.contains(wanted), "`{wanted}` not in the reason `{reason}`");
    }
    let running = &report.plugins[PLUGIN];
    assert_eq!(
        (running.running_version.as_str(), running.running_bundle.as_str()),
        ("3.1.0", ""),
        "{report:#?}"
    );
    running_unrefused(&edge, "3.1.0").await;
    alerts_low(&edge, "subject-1", "3.1.0").await;
    let healthy = std::fs::read_to_string(edge.device.path("data/deploy/healthy.json")).unwrap_or_default();
    assert!(!healthy.contains(PLUGIN), "the healthy set names it still: {healthy}");

    // And after another restart, with nothing more to report.
    restarted_unchanged(&site, &mut edge, "3.1.0", &back).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undeployed_override_of_a_configuration_file_plugin_that_anti_rollback_allows_goes_back_to_the_file() {
    // glucose-monitor 1.0.0 from the configuration file, overridden by the
    // same bundle with an urgent-low threshold of 45 (the file's: 54).
    let site = Site::start().await;
    let bundles = deploy_bundles();
    let tables = format!("[[plugins]]\nbundle = \"{}\"\n", bundles.v1.path.display());
    let mut edge = Edge::new(&site, DEVICE, "100ms", "", &tables).await;
    edge.start().await;
    let (report, deployment) = deploy(&site, &edge, &bundles.v1, &[("urgent_low", "45")]).await;
    assert_eq!(deployment.phase, Phase::Healthy, "{report:#?}");

    // Undeployed: the file's version (the same, accepted by anti-rollback)
    // is swapped back in, with the plugin's state, on probation.
    let undeployed = site.cli(&["undeploy", PLUGIN, "--device", DEVICE]).await;
    assert_eq!(undeployed.code, Some(0), "{}", undeployed.stderr);
    let generation = site.operator.desired(&edge.key()).await.unwrap().unwrap().1;
    let (report, back) = settled(&site.operator, DEVICE, generation).await;
    assert_eq!(back.phase, Phase::Removed, "{report:#?}");
    let phases: Vec<Phase> = back.history.iter().map(|c| c.phase).collect();
    assert_eq!(
        phases,
        [Phase::Received, Phase::Verified, Phase::Running, Phase::Removed],
        "{report:#?}"
    );
    let reason = back.reason.clone().unwrap_or_default();
    assert!(reason.contains("configuration file"), "{reason}");
    let running = &report.plugins[PLUGIN];
    assert_eq!(
        (running.running_version.as_str(), running.running_bundle.as_str()),
        ("1.0.0", ""),
        "the configuration file's version runs: {report:#?}"
    );
    let healthy = std::fs::read_to_string(edge.device.path("data/deploy/healthy.json")).unwrap_or_default();
    assert!(!healthy.contains(PLUGIN), "the healthy set names it still: {healthy}");
    // With the file's threshold: 50 is urgently low.
    running_unrefused(&edge, "1.0.0").await;
    alerts_low(&edge, "subject-1", "1.0.0").await;

    // The file's version after a restart, and nothing more to report.
    restarted_unchanged(&site, &mut edge, "1.0.0", &back).await;
}

/// A plugin new on the device, killed (`kill -9`) during its probation:
/// the restart runs the last healthy set, without it, and reports the
/// deployment failed. Before, the report still named the new plugin's
/// version as what runs (the record kept from before the crash), and
/// `fleet` showed it running.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_plugin_killed_during_its_probation_is_reported_failed_and_not_running() {
    let (site, mut edge) = crate::deploy_device::running_v1().await;
    // Restarted with a probation that outlasts the test.
    edge.device.terminate_cleanly().await;
    edge.device
        .edit_config(|config| config.replace("probation = \"1s\"", "probation = \"1h\""));
    edge.start().await;
    let generation = crate::deploy_device::push_threshold(&site, &edge).await;
    poll_until("threshold on probation and reported running", WAIT, || async {
        let report = report_now(&site.operator, DEVICE).await?;
        let record = report.plugins.get("threshold");
        match record.and_then(|p| p.deployment.as_ref()) {
            Some(d)
                if d.generation == generation
                    && d.phase == Phase::Running
                    && !record.unwrap().running_version.is_empty() =>
            {
                Ok(())
            }
            _ => Err(format!("{report:#?}")),
        }
    })
    .await;
    edge.device.kill();
    let killed = now_ms();
    edge.start().await;
    let report = poll_until("a report of the restarted device", WAIT, || async {
        let report = report_now(&site.operator, DEVICE).await?;
        match report.last_seen_ms > killed
            && report
                .plugins
                .get("threshold")
                .and_then(|p| p.deployment.as_ref())
                .is_some_and(|d| d.phase == Phase::Failed)
        {
            true => Ok(report),
            false => Err(format!("{report:#?}")),
        }
    })
    .await;
    let record = &report.plugins["threshold"];
    assert_eq!(
        (record.running_version.as_str(), record.running_digest.as_str()),
        ("", ""),
        "not running, so no version: {report:#?}"
    );
    let status = host_status(&edge.client).await;
    assert!(find_plugin(&status, "threshold").is_none(), "{status:#}");
    let fleet = site.cli(&["fleet"]).await;
    let row = fleet
        .stdout
        .lines()
        .find(|l| l.contains("threshold"))
        .unwrap_or_default();
    assert!(
        row.contains("failed") && !row.contains("0.2.0"),
        "{row}\n{}",
        fleet.stdout
    );
}

/// A version whose every snapshot traps runs on without saving its state
/// (the worker gives snapshots up after two); a deployment over it must still
/// start. Before, the swap took a snapshot of the running version to start
/// the new one from, which killed it again: every deployment was rolled back,
/// a fixed version's too, and each counted as one more failure.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_whose_snapshots_trap_is_replaced_by_a_deployment_from_its_last_saved_state() {
    let site = Site::start().await;
    let bundles = deploy_bundles();
    let tables = format!("[[plugins]]\nbundle = \"{}\"\n", bundles.traps_snapshots.path.display());
    let mut edge = Edge::new(&site, DEVICE, "100ms", "probation = \"1h\"\n", &tables).await;
    edge.start().await;
    // A snapshot falls due with the 256th input.
    for _ in 0..260 {
        give(&edge, 120.0).await;
    }
    let status = status_until(&edge.client, "the snapshots given up", |status| {
        plugin(status, PLUGIN)["snapshot_failures"] == 2
    })
    .await;
    assert_eq!(plugin(&status, PLUGIN)["state"], "running", "{status:#}");

    let generation = push(&site.operator, &edge.key(), &bundles.v3.bytes(), &[]).await;
    in_phase(&site.operator, DEVICE, generation, Phase::Running).await;
    running_unrefused(&edge, "3.1.0").await;
    alerts_low(&edge, "subject-2", "3.1.0").await;
    edge.device.terminate_cleanly().await;
}
