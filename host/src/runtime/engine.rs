//! The process-wide wasmtime engine, its linker and its epoch clock.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{v0_1, v0_2};
use super::error::{LoadError, RuntimeError};
use super::host_api::InstanceState;
use super::isolated::{self, Compiler};
use super::world::{Assets, SnapshotSchemas, World};

/// How often the epoch advances: the granularity of call deadlines.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// One wasmtime `Engine` per process, with the linker that provides the host
/// imports and WASI, and a thread that advances the epoch for call deadlines.
pub struct Runtime {
    engine: Engine,
    linker: Linker<InstanceState>,
    epoch_ticker: Option<EpochTicker>,
    /// Plugin code running, which the epoch ticker waits for.
    activity: Arc<Activity>,
    deterministic: bool,
    fuel: bool,
    allocator: Allocator,
    compiler: Compiler,
}

/// Options for [`Runtime::new`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Give plugins fixed WASI random numbers and (through
    /// [`PluginInstance::new`](super::PluginInstance::new)) a virtual WASI
    /// clock that only the calls move, so that replays are byte-identical even
    /// for a plugin that (wrongly) reads them or iterates a randomly-seeded
    /// `HashMap`. Replay sets its clock itself with `PluginInstance::with_clock`.
    pub deterministic: bool,
    /// Count fuel (executed WebAssembly operators): deterministic CPU
    /// accounting for `replay --fuel`. Costs some speed, so off by default.
    pub fuel: bool,
    /// How instance memory is allocated.
    pub allocator: Allocator,
    /// Where components are compiled (in this process unless asked).
    pub compiler: Compiler,
}

/// How wasmtime allocates instances, their memories and tables.
///
/// The default is on demand, chosen from measurements (`BENCHMARKS.md`,
/// "Instance allocator"): for glucose-monitor the pool did not make
/// instantiate + `init` faster (about 35 µs vs 32 µs; a restart 22 µs vs
/// 23 µs), used more resident memory per instance (49 vs 42 KiB), and
/// reserves address space for every slot up front while capping the number
/// of instances. Components this small leave the pool nothing to save.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Allocator {
    /// mmap per instance when it is created (wasmtime's default).
    #[default]
    OnDemand,
    /// Slots reserved up front for `instances` component instances whose
    /// memories are at most `max_memory_bytes`. If the address space cannot
    /// be reserved, [`Runtime::new`] falls back to [`Allocator::OnDemand`].
    Pooling {
        /// Component instances alive at once.
        instances: u32,
        /// Largest linear memory of any instance, in bytes.
        max_memory_bytes: usize,
    },
}

/// Core instances, memories and tables one plugin component may hold in a
/// pool slot: a Rust `wasm32-wasip2` component has its module plus WASI
/// adapter shims (measured: 4 core instances, 1 memory, 2 tables).
const POOL_CORE_INSTANCES_PER_COMPONENT: u32 = 8;
const POOL_MEMORIES_PER_COMPONENT: u32 = 2;
const POOL_TABLES_PER_COMPONENT: u32 = 4;

/// A component compiled for this engine and pre-linked against the world it
/// targets, ready to instantiate, with the signed assets its instances read
/// and the snapshot schemas its manifest declares.
pub struct CompiledPlugin {
    pub(crate) name: String,
    pub(crate) pre: Pre,
    pub(crate) assets: Assets,
    pub(crate) snapshot_schemas: SnapshotSchemas,
}

impl CompiledPlugin {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The world the component targets.
    pub fn world(&self) -> World {
        self.pre.world()
    }

    /// The same plugin, its instances reading `assets` (`asset(name)` of a
    /// 0.2 plugin; a 0.1 plugin cannot read them).
    pub fn with_assets(mut self, assets: Assets) -> CompiledPlugin {
        self.assets = assets;
        self
    }

    /// The same plugin, its instances' snapshots checked against `schemas`
    /// (a bundle's manifest; [`SnapshotSchemas::Unchecked`] until then).
    pub fn with_snapshot_schemas(mut self, schemas: SnapshotSchemas) -> CompiledPlugin {
        self.snapshot_schemas = schemas;
        self
    }

    /// The snapshot schemas its instances are checked against.
    pub fn snapshot_schemas(&self) -> &SnapshotSchemas {
        &self.snapshot_schemas
    }
}

/// A component pre-linked against one world's bindings.
pub(crate) enum Pre {
    V0_1(v0_1::SensorPluginPre<InstanceState>),
    V0_2(v0_2::SensorPluginPre<InstanceState>),
}

impl Pre {
    /// Link `component` against the world it targets: 0.2 if it exports
    /// `snapshot` (which only that world has), else 0.1. A component that
    /// fits neither fails with the reason it does not fit the one it meant.
    pub(crate) fn link(linker: &Linker<InstanceState>, component: &Component) -> Result<Pre, (World, wasmtime::Error)> {
        let engine = linker.engine();
        let world = if component
            .component_type()
            .exports(engine)
            .any(|(name, _)| name == "snapshot")
        {
            World::V0_2
        } else {
            World::V0_1
        };
        let linked = linker.instantiate_pre(component).and_then(|instance_pre| match world {
            World::V0_1 => v0_1::SensorPluginPre::new(instance_pre).map(Pre::V0_1),
            World::V0_2 => v0_2::SensorPluginPre::new(instance_pre).map(Pre::V0_2),
        });
        linked.map_err(|error| (world, error))
    }

    /// The world it is linked against.
    pub(crate) fn world(&self) -> World {
        match self {
            Pre::V0_1(_) => World::V0_1,
            Pre::V0_2(_) => World::V0_2,
        }
    }

    /// The compiled component.
    pub(crate) fn component(&self) -> &Component {
        match self {
            Pre::V0_1(pre) => pre.instance_pre().component(),
            Pre::V0_2(pre) => pre.instance_pre().component(),
        }
    }
}

impl Runtime {
    /// Create the engine (Cranelift, epoch interruption on) and the linker.
    pub fn new(options: RuntimeOptions) -> Result<Runtime, RuntimeError> {
        let (engine, allocator) = match options.allocator {
            Allocator::OnDemand => (new_engine(&options, Allocator::OnDemand)?, Allocator::OnDemand),
            pooling @ Allocator::Pooling { .. } => match new_engine(&options, pooling) {
                Ok(engine) => (engine, pooling),
                Err(error) => {
                    tracing::warn!(%error, "Cannot reserve the instance pool; allocating on demand");
                    (new_engine(&options, Allocator::OnDemand)?, Allocator::OnDemand)
                }
            },
        };
        let mut linker = Linker::new(&engine);
        let link = |what: &'static str| move |e: wasmtime::Error| RuntimeError::Link { what, source: e.into() };
        super::wasi::add_to_linker(&mut linker).map_err(link("WASI"))?;
        v0_1::SensorPlugin::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut linker, |state| state)
            .map_err(link("the host imports of contract 0.1"))?;
        v0_2::SensorPlugin::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut linker, |state| state)
            .map_err(link("the host imports of contract 0.2"))?;
        let activity = Arc::new(Activity::default());
        let epoch_ticker = EpochTicker::start(engine.clone(), activity.clone()).map_err(RuntimeError::EpochThread)?;
        Ok(Runtime {
            engine,
            linker,
            epoch_ticker: Some(epoch_ticker),
            activity,
            deterministic: options.deterministic,
            fuel: options.fuel,
            allocator,
            compiler: options.compiler,
        })
    }

    /// The allocator in use (after any fallback from pooling).
    pub fn allocator(&self) -> Allocator {
        self.allocator
    }

    /// Compile a component and link it against the `sensor-plugin` world it
    /// targets (any this host runs: [`CompiledPlugin::world`] says which).
    pub fn compile(&self, name: &str, bytes: &[u8]) -> Result<CompiledPlugin, LoadError> {
        let plugin = name.to_owned();
        match bytes.get(0..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(LoadError::CoreModule { plugin }),
            Some([0, b'a', b's', b'm', ..]) => {}
            _ => return Err(LoadError::NotWasm { plugin }),
        }
        let component = match &self.compiler {
            Compiler::InProcess => Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile {
                plugin: plugin.clone(),
                source: e.into(),
            })?,
            Compiler::Child(child) => isolated::compile(&plugin, &self.engine, self.fuel, self.allocator, child, bytes)
                .map_err(|source| LoadError::CompileChild {
                    plugin: plugin.clone(),
                    source,
                })?,
        };
        let pre = Pre::link(&self.linker, &component).map_err(|(world, e)| LoadError::World {
            plugin: plugin.clone(),
            world,
            source: e.into(),
        })?;
        Ok(CompiledPlugin {
            name: plugin,
            pre,
            assets: Assets::default(),
            snapshot_schemas: SnapshotSchemas::Unchecked,
        })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The linker with the host imports and WASI (for `cache`, which links
    /// deserialized components).
    pub(crate) fn linker(&self) -> &Linker<InstanceState> {
        &self.linker
    }

    /// What the epoch ticker watches: enter it around plugin code.
    pub(crate) fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }

    pub(crate) fn deterministic(&self) -> bool {
        self.deterministic
    }

    pub(crate) fn fuel(&self) -> bool {
        self.fuel
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(ticker) = self.epoch_ticker.take() {
            ticker.stop();
        }
    }
}

/// The engine for `options` with `allocator` (also the compiler process's:
/// the same configuration makes the same code).
pub(crate) fn new_engine(options: &RuntimeOptions, allocator: Allocator) -> Result<Engine, RuntimeError> {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(options.fuel);
    // For profiling: `perf` then names plugin functions (wasmtime writes
    // /tmp/perf-<pid>.map). Costs nothing when unset.
    if std::env::var_os("EDGEWISE_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if let Allocator::Pooling {
        instances,
        max_memory_bytes,
    } = allocator
    {
        let mut pool = PoolingAllocationConfig::new();
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(POOL_CORE_INSTANCES_PER_COMPONENT))
            .total_memories(instances.saturating_mul(POOL_MEMORIES_PER_COMPONENT))
            .total_tables(instances.saturating_mul(POOL_TABLES_PER_COMPONENT))
            .max_memory_size(max_memory_bytes);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Engine::new(&config).map_err(|e| RuntimeError::Engine(e.into()))
}

/// How many plugin calls (or instantiations) are running: the epoch only
/// needs to advance while one is, so the ticker sleeps otherwise (an idle
/// device then costs no CPU for deadlines).
#[derive(Debug, Default)]
pub(crate) struct Activity {
    running: AtomicUsize,
    ticker: OnceLock<Thread>,
}

impl Activity {
    /// Plugin code starts to run until the guard is dropped: wake the ticker
    /// if it sleeps. (A wake before it parks is kept by the thread, so it
    /// cannot be missed.)
    pub(crate) fn enter(self: &Arc<Activity>) -> Running {
        if self.running.fetch_add(1, Ordering::SeqCst) == 0
            && let Some(ticker) = self.ticker.get()
        {
            ticker.unpark();
        }
        Running(self.clone())
    }

    fn idle(&self) -> bool {
        self.running.load(Ordering::SeqCst) == 0
    }
}

/// Plugin code is running (see [`Activity::enter`]).
pub(crate) struct Running(Arc<Activity>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A named thread that increments the engine's epoch every [`EPOCH_TICK`]
/// while plugin code runs, and sleeps otherwise.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl EpochTicker {
    fn start(engine: Engine, activity: Arc<Activity>) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let watched = activity.clone();
        let thread = std::thread::Builder::new()
            .name("edgewise-epoch".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Relaxed) {
                    if watched.idle() {
                        // Woken by the next call (or by `stop`).
                        std::thread::park();
                        continue;
                    }
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        let _ = activity.ticker.set(thread.thread().clone());
        Ok(EpochTicker { stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.thread().unpark();
        // The thread only sleeps and increments a counter: joining cannot fail
        // unless it panicked, which it cannot.
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_epoch_runs_while_any_plugin_code_does() {
        let activity = Arc::new(Activity::default());
        assert!(activity.idle());
        let (first, second) = (activity.enter(), activity.enter());
        drop(first);
        assert!(!activity.idle(), "one call still runs");
        drop(second);
        assert!(activity.idle());
    }

    #[test]
    fn a_pool_that_fits_is_used_and_one_that_cannot_be_reserved_falls_back() {
        let allocator_in_use = |allocator| {
            Runtime::new(RuntimeOptions {
                allocator,
                ..RuntimeOptions::default()
            })
            .unwrap()
            .allocator()
        };
        let small = Allocator::Pooling {
            instances: 4,
            max_memory_bytes: 16 << 20,
        };
        assert_eq!(allocator_in_use(small), small);
        // A million slots of 4 GiB: far beyond a 47-bit address space.
        let impossible = Allocator::Pooling {
            instances: 1_000_000,
            max_memory_bytes: 4 << 30,
        };
        assert_eq!(allocator_in_use(impossible), Allocator::OnDemand);
    }
}
