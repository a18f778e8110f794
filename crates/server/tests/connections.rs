//! Slow and too many clients, and shutdown, against a real node on loopback: raw TCP
//! clients that stall where a hostile one would.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{ADMIN_KEY, TestApi};
use mlgrid_server::{ConnectionLimits, ServerConfig, run_node};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A node on a free loopback port with `limits`; send on the channel to shut it down.
struct Node {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    running: JoinHandle<std::io::Result<()>>,
    api: TestApi,
}

impl Node {
    async fn start(limits: ConnectionLimits) -> Node {
        let api = TestApi::with_config(ServerConfig {
            connections: limits,
            ..ServerConfig::default()
        })
        .await;
        api.ok("POST", "/v1/topics", json!({"name": "orders"})).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel();
        let running = tokio::spawn(run_node(listener, api.state.clone(), async move {
            let _ = stopped.await;
        }));
        Node {
            address,
            stop: Some(stop),
            running,
            api,
        }
    }

    /// Shuts the node down and returns how long it took to stop.
    async fn shut_down(&mut self) -> Duration {
        let started = Instant::now();
        self.stop.take().unwrap().send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(20), &mut self.running)
            .await
            .expect("the node stops within 20 s")
            .unwrap()
            .unwrap();
        started.elapsed()
    }
}

/// Reads until the server closes the connection (or `limit` passes: then `None`).
async fn read_to_close(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut answer = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut answer)).await {
        Ok(_) => Some(String::from_utf8_lossy(&answer).into_owned()),
        Err(_) => None,
    }
}

fn limits() -> ConnectionLimits {
    ConnectionLimits {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        ..ConnectionLimits::default()
    }
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let mut node = Node::start(limits()).await;
    let mut slow = TcpStream::connect(node.address).await.unwrap();
    slow.write_all(b"GET /healthz HT").await.unwrap();
    let started = Instant::now();
    read_to_close(&mut slow, Duration::from_secs(5))
        .await
        .expect("disconnected after the header timeout, not held open");
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
    // A client that sends its request at once is served.
    let mut quick = TcpStream::connect(node.address).await.unwrap();
    quick
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut quick, Duration::from_secs(5)).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    node.shut_down().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_body_gets_408_and_is_disconnected() {
    let mut node = Node::start(limits()).await;
    let mut slow = TcpStream::connect(node.address).await.unwrap();
    let head = format!(
        "POST /v1/workspaces HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_KEY}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"name\""
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let answer = read_to_close(&mut slow, Duration::from_secs(5))
        .await
        .expect("answered and disconnected after the body timeout");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("RequestTimeout") && answer.contains("did not arrive"),
        "{answer}"
    );
    node.shut_down().await;
}

#[tokio::test]
async fn shutdown_ends_long_polls_at_once_with_what_they_have() {
    let mut node = Node::start(ConnectionLimits::default()).await;
    let mut polls = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(node.address).await.unwrap();
        let request = format!(
            "GET /v1/topics/orders/events?waitSeconds=60 HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_KEY}\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        polls.push(tokio::spawn(async move {
            read_to_close(&mut stream, Duration::from_secs(20)).await
        }));
    }
    // Let every poll reach its wait.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let took = node.shut_down().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    for poll in polls {
        let answer = poll.await.unwrap().expect("the long poll was answered and closed");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\"events\":[]"), "{answer}");
    }
}

#[tokio::test]
async fn shutdown_abandons_what_is_still_running_after_the_timeout() {
    let mut node = Node::start(ConnectionLimits {
        body_read_timeout: Duration::from_secs(60),
        shutdown_timeout: Duration::from_millis(500),
        ..ConnectionLimits::default()
    })
    .await;
    // A request whose body never comes holds its connection. It asks to be told when its
    // body is wanted: then the handler is reading it, however slow the machine.
    let mut slow = TcpStream::connect(node.address).await.unwrap();
    let head = format!(
        "POST /v1/workspaces HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_KEY}\r\n\
         content-type: application/json\r\ncontent-length: 100\r\nexpect: 100-continue\r\n\r\n"
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut answer = [0; 25];
    tokio::time::timeout(Duration::from_secs(20), slow.read_exact(&mut answer))
        .await
        .expect("the handler reads the body within 20 s")
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 100 Continue\r\n\r\n");
    slow.write_all(b"{").await.unwrap();
    let took = node.shut_down().await;
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "shutdown took {took:?}"
    );
    // The store is the caller's to close, and still works.
    assert!(node.api.store.list_subscriptions(None).await.is_ok());
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let mut node = Node::start(ConnectionLimits {
        max_connections: 2,
        ..ConnectionLimits::default()
    })
    .await;
    let first = TcpStream::connect(node.address).await.unwrap();
    let _second = TcpStream::connect(node.address).await.unwrap();
    let mut third = TcpStream::connect(node.address).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(
        read_to_close(&mut third, Duration::from_millis(500)).await,
        None,
        "the third connection waits while two are open"
    );
    drop(first);
    let answer = read_to_close(&mut third, Duration::from_secs(5))
        .await
        .expect("served once a slot is free");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    node.shut_down().await;
}
