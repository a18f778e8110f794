//! Delivery through a real `mlgrid serve` process, crashed mid-stream.

mod common;

use std::time::Duration;

use common::receiver::Receiver;
use common::{Server, orders, publish};

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
        let events = orders(batch * 100..(batch + 1) * 100);
        let response = publish(&http, endpoint, &key, &events).unwrap();
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
