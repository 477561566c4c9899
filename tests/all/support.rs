//! Helpers shared by the integration tests: the host's status over NATS and
//! waiting until it shows something, the next alerts of a subscription, what
//! the upstream stream stores, a process run with a time limit, and an
//! operator who signs and verifies bundles.

use std::ffi::OsStr;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use async_nats::jetstream::message::StreamMessage;
use async_nats::jetstream::stream::Stream;
use futures::StreamExt;
use serde_json::Value;

use edgewise_procs::SigningKey;
use edgewise_tests::nats::NatsServer;
use edgewise_tests::{Run, data_file, edgewise, plugin_manifest, plugin_wasm, run};

use crate::device::{DEVICE, WAIT};

/// The upstream stream the host creates (`[upstream] stream`).
pub(crate) const UP: &str = "EDGEWISE_UP";

/// The host's status, asked on the local bus through `client`; panics if it
/// does not answer within [`WAIT`].
pub(crate) async fn host_status(client: &async_nats::Client) -> Value {
    status_of(client, DEVICE).await
}

/// As [`host_status`], of device `id`.
pub(crate) async fn status_of(client: &async_nats::Client, id: &str) -> Value {
    let asked = client.request(format!("edgewise.{id}.status"), "".into());
    match tokio::time::timeout(WAIT, asked).await {
        Ok(Ok(reply)) => serde_json::from_slice(&reply.payload).unwrap(),
        other => panic!("the host did not answer a status request: {other:?}"),
    }
}

/// How often a wait polls the condition it waits for.
const POLL: Duration = Duration::from_millis(50);

/// `probe` again (every [`POLL`]) until it gives `Ok`; panics after `within`
/// naming `what` and the last `Err` (what was seen instead). The one place the
/// tests poll: every wait is for a condition, with a generous deadline.
pub(crate) async fn poll_until<T, F: Future<Output = Result<T, String>>>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let seen = match probe().await {
            Ok(done) => return done,
            Err(seen) => seen,
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}: {seen}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// `probe` again until `done` holds for what it gives; panics after `within`
/// naming `what` and the last value.
pub(crate) async fn value_until<F: Future<Output = Value>>(
    what: &str,
    within: Duration,
    mut probe: impl FnMut() -> F,
    done: impl Fn(&Value) -> bool,
) -> Value {
    poll_until(what, within, || {
        let (value, done) = (probe(), &done);
        async move {
            let value = value.await;
            if done(&value) {
                Ok(value)
            } else {
                Err(value.to_string())
            }
        }
    })
    .await
}

/// The host's status once `done` holds for it; panics after [`WAIT`].
pub(crate) async fn status_until(client: &async_nats::Client, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    value_until(what, WAIT, || host_status(client), done).await
}

/// The status as `edgewise status --json` shows it.
pub(crate) fn cli_status(local: &NatsServer) -> Value {
    let run = edgewise(["status", "--nats", &local.url(), "--device", DEVICE, "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap()
}

/// `edgewise status --json` until `done` holds for it; panics after `within`.
pub(crate) async fn cli_status_until(
    local: &NatsServer,
    within: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    value_until(what, within, || async { cli_status(local) }, done).await
}

/// The plugin `name` in a status, if it is there.
pub(crate) fn find_plugin<'a>(status: &'a Value, name: &str) -> Option<&'a Value> {
    status["plugins"]
        .as_array()
        .and_then(|plugins| plugins.iter().find(|p| p["name"] == name))
}

/// The plugin `name` in a status; panics if it is not there.
pub(crate) fn plugin<'a>(status: &'a Value, name: &str) -> &'a Value {
    find_plugin(status, name).unwrap_or_else(|| panic!("no plugin {name} in {status}"))
}

/// The subscription to the device's alerts on `edgewise.<device>.alerts.<which>`.
pub(crate) async fn subscribe_alerts(client: &async_nats::Client, which: &str) -> async_nats::Subscriber {
    client
        .subscribe(format!("edgewise.{DEVICE}.alerts.{which}"))
        .await
        .unwrap()
}

/// The next message of `subscriber` as JSON, or panic after [`WAIT`].
pub(crate) async fn next_json(subscriber: &mut async_nats::Subscriber, what: &str) -> Value {
    match tokio::time::timeout(WAIT, subscriber.next()).await {
        Ok(Some(message)) => serde_json::from_slice(&message.payload).unwrap(),
        _ => panic!("no {what} within {WAIT:?}"),
    }
}

/// The next message of `subscriber` (as JSON) for which `wanted(subject,
/// message)` holds, skipping others, or panic after [`WAIT`].
pub(crate) async fn next_where(
    subscriber: &mut async_nats::Subscriber,
    what: &str,
    wanted: impl Fn(&str, &Value) -> bool,
) -> Value {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let Ok(Some(message)) = tokio::time::timeout_at(deadline, subscriber.next()).await else {
            panic!("no {what} within {WAIT:?}");
        };
        let json: Value = serde_json::from_slice(&message.payload).unwrap();
        if wanted(message.subject.as_str(), &json) {
            return json;
        }
    }
}

/// The messages of `subscriber`, as (subject, JSON), until `done` holds for
/// them, or panic after [`WAIT`] with those that came.
pub(crate) async fn collect_until(
    subscriber: &mut async_nats::Subscriber,
    what: &str,
    done: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(&seen) {
        let Ok(Some(message)) = tokio::time::timeout_at(deadline, subscriber.next()).await else {
            panic!("timed out waiting for {what}; messages so far: {seen:?}");
        };
        let json: Value = serde_json::from_slice(&message.payload).unwrap();
        seen.push((message.subject.to_string(), json));
    }
    seen
}

/// The stream of sensor readings a JetStream ingest reads (`SENSORS`, on `sensors.>`).
pub(crate) async fn create_sensors_stream(jetstream: &async_nats::jetstream::Context) -> Stream {
    jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: "SENSORS".into(),
            subjects: vec!["sensors.>".into()],
            ..Default::default()
        })
        .await
        .unwrap()
}

/// Every message stored in `stream`, in stream order.
pub(crate) async fn stream_messages(stream: &mut Stream) -> Vec<StreamMessage> {
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut messages = Vec::new();
    for sequence in 1..=last {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            messages.push(message);
        }
    }
    messages
}

/// Messages stored in the upstream stream, as (subject, JSON), read through
/// `cloud_client`, waiting until there are `at_least` (the device's
/// telemetry, `…up.telemetry`, not counted and left out: the outputs of
/// plugins and the host are what the tests count).
pub(crate) async fn upstream_messages_via(cloud_client: async_nats::Client, at_least: usize) -> Vec<(String, Value)> {
    let jetstream = async_nats::jetstream::new(cloud_client);
    let what = format!("{at_least} messages upstream");
    let mut stream = poll_until(&what, WAIT, || async {
        match jetstream.get_stream(UP).await {
            Ok(mut stream) => {
                let all = stream.info().await.unwrap().state.messages as usize;
                let stored = all.saturating_sub(telemetry_stored(&stream).await);
                if stored >= at_least {
                    Ok(stream)
                } else {
                    Err(format!("{stored} stored"))
                }
            }
            Err(error) => Err(format!("no stream: {error}")),
        }
    })
    .await;
    stream_messages(&mut stream)
        .await
        .into_iter()
        .filter(|message| !message.subject.ends_with(".up.telemetry"))
        .map(|message| {
            (
                message.subject.to_string(),
                serde_json::from_slice(&message.payload).unwrap(),
            )
        })
        .collect()
}

/// The telemetry messages `stream` holds (`edgewise.<device>.up.telemetry`
/// of every device).
pub(crate) async fn telemetry_stored(stream: &Stream) -> usize {
    let mut subjects = stream.info_with_subjects("edgewise.*.up.telemetry").await.unwrap();
    let mut count = 0;
    while let Some(subject) = subjects.next().await {
        count += subject.unwrap().1;
    }
    count
}

/// Messages stored in the upstream stream, waiting until there are `at_least`.
pub(crate) async fn upstream_messages(cloud: &NatsServer, at_least: usize) -> Vec<(String, Value)> {
    upstream_messages_via(async_nats::connect(cloud.url()).await.unwrap(), at_least).await
}

/// The alerts stored upstream, waiting until there are `at_least` messages.
pub(crate) async fn upstream_alerts(cloud: &NatsServer, at_least: usize) -> Vec<(String, Value)> {
    let mut messages = upstream_messages(cloud, at_least).await;
    messages.retain(|(subject, _)| subject.contains(".up.alerts."));
    messages
}

/// The alerts stored upstream once `done` holds for them (`what`, for the
/// message on a timeout). Waiting for a count instead races: alerts of
/// different workers reach the outbox in no set order.
pub(crate) async fn upstream_alerts_where(
    cloud: &NatsServer,
    what: &str,
    done: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    poll_until(what, WAIT, || async {
        let alerts = upstream_alerts(cloud, 0).await;
        if done(&alerts) {
            Ok(alerts)
        } else {
            Err(format!("upstream holds {alerts:?}"))
        }
    })
    .await
}

/// Wait at most `within` for `child` to exit, reading its output meanwhile:
/// its exit code and stderr, or `Err` with its stderr if it had to be killed.
pub(crate) fn wait_within(child: Child, within: Duration) -> Result<(Option<i32>, String), String> {
    let pid = child.id().to_string();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output().unwrap());
    });
    let (output, in_time) = match receiver.recv_timeout(within) {
        Ok(output) => (output, true),
        Err(_) => {
            // Not reaped yet (the waiting thread still owns it): the pid is still this child's.
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
            (receiver.recv().unwrap(), false)
        }
    };
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    if in_time {
        Ok((output.status.code(), stderr))
    } else {
        Err(stderr)
    }
}

/// Run `command` (stdout discarded, stderr kept) for at most `within`: see [`wait_within`].
pub(crate) fn run_within(command: &mut Command, within: Duration) -> Result<(Option<i32>, String), String> {
    let child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    wait_within(child, within)
}

/// A temporary operator workspace with a key of its own (`release`, made
/// by `edgewise keygen`), a trust directory holding its public key, and
/// helpers to sign and verify: the signing tools as an operator uses them.
pub(crate) struct Operator {
    key: SigningKey,
    dir: tempfile::TempDir,
}

impl Operator {
    pub(crate) fn new() -> Operator {
        let dir = tempfile::tempdir().unwrap();
        let key = edgewise_tests::generate_key(dir.path(), "release");
        Operator { key, dir }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn trust(&self) -> PathBuf {
        self.key.trust_dir()
    }

    /// `edgewise sign` of `component` with `manifest` by this operator's key, into `out`.
    pub(crate) fn sign_with(&self, manifest: &Path, component: &Path, out: &str) -> Run {
        run(self.key.sign_command(manifest, component, &self.path(out)))
    }

    /// glucose-monitor signed with its own `edgewise.toml` by this operator's key.
    pub(crate) fn signed_glucose_monitor(&self) -> PathBuf {
        self.key
            .bundle(&plugin_manifest("glucose-monitor"), &plugin_wasm("glucose-monitor"))
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// `edgewise verify` of `bundle` against this operator's trust directory.
    pub(crate) fn verify(&self, bundle: &Path, extra: &[&str]) -> Run {
        self.verify_with(&self.trust(), bundle, extra)
    }

    /// `edgewise verify` of `bundle` against the trust directory `trust`.
    pub(crate) fn verify_with(&self, trust: &Path, bundle: &Path, extra: &[&str]) -> Run {
        let mut args = vec![
            "verify".to_owned(),
            "--trust".to_owned(),
            trust.display().to_string(),
            bundle.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        edgewise(args)
    }
}

/// Publish `payload` on `subject` through `jetstream` and wait for the
/// stream's acknowledgement.
pub(crate) async fn publish_acked(
    jetstream: &async_nats::jetstream::Context,
    subject: impl async_nats::ToSubject,
    payload: bytes::Bytes,
) -> async_nats::jetstream::publish::PublishAck {
    jetstream.publish(subject, payload).await.unwrap().await.unwrap()
}

/// Panic, showing `text`, unless it contains `wanted`.
#[track_caller]
/// `edgewise replay` of `plugin` over `cgm/ExampleData5Subjects.csv`,
/// verified against the trust directory `trust` if given.
pub(crate) fn replay_example(plugin: &Path, trust: Option<&Path>) -> Run {
    replay_example_with(plugin, trust, &[])
}

/// As [`replay_example`], with the further arguments `extra`.
pub(crate) fn replay_example_with(plugin: &Path, trust: Option<&Path>, extra: &[&str]) -> Run {
    let mut args: Vec<&OsStr> = Vec::new();
    if let Some(trust) = trust {
        args.extend(["--trust".as_ref(), trust.as_os_str()]);
    }
    args.extend(extra.iter().map(OsStr::new));
    replay_run(plugin, &data_file("cgm/ExampleData5Subjects.csv"), &args)
}

/// `edgewise replay --plugin PLUGIN --input INPUT EXTRA...`, run to its end.
pub(crate) fn replay_run<E: AsRef<OsStr>>(plugin: &Path, input: &Path, extra: &[E]) -> Run {
    let mut args: Vec<&OsStr> = vec![
        "replay".as_ref(),
        "--plugin".as_ref(),
        plugin.as_os_str(),
        "--input".as_ref(),
        input.as_os_str(),
    ];
    args.extend(extra.iter().map(AsRef::as_ref));
    edgewise(args)
}

pub(crate) fn assert_contains(text: &str, wanted: &str) {
    assert!(text.contains(wanted), "`{wanted}` is not in:\n{text}");
}

/// `edgewise verify --trust TRUST BUNDLE`, which must succeed: its standard output.
pub(crate) fn verified(trust: &std::path::Path, bundle: &std::path::Path) -> String {
    let run = edgewise_tests::edgewise([
        "verify".as_ref(),
        "--trust".as_ref(),
        trust.as_os_str(),
        bundle.as_os_str(),
    ]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    run.stdout
}
