//! Names of workspaces, topics and principals are unique ignoring case and found in any
//! case, as Azure resource names are.

mod common;

use axum::http::StatusCode;
use common::TestApi;
use serde_json::json;

#[tokio::test]
async fn names_differing_only_in_case_clash_and_find_the_same_resource() {
    let api = TestApi::new().await;
    api.ok("POST", "/v1/workspaces", json!({"name": "wsA"})).await;
    let clash = api.call("POST", "/v1/workspaces", Some(json!({"name": "wsa"}))).await;
    assert_eq!(clash.status, StatusCode::CONFLICT, "{}", clash.body);
    assert!(
        clash.message().contains("workspace `wsA` already exists") && clash.message().contains("ignoring case"),
        "{}",
        clash.message()
    );
    let found = api.call("GET", "/v1/workspaces/WSA", None).await;
    assert_eq!(found.status, StatusCode::OK, "{}", found.body);
    assert_eq!(found.body["name"], "wsA");

    api.ok("POST", "/v1/topics", json!({"name": "Orders"})).await;
    let clash = api.call("POST", "/v1/topics", Some(json!({"name": "ORDERS"}))).await;
    assert_eq!(clash.status, StatusCode::CONFLICT);
    assert!(clash.message().contains("topic `Orders`"), "{}", clash.message());

    api.ok("POST", "/v1/principals", json!({"name": "Bob"})).await;
    let clash = api.call("POST", "/v1/principals", Some(json!({"name": "bob"}))).await;
    assert_eq!(clash.status, StatusCode::CONFLICT);
    assert!(clash.message().contains("principal `Bob`"), "{}", clash.message());
    api.ok(
        "POST",
        "/v1/roleAssignments",
        json!({"assignee": "BOB", "role": "Reader", "workspace": "WSA"}),
    )
    .await;
    let listed = api
        .call("GET", "/v1/roleAssignments?assignee=bob&workspace=wsa", None)
        .await;
    assert_eq!(listed.body["value"].as_array().unwrap().len(), 1, "{}", listed.body);
    assert_eq!(listed.body["value"][0]["workspace"], "wsA");
}
