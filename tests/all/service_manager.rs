//! `edgewise run` under systemd (`Type=notify`, `WatchdogSec=`): what it
//! tells the notification socket systemd gives it (`NOTIFY_SOCKET`), here a
//! datagram socket of the test's own, as systemd reads it.

use edgewise_tests::nats::NatsServer;
use tokio::net::UnixDatagram;

use crate::device::{DEVICE, Device, WAIT};
use crate::hostile_plugins::V0_2;
use crate::support::{plugin, status_until};

/// What the host sent, one datagram a notification (`KEY=value` lines).
struct Notifications {
    socket: UnixDatagram,
    seen: Vec<String>,
}

impl Notifications {
    /// Read notifications until one satisfies `wanted`: it; panics after
    /// [`WAIT`] naming `what` and what came.
    async fn until(&mut self, what: &str, wanted: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut buffer = vec![0u8; 8192];
        loop {
            let received = tokio::time::timeout_at(deadline, self.socket.recv(&mut buffer)).await;
            let Ok(Ok(size)) = received else {
                panic!("no notification {what} within {WAIT:?}; came: {:#?}", self.seen);
            };
            let notification = String::from_utf8_lossy(&buffer[..size]).into_owned();
            self.seen.push(notification.clone());
            if wanted(&notification) {
                return notification;
            }
        }
    }
}

/// A datagram socket bound to `name` in the abstract namespace.
fn abstract_socket(name: &str) -> UnixDatagram {
    use std::os::linux::net::SocketAddrExt;
    let address = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = std::os::unix::net::UnixDatagram::bind_addr(&address).unwrap();
    socket.set_nonblocking(true).unwrap();
    UnixDatagram::from_std(socket).unwrap()
}

fn has_line(notification: &str, line: &str) -> bool {
    notification.lines().any(|l| l == line)
}

#[tokio::test(flavor = "multi_thread")]
async fn under_systemd_the_host_is_ready_once_it_serves_pings_the_watchdog_and_says_what_it_monitors() {
    let local = NatsServer::start();
    // Beside glucose-monitor, a plugin that never starts: quarantined.
    let mut device = Device::new(&local, None, &V0_2.plugin_table("init-err", "", ""));
    let socket_path = device.path("notify.sock");
    let mut notifications = Notifications {
        socket: UnixDatagram::bind(&socket_path).unwrap(),
        seen: Vec::new(),
    };
    let mut command = device.run_command();
    // A 2 s watchdog: pinged at least every half second.
    command
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "2000000");
    let client = async_nats::connect(local.url()).await.unwrap();
    device.spawn_command(command);

    // READY=1 once it serves: glucose-monitor subscribed, the status
    // answering at once (a request nobody is subscribed to yet fails at once
    // with "no responders", it does not wait).
    let ready = notifications.until("READY=1", |n| has_line(n, "READY=1")).await;
    assert!(
        ready.contains("STATUS=monitoring with glucose-monitor"),
        "the status line says what monitors: {ready}"
    );
    let asked = client.request(format!("edgewise.{DEVICE}.status"), "".into()).await;
    let status: serde_json::Value = serde_json::from_slice(&asked.expect("answered once READY=1").payload).unwrap();
    assert_eq!(plugin(&status, "glucose-monitor")["state"], "running", "{status}");

    // The plugin that cannot start is named, once quarantined.
    notifications
        .until("STATUS naming faulty-v02 quarantined", |n| {
            n.contains("STATUS=monitoring with glucose-monitor; faulty-v02 quarantined")
        })
        .await;

    // Pinged while it runs: three pings in a row.
    for n in 0..3 {
        notifications
            .until(&format!("WATCHDOG=1 ({n})"), |n| has_line(n, "WATCHDOG=1"))
            .await;
    }
    assert!(
        notifications.seen.iter().all(|n| !n.contains("STUCK")),
        "{:#?}",
        notifications.seen
    );

    // SIGTERM: the exit, after STOPPING=1 (the socket keeps what came).
    let (code, log) = device.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    notifications.until("STOPPING=1", |n| has_line(n, "STOPPING=1")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn under_systemd_a_host_with_no_plugin_running_says_it_monitors_nothing() {
    let local = NatsServer::start();
    let mut device = Device::with_plugins(&local, None, "100ms", &V0_2.plugin_table("init-err", "", ""));
    // A socket in the abstract namespace (`@name`), as some service
    // managers give.
    let name = format!("edgewise-test-{}-{}", std::process::id(), crate::device::now_ms());
    let mut notifications = Notifications {
        socket: abstract_socket(&name),
        seen: Vec::new(),
    };
    let mut command = device.run_command();
    command.env("NOTIFY_SOCKET", format!("@{name}"));
    let client = async_nats::connect(local.url()).await.unwrap();
    device.start_command(command, &client).await;
    notifications.until("READY=1", |n| has_line(n, "READY=1")).await;
    notifications
        .until("STATUS saying nothing is monitored", |n| {
            n.contains("STATUS=NOT MONITORING: no plugin runs; faulty-v02 quarantined")
        })
        .await;
    // No watchdog asked: no ping.
    assert!(
        notifications.seen.iter().all(|n| !has_line(n, "WATCHDOG=1")),
        "{:#?}",
        notifications.seen
    );
    assert_eq!(device.terminate().await.0, Some(0));
}

/// A notification socket that is gone, or that nobody reads (its queue of
/// datagrams full: a send would wait): said once in the log, and nothing
/// else changes: alerts flow, the exit is clean.
#[tokio::test(flavor = "multi_thread")]
async fn a_notification_socket_gone_or_unread_does_not_hold_the_host() {
    for unread in [false, true] {
        let local = NatsServer::start();
        let mut device = Device::new(&local, None, "");
        let socket_path = device.path("notify.sock");
        // Bound and never read: the kernel queues a few datagrams, then
        // refuses (or makes a blocking sender wait).
        let _unread = unread.then(|| std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap());
        let mut command = device.run_command();
        command
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "200000");
        let client = async_nats::connect(local.url()).await.unwrap();
        let mut alerts = crate::support::subscribe_alerts(&client, "glucose-monitor").await;
        device.start_command(command, &client).await;
        crate::support::poll_until("the failure to notify logged", WAIT, || {
            let log = device.log();
            async move {
                match log.contains("Cannot notify the service manager") {
                    true => Ok(()),
                    false => Err(log),
                }
            }
        })
        .await;
        client
            .publish("sensors.cgm.p1", crate::device::reading(crate::device::now_ms(), 45.0))
            .await
            .unwrap();
        let alert = crate::support::next_json(&mut alerts, "urgent-low").await;
        assert_eq!(alert["code"], "urgent-low", "{alert}");
        let (code, log) = device.terminate().await;
        assert_eq!(code, Some(0), "[unread: {unread}] {log}");
        let told = log.matches("Cannot notify the service manager").count();
        assert_eq!(told, 1, "[unread: {unread}] said once, not at every ping: {log}");
    }
}

/// Spawn `edgewise run` with a notification socket of the test's own (as
/// systemd gives one), not waiting for it: a client of `local`, and what
/// the host sends to the socket.
async fn run_under_systemd(device: &mut Device, local: &NatsServer) -> (async_nats::Client, Notifications) {
    let socket_path = device.path("notify.sock");
    let notifications = Notifications {
        socket: UnixDatagram::bind(&socket_path).unwrap(),
        seen: Vec::new(),
    };
    let mut command = device.run_command();
    command.env("NOTIFY_SOCKET", &socket_path);
    let client = async_nats::connect(local.url()).await.unwrap();
    device.spawn_command(command);
    (client, notifications)
}

/// A plugin is `starting` while its `init` runs, never `running` before
/// one has succeeded; `READY=1` waits for the plugins' first `init` to end,
/// so what it says monitors does.
#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_is_starting_while_its_init_runs_and_ready_waits_for_the_first_init() {
    let local = NatsServer::start();
    // Beside glucose-monitor, a plugin whose every `init` loops to its
    // 300 ms deadline: starting, restarting, starting... quarantined.
    let faulty = V0_2.plugin_table("init-loop", "", "call_deadline_ms = 300\n");
    let mut device = Device::new(&local, None, &faulty);
    let (client, mut notifications) = run_under_systemd(&mut device, &local).await;

    // Every state the status shows it in, until it is quarantined (each
    // `init` is `starting` for 300 ms, and there are five).
    device.wait_answering(&client, WAIT).await;
    let seen = std::sync::Mutex::new(std::collections::BTreeSet::new());
    status_until(&client, "faulty-v02 quarantined", |status| {
        let state = plugin(status, V0_2.name)["state"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let quarantined = state == "quarantined";
        seen.lock().unwrap().insert(state);
        quarantined
    })
    .await;
    let states = seen.into_inner().unwrap();
    assert!(states.contains("starting"), "shown while its init runs: {states:?}");
    assert!(states.contains("restarting"), "{states:?}");
    assert!(!states.contains("running"), "its init never ended well: {states:?}");

    // READY=1 came once its first `init` had ended (a deadline, then its
    // backoff or its quarantine), not while it ran.
    let ready = notifications.until("READY=1", |n| has_line(n, "READY=1")).await;
    let status_line = ready
        .lines()
        .find(|line| line.starts_with("STATUS="))
        .unwrap_or_default();
    assert!(
        status_line == "STATUS=monitoring with glucose-monitor; faulty-v02 restarting"
            || status_line == "STATUS=monitoring with glucose-monitor; faulty-v02 quarantined",
        "{ready}"
    );
    assert_eq!(device.terminate().await.0, Some(0));
}

/// SIGTERM while `READY=1` waits for a plugin's first `init` (here one that
/// would run 30 s): the host stops then, without saying it is ready. It
/// used to wait out the 15 s, send `READY=1`, and only then stop.
#[tokio::test(flavor = "multi_thread")]
async fn a_sigterm_while_ready_waits_for_the_first_init_stops_the_host_without_ready() {
    let local = NatsServer::start();
    let faulty = V0_2.plugin_table("init-loop", "", "call_deadline_ms = 30000\n");
    let config = format!("{faulty}\n[host_limits]\ncall_deadline_ms = 30000\n");
    let mut device = Device::new(&local, None, &config);
    let (client, mut notifications) = run_under_systemd(&mut device, &local).await;
    device.wait_answering(&client, WAIT).await;
    status_until(&client, "faulty-v02 starting", |status| {
        plugin(status, V0_2.name)["state"] == "starting"
    })
    .await;

    let (code, log) = device.terminate().await;
    assert_eq!(code, Some(0), "{log}");
    notifications.until("STOPPING=1", |n| has_line(n, "STOPPING=1")).await;
    assert!(
        notifications.seen.iter().all(|n| !has_line(n, "READY=1")),
        "stopped before it was ready: {:#?}",
        notifications.seen
    );
}
