//! Datastore watches through the API: created checked whole (each refusal names what to
//! fix, and nothing is half-created), read by Readers, written by Contributors of the
//! workspace who are Contributors of the topic too, and what they keep from deletion.

mod common;

use axum::http::StatusCode;
use common::TestApi;
use serde_json::{Value, json};

const WATCH: &str = "/v1/workspaces/mlws/datastores/workspaceblobstore/watches/csv";

/// A server with workspace `mlws`, a local datastore `files` and the topic `arrivals`.
async fn api() -> TestApi {
    let api = TestApi::new().await;
    api.ok("POST", "/v1/workspaces", json!({"name": "mlws"})).await;
    api.ok("POST", "/v1/topics", json!({"name": "arrivals"})).await;
    let folder = api.state.config.datastore_root.join("files-folder");
    std::fs::create_dir_all(&folder).unwrap();
    api.ok(
        "PUT",
        "/v1/workspaces/mlws/datastores/files",
        json!({"kind": "local", "settings": {"path": folder.to_string_lossy()}}),
    )
    .await;
    api
}

fn body(path: &str) -> Value {
    json!({"topic": "arrivals", "pathOnDatastore": path, "pollingInterval": 2})
}

#[tokio::test]
async fn a_watch_is_created_shown_listed_and_deleted() {
    let api = api().await;
    let created = api.call("PUT", WATCH, Some(body("incoming"))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["topic"], "arrivals");
    assert_eq!(created.body["pathOnDatastore"], "incoming");
    assert_eq!(
        (
            created.body["pollingInterval"].as_u64(),
            created.body["pollingIntervalSeconds"].as_u64()
        ),
        (Some(2), Some(120))
    );
    assert_eq!(created.body["eventsPublished"], 0);
    assert!(created.etag.is_some());
    let shown = api.call("GET", WATCH, None).await;
    assert_eq!((shown.status, &shown.body["name"]), (StatusCode::OK, &json!("csv")));
    let listed = api
        .ok(
            "GET",
            "/v1/workspaces/mlws/datastores/workspaceblobstore/watches",
            Value::Null,
        )
        .await;
    assert_eq!(listed["value"].as_array().map(Vec::len), Some(1));
    let again = api.call("PUT", WATCH, Some(body("incoming"))).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);
    assert_eq!(api.call("DELETE", WATCH, None).await.status, StatusCode::NO_CONTENT);
    assert_eq!(api.call("GET", WATCH, None).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn bad_watches_are_refused_naming_the_rule_and_nothing_is_created() {
    let api = api().await;
    let cases = [
        (
            "/v1/workspaces/mlws/datastores/lake/watches/w",
            body("in"),
            StatusCode::NOT_FOUND,
            "no datastore `lake`",
        ),
        (
            "/v1/workspaces/mlws/datastores/files/watches/w",
            json!({"topic": "nope", "pathOnDatastore": "in"}),
            StatusCode::NOT_FOUND,
            "nope",
        ),
        (
            "/v1/workspaces/mlws/datastores/files/watches/w",
            body("../etc"),
            StatusCode::BAD_REQUEST,
            "`..` is not allowed",
        ),
        (
            "/v1/workspaces/mlws/datastores/files/watches/w",
            body("/etc"),
            StatusCode::BAD_REQUEST,
            "it is absolute",
        ),
        (
            "/v1/workspaces/mlws/datastores/files/watches/w",
            json!({"topic": "arrivals", "pollingIntervalSeconds": 5}),
            StatusCode::BAD_REQUEST,
            "at least 1 minute",
        ),
        (
            "/v1/workspaces/mlws/datastores/files/watches/w",
            json!({"topic": "arrivals", "pollingInterval": 1, "pollingIntervalSeconds": 60}),
            StatusCode::BAD_REQUEST,
            "give the polling interval once",
        ),
    ];
    for (uri, body, status, message) in cases {
        let refused = api.call("PUT", uri, Some(body.clone())).await;
        assert_eq!(refused.status, status, "{body}: {}", refused.body);
        assert!(refused.message().contains(message), "{body}: {}", refused.body);
    }
    let listed = api
        .ok("GET", "/v1/workspaces/mlws/datastores/files/watches", Value::Null)
        .await;
    assert_eq!(listed["value"], json!([]));
}

#[tokio::test]
async fn a_watched_datastore_cannot_be_deleted_and_a_deleted_topic_takes_its_watches() {
    let api = api().await;
    api.ok("PUT", "/v1/workspaces/mlws/datastores/files/watches/csv", body("in"))
        .await;
    let refused = api.call("DELETE", "/v1/workspaces/mlws/datastores/files", None).await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(refused.message().contains("watches `csv`"), "{}", refused.body);
    assert_eq!(
        api.call("DELETE", "/v1/topics/arrivals", None).await.status,
        StatusCode::NO_CONTENT
    );
    let listed = api
        .ok("GET", "/v1/workspaces/mlws/datastores/files/watches", Value::Null)
        .await;
    assert_eq!(listed["value"], json!([]), "a watch goes with its topic");
    let deleted = api.call("DELETE", "/v1/workspaces/mlws/datastores/files", None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
}

#[tokio::test]
async fn readers_read_watches_and_creating_one_takes_contributor_on_the_topic_too() {
    let api = api().await;
    api.ok("PUT", WATCH, body("in")).await;
    let mut keys = Vec::new();
    for (name, role) in [("reader", "Reader"), ("contributor", "Contributor")] {
        let created = api.ok("POST", "/v1/principals", json!({"name": name})).await;
        api.ok(
            "POST",
            "/v1/roleAssignments",
            json!({"assignee": name, "role": role, "workspace": "mlws"}),
        )
        .await;
        keys.push(created["key"].as_str().unwrap().to_owned());
    }
    let (reader, contributor) = (&keys[0], &keys[1]);
    for uri in [WATCH, "/v1/workspaces/mlws/datastores/workspaceblobstore/watches"] {
        let read = api.call_as(reader, "GET", uri, None, None).await;
        assert_eq!(read.status, StatusCode::OK, "{uri}: {}", read.body);
    }
    let other = "/v1/workspaces/mlws/datastores/workspaceblobstore/watches/other";
    let by_reader = api.call_as(reader, "PUT", other, Some(body("in")), None).await;
    assert_eq!(by_reader.status, StatusCode::FORBIDDEN);
    assert_eq!(
        api.call_as(reader, "DELETE", WATCH, None, None).await.status,
        StatusCode::FORBIDDEN
    );
    let no_topic_role = api.call_as(contributor, "PUT", other, Some(body("in")), None).await;
    assert_eq!(no_topic_role.status, StatusCode::FORBIDDEN, "{}", no_topic_role.body);
    assert!(
        no_topic_role.message().contains("topic `arrivals`"),
        "{}",
        no_topic_role.body
    );
    api.ok(
        "POST",
        "/v1/roleAssignments",
        json!({"assignee": "contributor", "role": "Contributor", "topic": "arrivals"}),
    )
    .await;
    let allowed = api.call_as(contributor, "PUT", other, Some(body("in")), None).await;
    assert_eq!(allowed.status, StatusCode::CREATED, "{}", allowed.body);
    assert_eq!(
        api.call_as(contributor, "DELETE", WATCH, None, None).await.status,
        StatusCode::NO_CONTENT
    );
}
