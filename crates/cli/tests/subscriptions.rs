//! Event subscriptions and access control through the `mlgrid` CLI, against a running
//! server whose fan-out records the matches.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Server, publish};
use serde_json::{Value, json};

fn order(id: &str, subject: &str, total: f64, stage: &str) -> Value {
    json!({"id": id, "subject": subject, "eventType": "Shop.OrderPlaced", "eventTime": "2026-11-26T16:00:00Z",
           "data": {"total": total, "stage": stage}})
}

/// The ids of the events a subscription matched, once the fan-out has recorded `want`.
fn matched(server: &Server, name: &str, want: usize) -> Vec<String> {
    let started = Instant::now();
    loop {
        let events = server.json(&["event-subscription", "events", "--topic", "shop", "--name", name]);
        let ids: Vec<String> = events
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["event"]["id"].as_str().unwrap().to_owned())
            .collect();
        if ids.len() >= want || started.elapsed() > Duration::from_secs(10) {
            return ids;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn subscriptions_with_advanced_filters_record_their_matches() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let topic = server.json(&["topic", "create", "--name", "shop"]);
    let created = server.json(&[
        "event-subscription",
        "create",
        "--topic",
        "shop",
        "--name",
        "big-prod",
        "--endpoint",
        "https://hooks.example/big",
        "--included-event-types",
        "Shop.OrderPlaced",
        "--subject-begins-with",
        "orders/",
        "--advanced-filter",
        "data.total",
        "NumberInRange",
        "100,1000",
        "5000,9000",
        "--advanced-filter",
        "data.stage",
        "StringIn",
        "prod",
        "staging",
        "--max-delivery-attempts",
        "7",
        "--event-ttl",
        "60",
        "--labels",
        "team-a",
        "urgent",
    ]);
    let filters = &created["properties"]["filter"]["advancedFilters"];
    assert_eq!(
        filters.as_array().unwrap().len(),
        2,
        "each --advanced-filter is its own filter: {filters}"
    );
    assert_eq!(
        created["properties"]["retryPolicy"],
        json!({"maxDeliveryAttempts": 7, "eventTimeToLiveInMinutes": 60})
    );
    let by_id = server.json(&[
        "event-subscription",
        "create",
        "--source-resource-id",
        topic["id"].as_str().unwrap(),
        "--name",
        "all",
        "--endpoint",
        "https://hooks.example/all",
    ]);
    assert_eq!(by_id["properties"]["topic"], topic["id"]);
    assert_eq!(
        server
            .json(&["event-subscription", "list", "--topic", "shop"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let key = server.json(&["topic", "key", "list", "--name", "shop"])["key1"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = reqwest::blocking::Client::new();
    let events = json!([
        order("a", "orders/1", 150.0, "prod"),
        order("b", "orders/2", 150.0, "dev"),
        order("c", "orders/3", 2000.0, "prod"),
        order("d", "returns/4", 150.0, "Prod"),
        order("e", "orders/5", 6000.0, "STAGING"),
    ]);
    assert!(
        publish(&http, topic["endpoint"].as_str().unwrap(), &key, &events)
            .unwrap()
            .status()
            .is_success()
    );
    assert_eq!(matched(&server, "big-prod", 2), ["a", "e"]);
    assert_eq!(matched(&server, "all", 5).len(), 5);

    let updated = server.json(&[
        "event-subscription",
        "update",
        "--topic",
        "shop",
        "--name",
        "big-prod",
        "--advanced-filter",
        "data.total",
        "NumberGreaterThan",
        "1000",
    ]);
    assert_eq!(
        updated["properties"]["filter"]["advancedFilters"],
        json!([{"operatorType": "NumberGreaterThan", "key": "data.total", "value": 1000}])
    );
    assert_eq!(
        updated["properties"]["labels"],
        json!(["team-a", "urgent"]),
        "update keeps what it was not told to change"
    );
    assert_eq!(
        updated["properties"]["destination"]["properties"]["endpointUrl"],
        "https://hooks.example/big"
    );

    let bad = server.cli(&[
        "event-subscription",
        "create",
        "--topic",
        "shop",
        "--name",
        "bad",
        "--endpoint",
        "https://x.example/",
        "--advanced-filter",
        "data.n",
        "NumberIn",
        "many",
    ]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("`many`"));
    let bad_op = server.cli(&[
        "event-subscription",
        "create",
        "--topic",
        "shop",
        "--name",
        "bad",
        "--endpoint",
        "https://x.example/",
        "--advanced-filter",
        "data.n",
        "NumberAbout",
        "1",
    ]);
    assert!(String::from_utf8_lossy(&bad_op.stderr).contains("NumberAbout"));
    let no_endpoint = server.cli(&["event-subscription", "create", "--topic", "shop", "--name", "bad"]);
    assert!(String::from_utf8_lossy(&no_endpoint.stderr).contains("--endpoint"));
    assert!(
        server
            .json(&["event-subscription", "delete", "--topic", "shop", "--name", "all"])
            .is_null()
    );
}

#[test]
fn principals_and_roles_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    server.json(&["workspace", "create", "--name", "ws1"]);
    let alice = server.json(&["principal", "create", "--name", "alice"]);
    let key = alice["key"].as_str().unwrap().to_owned();
    let as_alice = |args: &[&str]| {
        Command::new(BIN)
            .args(["--server", &server.url, "--api-key", &key])
            .args(args)
            .output()
            .unwrap()
    };

    let refused = as_alice(&["workspace", "show", "--name", "ws1"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Forbidden: this call needs the Reader"));
    server.json(&[
        "role",
        "assignment",
        "create",
        "--assignee",
        "alice",
        "--role",
        "Reader",
        "--workspace",
        "ws1",
    ]);
    assert!(as_alice(&["workspace", "show", "--name", "ws1"]).status.success());
    let listed = server.json(&["role", "assignment", "list", "--assignee", "alice"]);
    assert_eq!(
        (listed[0]["role"].as_str(), listed[0]["workspace"].as_str()),
        (Some("Reader"), Some("ws1"))
    );
    assert_eq!(server.json(&["principal", "list"]).as_array().unwrap().len(), 2);

    server.json(&[
        "role",
        "assignment",
        "delete",
        "--assignee",
        "alice",
        "--role",
        "Reader",
        "--workspace",
        "ws1",
    ]);
    assert!(!as_alice(&["workspace", "show", "--name", "ws1"]).status.success());
    server.json(&[
        "role",
        "assignment",
        "create",
        "--assignee",
        "alice",
        "--role",
        "reader",
        "--workspace",
        "ws1",
    ]);
    let revoked = server.json(&["principal", "key", "revoke", "--name", "alice"]);
    assert_eq!(revoked["revoked"], 1);
    let after = as_alice(&["workspace", "show", "--name", "ws1"]);
    assert!(
        String::from_utf8_lossy(&after.stderr).contains("Unauthorized"),
        "a revoked key stops working at once"
    );
    let fresh = server.json(&["principal", "key", "create", "--name", "alice"]);
    let fresh_key = fresh["key"].as_str().unwrap();
    let ok = Command::new(BIN)
        .args([
            "--server",
            &server.url,
            "--api-key",
            fresh_key,
            "workspace",
            "show",
            "--name",
            "ws1",
        ])
        .output()
        .unwrap();
    assert!(ok.status.success());
}
