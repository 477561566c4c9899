//! A host whose log output stops taking lines goes on alerting. Its stderr
//! may be a pipe to a log collector that hangs (journald stuck, a container
//! runtime whose log driver blocks, `edgewise run 2>&1 | logger` with the
//! reader gone to sleep): once the pipe's buffer is full, every write to it
//! waits. A host that wrote its log lines itself would then stop in the
//! first thread that logs: a plugin's worker in the middle of a call (which
//! no deadline interrupts: the wait is in the host), then the async threads
//! that carry every plugin's readings. The log is the operator's; the alerts
//! are the patient's: lines that cannot be written are dropped and counted.

use std::process::Stdio;
use std::time::Duration;

use edgewise_procs::ChildGuard;
use edgewise_tests::nats::NatsServer;
use serde_json::Value;

use crate::device::{Device, WAIT, now_ms, reading};
use crate::hostile_plugins::V0_2;
use crate::support::{next_where, plugin, poll_until, subscribe_alerts};

/// The host's status through `client`, or why not (it does not answer).
async fn status(client: &async_nats::Client) -> Result<Value, String> {
    let asked = client.request(format!("edgewise.{}.status", crate::device::DEVICE), "".into());
    match tokio::time::timeout(Duration::from_secs(2), asked).await {
        Ok(Ok(reply)) => serde_json::from_slice(&reply.payload).map_err(|e| e.to_string()),
        other => Err(format!("no answer: {other:?}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_log_output_that_stops_taking_lines_stops_neither_alerts_nor_the_shutdown() {
    let local = NatsServer::start();
    // faulty-v02 warns with 4 KiB at every reading, within a log budget of
    // 1 MiB a second (the host's ceiling): a pipe's 64 KiB are full at once.
    let plugins = V0_2.plugin_table("log-warn", "size = 4096\n", "log_bytes_per_second = 1048576\n");
    let device = Device::new(&local, None, &plugins);
    // stdout and stderr into a pipe nobody reads (its reading end is kept
    // open: a writer waits, it is not told the reader is gone).
    let (_never_read, output) = std::io::pipe().unwrap();
    let mut command = device.run_command();
    command
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(output.try_clone().unwrap())
        .stderr(output);
    let mut host = ChildGuard::new("edgewise run (stalled log)", command.spawn().unwrap());

    let client = async_nats::connect(local.url()).await.unwrap();
    let mut alerts = subscribe_alerts(&client, ">").await;
    poll_until("both plugins running", WAIT, || async {
        let status = status(&client).await?;
        let running = |name: &str| plugin(&status, name)["state"] == "running";
        if running("glucose-monitor") && running(V0_2.name) {
            Ok(())
        } else {
            Err(status.to_string())
        }
    })
    .await;

    // Readings to faulty-v02, one at a time, until the host says it dropped
    // log lines: the pipe is full. Each reading's alert must still come.
    // (At most 256 warnings a second pass the plugin's log budget, the rest
    // are dropped by it: the host's queue of 1,024 lines fills in seconds.)
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let mut sent = 0;
    let dropped = loop {
        sent += 1;
        assert!(
            std::time::Instant::now() < deadline,
            "{sent} warnings of 4 KiB in 120 s and no log line dropped"
        );
        V0_2.publish(&client, now_ms()).await;
        let what = format!("faulty-v02's alert for its reading {sent} (the log output is not read)");
        next_where(&mut alerts, &what, |subject, alert| {
            V0_2.raised(subject) && alert["code"] == "seen"
        })
        .await;
        if sent % 16 == 0 {
            let status = status(&client)
                .await
                .unwrap_or_else(|e| panic!("after reading {sent}: {e}"));
            let dropped = status["log_lines_dropped"].as_u64().unwrap_or(0);
            if dropped > 0 {
                break dropped;
            }
        }
    };
    assert!(
        sent > 16,
        "the pipe holds 64 KiB: {sent} warnings of 4 KiB cannot have filled it"
    );

    // The log output still takes nothing: glucose-monitor alerts, and so
    // does faulty-v02, whose every warning is now dropped.
    client.publish("sensors.cgm.p1", reading(now_ms(), 45.0)).await.unwrap();
    next_where(&mut alerts, "glucose-monitor's urgent-low", |subject, alert| {
        subject.ends_with(".glucose-monitor") && alert["code"] == "urgent-low"
    })
    .await;
    for n in 0..20 {
        V0_2.publish(&client, now_ms()).await;
        let what = format!("faulty-v02's alert for reading {n} past the first dropped line");
        next_where(&mut alerts, &what, |subject, alert| {
            V0_2.raised(subject) && alert["code"] == "seen"
        })
        .await;
    }
    let status = status(&client).await.unwrap();
    assert!(
        status["log_lines_dropped"].as_u64().unwrap() > dropped,
        "each warning past the full pipe is dropped and counted: {status}"
    );
    let faulty = plugin(&status, V0_2.name);
    assert_eq!(faulty["state"], "running", "{faulty}");
    assert_eq!(faulty["errors"], 0, "{faulty}");

    // The shutdown is bounded too: its last lines cannot be written either.
    host.terminate().unwrap();
    let exit = tokio::task::spawn_blocking(move || {
        let exit = host.wait_timeout(Duration::from_secs(60)).unwrap();
        (exit, host)
    })
    .await
    .unwrap()
    .0;
    let exit = exit.expect("edgewise run did not exit within 60 s of SIGTERM with its log output full");
    assert_eq!(exit.code(), Some(0), "{exit:?}");
}
