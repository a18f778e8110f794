//! The `mlgrid` binary end to end: a real server process on a loopback port, driven by
//! the CLI and by plain HTTP.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BIN, Server, event, mode, publish};
use serde_json::{Value, json};

#[test]
fn first_start_writes_private_keys_and_the_cli_manages_resources() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data);
    assert_eq!(mode(&data.join("admin.key")), 0o600);
    assert_eq!(mode(&data.join("secret.key")), 0o600);
    let key = std::fs::read_to_string(data.join("admin.key")).unwrap();
    assert!(key.trim().starts_with("mlg_"));
    let db = std::fs::read(data.join("mlgrid.db")).unwrap();
    assert!(
        !db.windows(key.trim().len()).any(|w| w == key.trim().as_bytes()),
        "the key itself is not stored"
    );

    let ws = server.json(&[
        "workspace",
        "create",
        "--name",
        "ws1",
        "--resource-group",
        "rg1",
        "--subscription-id",
        "sub1",
    ]);
    assert_eq!(
        ws["topic"],
        "/subscriptions/sub1/resourceGroups/rg1/providers/Microsoft.MachineLearningServices/workspaces/ws1"
    );
    let table = server.cli(&["workspace", "list", "--output", "table"]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("ws1"));
    assert_eq!(server.json(&["workspace", "list"])[0]["name"], "ws1");

    server.json(&["topic", "create", "--name", "orders"]);
    let shown = server.json(&["topic", "show", "--name", "orders"]);
    assert_eq!(shown["endpoint"], format!("{}/topics/orders/api/events", server.url));
    let keys = server.json(&["topic", "key", "list", "--name", "orders"]);
    assert_eq!(keys.as_object().unwrap().len(), 2);
    let regenerated = server.json(&["topic", "key", "regenerate", "--name", "orders", "--key-name", "key2"]);
    assert_eq!(regenerated["key1"], keys["key1"]);
    assert_ne!(regenerated["key2"], keys["key2"]);

    let missing = server.cli(&["workspace", "show", "--name", "nope"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("NotFound: workspace `nope` not found"), "{stderr}");
    let bad_key = Command::new(BIN)
        .args(["--server", &server.url, "--api-key", "wrong", "workspace", "list"])
        .output()
        .unwrap();
    assert!(!bad_key.status.success());
    assert!(String::from_utf8_lossy(&bad_key.stderr).contains("Unauthorized"));
    let no_key = Command::new(BIN)
        .args([
            "--server",
            &server.url,
            "--data-dir",
            "/nonexistent",
            "workspace",
            "list",
        ])
        .env_remove("MLGRID_API_KEY")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&no_key.stderr).contains("--api-key"));
    assert!(server.json(&["workspace", "delete", "--name", "ws1"]).is_null());
    assert!(server.terminate(), "SIGTERM shuts the server down cleanly");
}

#[test]
fn events_list_and_tail_follow_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let topic = server.json(&["topic", "create", "--name", "feed"]);
    let key = server.json(&["topic", "key", "list", "--name", "feed"])["key1"]
        .as_str()
        .unwrap()
        .to_owned();
    let endpoint = topic["endpoint"].as_str().unwrap().to_owned();
    let http = reqwest::blocking::Client::new();
    assert!(
        publish(&http, &endpoint, &key, &json!([event("a"), event("b"), event("c")]))
            .unwrap()
            .status()
            .is_success()
    );

    let listed = server.json(&["events", "list", "--topic", "feed", "--after", "1", "--limit", "1"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["sequence"], 2);
    assert_eq!(listed[0]["event"]["id"], "b");

    let mut tail = Command::new(BIN)
        .args(["--server", &server.url, "--data-dir"])
        .arg(dir.path())
        .args(["events", "tail", "--topic", "feed", "--after", "2"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let lines = lines.clone();
        let stdout = tail.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                lines
                    .lock()
                    .unwrap()
                    .push(serde_json::from_str::<Value>(&line).unwrap());
            }
        })
    };
    // Once tail shows what was there, it follows what comes.
    let started = Instant::now();
    while lines.lock().unwrap().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(10), "tail showed nothing");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        publish(&http, &endpoint, &key, &json!([event("d")]))
            .unwrap()
            .status()
            .is_success()
    );
    let started = Instant::now();
    while lines.lock().unwrap().len() < 2 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "tail did not show the new event"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let seen: Vec<String> = lines
        .lock()
        .unwrap()
        .iter()
        .map(|r| r["event"]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, ["c", "d"]);
    tail.kill().unwrap();
    tail.wait().unwrap();
    reader.join().unwrap();
}

#[test]
fn sigterm_during_publishing_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let topic = server.json(&["topic", "create", "--name", "durable"]);
    let key = server.json(&["topic", "key", "list", "--name", "durable"])["key1"]
        .as_str()
        .unwrap()
        .to_owned();
    let endpoint = topic["endpoint"].as_str().unwrap().to_owned();
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let publishers: Vec<_> = (0..4)
        .map(|p| {
            let (endpoint, key, acknowledged) = (endpoint.clone(), key.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                for i in 0.. {
                    let id = format!("p{p}-{i}");
                    match publish(&http, &endpoint, &key, &json!([event(&id)])) {
                        Ok(r) if r.status().is_success() => acknowledged.lock().unwrap().push(id),
                        // Refused or cut off by the shutdown: not acknowledged, may or may not be stored.
                        _ => break,
                    }
                }
            })
        })
        .collect();
    // Stop it while the publishers are in full swing, however loaded the machine is.
    let started = std::time::Instant::now();
    while acknowledged.lock().unwrap().len() < 100 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the publishers do not get through"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(server.terminate(), "the server drains and exits cleanly");
    for p in publishers {
        p.join().unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() > 50,
        "publishers were running: {}",
        acknowledged.len()
    );

    let restarted = Server::start(dir.path());
    let stored = restarted.json(&["events", "list", "--topic", "durable", "--limit", "10000"]);
    let stored: std::collections::HashSet<String> = stored
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"]["id"].as_str().unwrap().to_owned())
        .collect();
    let lost: Vec<&String> = acknowledged.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
}

#[test]
fn sigterm_answers_open_long_polls_and_exits_within_seconds() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    server.json(&["topic", "create", "--name", "quiet"]);
    let key = std::fs::read_to_string(dir.path().join("admin.key")).unwrap();
    let address = server.url.trim_start_matches("http://").to_owned();
    let request = format!(
        "GET /v1/topics/quiet/events?waitSeconds=60 HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {}\r\n\r\n",
        key.trim()
    );
    let mut polls: Vec<std::net::TcpStream> = (0..200)
        .map(|_| {
            let mut stream = std::net::TcpStream::connect(&address).unwrap();
            stream.write_all(request.as_bytes()).unwrap();
            stream
        })
        .collect();
    // Every poll has reached its wait when a last request gets its answer.
    server.json(&["topic", "show", "--name", "quiet"]);
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    assert!(server.terminate(), "the server drains and exits cleanly");
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "SIGTERM with 200 long polls took {took:?}"
    );
    for stream in &mut polls {
        stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.contains("\"events\":[]"),
            "{answer}"
        );
    }
}

/// Microsoft's `azure-eventgrid` Python client publishes to mlgrid unchanged. Needs
/// `pip install -r tests/python/requirements.txt` (the test script and CI do it).
#[test]
fn azure_eventgrid_python_client_publishes() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    let topic = server.json(&["topic", "create", "--name", "sdk"]);
    let key = server.json(&["topic", "key", "list", "--name", "sdk"])["key2"]
        .as_str()
        .unwrap()
        .to_owned();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/azure_sdk_publish.py");
    let out = Command::new("python3")
        .arg(script)
        .arg(topic["endpoint"].as_str().unwrap())
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the azure-eventgrid client failed (pip install -r tests/python/requirements.txt?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = server.json(&["events", "list", "--topic", "sdk"]);
    let events: Vec<&Value> = log.as_array().unwrap().iter().collect();
    assert_eq!(events.len(), 4);
    let registered = &events[0]["event"];
    assert_eq!(events[0]["schema"], "EventGridSchema");
    assert_eq!(registered["id"], "sdk-eg-1");
    assert_eq!(
        registered["eventType"],
        "Microsoft.MachineLearningServices.ModelRegistered"
    );
    assert_eq!(registered["subject"], "models/churn:3");
    assert_eq!(registered["eventTime"], "2026-11-26T16:00:00.1234560Z");
    assert_eq!(
        registered["data"],
        json!({"ModelName": "churn", "ModelVersion": 3, "ModelTags": {"stage": "prod"}, "ModelProperties": {}})
    );
    assert_eq!(registered["dataVersion"], "1");
    assert_eq!(registered["metadataVersion"], "1");
    assert_eq!(registered["topic"], topic["id"]);
    assert_eq!(events[1]["event"]["data"], json!({"total": 12.5}));
    let cloud = &events[2];
    assert_eq!(cloud["schema"], "CloudEventSchemaV1_0");
    assert_eq!(cloud["event"]["specversion"], "1.0");
    assert_eq!(cloud["event"]["type"], "com.example.trained");
    assert_eq!(cloud["event"]["source"], "/mlgrid/tests");
    assert_eq!(cloud["event"]["subject"], "runs/7");
    assert_eq!(cloud["event"]["data"], json!({"accuracy": 0.93}));
    assert_eq!(events[3]["event"]["id"], "sdk-dict-1");
}

#[test]
fn bench_publish_prints_one_json_result_line() {
    let out = Command::new(BIN)
        .args([
            "bench",
            "publish",
            "--events",
            "300",
            "--batch",
            "30",
            "--size",
            "512",
            "--concurrency",
            "2",
        ])
        .env_remove("MLGRID_SERVER")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    for key in ["events_per_sec", "p50_ms", "p99_ms", "rss_mb"] {
        assert!(result[key].as_f64().is_some_and(|v| v > 0.0), "{key} in {result}");
    }
    assert_eq!(
        (
            result["stored_events"].as_u64(),
            result["requests"].as_u64(),
            result["errors"].as_u64()
        ),
        (Some(300), Some(10), Some(0))
    );
}
