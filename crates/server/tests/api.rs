//! The HTTP API end to end, through the router (no socket), on a real SQLite store.

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{ADMIN_KEY, Reply, TestApi};
use mlgrid_server::ServerConfig;
use mlgrid_server::bootstrap::check_secret;
use mlgrid_server::keys::ServerSecret;
use serde_json::{Value, json};

fn eg_event(i: usize) -> Value {
    json!({"id": format!("e{i}"), "subject": format!("orders/{i}"), "eventType": "Shop.OrderPlaced",
           "eventTime": "2026-11-26T16:00:00Z", "data": {"n": i}, "dataVersion": "1.0"})
}

fn error_of(reply: &Reply) -> (&str, &str) {
    (
        reply.body["error"]["code"].as_str().unwrap(),
        reply.body["error"]["message"].as_str().unwrap(),
    )
}

#[tokio::test]
async fn a_node_with_another_secret_is_refused() {
    let s = TestApi::new().await;
    let (first, other) = (ServerSecret::generate(), ServerSecret::generate());
    check_secret(&*s.store, &first)
        .await
        .expect("the first node records its secret");
    check_secret(&*s.store, &first).await.expect("the same secret again");
    let refused = check_secret(&*s.store, &other).await.unwrap_err().to_string();
    assert!(
        refused.contains("another server secret") && refused.contains("MLGRID_SECRET"),
        "{refused}"
    );
}

#[tokio::test]
async fn health_and_openapi_need_no_key() {
    let s = TestApi::new().await;
    let health = s.send(Request::get("/healthz").body(Body::empty()).unwrap()).await;
    assert_eq!(
        (health.status, health.body["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    assert_eq!(health.body["node"], "mlgrid", "the default node id");
    let doc = s.send(Request::get("/openapi.json").body(Body::empty()).unwrap()).await;
    assert_eq!(doc.status, StatusCode::OK);
    for path in [
        "/v1/workspaces",
        "/v1/workspaces/{name}",
        "/v1/topics/{name}/listKeys",
        "/v1/topics/{name}/events",
        "/topics/{name}/api/events",
        "/healthz",
        "/v1/workspaces/{workspace}/runs/{run_id}",
        "/v1/workspaces/{workspace}/runs/{run_id}/metrics",
        "/v1/workspaces/{workspace}/experiments",
        "/v1/workspaces/{workspace}/models/{name}/versions/{version}",
        "/v1/workspaces/{workspace}/deployments/{name}",
        "/v1/workspaces/{workspace}/datasets/{name}/versions/{version}",
    ] {
        assert!(
            doc.body["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc.body["components"]["securitySchemes"]["topic_key"].is_object());
}

#[tokio::test]
async fn management_calls_need_a_valid_key() {
    let s = TestApi::new().await;
    let none = s
        .send(Request::get("/v1/workspaces").body(Body::empty()).unwrap())
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    let (code, message) = error_of(&none);
    assert_eq!(code, "Unauthorized");
    assert!(message.contains("Authorization: Bearer"), "{message}");
    let wrong = s
        .send(
            Request::get("/v1/workspaces")
                .header("authorization", "Bearer not-the-key")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(!wrong.body.to_string().contains("not-the-key"), "keys are not echoed");
}

#[tokio::test]
async fn workspaces_are_created_shown_listed_and_deleted() {
    let s = TestApi::new().await;
    let created = s
        .call(
            "POST",
            "/v1/workspaces",
            Some(json!({"name": "ws1", "subscriptionId": "sub-1", "resourceGroup": "rg-1"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(
        created.body["topic"],
        "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.MachineLearningServices/workspaces/ws1"
    );
    let defaults = s.call("POST", "/v1/workspaces", Some(json!({"name": "ws2"}))).await;
    assert_eq!(defaults.body["subscriptionId"], "00000000-0000-0000-0000-000000000000");
    assert_eq!(defaults.body["resourceGroup"], "mlgrid");

    let dup = s.call("POST", "/v1/workspaces", Some(json!({"name": "ws1"}))).await;
    assert_eq!(dup.status, StatusCode::CONFLICT);
    let bad = s.call("POST", "/v1/workspaces", Some(json!({"name": "a/b"}))).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(error_of(&bad).1.contains("3 to 33"));
    let unknown_field = s
        .call("POST", "/v1/workspaces", Some(json!({"name": "ws3", "colour": "red"})))
        .await;
    assert_eq!(unknown_field.status, StatusCode::BAD_REQUEST);
    assert!(error_of(&unknown_field).1.contains("colour"));
    let malformed = s
        .send(
            Request::post("/v1/workspaces")
                .header("authorization", format!("Bearer {ADMIN_KEY}"))
                .header("content-type", "application/json")
                .body(Body::from("{\"name\":"))
                .unwrap(),
        )
        .await;
    assert_eq!(
        (malformed.status, error_of(&malformed).0),
        (StatusCode::BAD_REQUEST, "InvalidJson")
    );

    let list = s.call("GET", "/v1/workspaces", None).await;
    let names: Vec<&str> = list.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["ws1", "ws2"]);
    let shown = s.call("GET", "/v1/workspaces/ws1", None).await;
    assert_eq!(shown.body, created.body);
    assert_eq!(
        s.call("DELETE", "/v1/workspaces/ws1", None).await.status,
        StatusCode::NO_CONTENT
    );
    let gone = s.call("GET", "/v1/workspaces/ws1", None).await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
    assert!(error_of(&gone).1.contains("workspace `ws1`"));
}

#[tokio::test]
async fn topics_publish_with_either_key_and_regeneration_revokes() {
    let s = TestApi::new().await;
    let shown = s.call("POST", "/v1/topics", Some(json!({"name": "orders"}))).await;
    assert_eq!(
        shown.body["endpoint"],
        "http://mlgrid.test:7070/topics/orders/api/events"
    );
    assert_eq!(
        shown.body["id"],
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/mlgrid/providers/Microsoft.EventGrid/topics/orders"
    );
    let keys = s.call("POST", "/v1/topics/orders/listKeys", None).await.body;
    let (key1, key2) = (
        keys["key1"].as_str().unwrap().to_owned(),
        keys["key2"].as_str().unwrap().to_owned(),
    );
    assert_ne!(key1, key2);
    assert_eq!(
        s.call("POST", "/v1/topics/orders/listKeys", None).await.body,
        keys,
        "keys are shown the same each time"
    );

    let ok = s
        .publish_with(
            "orders",
            &key1,
            "application/json",
            json!([eg_event(1), eg_event(2)]).to_string(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    assert_eq!(ok.headers["mlgrid-first-sequence"], "1");
    assert_eq!(ok.headers["mlgrid-last-sequence"], "2");
    assert_eq!(
        s.publish_with(
            "orders",
            &key2,
            "application/json; charset=utf-8",
            json!([eg_event(3)]).to_string()
        )
        .await
        .status,
        StatusCode::OK
    );

    let wrong = s
        .publish_with("orders", "bogus", "application/json", json!([eg_event(4)]).to_string())
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let missing = s
        .send(
            Request::post("/topics/orders/api/events")
                .header("content-type", "application/json")
                .body(Body::from("[]"))
                .unwrap(),
        )
        .await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    assert!(error_of(&missing).1.contains("aeg-sas-key"));

    // Names ignore case: a publisher may write the topic's name in any case, and the
    // node's cache of its keys is dropped on a change whatever case it was filled under.
    assert_eq!(
        s.publish_with("ORDERS", &key1, "application/json", json!([eg_event(4)]).to_string())
            .await
            .status,
        StatusCode::OK
    );
    let regenerated = s
        .call(
            "POST",
            "/v1/topics/orders/regenerateKey",
            Some(json!({"keyName": "key1"})),
        )
        .await;
    assert_eq!(regenerated.status, StatusCode::OK);
    assert_ne!(regenerated.body["key1"], keys["key1"]);
    assert_eq!(regenerated.body["key2"], keys["key2"]);
    for name in ["orders", "ORDERS"] {
        assert_eq!(
            s.publish_with(name, &key1, "application/json", json!([eg_event(5)]).to_string())
                .await
                .status,
            StatusCode::UNAUTHORIZED,
            "the old key1 is refused at once as {name}"
        );
    }
    let new_key1 = regenerated.body["key1"].as_str().unwrap();
    assert_eq!(
        s.publish_with("orders", new_key1, "application/json", json!([eg_event(6)]).to_string())
            .await
            .status,
        StatusCode::OK
    );
    let bad_name = s
        .call(
            "POST",
            "/v1/topics/orders/regenerateKey",
            Some(json!({"keyName": "key3"})),
        )
        .await;
    assert_eq!(bad_name.status, StatusCode::BAD_REQUEST);

    let unknown = s
        .publish_with("nope", &key2, "application/json", json!([eg_event(1)]).to_string())
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn published_events_are_stored_as_event_grid_writes_them() {
    let s = TestApi::new().await;
    let (key, _) = s.topic_with_keys("shop").await;
    let event = json!({"id": "a1", "subject": "orders/1", "eventType": "Shop.OrderPlaced",
                       "eventTime": "2026-11-26T17:00:00.123+01:00", "data": {"total": 12.5, "items": ["x"]}});
    assert_eq!(
        s.publish_with("shop", &key, "application/json", json!([event]).to_string())
            .await
            .status,
        StatusCode::OK
    );
    let page = s.events("topics", "shop", "").await;
    let record = &page["events"][0];
    assert_eq!(record["sequence"], 1);
    assert_eq!(record["schema"], "EventGridSchema");
    assert_eq!(
        record["event"],
        json!({"topic": "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/mlgrid/providers/Microsoft.EventGrid/topics/shop",
               "subject": "orders/1", "eventType": "Shop.OrderPlaced", "eventTime": "2026-11-26T16:00:00.1230000Z",
               "id": "a1", "data": {"total": 12.5, "items": ["x"]}, "dataVersion": "", "metadataVersion": "1"})
    );
    assert_eq!(page["lastSequence"], 1);
}

#[tokio::test]
async fn rejected_requests_store_nothing_and_say_what_to_fix() {
    let s = TestApi::with_config(ServerConfig {
        max_request_bytes: 64 * 1024,
        publish_limits: mlgrid_core::publish::PublishLimits { max_event_bytes: 4096 },
        ..ServerConfig::default()
    })
    .await;
    let (key, _) = s.topic_with_keys("strict").await;
    let mut no_time = eg_event(2);
    no_time.as_object_mut().unwrap().remove("eventTime");
    let cases: Vec<(String, &str, StatusCode, &str, &str)> = vec![
        (json!([eg_event(1), no_time]).to_string(), "application/json", StatusCode::BAD_REQUEST, "InvalidEvent", "event [1], field `eventTime`"),
        ("[{\"id\":".into(), "application/json", StatusCode::BAD_REQUEST, "InputJsonInvalid", "not valid JSON"),
        (eg_event(1).to_string(), "application/json", StatusCode::BAD_REQUEST, "InputJsonInvalid", "JSON array"),
        ("[]".into(), "application/json", StatusCode::BAD_REQUEST, "NoEvents", "no events"),
        (json!([eg_event(1)]).to_string(), "text/plain", StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType", "application/json"),
        (
            json!([eg_event(1), {"id": "big", "subject": "s", "eventType": "T", "eventTime": "2026-11-26T16:00:00Z", "data": "x".repeat(5000)}]).to_string(),
            "application/json", StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", "event [1]",
        ),
        (
            serde_json::to_string(&(0..100).map(|i| json!({"id": i.to_string(), "subject": "s", "eventType": "T", "eventTime": "2026-11-26T16:00:00Z", "data": "x".repeat(1000)})).collect::<Vec<_>>()).unwrap(),
            "application/json", StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge", "65536 bytes",
        ),
        (json!({"specversion": "1.0", "id": "c", "type": "T"}).to_string(), "application/cloudevents+json", StatusCode::BAD_REQUEST, "InvalidEvent", "field `source`"),
        // Events the fan-out could not read back are refused, not stored and lost.
        (
            format!(r#"[{{"id":"d","subject":"s","eventType":"T","eventTime":"2026-11-26T16:00:00Z","data":{}1{}}}]"#, "[".repeat(127), "]".repeat(127)),
            "application/json", StatusCode::BAD_REQUEST, "InvalidEvent", "event [0], field `data`: nests deeper than 64 levels",
        ),
        (
            r#"[{"id":"n","subject":"s","eventType":"T","eventTime":"2026-11-26T16:00:00Z","data":{"n":1e999}}]"#.into(),
            "application/json", StatusCode::BAD_REQUEST, "InvalidEvent", "event [0], field `data`: holds the number 1e999, which is out of range",
        ),
        (
            r#"{"specversion":"1.0","id":"n","source":"/s","type":"T","data":-1e999}"#.into(),
            "application/cloudevents+json", StatusCode::BAD_REQUEST, "InvalidEvent", "holds the number -1e999",
        ),
        (
            r#"[{"specversion":"1.0","id":"b","source":"/s","type":"T","data_base64":"not base64!"}]"#.into(),
            "application/cloudevents-batch+json", StatusCode::BAD_REQUEST, "InvalidEvent", "event [0], field `data_base64`: is not base64",
        ),
    ];
    for (body, content_type, status, code, needle) in cases {
        let reply = s.publish_with("strict", &key, content_type, body).await;
        assert_eq!(reply.status, status, "{}", reply.body);
        let (got_code, message) = error_of(&reply);
        assert_eq!(got_code, code, "{message}");
        assert!(message.contains(needle), "`{message}` should mention `{needle}`");
    }
    let version = s
        .send(
            Request::post("/topics/strict/api/events?api-version=1999-01-01")
                .header("aeg-sas-key", &key)
                .body(Body::from("[]"))
                .unwrap(),
        )
        .await;
    assert_eq!(version.status, StatusCode::BAD_REQUEST);
    assert!(error_of(&version).1.contains("2018-01-01"));
    assert_eq!(
        s.events("topics", "strict", "").await["events"],
        json!([]),
        "nothing of a rejected request is stored"
    );
}

#[tokio::test]
async fn cloud_events_are_accepted_structured_and_batched() {
    let s = TestApi::new().await;
    let (key, _) = s.topic_with_keys("clouds").await;
    let ce = |id: &str| json!({"specversion": "1.0", "id": id, "source": "/app", "type": "com.example.created", "subject": "x", "data": {"k": 1}, "traceparent": "00-1"});
    assert_eq!(
        s.publish_with("clouds", &key, "application/cloudevents+json", ce("c1").to_string())
            .await
            .status,
        StatusCode::OK
    );
    let batch = s
        .publish_with(
            "clouds",
            &key,
            "application/cloudevents-batch+json; charset=utf-8",
            json!([ce("c2"), ce("c3")]).to_string(),
        )
        .await;
    assert_eq!(batch.status, StatusCode::OK);
    let page = s.events("topics", "clouds", "").await;
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["schema"], "CloudEventSchemaV1_0");
    assert_eq!(events[2]["event"], ce("c3"));
}

#[tokio::test]
async fn event_log_pages_and_waits_for_new_events() {
    let s = TestApi::new().await;
    let (key, _) = s.topic_with_keys("paged").await;
    let batch: Vec<Value> = (1..=25).map(eg_event).collect();
    assert_eq!(
        s.publish_with("paged", &key, "application/json", json!(batch).to_string())
            .await
            .status,
        StatusCode::OK
    );
    let page = s.events("topics", "paged", "after=10&limit=5").await;
    let seqs: Vec<u64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [11, 12, 13, 14, 15]);
    assert_eq!(page["lastSequence"], 15);
    assert_eq!(page["events"][0]["event"]["id"], "e11");
    let end = s.events("topics", "paged", "after=25").await;
    assert_eq!(
        (end["events"].as_array().unwrap().len(), end["lastSequence"].as_u64()),
        (0, Some(25))
    );

    let bad = s.call("GET", "/v1/topics/paged/events?limit=0", None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad = s.call("GET", "/v1/topics/paged/events?after=-1", None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let waiting = {
        let app = s.app.clone();
        tokio::spawn(async move {
            let request = Request::get("/v1/topics/paged/events?after=25&waitSeconds=10")
                .header("authorization", format!("Bearer {ADMIN_KEY}"))
                .body(Body::empty())
                .unwrap();
            let started = std::time::Instant::now();
            let response = tower::ServiceExt::oneshot(app, request).await.unwrap();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            let body: Value = serde_json::from_slice(&bytes).unwrap();
            (body, started.elapsed())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(
        s.publish_with("paged", &key, "application/json", json!([eg_event(26)]).to_string())
            .await
            .status,
        StatusCode::OK
    );
    let (body, waited) = waiting.await.unwrap();
    assert_eq!(body["events"][0]["sequence"], 26);
    assert!(
        waited < std::time::Duration::from_secs(5),
        "the wait ends when the event arrives"
    );
}

#[tokio::test]
async fn workspace_event_log_is_readable() {
    let s = TestApi::new().await;
    s.call("POST", "/v1/workspaces", Some(json!({"name": "ws1"}))).await;
    let page = s.events("workspaces", "ws1", "").await;
    assert_eq!(page, json!({"events": [], "lastSequence": 0}));
    let missing = s.call("GET", "/v1/workspaces/none/events", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    drop(s.store);
}

#[tokio::test]
async fn metrics_take_a_key_on_everything_unless_served_on_their_own_listener() {
    use tower::ServiceExt;
    let api = TestApi::new().await;
    api.ok("POST", "/v1/workspaces", json!({"name": "ws1"})).await;
    let mut state = api.state.clone();
    state.metrics = Some(
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .build_recorder()
            .handle(),
    );
    let main = mlgrid_server::app(state.clone());
    let scrape = mlgrid_server::api::metrics::scrape_app(state);
    let workspace_reader = api.ok("POST", "/v1/principals", json!({"name": "r"})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    api.ok(
        "POST",
        "/v1/roleAssignments",
        json!({"assignee": "r", "role": "Reader", "workspace": "ws1"}),
    )
    .await;
    let everything_reader = api.ok("POST", "/v1/principals", json!({"name": "all"})).await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    api.ok(
        "POST",
        "/v1/roleAssignments",
        json!({"assignee": "all", "role": "Reader"}),
    )
    .await;
    let get = |key: Option<&str>| {
        let mut request = Request::get("/metrics");
        if let Some(key) = key {
            request = request.header("authorization", format!("Bearer {key}"));
        }
        request.body(Body::empty()).unwrap()
    };
    let status = |response: axum::response::Response| response.status();
    assert_eq!(
        status(main.clone().oneshot(get(None)).await.unwrap()),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(main.clone().oneshot(get(Some(&workspace_reader))).await.unwrap()),
        StatusCode::FORBIDDEN,
        "a role on one workspace does not show the names of all"
    );
    assert_eq!(
        status(main.clone().oneshot(get(Some(&everything_reader))).await.unwrap()),
        StatusCode::OK
    );
    let scraped = scrape.clone().oneshot(get(None)).await.unwrap();
    assert_eq!(scraped.status(), StatusCode::OK);
    assert_eq!(scraped.headers()["content-type"], "text/plain; version=0.0.4");
    let other = scrape
        .oneshot(Request::get("/v1/workspaces").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        StatusCode::NOT_FOUND,
        "the metrics listener serves nothing else"
    );
}
