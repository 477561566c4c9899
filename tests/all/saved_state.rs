//! A plugin's state survives a restart of the host (issue #14): the host
//! saves each plugin's snapshot (sealed with the device key) every 256 inputs
//! and at shutdown, and the next run starts the plugin from it. A saved state
//! that cannot be read is moved aside under a dated name and reported; the
//! plugin then starts afresh.
//!
//! faulty-v02 passes readings through (`fail = pass`), each answered with a
//! `seen` alert whose value is the readings it has counted: its state.

use std::os::unix::fs::PermissionsExt;

use edgewise_tests::nats::NatsServer;

use crate::device::Device;
use crate::hostile_plugins::V0_2;
use crate::recovery::give;
use crate::support::{collect_until, plugin, status_until};

const SAVED: &str = "data/snapshot-faulty-v02.sealed";

fn device(local: &NatsServer) -> Device {
    Device::new(local, None, &V0_2.plugin_table("pass", "", ""))
}

/// The dated files `snapshot-faulty-v02.sealed.<time>.aside` of `device`.
fn set_aside(device: &Device) -> Vec<String> {
    std::fs::read_dir(device.path("data"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("snapshot-faulty-v02.sealed.") && name.ends_with(".aside"))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clean_restart_keeps_the_plugins_state() {
    let local = NatsServer::start();
    let mut device = device(&local);
    let (client, mut alerts) = device.start_watching(&local, V0_2.name).await;
    assert_eq!(give(&client, &mut alerts, 3).await, [1, 2, 3]);
    assert!(
        !device.path(SAVED).exists(),
        "not saved before 256 inputs or the shutdown"
    );
    device.terminate_cleanly().await;
    let mode = std::fs::metadata(device.path(SAVED)).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);

    device.start_with(&client).await;
    assert_eq!(
        give(&client, &mut alerts, 1).await,
        [4],
        "counted on from the saved state"
    );
    device.terminate_cleanly().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn after_kill_9_the_plugin_resumes_from_its_last_saved_snapshot() {
    let local = NatsServer::start();
    let mut device = device(&local);
    let (client, mut alerts) = device.start_watching(&local, V0_2.name).await;
    give(&client, &mut alerts, 300).await;
    device.kill();
    // Saved at the 256th input; the 44 after it are not in the saved state
    // (until the durable input log gives them again).
    device.start_with(&client).await;
    assert_eq!(give(&client, &mut alerts, 1).await, [257]);
    device.terminate_cleanly().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saved_state_that_cannot_be_read_is_moved_aside_reported_and_the_plugin_starts_afresh() {
    let local = NatsServer::start();
    let mut device = device(&local);
    let (client, mut alerts) = device.start_watching(&local, V0_2.name).await;
    give(&client, &mut alerts, 2).await;
    device.terminate_cleanly().await;
    let mut bytes = std::fs::read(device.path(SAVED)).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    std::fs::write(device.path(SAVED), &bytes).unwrap();

    device.start_with(&client).await;
    let seen = collect_until(&mut alerts, "the report of the unreadable state", |got| {
        got.iter().any(|(_, alert)| alert["code"] == "plugin-degraded")
    })
    .await;
    let report = seen
        .iter()
        .find(|(_, alert)| alert["code"] == "plugin-degraded")
        .unwrap();
    let message = report.1["message"].as_str().unwrap();
    assert!(message.contains("its saved state cannot be read"), "{message}");
    assert_eq!(give(&client, &mut alerts, 1).await, [1], "afresh");
    let status = status_until(&client, "the state lost, counted", |status| {
        plugin(status, V0_2.name)["state_lost"] == 1
    })
    .await;
    assert_eq!(plugin(&status, V0_2.name)["state"], "running");
    let aside = set_aside(&device);
    assert_eq!(aside.len(), 1, "moved aside under a dated name: {aside:?}");
    device.terminate_cleanly().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_saved_state_the_new_configuration_refuses_is_kept_aside_and_the_plugin_starts_afresh() {
    let local = NatsServer::start();
    let mut device = device(&local);
    let (client, mut alerts) = device.start_watching(&local, V0_2.name).await;
    give(&client, &mut alerts, 2).await;
    device.terminate_cleanly().await;
    let saved = std::fs::read(device.path(SAVED)).unwrap();
    // As a new version that cannot take the old state would: its `init`
    // refuses any snapshot.
    device.edit_config(|config| config.replace("fail = \"pass\"\n", "fail = \"pass\"\nresume = \"refuse\"\n"));

    device.start_with(&client).await;
    let seen = collect_until(&mut alerts, "the report of the refused state", |got| {
        got.iter().any(|(_, alert)| alert["code"] == "plugin-degraded")
    })
    .await;
    let report = seen
        .iter()
        .find(|(_, alert)| alert["code"] == "plugin-degraded")
        .unwrap();
    let message = report.1["message"].as_str().unwrap();
    assert!(message.contains("did not take its saved state"), "{message}");
    assert_eq!(give(&client, &mut alerts, 1).await, [1], "afresh");
    // Kept, unchanged, for a version that can take it.
    let aside = set_aside(&device);
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(std::fs::read(device.path("data").join(&aside[0])).unwrap(), saved);
    device.terminate_cleanly().await;
}
