//! Every task the host starts has an owner that notices at once when it ends
//! before shutdown. A plugin whose input is gone is `degraded` in the status
//! and raises a critical `plugin-degraded` alert, locally and upstream; it
//! does not run on, silent, with no readings while its status says healthy.

use serde_json::Value;

use crate::device::{DEVICE, Device, now_ms, reading};
use crate::support::{
    create_sensors_stream, next_where, plugin, status_until, subscribe_alerts, upstream_alerts_where,
};
use edgewise_tests::nats::NatsServer;

/// Whether `alert` is the host's `plugin-degraded` alert about the ingest of
/// glucose-monitor.
fn is_ingest_degraded(alert: &Value) -> bool {
    let message = alert["message"].as_str().unwrap_or_default();
    alert["code"] == "plugin-degraded"
        && alert["severity"] == "critical"
        && message.contains("glucose-monitor")
        && message.contains("ingest")
}

/// The JetStream source stream is deleted from outside while the host runs:
/// the ingest of glucose-monitor ends. Its owner notices at once: the plugin
/// is `degraded` with the reason, a critical alert goes out locally and
/// upstream. Ingest is retried (with backoff) and, once the stream is back,
/// readings flow again and the plugin is `running`.
#[tokio::test(flavor = "multi_thread")]
async fn a_jetstream_ingest_that_loses_its_stream_degrades_its_plugin_alerts_and_recovers() {
    let local = NatsServer::start_with_jetstream();
    let cloud = NatsServer::start_with_jetstream();
    let client = async_nats::connect(local.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client.clone());
    create_sensors_stream(&jetstream).await;
    let extra = "[ingest]\nsource = \"jetstream\"\nstream = \"SENSORS\"\n";
    let mut device = Device::new(&local, Some(&cloud), extra);
    let mut alerts = subscribe_alerts(&client, ">").await;
    client.flush().await.unwrap();
    device.start(&local).await;

    let publish = |value: f64| {
        let jetstream = jetstream.clone();
        async move {
            jetstream
                .publish("sensors.cgm.p1", reading(now_ms(), value))
                .await
                .unwrap()
                .await
                .unwrap();
        }
    };
    publish(120.0).await;
    status_until(&client, "the first reading taken", |s| {
        plugin(s, "glucose-monitor")["readings_in"] == 1
    })
    .await;

    jetstream.delete_stream("SENSORS").await.unwrap();
    let alert = next_where(&mut alerts, "a plugin-degraded alert about ingest", |_, alert| {
        is_ingest_degraded(alert)
    })
    .await;
    assert_eq!(alert["device"], DEVICE, "{alert}");
    let status = status_until(&client, "glucose-monitor degraded", |s| {
        plugin(s, "glucose-monitor")["state"] == "degraded"
    })
    .await;
    let shown = plugin(&status, "glucose-monitor");
    assert!(
        shown["last_error"].as_str().unwrap_or_default().contains("ingest"),
        "{status}"
    );
    assert_eq!(shown["failures"]["ingest"], 1, "{status}");
    upstream_alerts_where(&cloud, "the ingest failure upstream", |upstream| {
        upstream.iter().any(|(_, alert)| is_ingest_degraded(alert))
    })
    .await;

    // Retried: once the stream is back, the plugin takes readings again.
    create_sensors_stream(&jetstream).await;
    status_until(&client, "glucose-monitor running again", |s| {
        plugin(s, "glucose-monitor")["state"] == "running"
    })
    .await;
    publish(121.0).await;
    let status = status_until(&client, "a reading taken after the stream came back", |s| {
        plugin(s, "glucose-monitor")["readings_in"] == 2
    })
    .await;
    // One episode, one alert and one failure, however many retries it took.
    assert_eq!(plugin(&status, "glucose-monitor")["failures"]["ingest"], 1, "{status}");
    device.terminate_cleanly().await;
}

/// Upstream delivery cannot even be set up (its credentials file is
/// missing): the task ends at once. Its owner notices: the status lists the
/// task and why, and a critical `host-degraded` alert goes out on the local
/// bus (nothing reaches the cloud now); plugins and local alerts go on.
#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_that_cannot_be_set_up_is_shown_in_the_status_and_alerted_locally() {
    let local = NatsServer::start();
    let client = async_nats::connect(local.url()).await.unwrap();
    let extra = format!(
        "[upstream]\nurl = \"{}\"\ncredentials = \"missing.creds\"\n",
        local.url()
    );
    let mut device = Device::new(&local, None, &extra);
    let mut alerts = subscribe_alerts(&client, "_host").await;
    client.flush().await.unwrap();
    device.start(&local).await;

    let alert = next_where(&mut alerts, "a host-degraded alert about upstream", |_, alert| {
        alert["code"] == "host-degraded" && alert["message"].as_str().unwrap_or_default().contains("upstream")
    })
    .await;
    assert_eq!(alert["severity"], "critical", "{alert}");
    let status = status_until(&client, "the upstream task listed as ended", |s| {
        s["tasks"]["upstream"].is_string()
    })
    .await;
    let reason = status["tasks"]["upstream"].as_str().unwrap();
    assert!(reason.contains("missing.creds"), "{status}");
    assert_eq!(plugin(&status, "glucose-monitor")["state"], "running", "{status}");
    device.terminate_cleanly().await;
}
