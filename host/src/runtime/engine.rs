//! The process-wide wasmtime engine, its linker and its epoch clock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine};

use super::bindings::{SensorPlugin, SensorPluginPre};
use super::error::{LoadError, RuntimeError};
use super::host_api::InstanceState;

/// How often the epoch advances: the granularity of call deadlines.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// One wasmtime `Engine` per process, with the linker that provides the host
/// imports and WASI, and a thread that advances the epoch for call deadlines.
pub struct Runtime {
    engine: Engine,
    linker: Linker<InstanceState>,
    epoch_ticker: Option<EpochTicker>,
    deterministic: bool,
}

/// Options for [`Runtime::new`].
#[derive(Debug, Clone, Default)]
pub struct RuntimeOptions {
    /// Give plugins fixed WASI clocks and random numbers, so that replays are
    /// byte-identical even for a plugin that (wrongly) uses them or iterates a
    /// randomly-seeded `HashMap`.
    pub deterministic: bool,
}

/// A component compiled for this engine and pre-linked, ready to instantiate.
pub struct CompiledPlugin {
    pub(crate) name: String,
    pub(crate) pre: SensorPluginPre<InstanceState>,
}

impl CompiledPlugin {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Runtime {
    /// Create the engine (Cranelift, epoch interruption on) and the linker.
    pub fn new(options: RuntimeOptions) -> Result<Runtime, RuntimeError> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        let engine = Engine::new(&config).map_err(|e| RuntimeError(format!("{e}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| RuntimeError(format!("linking WASI: {e}")))?;
        SensorPlugin::add_to_linker::<InstanceState, HasSelf<InstanceState>>(&mut linker, |state| state)
            .map_err(|e| RuntimeError(format!("linking the host imports: {e}")))?;
        let epoch_ticker =
            EpochTicker::start(engine.clone()).map_err(|e| RuntimeError(format!("starting the epoch thread: {e}")))?;
        Ok(Runtime {
            engine,
            linker,
            epoch_ticker: Some(epoch_ticker),
            deterministic: options.deterministic,
        })
    }

    /// Compile a component and check that it fits the `sensor-plugin` world.
    pub fn compile(&self, name: &str, bytes: &[u8]) -> Result<CompiledPlugin, LoadError> {
        let plugin = name.to_owned();
        match bytes.get(0..8) {
            Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => return Err(LoadError::CoreModule { plugin }),
            Some([0, b'a', b's', b'm', ..]) => {}
            _ => return Err(LoadError::NotWasm { plugin }),
        }
        let component = Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile {
            plugin: plugin.clone(),
            reason: format!("{e:#}"),
        })?;
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| LoadError::World {
            plugin: plugin.clone(),
            reason: format!("{e:#}"),
        })?;
        let pre = SensorPluginPre::new(instance_pre).map_err(|e| LoadError::World {
            plugin: plugin.clone(),
            reason: format!("{e:#}"),
        })?;
        Ok(CompiledPlugin { name: plugin, pre })
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn deterministic(&self) -> bool {
        self.deterministic
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(ticker) = self.epoch_ticker.take() {
            ticker.stop();
        }
    }
}

/// A named thread that increments the engine's epoch every [`EPOCH_TICK`].
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

impl EpochTicker {
    fn start(engine: Engine) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let stop_flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("edgewise-epoch".into())
            .spawn(move || {
                while !stop_flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })?;
        Ok(EpochTicker { stop, thread })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        // The thread only sleeps and increments a counter: joining cannot fail
        // unless it panicked, which it cannot.
        let _ = self.thread.join();
    }
}
