//! The runtime library API with real components: failures become structured
//! errors, a trapped instance is never called again, limits hold.

use edgewise_host::model::{Output, Reading};
use edgewise_host::runtime::{
    Allocator, Call, ChildCompiler, ChildError, Compiler, LimitExceeded, Limits, LoadError, MAX_READINGS_PER_CALL,
    PluginErrorKind, PluginInstance, Runtime, RuntimeOptions,
};
use edgewise_tests::plugin_wasm;

fn readings(count: usize) -> Vec<Reading> {
    (0..count)
        .map(|i| Reading {
            sensor: "s".into(),
            timestamp_ms: 1_000_000 + i as i64 * 300_000,
            value: 100.0,
            unit: "mg/dL".into(),
        })
        .collect()
}

fn faulty(runtime: &Runtime, limits: Limits, fail: &str, after: u32) -> PluginInstance {
    let bytes = std::fs::read(plugin_wasm("faulty-plugin")).unwrap();
    let compiled = runtime.compile("faulty", &bytes).unwrap();
    let mut instance = PluginInstance::new(runtime, &compiled, limits).unwrap();
    instance
        .init(&[("fail".into(), fail.into()), ("after".into(), after.to_string())])
        .unwrap();
    instance
}

#[test]
fn returned_err_keeps_the_instance_usable() {
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let mut instance = faulty(&runtime, Limits::default(), "err", 1);
    instance.on_readings(&readings(1)).unwrap();
    let error = instance.on_readings(&readings(1)).unwrap_err();
    assert_eq!(error.call, Call::OnReadings);
    assert!(matches!(error.kind, PluginErrorKind::Returned(ref m) if m == "failing on purpose at reading 1"));
    assert!(!error.kind.poisons());
    // Still callable: the next call fails the same orderly way, not as poisoned.
    let again = instance.on_readings(&readings(1)).unwrap_err();
    assert!(matches!(again.kind, PluginErrorKind::Returned(_)));
    let tick = instance.on_tick(0).unwrap_err();
    assert!(
        matches!(tick.kind, PluginErrorKind::Returned(ref m) if m.ends_with("(tick)")),
        "{tick}"
    );
}

#[test]
fn a_trapped_instance_is_never_called_again() {
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let mut instance = faulty(&runtime, Limits::default(), "panic", 0);
    let error = instance.on_readings(&readings(1)).unwrap_err();
    assert!(matches!(error.kind, PluginErrorKind::Trapped { .. }), "{error}");
    assert!(error.kind.poisons());
    let after = instance.on_tick(0).unwrap_err();
    assert_eq!(after.kind, PluginErrorKind::Poisoned);
    assert_eq!(after.call, Call::OnTick);
}

#[test]
fn output_limit_per_call_is_enforced() {
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let limits = Limits {
        max_outputs_per_call: 10,
        ..Limits::default()
    };
    let mut instance = faulty(&runtime, limits, "err", 1000);
    instance.on_readings(&readings(10)).unwrap();
    let within = instance.take_outputs();
    assert_eq!(within.len(), 10, "outputs within the limit pass");
    assert!(within.iter().all(|o| matches!(o, Output::Alert(a) if a.code == "seen")));
    let error = instance.on_readings(&readings(11)).unwrap_err();
    assert_eq!(error.kind, PluginErrorKind::Limit(LimitExceeded::Outputs(10)));
    assert!(instance.take_outputs().is_empty(), "a flood is discarded whole");
}

/// A batch larger than [`MAX_READINGS_PER_CALL`] (a bus message holds up to
/// 2,000 readings, ingest takes a queue's worth at once) is given in calls of
/// that many, each with the plugin's limits to itself: a plugin making an
/// output a reading stays within its outputs per call. Before, the whole
/// batch was one call, and one large message failed the plugin's call every
/// time it came.
#[test]
fn a_large_batch_is_given_in_calls_each_within_the_limits() {
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let limits = Limits {
        max_outputs_per_call: MAX_READINGS_PER_CALL,
        ..Limits::default()
    };
    let mut instance = faulty(&runtime, limits, "err", 100_000);
    let batch = readings(4 * MAX_READINGS_PER_CALL + 7);
    instance.on_readings(&batch).unwrap();
    let outputs = instance.take_outputs();
    assert_eq!(outputs.len(), batch.len(), "an output a reading, every one");
}

#[test]
fn deadline_is_per_call_and_configurable() {
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    let limits = Limits {
        call_deadline: std::time::Duration::from_millis(50),
        ..Limits::default()
    };
    let mut instance = faulty(&runtime, limits, "loop", 0);
    let error = instance.on_readings(&readings(1)).unwrap_err();
    assert_eq!(
        error.kind,
        PluginErrorKind::Deadline(std::time::Duration::from_millis(50))
    );
}

#[test]
fn a_component_of_another_world_is_refused() {
    let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
    // A component with no imports and no exports: valid, but not a sensor
    // plugin (without a `snapshot` export, it is judged against 0.1).
    let empty_component = b"\0asm\x0d\0\x01\0";
    let error = runtime.compile("empty", empty_component).err().unwrap();
    let message = error.to_string();
    assert!(
        message.starts_with("`empty` does not fit the edgewise:plugin/sensor-plugin@0.1.0 world"),
        "{message}"
    );
}

/// `edgewise run`'s compiler, the real binary's `compile-child`, for a
/// runtime of `options`.
fn compiled_in_a_child(options: RuntimeOptions) -> Runtime {
    Runtime::new(RuntimeOptions {
        compiler: Compiler::Child(ChildCompiler {
            program: edgewise_procs::workspace::edgewise_path(),
            memory_limit_bytes: 1 << 30,
            deadline: std::time::Duration::from_secs(300),
        }),
        ..options
    })
    .unwrap()
}

/// The compiler process builds its engine as the host's: with fuel and the
/// pooling allocator (both shape the compiled code) its artifact loads (a
/// mismatch is refused by wasmtime) and runs, fuel counted.
#[test]
fn a_component_compiled_in_a_child_runs_in_a_host_of_the_same_engine_configuration() {
    let options = RuntimeOptions {
        fuel: true,
        allocator: Allocator::Pooling {
            instances: 4,
            max_memory_bytes: 64 << 20,
        },
        ..RuntimeOptions::default()
    };
    let runtime = compiled_in_a_child(options);
    assert_ne!(runtime.allocator(), Allocator::OnDemand, "the pool was reserved");
    // Compiled through `runtime`: failing only after 100 readings.
    let mut instance = faulty(&runtime, Limits::default(), "err", 100);
    instance.on_readings(&readings(3)).unwrap();
    assert!(instance.fuel_used().unwrap().on_readings > 0);
}

/// What wasmtime refuses in the compiler process comes back as its message.
#[test]
fn a_component_the_compiler_process_refuses_is_a_load_error_with_wasmtimes_reason() {
    let runtime = compiled_in_a_child(RuntimeOptions::default());
    // A component header and then nothing valid.
    let error = runtime.compile("junk", b"\0asm\x0d\0\x01\0junk").err().unwrap();
    assert!(
        matches!(&error, LoadError::CompileChild { source: ChildError::Compile(message), .. } if !message.is_empty()),
        "{error:?}"
    );
    assert!(
        error.to_string().starts_with("`junk` could not be compiled: "),
        "{error}"
    );
}
