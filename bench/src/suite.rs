//! The suite: every measurement in order, what they share, and how their
//! rows are gathered. Adding a row is adding a [`Measurement`] to [`SUITE`]
//! (or a row to an existing one).

use std::time::{Duration, Instant};

use anyhow::Context;
use edgewise_host::replay::{self, Format, Recording};

use crate::latency::Latency;
use crate::measure;
use crate::setup::{Bundles, Paths};
use crate::table::{Row, Target, Verdict};

/// What one measurement produced.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Its rows of the table.
    pub rows: Vec<Row>,
    /// Lines for the method notes (sample counts, every step...).
    pub details: Vec<String>,
}

/// One measurement of the suite.
pub struct Measurement {
    /// Short name, for `--only`.
    pub id: &'static str,
    /// Title in the method notes.
    pub title: &'static str,
    /// How it is measured, for the method notes.
    pub method: &'static str,
    /// Run it.
    pub run: fn(&mut Ctx) -> anyhow::Result<Outcome>,
}

/// Figures one measurement makes and a later one reuses.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// glucose-monitor alone: highest sustained ingest, readings/s.
    pub alone_ingest: Option<f64>,
    /// glucose-monitor alone: latency at 1,000 readings/s.
    pub alone_latency: Option<Latency>,
}

/// What every measurement may use.
pub struct Ctx {
    /// Binaries, components, data.
    pub paths: Paths,
    /// Signed bundles and their trust store.
    pub bundles: Bundles,
    /// The Hall2018 recording, loaded once.
    pub hall2018: Recording,
    /// The async runtime for the live measurements (two worker threads).
    pub rt: tokio::runtime::Runtime,
    /// Figures shared between measurements.
    pub shared: Shared,
}

impl Ctx {
    /// Find everything, sign the bundles, load the recording.
    pub fn new(paths: Paths) -> anyhow::Result<Ctx> {
        let bundles = paths.sign_bundles()?;
        let hall2018 = replay::load(&paths.hall2018, Format::IgluCsv, false)
            .with_context(|| format!("cannot load {}", paths.hall2018.display()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        Ok(Ctx {
            paths,
            bundles,
            hall2018,
            rt,
            shared: Shared::default(),
        })
    }
}

/// Every measurement, in the order of the table.
pub const SUITE: &[Measurement] = &[
    Measurement {
        id: "glucose",
        title: "glucose-monitor per reading: wasm vs native",
        method: "The Hall2018 recording goes through glucose-monitor in batches of 1, 16 and 256 readings, \
                 once as the wasm component in the host runtime and once as the same crate linked natively, \
                 each run on a fresh instance (instantiation and `init` not timed), in one process, with \
                 outputs taken after each call on both sides. Both sides make the same calls: the wasm side \
                 is `PluginInstance::on_readings` on an instance with a virtual clock, as `edgewise replay` \
                 makes it (the batch carries the clock: the latest reading so far); the native side runs the \
                 plugin through the SDK's `Driver`, which is what the component's export glue runs, with \
                 `Driver::on_readings(now, batch, out)`, `now` the same clock. The driver ticks the plugin at \
                 its wakes inside a batch on both sides; no `on-tick` call is made. Both sides must emit the \
                 same number of outputs. Seven runs per batch size, interleaved and rotating which side goes \
                 first; the median time per reading of each side is reported. Further sides of the same runs, \
                 measured exactly like the wasm side: the \"contract floor\" rows, a plugin whose calls return \
                 at once (`fail = \"none\"`) on contract 0.2 (`faulty-v02`: a batch names each sensor and \
                 unit once, readings are scalars) and on contract 0.1 (`faulty-plugin`: two strings lifted \
                 per reading), so that the table shows what each contract itself costs; their ratio to native \
                 glucose-monitor is the part of the 1.3x budget the boundary alone takes. And the frozen 0.1 \
                 bundle of glucose-monitor (`tests/fixtures/bundles/v0.1`, verified against its own trust \
                 store and compiled as a device loads it): the same plugin before contract 0.2, in the same run.",
        run: measure::glucose::run,
    },
    Measurement {
        id: "forecast",
        title: "glucose-forecast per reading: wasm vs native",
        method: "As \"glucose-monitor per reading\": the Hall2018 recording goes through glucose-forecast in \
                 batches of 1, 16 and 256 readings, once as its signed bundle (the model, \
                 `plugins/glucose-forecast/model/forecast.json`, a signed asset), verified and compiled as a \
                 device loads it, in an instance with a virtual clock as `edgewise replay` makes it, and once as \
                 the same crate linked natively and run through the SDK's `Driver` (the model provided to \
                 `asset::read` natively), each run on a fresh instance (instantiation and `init`, which parses \
                 the model, not timed), with outputs taken after each call on both sides, which must emit as \
                 many. The default configuration: per reading, the features of the sensor's last hour, a \
                 forecast per horizon (30 and 60 minutes) with the sensor's adapted coefficients, an update of \
                 them by each forecast the reading judges (recursive least squares, 16 coefficients per \
                 horizon), the alert rules and the forecasts waiting for their reading; outputs are the alerts and the hourly accuracy summaries (forecast summaries off). \
                 Seven runs per batch size, interleaved and rotating which side goes first; the median time \
                 per reading of each side. No DESIGN target: issue #16 asks for the figure.",
        run: measure::forecast::run,
    },
    Measurement {
        id: "python",
        title: "A Python plugin per reading: band-py vs its Rust twin band",
        method: "As \"glucose-monitor per reading\": the Hall2018 recording goes through the Python sample \
                 `plugins/band-py` (the Python SDK, built into a component by componentize-py: CPython inside) \
                 and through its Rust twin `plugins/band` (byte-identical outputs), both as wasm components in \
                 the host runtime on a virtual clock as `edgewise replay` runs them, and through band linked \
                 natively and run by the SDK's `Driver`, in batches of 1, 16 and 256 readings, each run on a \
                 fresh instance (instantiation and `init` not timed), outputs taken after each call; all three \
                 must emit as many. Seven runs per batch size, interleaved and rotating which side goes first; \
                 the median time per reading of each side. The band rows are against native band, the \
                 band-py rows against band in wasm. No DESIGN target: issue #18 asks for the figure.",
        run: measure::python::run,
    },
    Measurement {
        id: "replay",
        title: "Replay throughput over Hall2018",
        method: "`edgewise replay --plugin glucose_monitor.wasm --config repeat=30m --config signal_loss=20m \
                 --input Hall2018_processed.csv --out /dev/null` as a user runs it; the figure is the \
                 readings/s it reports (replay loop and JSON output, without loading and compiling), median of \
                 five runs. Baseline: the same readings through the same clock with glucose-monitor linked \
                 natively and driven as the host drives the component (`native`: the SDK's `Driver`, told the \
                 virtual clock with each batch, ticked at the wakes it answers with the host's one-second \
                 floor), on `edgewise_host::replay::drive`, the very code `edgewise replay` runs, so it gets \
                 exactly the calls the CLI makes (batches of at most 256 up to each wake; ticks at the wakes, \
                 none after the last wake within an hour past the last day), without JSON output. The harness \
                 checks that both report the same ticks and the same outputs. Issue #13's target is 0.6x of \
                 native; DESIGN's absolute 3 M readings/s is kept as its own row. In the same runs: the frozen \
                 0.1 bundle (`edgewise replay --trust`, ticked every 5 virtual minutes as contract 0.1 must be), \
                 and the floor of each contract: `faulty-v02` (0.2) and `faulty-plugin` (0.1) with `--config \
                 fail=none`, plugins that do nothing and emit nothing, the most any plugin can reach; the 0.2 \
                 one asks for no tick and gets none, the 0.1 one is ticked every 5 minutes. Where the time goes, \
                 in the same runs and in-process (the bench runs on mimalloc, the host's allocator): \
                 `replay::replay` of the glucose-monitor component (the CLI's loop, on an instance made as the \
                 CLI makes it, without the JSON output), and the native run's very calls (its batches and ticks, \
                 recorded) made to faulty-v02 `fail=none`: the boundary alone.",
        run: measure::replay::run,
    },
    Measurement {
        id: "snapshot",
        title: "Snapshot of glucose-monitor after one day of 100 sensors",
        method: "In-process with the host library: the signed glucose-monitor bundle, verified and compiled as a \
                 device loads it, in an instance with a virtual clock (as `edgewise replay`), is fed a synthetic \
                 day of CGM readings: 100 sensors, one reading each every five minutes (288 a sensor, 28,800 in \
                 all, a curve between about 65 and 215 mg/dL with a phase per sensor, so the day holds lows, \
                 highs and episodes), one batch per five-minute round. Then `PluginInstance::snapshot` twenty \
                 times (its size; the median time, which includes the host's checks of size and schema), and \
                 twenty restores: a fresh instance (instantiation not timed) started with `init_from(config, \
                 snapshot)`, median time; the first restored instance must hand back the same snapshot bytes. \
                 The day's windows are still open (no tick past midnight): the daily window of every sensor is \
                 in the snapshot.",
        run: measure::snapshot::run,
    },
    Measurement {
        id: "ingest",
        title: "Live ingest",
        method: "A private nats-server; real CGM traces (Hall2018, one subject per patient, \
                 `sensors.cgm.<id>`, replayed over and over with timestamps moved to now and later). A \
                 publisher paced in 1 ms steps (it sleeps between bursts) publishes at a rate for 2 s; the \
                 step passes if every reading was delivered within 0.5 s of the last publish and the publisher \
                 reached 95% of the rate; a rate fails after two failed steps (the machine is shared: one \
                 stall elsewhere should not decide). The rate doubles from 4,000/s until a step fails, then three \
                 bisections; the figure is the highest passing rate. A step also passes when the \
                 host's buffers hold its excess until the grace ends (a host that holds a fifth of a step's \
                 readings passes at a quarter above the rate it sustains), so the figure depends on them: \
                 the local bus client's buffer (16,384 messages a subscription), ingest's pending limits \
                 (65,536 messages, 64 MiB) and the plugin's queue (`queue_capacity`, 4,096 readings); the \
                 notes say where the failed steps' readings went (drops before ingest are a lower bound: \
                 the client reports at most 128 at a time). Delivered means counted by a bare \
                 async-nats subscriber on `sensors.>` (baseline) or `readings_in` of glucose-monitor in \
                 `edgewise run`'s status (figure; default configuration but for the output-rate guard, see \
                 the latency notes; no upstream: outputs stay in the outbox, sized by `[outbox] max_mb = 8192` so that it never fills \
                 and evicts during the measurement, as the default 256 MiB would after about 20 s at these rates). Same publisher, same messages, \
                 same run. CPU per reading: after both ladders, one more step at the rate asked of the edgewise \
                 figure's step, first with `edgewise run` (its readings going on where its ladder stopped), then \
                 with a fresh bare subscriber. Around each step (publish, then wait until every reading is \
                 delivered or deliveries stop) the harness reads the CPU time of nats-server, of itself and of \
                 `edgewise run` (user + system of all threads, exited ones included, from `/proc/<pid>/stat`; \
                 per live thread, summed by thread name cut at 15 characters, from \
                 `/proc/<pid>/task/*/schedstat`) and divides by the readings delivered. The harness hosts the \
                 publisher and the bare subscriber on one async runtime, so they cannot be told apart: its cost \
                 in the edgewise step is the publisher's (plus a few status requests), and the bare subscriber's \
                 is its cost in the bare step minus that. The budget note divides the machine's cores (1,000,000 \
                 µs of CPU per second each) by the sum of the per-reading costs, taking them as constant with \
                 the rate.",
        run: measure::ingest::run,
    },
    Measurement {
        id: "latency",
        title: "Reading-to-local-alert latency",
        method: "A publisher thread sleeps until each reading is due (1,000 or 10,000 readings/s) and notes \
                 when it hands each to async-nats; a subscriber in the same process notes when the first \
                 answer about each reading arrives. Traffic: 50 sensors in turn, each reading five minutes \
                 after its sensor's previous one, 120 mg/dL except one reading in ten per sensor at 45 mg/dL, \
                 which raises `urgent-low` (the next reading resolves it: another alert); only those alerting \
                 readings are timed, on both sides. Figure: the `urgent-low` alert of `edgewise run` with \
                 glucose-monitor (a fresh host per rate; its alerts go to the local bus and the durable \
                 outbox). Baseline: a bare echo process (this program, `echo`) that republishes every \
                 reading, one NATS hop like the host's. The \"threading floor\" rows time a second echo \
                 process (`echo --via-thread`) that hops the way `edgewise run` does, with nothing else: a \
                 multi-threaded async runtime takes the messages in chunks of up to 256 and queues them to a \
                 thread of their own, which publishes each through the runtime; no plugin, no outbox. Its \
                 ratio to the bare echo is what the host's threading (DESIGN: one thread per plugin, fed by \
                 a bounded queue) costs before any plugin work. The first second of readings is warm-up; then 20 s \
                 at 1,000/s and 5 s at 10,000/s. Nearest-rank percentiles. The glucose-monitor of every live \
                 measurement runs with `[plugins.limits] outputs_per_second` raised to 10,000,000: the \
                 traffic plays hours of readings per second, so its summaries come thousands of times faster \
                 than in life and would trip that real-time flood guard (default 5,000/s); nothing else \
                 differs from the default configuration. Beside each `edgewise run`, a thread appends 4 KiB \
                 to a file in the host's directory and waits for `fdatasync`, every 50 ms: the notes give \
                 the disk's durable-write latency in those seconds, since a commit of the outbox writer that \
                 takes long holds up the alerts behind it once the writer's queue (4,096 appends) is full, \
                 and the figures alone cannot tell a slow disk from a slow host.",
        run: measure::latency::run,
    },
    Measurement {
        id: "isolation",
        title: "glucose-monitor alone vs beside a hostile plugin (issue #5)",
        method: "As \"Live ingest\" and \"Reading-to-local-alert latency\" at 1,000/s, with a second plugin in \
                 the same `edgewise run`: `faulty-plugin` signed with `fail = \"loop\"` and subscribed to the \
                 same `sensors.cgm.>`, so every batch it gets loops until its 1 s call deadline; the \
                 `[supervisor]` is set never to quarantine it (`quarantine_after = 1000`, `backoff_max = \
                 \"100ms\"`), so it burns about one of the two cores for the whole measurement: the worst \
                 case (by default it is quarantined after 5 failures and costs nothing after that). The baseline is glucose-monitor alone, measured earlier in the same run.",
        run: measure::isolation::run,
    },
    Measurement {
        id: "startup",
        title: "Start-up",
        method: "In-process with the host library, on the signed glucose-monitor bundle: read the file, verify \
                 it against the trust store (`bundle::verify`), compile it (`Runtime::compile`, uncached), \
                 instantiate and `init` it: median of three. In the same rounds, the same read, verify and \
                 compile through a runtime that compiles as `edgewise run` does (`Compiler::Child`: \
                 `target/release/edgewise compile-child` started per compilation, the component on its stdin, \
                 its resident memory read every 10 ms, the artifact back over its stdout and deserialized): \
                 the price of the isolation, median of three. Then once through `Runtime::compile_cached` to \
                 fill the cache, and twenty starts that read, verify, load the compiled component from the \
                 cache (must be a hit), instantiate and `init`: median. The anti-rollback record is not \
                 consulted (one lookup in memory).",
        run: measure::startup::run,
    },
    Measurement {
        id: "memory",
        title: "Memory",
        method: "`VmRSS` of `edgewise run` with glucose-monitor, 2 s after it answers its first status \
                 request, no traffic. Per instance: a child process of this program (`memory`) creates the \
                 runtime (default options, as `edgewise run`), compiles glucose-monitor and adds initialised \
                 instances, each fed 24 readings, up to 1, then 10, then 100, noting its `VmRSS` at each; \
                 the growth from 1 instance, divided by the instances added.",
        run: measure::memory::run,
    },
    Measurement {
        id: "idle",
        title: "Host CPU of a device with 100 idle sensors: contract 0.2 vs 0.1",
        method: "Two `edgewise run`s side by side on a private nats-server (default configuration but for \
                 the bench's, see \"Live ingest\"; the host's default tick, every 5 s), each with one plugin: \
                 glucose-monitor 0.2 (the current bundle) in one, the frozen 0.1 bundle (trusted by its own \
                 trust store) in the other. Both subscribe to `sensors.cgm.>`, so one reading (120 mg/dL, now) \
                 for each of 100 sensors (`sensors.cgm.idle-<i>`) reaches both; then none. Once both statuses \
                 show the 100 readings delivered to the plugin (`readings_in`), the harness reads each host's \
                 CPU time per thread (the scheduler's exact run time, `/proc/<pid>/task/*/schedstat`; the \
                 process's own count in `/proc/<pid>/stat` is at 10 ms clock ticks, too coarse here, and is in \
                 the notes), waits 25 s (five host ticks) with no traffic and no status request, reads them again \
                 and scales the difference to an hour: one window for both, so that whatever else the machine \
                 does weighs on both; the statuses must still show 100 readings. The host sends a tick every 5 s \
                 to each plugin's thread. A 0.1 plugin is called (`on-tick`, a wasm call) at every one; a 0.2 \
                 plugin only at the wake it asked for: glucose-monitor asks for none until a sensor is due (the \
                 close of its hour, or its signal-loss alert 20 minutes after its reading: a few calls an hour, \
                 which a 25 s window scaled to an hour may miss, each about as costly as one 0.1 tick), so at \
                 the other ticks its thread takes the tick off its queue and goes back to sleep. The rest of the \
                 host (the epoch thread that enforces call deadlines, awake every 10 ms; NATS keep-alives; the \
                 outbox's housekeeping) is the same for both and is most of an idle host's CPU: the plugin \
                 thread's own row shows the contract's part.",
        run: measure::idle::run,
    },
    Measurement {
        id: "allocator",
        title: "Instance allocator: on-demand vs pooling (issue #5)",
        method: "A child process of this program (`allocator`) per allocator creates the runtime \
                 (`RuntimeOptions::allocator`: wasmtime's on-demand allocator, or the pooling allocator with \
                 128 slots of at most 64 MiB, falling back to on-demand if the address space cannot be \
                 reserved), compiles glucose-monitor, times instantiate + `init` of 100 instances held at \
                 once, notes its `VmRSS` after the first and the hundredth, then times 300 restarts (drop one \
                 instance, build and `init` another: what the supervisor does after a failure). Medians; \
                 the baseline is the on-demand allocator.",
        run: measure::allocator::run,
    },
    Measurement {
        id: "outbox",
        title: "Outbox",
        method: "`Outbox::append_batch` (encrypted, committed and fsynced before it returns) of an \
                 alert envelope for 2 s, one entry per transaction and 64 per transaction, in \
                 `target/bench`. Baseline: plain SQLite inserts of the same rows (no encryption, no \
                 eviction bookkeeping) in WAL mode with `synchronous=FULL`, same batch sizes, same disk.",
        run: measure::outbox::run,
    },
    Measurement {
        id: "drain",
        title: "Outbox drain after an upstream outage",
        method: "A device (glucose-monitor, forwarding to a JetStream server) is given 60 low readings, five \
                 minutes apart, for each of 1,000 new sensors while its upstream server is stopped (a round of one \
                 reading per sensor at a time, each taken before the next: one burst of all 60,000 would overflow \
                 the plugin's queue); once every reading is taken and its outputs are in the outbox, the server starts again on the same port and \
                 store. The figure is the backlog over the time from the host's reconnection (its status) to an \
                 empty outbox; the notes give the reconnection time and the rate counted from the server's \
                 return. Baseline: the 500 readings/s of issue #14's acceptance, which asks a drain of at least 5x \
                 the input rate.",
        run: measure::drain::run,
    },
    Measurement {
        id: "input-log",
        title: "Live ingest with the input log on and off (issue #14)",
        method: "The ladder of \"Live ingest\" (the same traffic, publisher, steps and pass rule; delivered \
                 means `readings_in` of glucose-monitor) with the readings coming through the JetStream source \
                 (`[ingest] source = \"jetstream\"`): the publisher publishes to a sensor stream (file storage, \
                 `sensors.>`) on a nats-server of its own, and the host takes them through its durable consumer \
                 and acknowledges each message once its input and outputs are committed. That is where the \
                 input log is on the acknowledgement path; on core NATS it is committed with the outputs, off \
                 the ingest path. Figure: the default configuration (input log on); baseline: the same with \
                 `[outbox] input_log = false`, on a fresh nats-server and stream, measured right after it in \
                 the same run. Then both again on core NATS (the default source; the log is committed with the \
                 outputs by the outbox writer, off the ingest path, but its sealing and writing take CPU from \
                 the same two cores, which bound the core figure). Issue #14's target: the log costs at most \
                 20% of the throughput (0.8x).",
        run: measure::input_log::run,
    },
    Measurement {
        id: "metrics",
        title: "Live ingest with the metrics endpoint configured and not scraped (issue #17)",
        method: "The ladder of \"Live ingest\" on core NATS (the same traffic, publisher, steps and pass rule; \
                 delivered means `readings_in` of glucose-monitor), once with a `[metrics]` table (the endpoint \
                 listening on a loopback port nobody scrapes, and every plugin call timed for the call-duration \
                 histogram), once without, each on a fresh nats-server, in the same run. Figure: with the \
                 endpoint; baseline: without. Issue #17: the endpoint costs nothing measurable when not \
                 scraped; the ladder's resolution is one bisection step (rates about 9% apart), so the target \
                 is 0.9x.",
        run: measure::metrics::run,
    },
    Measurement {
        id: "recovery",
        title: "Recovery after kill -9 with a day of 100 sensors in the journal (issue #14)",
        method: "A private nats-server with JetStream and a sensor stream; a device (glucose-monitor, JetStream \
                 source, default configuration but for the bench's) is started once (it compiles the plugin \
                 into its cache) and killed with SIGKILL before any input: its journal is empty. A low reading \
                 of a new sensor is published to the stream, and the host is started again: the time from \
                 spawning `edgewise run` to glucose-monitor's `urgent-low` alert about that reading on the \
                 local bus is the baseline (the plugin's thread resumes or starts the plugin before it takes \
                 any reading, so the alert marks the plugin running with its state). Then the day of the \
                 \"Snapshot\" measurement (100 sensors, 288 readings each, 28,800), dated the day before \
                 yesterday, is published, one five-minute round of the 100 sensors at a time, as fast as the \
                 stream acknowledges; once the status shows every reading taken and the stream's consumer has \
                 none left unacknowledged (each message is acknowledged after its input is committed), the \
                 host is killed with SIGKILL; the host saves the plugin's state every 256 inputs, so the last \
                 saved state is behind by the inputs since. A copy of the killed device's outbox is read with \
                 the host library (the inputs after the saved state: given again at the recovery). Another low \
                 reading of a new sensor, and the host is started again: the same time is the figure, and the \
                 status must then show one recovery, no state lost and only that new reading taken. Three \
                 rounds, each on a fresh server and device; medians, and the median of the recovery less the \
                 empty start of each round (what the recovery adds). The host is started at `RUST_LOG=info`: \
                 the time stamps of its log lines give when it had started its plugins (`Edgewise is running`) \
                 and when the plugin had resumed, before the host's first connection to the local bus, which \
                 both starts wait for. The issue's target (recovery within 1 s) is absolute; the ratio to the \
                 empty start is shown beside it.",
        run: measure::recovery::run,
    },
    Measurement {
        id: "recovery-large",
        title: "Recovery after kill -9 at the snapshot cadence's worst, a large state",
        method: "As \"Recovery after kill -9\", with glucose-forecast (its default configuration) serving 998 \
                 sensors with 256-byte ids (its manifest's `max_sensors`, 1000, less the two new sensors the \
                 starts are timed by; the longest ids the bus takes): its state is about 9 MB, and the host saves \
                 a state that large only once the inputs since hold a quarter of its bytes (at most every 8192 \
                 inputs), not every 256, so a recovery gives thousands of inputs again. Each round warms the \
                 device with an hour of 1-minute readings of every sensor, then publishes one reading at a time, \
                 each once the status shows the last taken (one reading per input, the most inputs per byte), \
                 watching the status's `snapshots_saved`: to a save, to the next (the cadence's period, in \
                 inputs), then the period less a 32nd more (periods differ by up to about 1.5%: ticks are inputs too, and the state's size moves a little); once the stream has none unacknowledged and the \
                 status shows no further save, the host is killed with SIGKILL and started again as in \
                 \"Recovery after kill -9\" (a low reading of a new sensor; glucose-forecast's \
                 `predicted-urgent-low` alert about it marks the plugin resumed). Three rounds, medians; the \
                 copy of the killed outbox gives the saved state's size and the inputs given again.",
        run: measure::recovery_large::run,
    },
    Measurement {
        id: "swap",
        title: "Hot swap while readings flow (issue #15)",
        method: "A private nats-server with JetStream holds the deployment buckets (no domain: the device reads them \
                 on its own local server); a device runs `edgewise run` with a `[deploy]` table (probation 1 s, \
                 resync 2 s, report every 1 s) and no `[[plugins]]`. glucose-monitor, signed by the run's key as \
                 1.0.0 (its manifest otherwise as is), is pushed as `edgewise push` pushes (the bundle stored in \
                 the bundle bucket, then the device's desired set written with compare-and-set) and the harness \
                 waits until the device's report says healthy. Then a publisher on a connection of its own \
                 publishes readings on core NATS at 1,000/s (the Hall2018 traces of \"Live ingest\": one subject \
                 per patient, paced in 1 ms steps) while 2.0.0, 3.0.0, ... 13.0.0 are pushed, each once the \
                 previous one is healthy (anti-rollback wants each version higher than the last healthy one): 12 \
                 hot swaps of a running plugin, each snapshotting the old instance and starting the new one from \
                 its state. The pause is the `pause_us` each swap reports (`Reported.plugins[..].deployment`): how \
                 long the plugin's input waited for the switch, from the snapshot of the old instance to the new \
                 one started from it; nearest-rank p50 and max over the swaps. Once the last swap is healthy the \
                 publisher stops; when the plugin's `readings_in` (status) equals the count published or has not \
                 moved for 2 s, readings lost = published - taken (DESIGN: hot swap loses 0 readings).",
        run: measure::swap::run,
    },
];

/// A measurement's rows and notes, and how long it took.
pub struct Done {
    /// Which measurement.
    pub measurement: &'static Measurement,
    /// What it produced (one error row if it failed).
    pub outcome: Outcome,
    /// Wall time.
    pub took: Duration,
}

/// Run the measurements whose id is in `only` (all when empty), in order.
/// A failed measurement becomes an error row; the others still run.
pub fn run(ctx: &mut Ctx, only: &[String]) -> Vec<Done> {
    let mut done = Vec::new();
    for measurement in SUITE {
        if !only.is_empty() && !only.iter().any(|id| id == measurement.id) {
            continue;
        }
        tracing::info!(measurement = measurement.id, "measuring: {}", measurement.title);
        let started = Instant::now();
        let outcome = match (measurement.run)(ctx) {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::error!(measurement = measurement.id, "failed: {error:#}");
                Outcome {
                    rows: vec![Row::missing(
                        measurement.title,
                        "-",
                        Target::None,
                        Verdict::Error(format!("{error:#}").replace('\n', " ")),
                    )],
                    details: Vec::new(),
                }
            }
        };
        let took = started.elapsed();
        tracing::info!(
            measurement = measurement.id,
            seconds = took.as_secs_f64().round(),
            "done"
        );
        done.push(Done {
            measurement,
            outcome,
            took,
        });
    }
    done
}
