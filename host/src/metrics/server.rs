//! The HTTP side of the endpoint (plain hyper, HTTP/1): `GET /metrics`
//! answered with a scrape rendered off the async threads, everything else
//! refused. Bounded for a hostile client: a few connections at once (more
//! are closed at once), one request per connection, small headers, a
//! deadline on each connection; a request body is never read.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::{MetricsConfig, Scrape};

/// Connections served at once; more are closed as they come (Prometheus
/// scrapes a target with one connection at a time).
pub const MAX_CONNECTIONS: usize = 4;
/// The longest a connection is kept, request and answer included.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(10);
/// The longest a client takes to send its request's headers.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read (hyper's smallest buffer).
const MAX_REQUEST_HEAD: usize = 8192;

/// What gathers a scrape (it may read the disk: run off the async threads).
pub type Gather = Arc<dyn Fn() -> Scrape + Send + Sync>;

/// Why the endpoint could not be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address could not be bound (in use, not local, no permission).
    #[error("cannot listen on {listen} for [metrics]: {source}")]
    Bind {
        /// The address.
        listen: std::net::SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Accepting connections failed for good.
    #[error("the metrics endpoint stopped accepting connections: {0}")]
    Accept(#[source] std::io::Error),
}

/// The endpoint, bound (so a start fails at once on an address in use).
#[derive(Debug)]
pub struct MetricsServer {
    listener: TcpListener,
}

impl MetricsServer {
    /// Bind `config.listen`.
    pub async fn bind(config: &MetricsConfig) -> Result<MetricsServer, MetricsError> {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| MetricsError::Bind {
                listen: config.listen,
                source,
            })?;
        Ok(MetricsServer { listener })
    }

    /// The address bound (the port chosen, for port 0).
    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Serve scrapes of `gather` until `stop`; connections still open then
    /// are dropped with the task.
    pub async fn serve(self, gather: Gather, mut stop: watch::Receiver<bool>) -> Result<(), MetricsError> {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut connections = JoinSet::new();
        let mut http = hyper::server::conn::http1::Builder::new();
        http.keep_alive(false)
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(MAX_REQUEST_HEAD);
        loop {
            let accepted = tokio::select! {
                _ = stop.changed() => return Ok(()),
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                accepted = self.listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                // A connection reset before it was accepted, or out of file
                // descriptors for a moment: the next accept may succeed.
                Err(error) if transient(&error) => {
                    tracing::warn!(%error, "The metrics endpoint could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                Err(error) => return Err(MetricsError::Accept(error)),
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                drop(stream); // Too many at once: closed unanswered.
                continue;
            };
            let gather = gather.clone();
            let connection = http.serve_connection(
                TokioIo::new(stream),
                hyper::service::service_fn(move |request| answer(request, gather.clone())),
            );
            connections.spawn(async move {
                let _ = tokio::time::timeout(CONNECTION_DEADLINE, connection).await;
                drop(slot);
            });
        }
    }
}

/// An accept error after which the listener still works.
fn transient(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock | TimedOut
    ) || error.raw_os_error().is_some_and(|code| code == 23 || code == 24) // ENFILE, EMFILE
}

/// The answer to one request (its body, if any, is never read).
async fn answer(request: Request<Incoming>, gather: Gather) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() != "/metrics" {
        return Ok(plain(StatusCode::NOT_FOUND, "not found: the metrics are at /metrics\n"));
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        response
            .headers_mut()
            .insert(ALLOW, hyper::header::HeaderValue::from_static("GET, HEAD"));
        return Ok(response);
    }
    let rendered = tokio::task::spawn_blocking(move || super::render(gather())).await;
    Ok(match rendered {
        Ok(Ok(text)) => {
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(super::CONTENT_TYPE),
            );
            response
        }
        Ok(Err(_)) | Err(_) => {
            tracing::error!("The metrics could not be rendered");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "the metrics could not be rendered\n")
        }
    })
}

/// A short plain-text answer.
fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response
}
