//! The host's own alerts (a bundle refused at start, an outbox reset, a
//! plugin's input lost, a host task ended): like a
//! plugin's, published on the local bus at once and stored in the outbox for
//! upstream, from the pseudo-plugin [`HOST`] (`edgewise.<device>.alerts._host`).
//! No plugin can take that name: plugin names start with a letter.

use crate::bus::local::LocalPublishError;
use crate::bus::{LocalBus, Subjects};
use crate::envelope::{Provenance, shortened_alert_line, to_json_line};
use crate::model::{Alert, Output, Severity};
use crate::outbox::{Committed, Kind, NewEntry, Sequence, WriterHandle, wall_ms};

/// The plugin name of the host's own alerts.
pub const HOST: &str = "_host";

/// The code of the host's alert when one of its own tasks ended before
/// shutdown in a way a clinician would lose something by (no more ticks, no
/// more upstream delivery).
pub const HOST_DEGRADED: &str = "host-degraded";

/// Sends the host's critical alerts.
pub struct HostAlerts {
    provenance: Provenance,
    subjects: Subjects,
    /// `None` if no sequence could be made at all (no random numbers): the
    /// alerts then go to the local bus only, never numbered.
    sequence: Option<Sequence>,
    /// Why the sequence state was renewed at start, until said.
    renewed: Option<String>,
    local: LocalBus,
    writer: WriterHandle,
}

impl HostAlerts {
    /// Alerts of this host, numbered in `data_dir` like a plugin's outputs,
    /// or in memory (`None`: the outbox is in memory, [`Sequence::in_memory`]).
    ///
    /// Never fails: a host that cannot number its alerts still publishes
    /// them on the local bus. A sequence state that cannot be used is
    /// renewed ([`Sequence::open_or_renew`], logged); one that cannot be
    /// written now (a full disk) numbers, and so stores, nothing until it can.
    pub fn new(
        subjects: &Subjects,
        data_dir: Option<&std::path::Path>,
        local: LocalBus,
        writer: WriterHandle,
    ) -> HostAlerts {
        let opened = match data_dir {
            Some(data_dir) => Sequence::open_or_renew(data_dir, HOST),
            None => Sequence::in_memory().map(|sequence| (sequence, None)),
        };
        let (sequence, renewed) = match opened {
            Ok((sequence, renewed)) => {
                if let Some(renewed) = &renewed {
                    tracing::error!("The host's alert numbers: {renewed}");
                }
                (Some(sequence), renewed)
            }
            Err(error) => {
                tracing::error!(%error, "Cannot number the host's alerts; they are only published locally");
                (None, None)
            }
        };
        HostAlerts {
            provenance: Provenance {
                device: subjects.device().to_owned(),
                plugin: HOST.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                digest: String::new(),
            },
            subjects: subjects.clone(),
            sequence,
            renewed,
            local,
            writer,
        }
    }

    /// Raise, once, the critical `host-degraded` that says the host's
    /// sequence state was damaged and renewed at start (an operator should
    /// look at the disk); nothing if it was not.
    pub async fn tell_renewed(&mut self, now_ms: i64) {
        if let Some(renewed) = self.renewed.take() {
            self.critical(HOST_DEGRADED, format!("the host's alert numbers: {renewed}"), now_ms)
                .await;
        }
    }

    /// A critical alert `code` with `message`, at `now_ms` (the host clock):
    /// on the local bus at once, and into the outbox.
    pub async fn critical(&mut self, code: &str, message: String, now_ms: i64) {
        let alert = Alert {
            sensor: String::new(),
            timestamp_ms: now_ms,
            severity: Severity::Critical,
            code: code.to_owned(),
            message,
            value: None,
        };
        let seq = match self.sequence.as_mut().map(Sequence::next) {
            Some(Ok(seq)) => seq,
            Some(Err(error)) => {
                tracing::error!(%error, "Cannot reserve a sequence number; the host alert is only published locally");
                0
            }
            None => 0,
        };
        let line = to_json_line(&self.provenance, seq, &Output::Alert(alert.clone()));
        let full_bytes = line.len();
        let shorten = |max_bytes| shortened_alert_line(&self.provenance, seq, &alert, full_bytes, max_bytes);
        match self
            .local
            .publish_alert(self.subjects.local_alerts(HOST), line.clone(), shorten)
            .await
        {
            Ok(()) | Err(LocalPublishError::Stalled) => {} // Said once, when it stalled.
            Err(error) => tracing::warn!(%error, "Cannot publish a host alert on the local bus"),
        }
        let Some(sequence) = self.sequence.as_ref().filter(|_| seq != 0) else {
            return;
        };
        let entry = NewEntry {
            kind: Kind::Alert,
            plugin: HOST.to_owned(),
            subject: self.subjects.upstream_alerts(HOST),
            msg_id: self.subjects.msg_id(sequence.incarnation(), HOST, seq),
            payload: line.into_bytes(),
            created_ms: wall_ms(),
        };
        let then: Committed = Box::new(|outcome| {
            if let Err(error) = outcome {
                tracing::error!(%error, "Cannot write a host alert to the outbox");
            }
        });
        if let Err(error) = self.writer.submit(vec![entry], then) {
            tracing::error!(%error, "Cannot write a host alert to the outbox");
        }
    }
}
