//! Issue #14 acceptance: nothing forgotten, nothing twice. A recording plays
//! at 500 readings/s through the JetStream source while `edgewise run` is
//! killed with SIGKILL 20 times at random moments and started again each
//! time; the cloud stream then holds exactly the outputs of an uninterrupted
//! `edgewise replay` of the same recording: the same numbers, no gap, no
//! duplicate, daily summaries included. The same with glucose-chaos, which
//! traps on a random 1% of its calls: its outputs equal an uninterrupted run
//! of a build that does not trap, apart from the host's `plugin-degraded`
//! alerts.
//!
//! The host's clock is simulated, an hour before the first reading and at
//! real speed: no host tick is ever due during the run, and the plugin ticks
//! itself at its wakes inside the batches (the SDK), exactly as in replay.
//! Only replay ticks on past the last reading (to close the last windows):
//! those outputs, after the end of the recording, are the one difference
//! allowed.

use std::collections::BTreeMap;
use std::time::Instant;

use serde_json::Value;

use edgewise_tests::nats::NatsServer;

use crate::device::{Device, WAIT, glucose_chaos};
use crate::support::{UP, create_sensors_stream, host_status, plugin, publish_acked, stream_messages, value_until};

/// Kills of the host while the recording plays.
const KILLS: usize = 20;
/// Readings published per second.
const RATE: f64 = 500.0;

/// One reading of the recording: (subject number, timestamp, value).
pub(crate) type Row = (u32, i64, f64);

/// ExampleData5Subjects in the order replay gives it: by timestamp, then
/// subject; of readings of one subject at one time, the last.
pub(crate) fn recording() -> Vec<Row> {
    let csv = std::fs::read_to_string(edgewise_tests::data_file("cgm/ExampleData5Subjects.csv")).unwrap();
    let mut rows: BTreeMap<(i64, u32), f64> = BTreeMap::new();
    for (subject, readings) in crate::metrics_crosscheck::read_recording(&csv) {
        let number: u32 = subject.trim_start_matches("Subject ").parse().unwrap();
        for (ts, value) in readings {
            rows.insert((ts, number), value);
        }
    }
    rows.into_iter()
        .map(|((ts, subject), value)| (subject, ts, value))
        .collect()
}

/// A small random generator (xorshift), seeded from the clock; the seed is
/// printed so that a failing run can be told apart.
struct Random(u64);

impl Random {
    fn new() -> Random {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
            | 1;
        eprintln!("kill_recovery: seed {seed}");
        Random(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The device's configuration after its `[[plugins]]` table(s): a clock an
/// hour before `first_ms` at real speed, readings from the JetStream stream,
/// which may be months ahead of that clock.
pub(crate) fn settings(first_ms: i64) -> String {
    let start = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(first_ms - 3_600_000) * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    format!(
        "[ingest]\nsource = \"jetstream\"\nstream = \"SENSORS\"\n\
         max_future = \"365d\"\n[clock]\nstart = \"{start}\"\nspeed = 1.0\n"
    )
}

/// What the run measured.
#[derive(Debug)]
pub(crate) struct Run {
    /// What the cloud stream holds: (`Nats-Msg-Id`, envelope).
    pub(crate) stored: Vec<(String, Value)>,
    pub(crate) kills: usize,
    pub(crate) seconds: f64,
}

/// Play `rows` at [`RATE`] into the sensor stream of a device running
/// `plugins` (the `[[plugins]]` table of `name`, followed by [`settings`]),
/// killing the host [`KILLS`] times at random moments.
async fn play_with_kills(plugins: &str, name: &str, rows: &[Row]) -> (Run, Device) {
    let local = NatsServer::start_with_jetstream();
    let cloud = NatsServer::start_with_jetstream();
    let client = async_nats::connect(local.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client.clone());
    let sensors = create_sensors_stream(&jetstream).await;
    // The payloads name their sensor as the recording does (`Subject 3`):
    // these subjects are a trusted gateway's.
    let plugins = plugins.replace(
        "[plugins.config]\n",
        "payload_sensors = [\"sensors.cgm.>\"]\n[plugins.config]\n",
    );
    let config = format!("{plugins}{}", settings(rows[0].1));
    let mut device = Device::with_plugins(&local, Some(&cloud), "5m", &config);
    device.start_with(&client).await;

    let started = Instant::now();
    let publisher = {
        let rows = rows.to_vec();
        let jetstream = jetstream.clone();
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            for (k, (subject, ts, value)) in rows.into_iter().enumerate() {
                // Paced: reading k goes out at k / RATE seconds.
                tokio::time::sleep_until(start + std::time::Duration::from_secs_f64(k as f64 / RATE)).await;
                let payload = format!(r#"{{"ts":{ts},"value":{value},"unit":"mg/dL","sensor":"Subject {subject}"}}"#);
                publish_acked(&jetstream, format!("sensors.cgm.subject-{subject}"), payload.into()).await;
            }
        })
    };
    // Each kill comes once the plugin has taken a random number of readings
    // in this run of the host (a moment anywhere in its work: mid-batch,
    // mid-commit, mid-snapshot), at most a 21st of the recording, so that
    // all 20 come while it plays.
    let mut random = Random::new();
    let mut kills = 0;
    let most = (rows.len() / (KILLS + 1)) as u64;
    while kills < KILLS {
        let due = 1 + random.below(most);
        let status = value_until(
            "the plugin to take readings before the next kill",
            WAIT,
            || host_status(&client),
            |status| plugin(status, name)["readings_in"].as_u64() >= Some(due) || publisher.is_finished(),
        )
        .await;
        if plugin(&status, name)["readings_in"].as_u64() < Some(due) {
            break; // Everything was published and taken.
        }
        device.kill();
        kills += 1;
        device.start_with(&client).await;
    }
    publisher.await.unwrap();
    drained(&client, &sensors, rows.len() as u64).await;
    let seconds = started.elapsed().as_secs_f64();
    device.terminate_cleanly().await;
    let stored = upstream_outputs(&cloud.url()).await;
    (Run { stored, kills, seconds }, device)
}

/// Wait until every one of the `total` readings in `sensors` is taken and
/// acknowledged and every output delivered upstream.
pub(crate) async fn drained(client: &async_nats::Client, sensors: &async_nats::jetstream::stream::Stream, total: u64) {
    let consumers: Vec<String> = {
        use futures::TryStreamExt;
        sensors.consumer_names().try_collect().await.unwrap()
    };
    assert_eq!(consumers.len(), 1, "{consumers:?}");
    value_until(
        "every reading acknowledged and every output delivered",
        WAIT * 3,
        || {
            let (client, sensors, consumer) = (client.clone(), sensors.clone(), consumers[0].clone());
            async move {
                let info = sensors.consumer_info(&consumer).await.unwrap().clone();
                let mut status = host_status(&client).await;
                status["pending"] = (info.num_pending + info.num_ack_pending as u64).into();
                status
            }
        },
        |status| status["pending"] == 0 && status["outbox"]["alerts"] == 0 && status["outbox"]["summaries"] == 0,
    )
    .await;
    let mut sensors = sensors.clone();
    let info = sensors.info().await.unwrap().state.messages;
    assert_eq!(info, total, "every reading is in the sensor stream");
}

/// What the cloud's upstream stream holds: (`Nats-Msg-Id`, envelope).
pub(crate) async fn upstream_outputs(cloud_url: &str) -> Vec<(String, Value)> {
    let cloud_client = async_nats::connect(cloud_url).await.unwrap();
    let mut up = async_nats::jetstream::new(cloud_client).get_stream(UP).await.unwrap();
    stream_messages(&mut up)
        .await
        .into_iter()
        .map(|message| {
            let id = message
                .headers
                .get("Nats-Msg-Id")
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default();
            (id, serde_json::from_slice(&message.payload).unwrap())
        })
        .collect()
}

/// The envelope without what names the run rather than the output: the
/// device, and the plugin's name, version and digest (glucose-chaos is
/// compared with glucose-monitor's replay).
pub(crate) fn comparable(envelope: &Value) -> Value {
    let mut envelope = envelope.as_object().unwrap().clone();
    for field in ["device", "plugin", "version", "digest"] {
        envelope.remove(field);
    }
    Value::Object(envelope)
}

/// The cloud's outputs of the plugin (the host's own alerts, numbered apart
/// as `host-<n>`, left out) are exactly the replay's, by number, up to the
/// replay's outputs after the last reading (made by its ticks past the end).
pub(crate) fn assert_exactly_the_replay(run: &Run, replayed: &[Value], last_ts: i64) {
    let mut by_seq: BTreeMap<u64, Vec<&Value>> = BTreeMap::new();
    let mut ids = std::collections::BTreeSet::new();
    for (id, envelope) in &run.stored {
        assert!(ids.insert(id.clone()), "message id {id} stored twice");
        if id.rsplit('/').next().unwrap().starts_with("host-") {
            assert!(
                ["plugin-degraded", "deployment-rolled-back"].contains(&envelope["code"].as_str().unwrap_or_default()),
                "{envelope}"
            );
            continue;
        }
        by_seq
            .entry(envelope["seq"].as_u64().unwrap())
            .or_default()
            .push(envelope);
    }
    let live = by_seq.len() as u64;
    let duplicates: Vec<_> = by_seq.iter().filter(|(_, copies)| copies.len() > 1).collect();
    assert!(duplicates.is_empty(), "outputs stored twice: {duplicates:#?}");
    assert_eq!(
        by_seq.keys().copied().collect::<Vec<_>>(),
        (1..=live).collect::<Vec<_>>(),
        "numbers 1 to {live}, no gap"
    );
    assert!(
        replayed.len() as u64 >= live,
        "live {live} vs replay {}",
        replayed.len()
    );
    for (seq, copies) in &by_seq {
        let expected = &replayed[*seq as usize - 1];
        assert_eq!(expected["seq"], *seq);
        assert_eq!(comparable(copies[0]), comparable(expected), "output {seq}");
    }
    for tail in &replayed[live as usize..] {
        let when = tail["ts"].as_i64().or(tail["window_end"].as_i64()).unwrap();
        assert!(
            when > last_ts,
            "the replay's output {tail} is within the recording, not live"
        );
    }
    let summaries = replayed[..live as usize]
        .iter()
        .filter(|o| {
            o["type"] == "summary"
                && o["window_end"].as_i64().unwrap() - o["window_start"].as_i64().unwrap() >= 86_400_000
        })
        .count();
    assert!(summaries > 10, "daily summaries included: {summaries}");
    eprintln!(
        "kill_recovery: {} kills in {:.1} s; {live} outputs equal to the replay's ({} in all)",
        run.kills,
        run.seconds,
        replayed.len()
    );
}

/// `edgewise replay` of the recording through `bundle` of `device`, with `extra` arguments.
fn replay(device: &Device, bundle: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["--config", "max_ahead=8760h"];
    args.extend(extra);
    crate::support::replay_example_with(&device.path(bundle), Some(&device.path("trust")), &args).json_lines()
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_20_times_the_cloud_holds_exactly_the_outputs_of_an_uninterrupted_replay() {
    let rows = recording();
    let plugins = "[[plugins]]\nbundle = \"glucose-monitor.wasm\"\n[plugins.config]\nmax_ahead = \"8760h\"\n";
    let (run, device) = play_with_kills(plugins, "glucose-monitor", &rows).await;
    assert_eq!(run.kills, KILLS);
    let replayed = replay(&device, "glucose-monitor.wasm", &[]);
    assert_exactly_the_replay(&run, &replayed, rows[rows.len() - 1].1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_trapping_on_1_percent_of_calls_and_killed_20_times_loses_and_repeats_nothing() {
    let rows = recording();
    // At 500 readings/s, 1% of calls is a trap every second or so: the
    // supervisor is told to take that (a short backoff, no quarantine), as
    // an operator would for a plugin known to be flaky.
    let supervisor = "[supervisor]\nbackoff_initial = \"10ms\"\nbackoff_max = \"50ms\"\n\
                      quarantine_after = 1000\nquarantine_window = \"1m\"\nbuffer_readings = 1000\n";
    let plugins = format!("{}max_ahead = \"8760h\"\n{supervisor}", glucose_chaos("1"));
    let (run, device) = play_with_kills(&plugins, "glucose-chaos", &rows).await;
    assert_eq!(run.kills, KILLS);
    let degraded = run
        .stored
        .iter()
        .filter(|(_, e)| e["code"] == "plugin-degraded")
        .count();
    assert!(degraded > 0, "the plugin trapped");
    // The same build, not trapping (replay gives plugins fixed random numbers).
    let replayed = replay(&device, "glucose-chaos.wasm", &["--config", "trap_percent=0"]);
    assert_exactly_the_replay(&run, &replayed, rows[rows.len() - 1].1);
    eprintln!("kill_recovery: glucose-chaos trapped {degraded} times");
}
