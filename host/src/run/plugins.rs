//! The plugins a running device has: each one's worker, ingest and status,
//! in one set that can change while the device serves (a deployment adds,
//! swaps or removes a plugin; the ticker, the status and shutdown see the
//! set as it is now).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::RunError;
use super::compiling::CompilingNames;
use super::config::RunConfig;
use super::serve::{Ended, Task, input, spawn_owned};
use super::start::{InputRules, Started};
use super::status::PluginSource;
use crate::bus::Subjects;
use crate::bus::ingest::{self, Ingest, IngestEvent, IngestHealth, IngestStats, OutboxRefusing, ReadingsQueue};
use crate::clock::Clock;
use crate::worker::{StoppingWorker, Work, Worker};

/// A deployed plugin's bundle (object name) and configuration.
pub(super) type Deployed = (String, BTreeMap<String, String>);

/// One plugin of the running device.
pub(super) struct Slot {
    /// Its queue (the worker's).
    pub(super) queue: mpsc::Sender<Work>,
    /// Its worker.
    worker: Worker,
    /// Its ingest.
    ingest: Ingesting,
    /// What its ingest reads and lets in.
    input: InputRules,
    /// The deployed bundle (object name) and configuration it runs; `None`
    /// for a plugin of the device's configuration file.
    pub(super) deployed: Option<(String, BTreeMap<String, String>)>,
}

/// A plugin's ingest task, what stops it, and what changes its rules.
struct Ingesting {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
    rules: watch::Sender<ingest::Rules>,
}

impl Ingesting {
    /// Stop it, within the shutdown's ingest budget.
    async fn stop(self) {
        let _ = self.stop.send(true);
        stop_ingest_task(self.task).await;
    }
}

/// Every plugin of the running device, and what starting one needs.
pub(super) struct Plugins {
    config: RunConfig,
    subjects: Subjects,
    /// The local bus, where core ingest subscribes.
    local: ingest::subscriptions::Subscriber,
    clock: Clock,
    ingest_stats: Arc<IngestStats>,
    events: mpsc::UnboundedSender<IngestEvent>,
    /// Whether the outbox refuses writes now, for JetStream ingest.
    outbox_refusing: OutboxRefusing,
    ended: mpsc::UnboundedSender<Ended>,
    slots: Mutex<BTreeMap<String, Slot>>,
    /// See [`Plugins::changing`].
    changing: tokio::sync::Mutex<()>,
    /// The plugins compiling since start-up (not in the set yet).
    compiling: CompilingNames,
    /// Each plugin's input health (the owner marks a lost one).
    pub(super) inputs: Arc<Mutex<BTreeMap<String, Arc<IngestHealth>>>>,
    /// What the status shows of each plugin (those refused included).
    pub(super) statuses: Arc<Mutex<Vec<PluginSource>>>,
}

/// One plugin's worker, as the service manager's watchdog reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Progress {
    /// The plugin.
    pub(super) plugin: String,
    /// Work waiting in its queue.
    pub(super) waiting: usize,
    /// Its steps so far (`PluginStats::steps`).
    pub(super) steps: u64,
    /// Whether its worker is gone (its queue closed): a worker ends only
    /// when the host stops or the plugin is removed, so before, it is a bug.
    pub(super) gone: bool,
}

/// Where a plugin's stopped worker and ingest end up (shutdown, removal).
pub(super) struct Stopped {
    pub(super) ingest: Vec<JoinHandle<()>>,
    pub(super) stops: Vec<watch::Sender<bool>>,
    pub(super) workers: Vec<Worker>,
}

impl Plugins {
    /// An empty set.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        config: &RunConfig,
        subjects: Subjects,
        local: ingest::subscriptions::Subscriber,
        clock: Clock,
        ingest_stats: Arc<IngestStats>,
        events: mpsc::UnboundedSender<IngestEvent>,
        outbox_refusing: OutboxRefusing,
        ended: mpsc::UnboundedSender<Ended>,
        statuses: Vec<PluginSource>,
        compiling: CompilingNames,
    ) -> Plugins {
        Plugins {
            config: config.clone(),
            subjects,
            local,
            clock,
            ingest_stats,
            events,
            outbox_refusing,
            ended,
            slots: Mutex::new(BTreeMap::new()),
            changing: tokio::sync::Mutex::new(()),
            compiling,
            inputs: Arc::new(Mutex::new(BTreeMap::new())),
            statuses: Arc::new(Mutex::new(statuses)),
        }
    }

    /// If `plugin` is compiling since start-up: the deployed bundle and
    /// configuration it will run, if deployed.
    pub(super) fn compiling(&self, plugin: &str) -> Option<Option<Deployed>> {
        self.compiling.get(plugin)
    }

    /// Show `source` in the status in place of the plugin of its name (one
    /// that could not join).
    pub(super) fn show(&self, source: PluginSource) {
        if let Ok(mut statuses) = self.statuses.lock() {
            statuses.retain(|status| status.name != source.name);
            statuses.push(source);
        }
    }

    /// Start the ingest of `started` and add it to the set, its input's
    /// health told to `health` (new, or one its probation looks at). Whoever
    /// decided to add it holds [`Plugins::changing`] (at start-up nothing
    /// else runs).
    pub(super) async fn add(&self, started: Started, health: Arc<IngestHealth>) -> Result<(), RunError> {
        let name = started.provenance.plugin.clone();
        let ingest = self
            .spawn_ingest(&name, &started.input, &started.worker.readings, health.clone())
            .await?;
        if let Ok(mut inputs) = self.inputs.lock() {
            inputs.insert(name.clone(), health.clone());
        }
        self.show(PluginSource {
            name: name.clone(),
            version: started.provenance.version.clone(),
            digest: started.provenance.digest.clone(),
            stats: started.worker.stats.clone(),
            input: Some(health),
        });
        let slot = Slot {
            queue: started.worker.queue.clone(),
            worker: started.worker,
            ingest,
            input: started.input,
            deployed: started.deployed,
        };
        if let Ok(mut slots) = self.slots.lock() {
            slots.insert(name, slot);
        }
        Ok(())
    }

    /// Held from deciding to start a plugin (none of its name runs) to its
    /// [`Plugins::add`]: a deployment and a plugin compiled after start-up
    /// may both decide so at once, and two workers of one plugin would share
    /// its journal and saved state.
    pub(super) async fn changing(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.changing.lock().await
    }

    /// Start the ingest of `plugin` by `rules` into its worker's `readings`
    /// (core NATS subscriptions are made before this returns).
    async fn spawn_ingest(
        &self,
        plugin: &str,
        rules: &InputRules,
        readings: &ReadingsQueue<Work>,
        health: Arc<IngestHealth>,
    ) -> Result<Ingesting, RunError> {
        let input = input(&self.config, &self.local, plugin, &rules.subscriptions).await?;
        let rules = rules.ingest_rules(plugin, &self.config);
        let ingest = Ingest::new(
            self.local.client.clone(),
            self.subjects.clone(),
            self.ingest_stats.clone(),
            rules.admission.clone(),
            self.clock.clone(),
            health,
            self.events.clone(),
            self.outbox_refusing.clone(),
        );
        let (stop, stopped) = watch::channel(false);
        let (change_rules, followed) = watch::channel(rules);
        let run = ingest::run(
            ingest,
            input,
            followed,
            readings.clone(),
            self.config.limits.batch_max,
            stopped,
        );
        Ok(Ingesting {
            task: spawn_owned(Task::Ingest(plugin.to_owned()), &self.ended, run),
            stop,
            rules: change_rules,
        })
    }

    /// Have the ingest of `plugin` read and let in by `rules` from now on,
    /// when they are not what it follows: a version swapped in (or back) by a
    /// deployment whose subscriptions or sensor rules differ. Without this,
    /// the input made at start would feed every later version until a
    /// restart of the host.
    ///
    /// The ingest goes on, and changes in place ([`ingest::run`]): on core
    /// NATS the new subscriptions are made before the old ones are given up
    /// (no reading missed, a sensor's order kept, one published in that
    /// moment on a subject both read given twice, as a duplicate); on
    /// JetStream the durable consumer changes its filters, keeping its place,
    /// its pulls and the messages waiting for their outputs. The sensors
    /// admitted keep their places. A change the bus refuses is an ingest
    /// failure as any other: the plugin `degraded`, alerted, retried.
    pub(super) fn rewire(&self, plugin: &str, rules: &InputRules) {
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        let Some(slot) = slots.get_mut(plugin) else {
            return;
        };
        if slot.input == *rules {
            return;
        }
        slot.input = rules.clone();
        let _ = slot.ingest.rules.send(rules.ingest_rules(plugin, &self.config));
        tracing::info!(plugin, subscriptions = %rules.subscriptions.join(", "), "The plugin's input follows the version that runs");
    }

    /// Whether the input of `plugin` flows, and by which filters.
    pub(super) fn input_health(&self, plugin: &str) -> Option<Arc<IngestHealth>> {
        self.inputs.lock().ok()?.get(plugin).cloned()
    }

    /// The queue of `plugin` and what its ingest reads and lets in.
    pub(super) fn get(&self, plugin: &str) -> Option<(mpsc::Sender<Work>, InputRules)> {
        let slots = self.slots.lock().ok()?;
        let slot = slots.get(plugin)?;
        Some((slot.queue.clone(), slot.input.clone()))
    }

    /// What `plugin` runs, if it was deployed: its bundle and configuration.
    pub(super) fn deployed(&self, plugin: &str) -> Option<Option<(String, BTreeMap<String, String>)>> {
        let slots = self.slots.lock().ok()?;
        slots.get(plugin).map(|slot| slot.deployed.clone())
    }

    /// Record that `plugin` now runs `deployed`.
    pub(super) fn set_deployed(&self, plugin: &str, deployed: Option<(String, BTreeMap<String, String>)>) {
        if let Ok(mut slots) = self.slots.lock()
            && let Some(slot) = slots.get_mut(plugin)
        {
            slot.deployed = deployed;
        }
    }

    /// The names of the plugins that run.
    pub(super) fn names(&self) -> Vec<String> {
        self.slots
            .lock()
            .map(|slots| slots.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Each running plugin's worker as the watchdog sees it.
    pub(super) fn progress(&self) -> Vec<Progress> {
        self.slots
            .lock()
            .map(|slots| {
                slots
                    .iter()
                    .map(|(name, slot)| Progress {
                        plugin: name.clone(),
                        waiting: slot.queue.max_capacity() - slot.queue.capacity(),
                        steps: slot.worker.stats.steps.load(Ordering::Relaxed),
                        gone: slot.queue.is_closed(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every plugin the status shows (refused and compiling ones included)
    /// with its state (`running`, `quarantined`...).
    pub(super) fn states(&self) -> Vec<(String, &'static str)> {
        self.statuses
            .lock()
            .map(|statuses| {
                statuses
                    .iter()
                    .map(|source| {
                        let state = source.stats.health.lock().map_or("unknown", |health| health.state);
                        (source.name.clone(), state)
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Outputs the running plugins could not store in the outbox, together.
    pub(super) fn outbox_failures(&self) -> u64 {
        self.slots
            .lock()
            .map(|slots| {
                slots
                    .values()
                    .map(|slot| slot.worker.stats.outbox_failures.load(Ordering::Relaxed))
                    .sum()
            })
            .unwrap_or_default()
    }

    /// Every queue (the ticker's view).
    pub(super) fn queues(&self) -> Vec<mpsc::Sender<Work>> {
        self.slots
            .lock()
            .map(|slots| slots.values().map(|slot| slot.queue.clone()).collect())
            .unwrap_or_default()
    }

    /// Remove `plugin`: its ingest stops, its worker finishes its queue
    /// (within the drain budget) and saves its state.
    pub(super) async fn remove(&self, plugin: &str) {
        let slot = self.slots.lock().ok().and_then(|mut slots| slots.remove(plugin));
        if let Ok(mut statuses) = self.statuses.lock() {
            statuses.retain(|status| status.name != plugin);
        }
        if let Ok(mut inputs) = self.inputs.lock() {
            inputs.remove(plugin);
        }
        if let Some(slot) = slot {
            stop_slot(slot).await;
        }
    }

    /// Take every plugin out (shutdown).
    pub(super) fn take_all(&self) -> Stopped {
        let slots = self
            .slots
            .lock()
            .map(|mut slots| std::mem::take(&mut *slots))
            .unwrap_or_default();
        let mut stopped = Stopped {
            ingest: Vec::new(),
            stops: Vec::new(),
            workers: Vec::new(),
        };
        for (_, slot) in slots {
            stopped.ingest.push(slot.ingest.task);
            stopped.stops.push(slot.ingest.stop);
            stopped.workers.push(slot.worker);
        }
        stopped
    }
}

/// Stop a plugin taken out of the set: its ingest stops, its worker finishes
/// its queue (within the drain budget) and saves its state.
async fn stop_slot(slot: Slot) {
    slot.ingest.stop().await;
    drop(slot.queue);
    let stopping = slot.worker.stop(Instant::now() + super::shutdown::DRAIN_BUDGET);
    let joined = tokio::task::spawn_blocking(move || join_within(stopping, super::shutdown::DRAIN_BUDGET * 2));
    let _ = joined.await;
}

/// Wait for an ingest task to stop, within the shutdown's ingest budget.
async fn stop_ingest_task(mut task: JoinHandle<()>) {
    if tokio::time::timeout(super::shutdown::INGEST_BUDGET, &mut task)
        .await
        .is_err()
    {
        task.abort();
    }
}

/// Wait for a stopped worker's thread, at most `within`; one that does not
/// end is left behind (logged).
fn join_within(worker: StoppingWorker, within: Duration) {
    let until = Instant::now() + within;
    while !worker.is_finished() {
        if Instant::now() >= until {
            tracing::error!("A removed plugin's worker did not finish in time; left behind");
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    worker.join();
}
