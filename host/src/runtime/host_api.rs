//! Per-instance host state and the implementation of the `edgewise:plugin/host`
//! imports of both contracts: outputs are collected for the caller, logs go to
//! `tracing`; 0.1's state is a bounded in-memory map that lives and dies with
//! the instance (nothing of it is written to disk: a restart, a trap or an
//! upgrade starts empty); 0.2's `asset` copies a signed asset into the
//! plugin's memory, under its memory limit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{v0_1, v0_2};
use super::bounded::{self, MAX_CODE_BYTES, MAX_LOG_LINE_BYTES, MAX_MESSAGE_BYTES, MAX_SENSOR_BYTES};
use super::clock::MonotonicClock;
use super::limits::{
    LimitExceeded, Limits, MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLE_ELEMENTS, MAX_TABLES, MAX_WASI_RESOURCES,
    OutputRate, PerSecond,
};
use super::stderr::StderrTail;
use super::world::Assets;
use crate::model::{Alert, Output, Severity, Summary};

/// Everything a plugin's `Store` holds besides the instance itself.
pub struct InstanceState {
    pub(crate) plugin: String,
    pub(crate) limits: Limits,
    pub(crate) outputs: Vec<Output>,
    pub(crate) outputs_this_call: usize,
    outputs_per_second: OutputRate,
    log_bytes_per_second: PerSecond,
    /// Log lines dropped because the plugin exceeded its log budget.
    pub(crate) logs_dropped: u64,
    pub(crate) state: BTreeMap<String, Vec<u8>>,
    pub(crate) state_bytes: usize,
    /// The limit that ended the last call, if one did (memory growth is
    /// refused through the limiter, not through an import).
    pub(crate) limit_hit: Option<LimitExceeded>,
    /// What the guest wrote to stderr (panic messages), bounded.
    pub(crate) stderr: StderrTail,
    /// Bytes of linear memory over all memories of the instance: the memory
    /// limit is for the component as a whole, not per memory.
    memory_bytes: Growth,
    /// Table elements over all tables of the instance.
    table_elements: Growth,
    /// The instance's monotonic clock, shared with the WASI `subscribe-*`.
    pub(crate) monotonic: Arc<MonotonicClock>,
    /// The signed assets `asset(name)` reads (contract 0.2).
    assets: Assets,
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
}

impl InstanceState {
    pub(crate) fn new(
        plugin: &str,
        limits: Limits,
        wasi: WasiCtx,
        stderr: StderrTail,
        monotonic: Arc<MonotonicClock>,
        assets: Assets,
    ) -> Self {
        let mut table = ResourceTable::new();
        table.set_max_capacity(MAX_WASI_RESOURCES);
        InstanceState {
            plugin: plugin.to_owned(),
            limits,
            outputs: Vec::new(),
            outputs_this_call: 0,
            outputs_per_second: OutputRate::new(),
            log_bytes_per_second: PerSecond::new(),
            logs_dropped: 0,
            state: BTreeMap::new(),
            state_bytes: 0,
            limit_hit: None,
            stderr,
            memory_bytes: Growth::default(),
            table_elements: Growth::default(),
            monotonic,
            assets,
            wasi,
            table,
        }
    }

    /// `count` readings are given to the plugin: each allows it
    /// [`super::limits::OUTPUTS_PER_READING`] outputs beyond its rate limit
    /// in this second.
    pub(crate) fn readings_given(&mut self, count: usize) {
        self.outputs_per_second.readings(count, Instant::now());
    }

    /// Reset the per-call budgets before a call into the guest.
    pub(crate) fn begin_call(&mut self) {
        self.outputs_this_call = 0;
        self.limit_hit = None;
    }

    /// Count one output of `size` bytes against the per-call, per-second
    /// and size limits.
    fn count_output(&mut self, size: usize) -> wasmtime::Result<()> {
        self.outputs_this_call += 1;
        if self.outputs_this_call > self.limits.max_outputs_per_call {
            return self.breach(LimitExceeded::Outputs(self.limits.max_outputs_per_call));
        }
        if size > self.limits.max_output_bytes {
            return self.breach(LimitExceeded::OutputSize {
                limit: self.limits.max_output_bytes,
                size,
            });
        }
        if let Some(per_second) = self.limits.max_outputs_per_second
            && !self.outputs_per_second.output(per_second, Instant::now())
        {
            return self.breach(LimitExceeded::OutputRate(per_second));
        }
        Ok(())
    }

    fn breach(&mut self, exceeded: LimitExceeded) -> wasmtime::Result<()> {
        self.limit_hit = Some(exceeded.clone());
        Err(wasmtime::Error::new(exceeded))
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

/// The imports both contracts share (`emit-alert`, `emit-summary`, `log`),
/// for the bindings of one contract version: the same checks and the same
/// host types, whichever version the plugin targets.
macro_rules! shared_imports {
    ($version:ident) => {
        fn emit_alert(&mut self, alert: $version::types::Alert) -> wasmtime::Result<()> {
            use $version::types::Severity as S;
            let severity = match alert.severity {
                S::Info => Severity::Info,
                S::Warning => Severity::Warning,
                S::Critical => Severity::Critical,
            };
            self.push_alert(Alert {
                sensor: alert.sensor,
                timestamp_ms: alert.timestamp_ms,
                severity,
                code: alert.code,
                message: alert.message,
                value: alert.value,
            })
        }

        fn emit_summary(&mut self, summary: $version::types::Summary) -> wasmtime::Result<()> {
            self.push_summary(Summary {
                sensor: summary.sensor,
                window_start_ms: summary.window_start_ms,
                window_end_ms: summary.window_end_ms,
                metrics: summary.metrics.into_iter().map(|m| (m.name, m.value)).collect(),
            })
        }

        fn log(&mut self, level: $version::types::LogLevel, message: String) -> wasmtime::Result<()> {
            use $version::types::LogLevel as L;
            let level = match level {
                L::Trace => tracing::Level::TRACE,
                L::Debug => tracing::Level::DEBUG,
                L::Info => tracing::Level::INFO,
                L::Warn => tracing::Level::WARN,
                L::Error => tracing::Level::ERROR,
            };
            self.write_log(level, message);
            Ok(())
        }
    };
}

impl InstanceState {
    /// An alert from the plugin, counted against the output limits, each
    /// field bounded.
    fn push_alert(&mut self, alert: Alert) -> wasmtime::Result<()> {
        self.count_output(alert.sensor.len() + alert.code.len() + alert.message.len() + 32)?;
        // Within the output size, each field is bounded too: an id or a code
        // of kilobytes is not one a person or a pager can use.
        self.outputs.push(Output::Alert(Alert {
            sensor: bounded::truncate(alert.sensor, MAX_SENSOR_BYTES),
            code: bounded::truncate(alert.code, MAX_CODE_BYTES),
            message: bounded::truncate(alert.message, MAX_MESSAGE_BYTES),
            ..alert
        }));
        Ok(())
    }

    /// A summary from the plugin, counted against the output limits.
    fn push_summary(&mut self, summary: Summary) -> wasmtime::Result<()> {
        let metrics: usize = summary.metrics.iter().map(|(name, _)| name.len() + 8).sum();
        self.count_output(summary.sensor.len() + metrics + 16)?;
        self.outputs.push(Output::Summary(Summary {
            sensor: bounded::truncate(summary.sensor, MAX_SENSOR_BYTES),
            metrics: summary
                .metrics
                .into_iter()
                .map(|(name, value)| (bounded::truncate(name, MAX_CODE_BYTES), value))
                .collect(),
            ..summary
        }));
        Ok(())
    }

    /// A log line from the plugin, within its budget (else dropped, counted).
    fn write_log(&mut self, level: tracing::Level, message: String) {
        if self.log_bytes_per_second.add(message.len(), Instant::now()) > self.limits.max_log_bytes_per_second {
            self.logs_dropped += 1;
            return;
        }
        let message = bounded::truncate(message, MAX_LOG_LINE_BYTES);
        let plugin = self.plugin.as_str();
        match level {
            tracing::Level::TRACE => tracing::trace!(plugin, "{message}"),
            tracing::Level::DEBUG => tracing::debug!(plugin, "{message}"),
            tracing::Level::INFO => tracing::info!(plugin, "{message}"),
            tracing::Level::WARN => tracing::warn!(plugin, "{message}"),
            tracing::Level::ERROR => tracing::error!(plugin, "{message}"),
        }
    }
}

impl v0_1::types::Host for InstanceState {}

impl v0_1::host::Host for InstanceState {
    shared_imports!(v0_1);

    fn state_get(&mut self, key: String) -> wasmtime::Result<Option<Vec<u8>>> {
        Ok(self.state.get(&key).cloned())
    }

    fn state_set(&mut self, key: String, value: Vec<u8>) -> wasmtime::Result<()> {
        let old = self.state.get(&key).map_or(0, |v| key.len() + v.len());
        let new_total = self.state_bytes - old + key.len() + value.len();
        if new_total > self.limits.max_state_bytes {
            return self.breach(LimitExceeded::State(self.limits.max_state_bytes));
        }
        self.state_bytes = new_total;
        self.state.insert(key, value);
        Ok(())
    }
}

impl v0_2::types::Host for InstanceState {}

impl v0_2::host::Host for InstanceState {
    shared_imports!(v0_2);

    fn asset(&mut self, name: String) -> wasmtime::Result<Option<Vec<u8>>> {
        let Some(bytes) = self.assets.get(&name) else {
            return Ok(None);
        };
        // The copy lands in the plugin's memory, whose growth the limiter
        // bounds; one that could never fit is refused before the host copies it.
        if bytes.len() > self.limits.max_memory_bytes {
            let exceeded = LimitExceeded::Memory {
                limit: self.limits.max_memory_bytes,
                requested: bytes.len(),
            };
            return self.breach(exceeded).map(|()| None);
        }
        Ok(Some(bytes.to_vec()))
    }
}

/// What all memories (or all tables) of an instance hold together, and the
/// growth last allowed, taken back if the growth then fails.
#[derive(Debug, Default)]
struct Growth {
    total: usize,
    pending: usize,
}

impl Growth {
    /// The total if one memory (or table) grew from `current` to `desired`.
    fn total_after(&self, current: usize, desired: usize) -> usize {
        self.total.saturating_add(desired.saturating_sub(current))
    }

    /// Count the growth from `current` to `desired`.
    fn allow(&mut self, current: usize, desired: usize) {
        self.pending = desired.saturating_sub(current);
        self.total = self.total.saturating_add(self.pending);
    }

    /// The growth last allowed failed: it holds nothing.
    fn take_back(&mut self) {
        self.total = self.total.saturating_sub(self.pending);
        self.pending = 0;
    }
}

impl wasmtime::ResourceLimiter for InstanceState {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|maximum| desired > maximum) {
            // Beyond the memory's own maximum: the growth fails anyway
            // (`memory.grow` returns -1), and nothing is allocated.
            return Ok(false);
        }
        // Called for every memory of the instance, at creation (from 0) and
        // on each growth: the sum is what the component holds.
        let total = self.memory_bytes.total_after(current, desired);
        if total > self.limits.max_memory_bytes {
            self.breach(LimitExceeded::Memory {
                limit: self.limits.max_memory_bytes,
                requested: total,
            })?;
        }
        self.memory_bytes.allow(current, desired);
        Ok(true)
    }

    fn memory_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.memory_bytes.take_back();
        Ok(())
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|maximum| desired > maximum) {
            return Ok(false);
        }
        // Tables hold function references; 100k entries over all tables is
        // far beyond any real plugin.
        if self.table_elements.total_after(current, desired) > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        self.table_elements.allow(current, desired);
        Ok(true)
    }

    fn table_grow_failed(&mut self, _error: wasmtime::Error) -> wasmtime::Result<()> {
        self.table_elements.take_back();
        Ok(())
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

#[cfg(test)]
mod tests {
    //! The host imports called directly, without a guest.

    use super::*;
    use crate::runtime::bindings::v0_1::host::Host;
    use crate::runtime::bindings::v0_1::types;

    fn state(limits: Limits) -> InstanceState {
        with_assets(limits, Assets::default())
    }

    fn with_assets(limits: Limits, assets: Assets) -> InstanceState {
        let (_, monotonic) = crate::runtime::clock::PluginClock::system().wasi();
        InstanceState::new(
            "test",
            limits,
            WasiCtx::builder().build(),
            StderrTail::default(),
            monotonic,
            assets,
        )
    }

    #[test]
    fn an_asset_is_served_by_name_and_one_beyond_the_memory_limit_is_refused_before_any_copy() {
        use v0_2::host::Host as _;
        let assets = Assets::new([
            ("table.csv".to_owned(), Arc::<[u8]>::from(&b"a,b"[..])),
            ("model.bin".to_owned(), Arc::<[u8]>::from(vec![0u8; (1 << 20) + 1])),
        ]);
        let mut host = with_assets(one_mib_of_memory(), assets);
        assert_eq!(host.asset("table.csv".into()).unwrap(), Some(b"a,b".to_vec()));
        assert_eq!(host.asset("absent".into()).unwrap(), None);
        let error = host.asset("model.bin".into()).unwrap_err();
        assert_eq!(
            error.downcast_ref::<LimitExceeded>(),
            Some(&LimitExceeded::Memory {
                limit: 1 << 20,
                requested: (1 << 20) + 1
            })
        );
        assert!(matches!(host.limit_hit, Some(LimitExceeded::Memory { .. })));
    }

    fn alert(code: &str) -> types::Alert {
        types::Alert {
            sensor: "s".into(),
            timestamp_ms: 1,
            severity: types::Severity::Critical,
            code: code.into(),
            message: "m".into(),
            value: Some(49.0),
        }
    }

    #[test]
    fn outputs_are_collected_in_order() {
        let mut host = state(Limits::default());
        host.emit_alert(alert("urgent-low")).unwrap();
        host.emit_summary(types::Summary {
            sensor: "s".into(),
            window_start_ms: 0,
            window_end_ms: 10,
            metrics: vec![types::Metric {
                name: "n".into(),
                value: 1.0,
            }],
        })
        .unwrap();
        assert!(
            matches!(&host.outputs[0], Output::Alert(a) if a.code == "urgent-low" && a.severity == Severity::Critical)
        );
        assert!(matches!(&host.outputs[1], Output::Summary(s) if s.metrics == vec![("n".to_string(), 1.0)]));
    }

    #[test]
    fn output_budget_is_per_call() {
        let mut host = state(Limits {
            max_outputs_per_call: 2,
            ..Limits::default()
        });
        host.emit_alert(alert("a")).unwrap();
        host.emit_alert(alert("b")).unwrap();
        let error = host.emit_alert(alert("c")).unwrap_err();
        assert_eq!(error.downcast_ref::<LimitExceeded>(), Some(&LimitExceeded::Outputs(2)));
        assert_eq!(host.limit_hit, Some(LimitExceeded::Outputs(2)));
        host.begin_call();
        host.emit_alert(alert("d")).unwrap();
        assert_eq!(host.outputs.len(), 3);
    }

    #[test]
    fn state_is_bounded_and_overwrites_count_once() {
        let mut host = state(Limits {
            max_state_bytes: 10,
            ..Limits::default()
        });
        host.state_set("k".into(), vec![0; 8]).unwrap();
        host.state_set("k".into(), vec![1; 9]).unwrap();
        assert_eq!(host.state_get("k".into()).unwrap(), Some(vec![1; 9]));
        assert_eq!(host.state_get("missing".into()).unwrap(), None);
        let error = host.state_set("other".into(), vec![0; 1]).unwrap_err();
        assert_eq!(error.downcast_ref::<LimitExceeded>(), Some(&LimitExceeded::State(10)));
    }

    #[test]
    fn outputs_over_the_size_or_rate_limit_are_refused() {
        let mut host = state(Limits {
            max_output_bytes: 100,
            max_outputs_per_second: Some(2),
            ..Limits::default()
        });
        let mut huge = alert("huge");
        huge.message = "x".repeat(200);
        let error = host.emit_alert(huge).unwrap_err();
        assert!(matches!(
            error.downcast_ref::<LimitExceeded>(),
            Some(LimitExceeded::OutputSize { limit: 100, .. })
        ));
        host.begin_call();
        host.emit_alert(alert("a")).unwrap();
        host.begin_call();
        host.emit_alert(alert("b")).unwrap();
        host.begin_call();
        let error = host.emit_alert(alert("c")).unwrap_err();
        assert_eq!(
            error.downcast_ref::<LimitExceeded>(),
            Some(&LimitExceeded::OutputRate(2))
        );
    }

    #[test]
    fn log_budget_drops_and_counts() {
        let mut host = state(Limits {
            max_log_bytes_per_second: 10,
            ..Limits::default()
        });
        host.log(types::LogLevel::Info, "12345".into()).unwrap();
        host.log(types::LogLevel::Info, "123456".into()).unwrap();
        assert_eq!(host.logs_dropped, 1);
    }

    /// Limits with 1 MiB of memory over all memories.
    fn one_mib_of_memory() -> Limits {
        Limits {
            max_memory_bytes: 1 << 20,
            ..Limits::default()
        }
    }

    #[test]
    fn memory_growth_beyond_the_limit_is_refused() {
        use wasmtime::ResourceLimiter;
        let mut host = state(one_mib_of_memory());
        assert!(host.memory_growing(0, 1 << 20, None).unwrap());
        assert!(host.memory_growing(1 << 20, (1 << 20) + 1, None).is_err());
        assert!(matches!(host.limit_hit, Some(LimitExceeded::Memory { .. })));
    }

    #[test]
    fn the_memory_limit_covers_all_memories_together() {
        use wasmtime::ResourceLimiter;
        let mut host = state(one_mib_of_memory());
        // Two memories created at 512 KiB each fit; growing either does not.
        assert!(host.memory_growing(0, 512 << 10, None).unwrap());
        assert!(host.memory_growing(0, 512 << 10, None).unwrap());
        let error = host.memory_growing(512 << 10, 576 << 10, None).unwrap_err();
        assert_eq!(
            error.downcast_ref::<LimitExceeded>(),
            Some(&LimitExceeded::Memory {
                limit: 1 << 20,
                requested: (1 << 20) + (64 << 10)
            })
        );
        // A growth that fails after being allowed is not counted.
        let mut host = state(one_mib_of_memory());
        assert!(host.memory_growing(0, 1 << 20, None).unwrap());
        host.memory_grow_failed(wasmtime::Error::msg("no memory")).unwrap();
        assert!(host.memory_growing(0, 1 << 20, None).unwrap());
    }

    /// A core module with `count` memories of `pages` 64 KiB pages each,
    /// encoded by hand (the binary format needs no `wat` crate).
    fn module_with_memories(count: u8, pages: u8) -> Vec<u8> {
        let mut bytes = vec![0, b'a', b's', b'm', 1, 0, 0, 0];
        let mut section = vec![count];
        for _ in 0..count {
            section.extend([0x00, pages]); // limits: min only
        }
        bytes.push(5); // the memory section
        bytes.push(u8::try_from(section.len()).unwrap());
        bytes.extend(section);
        bytes
    }

    fn instantiate(bytes: &[u8], limits: Limits) -> wasmtime::Result<()> {
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, bytes)?;
        let mut store = wasmtime::Store::new(&engine, state(limits));
        store.limiter(|state| state);
        wasmtime::Instance::new(&mut store, &module, &[]).map(|_| ())
    }

    #[test]
    fn wasmtime_asks_the_limiter_for_every_memory_and_the_sum_is_judged() {
        let limits = Limits {
            max_memory_bytes: 1 << 20,
            ..Limits::default()
        };
        // One memory of 640 KiB fits in 1 MiB; two of them do not, although
        // each alone would.
        instantiate(&module_with_memories(1, 10), limits.clone()).unwrap();
        let error = instantiate(&module_with_memories(2, 10), limits.clone()).unwrap_err();
        assert!(
            matches!(error.downcast_ref::<LimitExceeded>(), Some(LimitExceeded::Memory { requested, .. }) if *requested == 20 << 16),
            "{error:?}"
        );
        // More memories than any plugin needs are refused, however small.
        instantiate(&module_with_memories(MAX_MEMORIES as u8, 0), limits.clone()).unwrap();
        assert!(instantiate(&module_with_memories(MAX_MEMORIES as u8 + 1, 0), limits).is_err());
    }

    #[test]
    fn alert_fields_and_log_lines_are_bounded() {
        let mut host = state(Limits::default());
        let mut long = alert(&"c".repeat(1000));
        long.sensor = "s".repeat(1000);
        long.message = "m".repeat(10_000);
        host.emit_alert(long).unwrap();
        let Output::Alert(alert) = &host.outputs[0] else {
            panic!("not an alert");
        };
        assert!(alert.sensor.len() <= MAX_SENSOR_BYTES && alert.sensor.contains("[truncated, 1000 bytes]"));
        assert!(alert.code.len() <= MAX_CODE_BYTES && alert.code.contains("[truncated"));
        assert!(alert.message.len() <= MAX_MESSAGE_BYTES && alert.message.contains("[truncated, 10000 bytes]"));
        // A long log line is cut, not dropped (it fits the per-second budget).
        host.log(types::LogLevel::Info, "l".repeat(MAX_LOG_LINE_BYTES * 2))
            .unwrap();
        assert_eq!(host.logs_dropped, 0);
    }
}
