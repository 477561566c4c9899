//! What the status of a running host is gathered from ([`StatusSources`]):
//! the clock, the outbox, ingest, the upstream task, every plugin's worker
//! and input, and the host's own tasks. `bus::status` answers with it.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::bus::Subjects;
use crate::bus::admission::DeadLetterKind;
use crate::bus::ingest::{IngestHealth, IngestStats};
use crate::bus::status::{
    ControlStats, ControlStatus, IngestStatus, OutboxDrops, OutboxParked, OutboxStatus, PluginStatus, Status,
    bounded_error,
};
use crate::bus::violations::{SubscriptionLimit, Violations};
use crate::clock::Clock;
use crate::metrics::{OldestWaiting, PluginCalls, Scrape};
use crate::outbox::upstream::UpstreamStats;
use crate::outbox::{DropCounts, Kind, ParkedCounts, SharedOutbox, WriterStats, wall_ms};
use crate::worker::PluginStats;
use crate::worker::call_times::Call;

/// One plugin as the status shows it.
pub struct PluginSource {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Code digest (empty for a refused bundle).
    pub digest: String,
    /// Its worker's counters.
    pub stats: Arc<PluginStats>,
    /// Whether its input flows (`None` for a refused bundle).
    pub input: Option<Arc<IngestHealth>>,
}

/// Everything the status is computed from.
pub struct StatusSources {
    /// Subjects.
    pub subjects: Subjects,
    /// Start time.
    pub started: Instant,
    /// The host clock.
    pub clock: Clock,
    /// Upstream connection state and failed rounds.
    pub upstream: Arc<UpstreamStats>,
    /// The outbox.
    pub outbox: SharedOutbox,
    /// Why the outbox was reset at start, if it was.
    pub outbox_reset: Option<String>,
    /// Why the outbox is in memory, if it is.
    pub outbox_in_memory: Option<String>,
    /// What the outbox writer holds while the disk refuses writes.
    pub writer: Arc<WriterStats>,
    /// Ingest counters.
    pub ingest: Arc<IngestStats>,
    /// Control subject counters.
    pub control: Arc<ControlStats>,
    /// Plugins, those refused at start included (the set changes with deployments).
    pub plugins: Arc<Mutex<Vec<PluginSource>>>,
    /// Host tasks that ended before shutdown, and why (by their owner).
    pub tasks: Arc<Mutex<BTreeMap<String, String>>>,
    /// The generation of each desired-set key, as deployment last read it.
    pub generations: Arc<Mutex<BTreeMap<String, u64>>>,
    /// The publishes the local server refused.
    pub refused_publishes: Arc<Violations>,
    /// The subscriptions the local server refused past its limit.
    pub subscription_limit: Arc<SubscriptionLimit>,
}

impl StatusSources {
    /// The current status.
    pub fn status(&self) -> Status {
        let (depth, oldest, dropped, parked) = match self.outbox.lock() {
            Ok(outbox) => (
                outbox.depth().ok(),
                outbox.oldest_created_ms().ok().flatten(),
                outbox.dropped().into(),
                outbox.parked_counts().into(),
            ),
            Err(_) => (None, None, OutboxDrops::default(), OutboxParked::default()),
        };
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Status {
            device: self.subjects.device().to_owned(),
            uptime_s: self.started.elapsed().as_secs_f64(),
            clock_ms: self.clock.now_ms(),
            upstream_connected: self.upstream.connected.load(Ordering::Relaxed),
            outbox: OutboxStatus {
                alerts: depth.as_ref().map_or(0, |d| d.alerts),
                summaries: depth.as_ref().map_or(0, |d| d.summaries),
                telemetry: depth.as_ref().map_or(0, |d| d.telemetry),
                oldest_age_ms: oldest.map(|created| wall_ms().saturating_sub(created).max(0)),
                dropped,
                reset: self.outbox_reset.clone(),
                in_memory: self.outbox_in_memory.clone(),
                parked,
                rounds_failed: self.upstream.rounds_failed.load(Ordering::Relaxed),
                waiting_for_disk: self.writer.waiting_entries.load(Ordering::Relaxed),
            },
            ingest: IngestStatus {
                messages: load(&self.ingest.messages),
                deadlettered: load(&self.ingest.deadlettered),
                deadletters_by_reason: DeadLetterKind::ALL
                    .iter()
                    .zip(&self.ingest.by_reason)
                    .map(|(kind, counter)| (kind.as_str().to_owned(), load(counter)))
                    .filter(|(_, count)| *count > 0)
                    .collect(),
                dropped_by_client: load(&self.ingest.dropped_by_client),
                held_for_clock: load(&self.ingest.held_for_clock),
            },
            plugins: self
                .plugins
                .lock()
                .map(|plugins| plugins.iter().map(plugin_status).collect())
                .unwrap_or_default(),
            control: ControlStatus {
                status_refused: load(&self.control.status_refused),
            },
            tasks: self.tasks.lock().map(|tasks| tasks.clone()).unwrap_or_default(),
            log_lines_dropped: crate::log_output::lines_dropped(),
            local_publishes_dropped: crate::bus::local::publishes_dropped(),
            local_publishes_refused: self.refused_publishes.mark(),
            local_alerts_shortened: crate::bus::local::alerts_shortened(),
            local_subscriptions_over_limit: self.subscription_limit.count(),
        }
    }
}

impl StatusSources {
    /// What the metrics endpoint shows: the status, and the call durations
    /// of every plugin that keeps them.
    pub fn scrape(&self) -> Scrape {
        let status = self.status();
        let calls = self
            .plugins
            .lock()
            .map(|plugins| {
                plugins
                    .iter()
                    .filter_map(|plugin| {
                        let times = plugin.stats.call_times.as_ref()?;
                        Some(PluginCalls {
                            plugin: plugin.name.clone(),
                            calls: Call::ALL.iter().map(|&call| (call, times.read(call))).collect(),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        let oldest_ms = self
            .outbox
            .lock()
            .map(|outbox| {
                let now = wall_ms();
                let waited = |kind| {
                    let created = outbox.first_waiting_created_ms(kind).ok().flatten()?;
                    Some(now.saturating_sub(created).max(0))
                };
                OldestWaiting {
                    alerts: waited(Kind::Alert),
                    summaries: waited(Kind::Summary),
                }
            })
            .unwrap_or_default();
        let generations = self.generations.lock().map(|g| g.clone()).unwrap_or_default();
        Scrape {
            status,
            calls,
            oldest_ms,
            generations,
        }
    }
}

/// The status of one plugin: its worker's health, unless its input is gone
/// (`degraded`, with the reason).
fn plugin_status(plugin: &PluginSource) -> PluginStatus {
    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let stats = &plugin.stats;
    let health = stats.health.lock().map(|h| h.clone()).unwrap_or_default();
    let mut failures: BTreeMap<String, u64> = health
        .failures
        .iter()
        .map(|(reason, count)| ((*reason).to_owned(), *count))
        .collect();
    let (mut state, mut last_error) = (health.state.to_owned(), health.last_error);
    // A deployment changes what runs; the worker says what that is now.
    let (version, digest) = stats
        .running
        .lock()
        .ok()
        .and_then(|running| running.clone())
        .unwrap_or_else(|| (plugin.version.clone(), plugin.digest.clone()));
    if let Some(input) = &plugin.input {
        let lost = load(&input.failures);
        if lost > 0 {
            failures.insert("ingest".to_owned(), lost);
        }
        if let Some(reason) = input.lost_reason() {
            state = "degraded".to_owned();
            last_error = Some(reason);
        }
    }
    PluginStatus {
        name: plugin.name.clone(),
        version,
        digest,
        state,
        readings_in: load(&stats.readings_in),
        alerts_out: load(&stats.alerts_out),
        summaries_out: load(&stats.summaries_out),
        errors: load(&stats.errors),
        restarts: load(&stats.restarts),
        quarantines: load(&stats.quarantines),
        failures,
        last_error: last_error.as_deref().map(bounded_error),
        readings_held: load(&stats.readings_held),
        readings_dropped: load(&stats.readings_dropped),
        logs_dropped: load(&stats.logs_dropped),
        wakes_deferred: load(&stats.wakes_deferred),
        outbox_failures: load(&stats.outbox_failures),
        recoveries: load(&stats.recoveries),
        inputs_set_aside: load(&stats.inputs_set_aside),
        snapshot_failures: load(&stats.snapshot_failures),
        snapshots_saved: load(&stats.snapshots_saved),
        state_lost: load(&stats.state_lost),
        outputs_flagged: load(&stats.outputs_flagged),
    }
}

/// Parked counts as the status shows them.
impl From<ParkedCounts> for OutboxParked {
    fn from(parked: ParkedCounts) -> OutboxParked {
        OutboxParked {
            too_large: parked.too_large,
            permission_denied: parked.permission_denied,
            refused: parked.refused,
            entries: parked.entries,
        }
    }
}

/// Drop counts as the status shows them.
impl From<DropCounts> for OutboxDrops {
    fn from(drops: DropCounts) -> OutboxDrops {
        OutboxDrops {
            summaries_for_space: drops.summaries_for_space,
            summaries_refused: drops.summaries_refused,
            alerts_for_space: drops.alerts_for_space,
            expired_alerts: drops.expired_alerts,
            expired_summaries: drops.expired_summaries,
            undecryptable: drops.undecryptable,
            parked_discarded: drops.parked_discarded,
            inputs_expired: drops.inputs_expired,
            inputs_for_space: drops.inputs_for_space,
            telemetry: drops.telemetry,
        }
    }
}
