//! Delivery through a real `mlgrid serve` process, crashed mid-stream.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, publish};
use serde_json::{Value, json};

/// A receiver on a loopback port, in its own thread: answers the validation handshake
/// and counts how often each event id arrives.
struct Receiver {
    url: String,
    seen: Arc<Mutex<HashMap<String, u32>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let seen: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
        let log = seen.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let app = axum::Router::new().route(
                    "/hook",
                    axum::routing::post(move |body: String| {
                        let log = log.clone();
                        async move {
                            let events: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                            if events[0]["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent" {
                                return json!({"validationResponse": events[0]["data"]["validationCode"]}).to_string();
                            }
                            let mut seen = log.lock().unwrap();
                            for event in events.as_array().into_iter().flatten() {
                                *seen
                                    .entry(event["id"].as_str().unwrap_or_default().to_owned())
                                    .or_default() += 1;
                            }
                            String::new()
                        }
                    }),
                );
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app).await.unwrap();
            });
        });
        Receiver { url, seen }
    }

    /// Distinct events received, and deliveries beyond the first of each.
    fn counts(&self) -> (usize, u32) {
        let seen = self.seen.lock().unwrap();
        (seen.len(), seen.values().map(|n| n - 1).sum())
    }

    fn wait_for(&self, distinct: usize, within: Duration) {
        let started = Instant::now();
        while self.counts().0 < distinct {
            assert!(
                started.elapsed() < within,
                "only {:?} of {distinct} events arrived",
                self.counts()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

const EVENTS: usize = 10_000;

#[test]
fn a_crash_mid_delivery_loses_no_event() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--allow-loopback-webhooks"];
    let server = Server::start_with(dir.path(), &flags);
    let receiver = Receiver::start();
    let topic = server.json(&["topic", "create", "--name", "orders"]);
    let created = server.json(&[
        "event-subscription",
        "create",
        "--topic",
        "orders",
        "--name",
        "all",
        "--endpoint",
        &receiver.url,
    ]);
    assert_eq!(
        created["properties"]["provisioningState"], "Succeeded",
        "the handshake passed"
    );
    let key = server.json(&["topic", "key", "list", "--name", "orders"])["key1"]
        .as_str()
        .unwrap()
        .to_owned();
    let endpoint = topic["endpoint"].as_str().unwrap();
    let http = reqwest::blocking::Client::new();
    for batch in 0..EVENTS / 100 {
        let events: Vec<Value> = (batch * 100..(batch + 1) * 100)
            .map(|n| {
                json!({"id": format!("e{n}"), "subject": "orders/1", "eventType": "Shop.OrderPlaced",
                            "eventTime": "2026-11-26T16:00:00Z", "data": {"n": n}})
            })
            .collect();
        let response = publish(&http, endpoint, &key, &Value::Array(events)).unwrap();
        assert!(response.status().is_success());
    }

    receiver.wait_for(EVENTS / 10, Duration::from_secs(60));
    server.crash();
    let at_crash = receiver.counts();
    assert!(
        at_crash.0 < EVENTS,
        "the crash came too late to test anything: {at_crash:?}"
    );

    let server = Server::start_with(dir.path(), &flags);
    receiver.wait_for(EVENTS, Duration::from_secs(120));
    let (distinct, duplicates) = receiver.counts();
    eprintln!(
        "crash test: {EVENTS} events, {} received before kill -9, {distinct} distinct after restart, {duplicates} duplicates",
        at_crash.0
    );
    let seen = receiver.seen.lock().unwrap();
    assert!((0..EVENTS).all(|n| seen.contains_key(&format!("e{n}"))));
    drop(seen);
    let stats =
        server.json(&["event-subscription", "show", "--topic", "orders", "--name", "all"])["deliveryStats"].clone();
    assert_eq!(stats["delivered"], EVENTS as u64, "{stats}");
    assert_eq!(stats["backlog"], 0, "{stats}");
}
