//! Deployment on the device: it follows its desired plugin set (its groups'
//! sets, then its own) in the cloud's buckets, through its local bus (a leaf
//! node of the cloud's server), and reports each deployment's phases.
//!
//! Per plugin whose desired bundle or configuration is not what runs, and
//! whose generation was not tried yet: fetch (size cap, digest), keep the
//! bundle on the device, verify it here (signature, trust, anti-rollback:
//! whatever the cloud says), compile, then add the plugin or swap it in its
//! worker (`worker::Swap`: started from the old instance's state, switched
//! between two inputs of its queue). The worker reports `running`, then
//! `healthy` after the probation or `rolled-back` (`failed` for a plugin
//! new on the device). A healthy set is written to the device
//! (`deploy/healthy.json`), what a restart runs without the network. A plugin
//! deployed before and no longer desired is removed, unless it overrides a
//! plugin of the configuration file: then the file's version is swapped back
//! in if anti-rollback accepts it, else the deployed one is kept (see
//! [`Controller::keep`]). The desired sets are
//! watched, and read again every `resync` (a watch can miss changes across
//! reconnects); only the latest generation of each is applied, and a newer
//! one supersedes one on probation.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, mpsc, watch};

use super::config::{DeployConfig, PluginConfig};
use super::plugins::Plugins;
use super::serve::TaskError;
use super::start::{InputRules, Loader, Prepared};
use crate::bus::ingest::IngestHealth;
use crate::deploy::model::{self, Deployment, Desired, DesiredPlugin, Origin, Phase, Reported, ReportedPlugin};
use crate::deploy::{Cloud, CloudError};
use crate::files::{Access, Existing, write_atomic};
use crate::outbox::wall_ms;
use crate::worker::{Accept, DeployEvent, InputCheck, Outcome, ProbationSetup, Swap, Work};

/// How long fetching one bundle may take before the attempt is given up (and
/// tried again at the next read of the desired sets).
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// What a deployed plugin runs: its bundle (object name) and configuration.
type Running = (String, BTreeMap<String, String>);

/// The device's own deployment files, under `<data_dir>/deploy/`.
#[derive(Clone)]
struct Store {
    dir: PathBuf,
    /// Held over each change of the healthy set: the controller and the
    /// workers (a version healthy after its probation) both change it.
    healthy_lock: Arc<Mutex<()>>,
}

/// One plugin of the last healthy set.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Healthy {
    bundle: String,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

impl Store {
    fn new(data_dir: &Path) -> Store {
        Store {
            dir: data_dir.join("deploy"),
            healthy_lock: Arc::new(Mutex::new(())),
        }
    }

    fn bundle_path(&self, bundle: &str) -> PathBuf {
        self.dir.join("bundles").join(format!("{bundle}.ewb"))
    }

    fn healthy(&self) -> BTreeMap<String, Healthy> {
        std::fs::read(self.dir.join("healthy.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    fn write(&self, name: &str, bytes: &[u8]) -> std::io::Result<()> {
        crate::files::private_dir(&self.dir)?;
        write_atomic(&self.dir.join(name), bytes, Access::Private, Existing::Replace)
    }

    fn save_healthy(&self, healthy: &BTreeMap<String, Healthy>) -> std::io::Result<()> {
        self.write("healthy.json", &serde_json::to_vec_pretty(healthy).unwrap_or_default())
    }

    /// Change the healthy set with `change` (it says whether it changed
    /// anything), atomically and durably, one change at a time.
    fn change_healthy(&self, change: impl FnOnce(&mut BTreeMap<String, Healthy>) -> bool) -> std::io::Result<()> {
        let _held = self
            .healthy_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut healthy = self.healthy();
        if change(&mut healthy) {
            self.save_healthy(&healthy)?;
        }
        Ok(())
    }

    fn keep_bundle(&self, bundle: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
        crate::files::private_dir(&self.dir.join("bundles"))?;
        let path = self.bundle_path(bundle);
        write_atomic(&path, bytes, Access::Private, Existing::Replace)?;
        Ok(path)
    }

    /// The report as last written (what was tried, across restarts).
    fn report(&self) -> Option<Reported> {
        let bytes = std::fs::read(self.dir.join("report.json")).ok()?;
        Reported::parse(&bytes).ok()
    }

    /// Remove kept bundles that are in none of `keep`.
    fn prune(&self, keep: &[&str]) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("bundles")) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let bundle = name.strip_suffix(".ewb").unwrap_or(&name);
            if !keep.contains(&bundle) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// The last healthy deployed set, as plugins to start (a restart, with or
/// without the network), each with its bundle's object name; `configured`
/// gives each the device's own settings ([`deployed_plugin`]).
pub(super) fn healthy_plugins(
    data_dir: &Path,
    configured: &BTreeMap<String, PluginConfig>,
) -> Vec<(PluginConfig, String)> {
    let store = Store::new(data_dir);
    store
        .healthy()
        .into_iter()
        .map(|(name, healthy)| {
            let bundle = store.bundle_path(&healthy.bundle);
            let plugin = deployed_plugin(bundle, healthy.config, configured.get(&name));
            (plugin, healthy.bundle)
        })
        .collect()
}

/// The plugin to run for a deployed `bundle` with the cloud's `config`.
/// Its device settings (the subscriptions, the limits, and the gateways
/// whose payloads may name their sensors) are those of `file`, the
/// configuration file's plugin of the same name, if there is one: where a
/// device's readings come from and what it can spare are the device's, and
/// a new version from the cloud must not lose them. Without them a site's
/// gateway readings would be refused (`sensor-mismatch`) from the next
/// restart on, and no alert would come for its patients.
pub(super) fn deployed_plugin(
    bundle: PathBuf,
    config: BTreeMap<String, String>,
    file: Option<&PluginConfig>,
) -> PluginConfig {
    PluginConfig {
        bundle,
        config,
        subscriptions: file.and_then(|file| file.subscriptions.clone()),
        limits: file.map(|file| file.limits.clone()).unwrap_or_default(),
        payload_sensors: file.map(|file| file.payload_sensors.clone()).unwrap_or_default(),
    }
}

/// What a worker runs once a deployed version of `plugin` passed its
/// probation: the healthy set names `running` first, durably, and only then
/// is the version recorded for anti-rollback (`record`). The other order
/// could leave a device that crashes in between with a healthy set that
/// anti-rollback refuses, and so with nothing running at the next start (the
/// deployment loop, which used to write the healthy set when it heard of the
/// outcome, can be held up for a minute by a slow cloud). A crash between
/// the two writes restarts the new version, which anti-rollback accepts (it
/// is higher, or the same); if the healthy set cannot be written, the version
/// is not recorded, so the previous one, which a restart runs, is not
/// refused.
fn healthy_first(store: Store, plugin: &str, running: &Running, record: Option<Accept>) -> Accept {
    let plugin = plugin.to_owned();
    let healthy = Healthy {
        bundle: running.0.clone(),
        config: running.1.clone(),
    };
    Box::new(move || {
        store.change_healthy(|set| {
            set.insert(plugin, healthy);
            true
        })?;
        match record {
            Some(record) => record(),
            None => Ok(()),
        }
    })
}

/// What a worker runs once the configuration file's version of `plugin`,
/// swapped back in place of a deployed one no longer desired, passed its
/// probation: the healthy set no longer names the plugin (a restart runs the
/// file's), durably, and only then is the version recorded for anti-rollback
/// (`record`), the order of [`healthy_first`]: a crash in between restarts the
/// file's version, which anti-rollback accepted already.
fn file_first(store: Store, plugin: &str, record: Option<Accept>) -> Accept {
    let plugin = plugin.to_owned();
    Box::new(move || {
        store.change_healthy(|set| set.remove(&plugin).is_some())?;
        match record {
            Some(record) => record(),
            None => Ok(()),
        }
    })
}

/// A deployment handed to a worker, until its outcome.
struct Pending {
    plugin: String,
    /// Its record, entering the phases the worker tells.
    deployment: Deployment,
    /// What it runs; `None`: the configuration file's version, back in
    /// place of a deployed one no longer desired.
    new: Option<Running>,
    /// What ran before (`None`: the plugin is new on the device).
    previous: Option<Option<Running>>,
    /// Said with its `running` and `healthy` phases: the new version reads
    /// other subjects.
    note: Option<String>,
    /// For a swap: what the ingest reads and lets in for the new version,
    /// and for the version a rollback goes back to.
    input: Option<SwappedInput>,
}

/// What the ingest of a swapped plugin follows: `new` once the new version
/// runs, `previous` when it is rolled back (or superseded).
#[derive(Clone)]
struct SwappedInput {
    new: InputRules,
    previous: InputRules,
}

/// What a deployment of `plugin` says when its new version reads other
/// subjects than the one running (`None` when they are the same): its
/// ingest reads them from when it runs ([`Plugins::rewire`]).
fn subscriptions_note(plugin: &str, running: &[String], new: &[String]) -> Option<String> {
    if running == new {
        return None;
    }
    tracing::info!(
        plugin,
        running = %running.join(", "),
        new = %new.join(", "),
        "The new version subscribes to other subjects: its input follows when it runs"
    );
    Some(format!(
        "it reads {} in place of {}",
        new.join(", "),
        running.join(", ")
    ))
}

/// The device's side of deployment.
struct Controller {
    /// The generations of `report`, shown by the metrics endpoint.
    generations: Arc<Mutex<BTreeMap<String, u64>>>,
    settings: DeployConfig,
    loader: Arc<Loader>,
    plugins: Arc<Plugins>,
    cloud: Cloud,
    store: Store,
    report: Reported,
    events: mpsc::UnboundedSender<DeployEvent>,
    next_id: u64,
    pending: BTreeMap<u64, Pending>,
    /// The report changed since it was last written.
    dirty: bool,
    /// Told of each change of the desired sets (by the watch).
    changed: Arc<Notify>,
    /// An attempt gave way to a change of the desired sets: read them again.
    interrupted: bool,
    /// What the report on the device says of the plugins (serialized), as
    /// last written.
    kept: Option<Vec<u8>>,
    /// Plugins whose configuration-file version was checked in this run
    /// because a deployed version overriding it is no longer desired
    /// ([`Controller::keep`]).
    files_checked: BTreeSet<String>,
}

/// Follow the desired sets until `stop`.
pub(super) async fn run_deploy(
    settings: DeployConfig,
    loader: super::start::Loader,
    plugins: Arc<Plugins>,
    local: async_nats::Client,
    generations: Arc<Mutex<BTreeMap<String, u64>>>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), TaskError> {
    let device = loader.config.device.clone();
    let store = Store::new(&loader.config.data_dir);
    let mut report = store.report().unwrap_or_default();
    report.device.clone_from(&device);
    report.groups.clone_from(&settings.groups);
    report.host_version = env!("CARGO_PKG_VERSION").to_owned();
    // A deployment the device was in the middle of when it stopped is over:
    // it restarted on its last healthy set (retried only by a new generation).
    // One that passed its probation just before (the worker wrote the
    // healthy set, the report had not caught up) runs: healthy.
    let healthy = store.healthy();
    for (name, plugin) in &mut report.plugins {
        if let Some(deployment) = plugin.deployment.as_mut()
            && !deployment.phase.is_final()
        {
            let (phase, reason) = match healthy.get(name) {
                // Back to the configuration file's version: the healthy
                // set no longer names the plugin once it passed.
                None if deployment.bundle.is_empty() => (
                    Phase::Removed,
                    "undeployed: the configuration file's version passed its probation as the device stopped; it runs",
                ),
                Some(kept) if kept.bundle == deployment.bundle => (
                    Phase::Healthy,
                    "passed its probation as the device stopped; it runs from the healthy set",
                ),
                _ => (
                    Phase::Failed,
                    "the device restarted during this deployment; it runs its last healthy set",
                ),
            };
            deployment.enter(phase, Some(reason.to_owned()), wall_ms());
        }
    }
    let (events, mut outcomes) = mpsc::unbounded_channel();
    let changed = Arc::new(Notify::new());
    if let Ok(mut shown) = generations.lock() {
        shown.clone_from(&report.generations);
    }
    let mut controller = Controller {
        generations,
        changed: changed.clone(),
        interrupted: false,
        kept: None,
        files_checked: BTreeSet::new(),
        cloud: Cloud::new(local, settings.domain.as_deref()),
        settings,
        loader: Arc::new(loader),
        plugins,
        store,
        report,
        events,
        next_id: 1,
        pending: BTreeMap::new(),
        dirty: true,
    };
    let keys: Vec<String> = controller
        .settings
        .groups
        .iter()
        .map(|group| model::group_key(group))
        .chain(std::iter::once(model::device_key(&device)))
        .collect();
    let mut resync = tokio::time::interval(controller.settings.resync);
    let mut heartbeat = tokio::time::interval(controller.settings.report_every);
    tokio::spawn(watch_keys(
        controller.cloud.clone(),
        keys.clone(),
        changed.clone(),
        controller.settings.resync,
        stop.clone(),
    ));
    let mut sync = true;
    loop {
        if sync {
            controller.sync(&keys).await;
            // An attempt that gave way to a change: read the sets again.
            sync = std::mem::take(&mut controller.interrupted);
        }
        if controller.dirty {
            controller.publish().await;
        }
        if sync {
            continue;
        }
        tokio::select! {
            _ = stop.changed() => return Ok(()),
            Some(event) = outcomes.recv() => controller.outcome(event).await,
            () = changed.notified() => sync = true,
            _ = resync.tick() => sync = true,
            _ = heartbeat.tick() => controller.dirty = true,
        }
    }
}

/// Watch the desired `keys` and tell `changed` of each change, until `stop`;
/// a watch that ends or cannot be made (offline) is made again after `retry`.
async fn watch_keys(
    cloud: Cloud,
    keys: Vec<String>,
    changed: Arc<Notify>,
    retry: Duration,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let made = tokio::time::timeout(crate::deploy::cloud::REQUEST_TIMEOUT, cloud.watch_desired(keys.clone())).await;
        if let Ok(Ok(mut watching)) = made {
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    entry = watching.next() => match entry {
                        Some(Ok(_)) => changed.notify_one(),
                        _ => break,
                    },
                }
            }
        }
        tokio::select! {
            _ = stop.changed() => return,
            () = tokio::time::sleep(retry) => {}
        }
    }
}

impl Controller {
    /// Read the desired sets and apply what differs from what runs.
    async fn sync(&mut self, keys: &[String]) {
        let mut layers = Vec::new();
        for key in keys {
            let read = tokio::time::timeout(crate::deploy::cloud::REQUEST_TIMEOUT, self.cloud.desired(key)).await;
            match read {
                Ok(Ok(Some((desired, generation)))) => {
                    self.report.generations.insert(key.clone(), generation);
                    let origin = Origin {
                        key: key.clone(),
                        generation,
                    };
                    layers.push((origin, desired));
                }
                Ok(Ok(None)) => {
                    self.report.generations.remove(key);
                }
                Ok(Err(error)) => {
                    return self.trouble(format!("cannot read the desired sets: {}", crate::error_chain(&error)));
                }
                Err(_) => return self.trouble("cannot read the desired sets: no answer".to_owned()),
            }
        }
        if let Ok(mut shown) = self.generations.lock() {
            shown.clone_from(&self.report.generations);
        }
        if self.report.last_error.take().is_some() {
            self.dirty = true;
        }
        if layers.is_empty() {
            // No desired set under any key the device follows (never written,
            // or deleted or purged): what runs stays. Taking plugins away is
            // a set written without them (`edgewise undeploy`), never the
            // absence of one: a purged bucket cannot silence a fleet.
            if self
                .plugins
                .names()
                .iter()
                .any(|name| matches!(self.plugins.deployed(name), Some(Some(_))))
            {
                self.trouble(
                    "no desired set under any of the device's keys: its deployed plugins keep running".to_owned(),
                );
            }
            return;
        }
        let desired = model::effective(&layers);
        for (name, (origin, plugin)) in &desired {
            self.reconcile(name, origin, plugin).await;
        }
        // Deployed plugins no longer desired are removed; those of the
        // configuration file stay, and so does a deployed version that
        // overrides one (`keep`).
        for name in self.plugins.names() {
            if !desired.contains_key(&name) && matches!(self.plugins.deployed(&name), Some(Some(_))) {
                match self.loader.configured.contains_key(&name) {
                    true => self.keep(&name, &layers).await,
                    false => self.remove(&name, &layers).await,
                }
            }
        }
    }

    /// A problem reaching the cloud: reported (when it can be), retried at
    /// the next read.
    fn trouble(&mut self, error: String) {
        tracing::warn!(%error, "Deployment");
        if self.report.last_error.as_ref() != Some(&error) {
            self.report.last_error = Some(error);
            self.dirty = true;
        }
    }

    /// The report's record of `plugin`.
    fn reported(&mut self, plugin: &str) -> &mut ReportedPlugin {
        self.report.plugins.entry(plugin.to_owned()).or_default()
    }

    /// Make `plugin` run what `desired` says, if it does not and this
    /// generation was not tried.
    async fn reconcile(&mut self, name: &str, origin: &Origin, desired: &DesiredPlugin) {
        let running = self.plugins.deployed(name);
        let wanted: Running = (desired.bundle.clone(), desired.config.clone());
        // The same push is tried once, whatever later writes of the set (for
        // other plugins) did to its generation.
        let tried = self
            .report
            .plugins
            .get(name)
            .and_then(|p| p.deployment.as_ref())
            .filter(|d| d.is_of(&origin.key, desired));
        let on_probation = self.pending.values().any(|pending| pending.plugin == name);
        if self.plugins.compiling(name) == Some(Some(wanted.clone())) {
            // Compiling since start-up (the healthy set): it joins, or is
            // refused, without a second compilation of the same code; the
            // next read of the desired sets sees what came of it.
            return;
        }
        if running == Some(Some(wanted.clone())) {
            // Runs already (pushed again, a restart): healthy, unless a
            // probation is on (its outcome says).
            if tried.is_none() && !on_probation {
                let mut deployment = Deployment::new(origin, desired, wall_ms());
                deployment.enter(Phase::Healthy, Some("runs already".to_owned()), wall_ms());
                self.reported(name).deployment = Some(deployment);
                self.dirty = true;
            }
            return;
        }
        // A push is tried once; one still `received` (its fetch failed: the
        // network) is tried again.
        if tried.is_some_and(|d| d.phase != Phase::Received) {
            return;
        }
        let mut deployment = Deployment::new(origin, desired, wall_ms());
        tracing::info!(plugin = name, key = %origin.key, generation = origin.generation, bundle = %desired.bundle, "Deployment received");
        // A fetch gives way to a change of the desired sets (a newer
        // generation supersedes one stuck on a slow link).
        let (cloud, changed) = (self.cloud.clone(), self.changed.clone());
        let fetch = tokio::time::timeout(
            FETCH_TIMEOUT,
            cloud.fetch_bundle(&desired.bundle, self.settings.max_bundle_bytes),
        );
        let fetched = tokio::select! {
            fetched = fetch => fetched,
            () = changed.notified() => {
                deployment.reason = Some("fetching: interrupted by a change of the desired sets".to_owned());
                self.reported(name).deployment = Some(deployment);
                self.dirty = true;
                self.interrupted = true;
                return;
            }
        };
        let bytes = match fetched {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(error @ CloudError::Bundle { .. })) => {
                return self.finish(name, deployment, Phase::Refused, crate::error_chain(&error));
            }
            Ok(Err(error)) => {
                deployment.reason = Some(format!("fetching: {}", crate::error_chain(&error)));
                self.reported(name).deployment = Some(deployment);
                self.dirty = true;
                return;
            }
            Err(_) => {
                deployment.reason = Some("fetching: no answer in time".to_owned());
                self.reported(name).deployment = Some(deployment);
                self.dirty = true;
                return;
            }
        };
        let path = match self.store.keep_bundle(&desired.bundle, &bytes) {
            Ok(path) => path,
            Err(error) => {
                return self.finish(
                    name,
                    deployment,
                    Phase::Failed,
                    format!("cannot keep the bundle on the device: {error}"),
                );
            }
        };
        let plugin = deployed_plugin(path, desired.config.clone(), self.loader.configured.get(name));
        let Some((mut prepared, mut deployment)) = self.prepare_off_thread(name, deployment, plugin).await else {
            return;
        };
        if prepared.setup.provenance.plugin != name {
            let reason = format!(
                "the bundle is plugin `{}`, not `{name}`",
                prepared.setup.provenance.plugin
            );
            return self.finish(name, deployment, Phase::Refused, reason);
        }
        deployment.version.clone_from(&prepared.setup.provenance.version);
        self.verified(name, &mut deployment, None).await;

        let accept = healthy_first(self.store.clone(), name, &wanted, prepared.setup.accept.take());
        let mut probation = self.new_probation(accept);
        let id = probation.id;
        let previous = self.rollback_target(name, running);
        let mut pending = Pending {
            plugin: name.to_owned(),
            deployment: deployment.clone(),
            new: Some(wanted.clone()),
            previous,
            note: None,
            input: None,
        };
        // Held until the plugin is added: a plugin compiled after start-up
        // may be added meanwhile.
        let plugins = self.plugins.clone();
        let changing = plugins.changing().await;
        match self.plugins.get(name) {
            None => {
                // Its input is judged with it, as a swap's that changes it.
                let health = Arc::new(IngestHealth::default());
                probation.input = Some(InputCheck::new(health.clone(), prepared.input.subscriptions.clone()));
                prepared.setup.probation = Some(probation);
                prepared.deployed = Some(wanted);
                let started = match self.loader.start(prepared) {
                    Ok(started) => started,
                    Err(error) => return self.finish(name, deployment, Phase::Failed, crate::error_chain(&error)),
                };
                if let Err(error) = self.plugins.add(started, health).await {
                    return self.finish(name, deployment, Phase::Failed, crate::error_chain(&error));
                }
            }
            Some((queue, running)) => {
                // A swap adds nothing (and may wait on a full queue).
                drop(changing);
                pending.note = subscriptions_note(name, &running.subscriptions, &prepared.input.subscriptions);
                let input = SwappedInput {
                    new: prepared.input.clone(),
                    previous: self.rollback_input(name, running.clone()),
                };
                probation.input = self.input_check(name, &running, &input);
                pending.input = Some(input);
                let swap = Swap {
                    setup: prepared.setup,
                    probation,
                };
                if queue.send(Work::Swap(Box::new(swap))).await.is_err() {
                    return self.finish(
                        name,
                        deployment,
                        Phase::Failed,
                        "the plugin's worker has stopped".to_owned(),
                    );
                }
            }
        }
        self.pending.insert(id, pending);
    }

    /// `deployment` of `plugin` verified (with `note`): recorded in the report
    /// and published before the plugin is started or swapped.
    async fn verified(&mut self, plugin: &str, deployment: &mut Deployment, note: Option<String>) {
        deployment.enter(Phase::Verified, note, wall_ms());
        self.reported(plugin).deployment = Some(deployment.clone());
        self.dirty = true;
        self.publish().await;
    }

    /// A new probation, with the next id; `accept` records the version once
    /// it is healthy.
    fn new_probation(&mut self, accept: Accept) -> ProbationSetup {
        let id = self.next_id;
        self.next_id += 1;
        ProbationSetup {
            id,
            length: self.settings.probation,
            events: self.events.clone(),
            accept: Some(accept),
            input: None,
        }
    }

    /// What the probation of a new version of `plugin` checks of its input
    /// ([`InputCheck`]): when it reads other subjects than the ingest reads
    /// now (`running`), or than the version a rollback goes back to (the
    /// ingest changes to them meanwhile), the ingest must read them.
    fn input_check(&self, plugin: &str, running: &InputRules, input: &SwappedInput) -> Option<InputCheck> {
        let new = &input.new.subscriptions;
        if *new == running.subscriptions && *new == input.previous.subscriptions {
            return None;
        }
        Some(InputCheck::new(self.plugins.input_health(plugin)?, new.clone()))
    }

    /// What a rollback of a new version of `plugin` goes back to, given what
    /// `running` now: while an earlier deployment of the plugin is still on
    /// probation, what that one would go back to (the worker keeps the last
    /// healthy version when a newer push supersedes one on probation), never
    /// the unproven version that runs now.
    fn rollback_target(&self, plugin: &str, running: Option<Option<Running>>) -> Option<Option<Running>> {
        self.pending
            .values()
            .find(|pending| pending.plugin == plugin)
            .map_or(running, |pending| pending.previous.clone())
    }

    /// What the ingest of `plugin` goes back to with a rollback of a new
    /// version, given what it follows now (`running`): as
    /// [`Controller::rollback_target`], that of the version to go back to.
    fn rollback_input(&self, plugin: &str, running: InputRules) -> InputRules {
        self.pending
            .values()
            .find(|pending| pending.plugin == plugin)
            .and_then(|pending| pending.input.as_ref())
            .map_or(running, |input| input.previous.clone())
    }

    /// Verify and load `plugin` off the async threads (it reads and compiles).
    /// A refusal, or a panic while loading, finishes `deployment` (refused,
    /// failed): then `None`.
    async fn prepare_off_thread(
        &mut self,
        name: &str,
        deployment: Deployment,
        plugin: PluginConfig,
    ) -> Option<(Prepared, Deployment)> {
        let loader = self.loader.clone();
        match tokio::task::spawn_blocking(move || loader.prepare(&plugin)).await {
            Ok(Ok(prepared)) => Some((prepared, deployment)),
            Ok(Err(refused)) => {
                self.finish(name, deployment, Phase::Refused, refused.reason.to_string());
                None
            }
            Err(error) => {
                self.finish(name, deployment, Phase::Failed, format!("loading panicked: {error}"));
                None
            }
        }
    }

    /// Remove the kept bundles neither the healthy set nor a deployment on
    /// probation uses: those of versions replaced, rolled back, refused or
    /// failed (a cloud pushing refused bundles must not fill the disk).
    fn prune_bundles(&self) {
        let healthy = self.store.healthy();
        let keep: Vec<&str> = healthy
            .values()
            .map(|h| h.bundle.as_str())
            .chain(
                self.pending
                    .values()
                    .filter_map(|p| p.new.as_ref().map(|new| new.0.as_str())),
            )
            .collect();
        self.store.prune(&keep);
    }

    /// End `deployment` of `plugin` in `phase`, with `reason`.
    fn finish(&mut self, plugin: &str, mut deployment: Deployment, phase: Phase, reason: String) {
        tracing::error!(plugin, %reason, phase = phase.name(), "Deployment did not apply");
        deployment.enter(phase, Some(reason), wall_ms());
        let record = self.reported(plugin);
        if phase.is_failure() {
            record.last_failure = Some(deployment.clone());
        }
        record.deployment = Some(deployment);
        self.dirty = true;
        self.prune_bundles();
    }

    /// What a worker said of a deployment.
    async fn outcome(&mut self, event: DeployEvent) {
        let (phase, reason) = match &event.outcome {
            Outcome::Running { note, .. } => (Phase::Running, note.clone()),
            Outcome::Healthy => (Phase::Healthy, None),
            Outcome::RolledBack(reason) => (Phase::RolledBack, Some(reason.clone())),
            Outcome::Failed(reason) => (Phase::Failed, Some(reason.clone())),
            Outcome::Superseded => return self.superseded(event.id),
        };
        let Some(pending) = self.pending.get_mut(&event.id) else {
            return;
        };
        // Back to the configuration file's version: the deployed one is
        // removed once the file's passed its probation.
        let (phase, reason) = match (&event.outcome, &pending.new) {
            (Outcome::Healthy, None) => (
                Phase::Removed,
                Some(format!(
                    "undeployed: the configuration file's {} runs in its place",
                    pending.deployment.version
                )),
            ),
            _ => (phase, reason),
        };
        // The ingest follows the version that runs from now on.
        match (&event.outcome, &pending.input) {
            (Outcome::Running { .. }, Some(input)) => self.plugins.rewire(&pending.plugin, &input.new),
            (Outcome::RolledBack(_), Some(input)) => self.plugins.rewire(&pending.plugin, &input.previous),
            _ => {}
        }
        let reason = match (phase, &pending.note) {
            (Phase::Running | Phase::Healthy, Some(note)) => Some(match reason {
                Some(reason) => format!("{reason}; {note}"),
                None => note.clone(),
            }),
            _ => reason,
        };
        pending.deployment.enter(phase, reason, wall_ms());
        if let Outcome::Running { pause, .. } = &event.outcome
            && pending.previous.is_some()
        {
            pending.deployment.pause_us = Some(pause.as_micros() as u64);
        }
        let (plugin, deployment, new) = (pending.plugin.clone(), pending.deployment.clone(), pending.new.clone());
        let previous = pending.previous.clone();
        match &event.outcome {
            Outcome::Running { .. } => self.plugins.set_deployed(&plugin, new.clone()),
            // The worker wrote the healthy set already, before the
            // anti-rollback record (see `healthy_first`).
            Outcome::Healthy => {}
            // (A superseded deployment ended above, going back the same way.)
            Outcome::RolledBack(_) | Outcome::Superseded => {
                self.plugins.set_deployed(&plugin, previous.clone().flatten())
            }
            Outcome::Failed(_) => self.plugins.remove(&plugin).await,
        }
        if phase.is_final() {
            self.pending.remove(&event.id);
            self.prune_bundles();
        }
        tracing::info!(plugin = %plugin, phase = phase.name(), "Deployment");
        let record = self.reported(&plugin);
        // A deployment a newer one superseded is no longer the latest, but
        // its failure is still said.
        if phase.is_failure() {
            record.last_failure = Some(deployment.clone());
        }
        if record
            .deployment
            .as_ref()
            .is_some_and(|latest| latest.key == deployment.key && latest.generation == deployment.generation)
        {
            record.deployment = Some(deployment);
        }
        self.dirty = true;
        self.publish().await;
    }

    /// A deployment a newer one of the same plugin replaced during its
    /// probation: it ended, but it did not fail (nothing went wrong with it;
    /// the operator pushed again), so no phase of it is reported and no
    /// failure kept: the plugin's latest deployment is the newer one, whose
    /// own outcome follows. What runs goes back, for now, to the version the
    /// newer one would go back to (the last healthy one).
    fn superseded(&mut self, id: u64) {
        let Some(pending) = self.pending.remove(&id) else {
            return;
        };
        if let Some(input) = &pending.input {
            self.plugins.rewire(&pending.plugin, &input.previous);
        }
        tracing::info!(
            plugin = %pending.plugin,
            key = %pending.deployment.key,
            generation = pending.deployment.generation,
            "Deployment superseded by a newer one during its probation"
        );
        self.plugins.set_deployed(&pending.plugin, pending.previous.flatten());
        self.prune_bundles();
        self.dirty = true;
    }

    /// Remove a deployed plugin no longer desired.
    async fn remove(&mut self, name: &str, layers: &[(Origin, Desired)]) {
        tracing::info!(plugin = name, "Plugin no longer desired: removed");
        self.plugins.remove(name).await;
        if let Err(error) = self.store.change_healthy(|healthy| healthy.remove(name).is_some()) {
            tracing::error!(%error, "Cannot write the healthy set");
        }
        // A probation of it ends with its worker: no outcome will come.
        self.pending.retain(|_, pending| pending.plugin != name);
        self.prune_bundles();
        let origin = layers.last().map(|(origin, _)| origin.clone()).unwrap_or(Origin {
            key: String::new(),
            generation: 0,
        });
        let now = wall_ms();
        let record = self.reported(name);
        let bundle = record.running_bundle.clone();
        let mut deployment = Deployment::new(
            &origin,
            &DesiredPlugin {
                bundle,
                version: record.running_version.clone(),
                size: 0,
                config: BTreeMap::new(),
                pushed_ms: 0,
            },
            now,
        );
        deployment.enter(Phase::Removed, None, now);
        *record = ReportedPlugin {
            deployment: Some(deployment),
            last_failure: record.last_failure.take(),
            ..ReportedPlugin::default()
        };
        self.dirty = true;
    }

    /// A deployed plugin no longer desired that overrides a plugin of the
    /// configuration file, which the cloud never removes: the device goes
    /// back to the file's version if anti-rollback accepts it (a swap, as a
    /// deployment: [`Controller::back_to_the_file`]). Otherwise (the deployed
    /// version was recorded once healthy, and the file's is older) stopping
    /// the deployed one would leave the device without the plugin, now and
    /// at every start: it keeps running and stays in the healthy set (a
    /// restart runs it), reported `kept` with the reason. Either is done
    /// once, not again at each read of the desired sets (the report, kept on
    /// the device, says it already); a return to the file's version that
    /// failed is not tried again (the deployed version runs: rolled back).
    /// A kept version is checked against the file again once per start: a
    /// restart may bring a newer file version (a release installed on the
    /// device), which anti-rollback accepts and which then runs.
    async fn keep(&mut self, name: &str, layers: &[(Origin, Desired)]) {
        let Some(Some((bundle, _))) = self.plugins.deployed(name) else {
            return;
        };
        let latest = self
            .report
            .plugins
            .get(name)
            .and_then(|record| record.deployment.as_ref());
        let returning = latest.is_some_and(|d| d.bundle.is_empty() && d.phase != Phase::Removed);
        let kept = latest.is_some_and(|d| d.phase == Phase::Kept && d.bundle == bundle);
        let first_check = self.files_checked.insert(name.to_owned());
        if returning || (kept && !first_check) {
            return;
        }
        let (loader, plugin) = (self.loader.clone(), name.to_owned());
        let file = tokio::task::spawn_blocking(move || loader.check_configured(&plugin))
            .await
            .ok()
            .flatten();
        if let Some(Ok(file_version)) = file {
            return self.back_to_the_file(name, layers, file_version).await;
        }
        if kept {
            return;
        }
        let record = self.reported(name);
        let version = record.running_version.clone();
        let why = match &file {
            Some(Err(refused)) => match refused.reason.anti_rollback() {
                Some(error) => format!("which anti-rollback refuses ({error})"),
                None => format!("which cannot run in its place ({})", refused.reason),
            },
            Some(Ok(_)) | None => "which cannot be read now".to_owned(),
        };
        let reason = format!(
            "undeployed, but it overrides the configuration file's `{name}`, {why}: {version} keeps running, \
             after restarts too (the cloud never removes a plugin of the configuration file)"
        );
        tracing::warn!(plugin = name, %reason, "Plugin no longer desired: kept");
        let origin = layers.last().map(|(origin, _)| origin.clone()).unwrap_or(Origin {
            key: String::new(),
            generation: 0,
        });
        let now = wall_ms();
        let mut deployment = Deployment::new(
            &origin,
            &DesiredPlugin {
                bundle,
                version,
                size: 0,
                config: BTreeMap::new(),
                pushed_ms: 0,
            },
            now,
        );
        deployment.enter(Phase::Kept, Some(reason), now);
        record.deployment = Some(deployment);
        self.dirty = true;
    }

    /// Swap the configuration file's version (`version`) of `name` back in,
    /// in place of the deployed one no longer desired: as a deployment, from
    /// the deployed one's state, on probation (a failure goes back to the
    /// deployed version). Once it passed, the healthy set no longer names
    /// the plugin (`file_first`) and the deployment is `removed`. Reported
    /// as a deployment of no bundle (the file's).
    async fn back_to_the_file(&mut self, name: &str, layers: &[(Origin, Desired)], version: String) {
        let Some(file) = self.loader.configured.get(name).cloned() else {
            return;
        };
        let origin = layers.last().map(|(origin, _)| origin.clone()).unwrap_or(Origin {
            key: String::new(),
            generation: 0,
        });
        let desired = DesiredPlugin {
            bundle: String::new(),
            version,
            size: 0,
            config: BTreeMap::new(),
            pushed_ms: 0,
        };
        let deployment = Deployment::new(&origin, &desired, wall_ms());
        tracing::info!(
            plugin = name,
            "Plugin no longer desired: back to the configuration file's version"
        );
        let Some((mut prepared, mut deployment)) = self.prepare_off_thread(name, deployment, file).await else {
            return;
        };
        let note = "undeployed: back to the configuration file's version".to_owned();
        self.verified(name, &mut deployment, Some(note)).await;
        let Some((queue, running)) = self.plugins.get(name) else {
            return;
        };
        let accept = file_first(self.store.clone(), name, prepared.setup.accept.take());
        let mut probation = self.new_probation(accept);
        let id = probation.id;
        let previous = self.rollback_target(name, self.plugins.deployed(name));
        let input = SwappedInput {
            new: prepared.input.clone(),
            previous: self.rollback_input(name, running.clone()),
        };
        probation.input = self.input_check(name, &running, &input);
        let pending = Pending {
            plugin: name.to_owned(),
            deployment,
            new: None,
            previous,
            note: subscriptions_note(name, &running.subscriptions, &prepared.input.subscriptions),
            input: Some(input),
        };
        let swap = Swap {
            setup: prepared.setup,
            probation,
        };
        if queue.send(Work::Swap(Box::new(swap))).await.is_err() {
            let reason = "the plugin's worker has stopped".to_owned();
            return self.finish(name, pending.deployment, Phase::Failed, reason);
        }
        self.pending.insert(id, pending);
    }

    /// Write the report: to the cloud (best effort: the device may be
    /// offline) and to the device (what was tried, across restarts).
    async fn publish(&mut self) {
        self.dirty = false;
        self.report.last_seen_ms = wall_ms();
        let statuses: Vec<(String, String, String)> = self
            .plugins
            .statuses
            .lock()
            .map(|statuses| {
                statuses
                    .iter()
                    .filter(|source| source.input.is_some())
                    .map(|source| {
                        let (version, digest) = source
                            .stats
                            .running
                            .lock()
                            .ok()
                            .and_then(|running| running.clone())
                            .unwrap_or_else(|| (source.version.clone(), source.digest.clone()));
                        (source.name.clone(), version, digest)
                    })
                    .collect()
            })
            .unwrap_or_default();
        // What runs now, and nothing else: a plugin that is not running (a
        // new one that failed, also at the start after a crash during its
        // probation) shows no version.
        for (name, record) in &mut self.report.plugins {
            if !statuses.iter().any(|(running, ..)| running == name) {
                record.running_version.clear();
                record.running_digest.clear();
                record.running_bundle.clear();
            }
        }
        for (name, version, digest) in statuses {
            let bundle = self
                .plugins
                .deployed(&name)
                .flatten()
                .map(|(bundle, _)| bundle)
                .unwrap_or_default();
            let record = self.reported(&name);
            record.running_version = version;
            record.running_digest = digest;
            record.running_bundle = bundle;
        }
        // On the device only when what it says of the plugins changed: the
        // heartbeat (a new `last_seen_ms`) is no reason to write the disk.
        let plugins = serde_json::to_vec(&self.report.plugins).unwrap_or_default();
        if self.kept.as_deref() != Some(plugins.as_slice()) {
            match self.store.write("report.json", &self.report.to_bytes()) {
                Ok(()) => self.kept = Some(plugins),
                Err(error) => tracing::warn!(%error, "Cannot keep the deployment report on the device"),
            }
        }
        let written =
            tokio::time::timeout(crate::deploy::cloud::REQUEST_TIMEOUT, self.cloud.report(&self.report)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                tracing::debug!(error = %crate::error_chain(&error), "Cannot write the report to the cloud")
            }
            Err(_) => tracing::debug!("Cannot write the report to the cloud: no answer"),
        }
    }
}
