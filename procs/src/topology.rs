//! The NATS topology of a fleet: the cloud's `nats-server` with JetStream in
//! domain `cloud` and a leafnode listener, and per device a local
//! `nats-server` with its own JetStream (domain = the device id) that is a
//! **leaf node** of the cloud: the device dials out, the cloud needs no route
//! to it. A device's clients reach the cloud's buckets through their local
//! server in JetStream domain [`CLOUD_DOMAIN`].
//!
//! A device's leaf link runs through a [`LeafLink`]: a TCP relay on
//! `127.0.0.1` standing for the device's network. Cutting it
//! ([`EdgeServer::unlink`]) closes the link's connections and refuses new
//! ones, while both servers keep running: the device's plugins keep their
//! local bus and JetStream, the cloud keeps serving operators; the device's
//! server keeps redialling (every second, nats-server's default) and gets
//! through once the link is restored ([`EdgeServer::relink`]). This is what
//! "the device is offline" means, and more reliable than restarting either
//! server (the cloud must stay up for operators to push meanwhile; a
//! restarted device server would also drop its local clients). Restarting a
//! device's server is there too ([`EdgeServer::stop`],
//! [`EdgeServer::start_again`]), on the same ports and store.
//!
//! Waiting for a link is on conditions, not time: the cloud's monitor lists
//! the device's leaf (`/leafz`), and a request to the cloud's JetStream API
//! sent to the device's server gets an answer.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::nats::NatsServer;

/// The cloud's JetStream domain.
pub const CLOUD_DOMAIN: &str = "cloud";

/// How long a link may take to come up or go down.
const LINK_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one look (an HTTP or NATS request) may take.
const LOOK_TIMEOUT: Duration = Duration::from_secs(2);
/// Between two looks at a link that is not there yet: nats-server offers
/// nothing to wait on, and the device redials once a second.
const POLL: Duration = Duration::from_millis(50);

/// The cloud's `nats-server`: JetStream in domain [`CLOUD_DOMAIN`] (in a
/// temporary store), a leafnode listener and an HTTP monitor, each on a port
/// of its own.
#[derive(Debug)]
pub struct CloudServer {
    server: NatsServer,
}

impl CloudServer {
    /// Start it (`binary`: see [`crate::nats_binary`]) and wait until it is ready.
    pub fn start(binary: &Path) -> anyhow::Result<CloudServer> {
        CloudServer::start_with(binary, "")
    }

    /// As [`CloudServer::start`], with `extra` configuration (e.g. an
    /// `authorization` block: who may do what, leaf nodes included).
    pub fn start_with(binary: &Path, extra: &str) -> anyhow::Result<CloudServer> {
        let server = NatsServer::options(binary)
            .name("cloud")
            .jetstream()?
            .config(&format!(
                "server_name: {CLOUD_DOMAIN}\njetstream {{ domain: {CLOUD_DOMAIN} }}\n{extra}"
            ))
            .leafnode_listener()
            .monitor()
            .start()?;
        Ok(CloudServer { server })
    }

    /// `nats://127.0.0.1:PORT`, for operators.
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The port leaf nodes dial.
    pub fn leaf_port(&self) -> u16 {
        self.server.leaf_port().unwrap_or_default()
    }

    /// The server, e.g. for its log.
    pub fn server(&self) -> &NatsServer {
        &self.server
    }

    /// The server, to stop, kill or start again (on the same ports and store).
    pub fn server_mut(&mut self) -> &mut NatsServer {
        &mut self.server
    }

    /// The names of the leaf nodes connected now (`/leafz`).
    pub fn leaf_names(&self) -> anyhow::Result<Vec<String>> {
        leaf_names(self.server.monitor_port().unwrap_or_default())
    }
}

/// What a device's leaf connection never carries, either way: its sensor
/// subjects. Every device's server is a leaf of the same cloud account, so
/// without this a reading published on one device's bus would reach every
/// other device subscribed to `sensors.>` through the cloud (one patient's
/// glucose alerting on another ward's device). Found by the dashboard test.
pub const LEAF_DENY: &str = "deny_imports: [\"sensors.>\"], deny_exports: [\"sensors.>\"]";

/// A device's local `nats-server`: JetStream in the device's own domain
/// (its id) and store, and a leaf node of a [`CloudServer`] through a
/// [`LeafLink`]. Starting it waits until it is ready, not until it is linked
/// ([`wait_linked`](Self::wait_linked)).
#[derive(Debug)]
pub struct EdgeServer {
    device: String,
    server: NatsServer,
    link: LeafLink,
    /// The cloud's monitor port, to see the link from the cloud's side.
    cloud_monitor: u16,
}

impl EdgeServer {
    /// Start the local server of `device` (a device id, which is also its
    /// JetStream domain and server name), a leaf node of `cloud`.
    pub fn start(binary: &Path, cloud: &CloudServer, device: &str) -> anyhow::Result<EdgeServer> {
        EdgeServer::start_as(binary, cloud, device, None)
    }

    /// As [`EdgeServer::start`], its leaf connection logged in to the cloud
    /// as `login` (user, password): what the cloud lets it do.
    pub fn start_as(
        binary: &Path,
        cloud: &CloudServer,
        device: &str,
        login: Option<(&str, &str)>,
    ) -> anyhow::Result<EdgeServer> {
        EdgeServer::start_configured(binary, cloud, device, login, "")
    }

    /// As [`EdgeServer::start_as`], with `local` added to the server's
    /// configuration (its own `authorization`, say: the users of the
    /// device's bus and what each may do).
    pub fn start_configured(
        binary: &Path,
        cloud: &CloudServer,
        device: &str,
        login: Option<(&str, &str)>,
        local: &str,
    ) -> anyhow::Result<EdgeServer> {
        if device.is_empty()
            || !device
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            bail!("`{device}` is not a device id (letters, digits, `-`, `_`)");
        }
        if device == CLOUD_DOMAIN {
            bail!("a device cannot be called `{CLOUD_DOMAIN}`: that is the cloud's JetStream domain");
        }
        let link = LeafLink::start(device, cloud.leaf_port())?;
        let server = NatsServer::options(binary)
            .name(device)
            .jetstream()?
            .config(&format!(
                "server_name: {device}\njetstream {{ domain: {device} }}\nleafnodes {{ remotes: [ {{ url: \"nats-leaf://{}127.0.0.1:{}\", {LEAF_DENY} }} ] }}\n{local}",
                login.map(|(user, password)| format!("{user}:{password}@")).unwrap_or_default(),
                link.port()
            ))
            .monitor()
            .start()?;
        Ok(EdgeServer {
            device: device.to_owned(),
            server,
            link,
            cloud_monitor: cloud.server.monitor_port().unwrap_or_default(),
        })
    }

    /// `nats://127.0.0.1:PORT`, for the device's own clients (`edgewise run`).
    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The device id, which is also its JetStream domain.
    pub fn device(&self) -> &str {
        &self.device
    }

    /// Its link to the cloud.
    pub fn link(&self) -> &LeafLink {
        &self.link
    }

    /// The server, e.g. for its log or store directory.
    pub fn server(&self) -> &NatsServer {
        &self.server
    }

    /// Whether the cloud's monitor lists this device's leaf now.
    pub fn cloud_sees_leaf(&self) -> anyhow::Result<bool> {
        Ok(leaf_names(self.cloud_monitor)?.contains(&self.device))
    }

    /// Whether a request to the cloud's JetStream API (`$JS.cloud.API.INFO`),
    /// sent to this device's server, gets an answer now.
    pub fn cloud_answers(&self) -> anyhow::Result<bool> {
        js_api_answers(self.server.port(), CLOUD_DOMAIN)
    }

    /// Wait until the device is linked: the cloud lists its leaf and the
    /// cloud's JetStream answers through it (at most 20 s).
    pub fn wait_linked(&self) -> anyhow::Result<()> {
        wait_for(&format!("the leaf link of {} to come up", self.device), || {
            Ok(self.server.is_running() && self.cloud_sees_leaf()? && self.cloud_answers()?)
        })
    }

    /// Cut the link: close its connections, refuse new ones, and wait until
    /// the cloud no longer lists the device's leaf. Both servers keep running.
    pub fn unlink(&self) -> anyhow::Result<()> {
        self.link.cut();
        wait_for(&format!("the cloud to see {} gone", self.device), || {
            Ok(!self.cloud_sees_leaf()?)
        })
    }

    /// Restore the link; the device's server redials within a second or so
    /// ([`wait_linked`](Self::wait_linked) waits for it).
    pub fn relink(&self) {
        self.link.restore();
    }

    /// Stop the device's server (SIGTERM), keeping its store and ports.
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.server.stop()
    }

    /// Start the stopped server again on its ports, with its store; it
    /// dials the cloud again (through the link, if that is up).
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.server.start_again()
    }
}

/// Call `done` until it says yes (an error counts as no; the last one is
/// reported) or [`LINK_TIMEOUT`] passed.
fn wait_for(what: &str, mut done: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
    let deadline = Instant::now() + LINK_TIMEOUT;
    let mut last = None;
    loop {
        match done() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(error) => last = Some(error),
        }
        if Instant::now() >= deadline {
            let last = last.map_or_else(String::new, |e| format!(" (last error: {e:#})"));
            bail!("waited {LINK_TIMEOUT:?} for {what}{last}");
        }
        std::thread::sleep(POLL);
    }
}

/// The names of the leaf nodes connected to the server whose HTTP monitor
/// is on `monitor_port` (its `/leafz`).
fn leaf_names(monitor_port: u16) -> anyhow::Result<Vec<String>> {
    let leafz = http_get_json(monitor_port, "/leafz")?;
    let names = leafz
        .get("leafs")
        .and_then(serde_json::Value::as_array)
        .map(|leafs| {
            leafs
                .iter()
                .filter_map(|leaf| leaf.get("name")?.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(names)
}

/// `GET path` of the HTTP monitor on `127.0.0.1:port`, as JSON.
fn http_get_json(port: u16, path: &str) -> anyhow::Result<serde_json::Value> {
    let mut stream = connect(port)?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .with_context(|| format!("no answer to GET {path} on port {port}"))?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("GET {path} on port {port}: no HTTP response"))?;
    if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
        bail!("GET {path} on port {port}: {}", head.lines().next().unwrap_or_default());
    }
    serde_json::from_str(body).with_context(|| format!("GET {path} on port {port}: not JSON"))
}

fn connect(port: u16) -> anyhow::Result<TcpStream> {
    let stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), LOOK_TIMEOUT)
        .with_context(|| format!("cannot connect to 127.0.0.1:{port}"))?;
    stream.set_read_timeout(Some(LOOK_TIMEOUT))?;
    stream.set_write_timeout(Some(LOOK_TIMEOUT))?;
    Ok(stream)
}

/// Whether `$JS.<domain>.API.INFO`, sent to the NATS server on `port`, gets
/// a JetStream answer: a few lines of the NATS protocol, so that this works
/// from any thread, in or out of an async runtime. "No responders" (the
/// domain unreachable) is a no.
fn js_api_answers(port: u16, domain: &str) -> anyhow::Result<bool> {
    let stream = connect(port)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut writer = stream;
    let mut line = String::new();
    reader.read_line(&mut line)?; // INFO
    write!(
        writer,
        "CONNECT {{\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true}}\r\n\
         SUB _INBOX.edgewise-link 1\r\nPUB $JS.{domain}.API.INFO _INBOX.edgewise-link 0\r\n\r\n"
    )?;
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            bail!("the server on port {port} closed the connection");
        }
        if line.starts_with("PING") {
            writer.write_all(b"PONG\r\n")?;
        } else if line.starts_with("-ERR") {
            bail!("the server on port {port} says {}", line.trim());
        } else if line.starts_with("HMSG") {
            // Only a status (503 no responders) comes with headers here.
            return Ok(false);
        } else if line.starts_with("MSG") {
            return Ok(true);
        }
    }
}

/// A device's network between its leaf node and the cloud's leafnode port: a
/// TCP relay on an ephemeral port of `127.0.0.1` that can be cut (its
/// connections closed, new ones refused) and restored. The listening port
/// stays the same throughout, so the device's configuration never changes.
#[derive(Debug)]
pub struct LeafLink {
    port: u16,
    state: Arc<LinkState>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct LinkState {
    /// Up or cut, and the relayed connections (both ends) while up.
    links: Mutex<(bool, Vec<TcpStream>)>,
    /// Set on drop: the accept loop ends.
    closing: AtomicBool,
    /// Connections refused while cut.
    refused: AtomicU64,
    target: SocketAddr,
}

impl LeafLink {
    /// Relay to `127.0.0.1:target_port`, up; `name` names its threads.
    pub fn start(name: &str, target_port: u16) -> anyhow::Result<LeafLink> {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind a port for a leaf link")?;
        let port = listener.local_addr()?.port();
        let state = Arc::new(LinkState {
            links: Mutex::new((true, Vec::new())),
            closing: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            target: SocketAddr::from(([127, 0, 0, 1], target_port)),
        });
        let accept_state = Arc::clone(&state);
        let accept = std::thread::Builder::new()
            .name(format!("{name}-link"))
            .spawn(move || accept_loop(&listener, &accept_state))
            .context("cannot start a thread")?;
        Ok(LeafLink {
            port,
            state,
            accept: Some(accept),
        })
    }

    /// The port the device dials.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Close every relayed connection and refuse new ones.
    pub fn cut(&self) {
        let mut links = self.state.links.lock().unwrap_or_else(PoisonError::into_inner);
        links.0 = false;
        for stream in links.1.drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }

    /// Relay new connections again.
    pub fn restore(&self) {
        self.state.links.lock().unwrap_or_else(PoisonError::into_inner).0 = true;
    }

    /// How many connections it refused while cut (the device redialling).
    pub fn refused(&self) -> u64 {
        self.state.refused.load(Ordering::SeqCst)
    }

    /// Whether it relays (not cut).
    pub fn is_up(&self) -> bool {
        self.state.links.lock().unwrap_or_else(PoisonError::into_inner).0
    }
}

impl Drop for LeafLink {
    fn drop(&mut self) {
        self.state.closing.store(true, Ordering::SeqCst);
        self.cut();
        // Wake the accept loop so that it sees `closing`.
        let _ = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], self.port)), LOOK_TIMEOUT);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, state: &LinkState) {
    for incoming in listener.incoming() {
        if state.closing.load(Ordering::SeqCst) {
            return;
        }
        let Ok(device_side) = incoming else { continue };
        // Under the lock, so that a cut either sees this pair or refuses it.
        let mut links = state.links.lock().unwrap_or_else(PoisonError::into_inner);
        if !links.0 {
            state.refused.fetch_add(1, Ordering::SeqCst);
            let _ = device_side.shutdown(Shutdown::Both);
            continue;
        }
        let Ok(cloud_side) = TcpStream::connect_timeout(&state.target, LOOK_TIMEOUT) else {
            let _ = device_side.shutdown(Shutdown::Both);
            continue;
        };
        let clones = (device_side.try_clone(), cloud_side.try_clone());
        let (Ok(device_copy), Ok(cloud_copy)) = clones else {
            continue;
        };
        links.1.push(device_copy);
        links.1.push(cloud_copy);
        drop(links);
        relay(device_side, cloud_side);
    }
}

/// Copy bytes both ways between `a` and `b` until either side closes (or
/// the link is cut, which shuts both down).
fn relay(a: TcpStream, b: TcpStream) {
    let pairs = match (a.try_clone(), b.try_clone()) {
        (Ok(a2), Ok(b2)) => [(a, b2), (b, a2)],
        _ => return,
    };
    for (mut from, mut to) in pairs {
        // A thread per direction; each ends when its side closes.
        let _ = std::thread::Builder::new()
            .name("leaf-relay".to_owned())
            .spawn(move || {
                let _ = std::io::copy(&mut from, &mut to);
                let _ = from.shutdown(Shutdown::Both);
                let _ = to.shutdown(Shutdown::Both);
            });
    }
}
