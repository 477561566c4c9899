//! The operator's deployment commands against a real nats-server with
//! JetStream: `edgewise push`, `undeploy`, `fleet` and `rollout`. There are
//! no devices here: the tests write the devices' reports themselves (and,
//! for `rollout`, play the devices with a task that answers each write of a
//! desired key with a report).

use std::collections::BTreeMap;
use std::ffi::OsString;

use async_nats::jetstream;
use futures::StreamExt;
use serde_json::Value;

use edgewise_host::bundle::DEFAULT_MAX_BUNDLE_BYTES;
use edgewise_host::deploy::model::{REPORTED_BUCKET, bundle_name};
use edgewise_host::deploy::{
    Cloud, CloudError, Deployment, Desired, DesiredPlugin, Origin, Phase, Reported, ReportedPlugin,
};
use edgewise_tests::nats::NatsServer;
use edgewise_tests::{Run, edgewise, plugin_wasm, signed_bundle};

use crate::support::assert_contains;

const PLUGIN: &str = "glucose-monitor";

/// The cloud's buckets on `server`, created.
async fn cloud(server: &NatsServer) -> Cloud {
    let client = async_nats::connect(server.url()).await.unwrap();
    let cloud = Cloud::new(client, None);
    cloud.ensure_buckets().await.unwrap();
    cloud
}

/// `edgewise ARGS --cloud URL`, run off the async runtime.
async fn cli(server: &NatsServer, args: &[&str]) -> Run {
    let mut args: Vec<OsString> = args.iter().map(OsString::from).collect();
    args.extend(["--cloud".into(), server.url().into()]);
    tokio::task::spawn_blocking(move || edgewise(args)).await.unwrap()
}

fn bundle_path(crate_name: &str) -> String {
    signed_bundle(crate_name).to_str().unwrap().to_owned()
}

/// The desired plugins under `key` (none for no key).
async fn plugins_of(cloud: &Cloud, key: &str) -> BTreeMap<String, DesiredPlugin> {
    cloud
        .desired(key)
        .await
        .unwrap()
        .map(|(desired, _)| desired.plugins)
        .unwrap_or_default()
}

/// A bundle name that no bundle has (an "old version" for the tests).
fn old_bundle() -> DesiredPlugin {
    DesiredPlugin {
        bundle: bundle_name(b"old glucose-monitor"),
        version: "0.1.0".to_owned(),
        size: 19,
        config: BTreeMap::new(),
        pushed_ms: 0,
    }
}

fn now_ms() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp() * 1000
}

/// A report of `device` in `groups`, running `plugin` whose latest
/// deployment (of `origin`) reached `phase`.
fn report(
    device: &str,
    groups: &[&str],
    origin: &Origin,
    plugin: &DesiredPlugin,
    phase: Phase,
    reason: Option<&str>,
) -> Reported {
    let mut deployment = Deployment::new(origin, plugin, now_ms());
    deployment.enter(Phase::Verified, None, now_ms());
    deployment.enter(Phase::Running, None, now_ms());
    deployment.enter(phase, reason.map(str::to_owned), now_ms());
    let running = if phase == Phase::Healthy {
        plugin.clone()
    } else {
        old_bundle()
    };
    Reported {
        device: device.to_owned(),
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        host_version: "test".to_owned(),
        last_seen_ms: now_ms(),
        generations: [(origin.key.clone(), origin.generation)].into(),
        plugins: [(
            PLUGIN.to_owned(),
            ReportedPlugin {
                running_version: running.version.clone(),
                running_digest: format!("sha256:{}", "ab".repeat(32)),
                running_bundle: running.bundle.clone(),
                deployment: Some(deployment),
                last_failure: None,
            },
        )]
        .into(),
        last_error: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_writes_a_new_generation_of_a_device_or_group_key_and_stores_the_bundle() {
    let server = NatsServer::start_with_jetstream();
    let cloud = cloud(&server).await;
    let bundle = bundle_path(PLUGIN);
    let bytes = std::fs::read(&bundle).unwrap();
    let name = bundle_name(&bytes);

    let run = cli(
        &server,
        &[
            "push", &bundle, "--device", "edge-01", "--set", "low=3.9", "--by", "alice",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let (desired, first) = cloud.desired("device.edge-01").await.unwrap().unwrap();
    assert_eq!(
        run.stdout.trim(),
        format!("pushed {PLUGIN} 0.2.3 ({name}) to device.edge-01: generation {first}")
    );
    let entry = &desired.plugins[PLUGIN];
    assert_eq!(entry.bundle, name);
    assert_eq!(entry.version, "0.2.3");
    assert_eq!(entry.size, bytes.len() as u64);
    assert_eq!(entry.config, [("low".to_owned(), "3.9".to_owned())].into());
    assert_eq!(desired.written_by, "alice");
    let fetched = cloud
        .fetch_bundle(&name, DEFAULT_MAX_BUNDLE_BYTES as u64)
        .await
        .unwrap();
    assert_eq!(bundle_name(&fetched), name);

    // A second plugin joins the set; the first stays.
    let threshold = bundle_path("threshold");
    let run = cli(&server, &["push", &threshold, "--device", "edge-01", "--json"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let pushed: Value = serde_json::from_str(&run.stdout).unwrap();
    let (desired, second) = cloud.desired("device.edge-01").await.unwrap().unwrap();
    assert!(second > first);
    assert_eq!(pushed["generation"], second);
    assert_eq!(pushed["plugin"], "threshold");
    assert_eq!(desired.plugins.keys().collect::<Vec<_>>(), [PLUGIN, "threshold"]);

    let run = cli(&server, &["push", &bundle, "--group", "ward"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let (desired, group) = cloud.desired("group.ward").await.unwrap().unwrap();
    assert!(group > second);
    assert_eq!(desired.plugins[PLUGIN].bundle, name);
    assert_contains(&run.stdout, &format!("to group.ward: generation {group}"));
}

/// A push to a key no device reads (a mistyped id or group) is written, but
/// said: before, it looked like any deployment, and `fleet` showed nothing
/// wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_to_a_key_no_device_has_reported_reading_is_written_and_warned_about() {
    const UNREAD: &str = "no device has reported reading";
    let server = NatsServer::start_with_jetstream();
    let cloud = cloud(&server).await;
    let bundle = bundle_path(PLUGIN);
    let run = cli(&server, &["push", &bundle, "--device", "edge-01"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_contains(&run.stderr, &format!("{UNREAD} `device.edge-01` yet"));

    // edge-01 reports, in group `ward`: pushes to it and to its group are
    // not warned about, a typo of the group is.
    let origin = Origin {
        key: "device.edge-01".to_owned(),
        generation: 1,
    };
    cloud
        .report(&report(
            "edge-01",
            &["ward"],
            &origin,
            &old_bundle(),
            Phase::Healthy,
            None,
        ))
        .await
        .unwrap();
    for target in [["--device", "edge-01"], ["--group", "ward"]] {
        let run = cli(&server, &["push", &bundle, target[0], target[1]]).await;
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        assert!(!run.stderr.contains(UNREAD), "{target:?}: {}", run.stderr);
    }
    let run = cli(&server, &["push", &bundle, "--group", "wrad"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_contains(&run.stderr, &format!("{UNREAD} `group.wrad` yet: check the name"));
    assert!(
        cloud.desired("group.wrad").await.unwrap().is_some(),
        "written all the same"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_refuses_what_is_not_a_signed_bundle_or_not_a_key_and_writes_nothing() {
    let server = NatsServer::start_with_jetstream();
    let cloud = cloud(&server).await;
    let component = plugin_wasm(PLUGIN).to_str().unwrap().to_owned();
    let run = cli(&server, &["push", &component, "--device", "edge-01"]).await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(&run.stderr, "not a signed bundle");

    let dir = tempfile::tempdir().unwrap();
    let huge = dir.path().join("huge.wasm");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(DEFAULT_MAX_BUNDLE_BYTES as u64 + 1)
        .unwrap();
    let run = cli(&server, &["push", huge.to_str().unwrap(), "--device", "edge-01"]).await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(&run.stderr, "over the 33554432-byte limit");

    let bundle = bundle_path(PLUGIN);
    let run = cli(&server, &["push", &bundle, "--device", "edge.01"]).await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    let run = cli(&server, &["push", &bundle, "--device", "edge-01", "--group", "ward"]).await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(cloud.desired("device.edge-01").await.unwrap().is_none());

    let unreachable = edgewise(["push", &bundle, "--device", "edge-01", "--cloud", "nats://127.0.0.1:1"]);
    assert_eq!(unreachable.code, Some(1), "{}", unreachable.stderr);
    assert_contains(&unreachable.stderr, "cannot connect to nats://127.0.0.1:1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_from_a_stale_generation_is_a_conflict_and_overwrites_nothing() {
    let server = NatsServer::start_with_jetstream();
    let cloud = cloud(&server).await;
    let mut desired = Desired::default();
    desired.plugins.insert(PLUGIN.to_owned(), old_bundle());
    let first = cloud.write_desired("device.edge-01", &desired, None).await.unwrap();
    // Two operators read `first`; one writes, the other's write is refused.
    let mine = Desired {
        written_by: "bob".to_owned(),
        ..desired.clone()
    };
    let second = cloud.write_desired("device.edge-01", &mine, Some(first)).await.unwrap();
    let theirs = Desired::default();
    let refused = cloud.write_desired("device.edge-01", &theirs, Some(first)).await;
    assert!(
        matches!(&refused, Err(CloudError::Conflict { key, read }) if key == "device.edge-01" && *read == first),
        "{refused:?}"
    );
    assert_contains(&refused.unwrap_err().to_string(), "nothing was overwritten");
    let refused = cloud.write_desired("device.edge-01", &theirs, None).await;
    assert!(matches!(refused, Err(CloudError::Conflict { .. })), "{refused:?}");
    assert_eq!(cloud.desired("device.edge-01").await.unwrap(), Some((mine, second)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undeploy_removes_the_plugin_and_refuses_one_not_in_the_set() {
    let server = NatsServer::start_with_jetstream();
    let cloud = cloud(&server).await;
    let bundle = bundle_path(PLUGIN);
    let run = cli(&server, &["push", &bundle, "--group", "ward"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let (_, pushed) = cloud.desired("group.ward").await.unwrap().unwrap();

    let run = cli(&server, &["undeploy", PLUGIN, "--group", "ward"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let (desired, undeployed) = cloud.desired("group.ward").await.unwrap().unwrap();
    assert!(undeployed > pushed);
    assert!(desired.plugins.is_empty());
    assert_eq!(
        run.stdout.trim(),
        format!("undeployed {PLUGIN} from group.ward: generation {undeployed}")
    );

    let run = cli(&server, &["undeploy", PLUGIN, "--group", "ward"]).await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(&run.stderr, "is not in the desired set of `group.ward` (it has none)");
    let run = cli(&server, &["undeploy", PLUGIN, "--device", "never-pushed"]).await;
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_eq!(cloud.desired("group.ward").await.unwrap().unwrap().1, undeployed);
    assert!(cloud.desired("device.never-pushed").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_shows_every_report_what_each_device_is_behind_and_an_unreadable_one_as_a_row() {
    let server = NatsServer::start_with_jetstream();
    let cloud = cloud(&server).await;
    let entry = old_bundle();
    let mut desired = Desired::default();
    desired.plugins.insert(PLUGIN.to_owned(), entry.clone());
    let first = cloud.write_desired("group.ward", &desired, None).await.unwrap();
    let origin = Origin {
        key: "group.ward".to_owned(),
        generation: first,
    };
    cloud
        .report(&report("edge-01", &["ward"], &origin, &entry, Phase::Healthy, None))
        .await
        .unwrap();
    let mut failed = report(
        "edge-02",
        &["ward"],
        &origin,
        &entry,
        Phase::RolledBack,
        Some("init failed: trap"),
    );
    failed.last_error = Some("cannot fetch a bundle:\nno responders".to_owned());
    cloud.report(&failed).await.unwrap();
    // A later generation edge-02 has not read yet (edge-01's report says it
    // read it: it is the one in sync).
    let second = cloud.write_desired("group.ward", &desired, Some(first)).await.unwrap();
    let mut synced = report("edge-01", &["ward"], &origin, &entry, Phase::Healthy, None);
    synced.generations.insert("group.ward".to_owned(), second);
    cloud.report(&synced).await.unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let reported = jetstream::new(client).get_key_value(REPORTED_BUCKET).await.unwrap();
    reported.put("device.broken", "{not json".into()).await.unwrap();
    // A device speaking for another under its own key (the only one it may
    // write): healthy and in sync, it says. Not believed.
    let impostor = report("edge-02", &["ward"], &origin, &entry, Phase::Healthy, None);
    reported
        .put("device.edge-09", impostor.to_bytes().into())
        .await
        .unwrap();

    let run = cli(&server, &["fleet"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("DEVICE"), "{}", run.stdout);
    assert!(
        lines[1].starts_with("broken") && lines[1].contains("unreadable report:"),
        "{}",
        run.stdout
    );
    assert!(
        lines[2].starts_with("edge-01") && lines[2].contains("in sync"),
        "{}",
        run.stdout
    );
    assert!(lines[2].contains("healthy"), "{}", run.stdout);
    assert!(lines[3].starts_with("edge-02"), "{}", run.stdout);
    assert_contains(lines[3], &format!("behind: group.ward {first}<{second}"));
    assert_contains(lines[3], "rolled-back");
    assert_contains(lines[3], "init failed: trap");
    assert_contains(lines[3], "0.1.0");
    assert_contains(
        &run.stdout,
        "edge-02: last error: cannot fetch a bundle:\\nno responders",
    );
    assert!(
        run.stdout.lines().any(|line| line.starts_with("edge-09")
            && line.contains("unreadable report: it reports device `edge-02`, whose key is `device.edge-02`")),
        "{}",
        run.stdout
    );

    let run = cli(&server, &["fleet", "--json"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let fleet: Value = serde_json::from_str(&run.stdout).unwrap();
    let devices: Vec<&str> = fleet
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device"].as_str().unwrap())
        .collect();
    assert_eq!(devices, ["broken", "edge-01", "edge-02", "edge-09"]);
    assert!(fleet[0]["error"].is_string());
    assert_eq!(fleet[1]["behind"], serde_json::json!([]));
    assert_eq!(fleet[2]["behind"][0]["current"], second);
    assert_eq!(fleet[2]["plugins"][PLUGIN]["deployment"]["phase"], "rolled-back");
    let parsed: Reported = serde_json::from_value(fleet[2].clone()).unwrap();
    assert_eq!(parsed, failed, "edge-02's own report, not the impostor's");
    assert!(
        fleet[3]["error"].as_str().unwrap().contains("reports device `edge-02`"),
        "{fleet}"
    );

    let run = cli(&server, &["fleet", "--device", "edge-02"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    // Its row and its last error; edge-01 not at all.
    assert_eq!(
        run.stdout.lines().filter(|l| l.starts_with("edge-02")).count(),
        2,
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("edge-01"), "{}", run.stdout);
    let run = cli(&server, &["fleet", "--device", "nobody"]).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_contains(&run.stderr, "device `nobody` has not reported");
}

/// Play the devices `fates` (device → the phase each ends a deployment of
/// `bundle` in): each write of a device's key that names `bundle` is
/// answered with a report of that generation in that phase.
async fn play_devices(cloud: Cloud, group: &'static str, fates: BTreeMap<&'static str, Phase>, bundle: String) {
    let keys: Vec<String> = fates.keys().map(|d| format!("device.{d}")).collect();
    let mut watch = cloud.watch_desired(keys).await.unwrap();
    tokio::spawn(async move {
        while let Some(Ok(entry)) = watch.next().await {
            let Ok(desired) = Desired::parse(&entry.value) else {
                continue;
            };
            let Some(plugin) = desired.plugins.get(PLUGIN).filter(|p| p.bundle == bundle) else {
                continue;
            };
            let device = entry.key.strip_prefix("device.").unwrap();
            let phase = fates[device];
            let reason = (phase != Phase::Healthy).then_some("init failed: refused the snapshot");
            let origin = Origin {
                key: entry.key.clone(),
                generation: entry.revision,
            };
            cloud
                .report(&report(device, &[group], &origin, plugin, phase, reason))
                .await
                .unwrap();
        }
    });
}

/// Each device of `devices` reports it runs the old bundle from the group.
async fn old_reports(cloud: &Cloud, group: &str, devices: &[&str]) {
    let origin = Origin {
        key: format!("group.{group}"),
        generation: 1,
    };
    for device in devices {
        cloud
            .report(&report(device, &[group], &origin, &old_bundle(), Phase::Healthy, None))
            .await
            .unwrap();
    }
}

/// A cloud whose `devices` report being in `group` and running the old
/// bundle; the new bundle's path and object name.
async fn group_on_the_old_bundle(group: &str, devices: &[&str]) -> (NatsServer, Cloud, String, String) {
    let server = NatsServer::start_with_jetstream();
    let cloud = cloud(&server).await;
    let bundle = bundle_path(PLUGIN);
    let name = bundle_name(&std::fs::read(&bundle).unwrap());
    old_reports(&cloud, group, devices).await;
    (server, cloud, bundle, name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_stops_at_the_wave_over_the_failure_share_and_puts_the_device_keys_back() {
    let devices = ["a", "b", "c", "d", "e"];
    let (server, cloud, bundle, name) = group_on_the_old_bundle("ward", &devices).await;
    // What the keys hold before: b another plugin, d its own pinned old
    // version of this one; a, c and e have no key.
    let mut b_set = Desired::default();
    b_set.plugins.insert("threshold".to_owned(), old_bundle());
    cloud.write_desired("device.b", &b_set, None).await.unwrap();
    let mut pinned = old_bundle();
    pinned.config.insert("low".to_owned(), "4.2".to_owned());
    let mut d_set = Desired::default();
    d_set.plugins.insert(PLUGIN.to_owned(), pinned);
    cloud.write_desired("device.d", &d_set, None).await.unwrap();
    let mut before = BTreeMap::new();
    for device in devices {
        before.insert(device, plugins_of(&cloud, &format!("device.{device}")).await);
    }
    let fates = [
        ("a", Phase::Healthy),
        ("b", Phase::Healthy),
        ("c", Phase::Healthy),
        ("d", Phase::RolledBack),
        ("e", Phase::RolledBack),
    ];
    play_devices(cloud.clone(), "ward", fates.into(), name.clone()).await;

    // Waves a | b | c, d | e: the third has 1 failure of 4 devices, over 20%.
    let run = cli(
        &server,
        &[
            "rollout",
            &bundle,
            "--group",
            "ward",
            "--waves",
            "1,2,4,100%",
            "--max-failures",
            "20%",
            "--json",
        ],
    )
    .await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert_contains(
        &run.stderr,
        "rollout aborted at wave 3: 1 of 4 devices failed: d (rolled-back: init failed: refused the snapshot)",
    );
    assert_contains(&run.stderr, "wave 3/4: c, d");
    let summary: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["aborted"], true);
    assert_eq!(summary["waves"].as_array().unwrap().len(), 3);
    assert_eq!(summary["waves"][2]["devices"][1]["device"], "d");
    assert_eq!(summary["waves"][2]["devices"][1]["phase"], "rolled-back");
    assert_eq!(summary["failed"][0]["reason"], "init failed: refused the snapshot");
    assert_eq!(summary["problems"], serde_json::json!([]));
    // d failed: its key is as before (its own pinned old version). a, b and
    // c are healthy on the new version: they keep it (anti-rollback would
    // refuse the old one on them).
    assert_eq!(plugins_of(&cloud, "device.d").await, before["d"], "device.d");
    for device in ["a", "b", "c"] {
        let (desired, _) = cloud.desired(&format!("device.{device}")).await.unwrap().unwrap();
        assert_eq!(
            desired.plugins[PLUGIN].bundle, name,
            "device.{device} keeps the new bundle"
        );
    }
    assert!(
        cloud.desired("device.e").await.unwrap().is_none(),
        "e was never written"
    );
    assert!(cloud.desired("group.ward").await.unwrap().is_none());

    let fleet = cli(&server, &["fleet", "--device", "d"]).await;
    assert_contains(&fleet.stdout, "rolled-back");
    assert_contains(&fleet.stdout, "init failed: refused the snapshot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollout_with_every_wave_healthy_moves_the_plugin_to_the_group_key() {
    let devices = ["f", "g", "h"];
    let (server, cloud, bundle, name) = group_on_the_old_bundle("icu", &devices).await;
    // Another group's device is not a member.
    old_reports(&cloud, "ward", &["x"]).await;
    let fates = devices.map(|d| (d, Phase::Healthy));
    play_devices(cloud.clone(), "icu", fates.into(), name.clone()).await;

    let run = cli(&server, &["rollout", &bundle, "--group", "icu", "--set", "low=3.9"]).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_contains(&run.stdout, "3 devices in 2 waves (1, 3)");
    let (group, generation) = cloud.desired("group.icu").await.unwrap().unwrap();
    assert_contains(&run.stdout, &format!("group.icu: generation {generation}"));
    assert_eq!(group.plugins[PLUGIN].bundle, name);
    assert_eq!(group.plugins[PLUGIN].config["low"], "3.9");
    for device in devices {
        assert!(
            plugins_of(&cloud, &format!("device.{device}")).await.is_empty(),
            "{device}"
        );
        assert!(
            run.stdout
                .lines()
                .any(|l| l.contains(&format!(" {device} ")) && l.contains("healthy")),
            "{}",
            run.stdout
        );
    }
    assert!(cloud.desired("device.x").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_that_never_reports_the_generation_fails_its_wave_at_the_timeout() {
    let (server, cloud, bundle, _) = group_on_the_old_bundle("lab", &["silent"]).await;
    let run = cli(&server, &["rollout", &bundle, "--group", "lab", "--timeout", "1s"]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert_contains(&run.stdout, "silent  timeout");
    assert_contains(&run.stderr, "no final phase within 1s");
    assert!(plugins_of(&cloud, "device.silent").await.is_empty());

    let run = cli(&server, &["rollout", &bundle, "--group", "nobody-here"]).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_contains(&run.stderr, "no device reports being in group `nobody-here`");
}

/// A cloud nothing was pushed to has no buckets: `fleet` shows an empty
/// fleet (as `kubectl get pods` an empty namespace), `rollout` and
/// `undeploy` say what is missing, not that a bucket cannot be opened, and
/// nothing is created by them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_cloud_nothing_was_pushed_to_fleet_is_empty_and_rollout_and_undeploy_say_why() {
    let server = NatsServer::start_with_jetstream();
    let bundle = bundle_path(PLUGIN);

    let run = cli(&server, &["fleet"]).await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    assert_eq!(run.stdout.trim(), "no device has reported yet", "{}", run.stderr);
    let run = cli(&server, &["fleet", "--json"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&run.stdout).unwrap(),
        serde_json::json!([])
    );
    let run = cli(&server, &["fleet", "--device", "edge-01"]).await;
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_contains(&run.stderr, "device `edge-01` has not reported");

    let undeploy = cli(&server, &["undeploy", PLUGIN, "--device", "edge-01"]).await;
    assert_eq!(undeploy.code, Some(2), "{}", undeploy.stderr);
    assert_contains(
        &undeploy.stderr,
        "is not in the desired set of `device.edge-01` (it has none)",
    );

    let rollout = cli(&server, &["rollout", &bundle, "--group", "ward"]).await;
    assert_eq!(rollout.code, Some(1), "{}", rollout.stderr);
    assert_contains(&rollout.stderr, "no device reports being in group `ward`");

    for run in [&undeploy, &rollout] {
        assert!(!run.stderr.contains("cannot open the bucket"), "{}", run.stderr);
    }
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client);
    let mut streams = js.stream_names();
    let mut names = Vec::new();
    while let Some(name) = streams.next().await {
        names.push(name.unwrap());
    }
    assert_eq!(names, Vec::<String>::new(), "nothing is created by reading");
}

/// Only a missing bucket is an empty fleet: a server without JetStream, or
/// a JetStream domain nobody answers for, is an error (exit 1), not a fleet
/// with no device.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_jetstream_or_in_another_domain_fleet_is_an_error_not_an_empty_fleet() {
    let server = NatsServer::start();
    let run = cli(&server, &["fleet"]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("no device has reported yet"), "{}", run.stdout);
    assert_contains(&run.stderr, "edgewise-reported");

    let server = NatsServer::start_with_jetstream();
    let run = cli(&server, &["fleet", "--domain", "nowhere"]).await;
    assert_eq!(run.code, Some(1), "{}\n{}", run.stdout, run.stderr);
    assert!(!run.stdout.contains("no device has reported yet"), "{}", run.stdout);
    assert_contains(&run.stderr, "edgewise-reported");
}

/// A device key someone else writes during a wave (a newer push of the
/// plugin to that device) supersedes the rollout's entry there: not a
/// failure of the bundle, so it does not count towards the abort; the
/// rollout says so and leaves the other write alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_whose_key_is_written_again_during_its_wave_is_superseded_not_failed() {
    let devices = ["p", "q"];
    let (server, cloud, bundle, name) = group_on_the_old_bundle("ward", &devices).await;
    play_devices(cloud.clone(), "ward", [("p", Phase::Healthy)].into(), name.clone()).await;
    // q: someone else pushes another version to `device.q` as soon as the
    // rollout wrote it; q reports that newer generation running.
    let mut watch = cloud.watch_desired(vec!["device.q".to_owned()]).await.unwrap();
    let other = cloud.clone();
    let new_bundle = name.clone();
    tokio::spawn(async move {
        while let Some(Ok(entry)) = watch.next().await {
            let Ok(mut desired) = Desired::parse(&entry.value) else {
                continue;
            };
            if desired.plugins.get(PLUGIN).is_none_or(|p| p.bundle != new_bundle) {
                continue;
            }
            let mut newer = old_bundle();
            newer.version = "0.3.0".to_owned();
            desired.plugins.insert(PLUGIN.to_owned(), newer.clone());
            let generation = other
                .write_desired("device.q", &desired, Some(entry.revision))
                .await
                .unwrap();
            let origin = Origin {
                key: "device.q".to_owned(),
                generation,
            };
            other
                .report(&report("q", &["ward"], &origin, &newer, Phase::Running, None))
                .await
                .unwrap();
        }
    });

    let run = cli(
        &server,
        &[
            "rollout",
            &bundle,
            "--group",
            "ward",
            "--waves",
            "100%",
            "--max-failures",
            "0%",
            "--json",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{}\n{}", run.stdout, run.stderr);
    let summary: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["aborted"], false, "{summary:#}");
    assert_eq!(summary["failed"], serde_json::json!([]), "{summary:#}");
    assert_eq!(summary["waves"][0]["devices"][1]["device"], "q");
    assert_eq!(summary["waves"][0]["devices"][1]["phase"], "superseded");
    assert_contains(&run.stderr, "q: superseded");
    // The other push stays where it was written.
    assert_eq!(plugins_of(&cloud, "device.q").await[PLUGIN].version, "0.3.0");
    assert_eq!(
        cloud.desired("group.ward").await.unwrap().unwrap().0.plugins[PLUGIN].bundle,
        name
    );
}

/// `fleet`'s digest of what runs is the bundle's, as `push` printed it, so
/// an operator can tell which push a device runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_shows_the_bundle_digest_push_printed() {
    let server = NatsServer::start_with_jetstream();
    let cloud = cloud(&server).await;
    let bundle = bundle_path(PLUGIN);
    let run = cli(&server, &["push", &bundle, "--device", "edge-01"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let printed = run
        .stdout
        .split(['(', ')'])
        .nth(1)
        .unwrap_or_else(|| panic!("no digest in `{}`", run.stdout))
        .to_owned();
    assert!(printed.starts_with("sha256-"), "{printed}");
    let (desired, generation) = cloud.desired("device.edge-01").await.unwrap().unwrap();
    let origin = Origin {
        key: "device.edge-01".to_owned(),
        generation,
    };
    let entry = &desired.plugins[PLUGIN];
    // The code digest the device reports is another digest.
    let reported = report("edge-01", &[], &origin, entry, Phase::Healthy, None);
    assert!(!reported.plugins[PLUGIN].running_digest.contains(&printed[7..19]));
    cloud.report(&reported).await.unwrap();

    let run = cli(&server, &["fleet"]).await;
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_contains(lines[0], "BUNDLE");
    assert_contains(lines[1], &printed[.."sha256-".len() + 12]);
}

/// Every phase `rollout` can show a device in is in its `--help` and in
/// docs/operators.md's section on it.
#[test]
fn every_phase_a_rollout_shows_is_documented() {
    let run = edgewise(["rollout", "--help"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let docs = std::fs::read_to_string(edgewise_tests::workspace_root().join("docs/operators.md")).unwrap();
    let start = docs.find("### `edgewise rollout`").expect("a section on rollout");
    let section = &docs[start..];
    let section = &section[..section.find("\n## ").unwrap_or(section.len())];
    let device_phases = [Phase::Healthy, Phase::Refused, Phase::Failed, Phase::RolledBack].map(Phase::name);
    for phase in device_phases.into_iter().chain(["timeout", "superseded"]) {
        let quoted = format!("`{phase}`");
        assert!(
            run.stdout.contains(&quoted),
            "{quoted} is not in the help:\n{}",
            run.stdout
        );
        assert!(
            section.contains(&quoted),
            "{quoted} is not in docs/operators.md's section on rollout"
        );
    }
}
