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

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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

/// Most bytes of appends the writer keeps in memory while the disk refuses
/// writes (a full disk): beyond it the oldest are given up, counted as
/// failed writes. At a glucose monitor's rate (an input and an output a
/// sensor every 5 minutes, about 1 KB), days of a hundred sensors.
pub const WAITING_MAX_BYTES: usize = 64 << 20;

/// Appends queued for the writer at most (one a plugin call with outputs or
/// inputs to log), before a producer's next submit waits for it. A commit
/// is an fsync, and a device's disk (a virtual disk, an SD card) now and then
/// takes hundreds of milliseconds for one (594 ms, the worst of 149,096 here
/// in 45 s): the queue rides that out, so a plugin's worker keeps taking
/// readings and publishing its alerts locally meanwhile, instead of waiting
/// in `submit` while its readings queue up and are dropped (at 256, the
/// latency bench at 10,000 readings/s had a p99 of 231 to 985 ms, and lost
/// readings, in 4 of 10 runs, and 4 to 13 ms in the others; at 4,096, 4 to
/// 10 ms in 3 of 3). Bytes stay bounded by each worker's budget
/// ([`PRODUCER_QUEUED_MAX_BYTES`]). Its slots (about 110 bytes each,
/// 450 KiB) are allocated when the writer starts.
pub const QUEUE_APPENDS: usize = 4096;

/// Bytes of one producer's appends queued for the writer at most (with a
/// budget, [`WriterHandle::with_budget`]): past it the producer's next submit
/// waits until the writer has taken them. One queue serves every producer,
/// bounded in appends: without it a plugin making its largest outputs as
/// fast as it may (1,000 of 64 KiB a call by default) filled that queue with
/// gigabytes, and every other plugin's worker waited behind it in `submit`
/// (taking no readings, raising no alert) while the host ran out of memory.
/// The writer takes appends whatever the disk does (it holds what the disk
/// refuses, up to [`WAITING_MAX_BYTES`]), so a full disk does not make a
/// producer wait on this.
pub const PRODUCER_QUEUED_MAX_BYTES: usize = 16 << 20;

/// What an entry or journal record costs in memory beyond its bytes.
const ROW_BYTES: usize = 64;

/// The first pause before a refused write is tried again; it doubles at
/// each refusal, up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_millis(100);

/// The longest pause between two attempts of a refused write: once the
/// disk has room, what waited is stored within this.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What an append became: the ids (`None` for a refused summary, as
/// [`Outbox::append_batch`]) once committed and fsynced, or why it failed.
pub type Outcome<'a> = Result<&'a [Option<u64>], &'a OutboxError>;

/// Runs on the writer thread once an append is durable (or has failed).
pub type Committed = Box<dyn FnOnce(Outcome<'_>) + Send>;

/// One append waiting for the writer.
struct Job {
    append: Append,
    then: Committed,
    /// Its bytes held against its producer's budget, given back when the
    /// writer takes it (or it is dropped).
    queued: Option<Queued>,
}

/// A producer's budget of bytes queued for the writer.
#[derive(Debug)]
struct Budget {
    queued: Mutex<usize>,
    taken: Condvar,
    limit: usize,
}

impl Budget {
    /// Hold `bytes` against the budget: wait while others are queued and
    /// these would go past the limit (an append larger than it alone goes,
    /// once nothing else is queued).
    fn hold(self: &Arc<Budget>, bytes: usize) -> Queued {
        let mut queued = self.queued.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while *queued > 0 && queued.saturating_add(bytes) > self.limit {
            queued = self
                .taken
                .wait(queued)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *queued = queued.saturating_add(bytes);
        Queued {
            budget: self.clone(),
            bytes,
        }
    }
}

/// Bytes held against a [`Budget`], given back when dropped.
#[derive(Debug)]
struct Queued {
    budget: Arc<Budget>,
    bytes: usize,
}

impl Drop for Queued {
    fn drop(&mut self) {
        let mut queued = self
            .budget
            .queued
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *queued = queued.saturating_sub(self.bytes);
        self.budget.taken.notify_all();
    }
}

/// The writer thread has stopped (or was never started): nothing was stored.
#[derive(Debug, thiserror::Error)]
#[error("the outbox writer has stopped; the outputs were not stored")]
pub struct WriterStopped;

/// What the writer holds in memory because the disk refuses it, for the
/// status (`outbox.waiting_for_disk`).
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Entries (outputs) waiting.
    pub waiting_entries: AtomicU64,
    /// Their bytes, with the journal records that go with them.
    pub waiting_bytes: AtomicU64,
    /// Whether the disk refuses writes now: from the first refusal until a
    /// commit succeeds again.
    pub refusing: AtomicBool,
}

/// The group-commit thread of an outbox. [`Writer::join`] waits until every
/// append submitted before is committed.
pub struct Writer {
    sender: SyncSender<Job>,
    thread: JoinHandle<()>,
    stats: Arc<WriterStats>,
}

/// Submits appends to a [`Writer`]; cheap to clone, one per producer.
#[derive(Clone)]
pub struct WriterHandle {
    sender: SyncSender<Job>,
    /// The producer's budget of queued bytes, shared by its clones.
    budget: Option<Arc<Budget>>,
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
    ///
    /// A write the disk refuses ([`OutboxError::is_transient`]: full, an I/O
    /// error) is not failed: it waits in memory with every append after it,
    /// in order, and is tried again after a pause (100 ms, doubling to 5 s);
    /// the writer keeps taking appends meanwhile, so producers never wait for
    /// the disk. Continuations run once their append is stored. Past
    /// 64 MiB waiting, the oldest appends are given up (their continuations
    /// told the error); so is what still waits when the host stops.
    pub fn start(
        outbox: Arc<Mutex<Outbox>>,
        capacity: usize,
        written: impl Fn() + Send + 'static,
    ) -> std::io::Result<Writer> {
        let (sender, receiver) = sync_channel(capacity.max(1));
        let stats = Arc::new(WriterStats::default());
        let shown = stats.clone();
        let thread = std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || run(&outbox, &receiver, &written, &shown))?;
        Ok(Writer { sender, thread, stats })
    }

    /// What the writer holds while the disk refuses writes.
    pub fn stats(&self) -> Arc<WriterStats> {
        self.stats.clone()
    }

    /// A handle to submit appends with.
    pub fn handle(&self) -> WriterHandle {
        WriterHandle {
            sender: self.sender.clone(),
            budget: None,
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
    /// A handle for a producer of its own (a plugin's worker) whose appends
    /// queued for the writer hold at most `limit` bytes
    /// ([`PRODUCER_QUEUED_MAX_BYTES`]): past it, its submits wait until the
    /// writer has taken the earlier ones, and other producers never wait
    /// behind it.
    pub fn with_budget(&self, limit: usize) -> WriterHandle {
        WriterHandle {
            sender: self.sender.clone(),
            budget: Some(Arc::new(Budget {
                queued: Mutex::new(0),
                taken: Condvar::new(),
                limit,
            })),
        }
    }

    /// Queue `entries` for the next group commit; `then` runs on the writer
    /// thread once they are durable (or failed), after the continuations of
    /// every earlier append. Blocks while the writer's queue is full, or
    /// while this producer's budget is spent (see [`WriterHandle::with_budget`]).
    ///
    /// On [`WriterStopped`], `then` is dropped without running.
    pub fn submit(&self, entries: Vec<NewEntry>, then: Committed) -> Result<(), WriterStopped> {
        self.submit_with(Append { journal: None, entries }, then)
    }

    /// As [`WriterHandle::submit`], with what the entries add to a plugin's
    /// journal: stored in the same transaction, all or nothing.
    pub fn submit_with(&self, append: Append, then: Committed) -> Result<(), WriterStopped> {
        let queued = self.budget.as_ref().map(|budget| budget.hold(Size::of(&append).bytes));
        let job = Job { append, then, queued };
        match self.sender.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job)) => self.sender.send(job).map_err(|_| WriterStopped),
            Err(TrySendError::Disconnected(_)) => Err(WriterStopped),
        }
    }
}

/// The writer loop: take what has queued up, commit it at once, report. While
/// the disk refuses writes, keep taking appends (producers never wait for
/// the disk) and try the oldest again after a pause.
fn run(outbox: &Mutex<Outbox>, receiver: &Receiver<Job>, written: &dyn Fn(), stats: &WriterStats) {
    let mut waiting = Waiting::new(stats);
    // Set while the disk refuses writes: when to try again, and the pause after that.
    let mut refused: Option<Refused> = None;
    loop {
        let open = match &refused {
            // Left over from a long refusal: on with it.
            None if !waiting.is_empty() => true,
            None => match receiver.recv() {
                Ok(first) => {
                    waiting.push(first);
                    std::thread::sleep(LINGER);
                    true
                }
                Err(_) => break,
            },
            Some(refused) => take_until(receiver, refused.retry_at, &mut waiting, &refused.error),
        };
        while waiting.rows() < MAX_GROUP_ENTRIES {
            match receiver.try_recv() {
                Ok(job) => waiting.push(job),
                Err(_) => break,
            }
        }
        let jobs = waiting.take_group();
        match commit(outbox, jobs, written) {
            Attempt::Done => {
                waiting.show();
                stats.refusing.store(false, Ordering::Relaxed);
                if let Some(refused) = refused.take() {
                    tracing::info!(
                        waited_s = refused.since.elapsed().as_secs(),
                        "The outbox stores again: what waited for the disk is stored"
                    );
                }
            }
            Attempt::Refused(jobs, error) => {
                stats.refusing.store(true, Ordering::Relaxed);
                waiting.put_back(jobs);
                refused = Some(match refused.take() {
                    None => {
                        tracing::error!(%error, "The outbox cannot write: outputs wait in memory and are tried again (alerts still go out locally)");
                        Refused::new(error)
                    }
                    Some(before) => before.again(error),
                });
                if let Some(refused) = &refused {
                    waiting.give_up_over(WAITING_MAX_BYTES, &refused.error);
                }
            }
        }
        if !open {
            // Every producer has gone (the host stops): one last attempt was
            // made; what the disk still refuses is given up, counted.
            if let Some(refused) = &refused {
                waiting.give_up_all(&refused.error);
            }
            if waiting.is_empty() {
                break;
            }
        }
    }
}

/// The disk refuses writes: since when, the last reason, when to try again.
struct Refused {
    since: Instant,
    error: OutboxError,
    pause: Duration,
    retry_at: Instant,
}

impl Refused {
    fn new(error: OutboxError) -> Refused {
        let now = Instant::now();
        Refused {
            since: now,
            error,
            pause: RETRY_FIRST,
            retry_at: now + RETRY_FIRST,
        }
    }

    /// Refused again: the pause doubles, up to [`RETRY_MAX`].
    fn again(self, error: OutboxError) -> Refused {
        let pause = (self.pause * 2).min(RETRY_MAX);
        Refused {
            since: self.since,
            error,
            pause,
            retry_at: Instant::now() + pause,
        }
    }
}

/// Take appends into `waiting` until `until`; false once every producer has
/// gone (then at once: the host stops, and the last attempt comes now).
fn take_until(receiver: &Receiver<Job>, until: Instant, waiting: &mut Waiting<'_>, error: &OutboxError) -> bool {
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match receiver.recv_timeout(left) {
            Ok(job) => {
                waiting.push(job);
                waiting.give_up_over(WAITING_MAX_BYTES, error);
            }
            Err(RecvTimeoutError::Timeout) => return true,
            Err(RecvTimeoutError::Disconnected) => return false,
        }
    }
}

/// The appends taken and not yet committed, in submission order, with their
/// size; shown in the status while the disk refuses them.
struct Waiting<'a> {
    /// Each with its size, measured once as it is queued.
    jobs: VecDeque<(Size, Job)>,
    /// The sum of their sizes (kept, not counted again at each change: a
    /// long refusal holds many).
    size: Size,
    stats: &'a WriterStats,
}

/// What a job writes and holds.
#[derive(Debug, Clone, Copy, Default)]
struct Size {
    /// Rows: entries and journal records.
    rows: usize,
    /// Entries (outputs).
    entries: usize,
    /// Bytes (payloads, subjects, ids, logged inputs, states), as counted
    /// against [`WAITING_MAX_BYTES`].
    bytes: usize,
}

impl Size {
    /// Rows `job` writes (cheap: no bytes counted).
    fn rows_of(append: &Append) -> usize {
        append.entries.len() + append.journal.as_ref().map_or(0, |journal| journal.records.len())
    }

    fn of(append: &Append) -> Size {
        let entries = &append.entries;
        let records = append.journal.as_ref().map_or(&[][..], |journal| &journal.records[..]);
        let entry_bytes: usize = entries
            .iter()
            .map(|entry| {
                entry.payload.len() + entry.subject.len() + entry.msg_id.len() + entry.plugin.len() + ROW_BYTES
            })
            .sum();
        let record_bytes: usize = records.iter().map(|record| record.data_len() + ROW_BYTES).sum();
        Size {
            rows: Size::rows_of(append),
            entries: entries.len(),
            bytes: entry_bytes + record_bytes,
        }
    }

    fn add(&mut self, other: Size) {
        self.rows += other.rows;
        self.entries += other.entries;
        self.bytes += other.bytes;
    }

    fn sub(&mut self, other: Size) {
        self.rows -= other.rows;
        self.entries -= other.entries;
        self.bytes -= other.bytes;
    }
}

impl<'a> Waiting<'a> {
    fn new(stats: &'a WriterStats) -> Waiting<'a> {
        Waiting {
            jobs: VecDeque::new(),
            size: Size::default(),
            stats,
        }
    }

    fn is_empty(&self) -> bool {
        self.jobs.is_empty()
    }

    /// Rows the waiting appends write.
    fn rows(&self) -> usize {
        self.size.rows
    }

    fn push(&mut self, mut job: Job) {
        // Taken from the queue: its producer may queue more.
        drop(job.queued.take());
        let size = Size::of(&job.append);
        self.size.add(size);
        self.jobs.push_back((size, job));
        self.show();
    }

    /// The oldest appends, up to [`MAX_GROUP_ENTRIES`] rows (at least one).
    fn take_group(&mut self) -> Vec<Job> {
        let mut rows = 0;
        let mut group = Vec::new();
        while let Some((size, _)) = self.jobs.front() {
            let size = size.rows;
            if !group.is_empty() && rows + size > MAX_GROUP_ENTRIES {
                break;
            }
            rows += size;
            if let Some(job) = self.pop() {
                group.push(job);
            }
        }
        group
    }

    /// Appends the disk refused: first again, in their order.
    fn put_back(&mut self, jobs: Vec<Job>) {
        for job in jobs.into_iter().rev() {
            let size = Size::of(&job.append);
            self.size.add(size);
            self.jobs.push_front((size, job));
        }
        self.show();
    }

    /// Give up the oldest appends while the waiting ones take more than
    /// `max` bytes (the newest is always kept): their continuations are told
    /// `error`, as for any write that failed.
    fn give_up_over(&mut self, max: usize, error: &OutboxError) {
        let mut given_up = Vec::new();
        while self.size.bytes > max && self.jobs.len() > 1 {
            if let Some(job) = self.pop() {
                given_up.push(job);
            }
        }
        // Shown before anyone is told: what a continuation leads to read
        // (the status) no longer counts them.
        self.show();
        let entries: usize = given_up.iter().map(|job| job.append.entries.len()).sum();
        for job in given_up {
            (job.then)(Err(error));
        }
        if entries > 0 {
            tracing::error!(given_up = entries, max_bytes = max, %error, "Outputs waiting for the disk given up: more than the writer keeps in memory");
        }
    }

    /// Give up every waiting append (the host stops while the disk refuses them).
    fn give_up_all(&mut self, error: &OutboxError) {
        let given_up = self.size.entries;
        let jobs: Vec<(Size, Job)> = self.jobs.drain(..).collect();
        self.size = Size::default();
        self.show();
        for (_, job) in jobs {
            (job.then)(Err(error));
        }
        if given_up > 0 {
            tracing::error!(given_up, %error, "The host stops while the disk refuses writes: outputs waiting for it are not stored");
        }
    }

    /// The oldest job, no longer counted.
    fn pop(&mut self) -> Option<Job> {
        let (size, job) = self.jobs.pop_front()?;
        self.size.sub(size);
        Some(job)
    }

    fn show(&self) {
        self.stats
            .waiting_entries
            .store(self.size.entries as u64, Ordering::Relaxed);
        self.stats
            .waiting_bytes
            .store(self.size.bytes as u64, Ordering::Relaxed);
    }
}

/// What became of an attempt to commit.
enum Attempt {
    /// Committed (or failed for good): the continuations have run.
    Done,
    /// The disk refused them ([`OutboxError::is_transient`]): given back, in order.
    Refused(Vec<Job>, OutboxError),
}

/// Commit `jobs` in one transaction and run their continuations in order;
/// give them back if the disk refused them.
fn commit(outbox: &Mutex<Outbox>, jobs: Vec<Job>, written: &dyn Fn()) -> Attempt {
    if jobs.iter().all(|job| Size::rows_of(&job.append) == 0) {
        jobs.into_iter().for_each(|job| (job.then)(Ok(&[])));
        return Attempt::Done;
    }
    let (appends, continuations): (Vec<Append>, Vec<Committed>) =
        jobs.into_iter().map(|job| (job.append, job.then)).unzip();
    let stored = match outbox.lock() {
        Ok(mut outbox) => outbox.append_all(&appends),
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
            Attempt::Done
        }
        Err(error) if error.is_transient() => {
            let jobs = appends
                .into_iter()
                .zip(continuations)
                .map(|(append, then)| Job {
                    append,
                    then,
                    queued: None,
                })
                .collect();
            Attempt::Refused(jobs, error)
        }
        Err(error) => {
            continuations.into_iter().for_each(|then| then(Err(&error)));
            Attempt::Done
        }
    }
}
