//! A backlog read at once is not an output flood. With the JetStream source,
//! a host that was down finds the readings stored meanwhile and takes them
//! as fast as it can: outputs per second of real time are then as high as
//! they ever get, for a plugin doing nothing wrong. Before: glucose-monitor
//! hit its `outputs_per_second` limit, failed, and every retry of the batch
//! ran in the same exhausted second, so valid readings of patients were set
//! aside for good, their alerts never made, and the plugin was quarantined.

use crate::device::{Device, now_ms, reading};
use crate::support::{UP, create_sensors_stream, plugin, publish_acked, status_until, upstream_alerts};
use edgewise_tests::nats::NatsServer;

/// Patients in the backlog, each with one urgent low: one alert each.
const PATIENTS: usize = 600;
/// glucose-monitor's output rate limit on this device: the backlog makes
/// six times as many alerts, read at once.
const OUTPUTS_PER_SECOND: usize = 100;

#[tokio::test(flavor = "multi_thread")]
async fn a_backlog_taken_at_once_makes_every_alert_without_a_failure() {
    let local = NatsServer::start_with_jetstream();
    let cloud = NatsServer::start_with_jetstream();
    let client = async_nats::connect(local.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client.clone());
    create_sensors_stream(&jetstream).await;
    // Stored while the host was down.
    let first = now_ms() - 60_000;
    for patient in 0..PATIENTS {
        let ts = first + patient as i64;
        publish_acked(&jetstream, format!("sensors.cgm.p{patient}"), reading(ts, 45.0)).await;
    }
    let plugins = format!(
        "[[plugins]]\nbundle = \"glucose-monitor.wasm\"\n[plugins.limits]\noutputs_per_second = {OUTPUTS_PER_SECOND}\n\n\
         [ingest]\nsource = \"jetstream\"\nstream = \"SENSORS\"\n"
    );
    let mut device = Device::with_plugins(&local, Some(&cloud), "100ms", &plugins);
    device.start_with(&client).await;

    let status = status_until(&client, "every reading of the backlog taken", |status| {
        plugin(status, "glucose-monitor")["readings_in"].as_u64() >= Some(PATIENTS as u64)
    })
    .await;
    let monitor = plugin(&status, "glucose-monitor");
    for counter in ["errors", "restarts", "quarantines", "inputs_set_aside"] {
        assert_eq!(monitor[counter], 0, "{counter}: {status}");
    }
    let alerts = upstream_alerts(&cloud, PATIENTS).await;
    let urgent = alerts
        .iter()
        .filter(|(_, alert)| alert["plugin"] == "glucose-monitor" && alert["code"] == "urgent-low")
        .count();
    assert_eq!(urgent, PATIENTS, "one urgent low per patient, upstream");
    assert!(
        !alerts.iter().any(|(_, alert)| alert["plugin"] == "_host"),
        "{alerts:?}"
    );
    assert_eq!(UP, "EDGEWISE_UP");
    device.terminate_cleanly().await;
}
