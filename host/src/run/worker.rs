//! One plugin on its own thread: it owns the wasmtime instance, takes work
//! from a bounded queue, publishes alerts on the local bus at once, and writes
//! every output to the outbox before it counts as emitted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::{Notify, mpsc};

use super::sequence::Sequence;
use super::subjects::Subjects;
use crate::envelope::{Provenance, to_json_line};
use crate::model::{Output, Reading};
use crate::outbox::{Kind, NewEntry, Outbox};
use crate::runtime::{CompiledPlugin, Limits, PluginError, PluginInstance, Runtime};

/// Work for a plugin.
#[derive(Debug)]
pub enum Work {
    /// A batch of readings (each sensor's readings in arrival order), and
    /// optionally who to tell once its outputs are in the outbox (JetStream
    /// ingest acknowledges the messages only then).
    Readings(Vec<Reading>, Option<tokio::sync::oneshot::Sender<()>>),
    /// A clock tick.
    Tick(i64),
}

/// Counters of one plugin, shared with the status responder.
#[derive(Debug, Default)]
pub struct PluginStats {
    /// Readings delivered to the plugin.
    pub readings_in: AtomicU64,
    /// Alerts emitted.
    pub alerts_out: AtomicU64,
    /// Summaries emitted.
    pub summaries_out: AtomicU64,
    /// Failed calls.
    pub errors: AtomicU64,
    /// Instances rebuilt after a failure.
    pub restarts: AtomicU64,
    /// Outputs that could not be written to the outbox.
    pub outbox_failures: AtomicU64,
}

/// What a worker needs besides its plugin.
pub struct WorkerContext {
    /// The runtime (shared engine).
    pub runtime: Arc<Runtime>,
    /// Subjects of this device.
    pub subjects: Subjects,
    /// The local bus, for alerts.
    pub local: async_nats::Client,
    /// The async runtime, to publish from this thread.
    pub handle: tokio::runtime::Handle,
    /// The outbox.
    pub outbox: Arc<Mutex<Outbox>>,
    /// Woken after each outbox write.
    pub outbox_written: Arc<Notify>,
    /// Where sequence numbers are kept.
    pub data_dir: std::path::PathBuf,
}

/// A running plugin worker.
pub struct Worker {
    /// Its queue.
    pub queue: mpsc::Sender<Work>,
    /// Its counters.
    pub stats: Arc<PluginStats>,
    thread: JoinHandle<()>,
}

impl Worker {
    /// Start a worker thread for an initialised instance.
    pub fn start(
        context: WorkerContext,
        plugin: Arc<CompiledPlugin>,
        instance: PluginInstance,
        provenance: Provenance,
        config: Vec<(String, String)>,
        limits: Limits,
        queue_capacity: usize,
    ) -> std::io::Result<Worker> {
        let sequence = Sequence::open(&context.data_dir, &provenance.plugin)?;
        let (queue, receiver) = mpsc::channel(queue_capacity);
        let stats = Arc::new(PluginStats::default());
        let mut state = WorkerState {
            context,
            plugin,
            instance: Some(instance),
            provenance,
            config,
            limits,
            sequence,
            stats: stats.clone(),
        };
        let name = format!("plugin-{}", state.provenance.plugin);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || state.run(receiver))?;
        Ok(Worker { queue, stats, thread })
    }

    /// Wait for the worker to finish its queue (close the queue first by
    /// dropping every sender).
    pub fn join(self) {
        drop(self.queue);
        if self.thread.join().is_err() {
            tracing::error!("a plugin worker thread panicked");
        }
    }
}

struct WorkerState {
    context: WorkerContext,
    plugin: Arc<CompiledPlugin>,
    instance: Option<PluginInstance>,
    provenance: Provenance,
    config: Vec<(String, String)>,
    limits: Limits,
    sequence: Sequence,
    stats: Arc<PluginStats>,
}

impl WorkerState {
    fn run(&mut self, mut receiver: mpsc::Receiver<Work>) {
        while let Some(work) = receiver.blocking_recv() {
            let stats = self.stats.clone();
            let Some(instance) = self.instance_or_restart() else {
                // No instance: the work is dropped (counted in `errors` by the failed restart).
                continue;
            };
            let (result, done) = match work {
                Work::Readings(readings, done) => {
                    stats.readings_in.fetch_add(readings.len() as u64, Ordering::Relaxed);
                    (instance.on_readings(&readings), done)
                }
                Work::Tick(now_ms) => (instance.on_tick(now_ms), None),
            };
            let outputs = instance.take_outputs();
            self.emit(outputs);
            if let Err(error) = result {
                self.failed(error);
            }
            if let Some(done) = done {
                let _ = done.send(());
            }
        }
    }

    /// The instance, rebuilt if the last one failed.
    fn instance_or_restart(&mut self) -> Option<&mut PluginInstance> {
        if self.instance.is_none() {
            match PluginInstance::new(&self.context.runtime, &self.plugin, self.limits.clone())
                .and_then(|mut instance| instance.init(&self.config).map(|()| instance))
            {
                Ok(instance) => {
                    self.stats.restarts.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(plugin = %self.provenance.plugin, "Plugin instance restarted");
                    self.instance = Some(instance);
                }
                Err(error) => {
                    self.stats.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(plugin = %self.provenance.plugin, %error, "Plugin restart failed");
                }
            }
        }
        self.instance.as_mut()
    }

    fn failed(&mut self, error: PluginError) {
        self.stats.errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(plugin = %self.provenance.plugin, %error, "Plugin call failed");
        if error.kind.poisons() {
            // A Store is never reused after a trap: the next work builds a new one.
            self.instance = None;
        }
    }

    /// Alerts to the local bus at once; every output to the outbox, durably.
    fn emit(&mut self, outputs: Vec<Output>) {
        if outputs.is_empty() {
            return;
        }
        let plugin = self.provenance.plugin.clone();
        let mut entries = Vec::with_capacity(outputs.len());
        for output in &outputs {
            let seq = match self.sequence.next() {
                Ok(seq) => seq,
                Err(error) => {
                    self.stats.outbox_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(%plugin, %error, "Cannot reserve sequence numbers; output kept only locally");
                    continue;
                }
            };
            let line = to_json_line(&self.provenance, seq, output);
            let (kind, upstream_subject) = match output {
                Output::Alert(_) => {
                    self.stats.alerts_out.fetch_add(1, Ordering::Relaxed);
                    let subject = self.context.subjects.local_alerts(&plugin);
                    let publish = self.context.local.publish(subject, line.clone().into());
                    if let Err(error) = self.context.handle.block_on(publish) {
                        tracing::warn!(%plugin, %error, "Cannot publish an alert on the local bus");
                    }
                    (Kind::Alert, self.context.subjects.upstream_alerts(&plugin))
                }
                Output::Summary(_) => {
                    self.stats.summaries_out.fetch_add(1, Ordering::Relaxed);
                    (Kind::Summary, self.context.subjects.upstream_summaries(&plugin))
                }
            };
            entries.push(NewEntry {
                kind,
                subject: upstream_subject,
                msg_id: self.context.subjects.msg_id(&plugin, seq),
                payload: line.into_bytes(),
                created_ms: wall_ms(),
            });
        }
        let written = match self.context.outbox.lock() {
            Ok(mut outbox) => outbox.append_batch(entries).map(|_| ()),
            Err(_) => {
                tracing::error!(%plugin, "The outbox lock is poisoned");
                return;
            }
        };
        match written {
            Ok(()) => self.context.outbox_written.notify_one(),
            Err(error) => {
                self.stats
                    .outbox_failures
                    .fetch_add(outputs.len() as u64, Ordering::Relaxed);
                tracing::error!(%plugin, %error, "Cannot write outputs to the outbox");
            }
        }
    }
}

/// Wall-clock ms: when an output entered the outbox (its age in the status).
pub fn wall_ms() -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(now.as_millis()).unwrap_or(i64::MAX)
}
