//! Every role against every management call: allowed calls are never refused, refused
//! ones are 403 naming the role they need.

mod common;

use axum::http::StatusCode;
use common::TestApi;
use mlgrid_server::ServerConfig;
use serde_json::{Value, json};

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Held {
    Nothing,
    Reader,
    Contributor,
    Owner,
}

/// (method, path, body, the weakest role on workspace `ws1` that may make the call; `None`
/// when only a role on everything will do, and then the role the refusal names).
type Call = (&'static str, &'static str, Option<Value>, Option<Held>, &'static str);

fn calls() -> Vec<Call> {
    let sub = json!({"properties": {"destination": {"endpointType": "WebHook", "properties": {"endpointUrl": "https://r.example/"}}}});
    vec![
        ("GET", "/v1/workspaces/ws1", None, Some(Held::Reader), "Reader"),
        ("GET", "/v1/workspaces/ws1/events", None, Some(Held::Reader), "Reader"),
        (
            "GET",
            "/v1/workspaces/ws1/eventSubscriptions",
            None,
            Some(Held::Reader),
            "Reader",
        ),
        (
            "GET",
            "/v1/workspaces/ws1/eventSubscriptions/existing",
            None,
            Some(Held::Reader),
            "Reader",
        ),
        (
            "GET",
            "/v1/workspaces/ws1/eventSubscriptions/existing/events",
            None,
            Some(Held::Reader),
            "Reader",
        ),
        // Skipping the handshake takes Owner; a Contributor deletes the one made before.
        (
            "PUT",
            "/v1/workspaces/ws1/eventSubscriptions/made?skipValidation=true",
            Some(sub),
            Some(Held::Owner),
            "Owner",
        ),
        (
            "DELETE",
            "/v1/workspaces/ws1/eventSubscriptions/made",
            None,
            Some(Held::Contributor),
            "Contributor",
        ),
        ("GET", "/v1/workspaces/ws1/runs", None, Some(Held::Reader), "Reader"),
        (
            "POST",
            "/v1/workspaces/ws1/runs",
            Some(json!({"experimentName": "e"})),
            Some(Held::Contributor),
            "Contributor",
        ),
        (
            "GET",
            "/v1/workspaces/ws1/experiments",
            None,
            Some(Held::Reader),
            "Reader",
        ),
        ("GET", "/v1/workspaces/ws1/models", None, Some(Held::Reader), "Reader"),
        (
            "POST",
            "/v1/workspaces/ws1/models",
            Some(json!({"name": "m"})),
            Some(Held::Contributor),
            "Contributor",
        ),
        (
            "PATCH",
            "/v1/workspaces/ws1/models/base/versions/1",
            Some(json!({"tags": {"a": "b"}})),
            Some(Held::Contributor),
            "Contributor",
        ),
        (
            "PUT",
            "/v1/workspaces/ws1/deployments/svc",
            Some(json!({"computeType": "Local", "models": ["base:1"]})),
            Some(Held::Contributor),
            "Contributor",
        ),
        (
            "GET",
            "/v1/workspaces/ws1/deployments",
            None,
            Some(Held::Reader),
            "Reader",
        ),
        (
            "POST",
            "/v1/workspaces/ws1/datasets",
            Some(json!({"name": "d", "path": "x.csv"})),
            Some(Held::Contributor),
            "Contributor",
        ),
        ("GET", "/v1/workspaces/ws1/datasets", None, Some(Held::Reader), "Reader"),
        (
            "POST",
            "/v1/roleAssignments",
            Some(json!({"assignee": "spare", "role": "Reader", "workspace": "ws1"})),
            Some(Held::Owner),
            "Owner",
        ),
        (
            "POST",
            "/v1/workspaces",
            Some(json!({"name": "ws-new"})),
            None,
            "Contributor",
        ),
        (
            "POST",
            "/v1/topics",
            Some(json!({"name": "topic-new"})),
            None,
            "Contributor",
        ),
        (
            "POST",
            "/v1/principals",
            Some(json!({"name": "new-principal"})),
            None,
            "Owner",
        ),
        ("GET", "/v1/principals", None, None, "Owner"),
        (
            "POST",
            "/v1/roleAssignments",
            Some(json!({"assignee": "spare", "role": "Reader"})),
            None,
            "Owner",
        ),
    ]
}

async fn principal(api: &TestApi, name: &str, role: Option<&str>) -> String {
    let created = api.ok("POST", "/v1/principals", json!({"name": name})).await;
    if let Some(role) = role {
        api.ok(
            "POST",
            "/v1/roleAssignments",
            json!({"assignee": name, "role": role, "workspace": "ws1"}),
        )
        .await;
    }
    created["key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn every_role_against_every_management_call() {
    let api = TestApi::new().await;
    api.ok("POST", "/v1/workspaces", json!({"name": "ws1"})).await;
    api.ok("POST", "/v1/workspaces/ws1/models", json!({"name": "base"}))
        .await;
    let sub = json!({"properties": {"destination": {"endpointType": "WebHook", "properties": {"endpointUrl": "https://r.example/"}}}});
    api.ok(
        "PUT",
        "/v1/workspaces/ws1/eventSubscriptions/existing?skipValidation=true",
        sub.clone(),
    )
    .await;
    api.ok(
        "PUT",
        "/v1/workspaces/ws1/eventSubscriptions/made?skipValidation=true",
        sub.clone(),
    )
    .await;
    api.ok("POST", "/v1/principals", json!({"name": "spare"})).await;
    let principals = [
        (Held::Nothing, principal(&api, "nobody", None).await),
        (Held::Reader, principal(&api, "reader", Some("Reader")).await),
        (
            Held::Contributor,
            principal(&api, "contributor", Some("Contributor")).await,
        ),
        (Held::Owner, principal(&api, "owner", Some("Owner")).await),
    ];
    for (held, key) in &principals {
        for (method, path, body, needed, role) in calls() {
            let reply = api.call_as(key, method, path, body, None).await;
            let allowed = needed.is_some_and(|needed| *held >= needed);
            if allowed {
                assert!(
                    reply.status.is_success() || reply.status == StatusCode::CONFLICT,
                    "{held:?} {method} {path}: {} {}",
                    reply.status,
                    reply.body
                );
            } else {
                assert_eq!(
                    reply.status,
                    StatusCode::FORBIDDEN,
                    "{held:?} {method} {path}: {}",
                    reply.body
                );
                assert!(
                    reply.message().contains(&format!("needs the {role}")),
                    "{held:?} {method} {path}: {}",
                    reply.message()
                );
            }
        }
    }
    // Role assignments are visible to Owners of their scope only.
    let listed = |key: String| {
        let api = &api;
        async move {
            api.call_as(&key, "GET", "/v1/roleAssignments?workspace=ws1", None, None)
                .await
                .body["value"]
                .as_array()
                .unwrap()
                .len()
        }
    };
    assert!(listed(principals[3].1.clone()).await >= 3);
    assert_eq!(listed(principals[1].1.clone()).await, 0);
}

#[tokio::test]
async fn revoked_keys_stop_working_at_once_and_the_last_owner_stays() {
    let api = TestApi::new().await;
    api.ok("POST", "/v1/workspaces", json!({"name": "ws1"})).await;
    let key = principal(&api, "temp", Some("Reader")).await;
    assert_eq!(
        api.call_as(&key, "GET", "/v1/workspaces/ws1", None, None).await.status,
        StatusCode::OK
    );
    let revoked = api.call("DELETE", "/v1/principals/temp/keys", None).await;
    assert_eq!(revoked.body["revoked"], 1);
    assert_eq!(
        api.call_as(&key, "GET", "/v1/workspaces/ws1", None, None).await.status,
        StatusCode::UNAUTHORIZED
    );
    let fresh = api.ok("POST", "/v1/principals/temp/keys", json!({})).await;
    assert_eq!(
        api.call_as(fresh["key"].as_str().unwrap(), "GET", "/v1/workspaces/ws1", None, None)
            .await
            .status,
        StatusCode::OK
    );

    let grants = api.call("GET", "/v1/roleAssignments?assignee=admin", None).await.body;
    let admin_owner = grants["value"][0]["id"].as_i64().unwrap();
    let last = api
        .call("DELETE", &format!("/v1/roleAssignments/{admin_owner}"), None)
        .await;
    assert_eq!(last.status, StatusCode::CONFLICT);
    assert!(last.message().contains("last Owner"));
    let listed = api.call("GET", "/v1/principals", None).await.body;
    let names: Vec<&str> = listed["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["admin", "temp"]);
    assert!(
        !listed.to_string().contains(fresh["key"].as_str().unwrap()),
        "keys are never listed"
    );
    let unknown_role = api
        .call(
            "POST",
            "/v1/roleAssignments",
            Some(json!({"assignee": "temp", "role": "Admin"})),
        )
        .await;
    assert!(unknown_role.message().contains("Owner, Contributor or Reader"));
}

#[tokio::test]
async fn skipping_validation_takes_owner_unless_the_server_lets_contributors() {
    let sub = |url: &str| json!({"properties": {"destination": {"endpointType": "WebHook", "properties": {"endpointUrl": url}}}});
    for allowed in [false, true] {
        let api = TestApi::with_config(ServerConfig {
            allow_contributor_skip_validation: allowed,
            ..ServerConfig::default()
        })
        .await;
        api.ok("POST", "/v1/workspaces", json!({"name": "ws1"})).await;
        let contributor = principal(&api, "contributor", Some("Contributor")).await;
        let skipped = api
            .call_as(
                &contributor,
                "PUT",
                "/v1/workspaces/ws1/eventSubscriptions/sub?skipValidation=true",
                Some(sub("https://r.example/")),
                None,
            )
            .await;
        if allowed {
            assert_eq!(skipped.status, StatusCode::CREATED, "{}", skipped.body);
            continue;
        }
        assert_eq!(skipped.status, StatusCode::FORBIDDEN, "{}", skipped.body);
        assert!(
            skipped
                .message()
                .contains("needs the Owner role on workspace `ws1` to skip the validation handshake")
                && skipped.message().contains("--allow-contributor-skip-validation"),
            "{}",
            skipped.message()
        );
        // An Owner may; a Contributor may change the subscription without skipping.
        api.ok(
            "PUT",
            "/v1/workspaces/ws1/eventSubscriptions/sub?skipValidation=true",
            sub("https://r.example/"),
        )
        .await;
        let mut labelled = sub("https://r.example/");
        labelled["properties"]["labels"] = json!(["x"]);
        let relabelled = api
            .call_as(
                &contributor,
                "PUT",
                "/v1/workspaces/ws1/eventSubscriptions/sub",
                Some(labelled),
                None,
            )
            .await;
        assert_eq!(relabelled.status, StatusCode::OK, "{}", relabelled.body);
        let moved = api
            .call_as(
                &contributor,
                "PUT",
                "/v1/workspaces/ws1/eventSubscriptions/sub?skipValidation=true",
                Some(sub("https://elsewhere.example/")),
                None,
            )
            .await;
        assert_eq!(moved.status, StatusCode::FORBIDDEN, "{}", moved.body);
    }
}
