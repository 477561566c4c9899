//! Fleet telemetry (issue #17) from the real `edgewise run` on real
//! nats-servers: on the local subject at its interval, agreeing with
//! `edgewise status`; upstream on `edgewise.<device>.up.telemetry`; and,
//! with upstream gone, held within its bound while every alert waits and is
//! delivered first once upstream is back.

use serde_json::Value;

use crate::device::{DEVICE, Device, WAIT, now_ms, reading};
use crate::support::{
    UP, cli_status, cli_status_until, next_where, poll_until, status_until, stream_messages, subscribe_alerts,
};
use edgewise_host::outbox::TELEMETRY_MAX_ENTRIES;
use edgewise_host::telemetry::Telemetry;
use edgewise_tests::edgewise;
use edgewise_tests::nats::NatsServer;

/// Telemetry every second.
const EVERY_SECOND: &str = "[telemetry]\ninterval = \"1s\"\n";
/// A glucose value that alerts (urgent low), and one that does not: neither
/// may be in the telemetry.
const LOW: f64 = 47.25;
const NORMAL: f64 = 123.75;
/// The sensor the readings are for: its id may not be in the telemetry either.
const SENSOR: &str = "cgm.zq7x";

/// The next telemetry message on the local subject for which `wanted` holds.
async fn next_telemetry(
    subscriber: &mut async_nats::Subscriber,
    what: &str,
    wanted: impl Fn(&Telemetry) -> bool,
) -> (Telemetry, String) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let Ok(Some(message)) = tokio::time::timeout_at(deadline, futures::StreamExt::next(subscriber)).await else {
            panic!("no telemetry {what} within {WAIT:?}");
        };
        let text = String::from_utf8(message.payload.to_vec()).unwrap();
        let telemetry: Telemetry =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not a telemetry message: {e}: {text}"));
        if wanted(&telemetry) {
            return (telemetry, text);
        }
    }
}

/// The last telemetry message stored upstream and its `Nats-Msg-Id`,
/// waiting for one.
async fn upstream_telemetry(cloud: &NatsServer) -> (Telemetry, String) {
    let jetstream = async_nats::jetstream::new(async_nats::connect(cloud.url()).await.unwrap());
    let subject = format!("edgewise.{DEVICE}.up.telemetry");
    poll_until("telemetry upstream", WAIT, || async {
        let stream = jetstream.get_stream(UP).await.map_err(|e| format!("no stream: {e}"))?;
        let message = stream
            .get_last_raw_message_by_subject(&subject)
            .await
            .map_err(|e| format!("none yet: {e}"))?;
        let msg_id = message
            .headers
            .get("Nats-Msg-Id")
            .map(|id| id.as_str().to_owned())
            .unwrap_or_default();
        Ok((serde_json::from_slice(&message.payload).unwrap(), msg_id))
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn telemetry_arrives_on_the_local_subject_and_agrees_with_the_status() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, EVERY_SECOND);
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut telemetry = client.subscribe(format!("edgewise.{DEVICE}.telemetry")).await.unwrap();
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    device.start_with(&client).await;

    let subject = format!("sensors.{SENSOR}");
    let now = now_ms();
    for minutes in (1..=5).rev() {
        client
            .publish(subject.clone(), reading(now - minutes * 60_000, NORMAL))
            .await
            .unwrap();
    }
    client.publish(subject.clone(), reading(now, LOW)).await.unwrap();
    client.publish(subject.clone(), "not json".into()).await.unwrap();
    next_where(&mut alerts, "the urgent low", |_, alert| alert["code"] == "urgent-low").await;
    // The urgent low (of the last reading) is published before the outbox
    // commits it and `alerts_out` counts it: wait for that too.
    status_until(&client, "six readings in, a dead letter, the alert counted", |status| {
        status["plugins"][0]["readings_in"] == 6
            && status["ingest"]["deadlettered"] == 1
            && status["plugins"][0]["alerts_out"].as_u64() >= Some(1)
    })
    .await;

    // A message made after everything was counted: the status is the same now.
    let (message, text) = next_telemetry(&mut telemetry, "with the six readings and the alert", |t| {
        t.plugins
            .first()
            .is_some_and(|p| p.readings_in == 6 && p.alerts_out >= 1)
            && t.ingest.deadlettered == 1
    })
    .await;
    let status = cli_status(&local);
    assert_eq!(message.kind, "telemetry");
    assert_eq!(message.device, status["device"].as_str().unwrap());
    assert_eq!(message.host_version, env!("CARGO_PKG_VERSION"));
    assert!(!message.upstream_connected);
    assert_eq!(message.ingest.messages, status["ingest"]["messages"]);
    assert_eq!(message.ingest.deadlettered, status["ingest"]["deadlettered"]);
    assert_eq!(message.outbox.alerts, status["outbox"]["alerts"]);
    assert_eq!(message.outbox.summaries, status["outbox"]["summaries"]);
    // Without an upstream, telemetry is not kept for one.
    assert_eq!((message.outbox.telemetry, message.outbox.dropped), (0, 0));
    assert_eq!(message.plugins.len(), 1);
    let (plugin, from_status) = (&message.plugins[0], &status["plugins"][0]);
    assert_eq!(plugin.name, "glucose-monitor");
    for (field, value) in [
        ("readings_in", plugin.readings_in),
        ("alerts_out", plugin.alerts_out),
        ("summaries_out", plugin.summaries_out),
        ("errors", plugin.errors),
        ("restarts", plugin.restarts),
        ("quarantines", plugin.quarantines),
        ("readings_dropped", plugin.readings_dropped),
    ] {
        assert_eq!(from_status[field], value, "{field}");
    }
    for (field, value) in [
        ("version", &plugin.version),
        ("digest", &plugin.digest),
        ("state", &plugin.state),
    ] {
        assert_eq!(from_status[field], value.as_str(), "{field}");
    }
    assert!(plugin.alerts_out >= 1);
    assert!(message.rss_bytes.is_some_and(|rss| rss > 1 << 20), "{text}");
    assert!(message.cpu_seconds.is_some(), "{text}");
    // Counts and states only: no sensor, no value.
    for secret in [SENSOR, &LOW.to_string(), &NORMAL.to_string()] {
        assert!(!text.contains(secret), "`{secret}` in the telemetry: {text}");
    }
    // It keeps coming at its interval.
    next_telemetry(&mut telemetry, "after that one", |t| t.ts > message.ts).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn telemetry_reaches_the_upstream_stream() {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let mut device = Device::new(&local, Some(&cloud), EVERY_SECOND);
    device.start(&local).await;
    let (message, msg_id) = upstream_telemetry(&cloud).await;
    assert_eq!(message.device, DEVICE);
    assert_eq!(message.kind, "telemetry");
    assert!(msg_id.starts_with(&format!("{DEVICE}/telemetry/")), "{msg_id}");
}

/// Telemetry messages waiting in the outbox, and dropped, by a status.
fn telemetry_of(status: &Value) -> (u64, u64) {
    (
        status["outbox"]["telemetry"].as_u64().unwrap(),
        status["outbox"]["dropped"]["telemetry"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn with_upstream_gone_telemetry_keeps_to_its_bound_and_every_alert_goes_first() {
    let local = NatsServer::start();
    let mut cloud = NatsServer::start_with_jetstream();
    let mut device = Device::new(&local, Some(&cloud), EVERY_SECOND);
    let client = device.start(&local).await;
    upstream_telemetry(&cloud).await;
    let jetstream = async_nats::jetstream::new(async_nats::connect(cloud.url()).await.unwrap());
    let mut stream = jetstream.get_stream(UP).await.unwrap();
    let before = stream.info().await.unwrap().state.last_sequence;

    tokio::task::block_in_place(|| cloud.stop());
    status_until(&client, "upstream down", |status| status["upstream_connected"] == false).await;
    // Alerts while upstream is gone: an urgent low from each of five sensors.
    let sensors = 5;
    for n in 0..sensors {
        client
            .publish(format!("sensors.cgm.p{n}"), reading(now_ms(), LOW))
            .await
            .unwrap();
    }
    // Telemetry piles up to its bound, then its oldest goes; the alerts stay.
    let held = cli_status_until(&local, 4 * WAIT, "telemetry over its bound", |status| {
        telemetry_of(status).1 > 0 && status["outbox"]["alerts"].as_u64() == Some(sensors)
    })
    .await;
    let (waiting, dropped) = telemetry_of(&held);
    assert!(waiting <= TELEMETRY_MAX_ENTRIES, "{held}");
    assert!(dropped > 0, "{held}");
    assert_eq!(held["outbox"]["dropped"]["alerts_for_space"], 0, "{held}");
    let table = edgewise(["status", "--nats", &local.url(), "--device", DEVICE]);
    assert!(table.stdout.contains("telemetry:"), "{}", table.stdout);

    tokio::task::block_in_place(|| cloud.start_again());
    let delivered = cli_status_until(&local, 2 * WAIT, "the alerts delivered", |status| {
        status["upstream_connected"] == true && status["outbox"]["alerts"] == 0
    })
    .await;
    assert_eq!(delivered["outbox"]["dropped"]["alerts_for_space"], 0, "{delivered}");
    // What was stored since the cloud went down, by subject; telemetry
    // marked with whether it was made while upstream was gone. (One made
    // before, delivered between `before` and the stop, rightly precedes
    // the alerts.)
    let after: Vec<(String, bool)> = stream_messages(&mut stream)
        .await
        .into_iter()
        .filter(|message| message.sequence > before)
        .map(|message| {
            let subject = message.subject.to_string();
            let made_offline = subject.ends_with(".up.telemetry")
                && serde_json::from_slice::<Value>(&message.payload).unwrap()["upstream_connected"] == false;
            (subject, made_offline)
        })
        .collect();
    let alerts = after.iter().filter(|(s, _)| s.contains(".up.alerts.")).count();
    assert_eq!(alerts, usize::try_from(sensors).unwrap(), "{after:#?}");
    let last_output = after.iter().rposition(|(s, _)| !s.ends_with(".up.telemetry")).unwrap();
    let first_offline_telemetry = after.iter().position(|(_, offline)| *offline);
    assert!(
        first_offline_telemetry.is_some_and(|first| first > last_output),
        "every alert and summary before any telemetry kept while upstream was gone: {after:#?}"
    );
}
