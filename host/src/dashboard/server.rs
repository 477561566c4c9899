//! The dashboard's HTTP side: routes, access, and the server-sent events of
//! the live alert feed.
//!
//! Access: the pages show patient data. Without a credential the server
//! binds to a loopback address only and answers only requests addressed to
//! a loopback name (a web page elsewhere cannot reach it through DNS
//! rebinding); with one, every request must carry it (HTTP Basic, any user
//! name, the credential as password; or `Authorization: Bearer`).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path as UrlPath, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use futures::Stream;
use maud::{Markup, html};
use serde::{Deserialize, Serialize};
use tokio::sync::{broadcast, watch};

use super::alerts_page::{alert_row, alerts_page};
use super::clinical::sensor_page;
use super::fleet_page::{fleet_page, fleet_table};
use super::html::{Nav, STYLE, page};
use super::state::{FeedAlert, Fleet};
use crate::outbox::wall_ms;

/// Shortest credential accepted, in bytes.
pub const MIN_CREDENTIAL_BYTES: usize = 16;

/// Why the dashboard cannot start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// A non-loopback address without a credential.
    #[error(
        "{0} is reachable from other machines and the dashboard shows patient data: give a credential (`--credential-file`) or listen on a loopback address"
    )]
    NeedsCredential(SocketAddr),
    /// The credential file is unusable.
    #[error("credential file {path}: {reason}")]
    Credential {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The address cannot be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the dashboard server failed")]
    Serve(#[source] std::io::Error),
}

/// A secret every request must carry.
#[derive(Clone)]
pub struct Credential(Vec<u8>);

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credential(…)")
    }
}

impl Credential {
    /// The credential in `path`: its first line, at least
    /// [`MIN_CREDENTIAL_BYTES`] long.
    pub fn read(path: &Path) -> Result<Credential, DashboardError> {
        let problem = |reason: String| DashboardError::Credential {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| problem(e.to_string()))?;
        let secret = text.lines().next().unwrap_or_default().trim();
        if secret.len() < MIN_CREDENTIAL_BYTES {
            return Err(problem(format!(
                "the credential (its first line) must be at least {MIN_CREDENTIAL_BYTES} bytes"
            )));
        }
        Ok(Credential(secret.as_bytes().to_vec()))
    }

    /// Whether `headers` carry this credential.
    fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(given) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let secret = if let Some(token) = given.strip_prefix("Bearer ") {
            token.trim().as_bytes().to_vec()
        } else if let Some(basic) = given.strip_prefix("Basic ") {
            let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(basic.trim()) else {
                return false;
            };
            match decoded.iter().position(|&b| b == b':') {
                Some(colon) => decoded[colon + 1..].to_vec(),
                None => return false,
            }
        } else {
            return false;
        };
        // Compare digests: the time taken says nothing about the secret.
        let digest = |bytes: &[u8]| ring::digest::digest(&ring::digest::SHA256, bytes);
        digest(&secret).as_ref() == digest(&self.0).as_ref()
    }
}

/// Where and how the dashboard listens.
#[derive(Debug, Clone)]
pub struct DashboardConfig {
    /// The address.
    pub listen: SocketAddr,
    /// The credential every request must carry; required unless `listen` is
    /// a loopback address.
    pub credential: Option<Credential>,
    /// The plugins whose summaries are a sensor's glucose, the first listed
    /// shown where two sent the same window (`--glucose-plugin`): another
    /// plugin's summaries of the sensor (band's hourly mean of the same
    /// readings, or anything a plugin sends) are never charted as glucose.
    pub glucose_plugins: Vec<String>,
}

/// What the handlers share.
#[derive(Clone)]
struct App {
    fleet: Arc<Mutex<Fleet>>,
    alerts: broadcast::Sender<FeedAlert>,
    credential: Option<Arc<Credential>>,
    glucose_plugins: Arc<[String]>,
    stop: watch::Receiver<bool>,
}

/// A bound, not yet serving, dashboard.
pub struct DashboardServer {
    listener: tokio::net::TcpListener,
    credential: Option<Credential>,
    glucose_plugins: Vec<String>,
}

impl DashboardServer {
    /// Check `config` and bind its address.
    pub async fn bind(config: DashboardConfig) -> Result<DashboardServer, DashboardError> {
        if config.credential.is_none() && !config.listen.ip().is_loopback() {
            return Err(DashboardError::NeedsCredential(config.listen));
        }
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| DashboardError::Bind {
                addr: config.listen,
                source,
            })?;
        Ok(DashboardServer {
            listener,
            credential: config.credential,
            glucose_plugins: config.glucose_plugins,
        })
    }

    /// The address bound (the port, when 0 was asked for).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve `fleet` until `stop` turns true.
    pub async fn serve(
        self,
        fleet: Arc<Mutex<Fleet>>,
        alerts: broadcast::Sender<FeedAlert>,
        stop: watch::Receiver<bool>,
    ) -> Result<(), DashboardError> {
        let app = App {
            fleet,
            alerts,
            credential: self.credential.map(Arc::new),
            glucose_plugins: self.glucose_plugins.into(),
            stop: stop.clone(),
        };
        let router = Router::new()
            .route("/", get(fleet_handler))
            .route("/fleet/table", get(fleet_table_handler))
            .route("/alerts", get(alerts_handler))
            .route("/alerts/events", get(events_handler))
            .route("/sensors/{device}/{sensor}", get(sensor_handler))
            .route("/static/style.css", get(style_handler))
            .route("/static/dashboard.js", get(script_handler))
            .fallback(not_found)
            .layer(middleware::from_fn_with_state(app.clone(), access))
            .with_state(app);
        let mut stop = stop;
        axum::serve(self.listener, router)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|stop| *stop).await;
            })
            .await
            .map_err(DashboardError::Serve)
    }
}

/// Whether `host` (a `Host` header) names this machine's loopback.
fn loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        // `[::1]:8080`, `localhost:8080`, `127.0.0.1:8080`; a bare `[::1]`.
        Some((name, port)) if !port.contains(']') => name,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Access and the headers every answer carries.
async fn access(State(app): State<App>, request: Request, next: Next) -> Response {
    match &app.credential {
        Some(credential) if !credential.admits(request.headers()) => {
            return (
                StatusCode::UNAUTHORIZED,
                [(
                    header::WWW_AUTHENTICATE,
                    "Basic realm=\"edgewise dashboard\", charset=\"UTF-8\"",
                )],
                "this dashboard needs its credential\n",
            )
                .into_response();
        }
        Some(_) => {}
        None => {
            let host = request.headers().get(header::HOST).and_then(|h| h.to_str().ok());
            if !host.is_some_and(loopback_host) {
                return (
                    StatusCode::MISDIRECTED_REQUEST,
                    "this dashboard answers on localhost only\n",
                )
                    .into_response();
            }
        }
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
        ),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        // Patient data: kept in no cache.
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// Run `f` on the fleet, or answer 500 if its lock is poisoned.
fn with_fleet(app: &App, f: impl FnOnce(&Fleet) -> Markup) -> Response {
    match app.fleet.lock() {
        Ok(fleet) => f(&fleet).into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the dashboard's state is poisoned\n").into_response(),
    }
}

async fn fleet_handler(State(app): State<App>) -> Response {
    with_fleet(&app, |fleet| fleet_page(fleet, wall_ms()))
}

async fn fleet_table_handler(State(app): State<App>) -> Response {
    with_fleet(&app, |fleet| fleet_table(fleet, wall_ms()))
}

async fn alerts_handler(State(app): State<App>) -> Response {
    with_fleet(&app, alerts_page)
}

/// `?day=YYYY-MM-DD` of a sensor page.
#[derive(Debug, Deserialize)]
struct DayQuery {
    day: Option<String>,
}

async fn sensor_handler(
    State(app): State<App>,
    UrlPath((device, sensor)): UrlPath<(String, String)>,
    Query(query): Query<DayQuery>,
) -> Response {
    let found = match app.fleet.lock() {
        Ok(fleet) => fleet
            .sensor(&device, &sensor)
            .map(|record| sensor_page(record, query.day.as_deref(), &app.glucose_plugins)),
        Err(_) => return (StatusCode::INTERNAL_SERVER_ERROR, "the dashboard's state is poisoned\n").into_response(),
    };
    match found {
        Some(page) => page.into_response(),
        None => (
            StatusCode::NOT_FOUND,
            page(
                "Not found",
                Nav::Sensor,
                html! { h1 { "No data" } p { "Nothing has arrived for sensor " strong { (sensor) } " of device " strong { (device) } "." } },
            ),
        )
            .into_response(),
    }
}

async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        page(
            "Not found",
            Nav::Fleet,
            html! { h1 { "Not found" } p { a href="/" { "The fleet" } } },
        ),
    )
        .into_response()
}

async fn style_handler() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE).into_response()
}

async fn script_handler() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("static/dashboard.js"),
    )
        .into_response()
}

/// `?after=ID`: the last alert the page has (its first connection; a
/// reconnection says so with `Last-Event-ID`), an [`AlertId`](super::state::AlertId).
#[derive(Debug, Deserialize)]
struct AfterQuery {
    after: Option<String>,
}

/// What one event of the live feed carries: the alert, and its row as the
/// page renders it (escaped by maud; `dashboard.js` inserts it as it is).
#[derive(Serialize)]
struct PushedAlert<'a> {
    #[serde(flatten)]
    alert: &'a FeedAlert,
    row: String,
}

/// The live feed: every alert after the page's last (all of them when its
/// last is of another start of the dashboard), then each new one.
async fn events_handler(
    State(app): State<App>,
    headers: HeaderMap,
    Query(query): Query<AfterQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let last = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or(query.after);
    // Subscribe before reading the backlog: an alert arriving in between
    // is in one or the other (or both: ids drop the repeat).
    let receiver = app.alerts.subscribe();
    let (after, backlog): (u64, VecDeque<FeedAlert>) = app
        .fleet
        .lock()
        .map(|fleet| {
            let after = fleet.resume_after(last.as_deref());
            (
                after,
                fleet.feed().filter(|alert| alert.id.seq > after).cloned().collect(),
            )
        })
        .unwrap_or_default();
    let events = futures::stream::unfold(
        (receiver, backlog, after, app.stop.clone()),
        |(mut receiver, mut backlog, mut last, mut stop)| async move {
            loop {
                let alert = match backlog.pop_front() {
                    Some(alert) => alert,
                    None => tokio::select! {
                        received = receiver.recv() => match received {
                            Ok(alert) => alert,
                            // Too slow to keep up, or the feed ended: end the
                            // stream; the browser reconnects with its
                            // `Last-Event-ID` and gets what it missed.
                            Err(_) => return None,
                        },
                        _ = stop.wait_for(|stop| *stop) => return None,
                    },
                };
                if alert.id.seq <= last {
                    continue;
                }
                last = alert.id.seq;
                let event = PushedAlert {
                    row: alert_row(&alert).into_string(),
                    alert: &alert,
                };
                let data = serde_json::to_string(&event).unwrap_or_default();
                let event = Event::default().event("alert").id(alert.id.to_string()).data(data);
                return Some((Ok(event), (receiver, backlog, last, stop)));
            }
        },
    );
    Sse::new(events).keep_alive(KeepAlive::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_names_are_loopback_hosts() {
        for host in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:9",
            "127.3.4.5",
            "[::1]:80",
            "[::1]",
            "LOCALHOST:1",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8080",
            "10.0.0.1:80",
            "localhost.evil.example",
            "[::2]:80",
            "",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }

    #[test]
    fn a_credential_is_taken_as_basic_password_or_bearer_token_only() {
        let credential = Credential(b"0123456789abcdef".to_vec());
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            credential.admits(&headers)
        };
        let basic = |text: &str| format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(text));
        assert!(with("Bearer 0123456789abcdef"));
        assert!(with(&basic("nurse:0123456789abcdef")));
        assert!(with(&basic(":0123456789abcdef")));
        assert!(!with("Bearer 0123456789abcdeF"));
        assert!(!with(&basic("0123456789abcdef")));
        assert!(!with(&basic("nurse:0123456789abcde")));
        assert!(!with("0123456789abcdef"));
        assert!(!with("Basic !!!"));
        assert!(!credential.admits(&HeaderMap::new()));
    }
}
