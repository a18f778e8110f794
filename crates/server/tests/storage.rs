//! The storage through the API: its sizes in `/healthz` and `/metrics`, and a full disk
//! (a database capped with SQLite's `max_page_count`, which fails writes with
//! `SQLITE_FULL` exactly as a full disk does).

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{Reply, TestApi};
use serde_json::{Value, json};

async fn health(api: &TestApi) -> Reply {
    api.send(Request::get("/healthz").body(Body::empty()).unwrap()).await
}

/// `count` Event Grid events with `pad` bytes of data each.
fn events(count: usize, pad: usize) -> String {
    let events: Vec<Value> = (0..count)
        .map(|i| {
            json!({"id": format!("e{i}"), "eventType": "T", "subject": "s", "eventTime": "2024-01-01T00:00:00Z",
                   "dataVersion": "1", "data": {"pad": "x".repeat(pad)}})
        })
        .collect();
    Value::Array(events).to_string()
}

#[tokio::test]
async fn healthz_shows_the_storage_sizes() {
    let api = TestApi::new().await;
    let reply = health(&api).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.body["status"], "ok");
    let storage = &reply.body["storage"];
    assert!(storage["databaseBytes"].as_u64().unwrap() > 0, "{storage}");
    assert!(storage["walBytes"].is_u64(), "{storage}");
    assert_eq!(storage["full"], Value::Null);
}

/// Publishing and lifecycle calls answer 507 while the disk is full, store nothing of
/// what they were refused, `/healthz` says so (and stays 200: the server is alive), and
/// once there is room again everything goes on by itself with no accepted event lost.
#[tokio::test]
async fn a_full_disk_answers_507_and_the_server_recovers_by_itself() {
    let api = TestApi::new().await;
    let (key, _) = api.topic_with_keys("orders").await;
    let created = api.call("POST", "/v1/workspaces", Some(json!({"name": "mlws"}))).await;
    assert_eq!(created.status, StatusCode::CREATED);
    api.sqlite.set_max_page_count(1).await.unwrap();

    // Large requests until one is refused, then one-event requests until one is: the
    // log's last page is full then, and any event raised needs a new page.
    let mut accepted = 0u64;
    let mut refused = None;
    for (count, pad) in [(20, 1024), (1, 10)] {
        for _ in 0..10_000 {
            let reply = api
                .publish_with("orders", &key, "application/json", events(count, pad))
                .await;
            if reply.status != StatusCode::OK {
                refused = Some(reply);
                break;
            }
            accepted += count as u64;
        }
    }
    let refused = refused.expect("the capped database fills up");
    assert_eq!(refused.status, StatusCode::INSUFFICIENT_STORAGE, "{}", refused.body);
    assert_eq!(refused.body["error"]["code"], "InsufficientStorage");
    assert!(
        refused.message().contains("storage is full") && refused.message().contains("nothing of this request"),
        "{}",
        refused.message()
    );

    let model = api
        .call("POST", "/v1/workspaces/mlws/models", Some(json!({"name": "m"})))
        .await;
    assert_eq!(model.status, StatusCode::INSUFFICIENT_STORAGE, "{}", model.body);
    assert_eq!(model.body["error"]["code"], "InsufficientStorage");

    let degraded = health(&api).await;
    assert_eq!(degraded.status, StatusCode::OK, "alive, if degraded");
    assert_eq!(degraded.body["status"], "degraded", "{}", degraded.body);
    let full = degraded.body["storage"]["full"].as_str().unwrap_or_default();
    assert!(
        full.contains("full") && full.contains("free space"),
        "{}",
        degraded.body
    );

    // Room again: nothing to restart.
    api.sqlite.set_max_page_count(1 << 30).await.unwrap();
    let again = api
        .publish_with("orders", &key, "application/json", events(1, 10))
        .await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    accepted += 1;
    let model = api
        .call("POST", "/v1/workspaces/mlws/models", Some(json!({"name": "m"})))
        .await;
    assert_eq!(model.status, StatusCode::CREATED, "{}", model.body);
    assert_eq!(model.body["version"], 1, "the refused registration used no version");
    let healthy = health(&api).await;
    assert_eq!(healthy.body["status"], "ok", "{}", healthy.body);

    let log = api.events("topics", "orders", "after=0&limit=10000").await;
    let sequences: Vec<u64> = log["events"]
        .as_array()
        .expect("a page of events")
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(
        sequences,
        (1..=accepted).collect::<Vec<_>>(),
        "every accepted event, nothing refused, no gap"
    );
}
