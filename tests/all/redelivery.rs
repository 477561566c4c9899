//! Nothing twice across a restart on the JetStream source. A host that
//! starts while some of its consumer's messages are unacknowledged has them
//! delivered again first, in order, from the consumer's ack floor: every
//! message after that floor comes again, acknowledged ones included. Those
//! the plugin already had (logged in its input log) must not reach it a
//! second time, however many inputs came after the floor.
//!
//! Before: only the last 64 logged inputs were recognised, so a message left
//! unacknowledged behind more than 64 others (a batch dropped while the
//! plugin was down, a crash) made every later reading reach the plugin
//! again, under new output numbers that upstream deduplication cannot catch;
//! and the host made the floor's redelivery by deleting its consumer and
//! making it again, so a crash between the two left no consumer, and the
//! next start delivered the whole stream again.
//!
//! A floor behind acknowledged messages is made here the way the server
//! keeps it after such a gap: the consumer reset to the stream's start
//! (`$JS.API.CONSUMER.RESET`) while the host is down.

use std::collections::BTreeMap;

use async_nats::jetstream::consumer::pull;
use futures::StreamExt;

use crate::device::{DEVICE, Device, WAIT, now_ms};
use crate::support::{create_sensors_stream, poll_until, publish_acked, upstream_alerts_where};
use edgewise_tests::nats::NatsServer;

/// Readings acknowledged behind the one left unacknowledged: far more than
/// the 64 inputs recognised before.
const AFTER: usize = 200;

/// Each reading echoed upstream: (sensor, time) → how many times.
fn echoes(alerts: &[(String, serde_json::Value)]) -> BTreeMap<(String, i64), usize> {
    let mut counts = BTreeMap::new();
    for (_, alert) in alerts {
        if alert["plugin"] == "echo-v02" && alert["code"] == "seen" {
            let key = (
                alert["sensor"].as_str().unwrap().to_owned(),
                alert["ts"].as_i64().unwrap(),
            );
            *counts.entry(key).or_default() += 1;
        }
    }
    counts
}

/// A device running echo-v02 on the JetStream source, each reading an input
/// of its own; started once, so that its consumer exists: the servers, the
/// client, the sensor stream, the device (stopped) and its consumer's name.
async fn echo_device() -> (
    NatsServer,
    NatsServer,
    async_nats::Client,
    async_nats::jetstream::stream::Stream,
    Device,
    String,
) {
    let local = NatsServer::start_with_jetstream();
    let cloud = NatsServer::start_with_jetstream();
    let client = async_nats::connect(local.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client.clone());
    let sensors = create_sensors_stream(&jetstream).await;
    let plugins = "[[plugins]]\nbundle = \"echo-v02.wasm\"\n\n[limits]\nbatch_max = 1\n\n\
                   [ingest]\nsource = \"jetstream\"\nstream = \"SENSORS\"\n";
    let mut device = Device::with_plugins(&local, Some(&cloud), "100ms", plugins);
    device.start_with(&client).await;
    let name = format!("edgewise-{DEVICE}-echo-v02");
    poll_until("the host to make its consumer", WAIT, || async {
        sensors
            .get_consumer::<pull::Config>(&name)
            .await
            .map_err(|error| error.to_string())
    })
    .await;
    device.terminate_cleanly().await;
    (local, cloud, client, sensors, device, name)
}

/// A reading of `echo.s1` at `ts`.
fn reading(ts: i64) -> bytes::Bytes {
    format!(r#"{{"ts":{ts},"value":100,"unit":"mg/dL"}}"#).into()
}

/// Wait until every message of the stream is taken and acknowledged and
/// upstream holds `readings` echoes; then none may be there twice.
async fn echoed_once_each(
    cloud: &NatsServer,
    client: &async_nats::Client,
    sensors: &async_nats::jetstream::stream::Stream,
    readings: usize,
) {
    crate::kill_recovery::drained(client, sensors, readings as u64).await;
    let alerts = upstream_alerts_where(cloud, "every reading echoed upstream", |alerts| {
        echoes(alerts).len() == readings
    })
    .await;
    let twice: Vec<_> = echoes(&alerts).into_iter().filter(|(_, count)| *count > 1).collect();
    assert!(
        twice.is_empty(),
        "{} readings reached the plugin more than once: {twice:?}",
        twice.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn messages_delivered_again_behind_many_inputs_reach_the_plugin_once() {
    let (_local, cloud, client, sensors, mut device, name) = echo_device().await;
    let jetstream = async_nats::jetstream::new(client.clone());
    let first = now_ms();
    device.start_with(&client).await;
    for n in 0..AFTER {
        publish_acked(&jetstream, "sensors.echo.s1", reading(first + n as i64)).await;
    }
    echoed_once_each(&cloud, &client, &sensors, AFTER).await;
    device.terminate_cleanly().await;

    // The floor put back to the stream's start: every message comes again.
    let reset: serde_json::Value = jetstream
        .request(format!("CONSUMER.RESET.SENSORS.{name}"), &serde_json::json!({"seq": 1}))
        .await
        .unwrap();
    assert!(reset.get("error").is_none(), "{reset}");
    device.start_with(&client).await;
    publish_acked(&jetstream, "sensors.echo.s1", reading(first + AFTER as i64)).await;
    echoed_once_each(&cloud, &client, &sensors, AFTER + 1).await;
    device.terminate_cleanly().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unacknowledged_messages_are_delivered_again_first_without_deleting_the_consumer() {
    let (_local, cloud, client, sensors, mut device, name) = echo_device().await;
    let jetstream = async_nats::jetstream::new(client.clone());
    let consumer = sensors.get_consumer::<pull::Config>(&name).await.unwrap();
    let created = consumer.cached_info().created;
    // While the host is down, a message is delivered and never acknowledged
    // (as to a host killed before its acknowledgement), then more come.
    let first = now_ms();
    publish_acked(&jetstream, "sensors.echo.s1", reading(first)).await;
    let mut taken = consumer.fetch().max_messages(1).messages().await.unwrap();
    let held = taken.next().await.unwrap().unwrap();
    assert_eq!(held.payload, reading(first));
    for n in 1..=AFTER {
        publish_acked(&jetstream, "sensors.echo.s1", reading(first + n as i64)).await;
    }
    device.start_with(&client).await;
    echoed_once_each(&cloud, &client, &sensors, AFTER + 1).await;
    let alerts = upstream_alerts_where(&cloud, "the upstream alerts", |_| true).await;
    let first_echo = alerts.iter().find(|(_, alert)| alert["code"] == "seen").unwrap();
    assert_eq!(first_echo.1["ts"], first, "the unacknowledged message came again first");
    let kept = sensors.get_consumer::<pull::Config>(&name).await.unwrap();
    assert_eq!(
        kept.cached_info().created,
        created,
        "the consumer was kept, never deleted and made again"
    );
    drop(held);
    device.terminate_cleanly().await;
}
