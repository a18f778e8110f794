//! Retention: set per source, shown with it, and pruning on demand; reads after pruned
//! sequences say where the log starts.

mod common;

use axum::http::StatusCode;
use common::TestApi;
use serde_json::{Value, json};

fn events(n: usize) -> Value {
    let events: Vec<Value> = (1..=n)
        .map(|i| {
            json!({"id": format!("e{i}"), "eventType": "Orders.Created", "subject": format!("orders/{i}"),
                   "eventTime": "2024-05-08T12:00:00Z", "dataVersion": "1", "data": {"n": i, "pad": "x".repeat(100)}})
        })
        .collect();
    Value::Array(events)
}

#[tokio::test]
async fn retention_is_set_at_create_shown_and_replaced_by_patch() {
    let api = TestApi::new().await;
    let created = api
        .ok(
            "POST",
            "/v1/topics",
            json!({"name": "orders", "retention": {"time": "12h", "maxBytes": 4096}}),
        )
        .await;
    assert_eq!(
        created["retention"],
        json!({"time": "12h", "timeIsServerDefault": false, "maxBytes": 4096})
    );
    assert_eq!(
        (
            created["firstAvailableSequence"].as_u64(),
            created["storedBytes"].as_u64()
        ),
        (Some(1), Some(0))
    );

    let patched = api
        .ok("PATCH", "/v1/topics/orders", json!({"retention": {"time": "72h"}}))
        .await;
    assert_eq!(
        patched["retention"],
        json!({"time": "3d", "timeIsServerDefault": false}),
        "replaced whole"
    );
    let reset = api.ok("PATCH", "/v1/topics/orders", json!({"retention": null})).await;
    assert_eq!(reset["retention"], json!({"time": "7d", "timeIsServerDefault": true}));

    let ws = api.ok("POST", "/v1/workspaces", json!({"name": "ws1"})).await;
    assert_eq!(ws["retention"]["time"], "7d");
    let shown = api.call("GET", "/v1/workspaces/ws1", None).await;
    assert_eq!(shown.body["retention"]["timeIsServerDefault"], true);
    let patched = api
        .ok(
            "PATCH",
            "/v1/workspaces/ws1",
            json!({"retention": {"maxBytes": 1000000}}),
        )
        .await;
    assert_eq!(
        patched["retention"],
        json!({"time": "7d", "timeIsServerDefault": true, "maxBytes": 1000000})
    );

    let bad = api
        .call("PATCH", "/v1/topics/orders", Some(json!({"retention": {"time": "7w"}})))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.message().contains("e.g. 30m, 12h, 7d"), "{}", bad.body);
    let missing = api.call("PATCH", "/v1/topics/orders", Some(json!({}))).await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(missing.message().contains("retention"), "{}", missing.body);
}

#[tokio::test]
async fn a_size_retention_prunes_the_oldest_events_and_reads_say_where_the_log_starts() {
    let api = TestApi::new().await;
    api.topic_with_keys("sized").await;
    api.publish("sized", events(10)).await;
    let stored = api.call("GET", "/v1/topics/sized", None).await.body["storedBytes"]
        .as_u64()
        .unwrap();
    let each = stored / 10;
    // Room for four events.
    api.ok(
        "PATCH",
        "/v1/topics/sized",
        json!({"retention": {"maxBytes": each * 4 + each / 2}}),
    )
    .await;

    let dry = api.ok("POST", "/v1/prune?dryRun=true", json!(null)).await;
    assert_eq!(dry["dryRun"], true);
    assert_eq!(dry["value"][0]["collection"], "topics");
    assert_eq!(dry["value"][0]["name"], "sized");
    assert_eq!(dry["value"][0]["events"], 6);
    assert_eq!(
        api.events("topics", "sized", "after=0").await["events"]
            .as_array()
            .unwrap()
            .len(),
        10,
        "a dry run removes nothing"
    );

    let pruned = api.ok("POST", "/v1/prune", json!(null)).await;
    assert_eq!(
        (pruned["dryRun"].as_bool(), pruned["value"][0]["events"].as_u64()),
        (Some(false), Some(6))
    );
    let shown = api.call("GET", "/v1/topics/sized", None).await.body;
    assert_eq!(shown["firstAvailableSequence"], 7);
    assert_eq!(shown["lastSequence"], 10);
    assert!(shown["storedBytes"].as_u64().unwrap() <= each * 4 + each / 2);

    let page = api.events("topics", "sized", "after=2").await;
    assert_eq!(page["firstAvailableSequence"], 7, "{page}");
    assert_eq!(page["events"][0]["sequence"], 7);
    assert_eq!(page["lastSequence"], 10);
    let page = api.events("topics", "sized", "after=6").await;
    assert!(
        page.get("firstAvailableSequence").is_none(),
        "nothing asked for is gone: {page}"
    );
    assert_eq!(page["events"].as_array().unwrap().len(), 4);

    // Everything pruned: a long poll after a pruned sequence answers at once.
    api.ok("PATCH", "/v1/topics/sized", json!({"retention": {"maxBytes": 0}}))
        .await;
    api.ok("POST", "/v1/prune", json!(null)).await;
    let page = api.events("topics", "sized", "after=3&waitSeconds=30").await;
    assert_eq!(
        (page["firstAvailableSequence"].as_u64(), page["lastSequence"].as_u64()),
        (Some(11), Some(10)),
        "{page}"
    );
    assert!(page["events"].as_array().unwrap().is_empty());
    assert!(
        api.ok("POST", "/v1/prune", json!(null)).await["value"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn events_a_subscription_has_yet_to_be_routed_are_kept() {
    let api = TestApi::new().await;
    api.topic_with_keys("held").await;
    let sub = json!({"properties": {"destination": {"endpointType": "WebHook", "properties": {"endpointUrl": "https://r.example/"}}}});
    api.ok(
        "PUT",
        "/v1/topics/held/eventSubscriptions/sub-1?skipValidation=true",
        sub,
    )
    .await;
    api.publish("held", events(5)).await;
    api.ok(
        "PATCH",
        "/v1/topics/held",
        json!({"retention": {"time": "1s", "maxBytes": 0}}),
    )
    .await;
    // No fan-out runs in this test: nothing is routed, so nothing may go.
    assert!(
        api.ok("POST", "/v1/prune", json!(null)).await["value"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        api.events("topics", "held", "after=0").await["events"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
}

#[tokio::test]
async fn pruning_takes_owner_on_everything() {
    let api = TestApi::new().await;
    api.ok("POST", "/v1/workspaces", json!({"name": "ws1"})).await;
    let created = api.ok("POST", "/v1/principals", json!({"name": "contributor"})).await;
    api.ok(
        "POST",
        "/v1/roleAssignments",
        json!({"assignee": "contributor", "role": "Contributor"}),
    )
    .await;
    let key = created["key"].as_str().unwrap();
    let refused = api.call_as(key, "POST", "/v1/prune?dryRun=true", None, None).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let refused = api
        .call_as(
            key,
            "PATCH",
            "/v1/workspaces/ws1",
            Some(json!({"retention": null})),
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
}
