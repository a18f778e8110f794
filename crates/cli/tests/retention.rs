//! Retention from the command line: per-topic flags, `prune --dry-run`, the background
//! pruner of `serve`, and the note `events list` prints when events are gone.

mod common;

use std::time::{Duration, Instant};

use common::{Server, event, publish};
use serde_json::{Value, json};

#[test]
fn retention_flags_prune_and_the_note_on_pruned_reads() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(dir.path(), &["--retention", "3d", "--prune-every-seconds", "1"]);
    let topic = server.json(&["topic", "create", "--name", "feed", "--retention", "12h"]);
    assert_eq!(topic["retention"], json!({"time": "12h", "timeIsServerDefault": false}));
    let ws = server.json(&["workspace", "create", "--name", "ws1"]);
    assert_eq!(ws["retention"], json!({"time": "3d", "timeIsServerDefault": true}));

    let key = server.json(&["topic", "key", "list", "--name", "feed"])["key1"]
        .as_str()
        .unwrap()
        .to_owned();
    let events: Vec<Value> = (0..5).map(|i| event(&format!("e{i}"))).collect();
    let http = reqwest::blocking::Client::new();
    let sent = publish(&http, topic["endpoint"].as_str().unwrap(), &key, &Value::Array(events)).unwrap();
    assert!(sent.status().is_success());

    let nothing = server.cli(&["topic", "update", "--name", "feed"]);
    assert!(!nothing.status.success());
    assert!(String::from_utf8_lossy(&nothing.stderr).contains("give --retention"));
    let bad = server.cli(&["topic", "update", "--name", "feed", "--retention", "2 weeks"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("e.g. 30m, 12h, 7d"));

    // A size of one byte: every event must go. Updating the size keeps the time.
    let updated = server.json(&["topic", "update", "--name", "feed", "--retention-bytes", "1"]);
    assert_eq!(
        updated["retention"],
        json!({"time": "12h", "timeIsServerDefault": false, "maxBytes": 1})
    );
    let dry = server.json(&["prune", "--dry-run"]);
    // The background pass may have run between the update and the dry run.
    if let Some(row) = dry.as_array().unwrap().first() {
        assert_eq!(
            (row["collection"].as_str(), row["name"].as_str()),
            (Some("topics"), Some("feed"))
        );
        assert_eq!(row["events"], 5);
    }

    // The server prunes in the background, every second here.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let shown = server.json(&["topic", "show", "--name", "feed"]);
        if shown["firstAvailableSequence"] == 6 {
            assert_eq!(shown["lastSequence"], 5);
            break;
        }
        assert!(Instant::now() < deadline, "not pruned in the background: {shown}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(server.json(&["prune"]), json!([]));

    let listed = server.cli(&["events", "list", "--topic", "feed", "--after", "0"]);
    assert!(listed.status.success());
    assert_eq!(serde_json::from_slice::<Value>(&listed.stdout).unwrap(), json!([]));
    let note = String::from_utf8_lossy(&listed.stderr);
    assert!(note.contains("events 1..5 were pruned"), "{note}");

    let reset = server.json(&[
        "topic",
        "update",
        "--name",
        "feed",
        "--retention",
        "default",
        "--retention-bytes",
        "none",
    ]);
    assert_eq!(reset["retention"], json!({"time": "3d", "timeIsServerDefault": true}));
}
