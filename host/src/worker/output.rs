//! Where a plugin's outputs go: alerts to the local bus at once, every
//! output numbered ([`Sequence`]) and handed to the outbox writer, which
//! makes it durable and only then counts it as emitted.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::PluginStats;
use crate::bus::Subjects;
use crate::envelope::{Provenance, to_json_line};
use crate::model::Output;
use crate::outbox::{Committed, Kind, NewEntry, Sequence, WriterHandle, wall_ms};

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

    /// The `Nats-Msg-Id` of output `seq` (as [`Subjects::msg_id`]).
    fn msg_id(&self, seq: u64) -> String {
        use std::fmt::Write;
        let mut id = String::with_capacity(self.msg_id_prefix.len() + 20);
        id.push_str(&self.msg_id_prefix);
        let _ = write!(id, "{seq}");
        id
    }
}

/// Emits the outputs of one plugin.
pub(super) struct Emitter {
    /// Who the outputs are from.
    pub(super) provenance: Provenance,
    routes: Routes,
    sequence: Sequence,
    local: async_nats::Client,
    handle: tokio::runtime::Handle,
    writer: WriterHandle,
    stats: Arc<PluginStats>,
}

impl Emitter {
    /// The emitter of `provenance`'s outputs, numbered by `sequence`.
    pub(super) fn new(
        provenance: Provenance,
        subjects: &Subjects,
        sequence: Sequence,
        local: async_nats::Client,
        handle: tokio::runtime::Handle,
        writer: WriterHandle,
        stats: Arc<PluginStats>,
    ) -> Emitter {
        let routes = Routes::new(subjects, sequence.incarnation(), &provenance.plugin);
        Emitter {
            provenance,
            routes,
            sequence,
            local,
            handle,
            writer,
            stats,
        }
    }

    /// Tell `done` once every output handed to the writer so far (those of
    /// this work included) has been committed, if `stored` then says that
    /// every output of this work was numbered and written: the writer runs
    /// continuations in order. Otherwise, or if the writer has stopped, `done`
    /// is dropped unsent: JetStream ingest leaves the messages unacknowledged
    /// and the stream delivers them again.
    pub(super) fn after_commit(&self, done: tokio::sync::oneshot::Sender<()>, stored: Arc<AtomicBool>) {
        let then: Committed = Box::new(move |_| {
            if stored.load(Ordering::Acquire) {
                let _ = done.send(());
            }
        });
        if self.writer.submit(Vec::new(), then).is_err() {
            tracing::error!(plugin = %self.provenance.plugin, "The outbox writer has stopped");
        }
    }

    /// Alerts to the local bus at once; every output to the outbox writer,
    /// which makes them durable and only then counts them as emitted.
    ///
    /// Returns whether every output was stored: false at once if one got no
    /// sequence number (an alert is still published locally, with `seq` 0),
    /// set false by the writer if the write fails. Read it in a continuation
    /// submitted after this one ([`Emitter::after_commit`]).
    pub(super) fn emit(&mut self, outputs: Vec<Output>) -> Arc<AtomicBool> {
        let stored = Arc::new(AtomicBool::new(true));
        if outputs.is_empty() {
            return stored;
        }
        let plugin = &self.provenance.plugin;
        let mut entries = Vec::with_capacity(outputs.len());
        let (mut alerts, mut summaries) = (0u64, 0u64);
        let mut unnumbered = 0u64;
        let mut last_error = None;
        for output in &outputs {
            let seq = match self.sequence.next() {
                Ok(seq) => Some(seq),
                Err(error) => {
                    unnumbered += 1;
                    last_error = Some(error);
                    None
                }
            };
            // 0 is never a sequence number (they start at 1): "not numbered".
            let line = to_json_line(&self.provenance, seq.unwrap_or(0), output);
            if let Output::Alert(_) = output {
                // The local alert path does not depend on the disk.
                let subject = self.routes.local_alerts.clone();
                let publish = self.local.publish(subject, line.clone().into());
                if let Err(error) = self.handle.block_on(publish) {
                    tracing::warn!(%plugin, %error, "Cannot publish an alert on the local bus");
                }
            }
            let Some(seq) = seq else { continue };
            let (kind, upstream_subject) = match output {
                Output::Alert(_) => {
                    alerts += 1;
                    (Kind::Alert, self.routes.upstream_alerts.clone())
                }
                Output::Summary(_) => {
                    summaries += 1;
                    (Kind::Summary, self.routes.upstream_summaries.clone())
                }
            };
            entries.push(NewEntry {
                kind,
                plugin: plugin.clone(),
                subject: upstream_subject,
                msg_id: self.routes.msg_id(seq),
                payload: line.into_bytes(),
                created_ms: wall_ms(),
            });
        }
        if let Some(error) = last_error {
            // One line per call, however many outputs it had.
            stored.store(false, Ordering::Release);
            self.stats.sequence_failures.fetch_add(unnumbered, Ordering::Relaxed);
            tracing::error!(
                %plugin,
                %error,
                unnumbered,
                "Cannot reserve sequence numbers: these outputs are not stored for upstream \
                 (alerts were still published locally with seq 0, summaries are dropped); the input is not acknowledged"
            );
        }
        if entries.is_empty() {
            return stored;
        }
        let stats = self.stats.clone();
        let who = plugin.clone();
        let written = stored.clone();
        let then: Committed = Box::new(move |outcome| match outcome {
            Ok(_) => {
                stats.alerts_out.fetch_add(alerts, Ordering::Relaxed);
                stats.summaries_out.fetch_add(summaries, Ordering::Relaxed);
            }
            Err(error) => {
                written.store(false, Ordering::Release);
                stats.outbox_failures.fetch_add(alerts + summaries, Ordering::Relaxed);
                tracing::error!(plugin = %who, %error, "Cannot write outputs to the outbox");
            }
        });
        if let Err(error) = self.writer.submit(entries, then) {
            stored.store(false, Ordering::Release);
            self.stats
                .outbox_failures
                .fetch_add(alerts + summaries, Ordering::Relaxed);
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
