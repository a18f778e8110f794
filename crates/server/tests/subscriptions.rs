//! Event subscriptions through the API: definitions, bad input, and the matches the
//! fan-out records.

mod common;

use axum::http::StatusCode;
use common::TestApi;
use mlgrid_delivery::{Clock, Fanout, ManualClock};
use mlgrid_server::ServerConfig;
use serde_json::{Value, json};

fn webhook(url: &str) -> Value {
    json!({"endpointType": "WebHook", "properties": {"endpointUrl": url}})
}

fn order(i: u64, kind: &str, total: f64) -> Value {
    json!({"id": format!("o{i}"), "subject": format!("orders/{i}"), "eventType": kind, "eventTime": "2026-11-26T16:00:00Z",
           "data": {"total": total, "tags": ["a", "b"]}})
}

async fn matched(api: &TestApi, path: &str) -> Vec<String> {
    let page = api.call("GET", &format!("{path}/events"), None).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"]["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn subscriptions_are_created_shown_replaced_and_deleted() {
    let api = TestApi::new().await;
    api.ok("POST", "/v1/workspaces", json!({"name": "ws1"})).await;
    let body = json!({"properties": {
        "destination": webhook("https://receiver.example/hook"),
        "filter": {"includedEventTypes": ["Microsoft.MachineLearningServices.ModelRegistered"], "subjectBeginsWith": "models/",
                   "advancedFilters": [{"operatorType": "StringIn", "key": "data.ModelTags.stage", "values": ["prod"]}]},
        "labels": ["team-a"], "retryPolicy": {"maxDeliveryAttempts": 5}}});
    let created = api
        .call(
            "PUT",
            "/v1/workspaces/ws1/eventSubscriptions/models-prod?skipValidation=true",
            Some(body.clone()),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let sub = &created.body;
    assert_eq!(sub["name"], "models-prod");
    assert_eq!(sub["type"], "Microsoft.EventGrid/eventSubscriptions");
    assert!(
        sub["id"]
            .as_str()
            .unwrap()
            .ends_with("/workspaces/ws1/providers/Microsoft.EventGrid/eventSubscriptions/models-prod")
    );
    assert_eq!(sub["properties"]["provisioningState"], "Succeeded");
    assert_eq!(sub["properties"]["eventDeliverySchema"], "EventGridSchema");
    assert_eq!(
        sub["properties"]["retryPolicy"],
        json!({"maxDeliveryAttempts": 5, "eventTimeToLiveInMinutes": 1440})
    );
    assert_eq!(
        sub["properties"]["topic"],
        "/subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/mlgrid/providers/Microsoft.MachineLearningServices/workspaces/ws1"
    );
    assert_eq!(created.etag.as_deref(), sub["etag"].as_str());

    let shown = api
        .call("GET", "/v1/workspaces/ws1/eventSubscriptions/models-prod", None)
        .await;
    assert_eq!(shown.body, created.body);
    let stale = api
        .call_as(
            common::ADMIN_KEY,
            "PUT",
            "/v1/workspaces/ws1/eventSubscriptions/models-prod?skipValidation=true",
            Some(body.clone()),
            Some("\"stale\""),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let replaced = api
        .call_as(
            common::ADMIN_KEY,
            "PUT",
            "/v1/workspaces/ws1/eventSubscriptions/models-prod?skipValidation=true",
            Some(body),
            created.etag.as_deref(),
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK);
    let list = api.call("GET", "/v1/workspaces/ws1/eventSubscriptions", None).await;
    assert_eq!(list.body["value"].as_array().unwrap().len(), 1);
    assert_eq!(
        api.call("DELETE", "/v1/workspaces/ws1/eventSubscriptions/models-prod", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.call("GET", "/v1/workspaces/ws1/eventSubscriptions/models-prod", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn bad_definitions_are_refused_with_what_to_fix() {
    let api = TestApi::new().await;
    api.ok("POST", "/v1/workspaces", json!({"name": "ws1"})).await;
    api.ok("POST", "/v1/topics", json!({"name": "shop"})).await;
    let with_filter =
        |filter: Value| json!({"properties": {"destination": webhook("https://r.example/"), "filter": filter}});
    let too_many: Vec<Value> = (0..26)
        .map(|i| json!({"operatorType": "IsNotNull", "key": format!("data.k{i}")}))
        .collect();
    let cases = [
        (
            "shop",
            with_filter(json!({"advancedFilters": [{"operatorType": "NumberAbout", "key": "data.n", "values": [1]}]})),
            "NumberAbout",
        ),
        (
            "shop",
            with_filter(json!({"advancedFilters": [{"operatorType": "NumberIn", "key": "data.n", "values": ["big"]}]})),
            "big",
        ),
        ("shop", with_filter(json!({"advancedFilters": too_many})), "25"),
        (
            "shop",
            with_filter(json!({"advancedFilters": [{"operatorType": "StringIn", "key": "data..x", "values": ["a"]}]})),
            "data..x",
        ),
        (
            "shop",
            json!({"properties": {"destination": webhook("not a url")}}),
            "endpointUrl",
        ),
        (
            "shop",
            json!({"properties": {"destination": webhook("https://r.example/"), "colour": "red"}}),
            "colour",
        ),
        (
            "ws1",
            with_filter(json!({"includedEventTypes": ["Shop.OrderPlaced"]})),
            "Shop.OrderPlaced",
        ),
    ];
    for (source, body, needle) in cases {
        let collection = if source == "ws1" { "workspaces" } else { "topics" };
        let reply = api
            .call(
                "PUT",
                &format!("/v1/{collection}/{source}/eventSubscriptions/sub-1"),
                Some(body.clone()),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.body);
        assert!(
            reply.message().contains(needle),
            "`{}` should mention `{needle}`",
            reply.message()
        );
    }
    let bad_name = api
        .call(
            "PUT",
            "/v1/topics/shop/eventSubscriptions/a_b",
            Some(with_filter(json!({}))),
        )
        .await;
    assert!(bad_name.message().contains("3 to 64"), "{}", bad_name.message());
    assert!(
        api.call("GET", "/v1/topics/shop/eventSubscriptions", None).await.body["value"]
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing refused was stored"
    );
}

#[tokio::test]
async fn the_fanout_records_each_subscriptions_matches() {
    let api = TestApi::new().await;
    api.ok("POST", "/v1/topics", json!({"name": "shop"})).await;
    api.publish("shop", json!([order(0, "Shop.OrderPlaced", 500.0)])).await;
    let put = |filter: Value| json!({"properties": {"destination": webhook("https://r.example/"), "filter": filter}});
    api.ok(
        "PUT",
        "/v1/topics/shop/eventSubscriptions/placed?skipValidation=true",
        put(json!({"includedEventTypes": ["shop.orderplaced"]})),
    )
    .await;
    api.ok(
        "PUT",
        "/v1/topics/shop/eventSubscriptions/order-1?skipValidation=true",
        put(json!({"subjectBeginsWith": "ORDERS/1"})),
    )
    .await;
    api.ok(
        "PUT",
        "/v1/topics/shop/eventSubscriptions/big?skipValidation=true",
        put(json!({"advancedFilters": [{"operatorType": "NumberGreaterThan", "key": "data.total", "value": 100}]})),
    )
    .await;
    api.ok(
        "PUT",
        "/v1/topics/shop/eventSubscriptions/case?skipValidation=true",
        put(json!({"subjectBeginsWith": "ORDERS/", "isSubjectCaseSensitive": true})),
    )
    .await;
    api.publish(
        "shop",
        json!([
            order(1, "Shop.OrderPlaced", 50.0),
            order(2, "Shop.OrderShipped", 150.0),
            order(10, "Shop.OrderPlaced", 700.0)
        ]),
    )
    .await;

    let mut fanout = Fanout::new(api.store.clone(), chrono::Duration::minutes(5));
    assert_eq!(fanout.pass().await.unwrap(), 2 + 2 + 2);
    assert_eq!(fanout.pass().await.unwrap(), 0, "nothing is recorded twice");
    assert_eq!(
        matched(&api, "/v1/topics/shop/eventSubscriptions/placed").await,
        ["o1", "o10"],
        "o0 came before the subscription"
    );
    assert_eq!(
        matched(&api, "/v1/topics/shop/eventSubscriptions/order-1").await,
        ["o1", "o10"]
    );
    assert_eq!(
        matched(&api, "/v1/topics/shop/eventSubscriptions/big").await,
        ["o2", "o10"]
    );
    assert!(
        matched(&api, "/v1/topics/shop/eventSubscriptions/case")
            .await
            .is_empty()
    );
}

#[tokio::test]
async fn an_expired_subscription_stops_matching_and_is_removed() {
    // The server and the fan-out go by a clock that moves only when the test moves it.
    let clock = ManualClock::new(chrono::Utc::now());
    let config = ServerConfig {
        public_url: Some(format!("http://{}", common::HOST)),
        ..ServerConfig::default()
    };
    let api = TestApi::with_clock(config, clock.shared()).await;
    let mut fanout = Fanout::new(api.store.clone(), chrono::Duration::minutes(5)).with_clock(clock.shared());
    api.ok("POST", "/v1/topics", json!({"name": "shop"})).await;
    let put = |expires: Option<String>| json!({"properties": {"destination": webhook("https://r.example/"), "expirationTimeUtc": expires}});
    api.ok(
        "PUT",
        "/v1/topics/shop/eventSubscriptions/lasting?skipValidation=true",
        put(None),
    )
    .await;
    let expires = (clock.now() + chrono::Duration::minutes(5)).to_rfc3339();
    api.ok(
        "PUT",
        "/v1/topics/shop/eventSubscriptions/brief?skipValidation=true",
        put(Some(expires)),
    )
    .await;
    api.publish("shop", json!([order(1, "Shop.OrderPlaced", 1.0)])).await;
    fanout.pass().await.unwrap();
    assert_eq!(
        matched(&api, "/v1/topics/shop/eventSubscriptions/brief").await,
        ["o1"],
        "matches until it expires"
    );

    clock.advance(chrono::Duration::minutes(6));
    api.publish("shop", json!([order(2, "Shop.OrderPlaced", 2.0)])).await;
    fanout.pass().await.unwrap();
    assert_eq!(
        api.call("GET", "/v1/topics/shop/eventSubscriptions/brief", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        matched(&api, "/v1/topics/shop/eventSubscriptions/lasting").await,
        ["o1", "o2"]
    );
    // An expiry already past by the clock is refused.
    let past = api
        .call(
            "PUT",
            "/v1/topics/shop/eventSubscriptions/late?skipValidation=true",
            Some(put(Some((clock.now() - chrono::Duration::minutes(1)).to_rfc3339()))),
        )
        .await;
    assert_eq!(past.status, StatusCode::BAD_REQUEST, "{}", past.body);
}

/// A topic `shop` with a subscription `all` (handshake skipped) that matched `events`.
async fn shop_routed(events: Value) -> TestApi {
    let api = TestApi::new().await;
    api.ok("POST", "/v1/topics", json!({"name": "shop"})).await;
    api.ok(
        "PUT",
        "/v1/topics/shop/eventSubscriptions/all?skipValidation=true",
        json!({"properties": {"destination": webhook("https://r.example/")}}),
    )
    .await;
    api.publish("shop", events).await;
    Fanout::new(api.store.clone(), chrono::Duration::minutes(5))
        .pass()
        .await
        .unwrap();
    api
}

#[tokio::test]
async fn delivery_counters_attempts_and_dead_letters_are_readable() {
    let api = shop_routed(json!([
        order(1, "Shop.OrderPlaced", 1.0),
        order(2, "Shop.OrderPlaced", 2.0)
    ]))
    .await;
    let base = "/v1/topics/shop/eventSubscriptions/all";
    let stats = api.call("GET", &format!("{base}/deliveryStats"), None).await;
    assert_eq!(
        stats.body,
        json!({"delivered": 0, "deadLettered": 0, "backlog": 2, "failedAttempts": 0, "lastError": null, "deadLetterExportError": null})
    );
    assert_eq!(
        api.call("GET", &format!("{base}/attempts"), None).await.body,
        json!({"value": []})
    );
    assert_eq!(
        api.call("GET", &format!("{base}/deadLetters"), None).await.body,
        json!({"value": []})
    );
    let redelivered = api
        .call("POST", &format!("{base}/deadLetters/redeliver"), Some(json!({})))
        .await;
    assert_eq!(redelivered.body, json!({"count": 0}));
    let purged = api
        .call(
            "POST",
            &format!("{base}/deadLetters/purge"),
            Some(json!({"sequences": [1]})),
        )
        .await;
    assert_eq!(purged.body, json!({"count": 0}));
    let unknown = api
        .call("GET", "/v1/things/shop/eventSubscriptions/all/deliveryStats", None)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(
        api.call("GET", "/v1/topics/shop/eventSubscriptions/none/attempts", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn signing_secrets_are_shown_and_rotated_with_grace() {
    let api = TestApi::new().await;
    api.ok("POST", "/v1/topics", json!({"name": "shop"})).await;
    api.ok(
        "PUT",
        "/v1/topics/shop/eventSubscriptions/signed?skipValidation=true",
        json!({"properties": {"destination": webhook("https://r.example/")}}),
    )
    .await;
    let base = "/v1/topics/shop/eventSubscriptions/signed/signingSecret";
    let first = api.call("POST", base, None).await.body;
    assert!(first["secret"].as_str().unwrap().starts_with("whsec_"));
    assert!(first["previousSecret"].is_null());
    assert_eq!(
        api.call("POST", base, None).await.body,
        first,
        "the same secret each time"
    );
    let rotated = api
        .call("POST", &format!("{base}/rotate"), Some(json!({"graceMinutes": 30})))
        .await
        .body;
    assert_ne!(rotated["secret"], first["secret"]);
    assert_eq!(rotated["previousSecret"], first["secret"]);
    assert!(rotated["previousValidUntil"].is_string());
    let too_long = api
        .call("POST", &format!("{base}/rotate"), Some(json!({"graceMinutes": 999999})))
        .await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
    let shown = api
        .call("GET", "/v1/topics/shop/eventSubscriptions/signed", None)
        .await
        .body;
    assert!(
        !shown.to_string().contains(rotated["secret"].as_str().unwrap()),
        "secrets are not part of the subscription"
    );
}

#[tokio::test]
async fn dead_letters_are_shown_and_selected_by_reason_type_and_status() {
    let api = shop_routed(json!([
        order(1, "Shop.OrderPlaced", 1.0),
        order(2, "Shop.OrderShipped", 2.0),
        order(3, "Shop.OrderPlaced", 3.0)
    ]))
    .await;
    let now = chrono::Utc::now();
    let claimed = api
        .store
        .claim_deliveries(now, now + chrono::Duration::minutes(1), 10)
        .await
        .unwrap();
    let subscription = claimed[0].subscription_id;
    let dead = |sequence: u64, status: u16, reason: &str| mlgrid_store::AttemptRecord {
        subscription_id: subscription,
        sequences: vec![sequence],
        attempted_at: now,
        status_code: Some(status),
        latency_ms: 1.0,
        outcome: format!("Http{status}"),
        error: None,
        response_excerpt: None,
        next: mlgrid_store::AfterAttempt::DeadLetter(reason.into()),
    };
    api.store
        .record_attempts(vec![
            dead(1, 400, "NonRetriableStatus"),
            dead(2, 413, "NonRetriableStatus"),
            dead(3, 503, "MaxDeliveryAttemptsExceeded"),
        ])
        .await
        .unwrap();
    let base = "/v1/topics/shop/eventSubscriptions/all/deadLetters";
    let shown = api.call("GET", &format!("{base}/2"), None).await;
    assert_eq!(shown.status, StatusCode::OK);
    assert_eq!(
        (
            shown.body["event"]["eventType"].as_str(),
            shown.body["lastHttpStatusCode"].as_u64()
        ),
        (Some("Shop.OrderShipped"), Some(413))
    );
    assert_eq!(
        api.call("GET", &format!("{base}/9"), None).await.status,
        StatusCode::NOT_FOUND
    );

    let purged = api
        .call(
            "POST",
            &format!("{base}/purge"),
            Some(json!({"lastHttpStatusCode": 503})),
        )
        .await;
    assert_eq!(purged.body, json!({"count": 1}));
    let redelivered = api
        .call(
            "POST",
            &format!("{base}/redeliver"),
            Some(json!({"deadLetterReason": "nonretriablestatus", "eventType": "Shop.OrderPlaced"})),
        )
        .await;
    assert_eq!(redelivered.body, json!({"count": 1}), "only event 1 matches both");
    let left: Vec<u64> = api.call("GET", base, None).await.body["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(left, [2]);
}

#[tokio::test]
async fn readers_see_the_endpoint_without_its_secret_and_contributors_can_ask_for_the_full_url() {
    let api = TestApi::new().await;
    api.ok("POST", "/v1/workspaces", json!({"name": "ws1"})).await;
    let url = "https://fn.example/api/hook?code=TOPSECRET&clientId=default";
    let path = "/v1/workspaces/ws1/eventSubscriptions/secret-hook";
    let put = api
        .ok(
            "PUT",
            &format!("{path}?skipValidation=true"),
            json!({"properties": {"destination": webhook(url)}}),
        )
        .await;
    let mut keys = Vec::new();
    for (name, role) in [("reader", "Reader"), ("contributor", "Contributor")] {
        let created = api.ok("POST", "/v1/principals", json!({"name": name})).await;
        api.ok(
            "POST",
            "/v1/roleAssignments",
            json!({"assignee": name, "role": role, "workspace": "ws1"}),
        )
        .await;
        keys.push(created["key"].as_str().unwrap().to_owned());
    }
    let (reader, contributor) = (&keys[0], &keys[1]);
    let shown = api.call_as(reader, "GET", path, None, None).await.body;
    let listed = api
        .call_as(reader, "GET", "/v1/workspaces/ws1/eventSubscriptions", None, None)
        .await
        .body;
    for view in [&put, &shown, &listed["value"][0]] {
        let endpoint = &view["properties"]["destination"]["properties"];
        assert_eq!(endpoint["endpointBaseUrl"], "https://fn.example/api/hook", "{view}");
        assert!(endpoint.get("endpointUrl").is_none(), "{view}");
        assert!(!view.to_string().contains("TOPSECRET"), "{view}");
    }

    let refused = api
        .call_as(reader, "POST", &format!("{path}/getFullUrl"), None, None)
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.message().contains("Contributor"), "{}", refused.message());
    let full = api
        .call_as(contributor, "POST", &format!("{path}/getFullUrl"), None, None)
        .await;
    assert_eq!(full.status, StatusCode::OK, "{}", full.body);
    assert_eq!(full.body, json!({"endpointUrl": url}));
    let missing = api
        .call("POST", "/v1/workspaces/ws1/eventSubscriptions/nope/getFullUrl", None)
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}
