//! `edgewise dashboard` (issue #17), in a real browser: headless Chromium
//! from the distribution, driven over the DevTools protocol
//! (`edgewise_tests::browser`). The dashboard reads a real cloud
//! nats-server; devices are real `edgewise run`s behind their leaf servers,
//! or a real replay's outputs published where a device would put them.
//! Screenshots go to `target/dashboard-screenshots/` (and to
//! `docs/dashboard/` with `EDGEWISE_UPDATE_SCREENSHOTS=1`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use edgewise_procs::child::ChildGuard;
use edgewise_procs::topology::{CloudServer, EdgeServer};
use edgewise_tests::browser::{Browser, Page};
use edgewise_tests::nats::{start_cloud, start_edge};
use edgewise_tests::{edgewise, edgewise_bin, plugin_wasm, workspace_root};
use serde_json::Value;

use crate::device::{Device, WAIT};

/// The acceptance's bound: an alert a device raises is on the live feed
/// within this, without a reload.
const LIVE_WITHIN: Duration = Duration::from_secs(2);

/// A running `edgewise dashboard`, stopped when dropped.
struct Dashboard {
    _process: ChildGuard,
    addr: SocketAddr,
}

impl Dashboard {
    /// `edgewise dashboard --cloud <cloud> --listen 127.0.0.1:0 <extra>`,
    /// once it says where it listens.
    fn start(cloud: &str, extra: &[&str]) -> Dashboard {
        let mut command = Command::new(edgewise_bin());
        command
            .args(["dashboard", "--cloud", cloud, "--listen", "127.0.0.1:0"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let process = ChildGuard::new("edgewise dashboard", child);
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("dashboard: http://")
            .and_then(|rest| rest.strip_suffix('/'))
            .unwrap_or_else(|| panic!("not the line announcing the address: {line:?}"))
            .parse()
            .unwrap();
        Dashboard {
            _process: process,
            addr,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Where a test's screenshot `name` goes (and, when asked, a copy for the docs).
fn screenshot_path(name: &str) -> PathBuf {
    let dir = workspace_root().join("target/dashboard-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn publish_screenshot(path: &std::path::Path) {
    if std::env::var_os("EDGEWISE_UPDATE_SCREENSHOTS").is_some() {
        let docs = workspace_root().join("docs/dashboard");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::copy(path, docs.join(path.file_name().unwrap())).unwrap();
    }
}

/// A device behind its own leaf server, running glucose-monitor, its
/// outputs and telemetry (every second) upstream in its own stream.
struct Edge {
    _server: EdgeServer,
    _device: Device,
    client: async_nats::Client,
}

impl Edge {
    async fn start(cloud: &CloudServer, id: &str) -> Edge {
        let server = start_edge(cloud, id);
        let rest = format!(
            "[upstream]\nurl = \"{}\"\nstream = \"edgewise-{id}-up\"\ncreate_stream = true\ndomain = \"cloud\"\n\n\
             [telemetry]\ninterval = \"1s\"\n\n[[plugins]]\nbundle = \"glucose-monitor.wasm\"\n",
            server.url()
        );
        let mut device = Device::at(id, &server.url(), None, "100ms", &rest);
        let client = async_nats::connect(server.url()).await.unwrap();
        device.start_with(&client).await;
        Edge {
            _server: server,
            _device: device,
            client,
        }
    }

    /// Publish one reading of `sensor` now (its subject `sensors.<sensor>`).
    async fn reading(&self, sensor: &str, value: f64) {
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let payload = format!("{{\"ts\":{now},\"value\":{value},\"unit\":\"mg/dL\"}}");
        self.client
            .publish(format!("sensors.{sensor}"), payload.into())
            .await
            .unwrap();
        self.client.flush().await.unwrap();
    }
}

/// Publish a reading of `value` for `sensor` on `edge`, and wait until the
/// live feed in `feed` shows an alert `code`: within [`LIVE_WITHIN`] of the
/// publish, or the test fails.
async fn shown_live(edge: &Edge, feed: &Page, sensor: &str, value: f64, code: &str) {
    let raised = Instant::now();
    edge.reading(sensor, value).await;
    let condition = format!(
        "Array.from(document.querySelectorAll('tr.alert')).some(r => r.querySelector('td.code').textContent === '{code}')"
    );
    feed.wait_for_since(&condition, raised, LIVE_WITHIN)
        .await
        .unwrap_or_else(|e| panic!("the `{code}` alert was not on the feed within {LIVE_WITHIN:?}: {e:#}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_fleet_page_lists_three_running_devices_and_an_alert_reaches_the_live_feed_within_2_s_without_a_reload() {
    let cloud = start_cloud();
    let mut edges = Vec::new();
    for id in ["ward-1", "ward-2", "ward-3"] {
        edges.push(Edge::start(&cloud, id).await);
    }
    let dashboard = Dashboard::start(&cloud.url(), &[]);
    let browser = Browser::start().await.unwrap();

    // The fleet: three devices, each running glucose-monitor, found by the
    // dashboard from their telemetry (the page refreshes itself).
    let fleet = browser.open(&dashboard.url("/")).await.unwrap();
    fleet
        .wait_for(
            "document.querySelectorAll('tr.device').length === 3 && \
             Array.from(document.querySelectorAll('tr.plugin')).filter(r => r.textContent.includes('glucose-monitor') && r.textContent.includes('running')).length === 3 && \
             Array.from(document.querySelectorAll('tr.device')).filter(r => r.textContent.includes('connected')).length === 3",
            WAIT,
        )
        .await
        .unwrap();
    let devices: Vec<String> = fleet
        .eval("Array.from(document.querySelectorAll('tr.device')).map(r => r.dataset.device)")
        .await
        .unwrap();
    assert_eq!(devices, ["ward-1", "ward-2", "ward-3"]);

    // The live feed: a warning, then a critical alert, raised by ward-2's
    // glucose-monitor (the first reading of each of two patients: no jump
    // between readings for the plugin to find implausible), appear without
    // a reload, the critical one first.
    let feed = browser.open(&dashboard.url("/alerts")).await.unwrap();
    feed.wait_for("document.getElementById('feed-status').textContent === 'live'", WAIT)
        .await
        .unwrap();
    let _: Value = feed.eval("window.notReloaded = true").await.unwrap();
    let (low, urgent) = ("cgm.patient-7", "cgm.patient-8");
    let ward2 = &edges[1];
    shown_live(ward2, &feed, low, 65.0, "low").await;
    shown_live(ward2, &feed, urgent, 45.0, "urgent-low").await;
    let rows: Vec<Vec<String>> = feed
        .eval("Array.from(document.querySelectorAll('tr.alert')).map(r => Array.from(r.cells).map(c => c.textContent))")
        .await
        .unwrap();
    let codes: Vec<&str> = rows.iter().map(|cells| cells[4].as_str()).collect();
    assert_eq!(codes.first(), Some(&"urgent-low"), "critical first: {rows:?}");
    assert!(codes.contains(&"low"), "{rows:?}");
    for cells in &rows {
        let sensor = if cells[4] == "low" { low } else { urgent };
        assert_eq!((cells[2].as_str(), cells[3].as_str()), ("ward-2", sensor), "{rows:?}");
    }
    let not_reloaded: bool = feed.eval("window.notReloaded === true").await.unwrap();
    assert!(not_reloaded, "the page was reloaded");

    // The fleet page has caught up: ward-2's alerts are counted.
    fleet
        .wait_for(
            "Array.from(document.querySelectorAll('tr.plugin')).some(r => r.dataset.device === 'ward-2' && r.cells[9] && Number(r.cells[9].textContent) >= 2)",
            WAIT,
        )
        .await
        .unwrap();
    let shot = screenshot_path("fleet.png");
    fleet.screenshot(&shot).await.unwrap();
    publish_screenshot(&shot);
    let shot = screenshot_path("alerts.png");
    feed.screenshot(&shot).await.unwrap();
    publish_screenshot(&shot);
    drop(edges);
}

/// The outputs of `edgewise replay` of glucose-monitor over the example
/// recording, one JSON object per line.
fn replayed_outputs() -> Vec<Value> {
    crate::support::replay_example(&plugin_wasm("glucose-monitor"), None).json_lines()
}

/// The upstream stream of the device `replay` (what `edgewise replay` names
/// as the device) in `cloud`, as a device with `[upstream]` would use it.
async fn replay_upstream(cloud: &CloudServer) -> async_nats::jetstream::Context {
    let client = async_nats::connect(cloud.url()).await.unwrap();
    let js = async_nats::jetstream::new(client);
    js.create_stream(async_nats::jetstream::stream::Config {
        name: "edgewise-replay-up".to_owned(),
        subjects: vec!["edgewise.replay.up.>".to_owned()],
        ..Default::default()
    })
    .await
    .unwrap();
    js
}

/// Store `outputs` (glucose-monitor's) where a device would have sent them.
async fn send_upstream(js: &async_nats::jetstream::Context, outputs: &[Value]) {
    for output in outputs {
        let kind = match output["type"].as_str().unwrap() {
            "alert" => "alerts",
            _ => "summaries",
        };
        js.publish(
            format!("edgewise.replay.up.{kind}.glucose-monitor"),
            output.to_string().into(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sensor_page_from_a_replayed_recording_shows_its_days_and_a_time_in_range_equal_to_the_daily_summaries() {
    let cloud = start_cloud();
    let js = replay_upstream(&cloud).await;
    let outputs = replayed_outputs();
    send_upstream(&js, &outputs).await;
    let sensor = "Subject 1";
    let daily: Vec<&Value> = outputs
        .iter()
        .filter(|o| {
            o["type"] == "summary"
                && o["sensor"] == sensor
                && o["window_end"].as_i64().unwrap() - o["window_start"].as_i64().unwrap() == 86_400_000
        })
        .collect();
    assert!(daily.len() > 5, "the recording covers days");

    let dashboard = Dashboard::start(&cloud.url(), &[]);
    let browser = Browser::start().await.unwrap();
    let page = browser
        .open(&dashboard.url("/sensors/replay/Subject%201"))
        .await
        .unwrap();
    // The dashboard may still be reading the stream: reload until it has all.
    let wanted = daily.len();
    let deadline = Instant::now() + WAIT;
    loop {
        let days: usize = page.count("#days tr.day").await.unwrap();
        if days == wanted {
            break;
        }
        assert!(Instant::now() < deadline, "{days} day rows, not {wanted}");
        page.goto(&dashboard.url("/sensors/replay/Subject%201")).await.unwrap();
    }
    let rows: Vec<(String, String, String)> = page
        .eval("Array.from(document.querySelectorAll('#days tr.day')).map(r => [r.dataset.day, r.dataset.tir, r.querySelector('td.tir').textContent.trim()])")
        .await
        .unwrap();
    for (row, summary) in rows.iter().zip(&daily) {
        let start = summary["window_start"].as_i64().unwrap();
        let day = time::OffsetDateTime::from_unix_timestamp(start / 1000)
            .unwrap()
            .date()
            .to_string();
        let tir = summary["metrics"]["tir_70_180"].as_f64().unwrap();
        assert_eq!(row.0, day, "{rows:?}");
        assert_eq!(row.1.parse::<f64>().unwrap(), tir, "day {day}: {rows:?}");
        assert_eq!(row.2.trim_end_matches('%'), format!("{tir:.1}"), "day {day}: {rows:?}");
    }
    assert_eq!(page.count("#tir-chart g.day").await.unwrap(), wanted);
    for chart in ["#glucose-chart", "#agp-chart"] {
        assert_eq!(page.count(chart).await.unwrap(), 1, "{chart}");
    }
    let shot = screenshot_path("sensor.png");
    page.screenshot(&shot).await.unwrap();
    publish_screenshot(&shot);
}

/// `GET path` from `addr` with `headers`: the status code and the body.
fn http_get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let code = reply.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = reply
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

/// An open `GET /alerts/events`: the live feed as server-sent events, read
/// line by line (the chunked framing's size lines are not `id:` or `data:`).
struct EventStream(BufReader<TcpStream>);

impl EventStream {
    /// Open it, saying `Last-Event-ID: last` if given, after `query`.
    fn open(addr: SocketAddr, query: &str, last: Option<&str>) -> EventStream {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(WAIT)).unwrap();
        let mut request =
            format!("GET /alerts/events{query} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n");
        if let Some(last) = last {
            request.push_str(&format!("Last-Event-ID: {last}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        EventStream(BufReader::new(stream))
    }

    /// The next event's id (`<epoch>-<number>`) and alert (within [`WAIT`]).
    fn next(&mut self) -> (String, Value) {
        let (mut id, mut data): (Option<String>, Option<Value>) = (None, None);
        let mut line = String::new();
        loop {
            line.clear();
            let read = self
                .0
                .read_line(&mut line)
                .unwrap_or_else(|e| panic!("no event within {WAIT:?}: {e}"));
            assert!(read > 0, "the event stream ended");
            if let Some(value) = line.trim_end().strip_prefix("id: ") {
                id = Some(value.to_owned());
            } else if let Some(value) = line.trim_end().strip_prefix("data: ") {
                data = Some(serde_json::from_str(value).unwrap());
            }
            if let (Some(id), Some(data)) = (&id, &data) {
                return (id.clone(), data.clone());
            }
        }
    }

    /// The next `count` events.
    fn take(&mut self, count: usize) -> Vec<(String, Value)> {
        (0..count).map(|_| self.next()).collect()
    }
}

/// A page that loses its connection reconnects with `Last-Event-ID` (the
/// browser does it by itself) and gets exactly the alerts it missed, then
/// the new ones; the first connection's `?after=` does the same. Across a
/// restart of the dashboard (ids of another start) it gets the whole feed.
#[tokio::test(flavor = "multi_thread")]
async fn a_reconnecting_feed_gets_exactly_the_alerts_it_missed() {
    let cloud = start_cloud();
    let js = replay_upstream(&cloud).await;
    let mut alerts: Vec<Value> = replayed_outputs()
        .into_iter()
        .filter(|o| o["type"] == "alert")
        .collect();
    assert!(alerts.len() > 7, "the recording raises alerts");
    // What a device sends is data, never markup: the row a pushed alert
    // carries (the page inserts it as it is) has it escaped.
    alerts[6]["message"] = "<img src=x onerror=alert(1)>".into();
    send_upstream(&js, &alerts[..6]).await;
    let dashboard = Dashboard::start(&cloud.url(), &[]);

    let first = EventStream::open(dashboard.addr, "", None).take(6);
    let epoch = first[0].0.split_once('-').unwrap().0.to_owned();
    let id = |n: u64| format!("{epoch}-{n}");
    let ids: Vec<String> = first.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(
        ids,
        (1..=6).map(id).collect::<Vec<_>>(),
        "arrival order, numbered from 1"
    );
    let times: Vec<&Value> = first.iter().map(|(_, alert)| &alert["ts"]).collect();
    let sent: Vec<&Value> = alerts[..6].iter().map(|alert| &alert["ts"]).collect();
    assert_eq!(times, sent);

    // Reconnected after the 4th: the 5th and 6th, then the next new one and nothing else.
    let mut resumed = EventStream::open(dashboard.addr, "", Some(&id(4)));
    assert_eq!(resumed.take(2), first[4..].to_vec());
    send_upstream(&js, &alerts[6..7]).await;
    let (seventh, alert) = resumed.next();
    assert_eq!((seventh, &alert["ts"]), (id(7), &alerts[6]["ts"]));
    let row = alert["row"].as_str().unwrap();
    assert!(
        row.starts_with(&format!("<tr class=\"alert\" data-id=\"{}\"", id(7))),
        "{row}"
    );
    assert!(
        row.contains("&lt;img src=x onerror=alert(1)&gt;") && !row.contains("<img"),
        "{row}"
    );

    // `?after=` on a first connection; `Last-Event-ID` wins over it.
    let after_5 = format!("?after={}", id(5));
    assert_eq!(EventStream::open(dashboard.addr, &after_5, None).next().0, id(6));
    let after_1 = format!("?after={}", id(1));
    assert_eq!(
        EventStream::open(dashboard.addr, &after_1, Some(&id(6))).next().0,
        id(7)
    );

    // Restarted, the dashboard numbers the alerts again: a page that had all
    // 7 is sent the whole feed, under ids no page of the first start has.
    drop(dashboard);
    let restarted = Dashboard::start(&cloud.url(), &[]);
    let again = EventStream::open(restarted.addr, "", Some(&id(7))).take(7);
    let times: Vec<&Value> = again.iter().map(|(_, alert)| &alert["ts"]).collect();
    let sent: Vec<&Value> = alerts[..7].iter().map(|alert| &alert["ts"]).collect();
    assert_eq!(times, sent);
    assert!(
        again.iter().all(|(new, _)| !new.starts_with(&format!("{epoch}-"))),
        "{again:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn beyond_localhost_the_dashboard_needs_its_credential_and_on_localhost_it_answers_only_loopback_names() {
    let cloud = start_cloud();
    let dir = tempfile::tempdir().unwrap();

    // A reachable address without a credential: refused at start (usage, 2).
    let refused = edgewise(["dashboard", "--cloud", &cloud.url(), "--listen", "0.0.0.0:0"]);
    assert_eq!(refused.code, Some(2), "{}", refused.stderr);
    assert!(refused.stderr.contains("credential"), "{}", refused.stderr);
    // A credential too short to be one: refused.
    let short = dir.path().join("short");
    std::fs::write(&short, "secret\n").unwrap();
    let run = edgewise([
        "dashboard",
        "--cloud",
        &cloud.url(),
        "--listen",
        "0.0.0.0:0",
        "--credential-file",
        short.to_str().unwrap(),
    ]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);

    // With a credential: nothing without it, everything with it.
    let secret = "correct-horse-battery-staple";
    let file = dir.path().join("credential");
    std::fs::write(&file, format!("{secret}\n")).unwrap();
    let guarded = Dashboard::start(&cloud.url(), &["--credential-file", file.to_str().unwrap()]);
    use base64::Engine;
    let basic = |user_password: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_password)
        )
    };
    for path in [
        "/",
        "/alerts",
        "/alerts/events",
        "/sensors/a/b",
        "/static/style.css",
        "/nothing",
    ] {
        let (code, body) = http_get(guarded.addr, path, &[("Host", "ward.example")]);
        assert_eq!(code, 401, "{path}: {body}");
        let (code, _) = http_get(
            guarded.addr,
            path,
            &[
                ("Host", "ward.example"),
                ("Authorization", &basic("nurse:wrong-horse-battery-staple")),
            ],
        );
        assert_eq!(code, 401, "{path}");
    }
    let (code, body) = http_get(
        guarded.addr,
        "/",
        &[
            ("Host", "ward.example"),
            ("Authorization", &basic(&format!("nurse:{secret}"))),
        ],
    );
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("Fleet"), "{body}");
    let (code, _) = http_get(guarded.addr, "/", &[("Authorization", &format!("Bearer {secret}"))]);
    assert_eq!(code, 200);

    // Without one, on loopback: only requests addressed to a loopback name
    // (a page elsewhere cannot read it through DNS rebinding).
    let open = Dashboard::start(&cloud.url(), &[]);
    let (code, body) = http_get(open.addr, "/", &[("Host", &open.addr.to_string())]);
    assert_eq!(code, 200, "{body}");
    for header in [format!("localhost:{}", open.addr.port()), "127.0.0.1".to_owned()] {
        assert_eq!(http_get(open.addr, "/", &[("Host", &header)]).0, 200, "{header}");
    }
    for header in ["evil.example", "localhost.evil.example:80"] {
        assert_eq!(http_get(open.addr, "/", &[("Host", header)]).0, 421, "{header}");
    }
    // No page loads anything from elsewhere: the policy says so.
    let reply = {
        let mut stream = TcpStream::connect(open.addr).unwrap();
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply.to_ascii_lowercase()
    };
    assert!(reply.contains("content-security-policy: default-src 'none'"), "{reply}");
    assert!(
        !reply.contains("http://") && !reply.contains("https://"),
        "an external resource: {reply}"
    );
}
