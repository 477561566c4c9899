//! Issue #11, items 2 and 6: no plugin can stop the host at start or at
//! shutdown, and a device starts whatever it can. Real `edgewise run`, real
//! nats-servers, real signed bundles.

use std::time::Duration;

use serde_json::Value;

use crate::device::{DEVICE, Device, WAIT, now_ms, reading, sigterm};
use crate::support::{
    assert_contains, collect_until, host_status, next_where, plugin, status_until, subscribe_alerts,
    upstream_alerts_where,
};
use edgewise_tests::nats::NatsServer;
use edgewise_tests::{edgewise, workspace_root};

/// Quarantine after 3 failures within a minute, for an hour.
const SUPERVISOR: &str = "[supervisor]\nbackoff_initial = \"50ms\"\nbackoff_max = \"200ms\"\n\
    quarantine_after = 3\nquarantine_window = \"1m\"\nquarantine_cooldown = \"1h\"\n";

/// Alerts until one from `glucose-monitor` and one `plugin-degraded` whose
/// subject ends with `degraded_from` have come; returns the degraded one.
pub(crate) async fn glucose_alert_and_degraded(alerts: &mut async_nats::Subscriber, degraded_from: &str) -> Value {
    let is_degraded =
        |(subject, alert): &(String, Value)| alert["code"] == "plugin-degraded" && subject.ends_with(degraded_from);
    let what = format!("a glucose alert and a degraded alert from {degraded_from}");
    let seen = collect_until(alerts, &what, |seen| {
        seen.iter()
            .any(|(subject, alert)| alert["code"] == "urgent-low" && subject.ends_with(".glucose-monitor"))
            && seen.iter().any(is_degraded)
    })
    .await;
    seen.into_iter().find(is_degraded).unwrap().1
}

/// Start `device`, then send glucose-monitor a low reading: the client, and
/// the `plugin-degraded` alert on a subject ending with `degraded_from` (once
/// glucose-monitor's alert has come too).
async fn start_and_degraded(
    device: &mut Device,
    local: &NatsServer,
    degraded_from: &str,
) -> (async_nats::Client, Value) {
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut alerts = subscribe_alerts(&client, ">").await;
    client.flush().await.unwrap();
    device.start_with(&client).await;
    client.publish("sensors.cgm.p1", reading(now_ms(), 45.0)).await.unwrap();
    let degraded = glucose_alert_and_degraded(&mut alerts, degraded_from).await;
    (client, degraded)
}

/// Sign faulty-plugin with its manifest changed by `edit`, as `out` in the device directory.
fn sign_faulty(device: &Device, out: &str, edit: impl Fn(String) -> String) {
    let source = workspace_root().join("tests/fixtures/faulty-plugin/edgewise.toml");
    let manifest = device.path(&format!("{out}.toml"));
    std::fs::write(&manifest, edit(std::fs::read_to_string(source).unwrap())).unwrap();
    device.sign_bundle(&manifest, "faulty-plugin", out);
}

/// Flip a byte in the middle of the bundle at `path` (in its code): its signature no longer holds.
fn flip_a_byte(path: &std::path::Path) {
    let mut bytes = std::fs::read(path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(path, bytes).unwrap();
}

/// Today: exit 101 at start ("Cannot start a runtime from within a runtime"):
/// `init` ran inside the async start-up and the panic message written to
/// WASI stderr re-entered tokio.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_that_panics_in_init_is_degraded_and_the_others_run() {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let plugins =
        format!("{SUPERVISOR}[[plugins]]\nbundle = \"faulty-plugin.wasm\"\n[plugins.config]\nfail = \"init-panic\"\n");
    let mut device = Device::new(&local, Some(&cloud), &plugins);
    let (client, degraded) = start_and_degraded(&mut device, &local, ".faulty-plugin").await;
    assert_eq!(degraded["severity"], "critical", "{degraded}");
    assert!(
        degraded["message"].as_str().unwrap().contains("panicked in init"),
        "{degraded}"
    );
    let status = status_until(&client, "faulty-plugin failed in init", |s| {
        plugin(s, "faulty-plugin")["failures"]["trap"].as_u64() >= Some(1)
    })
    .await;
    assert_eq!(plugin(&status, "glucose-monitor")["state"], "running", "{status}");
    device.terminate_cleanly().await;
}

/// Today: exit 1 at start, "its configuration was refused": one plugin's
/// `init` error stopped every plugin of the device.
#[tokio::test(flavor = "multi_thread")]
async fn a_configuration_refused_by_init_is_degraded_not_a_device_stop() {
    let local = NatsServer::start();
    let plugins =
        format!("{SUPERVISOR}[[plugins]]\nbundle = \"faulty-plugin.wasm\"\n[plugins.config]\nfail = \"init-err\"\n");
    let mut device = Device::new(&local, None, &plugins);
    let (client, degraded) = start_and_degraded(&mut device, &local, ".faulty-plugin").await;
    assert!(
        degraded["message"].as_str().unwrap().contains("fail=init-err"),
        "the plugin's reason: {degraded}"
    );
    // Supervised like any failure: backoff, then quarantine.
    // The state is set just before the failure is counted: wait for both.
    status_until(&client, "faulty-plugin quarantined after three returned errors", |s| {
        plugin(s, "faulty-plugin")["state"] == "quarantined"
            && plugin(s, "faulty-plugin")["failures"]["returned-error"].as_u64() >= Some(3)
    })
    .await;
    device.terminate_cleanly().await;
}

/// Today: the first start records 0.2.0 before its `init` refuses, and the
/// host exits 1; the second start then refuses the working 0.1.0 as a
/// rollback: the device cannot start either.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_refused_in_init_is_not_recorded_so_the_older_one_still_starts() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "");
    sign_faulty(&device, "faulty-0.2.0.wasm", |m| {
        m.replace("version = \"0.1.0\"", "version = \"0.2.0\"")
    });
    let config = std::fs::read_to_string(device.path("edgewise.toml")).unwrap();
    let with_faulty = |bundle: &str, fail: &str| {
        format!("{config}{SUPERVISOR}[[plugins]]\nbundle = \"{bundle}\"\n[plugins.config]\nfail = \"{fail}\"\n")
    };
    std::fs::write(
        device.path("edgewise.toml"),
        with_faulty("faulty-0.2.0.wasm", "init-err"),
    )
    .unwrap();
    let client = device.start(&local).await;
    status_until(&client, "0.2.0 failed in init", |s| {
        plugin(s, "faulty-plugin")["failures"]["returned-error"].as_u64() >= Some(1)
    })
    .await;
    device.terminate_cleanly().await;
    let record = std::fs::read_to_string(device.path("data/installed-versions.json")).unwrap_or_default();
    let faulty_version = |record: &str| {
        serde_json::from_str::<serde_json::Value>(record)
            .map_or(serde_json::Value::Null, |r| r["faulty-plugin"]["version"].clone())
    };
    assert_eq!(
        faulty_version(&record),
        serde_json::Value::Null,
        "0.2.0 never ran: {record}"
    );

    std::fs::write(device.path("edgewise.toml"), with_faulty("faulty-plugin.wasm", "none")).unwrap();
    device.start_with(&client).await;
    let status = status_until(&client, "0.1.0 running", |s| {
        plugin(s, "faulty-plugin")["state"] == "running"
    })
    .await;
    assert_eq!(plugin(&status, "faulty-plugin")["version"], "0.1.0", "{status}");
    assert_eq!(plugin(&status, "faulty-plugin")["errors"], 0, "{status}");
    device.terminate_cleanly().await;
    let record = std::fs::read_to_string(device.path("data/installed-versions.json")).unwrap();
    assert_eq!(
        faulty_version(&record),
        "0.1.0",
        "recorded once its init succeeded: {record}"
    );
}

/// Today: exit 1 at start, "plugin bundle ...: refused: ...": one bad
/// bundle stopped every plugin of the device.
#[tokio::test(flavor = "multi_thread")]
async fn a_refused_bundle_is_reported_and_the_others_run() {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let mut device = Device::new(&local, Some(&cloud), "[[plugins]]\nbundle = \"threshold.wasm\"\n");
    flip_a_byte(&device.path("threshold.wasm"));
    let (client, refused) = start_and_degraded(&mut device, &local, "._host").await;
    assert_eq!(refused["severity"], "critical", "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("threshold.wasm"),
        "names the bundle: {refused}"
    );
    let status = host_status(&client).await;
    let entry = plugin(&status, "threshold");
    assert_eq!(entry["state"], "refused", "{status}");
    assert!(
        entry["last_error"].as_str().unwrap_or_default().contains("signature"),
        "{status}"
    );
    assert_eq!(plugin(&status, "glucose-monitor")["state"], "running", "{status}");
    // Upstream too, through the outbox.
    upstream_alerts_where(&cloud, "the refusal upstream", |upstream| {
        upstream
            .iter()
            .any(|(subject, alert)| subject.ends_with(".up.alerts._host") && alert["code"] == "plugin-degraded")
    })
    .await;
    device.terminate_cleanly().await;
}

/// A bundle file that is not there (a typo, a lost file) is refused as an
/// unreadable one is, and the others run. Before, it was a configuration
/// error: exit 2, and no plugin of the device ran.
#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bundle_file_is_refused_and_the_others_run() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "[[plugins]]\nbundle = \"threshold.wasm\"\n");
    std::fs::remove_file(device.path("threshold.wasm")).unwrap();
    let (client, refused) = start_and_degraded(&mut device, &local, "._host").await;
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(message.contains("threshold.wasm"), "names the bundle: {refused}");
    let status = host_status(&client).await;
    let entry = status["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["state"] == "refused")
        .unwrap_or_else(|| panic!("no refused entry: {status}"));
    assert!(
        entry["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("No such file"),
        "{status}"
    );
    assert_eq!(plugin(&status, "glucose-monitor")["state"], "running", "{status}");
    device.terminate_cleanly().await;
}

/// When nothing can run, the exit code says so, with every reason.
#[test]
fn every_bundle_refused_exits_1_with_the_reasons() {
    let local = NatsServer::start();
    let device = Device::new(&local, None, "[[plugins]]\nbundle = \"threshold.wasm\"\n");
    for bundle in ["glucose-monitor.wasm", "threshold.wasm"] {
        flip_a_byte(&device.path(bundle));
    }
    let run = edgewise([
        "run".as_ref(),
        "--config".as_ref(),
        device.path("edgewise.toml").as_os_str(),
    ]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    for bundle in ["glucose-monitor.wasm", "threshold.wasm"] {
        assert!(run.stderr.contains(bundle), "{bundle} in {}", run.stderr);
    }
}

/// faulty-plugin spending 150 ms on every call, one reading a call.
const SLOW_PLUGIN: &str = "[limits]\nbatch_max = 1\n[[plugins]]\nbundle = \"faulty-plugin.wasm\"\n\
    [plugins.config]\nfail = \"slow\"\nevery = 1\nspin_ms = 150\n[plugins.limits]\ncall_deadline_ms = 2000\n";

/// Publish `readings` to [`SLOW_PLUGIN`] and wait until the host has taken
/// them all and the plugin is at work on the first.
async fn queue_for_the_slow_plugin(client: &async_nats::Client, readings: u64) {
    for _ in 0..readings {
        client
            .publish("sensors.hostile.h1", reading(now_ms(), 100.0))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    status_until(client, "every reading queued", |s| {
        s["ingest"]["messages"].as_u64() >= Some(readings)
            && plugin(s, "faulty-plugin")["readings_in"].as_u64() >= Some(1)
    })
    .await;
}

/// A plugin slow on every call, with a long queue, does not hold the exit:
/// the drain budget ends it, what is left is counted as dropped. Today the
/// host drains the whole queue (about 2,000 calls of 150 ms: 5 minutes).
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_finishes_with_a_slow_plugin_and_a_long_queue() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, SLOW_PLUGIN);
    let client = device.start(&local).await;
    queue_for_the_slow_plugin(&client, 2_000).await;
    let Some(stopped) = device.stop_within(Duration::from_secs(60)).await else {
        panic!("the host did not exit within 60 s of SIGTERM");
    };
    assert_eq!(stopped.code, Some(0), "{}", stopped.log);
    let summary = stopped.summary.expect("a final status at a clean exit");
    let slow = plugin(&summary, "faulty-plugin");
    assert!(
        slow["readings_dropped"].as_u64() > Some(0),
        "what the drain budget left is counted as dropped: {summary}"
    );
}

/// A second SIGTERM during the shutdown exits at once, with exit 1 (the
/// first one alone drains for the whole budget and exits 0). Today the
/// second signal is ignored and the drain runs to the end of the queue.
#[tokio::test(flavor = "multi_thread")]
async fn a_second_sigterm_during_shutdown_exits_at_once() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, SLOW_PLUGIN);
    let client = device.start(&local).await;
    queue_for_the_slow_plugin(&client, 500).await;
    let pid = device.pid();
    sigterm(pid);
    // The status responder stops first: once it no longer answers, the
    // host is shutting down (draining the slow plugin's queue).
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let asked = client.request(format!("edgewise.{DEVICE}.status"), "".into());
        if !matches!(tokio::time::timeout(Duration::from_millis(300), asked).await, Ok(Ok(_))) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the host did not start shutting down"
        );
    }
    let Some((code, stderr)) = device.terminate_within(Duration::from_secs(60)).await else {
        panic!("the host did not exit within 60 s of the second SIGTERM");
    };
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("second signal"), "{stderr}");
}

/// Start `device` with its data directory in the state `spoil` leaves it in
/// (after a first run made an outbox): the host must move the old files
/// aside, say so (status, `outbox-reset` alert) and alert as before. Today
/// it exits 1 at start (`outbox: ...`): no plugin runs.
async fn outbox_reset_after(spoil: impl Fn(&Device), what: &str) {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "");
    let client = device.start(&local).await;
    device.terminate_cleanly().await;
    assert!(device.path("data/outbox.sqlite3").exists());
    spoil(&device);
    let mut alerts = subscribe_alerts(&client, ">").await;
    client.flush().await.unwrap();
    device.start_with(&client).await;
    let reset = next_alert(&mut alerts, "._host").await;
    assert_eq!(
        (reset["code"].as_str(), reset["severity"].as_str()),
        (Some("outbox-reset"), Some("critical")),
        "[{what}] {reset}"
    );
    client.publish("sensors.cgm.p1", reading(now_ms(), 45.0)).await.unwrap();
    let mut alert = next_alert(&mut alerts, ".glucose-monitor").await;
    if alert["code"] == "plugin-degraded" {
        // glucose-monitor's state, saved by the first run under the old
        // device key, no longer opens: moved aside and said so.
        assert!(
            alert["message"]
                .as_str()
                .unwrap()
                .contains("its saved state cannot be read"),
            "[{what}] {alert}"
        );
        alert = next_alert(&mut alerts, ".glucose-monitor").await;
    }
    assert_eq!(alert["code"], "urgent-low", "[{what}]");
    let status = host_status(&client).await;
    assert!(
        status["outbox"]["reset"].as_str().is_some_and(|r| r.contains(".aside")),
        "[{what}] {status}"
    );
    let aside: Vec<String> = std::fs::read_dir(device.path("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".aside"))
        .collect();
    assert!(
        aside.iter().any(|n| n.starts_with("outbox.sqlite3.")),
        "[{what}] {aside:?}"
    );
    let (code, stderr) = device.terminate().await;
    assert_eq!(code, Some(0), "[{what}] {stderr}");
    assert!(stderr.contains("Outbox reset"), "[{what}] logged: {stderr}");
}

/// The next alert on a subject ending with `from`, skipping others.
async fn next_alert(alerts: &mut async_nats::Subscriber, from: &str) -> Value {
    next_where(alerts, &format!("alert from {from}"), |subject, _| {
        subject.ends_with(from)
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_wrong_outbox_key_moves_the_outbox_aside_and_alerting_goes_on() {
    outbox_reset_after(
        |device| std::fs::write(device.path("data/outbox.key"), [7u8; 32]).unwrap(),
        "wrong key",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_outbox_key_moves_the_outbox_aside_and_alerting_goes_on() {
    outbox_reset_after(
        |device| std::fs::remove_file(device.path("data/outbox.key")).unwrap(),
        "missing key",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_that_is_not_sqlite_is_moved_aside_and_alerting_goes_on() {
    outbox_reset_after(
        |device| {
            for suffix in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(device.path(&format!("data/outbox.sqlite3{suffix}")));
            }
            std::fs::write(device.path("data/outbox.sqlite3"), vec![0x42u8; 8192]).unwrap();
        },
        "not SQLite",
    )
    .await;
}

/// Before: one damaged page of a plugin's journal (its saved state, its
/// numbers, its logged inputs: read when its worker starts, not when the
/// outbox opens) refused every plugin with `database disk image is
/// malformed`, and the host ran on with nothing watching the patients.
#[tokio::test(flavor = "multi_thread")]
async fn a_damaged_page_of_the_plugins_journal_moves_the_outbox_aside_and_alerting_goes_on() {
    for table in ["journal_plugins", "journal_states"] {
        outbox_reset_after(
            |device| {
                let path = device.path("data/outbox.sqlite3");
                let (page_size, root): (i64, i64) = {
                    let db = rusqlite::Connection::open(&path).unwrap();
                    // Everything in the database file itself, then closed.
                    db.pragma_update(None, "wal_checkpoint", "TRUNCATE").unwrap();
                    let page_size = db.query_row("PRAGMA page_size", [], |row| row.get(0)).unwrap();
                    let root = db
                        .query_row("SELECT rootpage FROM sqlite_master WHERE name = ?1", [table], |row| {
                            row.get(0)
                        })
                        .unwrap();
                    (page_size, root)
                };
                let mut bytes = std::fs::read(&path).unwrap();
                let start = usize::try_from((root - 1) * page_size).unwrap();
                let page = &mut bytes[start..start + usize::try_from(page_size).unwrap()];
                for (i, byte) in page.iter_mut().enumerate() {
                    *byte = (i as u8).wrapping_mul(151).wrapping_add(7);
                }
                std::fs::write(&path, bytes).unwrap();
            },
            table,
        )
        .await;
    }
}

/// Two hosts on one data directory must not both run: the second is refused.
#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_locked_by_a_running_host_is_still_an_error() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "");
    device.start(&local).await;
    let second = edgewise([
        "run".as_ref(),
        "--config".as_ref(),
        device.path("edgewise.toml").as_os_str(),
    ]);
    assert_eq!(second.code, Some(1), "{}", second.stderr);
    assert_contains(&second.stderr, "locked");
    let aside = std::fs::read_dir(device.path("data"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".aside"))
        .count();
    assert_eq!(aside, 0, "nothing moved aside");
    device.terminate_cleanly().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_outbox_of_a_newer_schema_is_moved_aside_and_alerting_goes_on() {
    outbox_reset_after(
        |device| {
            // The host closed the outbox cleanly: its WAL is checkpointed
            // into the file. `user_version` is the big-endian u32 at byte 60
            // of an SQLite file's header.
            assert!(!device.path("data/outbox.sqlite3-wal").exists());
            let mut bytes = std::fs::read(device.path("data/outbox.sqlite3")).unwrap();
            bytes[60..64].copy_from_slice(&99u32.to_be_bytes());
            std::fs::write(device.path("data/outbox.sqlite3"), bytes).unwrap();
        },
        "newer schema",
    )
    .await;
}
