//! The ML lifecycle through the `mlgrid` CLI, and the transactional outbox under a crash.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{Value, json};

fn event_types(events: &Value) -> Vec<String> {
    events
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            r["event"]["eventType"]
                .as_str()
                .unwrap()
                .trim_start_matches("Microsoft.MachineLearningServices.")
                .to_owned()
        })
        .collect()
}

#[test]
fn lifecycle_commands_raise_azure_ml_events() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    server.json(&["workspace", "create", "--name", "ml-ws"]);
    let ws = ["--workspace", "ml-ws"];
    let with_ws = |args: &[&str]| -> Value { server.json(&[args, &ws].concat()) };

    let run = with_ws(&[
        "run",
        "start",
        "--experiment",
        "train",
        "--tags",
        "team=ml",
        "stage=dev",
        "--properties",
        "lr=0.1",
    ]);
    let run_id = run["runId"].as_str().unwrap().to_owned();
    assert!(uuid::Uuid::parse_str(run["experimentId"].as_str().unwrap()).is_ok());
    assert_eq!(run["tags"], json!({"team": "ml", "stage": "dev"}));
    assert!(
        with_ws(&[
            "run",
            "log-metric",
            "--run-id",
            &run_id,
            "--name",
            "loss",
            "--value",
            "-0.5",
            "--step",
            "3"
        ])
        .is_null()
    );
    assert_eq!(with_ws(&["run", "metrics", "--run-id", &run_id])[0]["value"], -0.5);
    assert_eq!(
        with_ws(&["run", "complete", "--run-id", &run_id])["status"],
        "Completed"
    );
    let again = server.cli(&[&["run", "complete", "--run-id", &run_id][..], &ws].concat());
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("Conflict"),
        "a second completion is refused"
    );

    let child = with_ws(&[
        "run",
        "start",
        "--experiment",
        "train",
        "--parent",
        &run_id,
        "--run-type",
        "hyperdrive",
    ]);
    let failed = with_ws(&[
        "run",
        "fail",
        "--run-id",
        child["runId"].as_str().unwrap(),
        "--error",
        "diverged",
    ]);
    assert_eq!(
        (failed["status"].as_str(), failed["error"].as_str()),
        (Some("Failed"), Some("diverged"))
    );
    let cancelled = with_ws(&["run", "start", "--experiment", "other"]);
    with_ws(&["run", "cancel", "--run-id", cancelled["runId"].as_str().unwrap()]);
    assert_eq!(
        with_ws(&["run", "list", "--experiment", "train"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(with_ws(&["experiment", "list"]).as_array().unwrap().len(), 2);
    assert_eq!(with_ws(&["run", "show", "--run-id", &run_id])["status"], "Completed");

    assert_eq!(
        with_ws(&[
            "model",
            "register",
            "--name",
            "churn",
            "--path",
            "outputs/model.pkl",
            "--tags",
            "stage=dev"
        ])["version"],
        1
    );
    assert_eq!(
        with_ws(&["model", "register", "--name", "churn", "--description", "second"])["version"],
        2
    );
    assert_eq!(with_ws(&["model", "show", "--name", "churn"])["version"], 2);
    let updated = with_ws(&[
        "model",
        "update",
        "--name",
        "churn",
        "--version",
        "1",
        "--tags",
        "stage=prod",
        "--properties",
        "auc=0.91",
    ]);
    assert_eq!(
        (updated["tags"]["stage"].as_str(), updated["properties"]["auc"].as_str()),
        (Some("prod"), Some("0.91"))
    );
    let removed = with_ws(&[
        "model",
        "update",
        "--name",
        "churn",
        "--version",
        "1",
        "--remove-tags",
        "stage",
    ]);
    assert_eq!(removed["tags"], json!({}));
    assert!(
        with_ws(&["model", "archive", "--name", "churn", "--version", "2"])["archived"]
            .as_bool()
            .unwrap()
    );
    assert_eq!(with_ws(&["model", "list"]).as_array().unwrap().len(), 1);
    assert_eq!(
        with_ws(&["model", "list", "--include-archived"])
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let missing = server.cli(
        &[
            &[
                "model",
                "deploy",
                "--name",
                "churn-svc",
                "--model",
                "churn:1",
                "--model",
                "churn:9",
                "--compute-type",
                "AKS",
            ][..],
            &ws,
        ]
        .concat(),
    );
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("churn:9"));
    let deployed = with_ws(&[
        "model",
        "deploy",
        "--name",
        "churn-svc",
        "--model",
        "churn:1",
        "--compute-type",
        "aks",
        "--tags",
        "env=test",
    ]);
    assert_eq!(
        (deployed["computeType"].as_str(), deployed["modelIds"].as_str()),
        (Some("AKS"), Some("churn:1"))
    );
    assert_eq!(with_ws(&["deployment", "list"]).as_array().unwrap().len(), 1);
    assert_eq!(
        with_ws(&["deployment", "show", "--name", "churn-svc"])["tags"]["env"],
        "test"
    );
    assert!(with_ws(&["deployment", "delete", "--name", "churn-svc"]).is_null());

    assert_eq!(
        with_ws(&[
            "dataset",
            "register",
            "--name",
            "train-data",
            "--path",
            "data/train.csv"
        ])["version"],
        1
    );
    assert_eq!(
        with_ws(&["dataset", "show", "--name", "train-data"])["path"],
        "data/train.csv"
    );
    assert_eq!(with_ws(&["dataset", "list"]).as_array().unwrap().len(), 1);

    let events = server.json(&["events", "list", "--workspace", "ml-ws"]);
    assert_eq!(
        event_types(&events),
        [
            "RunCompleted",
            "RunStatusChanged",
            "ModelRegistered",
            "ModelRegistered",
            "ModelDeployed"
        ]
    );
    assert_eq!(events[1]["event"]["data"]["RunType"], "hyperdrive");
    assert_eq!(events[4]["event"]["data"]["ServiceTags"], json!({"env": "test"}));

    // Microsoft's Event Grid client parses what mlgrid raised, additions and all.
    let envelopes: Vec<Value> = events.as_array().unwrap().iter().map(|r| r["event"].clone()).collect();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/python/azure_sdk_parse.py");
    let mut python = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    python
        .stdin
        .take()
        .unwrap()
        .write_all(Value::Array(envelopes).to_string().as_bytes())
        .unwrap();
    let out = python.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "azure-eventgrid could not parse mlgrid's events:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 5);
}

/// What the crash test changed, as acknowledged by the server.
#[derive(Default)]
struct Acknowledged {
    completed: BTreeSet<String>,
    failed: BTreeSet<String>,
    models: BTreeSet<u64>,
}

#[test]
fn a_crash_never_separates_a_change_from_its_event() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path());
    server.json(&["workspace", "create", "--name", "crash-ws"]);
    let key = std::fs::read_to_string(dir.path().join("admin.key"))
        .unwrap()
        .trim()
        .to_owned();
    let acknowledged = Arc::new(Mutex::new(Acknowledged::default()));
    let writers: Vec<_> = (0..3)
        .map(|w| {
            let (url, key, acknowledged) = (server.url.clone(), key.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                let base = format!("{url}/v1/workspaces/crash-ws");
                let send = |method: reqwest::Method, path: &str, body: Value| -> Option<Value> {
                    let response = http
                        .request(method, format!("{base}{path}"))
                        .bearer_auth(&key)
                        .json(&body)
                        .send()
                        .ok()?;
                    response.status().is_success().then(|| response.json().ok()).flatten()
                };
                for i in 0.. {
                    let Some(run) = send(
                        reqwest::Method::POST,
                        "/runs",
                        json!({"experimentName": format!("exp{w}")}),
                    ) else {
                        return;
                    };
                    let run_id = run["runId"].as_str().unwrap().to_owned();
                    let status = if i % 2 == 0 { "Completed" } else { "Failed" };
                    if send(
                        reqwest::Method::PATCH,
                        &format!("/runs/{run_id}"),
                        json!({"status": status}),
                    )
                    .is_none()
                    {
                        return;
                    }
                    let mut ack = acknowledged.lock().unwrap();
                    if status == "Completed" {
                        ack.completed.insert(run_id)
                    } else {
                        ack.failed.insert(run_id)
                    };
                    drop(ack);
                    let Some(model) = send(reqwest::Method::POST, "/models", json!({"name": "crashy"})) else {
                        return;
                    };
                    acknowledged
                        .lock()
                        .unwrap()
                        .models
                        .insert(model["version"].as_u64().unwrap());
                }
            })
        })
        .collect();
    // Crash it while the writers are busy, however loaded the machine is.
    let started = Instant::now();
    while {
        let ack = acknowledged.lock().unwrap();
        ack.completed.len() + ack.models.len() <= 20
    } {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the writers do not get through"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    server.crash();
    for w in writers {
        w.join().unwrap();
    }
    let ack = std::mem::take(&mut *acknowledged.lock().unwrap());
    assert!(
        ack.completed.len() + ack.models.len() > 20,
        "the writers were busy when the server died"
    );

    let server = Server::start(dir.path());
    let events = server.json(&["events", "list", "--workspace", "crash-ws", "--limit", "10000"]);
    let mut raised: BTreeMap<(String, String), usize> = BTreeMap::new();
    for record in events.as_array().unwrap() {
        let event = &record["event"];
        let kind = event["eventType"]
            .as_str()
            .unwrap()
            .trim_start_matches("Microsoft.MachineLearningServices.")
            .to_owned();
        let key = match kind.as_str() {
            "ModelRegistered" => event["data"]["ModelVersion"].to_string(),
            _ => event["data"]["RunId"].as_str().unwrap().to_owned(),
        };
        *raised.entry((kind, key)).or_default() += 1;
    }
    assert!(raised.values().all(|&n| n == 1), "an event raised twice: {raised:?}");

    // Every stored change has exactly one event, and every event has its change.
    let runs = server.json(&["run", "list", "--workspace", "crash-ws"]);
    let mut expected: BTreeSet<(String, String)> = BTreeSet::new();
    for run in runs.as_array().unwrap() {
        let run_id = run["runId"].as_str().unwrap().to_owned();
        match run["status"].as_str().unwrap() {
            "Completed" => expected.insert(("RunCompleted".to_owned(), run_id)),
            "Failed" => expected.insert(("RunStatusChanged".to_owned(), run_id)),
            _ => false,
        };
    }
    for model in server
        .json(&["model", "list", "--workspace", "crash-ws"])
        .as_array()
        .unwrap()
    {
        expected.insert(("ModelRegistered".to_owned(), model["version"].to_string()));
    }
    let got: BTreeSet<(String, String)> = raised.into_keys().collect();
    assert_eq!(got, expected, "changes and events match one to one");

    // And nothing acknowledged was lost.
    for run_id in &ack.completed {
        assert!(
            got.contains(&("RunCompleted".to_owned(), run_id.clone())),
            "completed run {run_id} lost"
        );
    }
    for run_id in &ack.failed {
        assert!(
            got.contains(&("RunStatusChanged".to_owned(), run_id.clone())),
            "failed run {run_id} lost"
        );
    }
    for version in &ack.models {
        assert!(
            got.contains(&("ModelRegistered".to_owned(), version.to_string())),
            "model version {version} lost"
        );
    }
}
