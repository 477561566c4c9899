//! Per-instance host state and the implementation of the `edgewise:plugin/host`
//! imports: outputs are collected for the caller, logs go to `tracing`, state
//! is a bounded in-memory map (made durable by a later layer).

use std::collections::BTreeMap;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::edgewise::plugin::{host, types};
use super::limits::{LimitExceeded, Limits};
use crate::model::{Alert, Output, Severity, Summary};

/// Everything a plugin's `Store` holds besides the instance itself.
pub struct InstanceState {
    pub(crate) plugin: String,
    pub(crate) limits: Limits,
    pub(crate) outputs: Vec<Output>,
    pub(crate) outputs_this_call: usize,
    pub(crate) log_bytes_this_call: usize,
    /// Log lines dropped because a call exceeded its log budget.
    pub(crate) logs_dropped: u64,
    pub(crate) state: BTreeMap<String, Vec<u8>>,
    pub(crate) state_bytes: usize,
    /// The limit that ended the last call, if one did (memory growth is
    /// refused through the limiter, not through an import).
    pub(crate) limit_hit: Option<LimitExceeded>,
    /// What the guest wrote to stderr (panic messages), bounded.
    pub(crate) stderr: MemoryOutputPipe,
    wasi: WasiCtx,
    table: ResourceTable,
}

impl InstanceState {
    pub(crate) fn new(plugin: &str, limits: Limits, wasi: WasiCtx, stderr: MemoryOutputPipe) -> Self {
        InstanceState {
            plugin: plugin.to_owned(),
            limits,
            outputs: Vec::new(),
            outputs_this_call: 0,
            log_bytes_this_call: 0,
            logs_dropped: 0,
            state: BTreeMap::new(),
            state_bytes: 0,
            limit_hit: None,
            stderr,
            wasi,
            table: ResourceTable::new(),
        }
    }

    /// Reset the per-call budgets before a call into the guest.
    pub(crate) fn begin_call(&mut self) {
        self.outputs_this_call = 0;
        self.log_bytes_this_call = 0;
        self.limit_hit = None;
    }

    fn count_output(&mut self) -> wasmtime::Result<()> {
        self.outputs_this_call += 1;
        if self.outputs_this_call > self.limits.max_outputs_per_call {
            let exceeded = LimitExceeded::Outputs(self.limits.max_outputs_per_call);
            self.limit_hit = Some(exceeded.clone());
            return Err(wasmtime::Error::new(exceeded));
        }
        Ok(())
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for InstanceState {}

impl host::Host for InstanceState {
    fn emit_alert(&mut self, alert: types::Alert) -> wasmtime::Result<()> {
        self.count_output()?;
        self.outputs.push(Output::Alert(Alert {
            sensor: alert.sensor,
            timestamp_ms: alert.timestamp_ms,
            severity: match alert.severity {
                types::Severity::Info => Severity::Info,
                types::Severity::Warning => Severity::Warning,
                types::Severity::Critical => Severity::Critical,
            },
            code: alert.code,
            message: alert.message,
            value: alert.value,
        }));
        Ok(())
    }

    fn emit_summary(&mut self, summary: types::Summary) -> wasmtime::Result<()> {
        self.count_output()?;
        self.outputs.push(Output::Summary(Summary {
            sensor: summary.sensor,
            window_start_ms: summary.window_start_ms,
            window_end_ms: summary.window_end_ms,
            metrics: summary.metrics.into_iter().map(|m| (m.name, m.value)).collect(),
        }));
        Ok(())
    }

    fn log(&mut self, level: types::LogLevel, message: String) -> wasmtime::Result<()> {
        self.log_bytes_this_call = self.log_bytes_this_call.saturating_add(message.len());
        if self.log_bytes_this_call > self.limits.max_log_bytes_per_call {
            self.logs_dropped += 1;
            return Ok(());
        }
        let plugin = self.plugin.as_str();
        match level {
            types::LogLevel::Trace => tracing::trace!(plugin, "{message}"),
            types::LogLevel::Debug => tracing::debug!(plugin, "{message}"),
            types::LogLevel::Info => tracing::info!(plugin, "{message}"),
            types::LogLevel::Warn => tracing::warn!(plugin, "{message}"),
            types::LogLevel::Error => tracing::error!(plugin, "{message}"),
        }
        Ok(())
    }

    fn state_get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.state.get(&key).cloned())
    }

    fn state_set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        let old = self.state.get(&key).map_or(0, |v| key.len() + v.len());
        let new_total = self.state_bytes - old + key.len() + value.len();
        if new_total > self.limits.max_state_bytes {
            let exceeded = LimitExceeded::State(self.limits.max_state_bytes);
            self.limit_hit = Some(exceeded.clone());
            return Err(wasmtime::Error::new(exceeded));
        }
        self.state_bytes = new_total;
        self.state.insert(key, value);
        Ok(())
    }
}

impl wasmtime::ResourceLimiter for InstanceState {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.limits.max_memory_bytes {
            let exceeded = LimitExceeded::Memory {
                limit: self.limits.max_memory_bytes,
                requested: desired,
            };
            self.limit_hit = Some(exceeded.clone());
            return Err(wasmtime::Error::new(exceeded));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Tables hold function references; 100k entries is far beyond any real plugin.
        Ok(desired <= 100_000)
    }
}
