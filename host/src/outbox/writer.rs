//! [`Writer`]: the outbox's group commit. One thread takes appends from every
//! producer and commits whatever has queued up in one transaction, so one
//! fsync makes many producers' outputs durable at once and no producer waits
//! for the disk before its next piece of work.
//!
//! Each append comes with a continuation ([`Committed`]) that runs on the
//! writer thread once its entries are committed and fsynced (or failed):
//! that is where a producer counts its outputs or acknowledges the input that
//! made them. Continuations run in submission order, so a continuation
//! submitted with no entries runs only after every earlier append is durable.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::entry::NewEntry;
use super::error::OutboxError;
use super::store::{Append, Outbox};

/// Entries committed in one transaction at most; more wait for the next one.
const MAX_GROUP_ENTRIES: usize = 8192;

/// How long the writer sleeps after the first append of a group before it
/// takes what has queued up and commits. Producers never wait for it (only
/// their continuations do: a JetStream acknowledgement comes up to this much
/// later). In exchange, fewer, larger transactions cost the machine much
/// less (each commit rewrites the touched pages into the WAL and fsyncs),
/// and appends made while the writer sleeps do not wake it: no system call
/// on the producer's side.
const LINGER: Duration = Duration::from_millis(1);

/// What an append became: the ids (`None` for a refused summary, as
/// [`Outbox::append_batch`]) once committed and fsynced, or why it failed.
pub type Outcome<'a> = Result<&'a [Option<u64>], &'a OutboxError>;

/// Runs on the writer thread once an append is durable (or has failed).
pub type Committed = Box<dyn FnOnce(Outcome<'_>) + Send>;

/// One append waiting for the writer.
struct Job {
    append: Append,
    then: Committed,
}

/// The writer thread has stopped (or was never started): nothing was stored.
#[derive(Debug, thiserror::Error)]
#[error("the outbox writer has stopped; the outputs were not stored")]
pub struct WriterStopped;

/// The group-commit thread of an outbox. [`Writer::join`] waits until every
/// append submitted before is committed.
pub struct Writer {
    sender: SyncSender<Job>,
    thread: JoinHandle<()>,
}

/// Submits appends to a [`Writer`]; cheap to clone, one per producer.
#[derive(Clone)]
pub struct WriterHandle {
    sender: SyncSender<Job>,
}

impl std::fmt::Debug for WriterHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterHandle").finish_non_exhaustive()
    }
}

impl Writer {
    /// Start the writer thread on `outbox`. At most `capacity` appends wait
    /// for it; beyond that [`WriterHandle::submit`] blocks (backpressure: the
    /// producers never run further ahead of the disk than that). `written`
    /// runs after each commit that stored something.
    pub fn start(
        outbox: Arc<Mutex<Outbox>>,
        capacity: usize,
        written: impl Fn() + Send + 'static,
    ) -> std::io::Result<Writer> {
        let (sender, receiver) = sync_channel(capacity.max(1));
        let thread = std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || run(&outbox, &receiver, &written))?;
        Ok(Writer { sender, thread })
    }

    /// A handle to submit appends with.
    pub fn handle(&self) -> WriterHandle {
        WriterHandle {
            sender: self.sender.clone(),
        }
    }

    /// Wait for the writer to commit everything submitted and stop. Drop every
    /// [`WriterHandle`] first: the writer stops once they are all gone.
    pub fn join(self) {
        drop(self.sender);
        if self.thread.join().is_err() {
            tracing::error!("the outbox writer thread panicked");
        }
    }
}

impl WriterHandle {
    /// Queue `entries` for the next group commit; `then` runs on the writer
    /// thread once they are durable (or failed), after the continuations of
    /// every earlier append. Blocks while the writer's queue is full.
    ///
    /// On [`WriterStopped`], `then` is dropped without running.
    pub fn submit(&self, entries: Vec<NewEntry>, then: Committed) -> Result<(), WriterStopped> {
        self.submit_with(Append { journal: None, entries }, then)
    }

    /// As [`WriterHandle::submit`], with what the entries add to a plugin's
    /// journal: stored in the same transaction, all or nothing.
    pub fn submit_with(&self, append: Append, then: Committed) -> Result<(), WriterStopped> {
        let job = Job { append, then };
        match self.sender.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => self.sender.send(job).map_err(|_| WriterStopped),
            Err(TrySendError::Disconnected(_)) => Err(WriterStopped),
        }
    }
}

/// The writer loop: take what has queued up, commit it at once, report.
fn run(outbox: &Mutex<Outbox>, receiver: &Receiver<Job>, written: &dyn Fn()) {
    while let Ok(first) = receiver.recv() {
        std::thread::sleep(LINGER);
        let mut queued = job_size(&first);
        let mut jobs = vec![first];
        while queued < MAX_GROUP_ENTRIES {
            match receiver.try_recv() {
                Ok(job) => {
                    queued += job_size(&job);
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        commit(outbox, jobs, written);
    }
}

/// Rows a job writes.
fn job_size(job: &Job) -> usize {
    job.append.entries.len() + job.append.journal.as_ref().map_or(0, |j| j.records.len())
}

/// Commit `jobs` in one transaction and run their continuations in order.
fn commit(outbox: &Mutex<Outbox>, jobs: Vec<Job>, written: &dyn Fn()) {
    let (groups, continuations): (Vec<Append>, Vec<Committed>) =
        jobs.into_iter().map(|job| (job.append, job.then)).unzip();
    if groups.iter().all(|g| g.entries.is_empty() && g.journal.is_none()) {
        continuations.into_iter().for_each(|then| then(Ok(&[])));
        return;
    }
    let stored = match outbox.lock() {
        Ok(mut outbox) => outbox.append_all(groups),
        Err(_) => Err(OutboxError::Poisoned),
    };
    match stored {
        Ok(results) => {
            if results.iter().any(|r| matches!(r, Ok(ids) if !ids.is_empty())) {
                written();
            }
            for (then, result) in continuations.into_iter().zip(results) {
                match &result {
                    Ok(ids) => then(Ok(ids)),
                    Err(error) => then(Err(error)),
                }
            }
        }
        Err(error) => continuations.into_iter().for_each(|then| then(Err(&error))),
    }
}
