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
        "https://hooks.example/big?code=TOPSECRET",
        "--skip-validation",
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
        "--skip-validation",
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
    // The endpoint's query (a secret, often) is shown only on request, to Contributors.
    assert_eq!(
        updated["properties"]["destination"]["properties"],
        json!({"endpointBaseUrl": "https://hooks.example/big"}),
        "update keeps the endpoint, shows it without its query"
    );
    let full = server.json(&[
        "event-subscription",
        "show",
        "--topic",
        "shop",
        "--name",
        "big-prod",
        "--include-full-endpoint-url",
    ]);
    assert_eq!(
        full["properties"]["destination"]["properties"],
        json!({"endpointUrl": "https://hooks.example/big?code=TOPSECRET"}),
        "update put the whole URL back"
    );

    // A value the operator cannot take, and an operator that does not exist.
    for (operator, value, named) in [("NumberIn", "many", "`many`"), ("NumberAbout", "1", "NumberAbout")] {
        let bad = server.cli(&[
            "event-subscription",
            "create",
            "--topic",
            "shop",
            "--name",
            "bad",
            "--endpoint",
            "https://x.example/",
            "--skip-validation",
            "--advanced-filter",
            "data.n",
            operator,
            value,
        ]);
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(!bad.status.success() && stderr.contains(named), "{stderr}");
    }
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

    // Grants alice a role on ws1, or takes it back.
    let assign_alice = |action: &str, role: &str| {
        server.json(&[
            "role",
            "assignment",
            action,
            "--assignee",
            "alice",
            "--role",
            role,
            "--workspace",
            "ws1",
        ])
    };
    let refused = as_alice(&["workspace", "show", "--name", "ws1"]);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Forbidden: this call needs the Reader"));
    assign_alice("create", "Reader");
    assert!(as_alice(&["workspace", "show", "--name", "ws1"]).status.success());
    let listed = server.json(&["role", "assignment", "list", "--assignee", "alice"]);
    assert_eq!(
        (listed[0]["role"].as_str(), listed[0]["workspace"].as_str()),
        (Some("Reader"), Some("ws1"))
    );
    assert_eq!(server.json(&["principal", "list"]).as_array().unwrap().len(), 2);

    assign_alice("delete", "Reader");
    assert!(!as_alice(&["workspace", "show", "--name", "ws1"]).status.success());
    assign_alice("create", "reader");
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

/// A receiver on a free loopback port that answers the validation handshake, then
/// every delivery with `status`, and counts the deliveries.
fn answering(status: &'static str) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Read the head, then the body its Content-Length announces.
            loop {
                let n = stream.read(&mut buf).unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
            }
            let text = String::from_utf8_lossy(&request).to_string();
            let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
            let events: Value = serde_json::from_str(body).unwrap_or(Value::Null);
            if events[0]["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent" {
                let answer = json!({"validationResponse": events[0]["data"]["validationCode"]}).to_string();
                let _ = stream.write_all(
                    format!(
                        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                        answer.len()
                    )
                    .as_bytes(),
                );
                continue;
            }
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = stream
                .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\nconnection: close\r\n\r\nno").as_bytes());
        }
    });
    (url, count)
}

#[test]
fn dead_letters_are_listed_redelivered_and_purged() {
    let dir = tempfile::tempdir().unwrap();
    let metrics_address = format!("127.0.0.1:{}", common::free_port());
    let server = Server::start_with(
        dir.path(),
        &[
            "--allow-loopback-webhooks",
            "--retry-time-scale",
            "0.001",
            "--metrics-listen",
            &metrics_address,
        ],
    );
    let topic = server.json(&["topic", "create", "--name", "shop"]);
    let (url, requests) = answering("400 Bad Request");
    server.json(&[
        "event-subscription",
        "create",
        "--topic",
        "shop",
        "--name",
        "strict",
        "--endpoint",
        &url,
        "--deadletter-folder",
        "deadletters",
    ]);
    let key = server.json(&["topic", "key", "list", "--name", "shop"])["key1"]
        .as_str()
        .unwrap()
        .to_owned();
    let http = reqwest::blocking::Client::new();
    let events = json!([order("a", "orders/1", 1.0, "prod"), order("b", "orders/2", 2.0, "prod")]);
    assert!(
        publish(&http, topic["endpoint"].as_str().unwrap(), &key, &events)
            .unwrap()
            .status()
            .is_success()
    );

    let sub = ["--topic", "shop", "--name", "strict"];
    let started = Instant::now();
    let dead = loop {
        let dead = server.json(&[&["event-subscription", "deadletter", "list"][..], &sub].concat());
        if dead.as_array().unwrap().len() == 2 || started.elapsed() > Duration::from_secs(10) {
            break dead;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(dead.as_array().unwrap().len(), 2, "{dead}");
    assert_eq!(dead[0]["deadLetterReason"], "NonRetriableStatus");
    assert_eq!(dead[0]["lastHttpStatusCode"], 400);
    assert_eq!(dead[0]["deliveryAttempts"], 1);
    assert_eq!(dead[0]["event"]["id"], "a");
    // Also written to the datastore folder, as Event Grid writes them to blob storage.
    let folder = dir.path().join("datastores/workspaceblobstore/deadletters/SHOP/STRICT");
    let started = Instant::now();
    let written = loop {
        let written = dead_letter_files(&folder);
        if written.len() == 2 || started.elapsed() > Duration::from_secs(10) {
            break written;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let ids: Vec<&str> = written.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{written:?}");
    assert!(ids.contains(&"a") && ids.contains(&"b"));
    assert_eq!(written[0]["deadLetterReason"], "NonRetriableStatus");
    let shown = server.json(&[&["event-subscription", "show"][..], &sub].concat());
    assert_eq!(shown["deliveryStats"]["deadLettered"], 2);
    let attempts = server.json(&[&["event-subscription", "attempts"][..], &sub].concat());
    assert_eq!(attempts[0]["outcome"], "Http400");
    assert_eq!(attempts[0]["responseExcerpt"], "no");

    // The names of every source and subscription: on the API's listener only with a key.
    let refused = http.get(format!("{}/metrics", server.url)).send().unwrap();
    assert_eq!(refused.status(), 401);
    let admin_key = std::fs::read_to_string(dir.path().join("admin.key")).unwrap();
    let keyed = http
        .get(format!("{}/metrics", server.url))
        .bearer_auth(admin_key.trim())
        .send()
        .unwrap();
    assert_eq!(keyed.status(), 200);
    let metrics = http
        .get(format!("http://{metrics_address}/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    for needle in [
        "mlgrid_events_published_total 2",
        "mlgrid_events_matched_total 2",
        "mlgrid_events_dead_lettered_total 2",
        "mlgrid_delivery_attempt_seconds",
        "mlgrid_delivery_backlog{source_kind=\"topic\",source=\"shop\",subscription=\"strict\"} 0",
    ] {
        assert!(metrics.contains(needle), "`{needle}` missing from /metrics:\n{metrics}");
    }
    let sequence = dead[0]["sequence"].to_string();
    let shown = server.json(
        &[
            &["event-subscription", "deadletter", "show", "--sequence", &sequence][..],
            &sub,
        ]
        .concat(),
    );
    assert_eq!(shown["event"]["id"], "a");
    let none = server.json(
        &[
            &[
                "event-subscription",
                "deadletter",
                "redeliver",
                "--reason",
                "TimeToLiveExceeded",
            ][..],
            &sub,
        ]
        .concat(),
    );
    assert_eq!(none["count"], 0, "no dead letter has that reason");
    let redelivered = server.json(
        &[
            &["event-subscription", "deadletter", "redeliver", "--sequence", &sequence][..],
            &sub,
        ]
        .concat(),
    );
    assert_eq!(redelivered["count"], 1);
    let started = Instant::now();
    while requests.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the redelivery was not attempted"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let purged = server.json(&[&["event-subscription", "deadletter", "purge"][..], &sub].concat());
    assert!(purged["count"].as_u64().unwrap() >= 1);
}

/// The dead letters in every file under a folder.
fn dead_letter_files(folder: &std::path::Path) -> Vec<Value> {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return Vec::new();
    };
    let mut events = Vec::new();
    for entry in entries.flatten() {
        if entry.path().is_dir() {
            events.extend(dead_letter_files(&entry.path()));
        } else if let Ok(Value::Array(written)) = serde_json::from_slice(&std::fs::read(entry.path()).unwrap()) {
            events.extend(written);
        }
    }
    events
}
