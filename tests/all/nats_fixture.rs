//! The `NatsServer` fixture against a real nats-server, through async-nats:
//! core publish/subscribe, JetStream de-duplication, and a stop/start that
//! keeps the JetStream store and lets clients reconnect.

use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::publish::PublishAck;
use async_nats::jetstream::{self, stream};
use async_nats::{Client, ConnectOptions, HeaderMap};
use edgewise_tests::nats::NatsServer;

use crate::support::poll_until;
use futures::StreamExt;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(10);

/// A client that retries quickly after an outage.
async fn connect(server: &NatsServer) -> Client {
    ConnectOptions::new()
        .reconnect_delay_callback(|_| Duration::from_millis(100))
        .connect(server.url())
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}\nserver log:\n{}", server.url(), server.log()))
}

/// Wait until the client is in `state`.
async fn wait_for_state(client: &Client, state: State) {
    poll_until(&format!("the client to be {state:?}"), WAIT, || async {
        let now = client.connection_state();
        if now == state { Ok(()) } else { Err(format!("{now:?}")) }
    })
    .await;
}

/// Publish `value` on `readings.cgm` with the message id `id`; the stream's acknowledgement.
async fn publish_with_id(js: &jetstream::Context, id: &str, value: &'static str) -> PublishAck {
    js.publish_with_headers("readings.cgm", msg_id(id), value.into())
        .await
        .unwrap()
        .await
        .unwrap()
}

fn msg_id(id: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("Nats-Msg-Id", id);
    headers
}

fn readings_stream() -> stream::Config {
    stream::Config {
        name: "READINGS".to_owned(),
        subjects: vec!["readings.>".to_owned()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    }
}

/// Publish on one subject and receive it on a subscription.
async fn round_trip(client: &Client, subject: &str, payload: &'static str) {
    let mut sub = client.subscribe(subject.to_owned()).await.unwrap();
    client.flush().await.unwrap();
    client.publish(subject.to_owned(), payload.into()).await.unwrap();
    let message = timeout(WAIT, sub.next())
        .await
        .expect("no message in time")
        .expect("subscription closed");
    assert_eq!(message.subject.as_str(), subject);
    assert_eq!(message.payload.as_ref(), payload.as_bytes());
}

#[tokio::test]
async fn core_publish_subscribe_round_trip() {
    let server = NatsServer::start();
    assert_eq!(server.url(), format!("nats://127.0.0.1:{}", server.port()));
    assert!(server.store_dir().is_none());
    let client = connect(&server).await;
    round_trip(&client, "edge.readings.test", "hello").await;
}

#[tokio::test]
async fn two_servers_run_at_once() {
    let a = NatsServer::start();
    let b = NatsServer::start_with_jetstream();
    assert_ne!(a.port(), b.port());
    let (ca, cb) = (connect(&a).await, connect(&b).await);

    // A message published on one server does not reach the other.
    let mut on_b = cb.subscribe("shared.subject").await.unwrap();
    cb.flush().await.unwrap();
    round_trip(&ca, "shared.subject", "only on a").await;
    assert!(timeout(Duration::from_millis(200), on_b.next()).await.is_err());
    round_trip(&cb, "shared.subject", "on b").await;
}

#[tokio::test]
async fn jetstream_drops_duplicate_msg_id() {
    let server = NatsServer::start_with_jetstream();
    assert!(server.store_dir().unwrap().is_dir());
    let js = jetstream::new(connect(&server).await);
    let mut stream = js.create_stream(readings_stream()).await.unwrap();

    let first = publish_with_id(&js, "reading-1", "5.4").await;
    assert!(!first.duplicate);
    assert_eq!(first.stream, "READINGS");
    let second = publish_with_id(&js, "reading-1", "5.4").await;
    assert!(second.duplicate, "second publish with the same Nats-Msg-Id: {second:?}");
    assert_eq!(second.sequence, first.sequence);

    let other = publish_with_id(&js, "reading-2", "5.6").await;
    assert!(!other.duplicate);
    assert_eq!(other.sequence, first.sequence + 1);

    assert_eq!(stream.info().await.unwrap().state.messages, 2);
}

#[tokio::test]
async fn jetstream_store_survives_stop_and_clients_reconnect() {
    let mut server = NatsServer::start_with_jetstream();
    let port = server.port();
    let client = connect(&server).await;
    let js = jetstream::new(client.clone());
    js.create_stream(readings_stream()).await.unwrap();
    for (i, value) in ["5.1", "5.2", "5.3"].into_iter().enumerate() {
        let ack = publish_with_id(&js, &format!("r-{i}"), value).await;
        assert_eq!(ack.sequence, i as u64 + 1);
    }

    server.stop();
    assert!(!server.is_running());
    wait_for_state(&client, State::Disconnected).await;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still open after stop"
    );

    server.start_again();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    wait_for_state(&client, State::Connected).await;

    // The stream and its messages came back from the store directory.
    let mut stream = js.get_stream("READINGS").await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, 3);
    let first = stream.get_raw_message(1).await.unwrap();
    assert_eq!(first.payload.as_ref(), b"5.1");

    // The duplicate window survived too, and new messages follow on.
    let again = publish_with_id(&js, "r-2", "5.3").await;
    assert!(again.duplicate, "{again:?}");
    let next = publish_with_id(&js, "r-3", "5.4").await;
    assert_eq!(next.sequence, 4);

    // Core messaging works on the reconnected client.
    round_trip(&client, "edge.after.outage", "back").await;
    assert!(server.log().contains("--- start_again ---"));
}

#[tokio::test]
async fn killed_server_starts_again_on_the_same_port() {
    let mut server = NatsServer::start_with_jetstream();
    let port = server.port();
    let client = connect(&server).await;
    server.kill();
    wait_for_state(&client, State::Disconnected).await;
    server.start_again();
    assert_eq!(server.port(), port);
    wait_for_state(&client, State::Connected).await;
    round_trip(&client, "edge.after.crash", "back").await;
}
