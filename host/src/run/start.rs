//! Start-up: the data directory, the trust store and anti-rollback record,
//! the outbox (an unusable one moved aside) and its writer, the local bus,
//! then every plugin: loaded ([`crate::load`]) and checked in turn, all
//! compiled at once ([`super::compiling`]: start-up waits for them at most
//! `[compile] start_wait`), the worker of each compiled one started.
//! Nothing here calls into a plugin: `init` runs on the plugin's own
//! supervised worker thread, so a plugin that traps, panics, hangs or
//! refuses its configuration there is a `plugin-degraded` of that plugin
//! only. A bundle refused here is reported (log, status, a critical host
//! alert) and the others start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::Notify;

use super::RunError;
use super::config::{PluginConfig, RunConfig};
use super::host_alerts::HostAlerts;
use crate::bundle::{self, RollbackError, RollbackStore, TrustStore};
use crate::bus::admission::Admission;
use crate::bus::ingest::{self, IngestStats};
use crate::bus::overlap;
use crate::bus::violations::{Operation, SubscriptionLimit, Violations};
use crate::bus::{LocalBus, Subjects};
use crate::clock::Clock;
use crate::envelope::Provenance;
use crate::load::{self, LoadError, Operator, Trust};
use crate::outbox::reset::{self, IN_MEMORY_CODE, RESET_CODE};
use crate::outbox::{SharedOutbox, Writer};
use crate::runtime::{ChildCompiler, Compiler, Limits, Runtime, RuntimeOptions};
use crate::worker::{self, DEGRADED, PluginSetup, Work, Worker, WorkerContext};

use super::compiling::Compilations;

/// A plugin that cannot run, and why.
#[derive(Debug, Clone)]
pub struct Refused {
    /// Its name: the manifest's if the bundle was verified, else the bundle
    /// file's stem (an unverified manifest is not believed).
    pub name: String,
    /// Its version, if the bundle was verified.
    pub version: String,
    /// The bundle file.
    pub bundle: String,
    /// Why (shared: the log, the status, the host alert and the error all
    /// show it).
    pub reason: Arc<RefusalReason>,
}

/// Why a plugin cannot run.
#[derive(Debug, thiserror::Error)]
pub enum RefusalReason {
    /// The anti-rollback record's lock is poisoned.
    #[error("the anti-rollback record is unusable")]
    RollbackUnusable,
    /// The bundle could not be loaded (read, verified, compiled).
    #[error("{0}")]
    Load(#[from] LoadError),
    /// No manifest (a verified bundle always has one).
    #[error("refused: no manifest")]
    NoManifest,
    /// Another plugin has its name.
    #[error("a second plugin named `{0}`")]
    Duplicate(String),
    /// Its version is not semver.
    #[error("{0}")]
    Version(#[source] bundle::ManifestError),
    /// A subscription of its manifest reaches the host's own subjects.
    #[error("subscription {0}")]
    Subscription(String),
    /// The trust store cannot be read now.
    #[error("the trust store: {0}")]
    Trust(String),
    /// Its compilation could not run to an end (no thread for it, a panic).
    #[error("its compilation could not run: {0}")]
    Compilation(String),
    /// Compiled, but its worker could not start: its journal in the outbox
    /// is damaged (a value its checks refuse), or no thread could be made.
    #[error("its worker could not start: {0}")]
    Start(String),
}

impl RefusalReason {
    /// What anti-rollback said, if it refused the bundle (after its
    /// signature: the error names the plugin).
    pub(super) fn anti_rollback(&self) -> Option<&RollbackError> {
        match self {
            RefusalReason::Load(LoadError::Refused(bundle::VerifyError::Rollback(error))) => Some(error),
            _ => None,
        }
    }
}

/// A plugin whose worker runs (its `init` may not have yet).
pub(super) struct Started {
    /// Who its outputs are from.
    pub(super) provenance: Provenance,
    /// What its ingest reads and lets in.
    pub(super) input: InputRules,
    /// Its worker.
    pub(super) worker: Worker,
    /// The deployed bundle (object name) and configuration it runs, if deployed.
    pub(super) deployed: Option<(String, std::collections::BTreeMap<String, String>)>,
}

/// What start-up made: the device, ready to serve.
pub(super) struct Device {
    pub(super) started_at: Instant,
    pub(super) subjects: Subjects,
    pub(super) outbox: SharedOutbox,
    /// Why the outbox was reset at start, if it was.
    pub(super) outbox_reset: Option<String>,
    /// Why the outbox is in memory, if it is.
    pub(super) outbox_in_memory: Option<String>,
    /// Woken whenever the writer committed something (the upstream waits on it).
    pub(super) outbox_written: Arc<Notify>,
    pub(super) writer: Writer,
    pub(super) local: async_nats::Client,
    /// The subscriptions the local server refused on it (its permissions).
    pub(super) refused_subscriptions: Arc<Violations>,
    /// The publishes the local server refused on it (its permissions).
    pub(super) refused_publishes: Arc<Violations>,
    /// The subscriptions the local server refused on it past its limit.
    pub(super) subscription_limit: Arc<SubscriptionLimit>,
    /// The same client, for what the host publishes there itself (alerts,
    /// telemetry): never waited on for long.
    pub(super) local_bus: LocalBus,
    /// Every plugin's ingest counters (and the local client's drops).
    pub(super) ingest_stats: Arc<IngestStats>,
    pub(super) clock: Clock,
    pub(super) host_alerts: HostAlerts,
    pub(super) plugins: Vec<Started>,
    pub(super) refused: Vec<Refused>,
    /// The plugins still compiling when start-up stopped waiting: each joins
    /// the running device once compiled, or is refused then.
    pub(super) compiling: Compilations,
    /// What starts a plugin while the device serves (one compiled late, a
    /// deployment).
    pub(super) loader: Loader,
}

/// What loading and starting a plugin while the device serves needs (a
/// deployment, a plugin compiled after start-up).
#[derive(Clone)]
pub(super) struct Loader {
    pub(super) config: RunConfig,
    runtime: Arc<Runtime>,
    rollback: Arc<Mutex<RollbackStore>>,
    subjects: Subjects,
    local: LocalBus,
    writer: crate::outbox::WriterHandle,
    outbox: SharedOutbox,
    clock: Clock,
    /// The configuration file's plugins, by name (see [`configured_plugins`]):
    /// deployment never removes them.
    pub(super) configured: Arc<BTreeMap<String, PluginConfig>>,
}

impl Loader {
    /// Verify (against the trust store as it is now), compile and prepare
    /// `plugin`; blocking (compiling takes a while): call it off the async
    /// threads.
    pub(super) fn prepare(&self, plugin: &PluginConfig) -> Result<Prepared, Refused> {
        self.checking(plugin, |context| prepare(context, plugin))
    }

    /// Whether the configuration file's plugin `name` could start now: its
    /// bundle read and checked as at start-up (trust, anti-rollback, the
    /// manifest; not compiled), its version or why not; `None` if the file
    /// has no plugin of that name. Blocking (reads the bundle).
    pub(super) fn check_configured(&self, name: &str) -> Option<Result<String, Refused>> {
        let plugin = self.configured.get(name)?;
        Some(self.checking(plugin, |context| check(context, plugin).map(|checked| checked.version)))
    }

    /// Run `run` with what loading `plugin` needs (the trust store as it is now).
    fn checking<T>(
        &self,
        plugin: &PluginConfig,
        run: impl FnOnce(&LoadContext<'_>) -> Result<T, Refused>,
    ) -> Result<T, Refused> {
        let trust = TrustStore::load(&self.config.trust_dir).map_err(|error| Refused {
            name: String::new(),
            version: String::new(),
            bundle: plugin.bundle.display().to_string(),
            reason: Arc::new(RefusalReason::Trust(error.to_string())),
        })?;
        let context = LoadContext {
            device: &self.config.device,
            data_dir: &self.config.data_dir,
            trust: &trust,
            rollback: &self.rollback,
            runtime: &self.runtime,
            host_limits: &self.config.host_limits,
            host_max_sensors: self.config.host_max_sensors,
        };
        run(&context)
    }

    /// Start the worker of `prepared`.
    pub(super) fn start(&self, prepared: Prepared) -> Result<Started, RunError> {
        start_worker(&self.config, self.context(), prepared)
    }

    /// What a worker needs.
    fn context(&self) -> WorkerContext {
        WorkerContext {
            runtime: self.runtime.clone(),
            subjects: self.subjects.clone(),
            local: self.local.clone(),
            handle: tokio::runtime::Handle::current(),
            writer: self.writer.clone(),
            outbox: self.outbox.clone(),
            input_log: self.config.input_log,
            redelivery: matches!(self.config.source, crate::bus::config::Source::JetStream { .. }),
            clock: self.clock.clone(),
            policy: self.config.supervisor.clone(),
            time_calls: self.config.metrics.is_some(),
        }
    }
}

/// Start the device of `config`: everything but the tasks ([`super::serve`]).
pub(super) async fn start(config: &RunConfig) -> Result<Device, RunError> {
    let started_at = Instant::now();
    private_data_dir(&config.data_dir)?;
    let subjects = Subjects::new(&config.device);
    let trust = TrustStore::load(&config.trust_dir)?;
    let rollback = RollbackStore::open(&config.data_dir).map_err(RunError::Rollback)?;
    let rollback = Arc::new(Mutex::new(rollback));
    // Compiled in a child process: a compilation that runs out of memory
    // costs that plugin, not the device (`runtime::Compiler`).
    let compiler = Compiler::Child(ChildCompiler {
        program: PathBuf::from("/proc/self/exe"),
        memory_limit_bytes: config.compile.memory_limit_bytes,
        deadline: config.compile.timeout,
    });
    let runtime = Runtime::new(RuntimeOptions {
        compiler,
        ..RuntimeOptions::default()
    });
    let runtime = Arc::new(runtime.map_err(RunError::Runtime)?);
    let opened = reset::open_outbox(&config.data_dir, config.outbox, crate::worker::INPUTS_READ_AT_START)?;
    let outbox = Arc::new(Mutex::new(opened.outbox));
    let outbox_written = Arc::new(Notify::new());
    // Every plugin's outputs go through one writer: one fsync for whatever
    // has queued up (group commit).
    let wake_upstream = outbox_written.clone();
    let writer = Writer::start(outbox.clone(), crate::outbox::QUEUE_APPENDS, move || {
        wake_upstream.notify_one()
    })
    .map_err(|source| RunError::io("cannot start the outbox writer", source))?;
    let ingest_stats = Arc::new(IngestStats::default());
    let client_drops = ingest_stats.clone();
    let name = format!("edgewise-{}", config.device);
    let link = crate::bus::connect::LinkLog::new(
        "the local NATS server",
        &config.local.url,
        "no reading comes in, no alert goes out locally, `edgewise status` gets no answer",
    );
    let refused_subscriptions = Arc::new(Violations::new(Operation::Subscription, "the local server"));
    let refused_publishes = Arc::new(Violations::new(Operation::Publish, "the local server"));
    let subscription_limit = Arc::new(SubscriptionLimit::default());
    let refusals = (
        refused_subscriptions.clone(),
        refused_publishes.clone(),
        subscription_limit.clone(),
    );
    let local = crate::bus::connect::connect_observed(&config.local, &name, true, move |event| {
        link.observe(&event);
        refusals.0.observe(&event);
        refusals.1.observe(&event);
        refusals.2.observe(&event);
        if let async_nats::Event::SlowConsumer(_) = event {
            // A subscription's buffer was full: the client dropped a
            // message before ingest saw it (ingest was slower than the bus).
            client_drops.dropped_before_ingest();
        }
    })
    .await
    .map_err(RunError::Local)?;
    let local_bus = LocalBus::new(local.clone());

    let context = LoadContext {
        device: &config.device,
        data_dir: &config.data_dir,
        trust: &trust,
        rollback: &rollback,
        runtime: &runtime,
        host_limits: &config.host_limits,
        host_max_sensors: config.host_max_sensors,
    };
    // Only deployment needs them (a second read of each bundle).
    let configured = match &config.deploy {
        Some(_) => configured_plugins(&trust, &config.plugins),
        None => BTreeMap::new(),
    };
    let mut refused: Vec<(usize, Refused)> = Vec::new();
    // The last healthy set deployed from the cloud first (it runs with no
    // network); a plugin of the configuration file of the same name gives way.
    let deployed = match &config.deploy {
        Some(_) => super::deploy::healthy_plugins(&config.data_dir, &configured),
        None => Vec::new(),
    };
    let plugins = deployed
        .iter()
        .map(|(plugin, bundle)| (plugin, Some(bundle.clone())))
        .chain(config.plugins.iter().map(|plugin| (plugin, None)));
    // Read, verify and check each bundle in order (milliseconds); they all
    // compile at once, but one whose name an earlier one has only if that
    // one is refused (see `compiling`).
    let mut compiling = Compilations::new(&runtime, &config.data_dir.join("cache"));
    let mut deployed_names = Vec::new();
    for (order, (plugin, bundle)) in plugins.enumerate() {
        match check(&context, plugin) {
            Ok(mut checked) => {
                let quietly = bundle.is_none() && deployed_names.contains(&checked.name);
                if bundle.is_some() {
                    deployed_names.push(checked.name.clone());
                }
                checked.deployed = bundle.map(|bundle| (bundle, plugin.config.clone()));
                match compiling.has(&checked.name) {
                    true => compiling.behind(order, checked, quietly),
                    false => compiling.compile(order, checked),
                }
            }
            Err(refusal) => {
                // A plugin of the configuration file refused by
                // anti-rollback because a deployed version of its name, which
                // starts here, is newer (recorded once healthy) gives way to
                // it as it would had it been accepted: quietly, not with a
                // refusal and a critical alert at every start.
                let gives_way = bundle.is_none()
                    && refusal
                        .reason
                        .anti_rollback()
                        .and_then(RollbackError::plugin)
                        .is_some_and(|name| deployed_names.iter().any(|deployed| deployed == name));
                if gives_way {
                    tracing::warn!(bundle = %refusal.bundle, reason = %refusal.reason, "A deployed version of this plugin runs instead");
                    continue;
                }
                tracing::error!(bundle = %refusal.bundle, reason = %refusal.reason, "Plugin refused; the others start");
                refused.push((order, refusal));
            }
        }
    }
    let mut ready = Vec::new();
    for compiled in compiling
        .gather(config.compile.start_wait, config.deploy.is_some())
        .await
    {
        match compiled.result {
            Ok(prepared) => ready.push((compiled.order, compiled.bundle, prepared)),
            Err(refusal) => {
                tracing::error!(bundle = %refusal.bundle, reason = %refusal.reason, "Plugin refused; the others start");
                refused.push((compiled.order, refusal));
            }
        }
    }
    // The configuration's order, whichever compiled first.
    ready.sort_by_key(|(order, _, _)| *order);
    refused.sort_by_key(|(order, _)| *order);
    let mut refused: Vec<Refused> = refused.into_iter().map(|(_, refusal)| refusal).collect();
    if ready.is_empty() && compiling.is_empty() && config.deploy.is_none() {
        return Err(RunError::NothingToRun(refused));
    }
    if !compiling.is_empty() {
        let names: Vec<&str> = compiling.pending().map(|pending| pending.name.as_str()).collect();
        tracing::warn!(
            plugins = %names.join(", "),
            start_wait = %humantime::format_duration(config.compile.start_wait),
            "Still compiling: the device serves without them; each joins once compiled"
        );
    }

    // The clock starts once start-up stops waiting for compilations, so a
    // simulated clock does not run ahead during them.
    let clock = Clock::start(config.clock.clone());
    let mut plugins = Vec::new();
    for (_, bundle, prepared) in ready {
        let context = WorkerContext {
            runtime: runtime.clone(),
            subjects: subjects.clone(),
            local: local_bus.clone(),
            handle: tokio::runtime::Handle::current(),
            writer: writer.handle(),
            outbox: outbox.clone(),
            input_log: config.input_log,
            redelivery: matches!(config.source, crate::bus::config::Source::JetStream { .. }),
            clock: clock.clone(),
            policy: config.supervisor.clone(),
            time_calls: config.metrics.is_some(),
        };
        let (name, version) = (
            prepared.setup.provenance.plugin.clone(),
            prepared.setup.provenance.version.clone(),
        );
        // A worker that cannot start (its journal in the outbox damaged, no
        // thread for it) costs that plugin only: refused and reported below
        // like a bundle refused, and the others run.
        match start_worker(config, context, prepared) {
            Ok(started) => plugins.push(started),
            Err(error) => {
                let refusal = Refused {
                    name,
                    version,
                    bundle,
                    reason: Arc::new(RefusalReason::Start(crate::error_chain(&error))),
                };
                tracing::error!(bundle = %refusal.bundle, reason = %refusal.reason, "Plugin refused; the others start");
                refused.push(refusal);
            }
        }
    }
    // Say loudly what could not start: log (above), status, and a critical
    // alert locally and upstream.
    // Never stops start-up: a damaged or unwritable sequence state (a full
    // disk at boot) must not cost the device its local alerting.
    let numbered_in = opened.in_memory.is_none().then_some(config.data_dir.as_path());
    let mut host_alerts = HostAlerts::new(&subjects, numbered_in, local_bus.clone(), writer.handle());
    host_alerts.tell_renewed(clock.now_ms()).await;
    if let Some(reset) = &opened.reset {
        host_alerts.critical(RESET_CODE, reset.clone(), clock.now_ms()).await;
    }
    if let Some(in_memory) = &opened.in_memory {
        host_alerts
            .critical(IN_MEMORY_CODE, in_memory.clone(), clock.now_ms())
            .await;
    }
    for refusal in &refused {
        let message = format!("plugin bundle {} cannot run: {}", refusal.bundle, refusal.reason);
        host_alerts.critical(DEGRADED, message, clock.now_ms()).await;
    }
    let loader = Loader {
        config: config.clone(),
        runtime: runtime.clone(),
        rollback: rollback.clone(),
        subjects: subjects.clone(),
        local: local_bus.clone(),
        writer: writer.handle(),
        outbox: outbox.clone(),
        clock: clock.clone(),
        configured: Arc::new(configured),
    };
    Ok(Device {
        started_at,
        subjects,
        outbox,
        outbox_reset: opened.reset,
        outbox_in_memory: opened.in_memory,
        outbox_written,
        writer,
        local,
        refused_subscriptions,
        refused_publishes,
        subscription_limit,
        local_bus,
        ingest_stats,
        clock,
        host_alerts,
        plugins,
        refused,
        compiling,
        loader,
    })
}

/// Start the worker of a prepared plugin, and queue its first tick.
fn start_worker(config: &RunConfig, context: WorkerContext, prepared: Prepared) -> Result<Started, RunError> {
    let provenance = prepared.setup.provenance.clone();
    let clock = context.clock.clone();
    let worker = Worker::start(context, prepared.setup, config.limits.queue_capacity)
        .map_err(|source| RunError::io(format!("cannot start the worker of `{}`", provenance.plugin), source))?;
    // A first tick, queued before ingest starts: the plugin knows the host's
    // time before its first reading, so a reading far ahead of it is never
    // taken for "now" (glucose-monitor's `max_ahead`).
    if worker.queue.try_send(Work::Tick(clock.tick_ms())).is_err() {
        tracing::warn!(plugin = %provenance.plugin, "Cannot queue the first tick");
    }
    Ok(Started {
        provenance,
        input: prepared.input,
        worker,
        deployed: prepared.deployed,
    })
}

/// The data directory, 0700 (an existing, wider one is narrowed): every file
/// in it is private. Files an older version (or a copy) left with a wider
/// mode are narrowed too; the others are rewritten 0600 at start (sequences)
/// or made so by their owners (outbox, cache).
///
/// Only a directory that does not exist and cannot be made stops start-up.
/// One that cannot be narrowed (a read-only disk: a worn-out SD card) is
/// reported and used as it is: refusing to start would not make it private,
/// only stop the device alerting.
fn private_data_dir(data_dir: &Path) -> Result<(), RunError> {
    if let Err(source) = crate::files::private_dir(data_dir) {
        if !data_dir.is_dir() {
            return Err(RunError::io(
                format!("cannot create the data directory {}", data_dir.display()),
                source,
            ));
        }
        tracing::error!(path = %data_dir.display(), "Cannot make the data directory private (mode 0700): {source}");
    }
    for name in [bundle::rollback::ROLLBACK_FILE, reset::KEY_FILE] {
        let path = data_dir.join(name);
        if let Err(source) = crate::files::narrow(&path, crate::files::PRIVATE_FILE) {
            tracing::error!(path = %path.display(), "Cannot make the file private (mode 0600): {source}");
        }
    }
    Ok(())
}

/// The configuration file's plugins by name, each name's first table: the
/// name its verified manifest says, anti-rollback, expiry and revocation
/// aside (a plugin of the file that a deployed version made older than the
/// recorded one, whose bundle has expired while deployed versions ran, or
/// whose key was revoked, is still the file's: its device settings still
/// hold for them, `deploy::deployed_plugin`). A bundle that cannot be read,
/// or is not signed by a key of the trust store, names none (an unverified
/// manifest is not believed).
fn configured_plugins(trust: &TrustStore, plugins: &[PluginConfig]) -> BTreeMap<String, PluginConfig> {
    // Naming only: a revoked key or digest still proves who signed the
    // bundle and that it is unaltered. Keys are revoked after a leak, and the
    // versions deployed then, under another key, keep the file's settings.
    let trust = &trust.ignoring_revocations();
    let mut named = BTreeMap::new();
    for plugin in plugins {
        let options = bundle::VerifyOptions {
            trust,
            rollback: None,
            // Naming only: no bundle has expired at the epoch.
            now: time::OffsetDateTime::UNIX_EPOCH,
            max_bytes: bundle::DEFAULT_MAX_BUNDLE_BYTES,
        };
        let verified = bundle::read_bundle_file(&plugin.bundle, bundle::DEFAULT_MAX_BUNDLE_BYTES)
            .ok()
            .and_then(|bytes| bundle::verify(&bytes, &options).ok());
        if let Some(verified) = verified {
            named.entry(verified.manifest.name).or_insert_with(|| plugin.clone());
        }
    }
    named
}

/// What every plugin's loading shares.
struct LoadContext<'a> {
    device: &'a str,
    /// The data directory (component cache).
    data_dir: &'a Path,
    trust: &'a TrustStore,
    /// The anti-rollback record; a version is recorded only once its `init`
    /// has succeeded (by the worker).
    rollback: &'a Arc<Mutex<RollbackStore>>,
    runtime: &'a Arc<Runtime>,
    /// The host ceilings (`[host_limits]`).
    host_limits: &'a Limits,
    /// `[host_limits] max_sensors`, if set.
    host_max_sensors: Option<usize>,
}

/// A plugin ready for its worker: its `init` has not run yet.
pub(super) struct Prepared {
    pub(super) setup: PluginSetup,
    /// What its ingest is to read and let in.
    pub(super) input: InputRules,
    /// The deployed bundle (object name) and configuration, if deployed.
    pub(super) deployed: Option<(String, std::collections::BTreeMap<String, String>)>,
}

/// What a plugin's ingest reads and lets in: its subscriptions (the
/// operator's override, or the manifest's), the subjects whose payloads may
/// name their sensors, its sensor cap, and how long it keeps a silent
/// sensor, if it forgets them. Each version has its own: a deployment that
/// swaps in one with others has the ingest follow (`Plugins::rewire`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InputRules {
    pub(super) subscriptions: Vec<String>,
    payload_sensors: Vec<String>,
    max_sensors: usize,
    sensors_forgotten_after: Option<std::time::Duration>,
}

impl InputRules {
    /// What `plugin`'s ingest reads and lets in, on a device run by `config`.
    pub(super) fn ingest_rules(&self, plugin: &str, config: &RunConfig) -> ingest::Rules {
        ingest::Rules {
            filters: self.subscriptions.clone(),
            admission: Admission::new(
                plugin,
                config.plausibility,
                &config.clock,
                self.payload_sensors.clone(),
                self.max_sensors,
                self.sensors_forgotten_after,
            ),
        }
    }
}

/// Why the anti-rollback record could not take a version.
#[derive(Debug, thiserror::Error)]
enum AcceptError {
    #[error("the anti-rollback record is unusable (a thread panicked while writing it)")]
    Poisoned,
    #[error("{0}")]
    Record(#[source] RollbackError),
}

/// Load, check and compile `plugin`.
fn prepare(context: &LoadContext<'_>, plugin: &PluginConfig) -> Result<Prepared, Refused> {
    check(context, plugin)?.compile(context.runtime, &context.data_dir.join("cache"))
}

/// A plugin whose bundle was read and verified and whose manifest passed the
/// checks: all but its code's compilation, the slow part, which may run on
/// another thread.
pub(super) struct Checked {
    /// Its name (the verified manifest's).
    pub(super) name: String,
    /// Its version.
    pub(super) version: String,
    /// Its code's digest, as the status shows it.
    pub(super) digest: String,
    /// The bundle file.
    pub(super) bundle: String,
    loaded: load::Loaded,
    accept: worker::Accept,
    input: InputRules,
    /// The deployed bundle (object name) and configuration, if deployed.
    pub(super) deployed: Option<(String, std::collections::BTreeMap<String, String>)>,
}

/// Load and check `plugin`.
fn check(context: &LoadContext<'_>, plugin: &PluginConfig) -> Result<Checked, Refused> {
    let path = plugin.bundle.display().to_string();
    let stem = plugin
        .bundle
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let refuse = |name: &str, version: &str, reason: RefusalReason| Refused {
        name: name.to_owned(),
        version: version.to_owned(),
        bundle: path.clone(),
        reason: Arc::new(reason),
    };
    let loaded = {
        let rollback = context
            .rollback
            .lock()
            .map_err(|_| refuse(&stem, "", RefusalReason::RollbackUnusable))?;
        let trust = Trust::Verified {
            store: context.trust,
            rollback: Some(&rollback),
        };
        let operator = Operator {
            device: context.device,
            config: &plugin.config,
            limits: &plugin.limits,
            base: Limits::default(),
            ceilings: Some(context.host_limits),
        };
        load::load(&plugin.bundle, &trust, &operator).map_err(|e| refuse(&stem, "", e.into()))?
    };
    let Some(manifest) = &loaded.manifest else {
        // A verified bundle has a manifest; without one it is not a bundle.
        return Err(refuse(&stem, "", RefusalReason::NoManifest));
    };
    let (name, version) = (manifest.name.as_str(), manifest.version.as_str());
    let semver = manifest
        .semver()
        .map_err(|e| refuse(name, version, RefusalReason::Version(e)))?;
    // The operator's override was checked with the configuration (exit 2);
    // the manifest's are the bundle author's: this plugin is refused.
    let subscriptions = plugin.subscriptions.clone().unwrap_or(manifest.subscriptions.clone());
    for filter in &subscriptions {
        if let Some(reason) = overlap::refusal(context.device, filter) {
            return Err(refuse(name, version, RefusalReason::Subscription(reason)));
        }
    }
    let (max_sensors, lowered) =
        bundle::manifest::sensor_cap(&manifest.limits, &plugin.limits, context.host_max_sensors);
    if let Some(asked) = lowered {
        tracing::warn!(
            plugin = %name,
            asked,
            ceiling = max_sensors,
            "The plugin asks for more than the host allows: max_sensors lowered to the ceiling (`host_limits.max_sensors`)"
        );
    }
    if plugin.limits.forgets_sensors_after_h.is_some() && manifest.limits.forgets_sensors_after_h.is_none() {
        tracing::warn!(
            plugin = %name,
            "`forgets_sensors_after_h` is ignored: the plugin's manifest declares none (it keeps every sensor it is given)"
        );
    }
    let accept: worker::Accept = {
        let (rollback, name, digest) = (context.rollback.clone(), name.to_owned(), manifest.code_sha256.clone());
        let assets = manifest.assets_sha256();
        Box::new(move || {
            let mut rollback = rollback.lock().map_err(|_| AcceptError::Poisoned)?;
            rollback
                .record(&name, &semver, &digest, assets.as_deref())
                .map_err(AcceptError::Record)?;
            Ok(())
        })
    };
    Ok(Checked {
        name: name.to_owned(),
        version: version.to_owned(),
        digest: loaded.provenance.digest.clone(),
        bundle: path.clone(),
        accept,
        input: InputRules {
            subscriptions,
            payload_sensors: plugin.payload_sensors.clone(),
            max_sensors,
            sensors_forgotten_after: bundle::manifest::sensors_forgotten_after(&manifest.limits, &plugin.limits),
        },
        deployed: None,
        loaded,
    })
}

impl Checked {
    /// Compile its code (or take it from the cache in `cache_dir`): the
    /// plugin, ready for its worker.
    pub(super) fn compile(self, runtime: &Runtime, cache_dir: &Path) -> Result<Prepared, Refused> {
        let (compiled, cache) = match self.loaded.compile(runtime, Some(cache_dir)) {
            Ok(compiled) => compiled,
            Err(error) => return Err(self.refused(error.into())),
        };
        tracing::debug!(plugin = %self.name, ?cache, "Plugin compiled");
        Ok(Prepared {
            setup: PluginSetup {
                compiled: Arc::new(compiled),
                provenance: self.loaded.provenance.clone(),
                config: self.loaded.config.clone(),
                limits: self.loaded.limits.clone(),
                accept: Some(self.accept),
                probation: None,
            },
            input: self.input,
            deployed: self.deployed,
        })
    }

    /// This plugin, refused for `reason`.
    pub(super) fn refused(&self, reason: RefusalReason) -> Refused {
        Refused {
            name: self.name.clone(),
            version: self.version.clone(),
            bundle: self.bundle.clone(),
            reason: Arc::new(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::{ManifestLimits, ManifestSource, SigningKey, WORLD};

    /// A file bundle names its plugin for the device settings of the file
    /// (`deploy::deployed_plugin`) whatever stops it running: expired, its
    /// key revoked (rotated after a leak, the new versions deployed under
    /// another key) or its digest revoked. Only a signature by a key the
    /// device never trusted, or a bundle that does not read, names none.
    #[test]
    fn a_file_bundle_names_its_plugin_whatever_stops_it_running() {
        let dir = tempfile::tempdir().unwrap();
        let (_, key) = SigningKey::generate().unwrap();
        let (_, stranger) = SigningKey::generate().unwrap();
        let source = "name = \"glucose-monitor\"\nversion = \"1.0.0\"\nsubscriptions = [\"sensors.>\"]\n\
                      expires = \"2020-01-01T00:00:00Z\"\n";
        let component = b"\0asm\x0d\0\x01\0";
        let signed = |key: &SigningKey, file: &str| {
            let source = ManifestSource::from_toml(source).unwrap();
            let at = time::macros::datetime!(2019-06-01 0:00 UTC);
            let (bundle, manifest) = bundle::sign(component, WORLD, source, &[], key, at).unwrap();
            std::fs::write(dir.path().join(file), bundle).unwrap();
            let plugin = PluginConfig {
                bundle: dir.path().join(file),
                config: BTreeMap::new(),
                subscriptions: None,
                limits: ManifestLimits::default(),
                payload_sensors: vec![format!("from {file}")],
            };
            (plugin, manifest.code_sha256)
        };
        let (file, digest) = signed(&key, "ours.wasm");
        let (theirs, _) = signed(&stranger, "theirs.wasm");
        let named = |revoked: &str| {
            let trust_dir = tempfile::tempdir().unwrap();
            std::fs::write(trust_dir.path().join("ours.pub"), key.public_key().to_file_text()).unwrap();
            std::fs::write(trust_dir.path().join("revoked"), revoked).unwrap();
            let trust = TrustStore::load(trust_dir.path()).unwrap();
            configured_plugins(&trust, &[theirs.clone(), file.clone()])
                .get("glucose-monitor")
                .map(|plugin| plugin.payload_sensors.clone())
        };
        let ours = Some(vec!["from ours.wasm".to_owned()]);
        assert_eq!(named(""), ours, "expired");
        assert_eq!(named(&format!("{}\n", key.public_key().id())), ours, "its key revoked");
        assert_eq!(named(&format!("sha256:{digest}\n")), ours, "its digest revoked");
    }
}
