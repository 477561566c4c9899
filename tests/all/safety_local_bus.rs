//! A local NATS server that goes away for long stops no plugin, and nothing
//! that goes upstream. The NATS client queues what is published while its
//! server is away, 2,048 commands; past that a publish waits until the server
//! is back. A worker publishes each alert on the local bus before it hands
//! its outputs to the outbox: had it waited, every plugin would have stopped
//! after its first two thousand alerts of an outage (a local server in a
//! crash loop, or down for a day), and with it everything upstream: the
//! cloud would have heard nothing of the device's patients for that long.
//!
//! An alert larger than the local server's `max_payload` reaches the local
//! bus shortened (its message cut and marked), and upstream in full: the
//! client refuses a publish over that size, and the clinician's screens
//! would have had nothing of it.

use std::time::Duration;

use edgewise_tests::nats::NatsServer;

use crate::device::{DEVICE, Device, WAIT, now_ms, reading};
use crate::hostile_plugins::V0_2;
use crate::support::{
    UP, host_status, next_json, next_where, plugin, poll_until, subscribe_alerts, upstream_alerts_where,
};

/// Messages the cloud's stream holds.
async fn stored(jetstream: &async_nats::jetstream::Context) -> Result<u64, String> {
    let mut stream = jetstream.get_stream(UP).await.map_err(|e| e.to_string())?;
    Ok(stream.info().await.map_err(|e| e.to_string())?.state.messages)
}

/// A local NATS server carrying at most `max_payload` (`4KB`) in a message,
/// with its configuration file.
struct LocalServer {
    server: NatsServer,
    _conf: tempfile::TempDir,
}

impl LocalServer {
    fn with_max_payload(max_payload: &str) -> LocalServer {
        let conf = tempfile::tempdir().unwrap();
        let path = conf.path().join("local.conf");
        std::fs::write(&path, format!("max_payload: {max_payload}\n")).unwrap();
        let server = NatsServer::start_with_args(false, &["-c", path.to_str().unwrap()]);
        LocalServer { server, _conf: conf }
    }
}

impl std::ops::Deref for LocalServer {
    type Target = NatsServer;
    fn deref(&self) -> &NatsServer {
        &self.server
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_local_server_away_for_long_stops_neither_the_plugins_nor_what_goes_upstream() {
    let mut local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    // faulty-v02 asks to be ticked at once, is held to a tick a second, and
    // raises 500 alerts at each: a client queue of 2,048 is full in seconds.
    let plugins = V0_2.plugin_table("pass", "wake = \"every-ms\"\ntick_burst = 500\n", "");
    let mut device = Device::with_tick(&local, Some(&cloud), "100ms", &plugins);
    let (_client, mut alerts) = device.start_watching(&local, V0_2.name).await;
    let tick = next_json(&mut alerts, "faulty-v02's first tick alert").await;
    assert_eq!(tick["code"], "tick", "{tick}");
    let jetstream = async_nats::jetstream::new(async_nats::connect(cloud.url()).await.unwrap());
    poll_until("alerts upstream", WAIT, || async {
        let count = stored(&jetstream).await?;
        if count >= 500 {
            Ok(())
        } else {
            Err(format!("{count} stored"))
        }
    })
    .await;

    local.stop();
    let at_stop = stored(&jetstream).await.unwrap();
    // Three times what the client's queue holds, after it: about 12 s of
    // ticks at 500 alerts each (and the one wait of 2 s that finds the queue
    // full). Before, the count stopped some 2,048 alerts after the stop.
    let wanted = at_stop + 3 * 2_048;
    poll_until(
        "alerts upstream going on with the local server away",
        Duration::from_secs(90),
        || async {
            let count = stored(&jetstream).await?;
            if count >= wanted {
                Ok(())
            } else {
                Err(format!("{count} stored, {at_stop} when the local server stopped"))
            }
        },
    )
    .await;

    // The server back on its port: the client reconnects, and alerts are
    // published on it again.
    local.start_again();
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut alerts = crate::support::subscribe_alerts(&client, V0_2.name).await;
    let tick = next_json(&mut alerts, "a tick alert on the local bus once its server is back").await;
    assert_eq!(tick["code"], "tick", "{tick}");
    let status = host_status(&client).await;
    assert!(
        status["local_publishes_dropped"].as_u64().unwrap_or(0) > 0,
        "what could not be published locally is counted: {status}"
    );
    let faulty = plugin(&status, V0_2.name);
    assert_eq!(faulty["state"], "running", "{faulty}");
    assert_eq!(faulty["errors"], 0, "{faulty}");
    let (code, stderr) = device.terminate().await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("The local NATS client took nothing for"),
        "said once in the log:\n{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_larger_than_the_local_servers_max_payload_arrives_there_shortened_and_upstream_in_full() {
    let local = LocalServer::with_max_payload("4KB");
    let cloud = NatsServer::start_with_jetstream();
    // A message of 4,000 bytes: within the host's bounds (a message is cut
    // at 4 KiB), its line over the local server's 4,096 bytes.
    let plugins =
        "[[plugins]]\nbundle = \"faulty-plugin.wasm\"\n[plugins.config]\nfail = \"big-alert\"\nsize = \"4000\"\n";
    let mut device = Device::with_plugins(&local, Some(&cloud), "100ms", plugins);
    let (client, mut alerts) = device.start_watching(&local, "faulty-plugin").await;

    let mut seqs = Vec::new();
    for (k, sensor) in ["h1", "h2"].iter().enumerate() {
        let ts = now_ms() + i64::try_from(k).unwrap();
        client
            .publish(format!("sensors.hostile.{sensor}"), reading(ts, 100.0))
            .await
            .unwrap();
        let what = format!("the big alert about {sensor} on the local bus");
        let alert = next_where(&mut alerts, &what, |_, alert| alert["code"] == "big").await;
        let text = alert["message"].as_str().unwrap();
        assert!(text.len() < 4000, "shortened: {} bytes", text.len());
        let (kept, mark) = text.split_once('…').unwrap();
        assert!(
            kept.len() > 3000 && kept.bytes().all(|b| b == b'b'),
            "as much as fits: {text}"
        );
        assert!(mark.contains("shortened for the local bus"), "{mark}");
        assert_eq!(alert["sensor"], format!("hostile.{sensor}"), "{alert}");
        assert_eq!(alert["plugin"], "faulty-plugin", "{alert}");
        assert!(alert.to_string().len() <= 4096, "fits the local server");
        seqs.push(alert["seq"].as_u64().unwrap());
    }

    // Upstream, the same alerts in full.
    let upstream = upstream_alerts_where(&cloud, "both big alerts upstream", |alerts| {
        alerts.iter().filter(|(_, alert)| alert["code"] == "big").count() == 2
    })
    .await;
    for (_, alert) in upstream.iter().filter(|(_, alert)| alert["code"] == "big") {
        assert_eq!(alert["message"].as_str().unwrap(), "b".repeat(4000), "in full upstream");
        assert!(
            seqs.contains(&alert["seq"].as_u64().unwrap()),
            "{alert} is one of {seqs:?}"
        );
    }

    let stopped = device.stop().await;
    let log = stopped.log;
    assert_eq!(stopped.code, Some(0), "{log}");
    let status = stopped.summary.unwrap_or_else(|| panic!("no final status: {log}"));
    assert_eq!(status["local_alerts_shortened"], 2, "counted: {status}");
    assert_eq!(status["local_publishes_dropped"], 0, "{status}");
    assert_eq!(
        log.matches("larger than the local NATS server's max_payload").count(),
        1,
        "said once:\n{log}"
    );
}

/// The host's own alerts are shortened the same way: here the one that says
/// a bundle was refused at start, which names it by a path longer than the
/// local server carries.
#[tokio::test(flavor = "multi_thread")]
async fn a_host_alert_larger_than_the_local_servers_max_payload_arrives_there_shortened_and_upstream_in_full() {
    let local = LocalServer::with_max_payload("16KB");
    let cloud = NatsServer::start_with_jetstream();
    // No file can have this name (a name is at most 255 bytes): refused. The
    // alert names it twice (the bundle, and the error opening it), over the
    // local server's 16 KiB; the status, which names it once, within them.
    let name = format!("{}.wasm", "n".repeat(10_000));
    let plugins = format!("[[plugins]]\nbundle = \"{name}\"\n[[plugins]]\nbundle = \"glucose-monitor.wasm\"\n");
    let mut device = Device::with_plugins(&local, Some(&cloud), "100ms", &plugins);
    let (_client, mut alerts) = device.start_watching(&local, "_host").await;

    let what = "the host's alert about the refused bundle on the local bus";
    let alert = next_where(&mut alerts, what, |_, alert| alert["code"] == "plugin-degraded").await;
    assert!(alert.to_string().len() <= 16 * 1024, "fits the local server: {alert}");
    let text = alert["message"].as_str().unwrap();
    let (kept, mark) = text.split_once('…').unwrap_or_else(|| panic!("marked: {text}"));
    assert!(
        kept.starts_with("plugin bundle ") && kept.len() > 15_000,
        "as much as fits: {text}"
    );
    let full_bytes = mark
        .strip_prefix(" [shortened for the local bus: ")
        .and_then(|rest| rest.strip_suffix(" bytes in full]"))
        .and_then(|bytes| bytes.parse::<usize>().ok())
        .unwrap_or_else(|| panic!("the mark says the size in full: {mark}"));

    // Upstream, the same alert in full: the size the mark says.
    let seq = alert["seq"].as_u64().unwrap();
    let upstream = upstream_alerts_where(&cloud, "the host's alert upstream", |alerts| {
        alerts
            .iter()
            .any(|(_, alert)| alert["seq"] == seq && alert["plugin"] == "_host")
    })
    .await;
    let (_, whole) = upstream
        .iter()
        .find(|(_, alert)| alert["seq"] == seq && alert["plugin"] == "_host")
        .unwrap();
    let message = whole["message"].as_str().unwrap();
    assert!(
        message.starts_with(kept) && message.contains(&name),
        "in full upstream: {message}"
    );
    assert_eq!(whole.to_string().len(), full_bytes, "{whole}");

    let stopped = device.stop().await;
    let log = stopped.log;
    assert_eq!(stopped.code, Some(0), "{log}");
    let status = stopped.summary.unwrap_or_else(|| panic!("no final status: {log}"));
    assert_eq!(status["local_alerts_shortened"], 1, "counted: {status}");
}

/// A status larger than the local server's `max_payload` is answered with an
/// error saying so (`Nats-Service-Error`, as NATS services answer), which
/// `edgewise status` prints: the client refuses to publish the status, and
/// the operator was told no host answered, of a host that was running.
#[tokio::test(flavor = "multi_thread")]
async fn a_status_larger_than_the_local_servers_max_payload_is_answered_with_an_error_saying_so() {
    let local = LocalServer::with_max_payload("4KB");
    // The status names this refused bundle: over 4 KiB.
    let name = format!("{}.wasm", "n".repeat(5000));
    let plugins = format!("[[plugins]]\nbundle = \"{name}\"\n[[plugins]]\nbundle = \"glucose-monitor.wasm\"\n");
    let mut device = Device::with_plugins(&local, None, "100ms", &plugins);
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut alerts = subscribe_alerts(&client, "_host").await;
    device.spawn();
    let what = "the host's alert about the refused bundle";
    next_where(&mut alerts, what, |_, alert| alert["code"] == "plugin-degraded").await;

    // The refused bundle's alert may come before the status responder is
    // subscribed ("no responders" at once): ask until the host answers.
    let subject = format!("edgewise.{DEVICE}.status");
    let answer = poll_until("the host's answer to a status request", WAIT, || async {
        match tokio::time::timeout(WAIT, client.request(subject.clone(), "".into())).await {
            Ok(Ok(answer)) => Ok(answer),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let error = answer
        .headers
        .as_ref()
        .and_then(|headers| headers.get("Nats-Service-Error"))
        .map(|error| error.as_str().to_owned())
        .unwrap_or_else(|| panic!("an error: {answer:?}"));
    let said = "more than the local NATS server's max_payload (4096 bytes)";
    assert!(error.contains(said), "{error}");
    assert!(answer.payload.is_empty(), "{answer:?}");

    let shown = edgewise_tests::edgewise(["status", "--nats", &local.url(), "--device", DEVICE]);
    assert_eq!(shown.code, Some(1), "{}", shown.stderr);
    assert!(shown.stderr.contains(said), "{}", shown.stderr);
    let status = device.final_status().await;
    assert_eq!(status["plugins"].as_array().map(Vec::len), Some(2), "{status}");
}
