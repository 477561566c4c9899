//! Deployment to running devices (issue #15), in the topology real fleets
//! use: a cloud nats-server (JetStream domain `cloud`: the deployment buckets
//! and the upstream stream) and, per device, its own local nats-server (its
//! sensor stream in its own domain), a leaf node of the cloud's that dials
//! out. `edgewise run` talks to its local server only; the operator to the
//! cloud's. A desired set is fetched, verified, started or swapped in, put on
//! probation, rolled back on failure, and reported phase by phase.

use std::time::Duration;

use serde_json::Value;

use edgewise_host::deploy::model::{self, Deployment, Phase};
use edgewise_host::deploy::{Cloud, Reported};
use edgewise_procs::{CloudServer, EdgeServer};
use edgewise_tests::nats::{start_cloud, start_edge};
use edgewise_tests::{DeployBundle, deploy_bundles, edgewise, oversized_bundle};

use crate::device::{DEVICE, Device, WAIT};
use crate::kill_recovery::{Row, Run, assert_exactly_the_replay, drained, recording, settings, upstream_outputs};
use crate::support::{
    UP, create_sensors_stream, host_status, next_where, plugin, poll_until, publish_acked, status_until, value_until,
};

/// The plugin every deployment here is of.
pub(crate) const PLUGIN: &str = "glucose-monitor";

/// The cloud of a test, and the operator's view of its buckets.
pub(crate) struct Site {
    pub(crate) cloud: CloudServer,
    pub(crate) operator: Cloud,
    /// The operator's login, when the cloud asks for one.
    login: Option<(String, String)>,
}

impl Site {
    pub(crate) async fn start() -> Site {
        let cloud = start_cloud();
        let client = async_nats::connect(cloud.url()).await.unwrap();
        Site::with(cloud, client, None).await
    }

    /// A cloud configured with `authorization` (its users), the operator
    /// logged in as `login`.
    async fn with_authorization(authorization: &str, login: (&str, &str)) -> Site {
        let cloud = CloudServer::start_with(edgewise_tests::nats_server_binary(), authorization)
            .unwrap_or_else(|e| panic!("{e:#}"));
        let client = async_nats::ConnectOptions::with_user_and_password(login.0.to_owned(), login.1.to_owned())
            .connect(cloud.url())
            .await
            .unwrap();
        Site::with(cloud, client, Some((login.0.to_owned(), login.1.to_owned()))).await
    }

    async fn with(cloud: CloudServer, client: async_nats::Client, login: Option<(String, String)>) -> Site {
        let operator = Cloud::new(client, None);
        operator.ensure_buckets().await.unwrap();
        Site { cloud, operator, login }
    }

    /// `edgewise <args> --cloud <the cloud>`.
    pub(crate) async fn cli(&self, args: &[&str]) -> edgewise_tests::Run {
        let mut args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        args.extend(["--cloud".to_owned(), self.cloud.url()]);
        if let Some((user, password)) = &self.login {
            args.extend([
                "--user".to_owned(),
                user.clone(),
                "--password".to_owned(),
                password.clone(),
            ]);
        }
        tokio::task::spawn_blocking(move || edgewise(args)).await.unwrap()
    }
}

/// A device behind its own leaf server.
pub(crate) struct Edge {
    pub(crate) id: String,
    pub(crate) server: EdgeServer,
    pub(crate) device: Device,
    /// A client of its local server (status, sensors).
    pub(crate) client: async_nats::Client,
}

impl Edge {
    /// Device `id` on a new leaf server of `site`, with `deploy` inside its
    /// `[deploy]` table and `tables` after it, ticking every `tick`; not
    /// started. Its upstream goes through the leaf too (domain `cloud`).
    pub(crate) async fn new(site: &Site, id: &str, tick: &str, deploy: &str, tables: &str) -> Edge {
        Edge::logged_in(site, id, tick, deploy, tables, None).await
    }

    /// As [`Edge::new`], its leaf connection logged in to the cloud as `login`.
    async fn logged_in(
        site: &Site,
        id: &str,
        tick: &str,
        deploy: &str,
        tables: &str,
        login: Option<(&str, &str)>,
    ) -> Edge {
        let server = match login {
            None => start_edge(&site.cloud, id),
            Some(login) => {
                let server = EdgeServer::start_as(edgewise_tests::nats_server_binary(), &site.cloud, id, Some(login))
                    .unwrap_or_else(|e| panic!("{e:#}"));
                server.wait_linked().unwrap_or_else(|e| panic!("{e:#}"));
                server
            }
        };
        Edge::on(server, id, tick, deploy, tables).await
    }

    /// A device `id` of `site` whose local server has `authorization` (its
    /// users, with what each may do; a client without a login is
    /// `no_auth_user`), the device logging in to it as `login`, with
    /// `tables`; not started.
    async fn with_local_users(site: &Site, id: &str, tables: &str, authorization: &str, login: (&str, &str)) -> Edge {
        let server = EdgeServer::start_configured(
            edgewise_tests::nats_server_binary(),
            &site.cloud,
            id,
            None,
            authorization,
        )
        .unwrap_or_else(|e| panic!("{e:#}"));
        server.wait_linked().unwrap_or_else(|e| panic!("{e:#}"));
        let edge = Edge::on(server, id, "100ms", "", tables).await;
        // Its local connection and its upstream, through the same server.
        let url = format!("url = \"{}\"\n", edge.server.url());
        let logged_in = format!("{url}user = \"{}\"\npassword = \"{}\"\n", login.0, login.1);
        edge.device.edit_config(|config| config.replace(&url, &logged_in));
        edge
    }

    /// The device `id` on `server`, with `deploy` and `tables`, ticking
    /// every `tick`; not started.
    async fn on(server: EdgeServer, id: &str, tick: &str, deploy: &str, tables: &str) -> Edge {
        // A probation of a second unless `deploy` says otherwise.
        let probation = match deploy.contains("probation") {
            true => "",
            false => "probation = \"1s\"\n",
        };
        let rest = format!(
            "[upstream]\nurl = \"{}\"\nstream = \"{UP}\"\ncreate_stream = true\ndomain = \"cloud\"\n\n\
             [deploy]\ndomain = \"cloud\"\n{probation}resync = \"2s\"\nreport_every = \"1s\"\n{deploy}\n{tables}",
            server.url()
        );
        let device = Device::at(id, &server.url(), None, tick, &rest);
        let client = async_nats::connect(server.url()).await.unwrap();
        Edge {
            id: id.to_owned(),
            server,
            device,
            client,
        }
    }

    pub(crate) async fn start(&mut self) {
        self.device.start_with(&self.client).await;
    }

    pub(crate) fn key(&self) -> String {
        model::device_key(&self.id)
    }
}

/// Push `bundle` as [`PLUGIN`] to `key` through `cloud`, with `config`: the
/// new generation.
pub(crate) async fn push(cloud: &Cloud, key: &str, bundle: &[u8], config: &[(&str, &str)]) -> u64 {
    let config = config.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    cloud
        .push_plugin(key, PLUGIN, bundle, "", config, "test", now_ms())
        .await
        .unwrap()
}

/// The wall clock, ms since the epoch: when a push was made.
pub(crate) fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// The deployment of [`PLUGIN`] at `generation` on `device` once it reached
/// a final phase, and the report that says so.
pub(crate) async fn settled(cloud: &Cloud, device: &str, generation: u64) -> (Reported, Deployment) {
    let what = format!("a final phase of generation {generation} on {device}");
    deployment_where(cloud, device, &what, |d| {
        d.generation == generation && d.phase.is_final()
    })
    .await
}

/// The report of `device` now, or why there is none (for [`poll_until`]).
pub(crate) async fn report_now(cloud: &Cloud, device: &str) -> Result<Reported, String> {
    cloud
        .report_of(device)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no report".to_owned())
}

/// The report of `device` once the deployment of [`PLUGIN`] in it is `wanted`
/// (`what`, for the message on a timeout), with that deployment.
pub(crate) async fn deployment_where(
    cloud: &Cloud,
    device: &str,
    what: &str,
    wanted: impl Fn(&Deployment) -> bool,
) -> (Reported, Deployment) {
    poll_until(what, WAIT, || async {
        let report = report_now(cloud, device).await?;
        match report.plugins.get(PLUGIN).and_then(|p| p.deployment.clone()) {
            Some(d) if wanted(&d) => Ok((report, d)),
            _ => Err(format!("{report:#?}")),
        }
    })
    .await
}

/// Push `bundle` to `edge` and wait for its final phase.
pub(crate) async fn deploy(
    site: &Site,
    edge: &Edge,
    bundle: &DeployBundle,
    config: &[(&str, &str)],
) -> (Reported, Deployment) {
    let generation = push(&site.operator, &edge.key(), &bundle.bytes(), config).await;
    settled(&site.operator, &edge.id, generation).await
}

/// A cloud and a device behind its leaf server, running glucose-monitor
/// 1.0.0 deployed and healthy.
pub(crate) async fn running_v1() -> (Site, Edge) {
    running_v1_with("").await
}

/// As [`running_v1`], with `deploy` inside the device's `[deploy]` table
/// (a probation of its own, say).
pub(crate) async fn running_v1_with(deploy_settings: &str) -> (Site, Edge) {
    let site = Site::start().await;
    let mut edge = Edge::new(&site, DEVICE, "100ms", deploy_settings, "").await;
    edge.start().await;
    let (report, deployment) = deploy(&site, &edge, &deploy_bundles().v1, &[]).await;
    assert_eq!(deployment.phase, Phase::Healthy, "{report:#?}");
    (site, edge)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pushed_plugin_runs_then_is_healthy_and_the_fleet_shows_it() {
    let site = Site::start().await;
    let mut edge = Edge::new(&site, DEVICE, "100ms", "", "").await;
    edge.start().await;
    let v1 = &deploy_bundles().v1;
    let pushed = site.cli(&["push", v1.path.to_str().unwrap(), "--device", DEVICE]).await;
    assert_eq!(pushed.code, Some(0), "{}", pushed.stderr);
    let generation = site.operator.desired(&edge.key()).await.unwrap().unwrap().1;
    let (report, deployment) = settled(&site.operator, DEVICE, generation).await;
    assert_eq!(deployment.phase, Phase::Healthy, "{report:#?}");
    let phases: Vec<Phase> = deployment.history.iter().map(|c| c.phase).collect();
    assert_eq!(
        phases,
        [Phase::Received, Phase::Verified, Phase::Running, Phase::Healthy],
        "never conflated: {report:#?}"
    );
    let status = host_status(&edge.client).await;
    assert_eq!(plugin(&status, PLUGIN)["version"], "1.0.0", "{status:#}");

    let fleet = site.cli(&["fleet"]).await;
    assert_eq!(fleet.code, Some(0), "{}", fleet.stderr);
    let row = fleet.stdout.lines().find(|l| l.contains(DEVICE)).unwrap_or_default();
    for wanted in [PLUGIN, "1.0.0", "healthy"] {
        assert!(
            row.contains(wanted),
            "`{wanted}` not in the fleet row `{row}`:\n{}",
            fleet.stdout
        );
    }
    let json = site.cli(&["fleet", "--json"]).await;
    let reports: Value = serde_json::from_str(&json.stdout).unwrap();
    let plugin = &reports[0]["plugins"][PLUGIN];
    assert_eq!(plugin["running_version"], "1.0.0");
    assert_eq!(plugin["running_bundle"], model::bundle_name(&v1.bytes()));
    assert_eq!(plugin["deployment"]["phase"], "healthy");
}

/// The readings of `rows` as a JSON-lines recording of bus messages, each
/// on its subject without a `sensor` in the payload (the sensor is the
/// subject's last token, as the device takes it).
pub(crate) fn jsonl_recording(rows: &[Row]) -> String {
    rows.iter()
        .map(|(subject, ts, value)| {
            format!(
                "{{\"subject\":\"sensors.cgm.subject-{subject}\",\"payload\":{{\"ts\":{ts},\"value\":{value},\"unit\":\"mg/dL\"}}}}\n"
            )
        })
        .collect()
}

/// A device on the JetStream source with glucose-monitor 1.0.0 deployed,
/// then `rows` published at `rate` readings/s while `during` runs (once a
/// third of them were taken); at the end every reading acknowledged and
/// every output delivered. The cloud's outputs, compared with an
/// uninterrupted replay of 1.0.0 (the versions here compute alike).
async fn while_readings_flow(rate: f64, during: During) -> (Site, Edge, Run) {
    let rows = recording();
    let site = Site::start().await;
    let mut edge = Edge::new(&site, DEVICE, "5m", "", &settings(rows[0].1)).await;
    let jetstream = async_nats::jetstream::new(edge.client.clone());
    let sensors = create_sensors_stream(&jetstream).await;
    edge.start().await;
    let bundles = deploy_bundles();
    let (report, first) = deploy(&site, &edge, &bundles.v1, &[("max_ahead", "8760h")]).await;
    assert_eq!(first.phase, Phase::Healthy, "{report:#?}");

    let publisher = {
        let (rows, jetstream) = (rows.clone(), jetstream.clone());
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            for (k, (subject, ts, value)) in rows.into_iter().enumerate() {
                tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / rate)).await;
                let payload = format!(r#"{{"ts":{ts},"value":{value},"unit":"mg/dL"}}"#);
                publish_acked(&jetstream, format!("sensors.cgm.subject-{subject}"), payload.into()).await;
            }
        })
    };
    let third = rows.len() as u64 / 3;
    value_until(
        "a third of the readings taken",
        WAIT,
        || host_status(&edge.client),
        |status| plugin(status, PLUGIN)["readings_in"].as_u64() >= Some(third),
    )
    .await;
    match during {
        During::Swap => swap_to_v2(&site, &edge).await,
        During::FailingVersions => failing_versions(&site, &edge).await,
        During::OtherSubjects => {
            let bundles = deploy_bundles();
            for bundle in [&bundles.other_subjects, &bundles.v3] {
                let (report, deployment) = deploy(&site, &edge, bundle, &[("max_ahead", "8760h")]).await;
                assert_eq!(deployment.phase, Phase::Healthy, "{report:#?}");
            }
        }
    }
    assert!(
        !publisher.is_finished(),
        "the deployments came while readings flowed (slow machine?)"
    );
    publisher.await.unwrap();
    drained(&edge.client, &sensors, rows.len() as u64).await;
    let status = host_status(&edge.client).await;
    assert_eq!(
        plugin(&status, PLUGIN)["readings_in"].as_u64(),
        Some(rows.len() as u64),
        "every reading given to the plugin once: {status:#}"
    );
    edge.device.terminate_cleanly().await;

    let stored = upstream_outputs(&site.cloud.url()).await;
    let recording = edge.device.path("recording.jsonl");
    std::fs::write(&recording, jsonl_recording(&rows)).unwrap();
    let replay = edgewise([
        "replay",
        "--plugin",
        bundles.v1.path.to_str().unwrap(),
        "--trust",
        edge.device.path("trust").to_str().unwrap(),
        "--input",
        recording.to_str().unwrap(),
        "--config",
        "max_ahead=8760h",
    ]);
    assert_eq!(replay.code, Some(0), "{}", replay.stderr);
    let replayed = crate::live_pipeline::output_lines(&replay.stdout);
    let run = Run {
        stored,
        kills: 0,
        seconds: 0.0,
    };
    // A version rolled back may have emitted outputs before it failed (the
    // one trapping on its third batch, two batches' worth): they are set
    // aside, and the rest must be the replay's.
    let kept = without_the_outputs_of(&run, bundles.traps_third.version, &replayed);
    assert_exactly_the_replay(&kept, &replayed, rows[rows.len() - 1].1);
    (site, edge, run)
}

/// `run` without the outputs of the rolled-back `version`, the others
/// renumbered by rank. A rolled-back version's outputs keep their numbers,
/// and the version restored numbers its own for the same inputs after them
/// (docs/operators.md, "rolled-back"): so every number is used once, and
/// each set-aside output is one the replay has too (same code, same inputs).
fn without_the_outputs_of(run: &Run, version: &str, replayed: &[Value]) -> Run {
    let is_host = |id: &str| id.rsplit('/').next().unwrap_or_default().starts_with("host-");
    let (mut plugin, host): (Vec<_>, Vec<_>) = run.stored.iter().cloned().partition(|(id, _)| !is_host(id));
    plugin.sort_by_key(|(_, e)| e["seq"].as_u64());
    let numbers: Vec<u64> = plugin.iter().filter_map(|(_, e)| e["seq"].as_u64()).collect();
    assert_eq!(
        numbers,
        (1..=plugin.len() as u64).collect::<Vec<_>>(),
        "every number used once, no gap, across the versions"
    );
    let contents: Vec<Value> = replayed.iter().map(without_seq).collect();
    let (aside, kept): (Vec<_>, Vec<_>) = plugin.into_iter().partition(|(_, e)| e["version"] == version);
    for (id, envelope) in &aside {
        assert!(
            contents.contains(&without_seq(envelope)),
            "{id}: an output of {version} the replay does not have: {envelope}"
        );
    }
    eprintln!("{} outputs of the rolled-back {version} set aside", aside.len());
    let renumbered = kept.into_iter().enumerate().map(|(rank, (id, mut envelope))| {
        envelope["seq"] = (rank as u64 + 1).into();
        (id, envelope)
    });
    Run {
        stored: renumbered.chain(host).collect(),
        kills: run.kills,
        seconds: run.seconds,
    }
}

/// An output as [`crate::kill_recovery::comparable`] has it, without its number.
fn without_seq(envelope: &Value) -> Value {
    let mut comparable = crate::kill_recovery::comparable(envelope);
    comparable.as_object_mut().map(|o| o.remove("seq"));
    comparable
}

/// The versions of the plugin's outputs in the cloud.
fn versions(run: &Run) -> std::collections::BTreeSet<String> {
    run.stored
        .iter()
        .filter(|(id, _)| !id.rsplit('/').next().unwrap_or_default().starts_with("host-"))
        .filter_map(|(_, e)| e["version"].as_str().map(str::to_owned))
        .collect()
}

/// What is deployed while readings flow.
enum During {
    /// 2.0.0, which must be healthy.
    Swap,
    /// The three failing versions, each rolled back, then 2.0.0.
    FailingVersions,
    /// 2.2.0, reading [`edgewise_tests::OTHER_SUBJECTS`], then 3.1.0,
    /// reading `sensors.cgm.>` again: the consumer's filters change twice.
    OtherSubjects,
}

async fn swap_to_v2(site: &Site, edge: &Edge) {
    let (report, swapped) = deploy(site, edge, &deploy_bundles().v2, &[("max_ahead", "8760h")]).await;
    assert_eq!(swapped.phase, Phase::Healthy, "{report:#?}");
    assert!(
        swapped.pause_us.is_some(),
        "a swap says how long the input waited: {swapped:#?}"
    );
    let status = host_status(&edge.client).await;
    assert_eq!(plugin(&status, PLUGIN)["version"], "2.0.0");
}

async fn failing_versions(site: &Site, edge: &Edge) {
    let bundles = deploy_bundles();
    let cases = [
        (&bundles.fails_init, "init"),
        (&bundles.traps_third, "trap"),
        (&bundles.refuses_snapshot, "init"),
    ];
    for (bundle, why) in cases {
        let (report, deployment) = deploy(site, edge, bundle, &[("max_ahead", "8760h")]).await;
        assert_eq!(deployment.phase, Phase::RolledBack, "{report:#?}");
        let reason = deployment.reason.clone().unwrap_or_default();
        assert!(reason.contains(why), "`{why}` not in `{reason}`");
        assert_eq!(report.plugins[PLUGIN].running_version, "1.0.0", "{report:#?}");
    }
    // None of them (2.1.0) was recorded for anti-rollback: 2.0.0 is taken.
    let (report, deployment) = deploy(site, edge, &bundles.v2, &[("max_ahead", "8760h")]).await;
    assert_eq!(deployment.phase, Phase::Healthy, "{report:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_swap_while_readings_flow_at_1000_per_second_loses_and_repeats_nothing_and_keeps_the_state() {
    let (_site, _edge, run) = while_readings_flow(1000.0, During::Swap).await;
    assert_eq!(versions(&run), ["1.0.0".to_owned(), "2.0.0".to_owned()].into());
}

/// The plugin's input follows each version in place: the durable consumer
/// changes its filters while readings flow and batches wait for their
/// outputs to be stored, and no reading is lost, given twice or given late.
/// (Made anew instead, the ingest left a pull of the old one to be served
/// to nobody, and its message came again behind newer ones, after the ack
/// wait: late, dropped by the plugin.)
#[tokio::test(flavor = "multi_thread")]
async fn versions_reading_other_subjects_swapped_in_at_1000_per_second_lose_repeat_and_delay_nothing() {
    let (_site, _edge, run) = while_readings_flow(1000.0, During::OtherSubjects).await;
    let swapped = ["1.0.0", "2.2.0", "3.1.0"].map(str::to_owned);
    assert_eq!(versions(&run), swapped.into());
}

#[tokio::test(flavor = "multi_thread")]
async fn versions_that_fail_init_trap_on_their_third_batch_or_refuse_the_state_are_rolled_back_with_the_state_intact() {
    // Every output equals the uninterrupted replay's (checked in
    // `while_readings_flow`): the old version got its state back each time,
    // and the inputs the trapping version took were given to it again.
    let (_site, _edge, run) = while_readings_flow(500.0, During::FailingVersions).await;
    let versions = versions(&run);
    assert!(versions.contains("1.0.0") && versions.contains("2.0.0"), "{versions:?}");
    let rolled_back = run
        .stored
        .iter()
        .filter(|(_, e)| e["code"] == "deployment-rolled-back")
        .count();
    assert_eq!(rolled_back, 3, "each rollback raised its alert");
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_unsigned_untrusted_older_and_oversized_bundles_are_refused_and_the_running_version_untouched() {
    let (site, edge) = running_v1().await;
    let bundles = deploy_bundles();
    let cases = [
        (&bundles.tampered, "signature"),
        (&bundles.unsigned, "unsigned"),
        (&bundles.untrusted, "not in the trust store"),
        (&bundles.v0_9, "rollback"),
        (oversized_bundle(), "allowed"),
    ];
    let healthy_only = kept_bundles(&edge);
    assert_eq!(healthy_only.len(), 1, "v1's: {healthy_only:?}");
    for (bundle, why) in cases {
        let (report, deployment) = deploy(&site, &edge, bundle, &[]).await;
        assert_eq!(
            deployment.phase,
            Phase::Refused,
            "{}: {report:#?}",
            bundle.path.display()
        );
        let reason = deployment.reason.clone().unwrap_or_default();
        assert!(reason.contains(why), "`{why}` not in the reason `{reason}`");
        assert_eq!(
            report.plugins[PLUGIN].running_version, "1.0.0",
            "the running version untouched"
        );
        let status = host_status(&edge.client).await;
        assert_eq!(plugin(&status, PLUGIN)["state"], "running", "{status:#}");
        let fleet = site.cli(&["fleet", "--device", DEVICE]).await;
        assert!(fleet.stdout.contains("refused"), "{}", fleet.stdout);
        // Not kept on the device: a cloud pushing refused bundles would
        // fill its disk. (Before, each stayed until a deployment was healthy.)
        assert_eq!(kept_bundles(&edge), healthy_only, "{}", bundle.path.display());
    }
}

/// The names of the bundles `edge` keeps for deployed versions.
fn kept_bundles(edge: &Edge) -> Vec<std::ffi::OsString> {
    let mut kept: Vec<_> = std::fs::read_dir(edge.device.path("data/deploy/bundles"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    kept.sort();
    kept
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_offline_during_three_pushes_applies_only_the_last_and_restarted_offline_runs_its_healthy_set() {
    let (site, mut edge) = running_v1().await;
    let bundles = deploy_bundles();

    edge.server.unlink().unwrap();
    let key = edge.key();
    push(&site.operator, &key, &bundles.fails_init.bytes(), &[]).await;
    push(&site.operator, &key, &bundles.refuses_snapshot.bytes(), &[]).await;
    let last = push(&site.operator, &key, &bundles.v2.bytes(), &[]).await;
    edge.server.relink();
    edge.server.wait_linked().unwrap();
    let (report, deployment) = settled(&site.operator, DEVICE, last).await;
    assert_eq!(deployment.phase, Phase::Healthy, "{report:#?}");
    assert_eq!(report.plugins[PLUGIN].running_version, "2.0.0");
    assert_eq!(report.generations[&key], last, "{report:#?}");
    edge.device.terminate_cleanly().await;
    // Had the device tried the two failing versions pushed meanwhile, each
    // would have been rolled back, with an alert upstream.
    let stored = upstream_outputs(&site.cloud.url()).await;
    let rollbacks: Vec<_> = stored
        .iter()
        .filter(|(_, e)| e["code"] == "deployment-rolled-back")
        .collect();
    assert!(
        rollbacks.is_empty(),
        "an intermediate generation was tried: {rollbacks:#?}"
    );

    // Restarted with the cloud unreachable: the healthy set it keeps runs.
    edge.server.unlink().unwrap();
    edge.start().await;
    let status = host_status(&edge.client).await;
    assert_eq!(plugin(&status, PLUGIN)["version"], "2.0.0", "{status:#}");
    assert_eq!(plugin(&status, PLUGIN)["state"], "running", "{status:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rollout_to_five_devices_where_two_reject_the_bundle_stops_at_that_wave_and_says_who_and_why() {
    let site = Site::start().await;
    let bundles = deploy_bundles();
    let mut edges = Vec::new();
    for n in 1..=5 {
        let edge = Edge::new(&site, &format!("ward-{n}"), "100ms", "groups = [\"ward\"]\n", "").await;
        // The new version is signed by a second key: ward-2 and ward-3 do
        // not trust it, the others do.
        if n != 2 && n != 3 {
            std::fs::copy(&bundles.stranger_public, edge.device.path("trust/stranger.pub")).unwrap();
        }
        edges.push(edge);
    }
    for edge in &mut edges {
        edge.start().await;
    }
    let pushed = site
        .cli(&["push", bundles.v1.path.to_str().unwrap(), "--group", "ward"])
        .await;
    assert_eq!(pushed.code, Some(0), "{}", pushed.stderr);
    let (_, generation) = site.operator.desired("group.ward").await.unwrap().unwrap();
    for edge in &edges {
        let (report, deployment) = settled(&site.operator, &edge.id, generation).await;
        assert_eq!(deployment.phase, Phase::Healthy, "{report:#?}");
    }

    let rollout = site
        .cli(&[
            "rollout",
            bundles.untrusted.path.to_str().unwrap(),
            "--group",
            "ward",
            "--waves",
            "1,3,100%",
            "--max-failures",
            "20%",
            "--timeout",
            "60s",
        ])
        .await;
    assert_eq!(rollout.code, Some(1), "{}\n{}", rollout.stdout, rollout.stderr);
    for wanted in [
        "rollout aborted at wave 2: 2 of 3 devices failed",
        "ward-2 (refused",
        "ward-3 (refused",
        "not in the trust store",
    ] {
        assert!(
            rollout.stderr.contains(wanted),
            "`{wanted}` not in:\n{}",
            rollout.stderr
        );
    }
    assert!(
        !rollout.stderr.contains("wave 3/"),
        "no wave after the one over the share:\n{}",
        rollout.stderr
    );

    // ward-1 took 2.0.0 and proved it healthy: it keeps it. ward-2 and
    // ward-3 refused it and run 1.0.0, which they never left; ward-4 and
    // ward-5 were never asked.
    let running = |n: usize| {
        let (client, id) = (edges[n - 1].client.clone(), edges[n - 1].id.clone());
        async move { plugin(&crate::support::status_of(&client, &id).await, PLUGIN)["version"].clone() }
    };
    assert_eq!(running(1).await, "2.0.0");
    for n in 2..=5 {
        assert_eq!(running(n).await, "1.0.0", "ward-{n}");
    }
    for n in [2, 3] {
        let (desired, _) = site
            .operator
            .desired(&format!("device.ward-{n}"))
            .await
            .unwrap()
            .unwrap();
        assert!(
            !desired.plugins.contains_key(PLUGIN),
            "ward-{n}'s key is as before: {desired:?}"
        );
    }
    for n in [4, 5] {
        assert!(
            site.operator
                .desired(&format!("device.ward-{n}"))
                .await
                .unwrap()
                .is_none()
        );
    }
    let fleet = site.cli(&["fleet"]).await;
    // The fleet says which refused and why: in their row, or, once their
    // latest deployment is the group's again (which runs already), in a
    // `last failure` line.
    for n in [2, 3] {
        let said = fleet
            .stdout
            .lines()
            .filter(|l| {
                l.starts_with(&format!("ward-{n} ")) || l.starts_with(&format!("ward-{n}: {PLUGIN}: last failure"))
            })
            .any(|l| l.contains("refused") && l.contains("not in the trust store"));
        assert!(said, "ward-{n}:\n{}", fleet.stdout);
    }
    poll_until("ward-2 to follow its group again", WAIT, || async {
        let report = site.operator.report_of("ward-2").await.unwrap().unwrap();
        let deployment = report.plugins[PLUGIN].deployment.clone().unwrap();
        (deployment.key == "group.ward")
            .then_some(())
            .ok_or(format!("{report:#?}"))
    })
    .await;
    let fleet = site.cli(&["fleet", "--device", "ward-2"]).await;
    let note = fleet
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("ward-2: {PLUGIN}: last failure")))
        .unwrap_or_default();
    assert!(
        note.contains("refused of `device.ward-2`")
            && note.contains("(2.0.0)")
            && note.contains("not in the trust store"),
        "`{note}`\n{}",
        fleet.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_undeployed_plugin_is_stopped_and_reported_removed_and_a_restart_does_not_bring_it_back() {
    let (site, mut edge) = running_v1().await;
    let undeployed = site.cli(&["undeploy", PLUGIN, "--device", DEVICE]).await;
    assert_eq!(undeployed.code, Some(0), "{}", undeployed.stderr);
    let report = poll_until("the plugin reported removed", WAIT, || async {
        let report = report_now(&site.operator, DEVICE).await?;
        match report.plugins.get(PLUGIN).and_then(|p| p.deployment.as_ref()) {
            Some(d) if d.phase == Phase::Removed => Ok(report),
            _ => Err(format!("{report:#?}")),
        }
    })
    .await;
    assert_eq!(report.plugins[PLUGIN].running_version, "", "{report:#?}");
    assert!(!runs(&edge, PLUGIN).await);
    // Its ingest was stopped on purpose: no task "ended" is said (before,
    // the removal raised a critical `plugin-degraded`: "gets no readings").
    let log = edge.device.terminate_cleanly().await;
    assert!(!log.contains("ended before shutdown"), "{log}");
    edge.server.unlink().unwrap();
    edge.start().await;
    assert!(!runs(&edge, PLUGIN).await, "not in the healthy set any more");
}

/// The device's own settings of a plugin in its configuration file (here:
/// a gateway whose payloads name the sensors it carries) hold for the
/// versions the cloud deploys of it, after a restart too. A deployed version
/// used to start with none: from the next restart on, every reading of the
/// gateway was refused as `sensor-mismatch`, and its patients had no alert.
#[tokio::test(flavor = "multi_thread")]
async fn a_deployed_version_keeps_the_device_settings_of_the_configuration_file_after_a_restart() {
    let site = Site::start().await;
    let file = format!("[[plugins]]\nbundle = \"{PLUGIN}.wasm\"\npayload_sensors = [\"sensors.cgm.gateway.>\"]\n");
    let mut edge = Edge::new(&site, DEVICE, "100ms", "", &file).await;
    edge.start().await;
    let (report, deployment) = deploy(&site, &edge, &deploy_bundles().v1, &[]).await;
    assert_eq!(deployment.phase, Phase::Healthy, "{report:#?}");
    let mut alerts = edge
        .client
        .subscribe(format!("edgewise.{DEVICE}.alerts.{PLUGIN}"))
        .await
        .unwrap();
    for (when, bed) in [("deployed", "bed-7"), ("deployed, then restarted", "bed-8")] {
        let reading = format!(r#"{{"ts":{},"value":45,"unit":"mg/dL","sensor":"{bed}"}}"#, now_ms());
        edge.client
            .publish("sensors.cgm.gateway.ward-3", reading.into())
            .await
            .unwrap();
        let what = format!("[{when}] the urgent-low of {bed}, a sensor of the gateway");
        let alert = next_where(&mut alerts, &what, |_, alert| {
            alert["sensor"] == bed && alert["code"] == "urgent-low"
        })
        .await;
        assert_eq!(alert["version"], "1.0.0", "[{when}] {alert}");
        if bed == "bed-7" {
            edge.device.terminate_cleanly().await;
            edge.start().await;
        }
    }
    let status = host_status(&edge.client).await;
    assert_eq!(
        status["ingest"]["deadlettered"], 0,
        "no gateway reading refused: {status}"
    );
    edge.device.terminate_cleanly().await;
}

/// `[ingest]` of a device reading the `SENSORS` stream.
const JETSTREAM_INPUT: &str = "[ingest]\nsource = \"jetstream\"\nstream = \"SENSORS\"\n";

/// The alerts of [`PLUGIN`] on the device's local bus, from now on.
async fn plugin_alerts(edge: &Edge) -> async_nats::Subscriber {
    let alerts = edge
        .client
        .subscribe(format!("edgewise.{DEVICE}.alerts.{PLUGIN}"))
        .await
        .unwrap();
    edge.client.flush().await.unwrap();
    alerts
}

/// A reading of `value` mg/dL, now, as a sensor publishes it.
fn reading_now(value: u32) -> bytes::Bytes {
    format!(r#"{{"ts":{},"value":{value},"unit":"mg/dL"}}"#, now_ms()).into()
}

/// Publish `reading` of `sensors.{sensor}` on the device's local bus.
async fn publish_reading(edge: &Edge, sensor: &str, reading: bytes::Bytes) {
    edge.client.publish(format!("sensors.{sensor}"), reading).await.unwrap();
}

/// The filters of [`PLUGIN`]'s durable consumer on the `SENSORS` stream.
async fn consumer_filters(sensors: &async_nats::jetstream::Context) -> Vec<String> {
    let stream = sensors.get_stream("SENSORS").await.unwrap();
    let consumer = stream
        .consumer_info(format!("edgewise-{DEVICE}-{PLUGIN}"))
        .await
        .unwrap();
    consumer.config.filter_subjects.clone()
}

/// A new version that subscribes to other subjects reads them as soon as it
/// runs, without a restart of the host, and its deployment says so in the
/// cloud. Before, the subscriptions made at start stayed until the next
/// restart: the report said `healthy` while the new subjects' readings went
/// nowhere (and with JetStream input, nowhere after a restart either).
#[tokio::test(flavor = "multi_thread")]
async fn a_version_that_reads_other_subjects_reads_them_as_soon_as_it_runs() {
    reads_other_subjects_as_soon_as_it_runs(false).await;
}

/// The same with JetStream input: the plugin's durable consumer takes the
/// new version's filters, and its readings are delivered from the stream.
#[tokio::test(flavor = "multi_thread")]
async fn with_jetstream_input_a_version_that_reads_other_subjects_reads_them_as_soon_as_it_runs() {
    reads_other_subjects_as_soon_as_it_runs(true).await;
}

async fn reads_other_subjects_as_soon_as_it_runs(jetstream: bool) {
    let site = Site::start().await;
    let input = if jetstream { JETSTREAM_INPUT } else { "" };
    let mut edge = Edge::new(&site, DEVICE, "100ms", "", input).await;
    let sensors = async_nats::jetstream::new(edge.client.clone());
    if jetstream {
        create_sensors_stream(&sensors).await;
    }
    edge.start().await;
    let (report, deployment) = deploy(&site, &edge, &deploy_bundles().v1, &[]).await;
    assert_eq!(deployment.phase, Phase::Healthy, "{report:#?}");

    let wider = &deploy_bundles().other_subjects;
    let (report, deployment) = deploy(&site, &edge, wider, &[]).await;
    assert_eq!(deployment.phase, Phase::Healthy, "{report:#?}");
    let said = format!(
        "it reads {} in place of sensors.cgm.>",
        edgewise_tests::OTHER_SUBJECTS.join(", ")
    );
    let running = deployment.history.iter().find(|change| change.phase == Phase::Running);
    assert_eq!(
        running.and_then(|change| change.reason.as_deref()),
        Some(said.as_str()),
        "{report:#?}"
    );

    let mut alerts = plugin_alerts(&edge).await;
    for sensor in ["cgm2.bed-9", "cgm.bed-1"] {
        if jetstream {
            publish_acked(&sensors, format!("sensors.{sensor}"), reading_now(45)).await;
        } else {
            publish_reading(&edge, sensor, reading_now(45)).await;
        }
        let what = format!("the urgent-low of {sensor}");
        let alert = next_where(&mut alerts, &what, |_, alert| {
            alert["code"] == "urgent-low" && alert["sensor"] == sensor
        })
        .await;
        assert_eq!(alert["version"], wider.version, "{alert}");
    }
    if jetstream {
        assert_eq!(consumer_filters(&sensors).await, edgewise_tests::OTHER_SUBJECTS);
    }
    // The replaced ingest was stopped on purpose: no task "ended" is said.
    let log = edge.device.terminate_cleanly().await;
    assert!(!log.contains("ended before shutdown"), "{log}");
}

/// A new version's sensor rules apply as soon as it runs, and the sensors
/// the plugin monitors keep their places: under its `max_sensors` of 2, the
/// two heard from last are monitored still, and a sensor beyond them is
/// refused. Before, the rules made at start held until a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_with_fewer_sensor_places_applies_them_at_once_keeping_the_sensors_heard_from_last() {
    let (site, mut edge) = running_v1().await;
    for (k, bed) in ["cgm.bed-1", "cgm.bed-2", "cgm.bed-3"].into_iter().enumerate() {
        publish_reading(&edge, bed, reading_now(120)).await;
        // One at a time: their order is the order they were heard from.
        value_until(
            "the reading taken",
            WAIT,
            || host_status(&edge.client),
            |status| plugin(status, PLUGIN)["readings_in"].as_u64() == Some(k as u64 + 1),
        )
        .await;
    }
    let fewer = &deploy_bundles().two_sensor_places;
    let (report, deployment) = deploy(&site, &edge, fewer, &[]).await;
    assert_eq!(deployment.phase, Phase::Healthy, "{report:#?}");

    let mut alerts = plugin_alerts(&edge).await;
    // Those refused first: were they taken, their alerts would come first.
    for bed in ["cgm.bed-1", "cgm.bed-4", "cgm.bed-2", "cgm.bed-3"] {
        publish_reading(&edge, bed, reading_now(45)).await;
    }
    let seen = crate::support::collect_until(&mut alerts, "the urgent-lows of bed-2 and bed-3", |seen| {
        ["cgm.bed-2", "cgm.bed-3"].iter().all(|sensor| {
            seen.iter()
                .any(|(_, a)| a["sensor"] == *sensor && a["code"] == "urgent-low")
        })
    })
    .await;
    let refused = ["cgm.bed-1", "cgm.bed-4"];
    assert!(
        !seen
            .iter()
            .any(|(_, a)| refused.contains(&a["sensor"].as_str().unwrap_or(""))),
        "{seen:?}"
    );
    assert!(seen.iter().all(|(_, a)| a["version"] == fewer.version), "{seen:?}");
    let status = host_status(&edge.client).await;
    assert_eq!(
        status["ingest"]["deadletters_by_reason"]["too-many-sensors"].as_u64(),
        Some(2),
        "{status:#}"
    );
    edge.device.terminate_cleanly().await;
}

/// A version whose subscriptions overlap: the plugin's durable consumer
/// cannot be changed to read them (the server refuses overlapping filters).
/// A version that changes its input is judged with it: its probation does
/// not pass until the ingest reads the new subjects, and fails when the
/// ingest cannot (whatever time is left of it). So it is rolled back, why in
/// the reason, and the version restored reads its own subjects again: the
/// plugin is not left on a version that gets no readings, reported healthy.
/// New on the device, such a version fails (there is nothing to go back
/// to). The version deployed after it reads its own.
#[tokio::test(flavor = "multi_thread")]
async fn with_jetstream_input_a_version_whose_filters_the_server_refuses_is_rolled_back_and_the_old_one_reads_again() {
    a_version_whose_input_the_bus_refuses_is_rolled_back(Refusing::OverlappingFilters).await;
}

/// The same on core NATS, where the device's user may not subscribe to one
/// of the new version's subjects (`sensors.cgm2.>`): the server refuses the
/// subscription only after it was made (its `-ERR` on the connection, not an
/// answer to it), by when the ingest reads it. The probation judges such a
/// refusal whenever it comes during it. Before, the version was reported
/// healthy, its ingest taking nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_whose_subscription_the_server_refuses_is_rolled_back_and_the_old_one_reads_again() {
    a_version_whose_input_the_bus_refuses_is_rolled_back(Refusing::Permissions).await;
}

/// How the bus refuses a version's input.
enum Refusing {
    /// JetStream input: the durable consumer cannot take overlapping filters.
    OverlappingFilters,
    /// Core NATS input: the device's local user may not subscribe to
    /// `sensors.cgm2.>` ([`LOCAL_USERS`]).
    Permissions,
}

/// The local server's users when the device may not subscribe to
/// `sensors.cgm2.>`; the tests' own client (no login) may do anything.
const LOCAL_USERS: &str = r#"
authorization {
  users: [
    { user: tester, password: tester-secret }
    { user: dev-1, password: dev-1-local, permissions: { subscribe: { deny: ["sensors.cgm2.>"] } } }
  ]
}
no_auth_user: tester
"#;

async fn a_version_whose_input_the_bus_refuses_is_rolled_back(refusing: Refusing) {
    let site = Site::start().await;
    let bundles = deploy_bundles();
    // The edge, the version refused, and what the reason says when it is
    // new on the device and when it replaces another.
    let (mut edge, refused, new_why, swap_why) = match refusing {
        Refusing::OverlappingFilters => (
            Edge::new(&site, DEVICE, "100ms", "", JETSTREAM_INPUT).await,
            &bundles.overlapping_subjects,
            "JetStream consumer",
            "cannot change it to read the plugin's subscriptions",
        ),
        Refusing::Permissions => (
            Edge::with_local_users(&site, DEVICE, "", LOCAL_USERS, (DEVICE, "dev-1-local")).await,
            &bundles.other_subjects,
            "the local server refused the subscription to `sensors.cgm2.>`",
            "the local server refused the subscription to `sensors.cgm2.>`",
        ),
    };
    let jetstream = matches!(refusing, Refusing::OverlappingFilters);
    let sensors = async_nats::jetstream::new(edge.client.clone());
    if jetstream {
        create_sensors_stream(&sensors).await;
    }
    let client = edge.client.clone();
    let publish = |sensor: &'static str| {
        let (sensors, client) = (sensors.clone(), client.clone());
        async move {
            let subject = format!("sensors.{sensor}");
            match jetstream {
                true => drop(publish_acked(&sensors, subject, reading_now(45)).await),
                false => client.publish(subject, reading_now(45)).await.unwrap(),
            }
        }
    };
    edge.start().await;
    let (report, deployment) = deploy(&site, &edge, refused, &[]).await;
    assert_eq!(deployment.phase, Phase::Failed, "{report:#?}");
    let reason = deployment.reason.clone().unwrap_or_default();
    assert!(
        reason.contains("its input is lost") && reason.contains(new_why),
        "{reason}"
    );
    let (report, deployment) = deploy(&site, &edge, &bundles.v1, &[]).await;
    assert_eq!(deployment.phase, Phase::Healthy, "{report:#?}");

    let (report, deployment) = deploy(&site, &edge, refused, &[]).await;
    assert_eq!(deployment.phase, Phase::RolledBack, "{report:#?}");
    let reason = deployment.reason.clone().unwrap_or_default();
    assert!(reason.contains("its input") && reason.contains(swap_why), "{reason}");
    assert_eq!(
        report.plugins[PLUGIN].running_version, bundles.v1.version,
        "{report:#?}"
    );
    if jetstream {
        assert_eq!(consumer_filters(&sensors).await, ["sensors.cgm.>"]);
    }
    let mut alerts = plugin_alerts(&edge).await;
    publish("cgm.bed-1").await;
    let alert = next_where(&mut alerts, "the urgent-low of cgm.bed-1", |_, alert| {
        alert["code"] == "urgent-low"
    })
    .await;
    assert_eq!(alert["version"], bundles.v1.version, "{alert}");
    status_until(&edge.client, "glucose-monitor's input restored", |s| {
        plugin(s, PLUGIN)["state"] == "running"
    })
    .await;

    let (report, deployment) = deploy(&site, &edge, &bundles.v3, &[]).await;
    assert_eq!(deployment.phase, Phase::Healthy, "{report:#?}");
    publish("cgm.bed-2").await;
    let alert = next_where(&mut alerts, "the urgent-low of cgm.bed-2", |_, alert| {
        alert["code"] == "urgent-low" && alert["sensor"] == "cgm.bed-2"
    })
    .await;
    assert_eq!(alert["version"], bundles.v3.version, "{alert}");
    edge.device.terminate_cleanly().await;
}

/// A version reading other subjects that fails its probation takes them
/// with it: the version restored reads its own again, and only those.
#[tokio::test(flavor = "multi_thread")]
async fn a_version_rolled_back_takes_its_other_subjects_with_it() {
    let (site, mut edge) = running_v1().await;
    // Readings only the new version reads, until it has trapped: its third
    // batch of them traps, in each instance, and its probation fails.
    let publisher = edge.client.clone();
    let feeding = tokio::spawn(async move {
        // A reading every 50 ms: batches of their own, not one batch of all.
        let mut pace = tokio::time::interval(Duration::from_millis(50));
        for bed in 0.. {
            pace.tick().await;
            publisher
                .publish(format!("sensors.cgm2.bed-{}", bed % 4), reading_now(120))
                .await
                .unwrap();
        }
    });
    let trapping = &deploy_bundles().other_subjects_trapping;
    let (report, deployment) = deploy(&site, &edge, trapping, &[]).await;
    feeding.abort();
    assert_eq!(deployment.phase, Phase::RolledBack, "{report:#?}");
    let reason = deployment.reason.clone().unwrap_or_default();
    assert!(reason.contains("trap"), "`trap` not in `{reason}`");
    assert_eq!(report.plugins[PLUGIN].running_version, "1.0.0", "{report:#?}");

    let mut alerts = plugin_alerts(&edge).await;
    // The other subject first: were it still read, its alert would come first.
    for sensor in ["cgm2.bed-8", "cgm.bed-1"] {
        publish_reading(&edge, sensor, reading_now(45)).await;
    }
    let seen = crate::support::collect_until(&mut alerts, "cgm.bed-1's urgent-low", |seen| {
        seen.iter()
            .any(|(_, a)| a["sensor"] == "cgm.bed-1" && a["code"] == "urgent-low")
    })
    .await;
    assert!(!seen.iter().any(|(_, a)| a["sensor"] == "cgm2.bed-8"), "{seen:?}");
    assert!(seen.iter().all(|(_, a)| a["version"] == "1.0.0"), "{seen:?}");
    edge.device.terminate_cleanly().await;
}

/// Whether `edge`'s status lists `name`.
async fn runs(edge: &Edge, name: &str) -> bool {
    let status = host_status(&edge.client).await;
    let listed = status["plugins"].as_array().unwrap().iter().any(|p| p["name"] == name);
    eprintln!("{name} listed: {listed}; {status:#}");
    listed
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_push_is_not_tried_again_when_the_set_is_written_for_another_plugin_but_is_when_pushed_again() {
    let (site, edge) = running_v1().await;
    let bundles = deploy_bundles();
    let (_, failed) = deploy(&site, &edge, &bundles.fails_init, &[]).await;
    assert_eq!(failed.phase, Phase::RolledBack);

    // Another plugin pushed to the same key: a new generation of the set.
    let (generation, _) = push_threshold_until_healthy(&site, &edge).await;
    let report = site.operator.report_of(DEVICE).await.unwrap().unwrap();
    assert_eq!(
        report.plugins[PLUGIN].deployment.as_ref(),
        Some(&failed),
        "the failed push of glucose-monitor was not tried again"
    );
    assert_eq!(report.plugins[PLUGIN].running_version, "1.0.0");

    // Pushed again (the same bundle, a new push): tried again.
    let (_, again) = deploy(&site, &edge, &bundles.fails_init, &[]).await;
    assert_eq!(again.phase, Phase::RolledBack);
    assert!(again.generation > generation, "{again:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_purged_desired_set_does_not_take_the_plugins_away() {
    let (site, edge) = running_v1().await;
    // Whoever can write the bucket purges the device's key: no set at all
    // is not a set without the plugin.
    let client = async_nats::connect(site.cloud.url()).await.unwrap();
    let bucket = async_nats::jetstream::new(client)
        .get_key_value(model::DESIRED_BUCKET)
        .await
        .unwrap();
    bucket.purge(edge.key()).await.unwrap();
    let report = poll_until("the device to see its key gone", WAIT, || async {
        let report = site.operator.report_of(DEVICE).await.unwrap().unwrap();
        match &report.last_error {
            Some(error) if error.contains("no desired set") => Ok(report),
            _ => Err(format!("{report:#?}")),
        }
    })
    .await;
    assert!(!report.generations.contains_key(&edge.key()), "{report:#?}");
    assert!(runs(&edge, PLUGIN).await, "the plugin still runs");
    assert_eq!(report.plugins[PLUGIN].running_version, "1.0.0");
}

/// The cloud's users: an operator who may do anything, and a device whose
/// leaf connection may read the deployment buckets and write only its own
/// report and its upstream stream, as `docs/operators.md` says.
const AUTHORIZATION: &str = r#"
authorization {
  users: [
    { user: operator, password: operator-secret }
    { user: dev-1, password: dev-1-secret, permissions: {
        publish: {
          allow: [
            "$JS.cloud.API.INFO",
            "$JS.cloud.API.STREAM.INFO.>",
            "$JS.cloud.API.STREAM.MSG.GET.>",
            "$JS.cloud.API.DIRECT.GET.>",
            "$JS.cloud.API.CONSUMER.>",
            "$JS.cloud.API.STREAM.CREATE.EDGEWISE_UP",
            "$JS.cloud.API.$KV.edgewise-reported.device.dev-1",
            "$JS.FC.>", "$JS.ACK.>", "_INBOX.>",
            "edgewise.dev-1.>"
          ],
          deny: ["$JS.cloud.API.CONSUMER.DELETE.>"]
        }
    } }
  ]
}
"#;

#[tokio::test(flavor = "multi_thread")]
async fn under_the_documented_permissions_a_device_deploys_but_cannot_change_what_others_run() {
    let site = Site::with_authorization(AUTHORIZATION, ("operator", "operator-secret")).await;
    let mut edge = Edge::logged_in(&site, DEVICE, "100ms", "", "", Some((DEVICE, "dev-1-secret"))).await;
    edge.start().await;
    let (report, deployment) = deploy(&site, &edge, &deploy_bundles().v1, &[]).await;
    assert_eq!(deployment.phase, Phase::Healthy, "{report:#?}");
    let group = push(&site.operator, "group.ward", &deploy_bundles().v1.bytes(), &[]).await;

    // A compromised device (a client of its local server) tries the cloud's buckets.
    let thief = Cloud::new(edge.client.clone(), Some("cloud"));
    let empty = edgewise_host::deploy::Desired::default();
    let tries = [
        (
            "write a group's set",
            thief.write_desired("group.ward", &empty, Some(group)).await.err(),
        ),
        (
            "write its own set",
            thief.write_desired(&edge.key(), &empty, None).await.err(),
        ),
        ("store a bundle", thief.put_bundle(b"not a bundle").await.err()),
    ];
    for (what, error) in tries {
        assert!(error.is_some(), "a device could {what}");
    }
    let mut forged = report.clone();
    forged.device = "dev-2".to_owned();
    assert!(
        thief.report(&forged).await.is_err(),
        "a device could write another's report"
    );
    let js = async_nats::jetstream::with_domain(edge.client.clone(), "cloud");
    assert!(
        js.delete_stream(format!("KV_{}", model::DESIRED_BUCKET)).await.is_err(),
        "a device could delete the desired sets"
    );
    let purged = js.get_stream(format!("KV_{}", model::DESIRED_BUCKET)).await;
    if let Ok(stream) = purged {
        assert!(stream.purge().await.is_err(), "a device could purge the desired sets");
    }
    // Nothing changed in the cloud.
    assert_eq!(site.operator.desired("group.ward").await.unwrap().unwrap().1, group);
    assert!(site.operator.report_of("dev-2").await.unwrap().is_none());
    // And the device still works: its own report moves on.
    let seen = report.last_seen_ms;
    poll_until("the device's next report", WAIT, || async {
        let report = site.operator.report_of(DEVICE).await.unwrap().unwrap();
        (report.last_seen_ms > seen)
            .then_some(())
            .ok_or("no newer report".to_owned())
    })
    .await;
}

/// Push another plugin than [`PLUGIN`] (`threshold`, new on the device) to
/// `edge`: the new generation of its desired set.
pub(crate) async fn push_threshold(site: &Site, edge: &Edge) -> u64 {
    let threshold = std::fs::read(edgewise_tests::signed_bundle("threshold")).unwrap();
    site.operator
        .push_plugin(
            &edge.key(),
            "threshold",
            &threshold,
            "",
            Default::default(),
            "test",
            now_ms(),
        )
        .await
        .unwrap()
}

/// As [`push_threshold`], then wait until it is healthy: that generation,
/// and the report then.
pub(crate) async fn push_threshold_until_healthy(site: &Site, edge: &Edge) -> (u64, Reported) {
    let generation = push_threshold(site, edge).await;
    let report = poll_until("threshold healthy", WAIT, || async {
        let report = report_now(&site.operator, &edge.id).await?;
        match report.plugins.get("threshold").and_then(|p| p.deployment.as_ref()) {
            Some(d) if d.generation == generation && d.phase == Phase::Healthy => Ok(report),
            _ => Err(format!("{report:#?}")),
        }
    })
    .await;
    (generation, report)
}

pub(crate) async fn in_phase(cloud: &Cloud, device: &str, generation: u64, phase: Phase) -> Reported {
    let what = format!("generation {generation} {}", phase.name());
    deployment_where(cloud, device, &what, |d| d.generation == generation && d.phase == phase)
        .await
        .0
}

#[tokio::test(flavor = "multi_thread")]
async fn a_newer_push_supersedes_one_stuck_on_probation() {
    let site = Site::start().await;
    // A probation that would outlast the test: the first push never ends it.
    let mut edge = Edge::new(&site, DEVICE, "100ms", "probation = \"1h\"\n", "").await;
    edge.start().await;
    let bundles = deploy_bundles();
    let first = push(&site.operator, &edge.key(), &bundles.v1.bytes(), &[]).await;
    in_phase(&site.operator, DEVICE, first, Phase::Running).await;
    let second = push(&site.operator, &edge.key(), &bundles.v2.bytes(), &[]).await;
    let report = in_phase(&site.operator, DEVICE, second, Phase::Running).await;
    // Superseded is not a failure: the first push did not fail, a newer one
    // took its place. No failure is kept for it, and `fleet` shows none.
    assert_eq!(report.plugins[PLUGIN].last_failure, None, "{report:#?}");
    assert_eq!(plugin(&host_status(&edge.client).await, PLUGIN)["version"], "2.0.0");
    let fleet = site.cli(&["fleet", "--device", DEVICE]).await;
    assert_eq!(fleet.code, Some(0), "{}", fleet.stderr);
    assert!(
        !fleet.stdout.contains("rolled-back") && !fleet.stdout.contains("last failure"),
        "{}",
        fleet.stdout
    );
}

/// A plugin of the healthy set still compiling when the device restarts is
/// not compiled a second time by deployment, even for a push it has not
/// tried (the same bundle pushed again while the device was down): it joins
/// once compiled, and the next read of the desired sets finds it running
/// that push (`runs already`). Its compilation (band-py: seconds, and
/// uncached) is held with SIGSTOP until the device has read the new
/// generation, so the order is the same on any machine.
#[tokio::test(flavor = "multi_thread")]
async fn a_healthy_plugin_compiling_at_start_up_is_not_deployed_a_second_time() {
    let site = Site::start().await;
    let mut edge = Edge::new(&site, DEVICE, "100ms", "", "[compile]\nstart_wait = \"0s\"\n").await;
    edge.start().await;
    let bundle = edgewise_tests::run_key()
        .bundle(
            &edgewise_tests::plugin_manifest("band-py"),
            &edgewise_tests::plugin_wasm("band-py"),
        )
        .unwrap();
    let bytes = std::fs::read(bundle).unwrap();
    let key = edge.key();
    let push_band_py = || async {
        site.operator
            .push_plugin(&key, "band-py", &bytes, "", Default::default(), "test", now_ms())
            .await
            .unwrap()
    };
    let band_py = |generation: u64, what: &'static str| {
        let operator = &site.operator;
        async move {
            poll_until(what, WAIT * 3, || async {
                let report = report_now(operator, DEVICE).await?;
                match report.plugins.get("band-py").and_then(|p| p.deployment.clone()) {
                    Some(d) if d.generation == generation && d.phase.is_final() => Ok(d),
                    _ => Err(format!("{report:#?}")),
                }
            })
            .await
        }
    };
    let first = push_band_py().await;
    let deployed = band_py(first, "band-py's first push settled").await;
    assert_eq!(deployed.phase, Phase::Healthy, "{deployed:#?}");

    // Down, its compiled code gone (a host upgrade), pushed again meanwhile.
    edge.device.terminate_cleanly().await;
    std::fs::remove_dir_all(edge.device.path("data/cache")).unwrap();
    let again = push_band_py().await;
    edge.device.spawn();
    let compiler = crate::safety_compile::band_py_compiler(edge.device.pid()).await;
    let _cleanup = crate::safety_compile::KillOnDrop(compiler);
    edgewise_procs::child::sigstop(compiler).unwrap();
    let status = edge.device.wait_answering(&edge.client, WAIT * 3).await;
    assert_eq!(plugin(&status, "band-py")["state"], "compiling", "{status:#}");
    poll_until("the device read the second push", WAIT, || async {
        let report = report_now(&site.operator, DEVICE).await?;
        match report.generations.get(&key) {
            Some(&generation) if generation == again => Ok(()),
            _ => Err(format!("{report:#?}")),
        }
    })
    .await;

    edgewise_procs::child::sigcont(compiler).unwrap();
    let settled = band_py(again, "band-py's second push settled").await;
    assert_eq!(settled.phase, Phase::Healthy, "{settled:#?}");
    assert_eq!(settled.reason.as_deref(), Some("runs already"), "{settled:#?}");
    // Joined once compiled: its `init` may still be under way.
    status_until(&edge.client, "band-py running", |status| {
        plugin(status, "band-py")["state"] == "running"
    })
    .await;
}

/// A plugin undeployed while a new version of it is on probation is
/// removed, and that probation is forgotten with it: no bundle of it is
/// kept (before, both versions' stayed until some later deployment was
/// healthy), and a later push that fails has nothing to roll back to (the
/// undeployed 1.0.0 is not brought back).
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_undeployed_during_a_probation_stays_removed_when_a_later_push_fails() {
    let (site, mut edge) = running_v1().await;
    // Restarted with a probation that outlasts the test.
    edge.device.terminate_cleanly().await;
    edge.device
        .edit_config(|config| config.replace("probation = \"1s\"", "probation = \"1h\""));
    edge.start().await;
    let bundles = deploy_bundles();
    let second = push(&site.operator, &edge.key(), &bundles.v2.bytes(), &[]).await;
    in_phase(&site.operator, DEVICE, second, Phase::Running).await;

    let undeployed = site.cli(&["undeploy", PLUGIN, "--device", DEVICE]).await;
    assert_eq!(undeployed.code, Some(0), "{}", undeployed.stderr);
    deployment_where(&site.operator, DEVICE, "the plugin removed", |d| {
        d.phase == Phase::Removed
    })
    .await;
    assert!(!runs(&edge, PLUGIN).await);
    assert_eq!(kept_bundles(&edge), Vec::<std::ffi::OsString>::new());

    let (report, failed) = deploy(&site, &edge, &bundles.fails_init, &[]).await;
    assert_eq!(failed.phase, Phase::Failed, "nothing to roll back to: {report:#?}");
    assert_eq!(report.plugins[PLUGIN].running_version, "", "{report:#?}");
    assert!(!runs(&edge, PLUGIN).await, "the undeployed 1.0.0 is not brought back");
}
