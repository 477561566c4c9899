//! Issue #11, items 4 and 5: the host never consumes its own traffic, and
//! its control subjects are not an open door. Real `edgewise run`, real
//! nats-servers (one configured with exactly the permissions that
//! docs/operators.md gives a device).

use std::process::Command;
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use crate::device::{DEVICE, Device, WAIT, now_ms, reading, with_credentials};
use crate::support::{
    assert_contains, create_sensors_stream, host_status, next_json, next_where, plugin, poll_until, publish_acked,
    run_within, status_until, subscribe_alerts, upstream_alerts_where, upstream_messages_via,
};
use edgewise_tests::nats::NatsServer;
use edgewise_tests::{edgewise, edgewise_bin, workspace_root};

/// Today the host starts with these: a plugin on `>` then receives the
/// host's own alerts and dead letters, dead-letters them, receives those...
#[test]
fn an_operator_subscription_overlapping_the_host_subjects_is_a_config_error() {
    let local = NatsServer::start();
    for filter in [
        ">",
        "edgewise.*.>",
        "*.*.alerts.*",
        "edgewise.dev-1.deadletter",
        "_INBOX.>",
    ] {
        let plugins =
            format!("[[plugins]]\nbundle = \"threshold.wasm\"\nsubscriptions = [\"sensors.>\", \"{filter}\"]\n");
        let device = Device::new(&local, None, &plugins);
        let config = device.path("edgewise.toml");
        let (code, stderr) = run_within(
            Command::new(edgewise_bin()).args(["run", "--config"]).arg(&config),
            WAIT,
        )
        .unwrap_or_else(|stderr| (None, stderr));
        assert_eq!(code, Some(2), "`{filter}`: {stderr}");
        assert!(stderr.contains("plugins[1].subscriptions"), "`{filter}`: {stderr}");
        assert!(stderr.contains(filter), "`{filter}`: {stderr}");
    }
}

/// Today: with a plugin whose manifest subscribes to `>`, one alert sets off
/// an endless loop of dead letters (about 44,000 in 3 s with nobody
/// publishing); this test then sees thousands where one is due.
#[tokio::test(flavor = "multi_thread")]
async fn a_manifest_subscribed_to_everything_is_refused_and_nothing_loops() {
    let local = NatsServer::start();
    let mut device = Device::new(
        &local,
        None,
        "[[plugins]]\nbundle = \"everything.wasm\"\n[plugins.config]\nfail = \"none\"\n",
    );
    let source = workspace_root().join("tests/fixtures/faulty-plugin/edgewise.toml");
    let manifest = std::fs::read_to_string(source)
        .unwrap()
        .replace("subscriptions = [\"sensors.hostile.>\"]", "subscriptions = [\">\"]");
    assert!(manifest.contains("[\">\"]"));
    // `edgewise sign` refuses it (every device would): signed with the
    // library, as a bundle made by other means.
    sign_without_the_cli_checks(&manifest, "faulty-plugin", &device.path("everything.wasm"));
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut dead = client.subscribe(format!("edgewise.{DEVICE}.deadletter")).await.unwrap();
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    client.flush().await.unwrap();
    device.start_with(&client).await;
    // One alert and one bad message: one dead letter is due, no more.
    client.publish("sensors.cgm.p1", reading(now_ms(), 45.0)).await.unwrap();
    assert_eq!(next_json(&mut alerts, "glucose alert").await["code"], "urgent-low");
    client.publish("sensors.cgm.p1", "not json".into()).await.unwrap();
    let letter = next_json(&mut dead, "dead letter").await;
    let status = host_status(&client).await;
    assert_eq!(status["ingest"]["deadlettered"], 1, "{status}");
    assert_eq!(status["ingest"]["messages"], 2, "{status}");
    assert_eq!(letter["subject"], "sensors.cgm.p1", "{letter}");
    let refused = status["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["state"] == "refused")
        .unwrap_or_else(|| panic!("no refused plugin: {status}"));
    assert!(
        refused["last_error"].as_str().unwrap().contains("`>`"),
        "names the subscription: {status}"
    );
    client.flush().await.unwrap();
    let mut more = 0;
    while let Some(Some(_)) = futures::FutureExt::now_or_never(dead.next()) {
        more += 1;
    }
    assert_eq!(more, 0, "dead letters nobody caused");
    device.terminate_cleanly().await;
}

/// `edgewise sign` refuses a manifest that every device would refuse (a
/// subscription on the host's own subjects whatever the device id), and
/// `edgewise verify` refuses such a bundle signed by other means: a bundle
/// that passes both runs on a device. (Before, both said OK.)
#[test]
fn sign_and_verify_refuse_subscriptions_every_device_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let source = std::fs::read_to_string(workspace_root().join("tests/fixtures/faulty-plugin/edgewise.toml")).unwrap();
    let key = edgewise_tests::run_key();
    for filter in [">", "edgewise.*.>", "_INBOX.>"] {
        let text = source.replace(
            "subscriptions = [\"sensors.hostile.>\"]",
            &format!("subscriptions = [\"sensors.hostile.>\", \"{filter}\"]"),
        );
        assert!(text.contains(filter), "{text}");
        let manifest = dir.path().join("manifest.toml");
        std::fs::write(&manifest, &text).unwrap();
        let out = dir.path().join("bundle.wasm");
        let sign =
            edgewise_tests::run(key.sign_command(&manifest, &edgewise_tests::plugin_wasm("faulty-plugin"), &out));
        assert_eq!(sign.code, Some(2), "`{filter}`: {}", sign.stderr);
        assert!(
            sign.stderr.contains(&format!("`{filter}`")) && sign.stderr.contains("on every device"),
            "{}",
            sign.stderr
        );
        assert!(!out.exists(), "nothing signed");

        sign_without_the_cli_checks(&text, "faulty-plugin", &out);
        let verify = edgewise([
            "verify".as_ref(),
            "--trust".as_ref(),
            key.trust_dir().as_os_str(),
            out.as_os_str(),
        ]);
        assert_eq!(verify.code, Some(1), "`{filter}`: {}\n{}", verify.stdout, verify.stderr);
        assert!(verify.stderr.contains("refused: subscriptions"), "{}", verify.stderr);
        assert!(!verify.stdout.contains("OK"), "{}", verify.stdout);
        std::fs::remove_file(&out).unwrap();
    }
}

/// `plugin`'s component with the manifest `source` (contract 0.1), signed by
/// the run's key as `out` through the library, without the checks of
/// `edgewise sign`.
fn sign_without_the_cli_checks(source: &str, plugin: &str, out: &std::path::Path) {
    use edgewise_host::bundle::{self, ManifestSource, SigningKey};
    let component = std::fs::read(edgewise_tests::plugin_wasm(plugin)).unwrap();
    let manifest = ManifestSource::from_toml(source)
        .and_then(|source| {
            source.into_manifest_for(
                bundle::WORLD,
                bundle::sha256_hex(&component),
                time::OffsetDateTime::now_utc(),
                Vec::new(),
            )
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let key = std::fs::read(edgewise_tests::run_key().private_key()).unwrap();
    let key = SigningKey::from_pkcs8(&key).unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(out, bundle::sign_manifest(&component, &manifest, &key)).unwrap();
}

/// Today the host publishes its status to any reply subject with its own
/// rights: here, as a fake alert of glucose-monitor.
#[tokio::test(flavor = "multi_thread")]
async fn a_status_request_with_a_non_inbox_reply_subject_gets_no_answer() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "");
    let client = device.start(&local).await;
    let fake = format!("edgewise.{DEVICE}.alerts.glucose-monitor");
    let mut alerts = client.subscribe(fake.clone()).await.unwrap();
    client.flush().await.unwrap();
    for reply in [fake.as_str(), "sensors.cgm.p1", "_INBOXX.x", "_inbox.x"] {
        client
            .publish_with_reply(format!("edgewise.{DEVICE}.status"), reply.to_owned(), "".into())
            .await
            .unwrap();
    }
    // Requests are answered in order: once this one is, the others were judged.
    let status = host_status(&client).await;
    assert_eq!(status["control"]["status_refused"], 4, "{status}");
    client.flush().await.unwrap();
    assert!(
        futures::FutureExt::now_or_never(alerts.next()).is_none(),
        "the status was published as an alert"
    );
    let stderr = device.terminate_cleanly().await;
    assert!(stderr.contains("not an inbox"), "logged: {stderr}");
}

/// The nats-server configuration of the local bus: the device's user with
/// exactly the permissions of docs/operators.md, a sensor, a monitor
/// (`edgewise status`), and a test user that may do anything.
fn local_server_config() -> String {
    const CONSUMER: &str = "edgewise-dev-1-glucose-monitor";
    format!(
        r#"
authorization {{
  users = [
    {{ user: "device", password: "dev-pass", permissions: {{
        publish: {{ allow: [
          "edgewise.{DEVICE}.alerts.>", "edgewise.{DEVICE}.deadletter", "edgewise.{DEVICE}.status",
          "$JS.API.STREAM.INFO.SENSORS",
          "$JS.API.CONSUMER.INFO.SENSORS.{CONSUMER}",
          "$JS.API.CONSUMER.CREATE.SENSORS.{CONSUMER}",
          "$JS.API.CONSUMER.CREATE.SENSORS.{CONSUMER}.>",
          "$JS.API.CONSUMER.DURABLE.CREATE.SENSORS.{CONSUMER}",
          "$JS.API.CONSUMER.MSG.NEXT.SENSORS.{CONSUMER}",
          "$JS.ACK.SENSORS.{CONSUMER}.>"
        ] }},
        subscribe: {{ allow: ["sensors.>", "edgewise.{DEVICE}.status", "_INBOX.edgewise-{DEVICE}.>"] }},
        allow_responses: true
    }} }},
    {{ user: "monitor", password: "mon-pass", permissions: {{
        publish: {{ allow: ["edgewise.*.status"] }},
        subscribe: {{ allow: ["_INBOX.>"] }}
    }} }},
    {{ user: "tester", password: "test-pass" }}
  ]
}}
"#
    )
}

/// The cloud: the device may publish its upstream subjects and use its stream.
fn cloud_server_config() -> String {
    format!(
        r#"
authorization {{
  users = [
    {{ user: "device-up", password: "up-pass", permissions: {{
        publish: {{ allow: [
          "edgewise.{DEVICE}.up.>",
          "$JS.API.STREAM.INFO.EDGEWISE_UP", "$JS.API.STREAM.CREATE.EDGEWISE_UP"
        ] }},
        subscribe: {{ allow: ["_INBOX.edgewise-{DEVICE}-up.>"] }}
    }} }},
    {{ user: "tester", password: "test-pass" }}
  ]
}}
"#
    )
}

/// The whole pipeline under the documented permissions: JetStream sensor
/// input, local alert, status (host and CLI), dead letter, upstream stored.
/// Today the status CLI cannot authenticate, and the host's inboxes
/// (`_INBOX.<random>`) are outside the allow-list.
#[tokio::test(flavor = "multi_thread")]
async fn the_pipeline_works_under_the_documented_permissions() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("local.conf"), local_server_config()).unwrap();
    std::fs::write(dir.path().join("cloud.conf"), cloud_server_config()).unwrap();
    let local_conf = dir.path().join("local.conf").display().to_string();
    let cloud_conf = dir.path().join("cloud.conf").display().to_string();
    let local = NatsServer::start_with_args(true, &["-c", &local_conf]);
    let cloud = NatsServer::start_with_args(true, &["-c", &cloud_conf]);
    let tester = async_nats::ConnectOptions::with_user_and_password("tester".into(), "test-pass".into())
        .connect(local.url())
        .await
        .unwrap();
    let jetstream = async_nats::jetstream::new(tester.clone());
    create_sensors_stream(&jetstream).await;
    let mut device = Device::new(
        &local,
        Some(&cloud),
        "[ingest]\nsource = \"jetstream\"\nstream = \"SENSORS\"\n",
    );
    device.edit_config(|config| {
        let config = with_credentials(&config, &local, "user = \"device\"\npassword = \"dev-pass\"\n");
        with_credentials(&config, &cloud, "user = \"device-up\"\npassword = \"up-pass\"\n")
    });
    let mut alerts = subscribe_alerts(&tester, "glucose-monitor").await;
    let mut dead = tester.subscribe(format!("edgewise.{DEVICE}.deadletter")).await.unwrap();
    tester.flush().await.unwrap();
    device.start_with(&tester).await;
    publish_acked(&jetstream, "sensors.cgm.p1", reading(now_ms(), 45.0)).await;
    publish_acked(&jetstream, "sensors.cgm.p1", "not json".into()).await;
    assert_eq!(next_json(&mut alerts, "local alert").await["code"], "urgent-low");
    assert_eq!(next_json(&mut dead, "dead letter").await["subject"], "sensors.cgm.p1");
    // Stored upstream (read as the cloud's tester).
    let cloud_tester = async_nats::ConnectOptions::with_user_and_password("tester".into(), "test-pass".into())
        .connect(cloud.url())
        .await
        .unwrap();
    upstream_messages_via(cloud_tester, 1).await;
    // `edgewise status` with the device's configuration, and as the monitor.
    let by_config = edgewise([
        "status".as_ref(),
        "--config".as_ref(),
        device.path("edgewise.toml").as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(by_config.code, Some(0), "{}", by_config.stderr);
    let status: Value = serde_json::from_str(&by_config.stdout).unwrap();
    assert_eq!(status["plugins"][0]["readings_in"], 1, "{status}");
    assert_eq!(status["ingest"]["deadlettered"], 1, "{status}");
    let url = local.url();
    let as_monitor = edgewise([
        "status",
        "--nats",
        &url,
        "--device",
        DEVICE,
        "--user",
        "monitor",
        "--password",
        "mon-pass",
    ]);
    assert_eq!(as_monitor.code, Some(0), "{}", as_monitor.stderr);
    assert_contains(&as_monitor.stdout, "glucose-monitor");
    let stderr = device.terminate_cleanly().await;
    assert!(
        !stderr.contains("Permissions Violation") && !stderr.contains("permissions violation"),
        "{stderr}"
    );
}

/// A plugin with a subscription the device's user may not make (its
/// configuration reads `wards.cgm.>` beside `sensors.cgm.>`; the documented
/// permissions give `sensors.>`): the server refuses it after it was made,
/// in an `-ERR` on the connection, and sends it nothing. The plugin is shown
/// `degraded` and `plugin-degraded` is raised, naming the subscription
/// refused, while its other subscription is still read. Once the server's
/// permissions allow it (a reload of its configuration), the subscriptions
/// made again are read: `running`, and the readings of `wards.cgm.>` reach
/// the plugin. Before, it showed `running`, with no alert, while no reading
/// of `wards.cgm.>` could reach it.
#[tokio::test(flavor = "multi_thread")]
async fn a_subscription_the_local_server_refuses_is_alerted_the_others_read_and_it_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("local.conf");
    std::fs::write(&conf, local_server_config()).unwrap();
    let local = NatsServer::start_with_args(true, &["-c", &conf.display().to_string()]);
    let tester = async_nats::ConnectOptions::with_user_and_password("tester".into(), "test-pass".into())
        .connect(local.url())
        .await
        .unwrap();
    let mut device = Device::new(&local, None, "subscriptions = [\"sensors.cgm.>\", \"wards.cgm.>\"]\n");
    device.edit_config(|config| with_credentials(&config, &local, "user = \"device\"\npassword = \"dev-pass\"\n"));
    let mut host_alerts = subscribe_alerts(&tester, "_host").await;
    let mut alerts = subscribe_alerts(&tester, "glucose-monitor").await;
    // Every alert, in the order the device sent them (one connection).
    let mut every_alert = subscribe_alerts(&tester, ">").await;
    device.start_with(&tester).await;
    let alert = next_where(&mut host_alerts, "plugin-degraded", |_, alert| {
        alert["code"] == "plugin-degraded"
    })
    .await;
    let message = alert["message"].as_str().unwrap_or_default();
    assert_contains(message, "plugin `glucose-monitor` gets no readings of `wards.cgm.>`");
    assert_contains(message, "refused the subscription to `wards.cgm.>`");
    let status = status_until(&tester, "glucose-monitor degraded", |status| {
        plugin(status, "glucose-monitor")["state"] == "degraded"
    })
    .await;
    assert_contains(&status.to_string(), "permissions violation");
    // The other subscription is read all the while.
    tester.publish("sensors.cgm.p1", reading(now_ms(), 45.0)).await.unwrap();
    next_where(&mut alerts, "sensors.cgm.p1's urgent-low", |_, alert| {
        alert["code"] == "urgent-low"
    })
    .await;

    // The subscription is made again, and refused again, without a new alert
    // (counted at the end): the server logs each refusal.
    poll_until("the subscription refused three times", WAIT, || async {
        let log = local.log();
        let refused = |line: &&str| line.contains("Subscription Violation") && line.contains("wards.cgm.>");
        match log.lines().filter(refused).count() >= 3 {
            true => Ok(()),
            false => Err(log),
        }
    })
    .await;

    // The device's user may read `wards.>` now.
    std::fs::write(
        &conf,
        local_server_config().replace("\"sensors.>\",", "\"sensors.>\", \"wards.>\","),
    )
    .unwrap();
    let pid = local.pid().unwrap().to_string();
    let reload = Command::new(edgewise_tests::nats_server_binary())
        .args(["--signal", &format!("reload={pid}")])
        .output()
        .unwrap();
    assert!(reload.status.success(), "{reload:?}");
    // Asked only once reloaded: a status reply crossing the reload may be
    // refused (the server's record of the requests the device may answer
    // starts anew), and the request then waits for nothing.
    poll_until("the server's configuration reloaded", WAIT, || async {
        match local.log().contains("Reloaded server configuration") {
            true => Ok(()),
            false => Err(local.log()),
        }
    })
    .await;
    status_until(&tester, "glucose-monitor running again", |status| {
        plugin(status, "glucose-monitor")["state"] == "running"
    })
    .await;
    tester.publish("wards.cgm.p2", reading(now_ms(), 45.0)).await.unwrap();
    let p2_urgent_low = |alert: &Value| {
        alert["code"] == "urgent-low" && alert["sensor"].as_str().is_some_and(|sensor| sensor.ends_with("p2"))
    };
    next_where(&mut alerts, "wards.cgm.p2's urgent-low", |_, alert| {
        p2_urgent_low(alert)
    })
    .await;
    // One episode, one alert: the refused retries raised none.
    let mut degraded = 0;
    loop {
        let alert = next_json(&mut every_alert, "the alerts up to p2's urgent-low").await;
        if p2_urgent_low(&alert) {
            break;
        }
        degraded += usize::from(alert["code"] == "plugin-degraded");
    }
    assert_eq!(degraded, 1, "plugin-degraded alerts of one refused subscription");
    device.terminate_cleanly().await;
}

/// A device whose local user may not publish a plugin's alerts (the local
/// server's permissions give `edgewise.dev-1.alerts._host` alone): the
/// server drops each such alert and says so only on the connection. The
/// host says it, once per subject: `host-degraded` naming the subject, on the
/// local bus (its own alert subject is allowed) and upstream, where the
/// refused alerts still go; the status counts the refusals. Before, the
/// clinician's screens got no alert of the plugin, and nothing said why.
#[tokio::test(flavor = "multi_thread")]
async fn alerts_the_local_server_refuses_are_said_once_and_still_go_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("local.conf");
    let documented = local_server_config();
    let host_alerts_only = documented.replace(
        &format!("\"edgewise.{DEVICE}.alerts.>\""),
        &format!("\"edgewise.{DEVICE}.alerts._host\""),
    );
    assert_ne!(host_alerts_only, documented);
    std::fs::write(&conf, host_alerts_only).unwrap();
    let local = NatsServer::start_with_args(true, &["-c", &conf.display().to_string()]);
    let cloud = NatsServer::start_with_jetstream();
    let tester = async_nats::ConnectOptions::with_user_and_password("tester".into(), "test-pass".into())
        .connect(local.url())
        .await
        .unwrap();
    let mut device = Device::new(&local, Some(&cloud), "");
    device.edit_config(|config| with_credentials(&config, &local, "user = \"device\"\npassword = \"dev-pass\"\n"));
    let mut host_alerts = subscribe_alerts(&tester, "_host").await;
    device.start_with(&tester).await;
    for sensor in ["p1", "p2"] {
        let subject = format!("sensors.cgm.{sensor}");
        tester.publish(subject, reading(now_ms(), 45.0)).await.unwrap();
    }
    let refused = format!("refuses the device's publishes to `edgewise.{DEVICE}.alerts.glucose-monitor`");
    let alert = next_where(
        &mut host_alerts,
        "the host's alert of the refused alerts",
        |_, alert| alert["code"] == "host-degraded",
    )
    .await;
    assert_contains(alert["message"].as_str().unwrap_or_default(), &refused);
    let upstream = upstream_alerts_where(&cloud, "both urgent-lows and the host's alert upstream", |alerts| {
        alerts.iter().filter(|(_, alert)| alert["code"] == "urgent-low").count() == 2
            && alerts.iter().any(|(_, alert)| {
                alert["code"] == "host-degraded" && alert["message"].as_str().is_some_and(|m| m.contains(&refused))
            })
    })
    .await;
    // Said once, for two refused alerts.
    let said = upstream
        .iter()
        .filter(|(_, alert)| alert["code"] == "host-degraded")
        .count();
    assert_eq!(said, 1, "{upstream:?}");
    let status = host_status(&tester).await;
    assert!(status["local_publishes_refused"].as_u64() >= Some(2), "{status:#}");
    device.terminate_cleanly().await;
}

/// The host's local connection (`bus::connect`) does not receive what it
/// publishes itself: a second line of defence behind the refused
/// subscriptions. The host's connection publishes `probe.own` and then another
/// client publishes `probe.other`; with echo, `probe.own` would arrive first.
#[tokio::test(flavor = "multi_thread")]
async fn the_hosts_connection_does_not_receive_what_it_publishes() {
    let local = NatsServer::start();
    let config = edgewise_host::run::config::NatsConfig {
        url: local.url(),
        ..Default::default()
    };
    let host = edgewise_host::bus::connect::connect(&config, "edgewise-probe", false)
        .await
        .unwrap();
    let other = async_nats::connect(local.url()).await.unwrap();
    let mut host_sees = host.subscribe("probe.>").await.unwrap();
    let mut other_sees = other.subscribe("probe.>").await.unwrap();
    // A flush only writes: both subscriptions are in place once a message
    // published after them has reached both (published again until it has).
    let deadline = tokio::time::Instant::now() + WAIT;
    let (mut host_ready, mut other_ready) = (false, false);
    while !(host_ready && other_ready) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscriptions not in place (host: {host_ready}, other: {other_ready})"
        );
        other.publish("probe.ready", "".into()).await.unwrap();
        other.flush().await.unwrap();
        let short = Duration::from_millis(100);
        host_ready |= tokio::time::timeout(short, host_sees.next()).await.is_ok();
        other_ready |= tokio::time::timeout(short, other_sees.next()).await.is_ok();
    }

    host.publish("probe.own", "from the host".into()).await.unwrap();
    host.flush().await.unwrap();
    // The server has routed it: the other client got it.
    let seen = next_not_ready(&mut other_sees).await;
    assert_eq!(seen.subject.as_str(), "probe.own");
    other.publish("probe.other", "from someone else".into()).await.unwrap();
    other.flush().await.unwrap();

    let first = next_not_ready(&mut host_sees).await;
    assert_eq!(
        first.subject.as_str(),
        "probe.other",
        "the host's connection received its own message"
    );
}

/// The next message of `subscriber` other than the `probe.ready` ones.
async fn next_not_ready(subscriber: &mut async_nats::Subscriber) -> async_nats::Message {
    loop {
        let message = tokio::time::timeout(WAIT, subscriber.next())
            .await
            .expect("no probe message in time")
            .unwrap();
        if message.subject.as_str() != "probe.ready" {
            return message;
        }
    }
}

/// A subscription past the local server's limit (`max_subscriptions` of a
/// connection, `max_subs` of a user or account) is refused with an `-ERR`
/// naming no subject, and what it was for gets nothing: a plugin's readings,
/// the status requests. The host says so once, loudly: a critical
/// `host-degraded` alert, an `ERROR`, a count in the final status. Before,
/// only the NATS client's log said it, and the plugin looked well.
#[tokio::test(flavor = "multi_thread")]
async fn subscriptions_past_the_local_servers_limit_are_alerted_once() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("local.conf");
    // One subscription a connection: the host's first (a plugin's input)
    // is made, the next plugin's input and the status responder are not.
    std::fs::write(&conf, "max_subscriptions: 1\n").unwrap();
    let local = NatsServer::start_with_args(false, &["-c", &conf.display().to_string()]);
    let plugins = "[[plugins]]\nbundle = \"faulty-plugin.wasm\"\n[plugins.config]\nfail = \"none\"\n";
    let mut device = Device::new(&local, None, plugins);
    let tester = async_nats::connect(local.url()).await.unwrap();
    let mut host_alerts = subscribe_alerts(&tester, "_host").await;
    device.spawn();
    let alert = next_where(
        &mut host_alerts,
        "the host's alert of the refused subscriptions",
        |_, alert| alert["code"] == "host-degraded",
    )
    .await;
    assert_contains(
        alert["message"].as_str().unwrap_or_default(),
        "refuses the host's subscriptions past its limit (maximum subscriptions exceeded)",
    );
    let stopped = device.stop().await;
    assert_eq!(stopped.code, Some(0), "{}", stopped.log);
    let status = stopped
        .summary
        .unwrap_or_else(|| panic!("no final status: {}", stopped.log));
    assert!(
        status["local_subscriptions_over_limit"].as_u64() >= Some(1),
        "{status:#}"
    );
    let said = stopped
        .log
        .matches("The local NATS server refuses the host's subscriptions")
        .count();
    assert_eq!(said, 1, "said once:\n{}", stopped.log);
}
