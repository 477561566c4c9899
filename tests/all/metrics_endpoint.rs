//! The device's Prometheus endpoint (issue #17), against the real `edgewise
//! run` on a real nats-server, read as Prometheus reads it: the exposition
//! parsed by the Prometheus client's own parser. Its counters agree with
//! `edgewise status --json`, every family docs/operators.md lists is there
//! with its type, and no patient value is in it. Off by default; a
//! non-loopback address only with the explicit opt-in.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::net::SocketAddr;

use crate::device::{DEVICE, Device, WAIT, now_ms, reading};
use crate::support::{cli_status, next_json, next_where, poll_until, status_until, subscribe_alerts};
use edgewise_tests::nats::NatsServer;
use edgewise_tests::prometheus::{self, Family};
use edgewise_tests::{edgewise, workspace_root};

/// The sensor the test publishes for: its id must not be in the metrics.
const SENSOR: &str = "cgm.zq7x";
/// The glucose values published: none may be in the metrics.
const LOW: f64 = 47.25;
const HIGH: f64 = 183.5;

/// One clock hour, the span of a glucose-monitor summary.
const HOUR_MS: i64 = 3_600_000;

/// The metrics table of a device listening on a port the system picks.
const METRICS: &str = "[metrics]\nlisten = \"127.0.0.1:0\"\n";

/// Start `device` logging at `info` (the endpoint's address is logged at
/// that level), its status asked through `client`.
async fn start_logging_info(device: &mut Device, client: &async_nats::Client) {
    let mut command = device.run_command();
    command.env("RUST_LOG", "info");
    device.start_command(command, client).await;
}

/// The address the host says it serves its metrics on (its log).
fn metrics_address(device: &Device) -> SocketAddr {
    let log = std::fs::read_to_string(device.path("edgewise.log")).unwrap();
    let line = log
        .lines()
        .find(|line| line.contains("Serving metrics on http://"))
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{log}"));
    let after = &line[line.find("http://").unwrap() + "http://".len()..];
    after[..after.find("/metrics").unwrap()].parse().unwrap()
}

/// Scrape `address`: the families, and the exposition's text.
fn scrape(address: SocketAddr) -> (BTreeMap<String, Family>, String) {
    let answer = prometheus::request(address, "GET", "/metrics", b"").unwrap();
    assert_eq!(answer.code, 200, "{answer:?}");
    assert_eq!(
        answer.content_type.as_deref(),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    let families = prometheus::parse(&answer.body).unwrap_or_else(|e| panic!("{e:#}\n{}", answer.body));
    (families, answer.body)
}

/// The value of the sample `name` with `labels` (a subset of its labels).
fn value(families: &BTreeMap<String, Family>, family: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = families
        .get(family)
        .unwrap_or_else(|| panic!("no family `{family}`"))
        .samples
        .iter()
        .filter(|s| {
            s.name == name
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .collect();
    assert_eq!(found.len(), 1, "`{name}` {labels:?}: {found:?}");
    found[0]
}

/// The families docs/operators.md lists in its "Metrics" table: each
/// family's name (as the parser names it: a counter's without `_total`) and type.
fn documented_families() -> BTreeMap<String, String> {
    let docs = std::fs::read_to_string(workspace_root().join("docs/operators.md")).unwrap();
    let section = &docs[docs
        .find("\n## Metrics")
        .expect("a Metrics section in docs/operators.md")..];
    let section = &section[..section[1..].find("\n## ").map_or(section.len(), |end| end + 1)];
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            let kind = *cells.get(2)?;
            let family = match kind {
                "counter" => name.strip_suffix("_total").expect("a counter's name ends in `_total`"),
                _ => name,
            };
            Some((family.to_owned(), kind.to_owned()))
        })
        .collect()
}

/// The TCP ports process `pid` listens on (its sockets in `/proc`).
fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(target.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let mut ports = BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local address, state (0A: LISTEN), inode.
            if fields.len() > 9 && fields[3] == "0A" && inodes.contains(fields[9]) {
                let port = fields[1].rsplit(':').next().unwrap();
                ports.insert(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports
}

#[tokio::test(flavor = "multi_thread")]
async fn the_endpoint_agrees_with_the_status_and_shows_no_patient_value() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, METRICS);
    let client = async_nats::connect(local.url()).await.unwrap();
    let mut alerts = subscribe_alerts(&client, "glucose-monitor").await;
    let mut dead = client.subscribe(format!("edgewise.{DEVICE}.deadletter")).await.unwrap();
    start_logging_info(&mut device, &client).await;
    let address = metrics_address(&device);
    assert_eq!(listening_ports(device.pid()), BTreeSet::from([address.port()]));

    let subject = format!("sensors.{SENSOR}");
    // Both readings in one clock hour: glucose-monitor summarises an hour
    // once a reading passes its end, and this test wants no summary (with
    // the first a minute back, a run in an hour's first minute made one).
    let now = now_ms();
    let first = (now - 60_000).max(now - now.rem_euclid(HOUR_MS));
    let now = now.max(first + 1);
    client.publish(subject.clone(), reading(first, HIGH)).await.unwrap();
    client.publish(subject.clone(), reading(now, LOW)).await.unwrap();
    // Dead-lettered: a reading stamped in microseconds (far in the future), and no JSON at all.
    client.publish(subject.clone(), reading(now * 1000, LOW)).await.unwrap();
    client.publish(subject.clone(), "not json".into()).await.unwrap();
    next_where(&mut alerts, "the urgent low", |_, alert| alert["code"] == "urgent-low").await;
    next_json(&mut dead, "a dead letter").await;
    next_json(&mut dead, "another dead letter").await;
    // The urgent low is published before the outbox commits it and
    // `alerts_out` counts it: wait for that too (it comes of the last reading).
    status_until(
        &client,
        "both readings in, both dead letters and the alert counted",
        |status| {
            status["plugins"][0]["readings_in"] == 2
                && status["ingest"]["deadlettered"] == 2
                && status["plugins"][0]["alerts_out"].as_u64() >= Some(1)
        },
    )
    .await;

    let status = cli_status(&local);
    let (families, text) = scrape(address);
    let plugin = &status["plugins"][0];
    let name = plugin["name"].as_str().unwrap();
    let version = plugin["version"].as_str().unwrap();
    let labels = [("plugin", name), ("version", version)];
    let counter = |family: &str, extra: &[(&str, &str)]| {
        let all: Vec<(&str, &str)> = labels.iter().chain(extra).copied().collect();
        value(&families, family, &format!("{family}_total"), &all)
    };
    assert_eq!(
        counter("edgewise_plugin_readings", &[]),
        plugin["readings_in"].as_f64().unwrap()
    );
    assert_eq!(counter("edgewise_plugin_readings", &[]), 2.0);
    assert_eq!(
        counter("edgewise_plugin_outputs", &[("kind", "alert")]),
        plugin["alerts_out"].as_f64().unwrap()
    );
    assert!(plugin["alerts_out"].as_u64().unwrap() >= 1, "{status}");
    assert_eq!(
        counter("edgewise_plugin_outputs", &[("kind", "summary")]),
        plugin["summaries_out"].as_f64().unwrap()
    );
    assert_eq!(
        counter("edgewise_plugin_restarts", &[]),
        plugin["restarts"].as_f64().unwrap()
    );
    assert_eq!(
        counter("edgewise_plugin_quarantines", &[]),
        plugin["quarantines"].as_f64().unwrap()
    );
    assert_eq!(
        counter("edgewise_plugin_readings_dropped", &[]),
        plugin["readings_dropped"].as_f64().unwrap()
    );
    let held = value(
        &families,
        "edgewise_plugin_readings_held",
        "edgewise_plugin_readings_held",
        &labels,
    );
    assert_eq!(held, plugin["readings_held"].as_f64().unwrap());
    let running: Vec<(&str, &str)> = labels.iter().copied().chain([("state", "running")]).collect();
    assert_eq!(
        value(&families, "edgewise_plugin_state", "edgewise_plugin_state", &running),
        1.0
    );
    let ingest = &status["ingest"];
    let messages = value(
        &families,
        "edgewise_ingest_messages",
        "edgewise_ingest_messages_total",
        &[],
    );
    assert_eq!(messages, ingest["messages"].as_f64().unwrap());
    assert_eq!(messages, 4.0);
    for reason in ["future", "malformed", "too-old", "sensor-mismatch", "too-many-sensors"] {
        let shown = ingest["deadletters_by_reason"][reason].as_f64().unwrap_or(0.0);
        let family = "edgewise_ingest_deadletters";
        assert_eq!(
            value(&families, family, &format!("{family}_total"), &[("reason", reason)]),
            shown,
            "{reason}"
        );
    }
    assert_eq!(ingest["deadletters_by_reason"]["future"], 1, "{status}");
    assert_eq!(ingest["deadletters_by_reason"]["malformed"], 1, "{status}");
    for class in ["alerts", "summaries"] {
        let depth = value(
            &families,
            "edgewise_outbox_entries",
            "edgewise_outbox_entries",
            &[("class", class)],
        );
        assert_eq!(depth, status["outbox"][class].as_f64().unwrap(), "{class}");
    }
    assert!(
        status["outbox"]["alerts"].as_u64().unwrap() >= 1,
        "no upstream: kept: {status}"
    );
    let oldest = |class| {
        let family = "edgewise_outbox_oldest_age_seconds";
        value(&families, family, family, &[("class", class)])
    };
    assert!(oldest("alerts") >= 0.0, "{}", oldest("alerts"));
    assert_eq!(status["outbox"]["summaries"], 0, "{status}");
    assert_eq!(oldest("summaries"), 0.0, "none waits");
    let connected = value(
        &families,
        "edgewise_upstream_connected",
        "edgewise_upstream_connected",
        &[],
    );
    assert_eq!(connected, 0.0);
    assert_eq!(status["upstream_connected"], false);
    // The calls were timed: `init` once, `on_readings` at least once (a batch may hold both readings).
    let calls = "edgewise_plugin_call_duration_seconds";
    let count = |call: &str| {
        let all: Vec<(&str, &str)> = labels.iter().copied().chain([("call", call)]).collect();
        value(&families, calls, &format!("{calls}_count"), &all)
    };
    assert_eq!(count("init"), 1.0);
    assert!(count("on_readings") >= 1.0);
    assert!(
        value(
            &families,
            "process_resident_memory_bytes",
            "process_resident_memory_bytes",
            &[]
        ) > 1e6
    );
    assert!(value(&families, "process_cpu_seconds", "process_cpu_seconds_total", &[]) > 0.0);

    // Every documented family is there with its type, and nothing else.
    let documented = documented_families();
    assert!(documented.len() > 10, "{documented:?}");
    let served: BTreeMap<String, String> = families.iter().map(|(n, f)| (n.clone(), f.kind.clone())).collect();
    assert_eq!(
        served, documented,
        "served (left) and documented in docs/operators.md (right)"
    );

    // No patient value: no sensor id, no reading, no alert text.
    for secret in [SENSOR, "zq7x", "47.25", "183.5", "urgent", "mg/dL"] {
        assert!(!text.contains(secret), "`{secret}` in the metrics:\n{text}");
    }
    device.terminate_cleanly().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_endpoint_is_bounded_against_hostile_clients() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, METRICS);
    let client = async_nats::connect(local.url()).await.unwrap();
    start_logging_info(&mut device, &client).await;
    let address = metrics_address(&device);
    // Another path, another method (with a body, never read): refused.
    assert_eq!(prometheus::request(address, "GET", "/", b"").unwrap().code, 404);
    let posted = prometheus::request(address, "POST", "/metrics", &vec![b'x'; 1 << 20]);
    // The host may close before the whole body is sent: refused either way.
    assert!(posted.is_err() || posted.as_ref().unwrap().code == 405, "{posted:?}");
    // A huge request head: refused, not read without end.
    let path = format!("/metrics?{}", "a".repeat(64 * 1024));
    let huge = prometheus::request(address, "GET", &path, b"");
    assert!(huge.is_err() || huge.as_ref().unwrap().code >= 400, "{huge:?}");
    // Idle connections hold every slot: the next is closed unanswered...
    let idle: Vec<std::net::TcpStream> = (0..4).map(|_| std::net::TcpStream::connect(address).unwrap()).collect();
    poll_until("a connection beyond the bound closed unanswered", WAIT, || async {
        match prometheus::request(address, "GET", "/metrics", b"") {
            Err(_) => Ok(()),
            Ok(answer) => Err(format!("answered {}", answer.code)),
        }
    })
    .await;
    // ...and once they go, scrapes are served again.
    drop(idle);
    poll_until("a scrape once the idle connections are gone", WAIT, || async {
        match prometheus::request(address, "GET", "/metrics", b"") {
            Ok(answer) if answer.code == 200 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    device.terminate_cleanly().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_endpoint_is_off_by_default() {
    let local = NatsServer::start();
    let mut device = Device::new(&local, None, "");
    let client = async_nats::connect(local.url()).await.unwrap();
    start_logging_info(&mut device, &client).await;
    assert_eq!(listening_ports(device.pid()), BTreeSet::new());
    let log = std::fs::read_to_string(device.path("edgewise.log")).unwrap();
    assert!(!log.contains("Serving metrics"), "{log}");
    device.terminate_cleanly().await;
}

#[test]
fn a_non_loopback_address_needs_the_explicit_opt_in() {
    let local = NatsServer::start();
    let device = Device::new(&local, None, "[metrics]\nlisten = \"0.0.0.0:0\"\n");
    let config = device.path("edgewise.toml");
    let run = edgewise([OsStr::new("run"), OsStr::new("--config"), config.as_os_str()]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("metrics.listen"), "{}", run.stderr);
    assert!(run.stderr.contains("not a loopback address"), "{}", run.stderr);
    assert!(run.stderr.contains("allow_remote = true"), "{}", run.stderr);
}
