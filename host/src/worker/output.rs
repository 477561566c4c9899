//! Where a plugin's outputs go: alerts to the local bus at once, every
//! output numbered (its count among the plugin's outputs) and handed to the
//! outbox writer with the plugin's journal records, which makes them durable
//! and only then counts them as emitted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::PluginStats;
use crate::bus::local::LocalPublishError;
use crate::bus::{LocalBus, Subjects};
use crate::envelope::{Provenance, plugin_output_line, shortened_alert_line, to_json_line};
use crate::model::{Alert, Output};
use crate::outbox::{Append, Committed, JournalWrite, Kind, NewEntry, PluginJournal, Record, WriterHandle, wall_ms};
use crate::output_check::Problems;

/// Where a plugin's outputs go, made once per worker.
pub(super) struct Routes {
    /// Local bus subject of its alerts.
    local_alerts: async_nats::Subject,
    /// Upstream subject of its alerts.
    upstream_alerts: String,
    /// Upstream subject of its summaries.
    upstream_summaries: String,
    /// `<device>/<incarnation>/<plugin>/`: a message id is this and the sequence number.
    msg_id_prefix: String,
}

impl Routes {
    fn new(subjects: &Subjects, incarnation: &str, plugin: &str) -> Routes {
        let msg_id_prefix = subjects.msg_id(incarnation, plugin, 0);
        let msg_id_prefix = msg_id_prefix.strip_suffix('0').unwrap_or(&msg_id_prefix).to_owned();
        Routes {
            local_alerts: async_nats::Subject::from(subjects.local_alerts(plugin)),
            upstream_alerts: subjects.upstream_alerts(plugin),
            upstream_summaries: subjects.upstream_summaries(plugin),
            msg_id_prefix,
        }
    }

    /// The `Nats-Msg-Id` of the host's alert number `n` about the plugin.
    fn host_msg_id(&self, n: u64) -> String {
        format!("{}host-{n}", self.msg_id_prefix)
    }

    /// The `Nats-Msg-Id` of output `seq` (as [`Subjects::msg_id`]).
    fn msg_id(&self, seq: u64) -> String {
        use std::fmt::Write;
        let mut id = String::with_capacity(self.msg_id_prefix.len() + 20);
        id.push_str(&self.msg_id_prefix);
        let _ = write!(id, "{seq}");
        id
    }
}

/// Emits the outputs of one plugin, numbered.
///
/// Output numbers (`seq`, and the `Nats-Msg-Id`) count the plugin's outputs:
/// the n-th output the plugin ever made is number n, whatever the crashes and
/// restarts in between, because recovery makes the same outputs again in the
/// same order (see `recovery`). An output whose number was emitted already
/// (at most `emitted_high`, made again by a recovery) is not emitted twice.
/// The host's own alerts about the plugin are numbered apart (`host-<n>` in
/// the message id, `seq` 0 in the envelope): they are not the plugin's
/// outputs, and recovery does not make them again.
pub(super) struct Emitter {
    /// Who the outputs are from.
    pub(super) provenance: Provenance,
    routes: Routes,
    /// The number of the next output the plugin makes.
    next_seq: u64,
    /// The highest number emitted (or found stored at start).
    emitted_high: u64,
    /// The highest host-alert number used.
    host_seq: u64,
    /// Outputs emitted with problems, and which, not yet told
    /// ([`Emitter::take_flagged`]).
    flagged: (u64, Problems),
    local: LocalBus,
    handle: tokio::runtime::Handle,
    writer: WriterHandle,
    stats: Arc<PluginStats>,
}

impl Emitter {
    /// The emitter of `provenance`'s outputs, numbered on from what `journal`
    /// says was stored.
    pub(super) fn new(
        provenance: Provenance,
        subjects: &Subjects,
        journal: &PluginJournal,
        local: LocalBus,
        handle: tokio::runtime::Handle,
        writer: WriterHandle,
        stats: Arc<PluginStats>,
    ) -> Emitter {
        let routes = Routes::new(subjects, &journal.incarnation, &provenance.plugin);
        Emitter {
            provenance,
            routes,
            next_seq: journal.high_seq + 1,
            emitted_high: journal.high_seq,
            host_seq: journal.host_seq,
            flagged: (0, Problems::default()),
            local,
            handle,
            writer,
            stats,
        }
    }

    /// The number of the plugin's next output.
    pub(super) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// A recovery starts: the plugin's next output is number `next_seq`
    /// again (those up to the highest emitted are not emitted twice).
    pub(super) fn rewind(&mut self, next_seq: u64) {
        self.next_seq = next_seq;
    }

    /// The number after every one used: where a version that did not make
    /// the outputs numbered so far numbers its own (a rollback).
    pub(super) fn after_highest(&self) -> u64 {
        self.next_seq.max(self.emitted_high + 1)
    }

    /// Told once everything handed to the writer so far has been committed
    /// or given up (the writer runs continuations in order), without
    /// waiting for it: while the disk refuses writes they wait in the
    /// writer, and the plugin must go on making (and publishing) alerts.
    /// Disconnected without a message if the continuation is dropped unrun
    /// (the writer has stopped).
    pub(super) fn committed(&self) -> std::sync::mpsc::Receiver<()> {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let then: Committed = Box::new(move |_| {
            let _ = sender.send(());
        });
        // A writer that has stopped drops `then`, and with it the sender.
        let _ = self.writer.submit(Vec::new(), then);
        receiver
    }

    /// A recovery ended (or the plugin starts afresh): numbers go on after
    /// every number already used, so none is ever used for two outputs. (They
    /// skip only when the recovered plugin made fewer outputs than before: an
    /// input set aside.)
    pub(super) fn resume(&mut self) {
        self.next_seq = self.next_seq.max(self.emitted_high + 1);
    }

    /// Tell `done` once every output handed to the writer so far (those of
    /// this work included) has been committed, if every flag of `stored`
    /// then says that the outputs it stands for were written (this work's,
    /// and those of the first delivery of messages delivered again): the writer runs continuations
    /// in order. Otherwise, or if the writer has stopped, `done` is dropped
    /// unsent: JetStream ingest leaves the messages unacknowledged and the
    /// stream delivers them again.
    pub(super) fn after_commit(&self, done: tokio::sync::oneshot::Sender<()>, stored: Vec<Arc<AtomicBool>>) {
        let then: Committed = Box::new(move |_| {
            if stored.iter().all(|stored| stored.load(Ordering::Acquire)) {
                let _ = done.send(());
            }
        });
        if self.writer.submit(Vec::new(), then).is_err() {
            tracing::error!(plugin = %self.provenance.plugin, "The outbox writer has stopped");
        }
    }

    /// Alerts to the local bus at once; every output, with `records` for the
    /// plugin's journal, to the outbox writer, which makes them durable and
    /// only then counts them as emitted.
    ///
    /// Returns whether everything was stored: set false by the writer if the
    /// write fails. Read it in a continuation submitted after this one
    /// ([`Emitter::after_commit`]).
    pub(super) fn emit(&mut self, outputs: Vec<Output>, mut records: Vec<Record>) -> Arc<AtomicBool> {
        let mut entries = Vec::with_capacity(outputs.len());
        let (mut alerts, mut summaries) = (0u64, 0u64);
        for output in &outputs {
            let seq = self.next_seq;
            self.next_seq += 1;
            if seq <= self.emitted_high {
                continue; // Made again by a recovery: emitted already.
            }
            self.emitted_high = seq;
            let (line, problems) = plugin_output_line(&self.provenance, seq, output);
            if !problems.is_empty() {
                self.flagged.0 += 1;
                self.flagged.1 = self.flagged.1.union(problems);
                self.stats.outputs_flagged.fetch_add(1, Ordering::Relaxed);
            }
            match output {
                Output::Alert(_) => alerts += 1,
                Output::Summary(_) => summaries += 1,
            }
            entries.push(self.entry(output, seq, self.routes.msg_id(seq), line));
        }
        if !entries.is_empty() {
            records.push(self.numbered());
        }
        self.submit(entries, records, alerts, summaries)
    }

    /// The outputs emitted with problems since the last call, and which
    /// problems they had (the worker tells the operator, at most hourly).
    pub(super) fn take_flagged(&mut self) -> (u64, Problems) {
        std::mem::take(&mut self.flagged)
    }

    /// An alert of the host about the plugin: to the local bus at once, and
    /// to the outbox, numbered apart from the plugin's outputs.
    pub(super) fn emit_host(&mut self, alert: Alert) {
        self.host_seq += 1;
        let output = Output::Alert(alert);
        let line = to_json_line(&self.provenance, 0, &output);
        let entry = self.entry(&output, 0, self.routes.host_msg_id(self.host_seq), line);
        let records = vec![self.numbered()];
        self.submit(vec![entry], records, 1, 0);
    }

    /// Records for the plugin's journal alone (a saved state, an input set
    /// aside); a saved state that cannot be written counts as a snapshot
    /// failure. Returns whether they were stored, as [`Emitter::emit`].
    pub(super) fn journal(&mut self, records: Vec<Record>) -> Arc<AtomicBool> {
        self.submit(Vec::new(), records, 0, 0)
    }

    /// The record of the numbers used so far.
    fn numbered(&self) -> Record {
        Record::Numbered {
            high_seq: self.emitted_high,
            host_seq: self.host_seq,
        }
    }

    /// The outbox entry of `output`, numbered `seq` in its line (an alert is
    /// published locally first: the local alert path does not depend on the
    /// disk).
    fn entry(&self, output: &Output, seq: u64, msg_id: String, line: String) -> NewEntry {
        let plugin = &self.provenance.plugin;
        let (kind, subject) = match output {
            Output::Alert(alert) => {
                let subject = self.routes.local_alerts.clone();
                let full_bytes = line.len();
                let shorten = |max_bytes| shortened_alert_line(&self.provenance, seq, alert, full_bytes, max_bytes);
                // At most `PUBLISH_WAIT`: the outbox (upstream) and the
                // plugin's next input must not wait for a local server away.
                let publish = self.local.publish_alert(subject, line.clone(), shorten);
                match self.handle.block_on(publish) {
                    Ok(()) | Err(LocalPublishError::Stalled) => {} // Said once, when it stalled.
                    Err(error) => tracing::warn!(%plugin, %error, "Cannot publish an alert on the local bus"),
                }
                (Kind::Alert, self.routes.upstream_alerts.clone())
            }
            Output::Summary(_) => (Kind::Summary, self.routes.upstream_summaries.clone()),
        };
        NewEntry {
            kind,
            plugin: plugin.clone(),
            subject,
            msg_id,
            payload: line.into_bytes(),
            created_ms: wall_ms(),
        }
    }

    fn submit(&mut self, entries: Vec<NewEntry>, records: Vec<Record>, alerts: u64, summaries: u64) -> Arc<AtomicBool> {
        let stored = Arc::new(AtomicBool::new(true));
        if entries.is_empty() && records.is_empty() {
            return stored;
        }
        let plugin = &self.provenance.plugin;
        let stats = self.stats.clone();
        let who = plugin.clone();
        let written = stored.clone();
        let states = records.iter().filter(|r| matches!(r, Record::State(_))).count() as u64;
        let then: Committed = Box::new(move |outcome| match outcome {
            Ok(_) => {
                stats.alerts_out.fetch_add(alerts, Ordering::Relaxed);
                stats.summaries_out.fetch_add(summaries, Ordering::Relaxed);
                stats.snapshots_saved.fetch_add(states, Ordering::Relaxed);
            }
            Err(error) => {
                written.store(false, Ordering::Release);
                stats.outbox_failures.fetch_add(alerts + summaries, Ordering::Relaxed);
                stats.snapshot_failures.fetch_add(states, Ordering::Relaxed);
                tracing::error!(plugin = %who, %error, "Cannot write outputs and the input log to the outbox");
            }
        });
        let append = Append {
            journal: (!records.is_empty()).then(|| JournalWrite {
                plugin: plugin.clone(),
                records,
            }),
            entries,
        };
        if let Err(error) = self.writer.submit_with(append, then) {
            stored.store(false, Ordering::Release);
            self.stats
                .outbox_failures
                .fetch_add(alerts + summaries, Ordering::Relaxed);
            self.stats.snapshot_failures.fetch_add(states, Ordering::Relaxed);
            tracing::error!(%plugin, %error, "Cannot write outputs to the outbox");
        }
        stored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_name_what_subjects_name() {
        let subjects = Subjects::new("edge-01");
        let incarnation = "0123456789abcdef0123456789abcdef";
        let routes = Routes::new(&subjects, incarnation, "glucose-monitor");
        for seq in [0, 1, 10, 12_345, u64::MAX] {
            assert_eq!(routes.msg_id(seq), subjects.msg_id(incarnation, "glucose-monitor", seq));
        }
        assert_eq!(routes.msg_id(7), format!("edge-01/{incarnation}/glucose-monitor/7"));
        assert_eq!(routes.local_alerts.as_str(), subjects.local_alerts("glucose-monitor"));
        assert_eq!(routes.upstream_alerts, subjects.upstream_alerts("glucose-monitor"));
        assert_eq!(
            routes.upstream_summaries,
            subjects.upstream_summaries("glucose-monitor")
        );
    }
}
