//! The host's own alerts (a bundle refused at start, an outbox reset, a
//! plugin's input lost, a host task ended): like a
//! plugin's, published on the local bus at once and stored in the outbox for
//! upstream, from the pseudo-plugin [`HOST`] (`edgewise.<device>.alerts._host`).
//! No plugin can take that name: plugin names start with a letter.

use crate::bus::Subjects;
use crate::envelope::{Provenance, to_json_line};
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
    sequence: Sequence,
    local: async_nats::Client,
    writer: WriterHandle,
}

impl HostAlerts {
    /// Alerts of this host, numbered in `data_dir` like a plugin's outputs.
    pub fn new(
        subjects: &Subjects,
        data_dir: &std::path::Path,
        local: async_nats::Client,
        writer: WriterHandle,
    ) -> std::io::Result<HostAlerts> {
        Ok(HostAlerts {
            provenance: Provenance {
                device: subjects.device().to_owned(),
                plugin: HOST.to_owned(),
                version: env!("CARGO_PKG_VERSION").to_owned(),
                digest: String::new(),
            },
            subjects: subjects.clone(),
            sequence: Sequence::open(data_dir, HOST)?,
            local,
            writer,
        })
    }

    /// A critical alert `code` with `message`, at `now_ms` (the host clock):
    /// on the local bus at once, and into the outbox.
    pub async fn critical(&mut self, code: &str, message: String, now_ms: i64) {
        let alert = Output::Alert(Alert {
            sensor: String::new(),
            timestamp_ms: now_ms,
            severity: Severity::Critical,
            code: code.to_owned(),
            message,
            value: None,
        });
        let seq = match self.sequence.next() {
            Ok(seq) => seq,
            Err(error) => {
                tracing::error!(%error, "Cannot reserve a sequence number; the host alert is only published locally");
                0
            }
        };
        let line = to_json_line(&self.provenance, seq, &alert);
        if let Err(error) = self
            .local
            .publish(self.subjects.local_alerts(HOST), line.clone().into())
            .await
        {
            tracing::warn!(%error, "Cannot publish a host alert on the local bus");
        }
        if seq == 0 {
            return;
        }
        let entry = NewEntry {
            kind: Kind::Alert,
            plugin: HOST.to_owned(),
            subject: self.subjects.upstream_alerts(HOST),
            msg_id: self.subjects.msg_id(self.sequence.incarnation(), HOST, seq),
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
