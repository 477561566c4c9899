//! One running plugin: a wasmtime `Store` with its instance, called through
//! the `sensor-plugin` exports under limits and a per-call deadline.

use wasmtime::Store;
use wasmtime::component::ResourceTableError;
use wasmtime_wasi::{Deterministic, WasiCtx};

use super::bindings::{SensorPlugin, types};
use super::bounded::{self, MAX_ERROR_BYTES, MAX_STDERR_LINE_BYTES};
use super::clock::{PluginClock, SharedMonotonic};
use super::engine::{CompiledPlugin, EPOCH_TICK, Runtime};
use super::error::{Call, PluginError, PluginErrorKind};
use super::host_api::InstanceState;
use super::limits::{LimitExceeded, Limits, MAX_RANDOM_BYTES, MAX_WASI_RESOURCES};
use super::stderr::StderrTail;
use super::wasi::WouldBlock;
use crate::model::{Output, Reading};

/// A live plugin instance. After a failure that poisons it (any trap or
/// limit), every further call fails with [`PluginErrorKind::Poisoned`]: the
/// caller builds a new instance, never reusing a trapped `Store`.
pub struct PluginInstance {
    store: Store<InstanceState>,
    bindings: SensorPlugin,
    poisoned: bool,
    stderr_seen: u64,
    /// Fuel burnt per export, when the runtime counts fuel.
    fuel: Option<FuelUsed>,
    /// The last `on-readings` batch in WIT types, kept so that the next
    /// batch reuses its string buffers instead of allocating per reading.
    batch: Vec<types::Reading>,
    /// The clock the plugin reads through WASI.
    clock: PluginClock,
}

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
        let state = InstanceState::new(&plugin.name, limits, wasi, stderr, monotonic);
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
        let bindings = plugin.pre.instantiate(&mut store).map_err(|e| PluginError {
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
            clock,
        })
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
        self.call(Call::Init, |bindings, store| bindings.call_init(store, config))
    }

    /// Call `on-readings` with a batch.
    pub fn on_readings(&mut self, readings: &[Reading]) -> Result<(), PluginError> {
        let mut batch = std::mem::take(&mut self.batch);
        batch.truncate(readings.len());
        for (slot, reading) in batch.iter_mut().zip(readings) {
            slot.sensor.clone_from(&reading.sensor);
            slot.timestamp_ms = reading.timestamp_ms;
            slot.value = reading.value;
            slot.unit.clone_from(&reading.unit);
        }
        batch.extend(readings.iter().skip(batch.len()).map(|r| types::Reading {
            sensor: r.sensor.clone(),
            timestamp_ms: r.timestamp_ms,
            value: r.value,
            unit: r.unit.clone(),
        }));
        // A virtual clock stands at the latest reading the plugin has been given.
        if let Some(latest) = readings.iter().map(|r| r.timestamp_ms).max() {
            self.clock.advance_to(latest);
        }
        let result = self.call(Call::OnReadings, |bindings, store| {
            bindings.call_on_readings(store, &batch)
        });
        self.batch = batch;
        result
    }

    /// Call `on-tick` with the host clock's time.
    pub fn on_tick(&mut self, now_ms: i64) -> Result<(), PluginError> {
        self.clock.advance_to(now_ms);
        self.call(Call::OnTick, |bindings, store| bindings.call_on_tick(store, now_ms))
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

    fn call(
        &mut self,
        call: Call,
        invoke: impl FnOnce(&SensorPlugin, &mut Store<InstanceState>) -> wasmtime::Result<Result<(), String>>,
    ) -> Result<(), PluginError> {
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
        let outcome = invoke(&self.bindings, &mut self.store);
        if let (Some(fuel), Some(before), Ok(after)) = (self.fuel.as_mut(), fuel_before, self.store.get_fuel()) {
            let burnt = before.saturating_sub(after);
            match call {
                Call::Instantiate | Call::Init => fuel.init += burnt,
                Call::OnReadings => fuel.on_readings += burnt,
                Call::OnTick => fuel.on_tick += burnt,
            }
        }
        let kind = match outcome {
            Ok(Ok(())) => return Ok(()),
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
