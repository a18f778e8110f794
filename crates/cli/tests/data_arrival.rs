//! Data-arrival events end to end, in real time: a datastore watch publishes a
//! `Microsoft.Storage.BlobCreated` event into a custom topic for each file dropped into a
//! local-folder datastore, and a webhook subscription filtered on `subjectEndsWith: .csv`
//! receives the CSV's event and not the text file's. A restart publishes nothing again.
//! The watcher's rules are tested pass by pass in the pipelines crate.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use common::receiver::Receiver;
use serde_json::Value;

/// The topic's events, once `enough` accepts them.
fn events_until(server: &Server, enough: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let listed = server.json(&["events", "list", "--topic", "arrivals", "--limit", "100"]);
        let events: Vec<Value> = listed
            .as_array()
            .into_iter()
            .flatten()
            .map(|entry| entry["event"].clone())
            .collect();
        if enough(&events) {
            return events;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the topic holds only {events:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn a_dropped_csv_reaches_the_subscription_filtered_on_csv_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(lake.join("incoming")).unwrap();
    let flags = ["--allow-loopback-webhooks", "--min-polling-seconds", "1"];
    let server = Server::start_with(dir.path(), &flags);
    server.json(&["workspace", "create", "-n", "mlws"]);
    server.json(&[
        "datastore",
        "create",
        "-w",
        "mlws",
        "-n",
        "lake",
        "--type",
        "local",
        "--path",
        lake.to_str().unwrap(),
    ]);
    server.json(&["topic", "create", "--name", "arrivals"]);
    let receiver = Receiver::start();
    server.json(&[
        "event-subscription",
        "create",
        "--topic",
        "arrivals",
        "--name",
        "csv-only",
        "--endpoint",
        &receiver.url,
        "--subject-ends-with",
        ".csv",
    ]);
    let outside = server.cli(&[
        "datastore",
        "watch",
        "create",
        "-w",
        "mlws",
        "--datastore",
        "lake",
        "-n",
        "bad",
        "--topic",
        "arrivals",
        "--path",
        "../etc",
    ]);
    assert!(!outside.status.success());
    let watch = server.json(&[
        "datastore",
        "watch",
        "create",
        "-w",
        "mlws",
        "--datastore",
        "lake",
        "-n",
        "incoming",
        "--topic",
        "arrivals",
        "--path",
        "incoming",
        "--polling-interval-seconds",
        "1",
    ]);
    assert_eq!(watch["name"], "incoming", "{watch}");

    std::fs::write(lake.join("incoming/a.csv"), "x,y\n1,2\n").unwrap();
    std::fs::write(lake.join("incoming/b.txt"), "not a table").unwrap();
    let events = events_until(&server, |events| events.len() >= 2);
    let subjects: Vec<&str> = events.iter().map(|e| e["subject"].as_str().unwrap()).collect();
    assert!(
        subjects.contains(&"/blobServices/default/containers/lake/blobs/incoming/a.csv"),
        "{subjects:?}"
    );
    let csv = events
        .iter()
        .find(|e| e["subject"].as_str().unwrap().ends_with("a.csv"))
        .unwrap();
    assert_eq!(csv["eventType"], "Microsoft.Storage.BlobCreated");
    assert_eq!(csv["data"]["api"], "PutBlob");
    assert_eq!(csv["data"]["contentType"], "text/csv");
    assert_eq!(csv["data"]["contentLength"], 8);
    assert_eq!(csv["data"]["blobType"], "BlockBlob");
    receiver.wait_for(1, Duration::from_secs(30));
    let csv_id = csv["id"].as_str().unwrap();
    assert!(receiver.seen.lock().unwrap().contains_key(csv_id));

    // A restart publishes nothing again, and the text file never reached the receiver.
    assert!(server.terminate());
    let server = Server::start_with(dir.path(), &flags);
    std::thread::sleep(Duration::from_secs(3));
    let again = events_until(&server, |_| true);
    assert_eq!(again.len(), 2, "{again:?}");
    assert_eq!(receiver.counts(), (1, 0));
}
