//! The fleet's NATS topology with the deployment buckets on it: an operator
//! on the cloud's server, a device's client on its local server only (a leaf
//! node of the cloud), reaching the buckets in JetStream domain `cloud`,
//! beside the device's own JetStream (domain = its id). And a cut link: the
//! cloud unreachable from the device, its local JetStream still there, the
//! latest write read once the link is back. And the bundles the deployment
//! tests push (`edgewise_tests::deploy_bundles`): each verifies, or is
//! refused, and fails, as its name says.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use edgewise_host::deploy::model::{DESIRED_BUCKET, bundle_name, device_key};
use edgewise_host::deploy::{Cloud, CloudError, Desired, DesiredPlugin, Reported, ReportedPlugin};
use edgewise_procs::{CLOUD_DOMAIN, EdgeServer};
use edgewise_tests::nats::{start_cloud, start_edge};
use edgewise_tests::{DeployBundle, deploy_bundles, edgewise, oversized_bundle, run_key, signed_bundle};
use futures::StreamExt;
use tokio::time::timeout;

use crate::support::{assert_contains, poll_until, replay_example_with};

/// A bound on one awaited step, so that a hang fails instead of blocking.
const WAIT: Duration = Duration::from_secs(20);

async fn connect(url: &str) -> async_nats::Client {
    async_nats::ConnectOptions::new()
        .reconnect_delay_callback(|_| Duration::from_millis(100))
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {url}: {e}"))
}

/// The device's view of the buckets: through its own server, in domain `cloud`.
async fn device_side(edge: &EdgeServer) -> Cloud {
    Cloud::new(connect(&edge.url()).await, Some(CLOUD_DOMAIN))
}

fn desired_of(bundle: &str, version: &str, size: u64, note: &str) -> Desired {
    Desired {
        plugins: [(
            "glucose-monitor".to_owned(),
            DesiredPlugin {
                bundle: bundle.to_owned(),
                version: version.to_owned(),
                size,
                config: BTreeMap::from([("repeat".to_owned(), "45m".to_owned())]),
                pushed_ms: 0,
            },
        )]
        .into(),
        written_by: note.to_owned(),
        written_ms: 1,
    }
}

/// A stream `SENSORS` on the device's own JetStream: a reading stored there
/// (the acknowledgement names the device's domain), read back.
async fn local_stream_works(edge: &EdgeServer, client: &async_nats::Client, reading: &'static str) {
    let js = jetstream::new(client.clone());
    let stream = js
        .get_or_create_stream(stream::Config {
            name: "SENSORS".to_owned(),
            subjects: vec!["sensors.>".to_owned()],
            ..Default::default()
        })
        .await
        .unwrap();
    let ack = js
        .publish("sensors.cgm.p1", reading.into())
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(ack.stream, "SENSORS");
    assert_eq!(ack.domain, edge.device());
    let stored = stream.get_raw_message(ack.sequence).await.unwrap();
    assert_eq!(&stored.payload[..], reading.as_bytes());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_behind_a_leaf_node_reads_desired_sets_and_bundles_and_writes_its_report() {
    let cloud = start_cloud();
    let edge = start_edge(&cloud, "edge-01");
    assert_eq!(cloud.leaf_names().unwrap(), ["edge-01"]);
    let bundle = std::fs::read(signed_bundle("glucose-monitor")).unwrap();
    let size = bundle.len() as u64;

    // The operator, on the cloud's server.
    let operator = Cloud::new(connect(&cloud.url()).await, None);
    operator.ensure_buckets().await.unwrap();
    operator.ensure_buckets().await.unwrap();
    let name = operator.put_bundle(&bundle).await.unwrap();
    assert_eq!(name, bundle_name(&bundle));
    let key = device_key("edge-01");
    let first = desired_of(&name, "0.2.3", size, "first");
    let generation = operator.write_desired(&key, &first, None).await.unwrap();

    // The device, on its own server only.
    let device_client = connect(&edge.url()).await;
    let device = Cloud::new(device_client.clone(), Some(CLOUD_DOMAIN));
    assert_eq!(device.desired(&key).await.unwrap(), Some((first.clone(), generation)));
    assert_eq!(device.desired(&device_key("edge-02")).await.unwrap(), None);
    assert_eq!(device.fetch_bundle(&name, 32 << 20).await.unwrap(), bundle);
    match device.fetch_bundle(&name, size - 1).await {
        Err(CloudError::Bundle { reason, .. }) => {
            assert_eq!(reason, format!("{size} bytes, over the {} allowed", size - 1));
        }
        other => panic!("a bundle over the cap was not refused: {other:?}"),
    }
    let missing = bundle_name(b"no such bundle");
    // A bundle nobody stored is refused for good (not a passing network
    // problem, which would be tried again).
    match device.fetch_bundle(&missing, 32 << 20).await {
        Err(CloudError::Bundle { reason, .. }) => assert_eq!(reason, "not in the bundle store"),
        other => panic!("a missing bundle was not refused: {other:?}"),
    }

    // A write while the device watches reaches it; a stale one is refused.
    let mut watch = device.watch_desired(vec![key.clone()]).await.unwrap();
    let second = desired_of(&name, "0.2.3", size, "second");
    let next = operator.write_desired(&key, &second, Some(generation)).await.unwrap();
    assert!(next > generation);
    let entry = timeout(WAIT, watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!((entry.key.as_str(), entry.revision), (key.as_str(), next));
    assert_eq!(Desired::parse(&entry.value).unwrap(), second);
    assert!(matches!(
        operator.write_desired(&key, &first, Some(generation)).await,
        Err(CloudError::Conflict { read, .. }) if read == generation
    ));
    assert_eq!(device.desired(&key).await.unwrap(), Some((second, next)));

    // The device's report, read by the operator.
    let reported = Reported {
        device: "edge-01".to_owned(),
        groups: vec!["ward-3".to_owned()],
        host_version: "test".to_owned(),
        last_seen_ms: 42,
        generations: BTreeMap::from([(key.clone(), next)]),
        plugins: BTreeMap::from([(
            "glucose-monitor".to_owned(),
            ReportedPlugin {
                running_version: "0.2.3".to_owned(),
                running_bundle: name.clone(),
                ..ReportedPlugin::default()
            },
        )]),
        last_error: None,
    };
    device.report(&reported).await.unwrap();
    assert_eq!(operator.report_of("edge-01").await.unwrap(), Some(reported.clone()));
    let reports: Vec<Reported> = operator
        .reports()
        .await
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(reports, [reported]);

    // The device's own JetStream beside it; its buckets are the cloud's only.
    local_stream_works(&edge, &device_client, "5.4").await;
    let operator_js = jetstream::new(connect(&cloud.url()).await);
    assert!(operator_js.get_stream("SENSORS").await.is_err());
    assert!(
        jetstream::new(device_client)
            .get_key_value(DESIRED_BUCKET)
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cut_link_leaves_the_device_its_local_jetstream_and_a_restored_one_brings_the_latest_write() {
    let cloud = start_cloud();
    let mut edge = start_edge(&cloud, "edge-07");
    let operator = Cloud::new(connect(&cloud.url()).await, None);
    operator.ensure_buckets().await.unwrap();
    let bundle = std::fs::read(signed_bundle("glucose-monitor")).unwrap();
    let name = operator.put_bundle(&bundle).await.unwrap();
    let key = device_key("edge-07");
    let size = bundle.len() as u64;
    let mut generation = operator
        .write_desired(&key, &desired_of(&name, "0.2.3", size, "0"), None)
        .await
        .unwrap();
    let device_client = connect(&edge.url()).await;
    let device = Cloud::new(device_client.clone(), Some(CLOUD_DOMAIN));
    assert_eq!(device.desired(&key).await.unwrap().unwrap().1, generation);

    edge.unlink().unwrap();
    // The device's server redials, and is refused: the link stays down.
    poll_until("the device to redial the cut link", WAIT, || async {
        match edge.link().refused() {
            0 => Err(format!("no dial yet; its log:\n{}", edge.server().log())),
            _ => Ok(()),
        }
    })
    .await;
    assert!(!cloud.leaf_names().unwrap().contains(&"edge-07".to_owned()));
    assert!(!edge.cloud_answers().unwrap());
    assert!(matches!(device.desired(&key).await, Err(CloudError::Nats { .. })));
    local_stream_works(&edge, &device_client, "6.1").await;
    // Three writes while the device is offline.
    for note in ["1", "2", "3"] {
        let desired = desired_of(&name, "0.2.3", size, note);
        generation = operator.write_desired(&key, &desired, Some(generation)).await.unwrap();
    }
    assert!(!edge.cloud_answers().unwrap(), "the device went round its link");

    edge.relink();
    edge.wait_linked().unwrap();
    let (latest, read) = device.desired(&key).await.unwrap().unwrap();
    assert_eq!((latest.written_by.as_str(), read), ("3", generation));

    // The device's server restarted: same URL, same store, linked again.
    edge.stop().unwrap();
    edge.start_again().unwrap();
    edge.wait_linked().unwrap();
    let device = device_side(&edge).await;
    assert_eq!(device.desired(&key).await.unwrap().unwrap().1, generation);
    let js = jetstream::new(connect(&edge.url()).await);
    assert_eq!(
        js.get_stream("SENSORS")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .state
            .messages,
        1
    );

    // The cloud's server restarted: the same client, leafnode and monitor
    // ports and store; the device dials it again by itself.
    let mut cloud = cloud;
    let leaf_port = cloud.leaf_port();
    cloud.server_mut().stop().unwrap();
    cloud.server_mut().start_again().unwrap();
    assert_eq!(cloud.leaf_port(), leaf_port);
    edge.wait_linked().unwrap();
    assert_eq!(device.desired(&key).await.unwrap().unwrap().1, generation);
}

/// `edgewise verify` of `bundle` against the run's trust directory.
fn verify(bundle: &DeployBundle) -> edgewise_tests::Run {
    edgewise([
        "verify".as_ref(),
        "--trust".as_ref(),
        run_key().trust_dir().as_os_str(),
        bundle.path.as_os_str(),
    ])
}

#[test]
fn the_deployment_bundles_verify_or_are_refused_as_their_names_say() {
    let bundles = deploy_bundles();
    let good = [
        &bundles.v1,
        &bundles.v2,
        &bundles.v0_9,
        &bundles.fails_init,
        &bundles.traps_third,
        &bundles.refuses_snapshot,
    ];
    let mut digests = std::collections::BTreeSet::new();
    for bundle in good {
        let run = verify(bundle);
        assert_eq!(run.code, Some(0), "{}: {}", bundle.path.display(), run.stderr);
        assert_contains(&run.stdout, &format!("OK glucose-monitor {} ", bundle.version));
        assert!(
            digests.insert(bundle_name(&bundle.bytes())),
            "{}",
            bundle.path.display()
        );
    }
    for (bundle, reason) in [
        (&bundles.untrusted, "refused: signed by unknown key"),
        (&bundles.tampered, "refused: bad signature"),
        (&bundles.unsigned, "refused: unsigned"),
        (oversized_bundle(), "over the 33554432-byte limit"),
    ] {
        let run = verify(bundle);
        assert_eq!(run.code, Some(1), "{}: {}", bundle.path.display(), run.stderr);
        assert_contains(&run.stderr, reason);
    }
    assert!(std::fs::metadata(&oversized_bundle().path).unwrap().len() > 32 << 20);
}

#[test]
fn the_failing_versions_fail_where_they_say_and_the_good_ones_resume_from_snapshots() {
    let bundles = deploy_bundles();
    let trust = run_key().trust_dir();
    let replay = |bundle: &DeployBundle, extra: &[&str]| replay_example_with(&bundle.path, Some(&trust), extra);

    // A refused `init` reads as a refused configuration in a replay.
    let run = replay(&bundles.fails_init, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(&run.stderr, "glucose-chaos: failing init on purpose (fail_init)");

    let run = replay(&bundles.traps_third, &[]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_contains(&run.stderr, "trapping on purpose at on-readings call 3 (trap_on_call)");

    // Stopped and resumed from its snapshot every 500 readings.
    let run = replay(&bundles.refuses_snapshot, &["--snapshot-every", "500"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert_contains(
        &run.stderr,
        "glucose-chaos: refusing the snapshot on purpose (refuse_resume)",
    );
    for good in [&bundles.v2, &bundles.refuses_snapshot] {
        let run = replay(good, &[]);
        assert_eq!(run.code, Some(0), "{}: {}", good.path.display(), run.stderr);
    }
    let run = replay(&bundles.v1, &["--snapshot-every", "500"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
}
