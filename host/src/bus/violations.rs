//! Permissions violations a NATS server reports on a connection. The server
//! drops a publish, or refuses a subscription, that the connection's user
//! may not make, and says so only in an `-ERR 'Permissions Violation for
//! Publish to "<subject>"'` (or `for Subscription to`) on the connection:
//! not an answer to the operation, but an event of the client
//! (`async_nats::Event::ServerError`), delivered on the client's event task
//! some time after the operation was made. [`Violations`] remembers them by
//! subject, numbered, so that whoever made an operation can ask whether it
//! was refused after a mark taken before it, and wait for that.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{Notify, watch};

/// Subjects with a violation remembered at most (the server names one per
/// refused operation; a device publishes to and subscribes to a few subjects
/// per plugin). Past it, the older ones are forgotten.
pub const MAX_VIOLATIONS: usize = 256;

/// The operation a [`Violations`] remembers refusals of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Publishes (the upstream's, refused by the cloud).
    Publish,
    /// Subscriptions (core ingest's, refused by the local server).
    Subscription,
}

impl Operation {
    /// How the server's error names it, lower case.
    fn prefix(self) -> &'static str {
        match self {
            Operation::Publish => "permissions violation for publish to ",
            Operation::Subscription => "permissions violation for subscription to ",
        }
    }
}

/// Violations of one [`Operation`] the server reported on a connection, fed
/// every event of the connection ([`Violations::observe`]).
#[derive(Debug)]
pub struct Violations {
    operation: Operation,
    /// The server, as the log names it ("the cloud", "the local server").
    server: &'static str,
    /// Subject → the number of the last violation reported for it.
    seen: Mutex<HashMap<String, u64>>,
    /// Violations reported so far.
    count: AtomicU64,
    /// Woken (all waiters) at each one.
    pub notify: Notify,
    /// The count, for a waiter that must not miss one ([`Violations::watch`]).
    counted: watch::Sender<u64>,
}

impl Violations {
    /// Nothing reported yet, of `operation`, by `server` (as the log names
    /// it).
    pub fn new(operation: Operation, server: &'static str) -> Violations {
        Violations {
            operation,
            server,
            seen: Mutex::new(HashMap::new()),
            count: AtomicU64::new(0),
            notify: Notify::new(),
            counted: watch::Sender::new(0),
        }
    }

    /// Remember the violation `event` reports, if it is one of this
    /// operation.
    pub fn observe(&self, event: &async_nats::Event) {
        let async_nats::Event::ServerError(async_nats::ServerError::Other(text)) = event else {
            return;
        };
        let Some(subject) = violated_subject(self.operation, text) else {
            return;
        };
        let (number, first) = self.record(subject);
        // Once a subject, a warning: a refused alert subject is refused at
        // every alert, a refused dead-letter subject at every bad message,
        // and what the refusal costs is said by whoever made the operation
        // (an outbox entry moved aside, a plugin degraded, a host alert).
        if first {
            let server = self.server;
            match self.operation {
                Operation::Publish => tracing::warn!(subject, server, "A publish refused: permissions violation"),
                Operation::Subscription => {
                    tracing::warn!(subject, server, "A subscription refused: permissions violation")
                }
            }
        }
        self.notify.notify_waiters();
        self.counted.send_replace(number);
    }

    /// Record a violation of `subject`: its number, and whether the subject
    /// is new to the map (never refused, or forgotten since).
    fn record(&self, subject: &str) -> (u64, bool) {
        let number = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let first = self.seen.lock().is_ok_and(|mut seen| {
            if seen.len() >= MAX_VIOLATIONS && !seen.contains_key(subject) {
                seen.clear();
            }
            seen.insert(subject.to_owned(), number).is_none()
        });
        (number, first)
    }

    /// The count of violations, changed at each one: a receiver that was
    /// busy when one came sees it when it looks again.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.counted.subscribe()
    }

    /// The subjects with a violation reported after `mark` (of those
    /// remembered).
    pub fn subjects_since(&self, mark: u64) -> Vec<String> {
        self.seen
            .lock()
            .map(|seen| {
                let mut subjects: Vec<String> = seen
                    .iter()
                    .filter(|(_, number)| **number > mark)
                    .map(|(subject, _)| subject.clone())
                    .collect();
                subjects.sort();
                subjects
            })
            .unwrap_or_default()
    }

    /// The number of the last violation reported so far (a mark to compare with).
    pub fn mark(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether a violation for `subject` was reported after `mark`.
    pub fn since(&self, subject: &str, mark: u64) -> bool {
        self.seen
            .lock()
            .is_ok_and(|seen| seen.get(subject).is_some_and(|number| *number > mark))
    }

    /// The first of `subjects` a violation is reported for after `mark`,
    /// once one is (pending for good if none ever is).
    pub async fn refused<'a>(&self, subjects: &'a [String], mark: u64) -> &'a str {
        loop {
            let reported = self.notify.notified();
            tokio::pin!(reported);
            // Registered before the check: a violation after it wakes it.
            reported.as_mut().enable();
            // The count alone while there is none: the map is locked only
            // once a violation came.
            if self.mark() > mark
                && let Some(subject) = subjects.iter().find(|subject| self.since(subject, mark))
            {
                return subject;
            }
            reported.await;
        }
    }
}

/// Subscriptions a NATS server refused past its limit of subscriptions (a
/// connection's `max_subscriptions`, a user's or an account's `max_subs`):
/// it says `-ERR 'maximum subscriptions exceeded'`, naming no subject, keeps
/// the connection, and sends the refused subscription nothing, while the
/// client holds it as made. Counted, fed every event of the connection.
#[derive(Debug, Default)]
pub struct SubscriptionLimit {
    /// Refusals reported so far.
    counted: watch::Sender<u64>,
}

impl SubscriptionLimit {
    /// Count the refusal `event` reports, if it is one.
    pub fn observe(&self, event: &async_nats::Event) {
        if let async_nats::Event::ServerError(async_nats::ServerError::Other(text)) = event
            && is_past_limit(text)
        {
            self.counted.send_modify(|count| *count += 1);
        }
    }

    /// Refusals reported so far.
    pub fn count(&self) -> u64 {
        *self.counted.borrow()
    }

    /// The count, changed at each refusal.
    pub fn watch(&self) -> watch::Receiver<u64> {
        self.counted.subscribe()
    }
}

/// Whether a server error is a subscription refused past the limit.
fn is_past_limit(text: &str) -> bool {
    text.to_ascii_lowercase().contains("maximum subscriptions exceeded")
}

/// The subject of a server error `Permissions Violation for <operation> to
/// "<subject>"` (a subscription's may go on: ` using queue "<group>"`).
fn violated_subject(operation: Operation, text: &str) -> Option<&str> {
    let prefix = operation.prefix();
    let text = text.trim().trim_matches('\'');
    let head = text.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = text.get(prefix.len()..)?.trim();
    let subject = match rest.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next()?,
        None => rest,
    };
    (!subject.is_empty()).then_some(subject)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: String) -> async_nats::Event {
        async_nats::Event::ServerError(async_nats::ServerError::Other(text))
    }

    #[test]
    fn the_subject_of_a_permissions_violation_is_read_from_the_server_error() {
        use Operation::{Publish, Subscription};
        assert_eq!(
            violated_subject(
                Publish,
                "Permissions Violation for Publish to \"edgewise.d.up.summaries.p\""
            ),
            Some("edgewise.d.up.summaries.p")
        );
        assert_eq!(
            violated_subject(Publish, "'Permissions Violation for Publish to \"a.b\"'"),
            Some("a.b")
        );
        assert_eq!(
            violated_subject(Publish, "Permissions Violation for Subscription to \"a\""),
            None
        );
        assert_eq!(
            violated_subject(
                Subscription,
                "permissions violation for subscription to \"sensors.cgm2.>\""
            ),
            Some("sensors.cgm2.>")
        );
        assert_eq!(
            violated_subject(
                Subscription,
                "Permissions Violation for Subscription to \"a.*\" using queue \"q\""
            ),
            Some("a.*")
        );
        assert_eq!(
            violated_subject(Subscription, "Permissions Violation for Publish to \"a\""),
            None
        );
        assert_eq!(violated_subject(Publish, "Maximum Payload Violation"), None);
        assert_eq!(violated_subject(Subscription, ""), None);
        assert_eq!(
            violated_subject(Subscription, "Permissions Violation for Subscription to \"\""),
            None
        );
    }

    #[test]
    fn a_violation_counts_for_its_subject_after_the_mark_only() {
        let violations = Violations::new(Operation::Publish, "the cloud");
        let publish = |subject: &str| error(format!("Permissions Violation for Publish to \"{subject}\""));
        violations.observe(&publish("a.b"));
        let mark = violations.mark();
        assert!(violations.since("a.b", 0) && !violations.since("a.b", mark));
        violations.observe(&async_nats::Event::Disconnected);
        violations.observe(&error("Permissions Violation for Subscription to \"c.d\"".to_owned()));
        assert_eq!(violations.mark(), mark, "another operation's violation counted");
        violations.observe(&publish("c.d"));
        assert!(violations.since("c.d", mark) && !violations.since("a.b", mark));
        // Bounded: a flood of distinct subjects keeps at most MAX_VIOLATIONS.
        for n in 0..3 * MAX_VIOLATIONS {
            violations.observe(&publish(&format!("s.{n}")));
        }
        assert!(violations.seen.lock().unwrap().len() <= MAX_VIOLATIONS);
    }

    #[test]
    fn a_subject_is_new_once_until_a_flood_of_others_makes_it_forgotten() {
        // What decides the warning: once a subject, not once a violation (a
        // refused alert subject is refused at every alert).
        let violations = Violations::new(Operation::Publish, "the local server");
        assert_eq!(violations.record("a"), (1, true));
        assert_eq!(violations.record("a"), (2, false));
        assert_eq!(violations.record("b"), (3, true));
        for n in 0..MAX_VIOLATIONS {
            violations.record(&format!("s.{n}"));
        }
        assert!(violations.record("a").1, "a subject forgotten in a flood is new again");
    }

    #[test]
    fn a_watcher_busy_when_violations_came_sees_them_and_their_subjects_when_it_looks() {
        let violations = Violations::new(Operation::Publish, "the cloud");
        let publish = |subject: &str| error(format!("Permissions Violation for Publish to \"{subject}\""));
        let mut watch = violations.watch();
        assert!(!watch.has_changed().unwrap());
        violations.observe(&publish("edgewise.d.alerts.p"));
        let mark = violations.mark();
        violations.observe(&publish("edgewise.d.deadletter"));
        violations.observe(&publish("edgewise.d.alerts.p"));
        assert!(watch.has_changed().unwrap());
        assert_eq!(*watch.borrow_and_update(), 3);
        assert_eq!(
            violations.subjects_since(mark),
            ["edgewise.d.alerts.p", "edgewise.d.deadletter"]
        );
        assert!(violations.subjects_since(violations.mark()).is_empty());
    }

    #[tokio::test]
    async fn a_wait_for_a_refusal_ends_with_the_subject_refused_after_the_mark() {
        let violations = std::sync::Arc::new(Violations::new(Operation::Subscription, "the local server"));
        let subscription = |subject: &str| error(format!("Permissions Violation for Subscription to \"{subject}\""));
        violations.observe(&subscription("b"));
        let mark = violations.mark();
        let subjects = vec!["a".to_owned(), "b".to_owned()];
        let waiting = {
            let violations = violations.clone();
            tokio::spawn(async move { violations.refused(&subjects, mark).await.to_owned() })
        };
        // Neither one before the mark nor one of another subject ends it.
        tokio::task::yield_now().await;
        violations.observe(&subscription("c"));
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        violations.observe(&subscription("b"));
        assert_eq!(waiting.await.unwrap(), "b");
    }

    #[test]
    fn a_subscription_past_the_limit_is_counted_and_nothing_else() {
        let limit = SubscriptionLimit::default();
        let error = |text: &str| async_nats::Event::ServerError(async_nats::ServerError::Other(text.to_owned()));
        limit.observe(&error("'Maximum Subscriptions Exceeded'"));
        limit.observe(&error("maximum subscriptions exceeded"));
        limit.observe(&error("Permissions Violation for Subscription to \"a\""));
        limit.observe(&error("maximum payload exceeded"));
        limit.observe(&async_nats::Event::Connected);
        assert_eq!(limit.count(), 2);
    }
}
