//! Criterion micro-benchmarks of the host's hot paths (`cargo bench -p
//! edgewise-host`): payload decode, the per-chunk routing work of ingest,
//! host-import calls from a real component, durable outbox appends, and
//! starting a plugin from the compiled-component cache.
//!
//! Micro-benchmarks time one piece each; the DESIGN's ratio targets are
//! measured side by side by `cargo xtask bench`. The component benchmarks
//! need `cargo xtask build-plugins` and are skipped, with a message, without it.
//!
//! Routing: ingest's batching (`run/ingest.rs`) is not public. Per chunk of
//! messages it decodes each payload and concatenates the readings into one
//! batch for the plugin's queue (NATS does the subject filtering), so
//! `routing/*` times exactly that with the public codec.

use std::fmt::Display;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use edgewise_host::bus::payload;
use edgewise_host::model::Reading;
use edgewise_host::outbox::{Kind, NewEntry, Outbox, OutboxKey, OutboxLimits};
use edgewise_host::runtime::{CompiledPlugin, Limits, PluginInstance, Runtime, RuntimeOptions};

/// The value of `result`, or a panic naming what failed (a benchmark setup
/// that fails has nothing to measure).
fn must<T, E: Display>(result: Result<T, E>, what: &str) -> T {
    match result {
        Ok(value) => value,
        Err(error) => panic!("{what}: {error}"),
    }
}

/// A millisecond timestamp in 2023.
const T0_MS: i64 = 1_700_000_000_000;
/// CGM reading spacing: 5 minutes.
const STEP_MS: i64 = 300_000;

fn object_ms(i: usize) -> String {
    format!(
        r#"{{"ts":{},"value":{}.5,"unit":"mg/dL"}}"#,
        T0_MS + i as i64 * STEP_MS,
        90 + i % 50
    )
}

fn object_rfc3339(i: usize) -> String {
    format!(
        r#"{{"ts":"2023-11-14T22:{:02}:20Z","value":{}.5,"unit":"mg/dL","sensor":"cgm-1"}}"#,
        i % 60,
        90 + i % 50
    )
}

fn array(items: impl Iterator<Item = String>) -> String {
    format!("[{}]", items.collect::<Vec<_>>().join(","))
}

fn bench_payload(c: &mut Criterion) {
    let mut group = c.benchmark_group("payload_decode");
    let cases = [
        ("object_ts_ms", object_ms(0), 1u64),
        ("object_ts_rfc3339", object_rfc3339(0), 1),
        ("array16_ts_ms", array((0..16).map(object_ms)), 16),
        ("array16_ts_rfc3339", array((0..16).map(object_rfc3339)), 16),
    ];
    for (name, body, readings) in cases {
        must(payload::decode("sensors.cgm-1", body.as_bytes()), name);
        group.throughput(Throughput::Elements(readings));
        group.bench_function(name, |b| {
            b.iter(|| payload::decode(black_box("sensors.cgm-1"), black_box(body.as_bytes())))
        });
    }
    group.finish();
}

/// One chunk as ingest takes it from the subscription: `messages` messages
/// from 4 sensors, every fourth an array of 4 readings, a mix of `ts` forms.
fn chunk(messages: usize) -> Vec<(String, Vec<u8>)> {
    (0..messages)
        .map(|i| {
            let subject = format!("sensors.cgm-{}", i % 4);
            let body = match i % 4 {
                0 => array((i..i + 4).map(object_ms)),
                1 => object_rfc3339(i),
                _ => object_ms(i),
            };
            (subject, body.into_bytes())
        })
        .collect()
}

/// What ingest does per chunk: decode each message, one batch of readings.
fn route(chunk: &[(String, Vec<u8>)]) -> Vec<Reading> {
    let mut readings = Vec::with_capacity(chunk.len());
    for (subject, body) in chunk {
        if let Ok(decoded) = payload::decode(subject, body) {
            readings.extend(decoded);
        }
    }
    readings
}

fn bench_routing(c: &mut Criterion) {
    let mut group = c.benchmark_group("routing");
    for messages in [1usize, 64] {
        let chunk = chunk(messages);
        group.throughput(Throughput::Elements(messages as u64));
        group.bench_with_input(BenchmarkId::new("chunk_decode_batch", messages), &chunk, |b, chunk| {
            b.iter(|| route(black_box(chunk)))
        });
    }
    group.finish();
}

/// A plugin component, or `None` (and a message) if it is not built.
fn plugin_code(file: &str) -> Option<Vec<u8>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/wasm32-wasip2/release")
        .join(file);
    match std::fs::read(&path) {
        Ok(code) => Some(code),
        Err(error) => {
            eprintln!(
                "skipping the component benchmarks: {}: {error} (run `cargo xtask build-plugins`)",
                path.display()
            );
            None
        }
    }
}

/// An initialised glucose-monitor instance. No outputs-per-second limit: a
/// benchmark emits far faster than real time, as a replay does.
fn glucose_instance(runtime: &Runtime, compiled: &CompiledPlugin) -> PluginInstance {
    let limits = Limits {
        max_outputs_per_second: None,
        ..Limits::default()
    };
    let mut instance = must(PluginInstance::new(runtime, compiled, limits), "instantiate");
    must(instance.init(&[]), "init");
    instance
}

/// `count` readings from `*next_ms` on, one sensor, 5 minutes apart; with
/// `alerting`, every reading crosses the `high` threshold (250 mg/dL) one way
/// or the other, so each raises or resolves an alert through `emit-alert`.
fn readings(next_ms: &mut i64, count: usize, alerting: bool) -> Vec<Reading> {
    (0..count)
        .map(|i| {
            let timestamp_ms = *next_ms;
            *next_ms += STEP_MS;
            let value = match (alerting, i % 2) {
                (true, 0) => 300.0,
                (true, _) => 120.0,
                (false, _) => 120.0 + (i % 7) as f64,
            };
            Reading {
                sensor: "cgm-1".into(),
                timestamp_ms,
                value,
                unit: "mg/dL".into(),
            }
        })
        .collect()
}

fn bench_host_imports(c: &mut Criterion) {
    let Some(code) = plugin_code("glucose_monitor.wasm") else {
        return;
    };
    let runtime = must(Runtime::new(RuntimeOptions::default()), "runtime");
    let compiled = must(runtime.compile("glucose-monitor", &code), "compile");
    let mut group = c.benchmark_group("host_imports");
    for (batch, alerting) in [(1usize, false), (1, true), (256, false), (256, true)] {
        let mut instance = glucose_instance(&runtime, &compiled);
        let mut next_ms = T0_MS;
        // Check the setup does what the name says.
        must(
            instance.on_readings(&readings(&mut next_ms, 2, alerting)),
            "on_readings",
        );
        let alerts = instance.take_outputs().len();
        assert!(alerting == (alerts > 0), "alerting={alerting} but {alerts} outputs");
        let name = if alerting {
            "on_readings_alerting"
        } else {
            "on_readings_quiet"
        };
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new(name, batch), |b| {
            b.iter_batched(
                || readings(&mut next_ms, batch, alerting),
                |batch| {
                    must(instance.on_readings(&batch), "on_readings");
                    instance.take_outputs()
                },
                BatchSize::SmallInput,
            )
        });
    }
    let mut instance = glucose_instance(&runtime, &compiled);
    let mut next_ms = T0_MS;
    must(instance.on_readings(&readings(&mut next_ms, 12, false)), "on_readings");
    group.throughput(Throughput::Elements(1));
    group.bench_function("on_tick", |b| {
        b.iter(|| {
            next_ms += 60_000;
            must(instance.on_tick(next_ms), "on_tick");
            instance.take_outputs()
        })
    });
    group.finish();
}

/// A temporary directory in the target directory: on the build's disk, where
/// fsync costs what it costs (`/tmp` may be a RAM disk).
fn disk_tempdir() -> tempfile::TempDir {
    must(tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")), "temporary directory")
}

fn bench_outbox(c: &mut Criterion) {
    let dir = disk_tempdir();
    let key = must(OutboxKey::from_bytes(&[7; OutboxKey::LEN]), "outbox key");
    let mut outbox = must(
        Outbox::open(dir.path(), &key, OutboxLimits::default()),
        "open the outbox",
    );
    let payload = br#"{"device":"edge-01","plugin":"glucose-monitor","version":"1.0.0","seq":1,"kind":"alert","alert":{"sensor":"cgm-1","severity":"critical","code":"urgent-low","message":"Glucose 49 mg/dL is below 54 mg/dL","timestamp_ms":1700000000000}}"#;
    let mut seq = 0u64;
    let mut group = c.benchmark_group("outbox");
    // Each batch is one fsynced transaction: milliseconds, so few samples.
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(4));
    for batch in [1usize, 64] {
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(BenchmarkId::new("append_batch", batch), |b| {
            b.iter_batched(
                || {
                    (0..batch)
                        .map(|_| {
                            seq += 1;
                            NewEntry {
                                kind: Kind::Alert,
                                plugin: "glucose-monitor".into(),
                                subject: "edgewise.edge-01.up.alerts.glucose-monitor".into(),
                                msg_id: format!("edge-01/0123456789abcdef0123456789abcdef/glucose-monitor/{seq}"),
                                payload: payload.to_vec(),
                                created_ms: T0_MS,
                            }
                        })
                        .collect::<Vec<_>>()
                },
                |entries| must(outbox.append_batch(entries), "append_batch"),
                BatchSize::SmallInput,
            )
        });
    }
    group.finish();
}

fn bench_start(c: &mut Criterion) {
    let Some(code) = plugin_code("glucose_monitor.wasm") else {
        return;
    };
    let runtime = must(Runtime::new(RuntimeOptions::default()), "runtime");
    let dir = disk_tempdir();
    must(
        runtime.compile_cached("glucose-monitor", &code, dir.path()),
        "fill the cache",
    );
    let mut group = c.benchmark_group("start");
    group.bench_function("cached_compile_instantiate_init", |b| {
        b.iter(|| {
            let (compiled, _) = must(runtime.compile_cached("glucose-monitor", &code, dir.path()), "compile");
            glucose_instance(&runtime, &compiled)
        })
    });
    let compiled = must(runtime.compile("glucose-monitor", &code), "compile");
    group.bench_function("instantiate_init", |b| b.iter(|| glucose_instance(&runtime, &compiled)));
    // Cranelift on the whole component: seconds, so ten flat samples.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.warm_up_time(Duration::from_millis(100));
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("uncached_compile_instantiate_init", |b| {
        b.iter(|| {
            let compiled = must(runtime.compile("glucose-monitor", &code), "compile");
            glucose_instance(&runtime, &compiled)
        })
    });
    group.finish();
}

/// Short runs: the whole `cargo bench -p edgewise-host` stays well under 3 minutes.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .sample_size(50)
}

criterion_group! {
    name = hot_paths;
    config = config();
    targets = bench_payload, bench_routing, bench_host_imports, bench_outbox, bench_start
}
criterion_main!(hot_paths);
