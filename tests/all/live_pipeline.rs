//! `edgewise run` as a device runs it: the real binary, real nats-servers
//! (a local bus and a cloud with JetStream), real signed bundles.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::support::{
    cli_status, cli_status_until, create_sensors_stream, host_status, next_json, plugin, sign, status_until,
    subscribe_alerts, upstream_alerts, upstream_messages, upstream_messages_via, wait_within,
};
use edgewise_tests::nats::NatsServer;
use edgewise_tests::{Run, edgewise, edgewise_bin, plugin_wasm, workspace_root};

pub(crate) const DEVICE: &str = "dev-1";
/// Time allowed for something to arrive over the bus (generous for a loaded CI machine).
pub(crate) const WAIT: Duration = Duration::from_secs(20);

/// A device: key, trust store, signed bundles, a config, and the running host.
pub(crate) struct Device {
    dir: tempfile::TempDir,
    host: Option<Child>,
}

impl Device {
    /// Sign glucose-monitor (and threshold, with `extra_plugins`), write the config.
    pub(crate) fn new(local: &NatsServer, upstream: Option<&NatsServer>, extra_plugins: &str) -> Device {
        Device::with_tick(local, upstream, "100ms", extra_plugins)
    }

    /// As [`Device::new`], with another tick interval.
    pub(crate) fn with_tick(
        local: &NatsServer,
        upstream: Option<&NatsServer>,
        tick: &str,
        extra_plugins: &str,
    ) -> Device {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name);
        let run = edgewise(["keygen".as_ref(), "--out".as_ref(), path("key").as_os_str()]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        std::fs::create_dir(path("trust")).unwrap();
        std::fs::copy(path("key.pub"), path("trust/key.pub")).unwrap();
        let plugins = [
            ("glucose-monitor", workspace_root().join("plugins/glucose-monitor")),
            ("threshold", workspace_root().join("plugins/threshold")),
            ("faulty-plugin", workspace_root().join("tests/fixtures/faulty-plugin")),
        ];
        for (plugin, crate_dir) in plugins {
            let manifest = crate_dir.join("edgewise.toml");
            let run = sign(
                &path("key.key"),
                &manifest,
                &plugin_wasm(plugin),
                &path(&format!("{plugin}.wasm")),
            );
            assert_eq!(run.code, Some(0), "{}", run.stderr);
        }
        let upstream = upstream.map_or(String::new(), |cloud| {
            format!(
                "[upstream]\nurl = \"{}\"\nstream = \"EDGEWISE_UP\"\ncreate_stream = true\n",
                cloud.url()
            )
        });
        let config = format!(
            "device = \"{DEVICE}\"\ndata_dir = \"data\"\ntrust_dir = \"trust\"\ntick = \"{tick}\"\n\
             [local]\nurl = \"{}\"\n{upstream}\n[[plugins]]\nbundle = \"glucose-monitor.wasm\"\n{extra_plugins}",
            local.url()
        );
        std::fs::write(path("edgewise.toml"), config).unwrap();
        Device { dir, host: None }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Sign the component of `plugin` (crate name) with `manifest`, by the
    /// device's key, as `out` in the device directory.
    pub(crate) fn sign_bundle(&self, manifest: &Path, plugin: &str, out: &str) {
        let run = sign(&self.path("key.key"), manifest, &plugin_wasm(plugin), &self.path(out));
        assert_eq!(run.code, Some(0), "{}", run.stderr);
    }

    /// Start `edgewise run` and wait until it answers status requests.
    pub(crate) async fn start(&mut self, local: &NatsServer) {
        let client = async_nats::connect(local.url()).await.unwrap();
        self.start_with(&client).await;
    }

    /// As [`Device::start`], asking for the status through `client`.
    pub(crate) async fn start_with(&mut self, client: &async_nats::Client) {
        let mut command = Command::new(edgewise_bin());
        command.args(["run", "--config"]).arg(self.path("edgewise.toml"));
        self.start_command(command, client).await;
    }

    /// As [`Device::start_with`], the host started by `command` (which runs
    /// `edgewise run` on this device's configuration, or `exec`s it).
    pub(crate) async fn start_command(&mut self, mut command: Command, client: &async_nats::Client) {
        let child = command
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        self.host = Some(child);
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let asked = client.request(format!("edgewise.{DEVICE}.status"), "".into());
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), asked).await {
                return;
            }
            if let Some(status) = self.host.as_mut().and_then(|h| h.try_wait().unwrap()) {
                let output = self.host.take().unwrap().wait_with_output().unwrap();
                panic!(
                    "edgewise run exited ({status}): {}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "edgewise run did not answer status requests"
            );
        }
    }

    /// SIGTERM the host; return its exit code and stderr.
    pub(crate) fn terminate(&mut self) -> (Option<i32>, String) {
        let child = self.host.take().expect("the host is running");
        sigterm(child.id());
        let output = child.wait_with_output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// SIGTERM the host, check that it exits 0; its stderr.
    pub(crate) fn terminate_cleanly(&mut self) -> String {
        let (code, stderr) = self.terminate();
        assert_eq!(code, Some(0), "{stderr}");
        stderr
    }
}

impl Device {
    /// The running host's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.host.as_ref().expect("the host is running").id()
    }

    /// SIGTERM the host and wait for it at most `within`: its exit code and
    /// stderr, or `None` (the host is then killed) if it did not exit in time.
    pub(crate) fn terminate_within(&mut self, within: Duration) -> Option<(Option<i32>, String)> {
        let child = self.host.take().expect("the host is running");
        sigterm(child.id());
        wait_within(child, within).ok()
    }

    /// `edgewise replay` of `recording` through the device's signed
    /// glucose-monitor, verified with its trust directory, then `extra`.
    pub(crate) fn replay(&self, recording: &Path, extra: &[&OsStr]) -> Run {
        let (plugin, trust) = (self.path("glucose-monitor.wasm"), self.path("trust"));
        let mut args: Vec<&OsStr> = vec![
            "replay".as_ref(),
            "--plugin".as_ref(),
            plugin.as_os_str(),
            "--trust".as_ref(),
            trust.as_os_str(),
            "--input".as_ref(),
            recording.as_os_str(),
        ];
        args.extend(extra);
        edgewise(args)
    }
}

/// Send SIGTERM to the process `pid`.
pub(crate) fn sigterm(pid: u32) {
    let status = Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
}

impl Drop for Device {
    fn drop(&mut self) {
        if let Some(mut host) = self.host.take() {
            let _ = host.kill();
            let _ = host.wait();
        }
    }
}

/// Now, in ms since the epoch: readings stamped now raise no signal-loss and
/// close no window during a test that runs on the wall clock.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

pub(crate) fn reading(ts: i64, value: f64) -> bytes::Bytes {
    format!(r#"{{"ts":{ts},"value":{value},"unit":"mg/dL"}}"#).into()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_low_glucose_reading_alerts_locally_and_upstream_once() {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let mut device = Device::new(&local, Some(&cloud), "");
    device.start(&local).await;
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    client.flush().await.unwrap();
    client
        .publish("sensors.cgm.patient-7", reading(now_ms(), 49.0))
        .await
        .unwrap();
    let alert = next_json(&mut alerts, "local alert").await;
    assert_eq!(alert["code"], "urgent-low");
    // No `sensor` in the payload: the subject without its first token.
    assert_eq!(alert["sensor"], "cgm.patient-7");
    assert_eq!(alert["device"], DEVICE);
    assert_eq!(alert["value"], 49.0);
    let upstream = upstream_alerts(&cloud, 1).await;
    assert_eq!(upstream.len(), 1, "{upstream:?}");
    assert_eq!(upstream[0].0, format!("edgewise.{DEVICE}.up.alerts.glucose-monitor"));
    assert_eq!(upstream[0].1, alert);
    device.terminate_cleanly();
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_payloads_are_dead_lettered_while_valid_ones_flow() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "");
    device.start(&local).await;
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut dead = client.subscribe(format!("edgewise.{DEVICE}.deadletter")).await.unwrap();
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    client.flush().await.unwrap();
    let oversize = format!(r#"{{"ts":1,"value":1,"pad":"{}"}}"#, "x".repeat(70_000));
    let bad: [(&str, String, &str); 6] = [
        ("not JSON", "hello".into(), "payload is not JSON"),
        ("no value", r#"{"ts":1434300000000}"#.into(), "missing `value`"),
        (
            "NaN",
            r#"{"ts":1434300000000,"value":NaN}"#.into(),
            "payload is not JSON",
        ),
        (
            "string value",
            r#"{"ts":1434300000000,"value":"49"}"#.into(),
            "`value` must be a number",
        ),
        ("oversize", oversize, "over the 65536-byte limit"),
        (
            "bad ts",
            r#"{"ts":"yesterday","value":49}"#.into(),
            "`ts` must be milliseconds",
        ),
    ];
    for (_, payload, _) in &bad {
        client.publish("sensors.cgm.p1", payload.clone().into()).await.unwrap();
    }
    client.publish("sensors.cgm.p1", reading(now_ms(), 49.0)).await.unwrap();
    for (case, _, reason) in &bad {
        let letter = next_json(&mut dead, &format!("dead letter for {case}")).await;
        assert_eq!(letter["subject"], "sensors.cgm.p1", "{case}");
        assert!(letter["reason"].as_str().unwrap().contains(reason), "{case}: {letter}");
    }
    let alert = next_json(&mut alerts, "alert after the bad messages").await;
    assert_eq!(alert["code"], "urgent-low");
    let status = cli_status(&local);
    assert_eq!(status["ingest"]["deadlettered"], 6);
    assert_eq!(status["ingest"]["messages"], 7);
    device.terminate_cleanly();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_plugins_with_overlapping_subscriptions_each_get_their_readings() {
    let local = NatsServer::start();
    let threshold = "[[plugins]]\nbundle = \"threshold.wasm\"\nsubscriptions = [\"sensors.>\"]\n\
                     [plugins.config]\nlow = 70\nhigh = 180\n";
    let mut device = Device::new(&local, None, threshold);
    device.start(&local).await;
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut glucose = subscribe_alerts(&client, "glucose-monitor").await;
    let mut generic = subscribe_alerts(&client, "threshold").await;
    client.flush().await.unwrap();
    client.publish("sensors.cgm.p1", reading(now_ms(), 49.0)).await.unwrap();
    assert_eq!(
        next_json(&mut glucose, "glucose-monitor alert").await["code"],
        "urgent-low"
    );
    assert_eq!(next_json(&mut generic, "threshold alert").await["code"], "below-low");
    let status = edgewise(["status", "--nats", &local.url(), "--device", DEVICE]);
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    for name in ["glucose-monitor", "threshold"] {
        assert!(status.stdout.contains(name), "{}", status.stdout);
    }
    device.terminate_cleanly();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_with_several_subscriptions_gets_the_readings_of_each_and_no_others() {
    let local = NatsServer::start();
    let threshold = "[[plugins]]\nbundle = \"threshold.wasm\"\n\
                     subscriptions = [\"sensors.ward.a\", \"sensors.ward.b\"]\n\
                     [plugins.config]\nlow = 70\nhigh = 180\n";
    let mut device = Device::new(&local, None, threshold);
    device.start(&local).await;
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut alerts = subscribe_alerts(&client, "threshold").await;
    client.flush().await.unwrap();
    // `c` is not subscribed: it must not reach the plugin, though it comes first.
    for subject in ["sensors.ward.c", "sensors.ward.a", "sensors.ward.b"] {
        client.publish(subject, reading(now_ms(), 50.0)).await.unwrap();
    }
    let mut sensors = Vec::new();
    for _ in 0..2 {
        let alert = next_json(&mut alerts, "threshold alert").await;
        assert_eq!(alert["code"], "below-low", "{alert}");
        sensors.push(alert["sensor"].as_str().unwrap_or_default().to_owned());
    }
    sensors.sort();
    assert_eq!(sensors, ["ward.a", "ward.b"]);
    let status = cli_status(&local);
    assert_eq!(plugin(&status, "threshold")["readings_in"], 2, "{status}");
    device.terminate_cleanly();
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_down_at_start_then_up_delivers_everything_once() {
    let local = NatsServer::start();
    let mut cloud = NatsServer::start_with_jetstream();
    cloud.stop();
    let mut device = Device::new(&local, Some(&cloud), "");
    device.start(&local).await;
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    client.flush().await.unwrap();
    // Three sensors, each one urgent-low alert.
    for sensor in ["a", "b", "c"] {
        client
            .publish(format!("sensors.cgm.{sensor}"), reading(now_ms(), 45.0))
            .await
            .unwrap();
    }
    for _ in 0..3 {
        next_json(&mut alerts, "local alert while upstream is down").await;
    }
    let status = cli_status(&local);
    assert_eq!(status["upstream_connected"], false);
    assert_eq!(status["outbox"]["alerts"], 3, "{status}");
    cloud.start_again();
    let upstream = upstream_alerts(&cloud, 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await; // time for any duplicate to show up
    let upstream_again = upstream_alerts(&cloud, 3).await;
    assert_eq!(upstream.len(), 3, "{upstream:?}");
    assert_eq!(upstream_again.len(), 3, "delivered once");
    let mut sensors: Vec<&str> = upstream.iter().map(|(_, m)| m["sensor"].as_str().unwrap()).collect();
    sensors.sort();
    assert_eq!(sensors, ["cgm.a", "cgm.b", "cgm.c"]);
    device.terminate_cleanly();
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_exits_zero_and_loses_nothing() {
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    // Readings of 2015, on the wall clock: past the default `[ingest] max_age`.
    let mut device = Device::new(&local, Some(&cloud), "[ingest]\nmax_age = \"36500d\"\n");
    device.start(&local).await;
    let client = async_nats::connect(local.url()).await.unwrap();
    // Two hours of 5-minute readings for 5 sensors, swinging through every band:
    // alerts and hourly summaries.
    let start = 1_434_300_000_000i64 - 1_434_300_000_000 % 3_600_000;
    for step in 0..24 {
        for sensor in 0..5 {
            let value = [45.0, 60.0, 120.0, 200.0, 300.0][(step / 3 + sensor) % 5];
            client
                .publish(
                    format!("sensors.cgm.s{sensor}"),
                    reading(start + step as i64 * 300_000, value),
                )
                .await
                .unwrap();
        }
    }
    client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stderr = device.terminate_cleanly();
    // The final line counts what was emitted and what stayed in the outbox.
    let line = stderr
        .lines()
        .find(|l| l.starts_with("edgewise stopped"))
        .unwrap_or_else(|| panic!("{stderr}"));
    let words: Vec<&str> = line.split_whitespace().collect();
    let count_before = |word: &str| -> usize {
        let at = words
            .iter()
            .position(|w| w.trim_end_matches([',', ';']) == word)
            .unwrap();
        words[at - 1].parse().unwrap()
    };
    let emitted = count_before("alerts") + count_before("summaries");
    let readings = count_before("readings");
    assert_eq!(readings, 120, "every reading reached the plugin: {line}");
    assert!(emitted > 0, "{line}");
    let kept: usize = {
        let tail = &line[line.find("outbox holds").unwrap() + "outbox holds".len()..];
        let numbers: Vec<usize> = tail
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        numbers.iter().sum()
    };
    let upstream = upstream_messages(&cloud, emitted - kept).await;
    assert_eq!(upstream.len() + kept, emitted, "delivered + kept = emitted: {line}");
}

/// `[outbox] max_age` is enforced by a running host: entries left by an earlier
/// run expire at start, entries written while it runs expire about `max_age`
/// later, and each is counted by reason in the status.
#[tokio::test(flavor = "multi_thread")]
async fn outbox_entries_older_than_max_age_expire_and_are_counted() {
    let local = NatsServer::start();
    // No upstream: every output stays in the outbox.
    let mut device = Device::new(&local, None, "");
    device.start(&local).await;
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    client.flush().await.unwrap();
    for sensor in ["a", "b", "c"] {
        client
            .publish(format!("sensors.cgm.{sensor}"), reading(now_ms(), 45.0))
            .await
            .unwrap();
    }
    for _ in 0..3 {
        next_json(&mut alerts, "local alert").await;
    }
    // The default age limit (30 days) keeps them.
    let status = cli_status_until(&local, WAIT, "3 alerts in the outbox", |s| s["outbox"]["alerts"] == 3).await;
    assert_eq!(status["outbox"]["dropped"]["expired_alerts"], 0, "{status}");
    device.terminate_cleanly();

    // Restart with the shortest age limit: the three are older than it.
    let mut config = std::fs::read_to_string(device.path("edgewise.toml")).unwrap();
    config.push_str("\n[outbox]\nmax_age = \"1s\"\n");
    std::fs::write(device.path("edgewise.toml"), config).unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    device.start(&local).await;
    let status = cli_status_until(&local, Duration::from_secs(5), "expired at start", |s| {
        s["outbox"]["dropped"]["expired_alerts"] == 3
    })
    .await;
    assert_eq!(status["outbox"]["alerts"], 0, "{status}");
    assert_eq!(status["outbox"]["dropped"]["expired_summaries"], 0, "{status}");

    // An alert written now is delivered locally, stored, and expires about a
    // second later (checked every half second), without a restart.
    client.publish("sensors.cgm.d", reading(now_ms(), 45.0)).await.unwrap();
    next_json(&mut alerts, "local alert after the restart").await;
    let status = cli_status_until(&local, Duration::from_secs(5), "expired while running", |s| {
        s["outbox"]["dropped"]["expired_alerts"] == 4
    })
    .await;
    assert_eq!(status["outbox"]["alerts"], 0, "{status}");
    assert_eq!(
        status["plugins"][0]["alerts_out"], 1,
        "stored before it expired: {status}"
    );
    let human = edgewise(["status", "--nats", &local.url(), "--device", DEVICE]);
    assert!(
        human.stdout.contains("dropped:    4 alerts, 0 summaries expired;"),
        "{}",
        human.stdout
    );
    let stderr = device.terminate_cleanly();
    assert!(stderr.contains("expired undelivered"), "the expiry is logged: {stderr}");
}

#[test]
fn config_errors_exit_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("edgewise.toml");
    let cases = [
        (
            "device = \"d\"\ndata_dir = \"x\"\ntrust_dir = \".\"\ntick = \"soon\"\n[local]\nurl = \"nats://127.0.0.1:4222\"\n[[plugins]]\nbundle = \"missing.wasm\"\n[plugins.config]\nlevels = [1, 2]\n",
            vec![
                "tick: `soon`",
                "plugins[0].bundle:",
                "plugins[0].config.levels: [1, 2] must be a string, number or boolean",
            ],
        ),
        (
            "data_dir = \"x\"\ntrust_dir = \".\"\n[local]\nurl = \"nats://127.0.0.1:4222\"\n",
            vec!["device: ", "missing field `device`"],
        ),
        (
            "device = \"d e\"\ndata_dir = \"x\"\ntrust_dir = \"nope\"\n[local]\nurl = \"\"\n[[plugins]]\nbundle = \"x.wasm\"\nsubscriptions = [\"a..b\"]\n",
            vec![
                "device: `d e`",
                "trust_dir: ",
                "local.url: is empty",
                "plugins[0].subscriptions: `a..b`",
            ],
        ),
        (
            "device = \"d\"\ndata_dir = \"x\"\ntrust_dir = \".\"\nfrobnicate = 1\n[local]\nurl = \"nats://127.0.0.1:4222\"\n",
            vec!["frobnicate: "],
        ),
        (
            "device = \"d\"\ndata_dir = \"x\"\ntrust_dir = \".\"\n[local]\nurl = \"nats://127.0.0.1:4222\"\n\
             [supervisor]\nbackoff_initial = \"2s\"\nbackoff_max = \"1s\"\nquarantine_after = 0\nquarantine_cooldown = \"later\"\n\
             [[plugins]]\nbundle = \"x.wasm\"\n[plugins.limits]\nmemory_mb = 0\n",
            vec![
                "supervisor.backoff_max: must not be below `backoff_initial`",
                "supervisor.quarantine_after: 0 must be between 1 and 1000",
                "supervisor.quarantine_cooldown: `later`",
                "plugins[0].limits.memory_mb: must be greater than 0",
            ],
        ),
        (
            "device = \"d\"\ndata_dir = \"x\"\ntrust_dir = \".\"\n[local]\nurl = \"nats://127.0.0.1:4222\"\n\
             [[plugins]]\nbundle = \"x.wasm\"\n[plugins.limits]\nheap = 3\n",
            vec!["unknown field `heap`"],
        ),
        (
            "device = \"d\"\ndata_dir = \"x\"\ntrust_dir = \".\"\n[local]\nurl = \"nats://127.0.0.1:4222\"\n\
             [outbox]\nmax_mb = 0\nmax_age = \"a while\"\n[[plugins]]\nbundle = \"x.wasm\"\n",
            vec![
                "outbox.max_mb: 0 must be between 1 and 1048576",
                "outbox.max_age: `a while`",
            ],
        ),
        (
            "device = \"d\"\ndata_dir = \"x\"\ntrust_dir = \".\"\n[local]\nurl = \"nats://127.0.0.1:4222\"\n\
             [outbox]\nmax_mb = -1\nmax_age = \"10ms\"\n[[plugins]]\nbundle = \"x.wasm\"\n",
            vec![
                "outbox.max_mb: -1 must be between 1 and 1048576",
                "outbox.max_age: `10ms` must be at least 1s",
            ],
        ),
        (
            "device = \"d\"\ndata_dir = \"x\"\ntrust_dir = \".\"\n[local]\nurl = \"nats://127.0.0.1:4222\"\n\
             [outbox]\nmax_size = \"1G\"\n[[plugins]]\nbundle = \"x.wasm\"\n",
            vec!["max_size: ", "unknown field `max_size`, expected `max_mb` or `max_age`"],
        ),
    ];
    for (text, expected) in cases {
        std::fs::write(&config, text).unwrap();
        let run = edgewise(["run".as_ref(), "--config".as_ref(), config.as_os_str()]);
        assert_eq!(run.code, Some(2), "{text}\n{}", run.stderr);
        for key in expected {
            assert!(run.stderr.contains(key), "`{key}` in\n{}", run.stderr);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jetstream_source_processes_readings_published_while_the_host_was_down() {
    let local = NatsServer::start_with_jetstream();
    let client = async_nats::connect(local.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client.clone());
    create_sensors_stream(&jetstream).await;
    // Published before the host exists.
    jetstream
        .publish("sensors.cgm.early", reading(now_ms(), 48.0))
        .await
        .unwrap()
        .await
        .unwrap();

    let ingest = "[ingest]\nsource = \"jetstream\"\nstream = \"SENSORS\"\n";
    let mut device = Device::new(&local, None, ingest);
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    client.flush().await.unwrap();
    device.start(&local).await;
    let alert = next_json(&mut alerts, "alert for a reading published before start").await;
    assert_eq!(
        (alert["code"].as_str(), alert["sensor"].as_str()),
        (Some("urgent-low"), Some("cgm.early"))
    );
    device.terminate_cleanly();

    // Down again: published now, processed at the next start, and the first
    // reading (acknowledged) is not processed twice.
    jetstream
        .publish("sensors.cgm.late", reading(now_ms(), 47.0))
        .await
        .unwrap()
        .await
        .unwrap();
    device.start(&local).await;
    let alert = next_json(&mut alerts, "alert for a reading published while down").await;
    assert_eq!(alert["sensor"], "cgm.late");
    let status = cli_status(&local);
    assert_eq!(status["plugins"][0]["readings_in"], 1, "only the new reading: {status}");
    device.terminate_cleanly();
}

/// Publishing a recording over NATS gives the same alerts and summaries as
/// `edgewise replay` of that recording, ignoring `device`, `seq`, emission
/// order, and what the end of the recording leaves open (windows not yet
/// closed, outages after the last reading). This is what makes replay in CI
/// meaningful.
#[tokio::test(flavor = "multi_thread")]
async fn a_live_run_gives_the_same_outputs_as_a_replay() {
    const SUBJECT: &str = "Subject 3";
    const SPEED: f64 = 36_000.0; // six days of data in about 15 s
    let csv = std::fs::read_to_string(edgewise_tests::data_file("cgm/ExampleData5Subjects.csv")).unwrap();
    let readings = crate::metrics_crosscheck::read_recording(&csv).remove(SUBJECT).unwrap();
    let (first_ts, last_ts) = (readings[0].0, readings[readings.len() - 1].0);

    // The live run: a simulated clock starting just before the first reading.
    let local = NatsServer::start();
    let cloud = NatsServer::start_with_jetstream();
    let clock = format!(
        "[clock]\nstart = \"{}\"\nspeed = {SPEED}\n",
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(first_ts - 60_000) * 1_000_000)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    );
    // The payloads name the sensor as the recording does (`Subject 3`, not a
    // subject token): this subject is a trusted gateway. At this speed the
    // host's ticks trail its clock by hours (200 ms real), so glucose-monitor
    // must accept readings that far ahead of its latest tick.
    let plugin = "payload_sensors = [\"sensors.cgm.subject-3\"]\n[plugins.config]\nmax_ahead = \"24h\"\n";
    let mut device = Device::with_tick(&local, Some(&cloud), "5m", &format!("{plugin}{clock}"));
    device.start(&local).await;
    let client = async_nats::connect(local.url()).await.unwrap();
    // Publish each reading when the host's clock reaches its timestamp.
    let anchor_real = tokio::time::Instant::now();
    let anchor_clock = host_status(&client).await["clock_ms"].as_i64().unwrap();
    for (ts, value) in &readings {
        let due = Duration::from_secs_f64(((ts - anchor_clock).max(0) as f64 / SPEED) / 1000.0);
        tokio::time::sleep_until(anchor_real + due).await;
        let payload = format!(r#"{{"ts":{ts},"value":{value},"unit":"mg/dL","sensor":"{SUBJECT}"}}"#);
        client.publish("sensors.cgm.subject-3", payload.into()).await.unwrap();
    }
    // Let the clock run an hour past the last reading, then wait for the outbox to drain.
    status_until(&client, "the live run to settle", |now| {
        now["plugins"][0]["readings_in"] == readings.len()
            && now["clock_ms"].as_i64().unwrap() > last_ts + 3_600_000
            && now["outbox"]["alerts"] == 0
            && now["outbox"]["summaries"] == 0
    })
    .await;
    let live: Vec<Value> = upstream_messages(&cloud, 1)
        .await
        .into_iter()
        .map(|(_, message)| message)
        .collect();
    device.terminate_cleanly();

    // The replay of the same recording through the same bundle.
    let recording = device.path("subject-3.csv");
    let rows: String = csv
        .lines()
        .filter(|l| l.starts_with("\"id\"") || l.starts_with(&format!("\"{SUBJECT}\"")))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&recording, rows).unwrap();
    let replay = device.replay(&recording, &[]);
    assert_eq!(replay.code, Some(0), "{}", replay.stderr);
    let replayed: Vec<Value> = replay
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();

    // Compare as multisets, without device and seq, within what both runs closed.
    let comparable = |outputs: &[Value]| -> Vec<String> {
        let mut kept: Vec<String> = outputs
            .iter()
            .filter(|o| match o["type"].as_str() {
                Some("alert") => o["ts"].as_i64().unwrap() <= last_ts,
                _ => o["window_end"].as_i64().unwrap() <= last_ts - 3_600_000,
            })
            .map(|o| {
                let mut o = o.as_object().unwrap().clone();
                o.remove("device");
                o.remove("seq");
                serde_json::to_string(&o).unwrap()
            })
            .collect();
        kept.sort();
        kept
    };
    let (live, replayed) = (comparable(&live), comparable(&replayed));
    assert!(replayed.len() > 100, "the recording makes outputs: {}", replayed.len());
    let only_live: Vec<&String> = live.iter().filter(|l| !replayed.contains(l)).collect();
    let only_replay: Vec<&String> = replayed.iter().filter(|r| !live.contains(r)).collect();
    assert!(
        only_live.is_empty() && only_replay.is_empty() && live.len() == replayed.len(),
        "live {} vs replay {} outputs\nonly live: {only_live:#?}\nonly replay: {only_replay:#?}",
        live.len(),
        replayed.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn user_password_and_token_authentication() {
    let local = NatsServer::start_with_args(false, &["--user", "edge", "--pass", "s3cret"]);
    let cloud = NatsServer::start_with_args(true, &["--auth", "cl0ud-token"]);
    let mut device = Device::new(&local, Some(&cloud), "");
    // Same device, with the credentials each server wants.
    let config = std::fs::read_to_string(device.path("edgewise.toml")).unwrap();
    let config = config
        .replace(
            &format!("url = \"{}\"\n", local.url()),
            &format!("url = \"{}\"\nuser = \"edge\"\npassword = \"s3cret\"\n", local.url()),
        )
        .replace(
            &format!("url = \"{}\"\n", cloud.url()),
            &format!("url = \"{}\"\ntoken = \"cl0ud-token\"\n", cloud.url()),
        );
    std::fs::write(device.path("edgewise.toml"), config).unwrap();
    let client = async_nats::ConnectOptions::with_user_and_password("edge".into(), "s3cret".into())
        .connect(local.url())
        .await
        .unwrap();
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    client.flush().await.unwrap();
    device.start_with(&client).await;
    client.publish("sensors.cgm.p1", reading(now_ms(), 49.0)).await.unwrap();
    assert_eq!(
        next_json(&mut alerts, "alert through an authenticated bus").await["code"],
        "urgent-low"
    );
    let cloud_client = async_nats::ConnectOptions::with_token("cl0ud-token".into())
        .connect(cloud.url())
        .await
        .unwrap();
    // Stored upstream, read through token authentication.
    upstream_messages_via(cloud_client, 1).await;
    device.terminate_cleanly();
}
