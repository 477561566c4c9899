//! The one outbox connection of a running host, shared by the writer thread,
//! the upstream task, the expiry task and the status (under one mutex).

use std::sync::{Arc, Mutex};

use super::{Outbox, OutboxError};

/// The outbox as the tasks of a running host share it.
pub type SharedOutbox = Arc<Mutex<Outbox>>;

/// Run `operation` on the shared outbox off the async threads
/// (`spawn_blocking`): a poisoned lock and a failed task are outbox errors.
pub async fn with_outbox<T: Send + 'static>(
    outbox: &SharedOutbox,
    operation: impl FnOnce(&mut Outbox) -> Result<T, OutboxError> + Send + 'static,
) -> Result<T, OutboxError> {
    let outbox = outbox.clone();
    tokio::task::spawn_blocking(move || {
        let mut outbox = outbox.lock().map_err(|_| OutboxError::Poisoned)?;
        operation(&mut outbox)
    })
    .await
    .map_err(OutboxError::Task)?
}
