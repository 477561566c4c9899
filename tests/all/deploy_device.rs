//! Deployment to a running device (issue #15), the device's side: a desired
//! set written to the cloud's buckets is fetched, verified, started or
//! swapped in, and reported phase by phase.

use std::collections::BTreeMap;

use edgewise_host::deploy::model::{self, Deployment, Phase};
use edgewise_host::deploy::{Cloud, Desired, DesiredPlugin, Reported};
use edgewise_tests::nats::NatsServer;
use edgewise_tests::signed_bundle;

use std::time::Duration;

use crate::device::{DEVICE, Device, WAIT};
use crate::kill_recovery::{Row, Run, assert_exactly_the_replay, drained, recording, settings, upstream_outputs};
use crate::support::{create_sensors_stream, host_status, plugin, poll_until, publish_acked, value_until};

/// The `[deploy]` table of the test devices: short probation and resync.
pub(crate) const DEPLOY: &str = "[deploy]\nprobation = \"1s\"\nresync = \"2s\"\nreport_every = \"1s\"\n";

/// Push `bundle` as plugin `name` to `key` through `cloud`: its generation.
pub(crate) async fn push(cloud: &Cloud, key: &str, name: &str, bundle: &[u8], config: &[(&str, &str)]) -> u64 {
    let object = cloud.put_bundle(bundle).await.unwrap();
    let read = cloud.desired(key).await.unwrap();
    let (mut desired, generation) = match read {
        Some((desired, generation)) => (desired, Some(generation)),
        None => (Desired::default(), None),
    };
    desired.plugins.insert(
        name.to_owned(),
        DesiredPlugin {
            bundle: object,
            version: String::new(),
            size: bundle.len() as u64,
            config: config
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
        },
    );
    cloud.write_desired(key, &desired, generation).await.unwrap()
}

/// The deployment of `plugin` at `generation` once it reached a final phase.
pub(crate) async fn settled(cloud: &Cloud, device: &str, plugin: &str, generation: u64) -> (Reported, Deployment) {
    poll_until(
        &format!("a final phase of {plugin} generation {generation}"),
        WAIT,
        || async {
            let report = cloud
                .report_of(device)
                .await
                .map_err(|e| e.to_string())?
                .ok_or("no report")?;
            let deployment = report.plugins.get(plugin).and_then(|p| p.deployment.clone());
            match deployment {
                Some(d) if d.generation == generation && d.phase.is_final() => Ok((report, d)),
                _ => Err(format!("{report:#?}")),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_plugin_runs_then_is_healthy_and_reported() {
    let server = NatsServer::start_with_jetstream();
    let client = async_nats::connect(server.url()).await.unwrap();
    let cloud = Cloud::new(client.clone(), None);
    cloud.ensure_buckets().await.unwrap();
    let mut device = Device::with_plugins(&server, None, "100ms", DEPLOY);
    device.start_with(&client).await;
    let bundle = std::fs::read(signed_bundle("glucose-monitor")).unwrap();
    let generation = push(&cloud, &model::device_key(DEVICE), "glucose-monitor", &bundle, &[]).await;
    let (report, deployment) = settled(&cloud, DEVICE, "glucose-monitor", generation).await;
    assert_eq!(deployment.phase, Phase::Healthy, "{report:#?}");
    let phases: Vec<Phase> = deployment.history.iter().map(|c| c.phase).collect();
    assert_eq!(
        phases,
        [Phase::Received, Phase::Verified, Phase::Running, Phase::Healthy],
        "{report:#?}"
    );
    let plugin = &report.plugins["glucose-monitor"];
    assert_eq!(plugin.running_version, "0.2.0");
    assert_eq!(plugin.running_bundle, model::bundle_name(&bundle));
}

/// Sign glucose-monitor's component as `version` (its manifest otherwise
/// as is) into the device directory: the file name.
pub(crate) fn glucose_monitor_as(device: &Device, version: &str) -> String {
    let manifest = std::fs::read_to_string(edgewise_tests::plugin_manifest("glucose-monitor")).unwrap();
    let manifest = manifest.replace("version = \"0.2.0\"", &format!("version = \"{version}\""));
    assert!(manifest.contains(version));
    let path = device.path(&format!("glucose-monitor-{version}.toml"));
    std::fs::write(&path, manifest).unwrap();
    let out = format!("glucose-monitor-{version}.wasm");
    device.sign_bundle(&path, "glucose-monitor", &out);
    out
}

/// The readings of `rows` as a JSON-lines recording of bus messages, each
/// on its subject without a `sensor` in the payload (the sensor is the
/// subject's last token, as the device takes it).
fn jsonl_recording(rows: &[Row]) -> String {
    rows.iter()
        .map(|(subject, ts, value)| {
            format!(
                "{{\"subject\":\"sensors.cgm.subject-{subject}\",\"payload\":{{\"ts\":{ts},\"value\":{value},\"unit\":\"mg/dL\"}}}}\n"
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_swap_while_readings_flow_at_1000_per_second_loses_and_repeats_nothing_and_keeps_the_state() {
    const RATE: f64 = 1000.0;
    let rows = recording();
    let local = NatsServer::start_with_jetstream();
    let upstream = NatsServer::start_with_jetstream();
    let client = async_nats::connect(local.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client.clone());
    let sensors = create_sensors_stream(&jetstream).await;
    let cloud = Cloud::new(client.clone(), None);
    cloud.ensure_buckets().await.unwrap();
    let config = format!("{DEPLOY}{}", settings(rows[0].1));
    let mut device = Device::with_plugins(&local, Some(&upstream), "5m", &config);
    let (v1, v2) = (
        glucose_monitor_as(&device, "1.0.0"),
        glucose_monitor_as(&device, "2.0.0"),
    );
    device.start_with(&client).await;
    let key = model::device_key(DEVICE);
    let max_ahead = [("max_ahead", "8760h")];
    let bundle = |name: &str| std::fs::read(device.path(name)).unwrap();
    let first = push(&cloud, &key, "glucose-monitor", &bundle(&v1), &max_ahead).await;
    assert_eq!(
        settled(&cloud, DEVICE, "glucose-monitor", first).await.1.phase,
        Phase::Healthy
    );

    let publisher = {
        let (rows, jetstream) = (rows.clone(), jetstream.clone());
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            for (k, (subject, ts, value)) in rows.into_iter().enumerate() {
                tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / RATE)).await;
                let payload = format!(r#"{{"ts":{ts},"value":{value},"unit":"mg/dL"}}"#);
                publish_acked(&jetstream, format!("sensors.cgm.subject-{subject}"), payload.into()).await;
            }
        })
    };
    // The swap comes while readings flow, about a third of the way in.
    let third = rows.len() as u64 / 3;
    value_until(
        "a third of the readings taken",
        WAIT,
        || host_status(&client),
        |status| plugin(status, "glucose-monitor")["readings_in"].as_u64() >= Some(third),
    )
    .await;
    let second = push(&cloud, &key, "glucose-monitor", &bundle(&v2), &max_ahead).await;
    let (report, swapped) = settled(&cloud, DEVICE, "glucose-monitor", second).await;
    assert_eq!(swapped.phase, Phase::Healthy, "{report:#?}");
    assert!(
        swapped.pause_us.is_some(),
        "a swap says how long the input waited: {swapped:#?}"
    );
    assert!(
        !publisher.is_finished(),
        "the swap came while readings flowed (slow machine?)"
    );
    publisher.await.unwrap();
    drained(&client, &sensors, rows.len() as u64).await;
    let status = host_status(&client).await;
    assert_eq!(
        plugin(&status, "glucose-monitor")["readings_in"].as_u64(),
        Some(rows.len() as u64),
        "every reading given to the plugin once, across the swap: {status:#}"
    );
    assert_eq!(plugin(&status, "glucose-monitor")["version"], "2.0.0");
    device.terminate_cleanly().await;

    let stored = upstream_outputs(&upstream).await;
    let versions: std::collections::BTreeSet<&str> = stored.iter().filter_map(|(_, e)| e["version"].as_str()).collect();
    assert_eq!(versions, ["1.0.0", "2.0.0"].into(), "outputs of both versions");
    let recording = device.path("recording.jsonl");
    std::fs::write(&recording, jsonl_recording(&rows)).unwrap();
    let replay = edgewise_tests::edgewise([
        "replay",
        "--plugin",
        device.path(&v1).to_str().unwrap(),
        "--trust",
        device.path("trust").to_str().unwrap(),
        "--input",
        recording.to_str().unwrap(),
        "--config",
        "max_ahead=8760h",
    ]);
    assert_eq!(replay.code, Some(0), "{}", replay.stderr);
    let replayed: Vec<serde_json::Value> = replay
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let run = Run {
        stored,
        kills: 0,
        seconds: 0.0,
    };
    assert_exactly_the_replay(&run, &replayed, rows[rows.len() - 1].1);
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_unsigned_untrusted_older_and_oversized_bundles_are_refused_and_the_running_version_untouched() {
    let server = NatsServer::start_with_jetstream();
    let client = async_nats::connect(server.url()).await.unwrap();
    let cloud = Cloud::new(client.clone(), None);
    cloud.ensure_buckets().await.unwrap();
    let mut device = Device::with_plugins(&server, None, "100ms", &format!("{DEPLOY}max_bundle_mb = 1\n"));
    let (v1, v09) = (
        glucose_monitor_as(&device, "1.0.0"),
        glucose_monitor_as(&device, "0.9.0"),
    );
    let v2 = glucose_monitor_as(&device, "2.0.0");
    device.start_with(&client).await;
    let key = model::device_key(DEVICE);
    let read = |name: &str| std::fs::read(device.path(name)).unwrap();
    let first = push(&cloud, &key, "glucose-monitor", &read(&v1), &[]).await;
    assert_eq!(
        settled(&cloud, DEVICE, "glucose-monitor", first).await.1.phase,
        Phase::Healthy
    );

    let mut tampered = read(&v2);
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    let unsigned = std::fs::read(edgewise_tests::plugin_wasm("glucose-monitor")).unwrap();
    std::fs::create_dir_all(device.path("stranger")).unwrap();
    let stranger = edgewise_tests::generate_key(&device.path("stranger"), "stranger");
    let untrusted = device.path("untrusted.wasm");
    stranger
        .sign(
            &device.path("glucose-monitor-2.0.0.toml"),
            &edgewise_tests::plugin_wasm("glucose-monitor"),
            &untrusted,
        )
        .unwrap();
    let oversized = vec![0u8; 1024 * 1024 + 1];
    let cases: [(&str, Vec<u8>, &str); 5] = [
        ("tampered", tampered, "signature"),
        ("unsigned", unsigned, "unsigned"),
        (
            "untrusted",
            std::fs::read(&untrusted).unwrap(),
            "not in the trust store",
        ),
        ("older", read(&v09), "rollback"),
        ("oversized", oversized, "over the 1048576 allowed"),
    ];
    for (what, bytes, why) in cases {
        let generation = push(&cloud, &key, "glucose-monitor", &bytes, &[]).await;
        let (report, deployment) = settled(&cloud, DEVICE, "glucose-monitor", generation).await;
        assert_eq!(deployment.phase, Phase::Refused, "{what}: {report:#?}");
        let reason = deployment.reason.clone().unwrap_or_default();
        assert!(reason.contains(why), "{what}: `{why}` not in the reason `{reason}`");
        let running = &report.plugins["glucose-monitor"];
        assert_eq!(
            running.running_version, "1.0.0",
            "{what}: the running version untouched"
        );
        let status = host_status(&client).await;
        assert_eq!(
            plugin(&status, "glucose-monitor")["state"],
            "running",
            "{what}: {status:#}"
        );
    }
}
