//! One running plugin: a wasmtime `Store` with its instance, called through
//! the `sensor-plugin` exports under limits and a per-call deadline. The
//! instance knows which contract the plugin targets and speaks it; callers
//! see one type whatever the version ([`Wake`] says when to tick it).

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::Store;
use wasmtime::component::ResourceTableError;
use wasmtime_wasi::{Deterministic, WasiCtx};

use super::bindings::{v0_1, v0_2};
use super::bounded::{self, MAX_ERROR_BYTES, MAX_STDERR_LINE_BYTES};
use super::clock::{PluginClock, SharedMonotonic};
use super::engine::{Activity, CompiledPlugin, EPOCH_TICK, Pre, Runtime};
use super::error::{Call, PluginError, PluginErrorKind, SchemaRefused};
use super::host_api::InstanceState;
use super::limits::{LimitExceeded, Limits, MAX_RANDOM_BYTES, MAX_WASI_RESOURCES};
use super::stderr::StderrTail;
use super::wasi::WouldBlock;
use super::world::{MIN_WAKE_INTERVAL_MS, Snapshot, SnapshotSchemas, Wake, World};
use crate::model::{Output, Reading};

/// Readings one `on-readings` call carries at most. A bus message may hold
/// 2,000 readings and ingest takes up to a queue's worth at once (4,096 by
/// default): in one call, a plugin's few alerts a reading passed its
/// `outputs_per_call` (one message made glucose-monitor fail its call, as
/// often as it was sent), and its work its deadline. Replay's batches are
/// this size too.
pub const MAX_READINGS_PER_CALL: usize = 256;

/// A live plugin instance. After a failure that poisons it (any trap or
/// limit), every further call fails with [`PluginErrorKind::Poisoned`]: the
/// caller builds a new instance, never reusing a trapped `Store`.
pub struct PluginInstance {
    store: Store<InstanceState>,
    bindings: Bindings,
    poisoned: bool,
    stderr_seen: u64,
    /// Fuel burnt per export, when the runtime counts fuel.
    fuel: Option<FuelUsed>,
    /// The last 0.1 `on-readings` batch in WIT types, kept so that the next
    /// batch reuses its string buffers instead of allocating per reading.
    batch: Vec<v0_1::types::Reading>,
    /// The 0.2 batch being encoded (its vectors reused from batch to batch).
    batch_v0_2: v0_2::types::Batch,
    /// The clock the plugin reads through WASI.
    clock: PluginClock,
    /// The last wake a 0.2 plugin answered (`None`: not until a reading).
    wake: Option<i64>,
    /// The time of the last `on-tick`, from which the wake floor counts.
    last_tick: Option<i64>,
    /// Wakes asked sooner than [`MIN_WAKE_INTERVAL_MS`] after the last tick.
    wakes_deferred: u64,
    /// What snapshots are checked against (the plugin's manifest).
    snapshot_schemas: SnapshotSchemas,
    /// Entered around plugin code, so that the epoch (call deadlines) runs.
    activity: Arc<Activity>,
}

/// The instance, through the bindings of the world it targets.
enum Bindings {
    V0_1(v0_1::SensorPlugin),
    V0_2(v0_2::SensorPlugin),
}

/// What a call answered: a 0.2 plugin its wake, a 0.1 plugin nothing.
type Answer = Option<Option<i64>>;

/// Fuel (WebAssembly operators executed, wasmtime's deterministic CPU
/// measure) burnt by one instance, per export.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FuelUsed {
    /// In `init`.
    pub init: u64,
    /// In `on-readings`.
    pub on_readings: u64,
    /// In `on-tick`.
    pub on_tick: u64,
    /// In `snapshot`.
    pub snapshot: u64,
}

/// What becomes of the outputs a plugin emits in an `init` that resumes it
/// from a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitOutputs {
    /// Dropped: the plugin goes on from where it stood (a recovery, a
    /// restart of the host), and what it said as it first started was
    /// emitted then. Kept, a recovery's outputs would shift by as many
    /// and one already emitted would be sent again under a new number.
    Dropped,
    /// Kept, numbered with the outputs of the first input after: a new
    /// version taking the state of the one before (a deployment), whose
    /// `init` never ran before.
    Kept,
}

impl PluginInstance {
    /// Instantiate a compiled plugin with the given limits. Through WASI it
    /// reads the machine's clock, or, in a deterministic runtime (replay), a
    /// virtual clock from 0 moved by the calls (see [`PluginInstance::with_clock`]).
    pub fn new(runtime: &Runtime, plugin: &CompiledPlugin, limits: Limits) -> Result<PluginInstance, PluginError> {
        let clock = if runtime.deterministic() {
            PluginClock::virtual_at(0)
        } else {
            PluginClock::system()
        };
        PluginInstance::with_clock(runtime, plugin, limits, clock)
    }

    /// Instantiate a compiled plugin with the given limits; the plugin reads
    /// `clock` through WASI (the host's clock: simulated when the host's is,
    /// virtual in replay).
    pub fn with_clock(
        runtime: &Runtime,
        plugin: &CompiledPlugin,
        limits: Limits,
        clock: PluginClock,
    ) -> Result<PluginInstance, PluginError> {
        let stderr = StderrTail::default();
        let (wall, monotonic) = clock.wasi();
        let mut builder = wasi_builder(runtime.deterministic(), stderr.clone());
        builder.wall_clock(wall);
        builder.monotonic_clock(SharedMonotonic(monotonic.clone()));
        let wasi = builder.build();
        let deadline_ticks = deadline_ticks(&limits);
        let state = InstanceState::new(&plugin.name, limits, wasi, stderr, monotonic, plugin.assets.clone());
        let mut store = Store::new(runtime.engine(), state);
        store.limiter(|state| state);
        store.set_epoch_deadline(deadline_ticks);
        let fuel = if runtime.fuel() {
            store.set_fuel(u64::MAX).map_err(|e| PluginError {
                plugin: plugin.name.clone(),
                call: Call::Instantiate,
                kind: PluginErrorKind::Instantiate(format!("setting fuel: {e}")),
            })?;
            Some(FuelUsed::default())
        } else {
            None
        };
        let running = runtime.activity().enter();
        let bindings = match &plugin.pre {
            Pre::V0_1(pre) => pre.instantiate(&mut store).map(Bindings::V0_1),
            Pre::V0_2(pre) => pre.instantiate(&mut store).map(Bindings::V0_2),
        };
        drop(running);
        let bindings = bindings.map_err(|e| PluginError {
            plugin: plugin.name.clone(),
            call: Call::Instantiate,
            kind: PluginErrorKind::Instantiate(bounded::truncate(format!("{e:#}"), MAX_ERROR_BYTES)),
        })?;
        Ok(PluginInstance {
            store,
            bindings,
            poisoned: false,
            stderr_seen: 0,
            fuel,
            batch: Vec::new(),
            batch_v0_2: v0_2::types::Batch {
                now_ms: i64::MIN,
                sensors: Vec::new(),
                samples: Vec::new(),
            },
            clock,
            wake: None,
            last_tick: None,
            wakes_deferred: 0,
            snapshot_schemas: plugin.snapshot_schemas.clone(),
            activity: runtime.activity().clone(),
        })
    }

    /// The world the plugin targets.
    pub fn world(&self) -> World {
        match self.bindings {
            Bindings::V0_1(_) => World::V0_1,
            Bindings::V0_2(_) => World::V0_2,
        }
    }

    /// When the plugin next needs `on-tick`: a 0.1 plugin at every tick of
    /// the host's interval; a 0.2 plugin at the time it last asked for, but
    /// no sooner than [`MIN_WAKE_INTERVAL_MS`] after its last tick.
    pub fn wake(&self) -> Wake {
        match (&self.bindings, self.wake) {
            (Bindings::V0_1(_), _) => Wake::Interval,
            (Bindings::V0_2(_), None) => Wake::Idle,
            (Bindings::V0_2(_), Some(at)) => Wake::At(at.max(self.wake_floor())),
        }
    }

    /// How many wakes the plugin asked for sooner than
    /// [`MIN_WAKE_INTERVAL_MS`] after its last tick (each moved to that floor).
    pub fn wakes_deferred(&self) -> u64 {
        self.wakes_deferred
    }

    /// Go on from `previous`'s place in the host's schedule, for an instance
    /// just started (`init_from`) from `previous`'s snapshot by the same host:
    /// the time of its last tick (from which the one-second floor of wakes
    /// counts) and the wakes deferred so far are the host's, not the
    /// plugin's, and carry over; the wake is the plugin's own answer.
    pub fn continue_schedule(&mut self, previous: &PluginInstance) {
        self.last_tick = previous.last_tick;
        self.wakes_deferred = previous.wakes_deferred;
    }

    /// The host clock reads `now_ms`. Before the last tick, the clock was
    /// stepped back (NTP correcting a clock that was ahead): the floor of the
    /// next wake no longer counts from that tick, which would hold every
    /// tick back for as long as the step (no signal-loss meanwhile). A step
    /// back allows one tick at once; the floor counts from it again.
    pub fn clock_at(&mut self, now_ms: i64) {
        if self.last_tick.is_some_and(|tick| now_ms < tick) {
            self.last_tick = None;
        }
    }

    /// The earliest time of the next tick.
    fn wake_floor(&self) -> i64 {
        self.last_tick
            .map_or(i64::MIN, |tick| tick.saturating_add(MIN_WAKE_INTERVAL_MS))
    }

    /// Keep a 0.2 plugin's answer.
    fn answered(&mut self, answer: Answer) {
        if let Some(wake) = answer {
            if wake.is_some_and(|at| at < self.wake_floor()) {
                self.wakes_deferred += 1;
            }
            self.wake = wake;
        }
    }

    /// Fuel burnt so far, per export; `None` unless the runtime counts fuel.
    pub fn fuel_used(&self) -> Option<FuelUsed> {
        self.fuel
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.store.data().plugin
    }

    /// Call `init` with the plugin's configuration.
    pub fn init(&mut self, config: &[(String, String)]) -> Result<(), PluginError> {
        self.init_from(config, None)
    }

    /// Call `init` with the plugin's configuration and, to resume a plugin,
    /// a snapshot to start from (a 0.2 plugin; one over the state limit is
    /// refused before the plugin sees it, and so is one in a schema its
    /// manifest does not read: [`PluginErrorKind::Schema`], after which the
    /// caller may still `init` the instance without it). The plugin decides
    /// whether it can take the snapshot: its `err` is [`PluginErrorKind::Returned`].
    /// Outputs the plugin emits in an `init` that resumes it are dropped
    /// ([`InitOutputs::Dropped`]): a resumed plugin goes on, it does not
    /// start.
    pub fn init_from(&mut self, config: &[(String, String)], resume: Option<&Snapshot>) -> Result<(), PluginError> {
        self.init_with(config, resume, InitOutputs::Dropped)
    }

    /// [`PluginInstance::init_from`], saying what becomes of the outputs of
    /// an `init` that resumes the plugin.
    pub fn init_with(
        &mut self,
        config: &[(String, String)],
        resume: Option<&Snapshot>,
        outputs: InitOutputs,
    ) -> Result<(), PluginError> {
        if let Some(snapshot) = resume
            && self.world() == World::V0_2
            && let Some(refused) = self.unreadable(snapshot.schema)
        {
            return Err(self.refusal(Call::Init, PluginErrorKind::Schema(refused)));
        }
        let resume = match resume {
            None => None,
            Some(_) if self.world() == World::V0_1 => {
                return Err(self.refusal(Call::Init, PluginErrorKind::NoSnapshot(World::V0_1)));
            }
            Some(snapshot) if snapshot.data.len() > self.store.data().limits.max_state_bytes => {
                let exceeded = LimitExceeded::Snapshot {
                    limit: self.store.data().limits.max_state_bytes,
                    size: snapshot.data.len(),
                };
                return Err(self.refusal(Call::Init, PluginErrorKind::Limit(exceeded)));
            }
            Some(snapshot) => Some(v0_2::types::Snapshot {
                schema: snapshot.schema,
                data: snapshot.data.clone(),
            }),
        };
        let outputs_before = self.store.data().outputs.len();
        let drop_outputs = resume.is_some() && outputs == InitOutputs::Dropped;
        let answer = self.call(Call::Init, |bindings, store| match bindings {
            Bindings::V0_1(plugin) => plugin.call_init(store, config).map(|r| r.map(|()| None)),
            Bindings::V0_2(plugin) => plugin.call_init(store, config, resume.as_ref()).map(|r| r.map(Some)),
        });
        // A plugin resumed from its snapshot goes on where it stood: what it
        // says as it starts again was said when it first started (a
        // recovery gives it the inputs since its snapshot, whose outputs must
        // be numbered as they were the first time, so none is sent twice).
        if drop_outputs {
            self.store.data_mut().outputs.truncate(outputs_before);
        }
        self.answered(answer?);
        Ok(())
    }

    /// The plugin's state, as it hands it over (`snapshot`, contract 0.2),
    /// between calls; outputs it emits meanwhile are dropped. A snapshot over
    /// the state limit, or in another schema than the manifest writes, is
    /// refused (and none is asked of a plugin whose manifest declares no
    /// schema); neither that nor asking a 0.1 plugin (which has no snapshot)
    /// harms the instance.
    pub fn snapshot(&mut self) -> Result<Snapshot, PluginError> {
        if self.world() == World::V0_1 {
            return Err(self.refusal(Call::Snapshot, PluginErrorKind::NoSnapshot(World::V0_1)));
        }
        if self.snapshot_schemas == SnapshotSchemas::Undeclared {
            return Err(self.refusal(Call::Snapshot, PluginErrorKind::Schema(SchemaRefused::Undeclared)));
        }
        let outputs_before = self.store.data().outputs.len();
        let snapshot = self.call(Call::Snapshot, |bindings, store| match bindings {
            Bindings::V0_2(plugin) => plugin.call_snapshot(store),
            // Refused above: a 0.1 plugin has no `snapshot` to call.
            Bindings::V0_1(_) => Ok(Err(String::new())),
        });
        // A snapshot is not an input: whatever the plugin emits meanwhile is
        // dropped, so that taking one never changes the outputs.
        self.store.data_mut().outputs.truncate(outputs_before);
        let snapshot = snapshot?;
        if let SnapshotSchemas::Declared { writes, .. } = self.snapshot_schemas
            && snapshot.schema != writes
        {
            let refused = SchemaRefused::NotWritten {
                schema: snapshot.schema,
                writes,
            };
            return Err(self.refusal(Call::Snapshot, PluginErrorKind::Schema(refused)));
        }
        let limit = self.store.data().limits.max_state_bytes;
        if snapshot.data.len() > limit {
            let exceeded = LimitExceeded::Snapshot {
                limit,
                size: snapshot.data.len(),
            };
            return Err(self.refusal(Call::Snapshot, PluginErrorKind::Limit(exceeded)));
        }
        Ok(Snapshot {
            schema: snapshot.schema,
            data: snapshot.data,
        })
    }

    /// Why the plugin's manifest does not let it start from a snapshot of
    /// `schema`, if it does not.
    fn unreadable(&self, schema: u32) -> Option<SchemaRefused> {
        match &self.snapshot_schemas {
            SnapshotSchemas::Unchecked => None,
            SnapshotSchemas::Undeclared => Some(SchemaRefused::Undeclared),
            SnapshotSchemas::Declared { reads, .. } if reads.contains(&schema) => None,
            SnapshotSchemas::Declared { reads, .. } => Some(SchemaRefused::NotRead {
                schema,
                reads: reads.clone(),
            }),
        }
    }

    /// A failure of `call` found by the host without calling the plugin.
    fn refusal(&self, call: Call, kind: PluginErrorKind) -> PluginError {
        PluginError {
            plugin: self.store.data().plugin.clone(),
            call,
            kind,
        }
    }

    /// Call `on-readings` with a batch: in calls of at most
    /// [`MAX_READINGS_PER_CALL`] readings, in order, each with the plugin's
    /// limits (outputs, deadline) to itself; the first failure ends it.
    pub fn on_readings(&mut self, readings: &[Reading]) -> Result<(), PluginError> {
        // The rate limit's allowance counts the batch's readings at once,
        // however many calls give them.
        self.store.data_mut().readings_given(readings.len());
        if readings.is_empty() {
            return self.on_readings_call(readings);
        }
        readings
            .chunks(MAX_READINGS_PER_CALL)
            .try_for_each(|call| self.on_readings_call(call))
    }

    /// One `on-readings` call.
    fn on_readings_call(&mut self, readings: &[Reading]) -> Result<(), PluginError> {
        // A virtual clock stands at the latest reading the plugin has been given.
        if let Some(latest) = readings.iter().map(|r| r.timestamp_ms).max() {
            self.clock.advance_to(latest);
        }
        match self.world() {
            World::V0_1 => self.on_readings_v0_1(readings),
            World::V0_2 => self.on_readings_v0_2(readings),
        }
    }

    /// A 0.2 batch: each (sensor, unit) named once, the readings as scalars.
    fn on_readings_v0_2(&mut self, readings: &[Reading]) -> Result<(), PluginError> {
        let mut batch = std::mem::replace(
            &mut self.batch_v0_2,
            v0_2::types::Batch {
                now_ms: i64::MIN,
                sensors: Vec::new(),
                samples: Vec::new(),
            },
        );
        // The batch kept from the last call holds the last `now`: never go back.
        batch.now_ms = batch.now_ms.max(self.clock.now_ms());
        encode_batch(&mut batch, readings);
        let answer = self.call(Call::OnReadings, |bindings, store| match bindings {
            Bindings::V0_1(_) => Ok(Err(String::new())),
            Bindings::V0_2(plugin) => plugin.call_on_readings(store, &batch).map(|r| r.map(Some)),
        });
        self.batch_v0_2 = batch;
        self.answered(answer?);
        Ok(())
    }

    /// A 0.1 batch: a record with two strings per reading.
    fn on_readings_v0_1(&mut self, readings: &[Reading]) -> Result<(), PluginError> {
        let mut batch = std::mem::take(&mut self.batch);
        batch.truncate(readings.len());
        for (slot, reading) in batch.iter_mut().zip(readings) {
            slot.sensor.clone_from(&reading.sensor);
            slot.timestamp_ms = reading.timestamp_ms;
            slot.value = reading.value;
            slot.unit.clone_from(&reading.unit);
        }
        batch.extend(readings.iter().skip(batch.len()).map(|r| v0_1::types::Reading {
            sensor: r.sensor.clone(),
            timestamp_ms: r.timestamp_ms,
            value: r.value,
            unit: r.unit.clone(),
        }));
        let result = self.call(Call::OnReadings, |bindings, store| match bindings {
            Bindings::V0_1(plugin) => plugin.call_on_readings(store, &batch),
            Bindings::V0_2(_) => Ok(Err(String::new())),
        });
        self.batch = batch;
        result
    }

    /// Call `on-tick` with the host clock's time (whatever [`PluginInstance::wake`]
    /// says: the caller decides when a tick is due).
    pub fn on_tick(&mut self, now_ms: i64) -> Result<(), PluginError> {
        self.clock.advance_to(now_ms);
        self.last_tick = Some(now_ms);
        let answer = self.call(Call::OnTick, |bindings, store| match bindings {
            Bindings::V0_1(plugin) => plugin.call_on_tick(store, now_ms).map(|r| r.map(|()| None)),
            Bindings::V0_2(plugin) => plugin.call_on_tick(store, now_ms).map(|r| r.map(Some)),
        })?;
        self.answered(answer);
        Ok(())
    }

    /// Take the outputs produced since the last call to this method, in order.
    /// Outputs emitted before a failure are kept, except those of a call that
    /// broke an output-count limit.
    pub fn take_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.store.data_mut().outputs)
    }

    /// Log lines dropped because a call exceeded its log budget.
    pub fn logs_dropped(&self) -> u64 {
        self.store.data().logs_dropped
    }

    fn call<T>(
        &mut self,
        call: Call,
        invoke: impl FnOnce(&Bindings, &mut Store<InstanceState>) -> wasmtime::Result<Result<T, String>>,
    ) -> Result<T, PluginError> {
        if self.poisoned {
            return Err(PluginError {
                plugin: self.store.data().plugin.clone(),
                call,
                kind: PluginErrorKind::Poisoned,
            });
        }
        self.store.data_mut().begin_call();
        let outputs_before = self.store.data().outputs.len();
        let ticks = deadline_ticks(&self.store.data().limits);
        self.store.set_epoch_deadline(ticks);
        let fuel_before = self.fuel.and_then(|_| self.store.get_fuel().ok());
        let running = self.activity.enter();
        let outcome = invoke(&self.bindings, &mut self.store);
        drop(running);
        if let (Some(fuel), Some(before), Ok(after)) = (self.fuel.as_mut(), fuel_before, self.store.get_fuel()) {
            let burnt = before.saturating_sub(after);
            match call {
                Call::Instantiate | Call::Init => fuel.init += burnt,
                Call::OnReadings => fuel.on_readings += burnt,
                Call::OnTick => fuel.on_tick += burnt,
                Call::Snapshot => fuel.snapshot += burnt,
            }
        }
        let kind = match outcome {
            Ok(Ok(value)) => return Ok(value),
            // The plugin's own text goes into alerts and the status: bounded.
            Ok(Err(message)) => PluginErrorKind::Returned(bounded::truncate(message, MAX_ERROR_BYTES)),
            Err(error) => {
                self.poisoned = true;
                self.classify(error)
            }
        };
        if let PluginErrorKind::Limit(LimitExceeded::Outputs(_) | LimitExceeded::OutputRate(_)) = kind {
            // A flood is discarded whole: on an alert path, a thousand copies
            // are worse than none. Other failures keep what came before them.
            self.store.data_mut().outputs.truncate(outputs_before);
        }
        Err(PluginError {
            plugin: self.store.data().plugin.clone(),
            call,
            kind,
        })
    }

    /// Turn a wasmtime error from a call into the reason a person can act on.
    fn classify(&mut self, error: wasmtime::Error) -> PluginErrorKind {
        if let Some(limit) = self.store.data_mut().limit_hit.take() {
            return PluginErrorKind::Limit(limit);
        }
        if let Some(WouldBlock(function)) = error.downcast_ref::<WouldBlock>() {
            return PluginErrorKind::Blocking((*function).to_owned());
        }
        if let Some(ResourceTableError::Full) = error.downcast_ref::<ResourceTableError>() {
            return PluginErrorKind::Limit(LimitExceeded::Resources(MAX_WASI_RESOURCES));
        }
        match error.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => PluginErrorKind::Deadline(self.store.data().limits.call_deadline),
            Some(trap) => PluginErrorKind::Trapped {
                reason: trap.to_string().trim_start_matches("wasm trap: ").to_owned(),
                stderr: self.new_stderr_line(),
            },
            None => PluginErrorKind::Trapped {
                // A host function's error may quote the plugin: bounded.
                reason: bounded::truncate(format!("{error}"), MAX_ERROR_BYTES),
                stderr: self.new_stderr_line(),
            },
        }
    }

    /// What the guest wrote to stderr since the last failure, condensed to one
    /// line: from a Rust panic, its location and message; else the last line.
    fn new_stderr_line(&mut self) -> String {
        let (fresh, written) = self.store.data().stderr.since(self.stderr_seen);
        self.stderr_seen = written;
        let text = String::from_utf8_lossy(&fresh);
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect();
        let from = lines
            .iter()
            .rposition(|l| l.contains(" panicked at "))
            .unwrap_or(lines.len().saturating_sub(1));
        let line = lines.get(from..).unwrap_or_default().join(" ");
        bounded::truncate(line, MAX_STDERR_LINE_BYTES)
    }
}

/// Encode `readings` as a 0.2 batch: each (sensor, unit) once, in order of
/// first appearance, every reading three scalars.
fn encode_batch(batch: &mut v0_2::types::Batch, readings: &[Reading]) {
    batch.sensors.clear();
    batch.samples.clear();
    batch.samples.reserve(readings.len());
    // Each (sensor, unit) is named once, in the order of first appearance. A
    // map finds a sensor named before: a batch may interleave thousands of
    // sensors (a linear search made it quadratic). Consecutive readings are
    // most often of one sensor: the last is checked first.
    let mut named: HashMap<(&str, &str), u32> = HashMap::new();
    let mut last: Option<(&Reading, u32)> = None;
    for reading in readings {
        let sensor = match last {
            Some((previous, index)) if previous.sensor == reading.sensor && previous.unit == reading.unit => index,
            _ => {
                let sensors = &mut batch.sensors;
                let index = *named
                    .entry((reading.sensor.as_str(), reading.unit.as_str()))
                    .or_insert_with(|| {
                        sensors.push(v0_2::types::Sensor {
                            id: reading.sensor.clone(),
                            unit: reading.unit.clone(),
                        });
                        // A batch is bounded by the queue: far below u32::MAX sensors.
                        u32::try_from(sensors.len() - 1).unwrap_or(u32::MAX)
                    });
                last = Some((reading, index));
                index
            }
        };
        batch.samples.push(v0_2::types::Sample {
            sensor,
            timestamp_ms: reading.timestamp_ms,
            value: reading.value,
        });
    }
}

fn deadline_ticks(limits: &Limits) -> u64 {
    // +1: the current epoch period may be about to end.
    (limits.call_deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64 + 1
}

/// WASI for a plugin: no files, no network, no environment, no arguments,
/// empty stdin; stderr captured (for panic messages), stdout discarded. The
/// functions that could wait are replaced in the linker (`wasi.rs`).
fn wasi_builder(deterministic: bool, stderr: StderrTail) -> wasmtime_wasi::WasiCtxBuilder {
    let mut builder = WasiCtx::builder();
    builder.stderr(stderr);
    builder.allow_tcp(false).allow_udp(false).allow_ip_name_lookup(false);
    builder.max_random_size(MAX_RANDOM_BYTES);
    if deterministic {
        builder.secure_random(Deterministic::new(vec![0x5a; 32]));
        builder.insecure_random(Deterministic::new(vec![0xa5; 32]));
        builder.insecure_random_seed(0);
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::super::engine::RuntimeOptions;
    use super::super::test_plugins::component;
    use super::*;

    /// echo-v02 (writes schema 1: its readings so far) with `schemas`, not yet initialised.
    fn echo(runtime: &Runtime, schemas: SnapshotSchemas) -> PluginInstance {
        let compiled = runtime
            .compile("echo-v02", &component("echo-v02"))
            .unwrap()
            .with_snapshot_schemas(schemas);
        PluginInstance::new(runtime, &compiled, Limits::default()).unwrap()
    }

    fn declared(writes: u32, reads: &[u32]) -> SnapshotSchemas {
        SnapshotSchemas::Declared {
            writes,
            reads: reads.to_vec(),
        }
    }

    fn snapshot(schema: u32) -> Snapshot {
        Snapshot {
            schema,
            data: 7u64.to_le_bytes().to_vec(),
        }
    }

    fn schema_error(error: PluginError) -> SchemaRefused {
        assert!(!error.kind.poisons(), "{error}");
        assert_eq!(error.kind.tag(), "snapshot-schema");
        match error.kind {
            PluginErrorKind::Schema(refused) => refused,
            other => panic!("expected a schema refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_snapshot_in_a_schema_the_manifest_does_not_read_is_refused_before_the_plugin_sees_it() {
        let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
        // echo-v02 itself refuses schema 3 (`Returned`): the host's refusal
        // comes first, naming the schema and what the manifest reads.
        let mut instance = echo(&runtime, declared(1, &[1, 2]));
        let error = instance.init_from(&[], Some(&snapshot(3))).unwrap_err();
        assert_eq!(error.call, Call::Init);
        let refused = schema_error(error);
        assert_eq!(
            refused,
            SchemaRefused::NotRead {
                schema: 3,
                reads: vec![1, 2]
            }
        );
        assert!(refused.to_string().contains("schema 3") && refused.to_string().contains("[1, 2]"));
        // The same instance, untouched, takes a schema it reads.
        instance.init_from(&[], Some(&snapshot(1))).unwrap();
        assert_eq!(instance.snapshot().unwrap(), snapshot(1));
        // The plugin still decides for a schema the manifest reads.
        let mut instance = echo(&runtime, declared(1, &[1, 2]));
        let error = instance.init_from(&[], Some(&snapshot(2))).unwrap_err();
        assert!(matches!(error.kind, PluginErrorKind::Returned(_)), "{error}");
    }

    #[test]
    fn a_snapshot_handed_over_in_another_schema_than_the_manifest_writes_is_refused_and_contained() {
        let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
        let mut instance = echo(&runtime, declared(2, &[1, 2]));
        instance.init(&[]).unwrap();
        let error = instance.snapshot().unwrap_err();
        assert_eq!(error.call, Call::Snapshot);
        assert_eq!(schema_error(error), SchemaRefused::NotWritten { schema: 1, writes: 2 });
        // The instance goes on.
        instance.on_tick(0).unwrap();
    }

    #[test]
    fn a_plugin_whose_manifest_declares_no_schema_is_given_no_snapshot_and_gives_none() {
        let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
        let mut instance = echo(&runtime, SnapshotSchemas::Undeclared);
        let error = instance.init_from(&[], Some(&snapshot(1))).unwrap_err();
        assert_eq!(schema_error(error), SchemaRefused::Undeclared);
        // Refused before the plugin saw it: the caller starts it fresh.
        instance.init(&[]).unwrap();
        let error = instance.snapshot().unwrap_err();
        assert_eq!(schema_error(error), SchemaRefused::Undeclared);
        instance.on_tick(0).unwrap();
        // Without a manifest (a plain component) the host checks nothing.
        let mut instance = echo(&runtime, SnapshotSchemas::Unchecked);
        instance.init_from(&[], Some(&snapshot(1))).unwrap();
        assert_eq!(instance.snapshot().unwrap(), snapshot(1));
    }

    #[test]
    fn a_batch_names_each_sensor_and_unit_once_in_the_order_they_first_appear() {
        let reading = |sensor: &str, unit: &str, timestamp_ms: i64| Reading {
            sensor: sensor.to_owned(),
            timestamp_ms,
            value: timestamp_ms as f64,
            unit: unit.to_owned(),
        };
        let readings = [
            reading("a", "mg/dL", 1),
            reading("b", "mg/dL", 2),
            reading("a", "mg/dL", 3),
            reading("a", "mg/dL", 4),
            reading("c", "mg/dL", 5),
            reading("a", "mmol/L", 6),
            reading("b", "mg/dL", 7),
        ];
        let mut batch = v0_2::types::Batch {
            now_ms: 0,
            sensors: vec![v0_2::types::Sensor {
                id: "left over".into(),
                unit: String::new(),
            }],
            samples: Vec::new(),
        };
        encode_batch(&mut batch, &readings);
        let named: Vec<(&str, &str)> = batch.sensors.iter().map(|s| (s.id.as_str(), s.unit.as_str())).collect();
        assert_eq!(named, [("a", "mg/dL"), ("b", "mg/dL"), ("c", "mg/dL"), ("a", "mmol/L")]);
        let samples: Vec<(u32, i64)> = batch.samples.iter().map(|s| (s.sensor, s.timestamp_ms)).collect();
        assert_eq!(samples, [(0, 1), (1, 2), (0, 3), (0, 4), (2, 5), (3, 6), (1, 7)]);
    }
}
