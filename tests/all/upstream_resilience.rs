//! Issue #14, item 4: upstream delivery that degrades gracefully. The real
//! `edgewise run`, real nats-servers, and the cloud server really stopped
//! (SIGTERM) and started again on its port with its JetStream store kept:
//!
//! - alerts go before summaries: an alert raised while 100,000 summaries wait
//!   (the cloud down, then while they drain) reaches the cloud before the
//!   summaries still waiting;
//! - the cloud down for two minutes while readings arrive at 500/s: every
//!   output is stored upstream exactly once (the plugin's sequence numbers,
//!   no gap, no duplicate), and the backlog drains at a rate the test
//!   measures and prints (`drain:` lines; never asserted);
//! - the cloud flapping (down and up every few seconds for a minute) at
//!   500 readings/s: the same.
//!
//! Readings are published by a paced publisher (an interval timer sets the
//! rate); every wait is for a condition: a count of readings published, a
//! status field, the number of messages the cloud stream holds.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::OrderedConfig;
use futures::StreamExt;
use serde_json::Value;
use tokio::sync::watch;

use edgewise_tests::nats::NatsServer;

use crate::device::{Device, now_ms, reading};
use crate::support::{UP, host_status, next_where, plugin, poll_until, value_until};

/// Readings per second the publisher sends: the rate of the acceptance.
const RATE: u64 = 500;
/// The longest a drain of the backlog may take before the test gives up
/// (a deadline for a condition, not a measure: the rate is printed).
const DRAIN_WAIT: Duration = Duration::from_secs(600);
/// Most summaries a round already sent when an alert was committed can put
/// before it upstream: one delivery round (docs/reliability.md).
const ROUND: u64 = 128;
/// The echo plugin (contract 0.2): one `seen` alert per reading, no ticks.
const ECHO: &str = "[[plugins]]\nbundle = \"echo-v02.wasm\"\n[plugins.config]\nwake = \"never\"\n";
const ECHO_NAME: &str = "echo-v02";

/// One message stored upstream: its subject, `Nats-Msg-Id` and envelope.
#[derive(Debug)]
struct Stored {
    subject: String,
    msg_id: String,
    envelope: Value,
}

impl Stored {
    fn is_summary(&self) -> bool {
        self.subject.contains(".up.summaries.")
    }
}

/// The cloud's JetStream, through a new connection.
async fn cloud_jetstream(cloud: &NatsServer) -> async_nats::jetstream::Context {
    async_nats::jetstream::new(async_nats::connect(cloud.url()).await.unwrap())
}

/// How many messages the upstream stream holds (0 while it does not exist).
async fn stored_count(jetstream: &async_nats::jetstream::Context) -> u64 {
    match jetstream.get_stream(UP).await {
        Ok(mut stream) => stream.info().await.map_or(0, |info| info.state.messages),
        Err(_) => 0,
    }
}

/// Every message of the upstream stream, in stream order (read through an
/// ordered consumer: a hundred thousand messages in seconds).
async fn stored_upstream(cloud: &NatsServer) -> Vec<Stored> {
    let jetstream = cloud_jetstream(cloud).await;
    let mut stream = jetstream.get_stream(UP).await.unwrap();
    let count = usize::try_from(stream.info().await.unwrap().state.messages).unwrap();
    let consumer = stream.create_consumer(OrderedConfig::default()).await.unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut stored = Vec::with_capacity(count);
    while stored.len() < count {
        let message = match tokio::time::timeout(Duration::from_secs(60), messages.next()).await {
            Ok(Some(Ok(message))) => message,
            other => panic!("read {} of {count} upstream messages, then: {other:?}", stored.len()),
        };
        stored.push(Stored {
            subject: message.subject.to_string(),
            msg_id: message
                .headers
                .as_ref()
                .and_then(|headers| headers.get("Nats-Msg-Id"))
                .map(|id| id.as_str().to_owned())
                .unwrap_or_default(),
            envelope: serde_json::from_slice(&message.payload).unwrap(),
        });
    }
    stored
}

/// Panic unless the cloud holds each output `1..=count` of `plugin` exactly
/// once: no gap, no duplicate, none beyond, each under the id that names its seq.
fn assert_each_once(stored: &[Stored], plugin: &str, count: u64) {
    let mut by_seq: BTreeMap<u64, Vec<&str>> = BTreeMap::new();
    for message in stored.iter().filter(|m| m.envelope["plugin"] == plugin) {
        let seq = message.envelope["seq"].as_u64().unwrap();
        assert!(
            message.msg_id.ends_with(&format!("/{plugin}/{seq}")),
            "the id names the seq: {} for seq {seq}",
            message.msg_id
        );
        by_seq.entry(seq).or_default().push(&message.msg_id);
    }
    let duplicated: Vec<u64> = by_seq
        .iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(seq, _)| *seq)
        .collect();
    let missing: Vec<u64> = (1..=count).filter(|seq| !by_seq.contains_key(seq)).collect();
    let beyond: Vec<u64> = by_seq.keys().copied().filter(|seq| *seq == 0 || *seq > count).collect();
    assert!(
        duplicated.is_empty() && missing.is_empty() && beyond.is_empty(),
        "{plugin}: {count} outputs, {} distinct seqs upstream; stored twice: {} {:?}; missing: {} {:?}; \
         unexpected: {:?}",
        by_seq.len(),
        duplicated.len(),
        &duplicated[..duplicated.len().min(20)],
        missing.len(),
        &missing[..missing.len().min(20)],
        &beyond[..beyond.len().min(20)],
    );
}

/// Readings at a steady rate on `sensors.echo.s1`, from a task, until stopped.
struct Publisher {
    /// How many were published so far.
    published: watch::Receiver<u64>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<u64>,
}

impl Publisher {
    /// Publish `rate` readings per second through `client`: every 10 ms, as
    /// many as bring the count to `rate` times the time since the start.
    fn start(client: async_nats::Client, rate: u64) -> Publisher {
        let (count, published) = watch::channel(0u64);
        let (stop, mut stopped) = watch::channel(false);
        let task = tokio::spawn(async move {
            let start = Instant::now();
            let mut ticks = tokio::time::interval(Duration::from_millis(10));
            let mut sent = 0u64;
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = stopped.changed() => break,
                }
                let due = rate * u64::try_from(start.elapsed().as_millis()).unwrap() / 1000;
                while sent < due {
                    client
                        .publish("sensors.echo.s1", reading(now_ms(), sent as f64))
                        .await
                        .unwrap();
                    sent += 1;
                }
                count.send_replace(sent);
            }
            client.flush().await.unwrap();
            sent
        });
        Publisher { published, stop, task }
    }

    fn published(&self) -> u64 {
        *self.published.borrow()
    }

    /// Wait until `n` readings have been published.
    async fn until(&mut self, n: u64) {
        self.published.wait_for(|sent| *sent >= n).await.unwrap();
    }

    /// Wait until `n` more readings have been published.
    async fn another(&mut self, n: u64) {
        let target = self.published() + n;
        self.until(target).await;
    }

    /// Stop; how many readings were published in all.
    async fn stop(self) -> u64 {
        self.stop.send_replace(true);
        self.task.await.unwrap()
    }
}

/// Stop the cloud server (SIGTERM) without holding up the runtime's thread.
fn stop_cloud(cloud: &mut NatsServer) {
    tokio::task::block_in_place(|| cloud.stop());
}

/// Start the cloud server again on its port with its store.
fn start_cloud_again(cloud: &mut NatsServer) {
    tokio::task::block_in_place(|| cloud.start_again());
}

/// Outputs waiting in the outbox, by a status.
fn depth(status: &Value) -> u64 {
    status["outbox"]["alerts"].as_u64().unwrap() + status["outbox"]["summaries"].as_u64().unwrap()
}

/// What a drain measured: the backlog at the start, how long until the host
/// reconnected and until it caught up, what the cloud stored meanwhile.
struct Drain {
    backlog: u64,
    reconnected: f64,
    seconds: f64,
    delivered: u64,
    /// Stored from the reconnection until caught up.
    delivered_connected: u64,
}

impl Drain {
    fn report(&self, what: &str) {
        let connected = self.seconds - self.reconnected;
        let rate = self.delivered_connected as f64 / connected;
        eprintln!(
            "drain: {what}: backlog {} outputs; the host reconnected {:.1} s after the cloud was back, \
             caught up {:.1} s after it; {} outputs stored upstream meanwhile: {:.0} outputs/s once \
             connected ({:.0}x the {RATE}/s input), {:.0} outputs/s from the cloud's return",
            self.backlog,
            self.reconnected,
            self.seconds,
            self.delivered,
            rate,
            rate / RATE as f64,
            self.delivered as f64 / self.seconds,
        );
    }
}

/// Where a drain starts: when, and what the cloud held then.
struct DrainStart {
    at: Instant,
    stored: u64,
    jetstream: async_nats::jetstream::Context,
}

impl DrainStart {
    /// Now (call it as the cloud is started again).
    async fn now(cloud: &NatsServer) -> DrainStart {
        let jetstream = cloud_jetstream(cloud).await;
        DrainStart {
            stored: stored_count(&jetstream).await,
            at: Instant::now(),
            jetstream,
        }
    }

    /// Wait until the host has reconnected, then until it has caught up
    /// (less than `left` outputs waiting), and measure, with `backlog`
    /// outputs waiting at the start.
    async fn until_caught_up(self, client: &async_nats::Client, backlog: u64, left: u64) -> Drain {
        let status = || host_status(client);
        value_until("the host reconnected", DRAIN_WAIT, status, |s| {
            s["upstream_connected"] == true
        })
        .await;
        let reconnected = self.at.elapsed().as_secs_f64();
        let stored_connected = stored_count(&self.jetstream).await;
        value_until("the backlog delivered", DRAIN_WAIT, status, |s| {
            s["upstream_connected"] == true && depth(s) < left
        })
        .await;
        let seconds = self.at.elapsed().as_secs_f64();
        let stored = stored_count(&self.jetstream).await;
        Drain {
            backlog,
            reconnected,
            seconds,
            delivered: stored - self.stored,
            delivered_connected: stored - stored_connected,
        }
    }
}

/// Stop the publisher and wait until every reading was handled and every
/// output delivered; check that each output is upstream exactly once, that
/// nothing was moved aside or dropped, and that the host exits cleanly.
async fn finish_and_check(publisher: Publisher, client: &async_nats::Client, cloud: &NatsServer, mut device: Device) {
    let published = publisher.stop().await;
    // One output per reading, each committed (counted) and delivered.
    let status = value_until(
        "every reading's output delivered",
        DRAIN_WAIT,
        || host_status(client),
        |s| {
            let echo = plugin(s, ECHO_NAME);
            echo["readings_in"] == published
                && echo["alerts_out"] == published
                && s["upstream_connected"] == true
                && depth(s) == 0
        },
    )
    .await;
    let outputs = published;
    for reason in ["too_large", "permission_denied", "refused", "entries"] {
        assert_eq!(status["outbox"]["parked"][reason], 0, "nothing moved aside: {status}");
    }
    for (reason, count) in status["outbox"]["dropped"].as_object().unwrap() {
        assert_eq!(count, 0, "nothing dropped ({reason}): {status}");
    }
    // Once the host has stopped, nothing more can arrive: a duplicate would be there.
    device.terminate_cleanly().await;
    let stored = stored_upstream(cloud).await;
    assert_each_once(&stored, ECHO_NAME, outputs);
    eprintln!(
        "{outputs} outputs stored upstream once each; {} failed delivery rounds",
        status["outbox"]["rounds_failed"]
    );
}

/// A device with the echo plugin, its cloud connected and the stream made;
/// the publisher running and the cloud storing its outputs.
async fn echo_device_delivering(local: &NatsServer, cloud: &NatsServer) -> (Device, async_nats::Client, Publisher) {
    let mut device = Device::new(local, Some(cloud), ECHO);
    let client = device.start(local).await;
    let publisher = Publisher::start(client.clone(), RATE);
    let jetstream = cloud_jetstream(cloud).await;
    poll_until("a second of outputs stored upstream", DRAIN_WAIT, || async {
        let stored = stored_count(&jetstream).await;
        if stored >= RATE {
            Ok(())
        } else {
            Err(format!("{stored} stored"))
        }
    })
    .await;
    (device, client, publisher)
}

#[tokio::test(flavor = "multi_thread")]
async fn after_two_minutes_without_the_cloud_at_500_readings_a_second_every_output_arrives_once() {
    let local = NatsServer::start();
    let mut cloud = NatsServer::start_with_jetstream();
    let (device, client, mut publisher) = echo_device_delivering(&local, &cloud).await;

    stop_cloud(&mut cloud);
    // Two minutes of readings, counted by the paced publisher.
    publisher.another(120 * RATE).await;
    let status = host_status(&client).await;
    assert_eq!(status["upstream_connected"], false, "{status}");
    let backlog = depth(&status);
    assert!(backlog >= 110 * RATE, "the outputs of the outage wait: {status}");
    start_cloud_again(&mut cloud);
    let start = DrainStart::now(&cloud).await;
    // Caught up: less than a second of input waits.
    let drain = start.until_caught_up(&client, backlog, RATE).await;
    drain.report("after a two-minute outage, input at 500/s");
    finish_and_check(publisher, &client, &cloud, device).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cloud_flapping_for_a_minute_at_500_readings_a_second_loses_and_duplicates_nothing() {
    let local = NatsServer::start();
    let mut cloud = NatsServer::start_with_jetstream();
    let (device, client, mut publisher) = echo_device_delivering(&local, &cloud).await;

    // Down and up every few seconds, for a minute of readings; the lengths
    // vary (in readings at 500/s: 0.4 s to 3 s) so that the server goes away
    // at every point of a delivery round and comes back at every point of
    // the client's reconnect backoff.
    let end = publisher.published() + 60 * RATE;
    let phases = [
        (1000, 1500),
        (250, 600),
        (1500, 400),
        (600, 1200),
        (200, 2000),
        (1200, 300),
    ];
    let (mut cycles, mut most_waiting) = (0, 0);
    for (down, up) in phases.iter().cycle() {
        if publisher.published() >= end {
            break;
        }
        stop_cloud(&mut cloud);
        publisher.another(*down).await;
        most_waiting = most_waiting.max(depth(&host_status(&client).await));
        start_cloud_again(&mut cloud);
        publisher.another(*up).await;
        cycles += 1;
    }
    eprintln!("flapping: {cycles} cycles, at most {most_waiting} outputs waiting at the end of a down phase");
    assert!(
        most_waiting >= RATE,
        "outputs waited while the cloud was down: {most_waiting}"
    );
    finish_and_check(publisher, &client, &cloud, device).await;
}

/// threshold with 1,000 sensors, each sent 101 hourly readings of the last
/// 100 hours (one message per sensor, paced): 100 closed hours each, so
/// 100,000 hourly summaries. Its output limits raised to the host's
/// ceilings for the burst.
const THRESHOLD: &str = "[[plugins]]\nbundle = \"threshold.wasm\"\n\
    [plugins.limits]\noutputs_per_call = 10000\noutputs_per_second = 50000\n";
const SENSORS: u64 = 1_000;
const HOURS: u64 = 100;
const SUMMARIES: u64 = SENSORS * HOURS;

/// Raise an urgent-low from glucose-monitor on `sensor` and wait until it is
/// published locally and committed to the outbox (`alerts_out` reaches `n`).
async fn raise_alert(client: &async_nats::Client, alerts: &mut async_nats::Subscriber, sensor: &str, n: u64) {
    let raised = Instant::now();
    client
        .publish(format!("sensors.cgm.{sensor}"), reading(now_ms(), 45.0))
        .await
        .unwrap();
    next_where(alerts, "the local urgent-low", |_, alert| {
        alert["code"] == "urgent-low" && alert["sensor"] == format!("cgm.{sensor}")
    })
    .await;
    let local = raised.elapsed();
    value_until(
        "the alert committed",
        DRAIN_WAIT,
        || host_status(client),
        |s| plugin(s, "glucose-monitor")["alerts_out"] == n,
    )
    .await;
    eprintln!(
        "alert on {sensor}: local after {local:?}, seen committed after {:?}",
        raised.elapsed()
    );
}

/// The position in `stored` of glucose-monitor's alert on `sensor`, and how
/// many summaries come after it.
fn alert_position(stored: &[Stored], sensor: &str) -> (usize, u64) {
    let at = stored
        .iter()
        .position(|m| m.envelope["plugin"] == "glucose-monitor" && m.envelope["sensor"] == format!("cgm.{sensor}"))
        .unwrap_or_else(|| panic!("the alert on {sensor} is not upstream"));
    let after = stored[at..].iter().filter(|m| m.is_summary()).count();
    (at, u64::try_from(after).unwrap())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_alert_raised_while_100000_summaries_wait_reaches_the_cloud_before_them() {
    let local = NatsServer::start();
    let mut cloud = NatsServer::start_with_jetstream();
    let mut device = Device::new(&local, Some(&cloud), THRESHOLD);
    let (client, mut alerts) = device.start_watching(&local, "glucose-monitor").await;
    let jetstream = cloud_jetstream(&cloud).await;
    poll_until("the upstream stream", DRAIN_WAIT, || async {
        jetstream.get_stream(UP).await.map(|_| ()).map_err(|e| e.to_string())
    })
    .await;
    stop_cloud(&mut cloud);

    // 100,000 summaries, while the cloud is down: one message per sensor,
    // a hundred per second (10,000 summaries a second, under the limit).
    let now = now_ms();
    let hour = 3_600_000;
    let mut ticks = tokio::time::interval(Duration::from_millis(10));
    for sensor in 0..SENSORS {
        ticks.tick().await;
        let readings: Vec<String> = (0..=HOURS)
            .map(|k| {
                let ts = now - i64::try_from(HOURS - k).unwrap() * hour;
                format!(r#"{{"ts":{ts},"value":5.0,"unit":"degC"}}"#)
            })
            .collect();
        client
            .publish(
                format!("sensors.temperature.t{sensor}"),
                format!("[{}]", readings.join(",")).into(),
            )
            .await
            .unwrap();
    }
    let status = value_until(
        "100,000 summaries waiting",
        DRAIN_WAIT,
        || host_status(&client),
        // `summaries_out` is counted just after the commit that stores them.
        |s| {
            (s["outbox"]["summaries"] == SUMMARIES && plugin(s, "threshold")["summaries_out"] == SUMMARIES)
                || plugin(s, "threshold")["errors"] != 0
        },
    )
    .await;
    assert_eq!(plugin(&status, "threshold")["summaries_out"], SUMMARIES, "{status}");
    assert_eq!(status["outbox"]["summaries"], SUMMARIES, "{status}");

    // An alert raised with the cloud down waits behind nothing.
    raise_alert(&client, &mut alerts, "down", 1).await;
    start_cloud_again(&mut cloud);
    let start = DrainStart::now(&cloud).await;
    // An alert raised while the summaries drain: once the cloud holds some
    // (asked on the new connection: the old one is still in its reconnect backoff).
    poll_until("summaries arriving upstream", DRAIN_WAIT, || async {
        let stored = stored_count(&start.jetstream).await;
        if stored > 1 {
            Ok(())
        } else {
            Err(format!("{stored} stored"))
        }
    })
    .await;
    raise_alert(&client, &mut alerts, "draining", 2).await;
    // Read after the commit: at least this many summaries waited when it was
    // committed. How many depends on how fast they drain meanwhile (the
    // bound below holds whatever it is; printed to show what the run tested).
    let waiting = host_status(&client).await["outbox"]["summaries"].as_u64().unwrap();
    eprintln!("an alert raised while {waiting} summaries waited, the cloud up");
    let drain = start.until_caught_up(&client, SUMMARIES + 2, 1).await;
    drain.report("100,000 summaries, no input");

    let stored = stored_upstream(&cloud).await;
    assert_eq!(
        stored.iter().filter(|m| m.is_summary()).count(),
        usize::try_from(SUMMARIES).unwrap(),
        "every summary once"
    );
    let (down_at, summaries_after) = alert_position(&stored, "down");
    assert_eq!(
        summaries_after, SUMMARIES,
        "the alert raised while the cloud was down is stored before every summary (at {down_at})"
    );
    let (draining_at, summaries_after) = alert_position(&stored, "draining");
    eprintln!("the alert raised while {waiting} summaries waited: {summaries_after} stored after it");
    assert!(
        summaries_after + ROUND >= waiting,
        "the alert raised while {waiting} summaries waited is stored before all but one round of them: \
         {summaries_after} summaries after it (at {draining_at})"
    );
    device.terminate_cleanly().await;
}
