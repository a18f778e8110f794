//! Three `mlgrid serve` nodes on one PostgreSQL: one is killed mid-stream, and nothing is
//! lost. Needs the PostgreSQL server at `MLGRID_TEST_DATABASE_URL` (scripts/test makes
//! sure it runs); fails, never skips, without it.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::receiver::Receiver;
use common::{Server, orders, publish};
use serde_json::{Value, json};

const EVENTS: usize = 20_000;
const KEY: &str = "cluster-test-owner-key-0123456789abcdef";
/// A fixed server secret (32 bytes, base64) shared by the nodes.
const SECRET: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn database_url() -> String {
    std::env::var("MLGRID_TEST_DATABASE_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema of its own for one test run, dropped afterwards.
struct Schema {
    name: String,
}

impl Schema {
    fn create() -> Schema {
        let name = format!("cluster_{}", uuid::Uuid::new_v4().simple());
        psql(&format!("CREATE SCHEMA {name}"));
        Schema { name }
    }

    /// The URL the nodes use: the test database, working in this schema.
    fn node_url(&self) -> String {
        let base = database_url();
        let separator = if base.contains('?') { '&' } else { '?' };
        format!("{base}{separator}options%5Bsearch_path%5D={}", self.name)
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        psql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name));
    }
}

fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([&database_url(), "-v", "ON_ERROR_STOP=1", "-q", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "PostgreSQL at {} refused `{sql}` (is it running? scripts/test starts it): {}",
        database_url(),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Node {
    server: Server,
    _dir: tempfile::TempDir,
}

fn node(schema: &Schema, name: &str) -> Node {
    let dir = tempfile::tempdir().unwrap();
    let url = schema.node_url();
    let flags = [
        "--allow-loopback-webhooks",
        "--database-url",
        url.as_str(),
        "--node-id",
        name,
        "--delivery-lease-seconds",
        "3",
    ];
    let env = [("MLGRID_SECRET", SECRET), ("MLGRID_BOOTSTRAP_KEY", KEY)];
    Node {
        server: Server::start_with_env(dir.path(), &flags, &env),
        _dir: dir,
    }
}

fn call(http: &reqwest::blocking::Client, method: reqwest::Method, url: String, body: Option<Value>) -> Value {
    let mut request = http.request(method, &url).bearer_auth(KEY);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().unwrap();
    let status = response.status();
    let text = response.text().unwrap();
    assert!(status.is_success(), "{url}: {status} {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

#[test]
fn three_nodes_lose_nothing_when_one_is_killed() {
    let schema = Schema::create();
    let nodes: Vec<Node> = ["node-a", "node-b", "node-c"]
        .iter()
        .map(|n| node(&schema, n))
        .collect();
    let urls: Vec<String> = nodes.iter().map(|n| n.server.url.clone()).collect();
    let http = reqwest::blocking::Client::new();
    let receiver = Receiver::start();

    let topic = call(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/topics", urls[0]),
        Some(json!({"name": "orders"})),
    );
    let subscription = json!({"properties": {"destination": {"endpointType": "WebHook", "properties": {"endpointUrl": receiver.url}}}});
    let created = call(
        &http,
        reqwest::Method::PUT,
        format!("{}/v1/topics/orders/eventSubscriptions/all", urls[1]),
        Some(subscription),
    );
    assert_eq!(created["properties"]["provisioningState"], "Succeeded");
    let key = call(
        &http,
        reqwest::Method::POST,
        format!("{}/v1/topics/orders/listKeys", urls[2]),
        None,
    )["key1"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = topic["endpoint"]
        .as_str()
        .unwrap()
        .split("/topics/")
        .nth(1)
        .unwrap()
        .to_owned();

    // Publish through every live node in turn; kill node B a fifth of the way through
    // delivery.
    let mut nodes = nodes;
    let mut alive = urls.clone();
    let mut received_at_kill = 0;
    let mut kill_b = |nodes: &mut Vec<Node>, alive: &mut Vec<String>| {
        received_at_kill = receiver.counts().0;
        let killed = nodes.remove(1);
        alive.retain(|u| *u != killed.server.url);
        killed.server.crash();
    };
    for batch in 0..EVENTS / 100 {
        let target = &alive[batch % alive.len()];
        let response = publish(
            &http,
            &format!("{target}/topics/{path}"),
            &key,
            &orders(batch * 100..(batch + 1) * 100),
        )
        .unwrap();
        assert!(
            response.status().is_success(),
            "{}",
            response.text().unwrap_or_default()
        );
        if nodes.len() == 3 && receiver.counts().0 >= EVENTS / 5 {
            kill_b(&mut nodes, &mut alive);
        }
    }
    if nodes.len() == 3 {
        receiver.wait_for(EVENTS / 5, Duration::from_secs(120));
        kill_b(&mut nodes, &mut alive);
    }
    receiver.wait_for(EVENTS, Duration::from_secs(240));
    let (distinct, duplicates) = receiver.counts();
    eprintln!(
        "cluster test: {EVENTS} events through 3 nodes, one killed by kill -9 after {received_at_kill} had arrived; \
         {distinct} distinct received, {duplicates} duplicates"
    );

    // The topic's log: sequences 1..=EVENTS, no gap, no repeat.
    let mut sequences = Vec::new();
    let mut after = 0;
    loop {
        let page = call(
            &http,
            reqwest::Method::GET,
            format!("{}/v1/topics/orders/events?after={after}&limit=10000", urls[0]),
            None,
        );
        let events = page["events"].as_array().unwrap();
        if events.is_empty() {
            break;
        }
        sequences.extend(events.iter().map(|e| e["sequence"].as_u64().unwrap()));
        after = page["lastSequence"].as_u64().unwrap();
    }
    assert_eq!(
        sequences,
        (1..=EVENTS as u64).collect::<Vec<_>>(),
        "gap-free, increasing, no repeats"
    );

    // A long poll on one node sees an event published on another.
    let waiting = {
        let url = format!("{}/v1/topics/orders/events?after={EVENTS}&waitSeconds=10", urls[2]);
        std::thread::spawn(move || {
            let started = Instant::now();
            let page = call(&reqwest::blocking::Client::new(), reqwest::Method::GET, url, None);
            (page, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let one = json!([{"id": "late", "subject": "orders/2", "eventType": "Shop.OrderPlaced", "eventTime": "2026-11-26T16:00:00Z", "data": {}}]);
    assert!(
        publish(&http, &format!("{}/topics/{path}", urls[0]), &key, &one)
            .unwrap()
            .status()
            .is_success()
    );
    let (page, waited) = waiting.join().unwrap();
    assert_eq!(page["events"][0]["event"]["id"], "late");
    assert!(
        waited < Duration::from_secs(5),
        "woken by the other node's append: {waited:?}"
    );
    drop(nodes);
}
