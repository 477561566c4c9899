//! Connecting to a NATS server with the authentication the configuration names.

use std::time::Duration;

use super::NatsConfig;

/// Messages a subscription buffers in the client (its default is 65,536).
/// Core NATS ingest moves them off at once into its own pending queue,
/// bounded in messages and bytes (`bus::ingest::pending`), so this fills
/// only when that task falls behind the client, which hands over everything
/// one read of the socket brings (thousands of small messages); beyond it
/// the client drops messages and says so (`async_nats::Event::SlowConsumer`).
/// At 2,048, bursts of small messages were lost that ingest would have taken
/// a moment later. The client bounds it in messages only: were the moving
/// task starved while messages of the largest payload ingest takes (64 KiB)
/// kept coming, 1 GiB, where the default allows 4 GiB; in the flood test
/// (60 KiB messages for a slow plugin) the whole host peaks near 200 MiB.
pub const SUBSCRIPTION_CAPACITY: usize = 16_384;

/// The request inboxes of a connection named `name`: `_INBOX.<name>`, so
/// that a server's permissions can give each device only its own replies
/// (`_INBOX.edgewise-<device>.>`), not every client's (`_INBOX.>`).
pub fn inbox_prefix(name: &str) -> String {
    format!("_INBOX.{name}")
}

/// Connect to `config.url` with its credentials. With `retry_initial`, the
/// client is returned at once and connects (and reconnects) in the
/// background: the host keeps running while a server is unreachable.
///
/// The connection does not receive what it publishes itself (`no_echo`):
/// the host never consumes its own traffic. Its request inboxes are
/// [`inbox_prefix`]`(name)`; `name` must be a valid subject token.
pub async fn connect(
    config: &NatsConfig,
    name: &str,
    retry_initial: bool,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    connect_observed(config, name, retry_initial, |_| {}).await
}

/// As [`connect`], with `on_event` called for every connection event (e.g. the
/// server's `-ERR` for a publish the account may not make, which reaches the
/// client only this way).
pub async fn connect_observed(
    config: &NatsConfig,
    name: &str,
    retry_initial: bool,
    on_event: impl Fn(async_nats::Event) + Send + Sync + 'static,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let on_event = std::sync::Arc::new(on_event);
    let mut options = async_nats::ConnectOptions::new()
        .event_callback(move |event| {
            let on_event = on_event.clone();
            async move { on_event(event) }
        })
        .name(name)
        .no_echo()
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .custom_inbox_prefix(inbox_prefix(name))
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None)
        // The first attempt at once (the client counts it as attempt 1: a
        // delay there cost every start 250 ms), then a lost server every
        // 250 ms more each time, at most every 2 s: an outbox waits for the
        // cloud, and should drain soon after it is back.
        .reconnect_delay_callback(|attempts| {
            Duration::from_millis((250 * attempts.saturating_sub(1) as u64).min(2_000))
        });
    if retry_initial {
        options = options.retry_on_initial_connect();
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let Some(path) = &config.credentials {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| async_nats::ConnectError::with_source(async_nats::ConnectErrorKind::Authentication, e))?;
    }
    if let Some(ca) = &config.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    let urls: Vec<async_nats::ServerAddr> = config.url.split(',').filter_map(|u| u.trim().parse().ok()).collect();
    options.connect(urls).await
}

/// Says in the log when a connection's server is lost and when it is back:
/// once per outage, with what the outage means (`meaning`), not at each of
/// the client's attempts. Fed every connection event
/// ([`connect_observed`]); before its first connection a failed attempt
/// counts as lost too (a server that is not there at start).
///
/// Without it the local bus could be gone (a wrong port, a server that
/// died) with nothing logged but the client's own lines at `info`: a device
/// that looked healthy and raised no alert.
#[derive(Debug)]
pub struct LinkLog {
    what: &'static str,
    meaning: &'static str,
    servers: String,
    lost_since: std::sync::Mutex<Option<std::time::Instant>>,
}

impl LinkLog {
    /// The log of `what` ("the local NATS server", say) at `urls` (the
    /// configuration's, comma-separated: credentials are not logged).
    pub fn new(what: &'static str, urls: &str, meaning: &'static str) -> LinkLog {
        LinkLog {
            what,
            meaning,
            servers: without_credentials(urls),
            lost_since: std::sync::Mutex::new(None),
        }
    }

    /// Note `event`; log a loss or a return.
    pub fn observe(&self, event: &async_nats::Event) {
        let Ok(mut lost_since) = self.lost_since.lock() else {
            return;
        };
        match event {
            async_nats::Event::Connected => {
                if let Some(since) = lost_since.take() {
                    tracing::warn!(
                        servers = %self.servers,
                        after = ?since.elapsed(),
                        "{} is reachable again",
                        capitalised(self.what)
                    );
                }
            }
            async_nats::Event::Disconnected | async_nats::Event::ClientError(_) if lost_since.is_none() => {
                *lost_since = Some(std::time::Instant::now());
                tracing::error!(
                    servers = %self.servers,
                    event = %event,
                    "{} cannot be reached ({}); the client keeps trying",
                    capitalised(self.what),
                    self.meaning
                );
            }
            _ => {}
        }
    }
}

/// `what` with its first letter upper case.
fn capitalised(what: &str) -> String {
    let mut chars = what.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `urls` (comma-separated) without the `user:password@` of any: fit for a
/// log line or an error message.
pub fn without_credentials(urls: &str) -> String {
    urls.split(',')
        .map(|url| {
            let url = url.trim();
            let (scheme, rest) = url.split_once("://").map_or(("", url), |(s, r)| (s, r));
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            match scheme.is_empty() {
                true => rest.to_owned(),
                false => format!("{scheme}://{rest}"),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_logged_without_credentials() {
        assert_eq!(
            without_credentials("nats://dev:s3cret@10.0.0.1:4222, tls://token@edge:4443,localhost:4222"),
            "nats://10.0.0.1:4222,tls://edge:4443,localhost:4222"
        );
        assert_eq!(without_credentials("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
    }

    #[test]
    fn a_loss_is_noted_once_and_a_return_ends_it() {
        let log = LinkLog::new("the local NATS server", "nats://u:p@127.0.0.1:1", "no readings");
        let lost = |log: &LinkLog| log.lost_since.lock().unwrap().is_some();
        log.observe(&async_nats::Event::Connected);
        assert!(!lost(&log));
        log.observe(&async_nats::Event::Disconnected);
        let since = *log.lost_since.lock().unwrap();
        // Attempts during the outage do not start another.
        log.observe(&async_nats::Event::ClientError(async_nats::ClientError::Other(
            "io".into(),
        )));
        assert_eq!(*log.lost_since.lock().unwrap(), since);
        log.observe(&async_nats::Event::Connected);
        assert!(!lost(&log));
        // Not there at start: the first failed attempt is a loss.
        let fresh = LinkLog::new("the local NATS server", "nats://127.0.0.1:1", "no readings");
        fresh.observe(&async_nats::Event::ClientError(async_nats::ClientError::Other(
            "io".into(),
        )));
        assert!(lost(&fresh));
    }
}
