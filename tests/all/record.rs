//! `edgewise record` (issue #14): live bus traffic on given subjects into a
//! recording that `edgewise replay` reads; plaintext, said so, owner-only,
//! never over an existing file.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

use edgewise_procs::child::{ChildGuard, sigterm};
use edgewise_procs::workspace;
use edgewise_tests::nats::NatsServer;
use edgewise_tests::{edgewise, edgewise_bin, plugin_wasm};
use serde_json::Value;

use crate::device::reading;
use crate::support::{assert_contains, poll_until};

const T0: i64 = 1_700_000_000_000;

/// `edgewise record` running against `server` with `args`, once it says it
/// is recording; its standard error lines arrive on the receiver.
fn start_recording(server: &NatsServer, args: &[&str]) -> (ChildGuard, mpsc::Receiver<String>) {
    let _ = edgewise_bin();
    let mut command = workspace::edgewise(&[]);
    command
        .args(["record", "--nats", &server.url()])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = ChildGuard::new("edgewise record", command.spawn().unwrap());
    let stderr = child.take_stderr().unwrap();
    let (lines, received) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let first = received
        .recv_timeout(Duration::from_secs(20))
        .expect("`edgewise record` said nothing within 20 s");
    assert!(first.starts_with("recording "), "{first}");
    (child, received)
}

/// Every line `edgewise record` writes to standard error until it exits.
fn rest_of(received: mpsc::Receiver<String>) -> String {
    received.iter().collect::<Vec<_>>().join("\n")
}

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn live_traffic_is_recorded_as_a_plaintext_recording_that_replays() {
    let local = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("recorded.jsonl");
    let out_arg = out.display().to_string();
    let (mut child, stderr) = start_recording(
        &local,
        &[
            "--subject",
            "sensors.cgm.>",
            "--subject",
            "sensors.temperature.>",
            "--count",
            "4",
            "--out",
            &out_arg,
        ],
    );
    let client = async_nats::connect(local.url()).await.unwrap();
    client.publish("sensors.cgm.p1", reading(T0, 120.0)).await.unwrap();
    client.publish("sensors.cgm.p1", "not json".into()).await.unwrap();
    client.publish("sensors.other.x", reading(T0, 1.0)).await.unwrap();
    client
        .publish("sensors.cgm.p1", reading(T0 + 300_000, 45.0))
        .await
        .unwrap();
    client
        .publish(
            "sensors.temperature.f1",
            r#"{"ts":1700000000000,"value":5.5,"unit":"degC"}"#.into(),
        )
        .await
        .unwrap();
    client
        .publish("sensors.cgm.p1", reading(T0 + 600_000, 44.0))
        .await
        .unwrap();
    client.flush().await.unwrap();

    let status = child
        .wait_timeout(Duration::from_secs(20))
        .unwrap()
        .expect("still recording after 4 messages");
    assert!(status.success(), "{status:?}");
    let report = rest_of(stderr);
    assert_contains(&report, "recorded 4 messages");
    assert_contains(&report, "(plaintext)");
    assert_contains(&report, "left out 1 whose payload is not JSON");
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);

    // Each subject's messages in the order sent (subjects interleave as they
    // come: a replay orders readings by time anyway).
    let recorded = lines(&out);
    let of = |subject: &str| -> Vec<f64> {
        recorded
            .iter()
            .filter(|line| line["subject"] == subject)
            .map(|line| line["payload"]["value"].as_f64().unwrap())
            .collect()
    };
    assert_eq!(recorded.len(), 4);
    assert_eq!(of("sensors.cgm.p1"), [120.0, 45.0, 44.0]);
    assert_eq!(of("sensors.temperature.f1"), [5.5]);

    let replay = edgewise([
        "replay".as_ref(),
        "--plugin".as_ref(),
        plugin_wasm("glucose-monitor").as_os_str(),
        "--input".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(replay.code, Some(0), "{}", replay.stderr);
    assert_contains(&replay.stderr, "4 rows read, 4 readings replayed");
    assert_contains(&replay.stdout, r#""code":"urgent-low""#);
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_a_recording_with_everything_received_kept() {
    let local = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("recorded.jsonl");
    let out_arg = out.display().to_string();
    let (child, stderr) = start_recording(&local, &["--subject", "sensors.>", "--out", &out_arg]);
    let client = async_nats::connect(local.url()).await.unwrap();
    for k in 0..2 {
        client
            .publish("sensors.cgm.p1", reading(T0 + k * 300_000, 100.0))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    poll_until("both messages in the file", Duration::from_secs(20), || {
        let seen = lines(&out).len();
        async move {
            if seen == 2 {
                Ok(())
            } else {
                Err(format!("{seen} lines"))
            }
        }
    })
    .await;
    sigterm(child.pid().unwrap()).unwrap();
    let mut child = child;
    let status = child
        .wait_timeout(Duration::from_secs(20))
        .unwrap()
        .expect("still running after SIGTERM");
    assert!(status.success(), "{status:?}");
    assert_contains(&rest_of(stderr), "recorded 2 messages");
    assert_eq!(lines(&out).len(), 2);
}

#[test]
fn a_recording_never_overwrites_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("keep.jsonl");
    std::fs::write(&out, "precious\n").unwrap();
    let record_into = |out: &std::path::Path| {
        edgewise([
            "record".as_ref(),
            "--nats".as_ref(),
            "nats://127.0.0.1:1".as_ref(),
            "--subject".as_ref(),
            "sensors.>".as_ref(),
            "--out".as_ref(),
            out.as_os_str(),
        ])
    };
    let run = record_into(&out);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(&run.stderr, "already exists: a recording never overwrites a file");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "precious\n");
    // A folder that is not there is said as such, not as an overwrite.
    let run = record_into(&dir.path().join("no-such-folder/keep.jsonl"));
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert_contains(&run.stderr, "cannot create");
    assert_contains(&run.stderr, "No such file or directory");
    assert!(!run.stderr.contains("overwrite"), "{}", run.stderr);
}
