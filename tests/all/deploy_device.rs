//! Deployment to a running device (issue #15), the device's side: a desired
//! set written to the cloud's buckets is fetched, verified, started or
//! swapped in, and reported phase by phase.

use std::collections::BTreeMap;

use edgewise_host::deploy::model::{self, Deployment, Phase};
use edgewise_host::deploy::{Cloud, Desired, DesiredPlugin, Reported};
use edgewise_tests::nats::NatsServer;
use edgewise_tests::signed_bundle;

use crate::device::{DEVICE, Device, WAIT};
use crate::support::poll_until;

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
