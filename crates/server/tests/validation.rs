//! The endpoint validation handshake against real receivers on loopback.

mod common;

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, Method, StatusCode};
use axum::routing::any;
use chrono::Utc;
use common::TestApi;
use mlgrid_delivery::{AddressPolicy, Clock, Fanout, ManualClock, SharedClock, system_clock};
use mlgrid_server::ServerConfig;
use serde_json::{Value, json};

/// What a receiver does with the handshake.
#[derive(Clone, Copy)]
enum Answer {
    /// Echo the validation code (or allow the origin for OPTIONS).
    Echo,
    /// 200 with an empty body: it will validate through the URL.
    Later,
    /// This status, whatever was asked.
    Status(u16),
    /// A wrong code.
    WrongCode,
}

/// A request a receiver saw.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    headers: HeaderMap,
    body: Value,
}

async fn receiver(answer: Answer) -> (String, Arc<Mutex<Vec<Seen>>>) {
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        any(move |method: Method, headers: HeaderMap, body: String| {
            let log = log.clone();
            async move {
                let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                log.lock().unwrap().push(Seen {
                    method: method.clone(),
                    headers: headers.clone(),
                    body: body.clone(),
                });
                let mut out = HeaderMap::new();
                let (status, text) = match (answer, method == Method::OPTIONS) {
                    (Answer::Echo, true) => {
                        let origin = headers["webhook-request-origin"].clone();
                        out.insert("webhook-allowed-origin", origin);
                        (200, String::new())
                    }
                    (Answer::Echo, false) => {
                        let code = body[0]["data"]["validationCode"].as_str().unwrap_or_default();
                        (200, json!({"validationResponse": code}).to_string())
                    }
                    (Answer::WrongCode, _) => (200, json!({"validationResponse": "nope"}).to_string()),
                    (Answer::Later, _) => (200, String::new()),
                    (Answer::Status(code), _) => (code, String::new()),
                };
                (StatusCode::from_u16(status).unwrap(), out, text)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// A loopback URL that refuses connections: its port is bound but not listening, so no
/// other process can take it while the test holds the socket.
fn closed_url() -> (tokio::net::TcpSocket, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let url = format!("http://{}/hook", socket.local_addr().unwrap());
    (socket, url)
}

/// A server that may reach loopback receivers.
async fn api() -> TestApi {
    api_going_by(system_clock()).await
}

/// A server that may reach loopback receivers, going by `clock`.
async fn api_going_by(clock: SharedClock) -> TestApi {
    let mut config = ServerConfig {
        public_url: Some(format!("http://{}", common::HOST)),
        ..ServerConfig::default()
    };
    config.delivery.addresses = AddressPolicy {
        allow_private: false,
        allow_loopback: true,
    };
    let api = TestApi::with_clock(config, clock).await;
    api.ok("POST", "/v1/topics", json!({"name": "orders"})).await;
    api
}

fn subscription(url: &str, schema: &str) -> Value {
    json!({"properties": {"destination": {"endpointType": "WebHook", "properties": {"endpointUrl": url}},
                          "eventDeliverySchema": schema}})
}

const PATH: &str = "/v1/topics/orders/eventSubscriptions/sub-1";

#[tokio::test]
async fn an_endpoint_that_echoes_the_code_is_validated_at_once() {
    let api = api().await;
    let (url, seen) = receiver(Answer::Echo).await;
    let created = api.call("PUT", PATH, Some(subscription(&url, "EventGridSchema"))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["properties"]["provisioningState"], "Succeeded");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, Method::POST);
    assert_eq!(request.headers["aeg-event-type"], "SubscriptionValidation");
    assert_eq!(request.headers["aeg-subscription-name"], "SUB-1");
    assert!(
        request.headers.contains_key("webhook-signature"),
        "signed like deliveries"
    );
    let event = &request.body[0];
    assert_eq!(event["eventType"], "Microsoft.EventGrid.SubscriptionValidationEvent");
    assert!(event["topic"].as_str().unwrap().ends_with("/topics/orders"));
    let validation_url = event["data"]["validationUrl"].as_str().unwrap();
    assert!(
        validation_url.starts_with("http://mlgrid.test:7070/v1/topics/orders/eventSubscriptions/sub-1/validate?t="),
        "{validation_url}"
    );
    uuid::Uuid::parse_str(event["data"]["validationCode"].as_str().unwrap()).expect("a UUID-shaped code");

    // Replacing the definition with the same endpoint needs no new handshake.
    let mut changed = subscription(&url, "EventGridSchema");
    changed["properties"]["labels"] = json!(["x"]);
    let replaced = api.call("PUT", PATH, Some(changed)).await;
    assert_eq!(replaced.body["properties"]["provisioningState"], "Succeeded");
}

#[tokio::test]
async fn an_endpoint_validates_later_through_the_validation_url() {
    let api = api().await;
    let (url, seen) = receiver(Answer::Later).await;
    let created = api.call("PUT", PATH, Some(subscription(&url, "EventGridSchema"))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["properties"]["provisioningState"], "AwaitingManualAction");

    let validation_url = seen.lock().unwrap()[0].body[0]["data"]["validationUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let local = validation_url.strip_prefix("http://mlgrid.test:7070").unwrap();
    let forged = local.replace("token=", "token=x");
    let refused = api.call("GET", &forged, None).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(refused.body["error"]["code"], "InvalidValidationUrl");

    let validated = api.call("GET", local, None).await;
    assert_eq!(validated.status, StatusCode::OK, "{}", validated.body);
    let shown = api.call("GET", PATH, None).await;
    assert_eq!(shown.body["properties"]["provisioningState"], "Succeeded");
    assert_eq!(api.call("GET", local, None).await.status, StatusCode::OK, "idempotent");

    // A new endpoint starts a new handshake; the old URL no longer validates anything.
    let (other, _) = receiver(Answer::Later).await;
    let moved = api
        .call("PUT", PATH, Some(subscription(&other, "EventGridSchema")))
        .await;
    assert_eq!(moved.body["properties"]["provisioningState"], "AwaitingManualAction");
    assert_eq!(api.call("GET", local, None).await.status, StatusCode::BAD_REQUEST);
}

/// Moves `clock` past the validation window of anything issued until now: handshakes
/// are stamped by the store's clock (the system's), which the manual one started behind.
fn past_the_window(api: &TestApi, clock: &ManualClock) {
    let past = Utc::now() + api.state.config.validation_window() + chrono::Duration::seconds(1);
    clock.advance(past - clock.now());
}

#[tokio::test]
async fn an_endpoint_that_never_validates_fails_after_the_window() {
    let clock = ManualClock::new(Utc::now());
    let api = api_going_by(clock.shared()).await;
    let (url, _) = receiver(Answer::Later).await;
    let created = api.call("PUT", PATH, Some(subscription(&url, "EventGridSchema"))).await;
    assert_eq!(created.body["properties"]["provisioningState"], "AwaitingManualAction");
    let window = api.state.config.validation_window();
    let mut fanout = Fanout::new(api.store.clone(), window).with_clock(clock.shared());

    // Within the window the fan-out's sweep leaves it waiting...
    clock.advance(window - chrono::Duration::seconds(1));
    fanout.pass().await.unwrap();
    assert_eq!(
        api.call("GET", PATH, None).await.body["properties"]["provisioningState"],
        "AwaitingManualAction"
    );
    // ...and after it fails it.
    past_the_window(&api, &clock);
    fanout.pass().await.unwrap();
    assert_eq!(
        api.call("GET", PATH, None).await.body["properties"]["provisioningState"],
        "Failed"
    );
}

#[tokio::test]
async fn a_validation_url_used_after_the_window_is_refused() {
    let clock = ManualClock::new(Utc::now());
    let api = api_going_by(clock.shared()).await;
    let (url, seen) = receiver(Answer::Later).await;
    api.call("PUT", PATH, Some(subscription(&url, "EventGridSchema"))).await;
    let validation_url = seen.lock().unwrap()[0].body[0]["data"]["validationUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let local = validation_url.strip_prefix("http://mlgrid.test:7070").unwrap();

    past_the_window(&api, &clock);
    let late = api.call("GET", local, None).await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST, "{}", late.body);
    assert_eq!(late.body["error"]["code"], "ValidationExpired");
    assert_eq!(
        api.call("GET", PATH, None).await.body["properties"]["provisioningState"],
        "Failed"
    );
}

#[tokio::test]
async fn refusing_or_wrong_endpoints_fail_with_what_to_do() {
    let api = api().await;
    for (answer, says) in [(Answer::Status(500), "HTTP 500"), (Answer::WrongCode, "\"nope\"")] {
        let (url, _) = receiver(answer).await;
        let failed = api.call("PUT", PATH, Some(subscription(&url, "EventGridSchema"))).await;
        assert_eq!(failed.status, StatusCode::BAD_REQUEST);
        assert_eq!(failed.body["error"]["code"], "ValidationFailed");
        let message = failed.message();
        assert!(
            message.contains(says) && message.contains("validationResponse") && message.contains("skipValidation"),
            "{message}"
        );
        let shown = api.call("GET", PATH, None).await;
        assert_eq!(shown.body["properties"]["provisioningState"], "Failed");
    }
    // Nobody listening.
    let (_port, closed) = closed_url();
    let failed = api
        .call("PUT", PATH, Some(subscription(&closed, "EventGridSchema")))
        .await;
    assert_eq!(failed.status, StatusCode::BAD_REQUEST);
    assert!(failed.message().contains("did not answer"), "{}", failed.message());
    // Skipping the handshake is the owner's call.
    let skipped = api
        .call(
            "PUT",
            &format!("{PATH}?skipValidation=true"),
            Some(subscription(&closed, "EventGridSchema")),
        )
        .await;
    assert_eq!(skipped.body["properties"]["provisioningState"], "Succeeded");
}

#[tokio::test]
async fn without_a_public_url_the_validation_url_names_the_listen_address_not_the_host_header() {
    let mut config = ServerConfig {
        listen: "127.0.0.1:7777".parse().unwrap(),
        ..ServerConfig::default()
    };
    config.delivery.addresses = AddressPolicy {
        allow_private: false,
        allow_loopback: true,
    };
    let api = TestApi::with_config(config).await;
    api.ok("POST", "/v1/topics", json!({"name": "orders"})).await;
    let (url, seen) = receiver(Answer::Later).await;
    // Every request of TestApi names `Host: mlgrid.test:7070`: here a forged one.
    let created = api.call("PUT", PATH, Some(subscription(&url, "EventGridSchema"))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let validation_url = seen.lock().unwrap()[0].body[0]["data"]["validationUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        validation_url.starts_with("http://127.0.0.1:7777/v1/topics/orders/eventSubscriptions/sub-1/validate?"),
        "{validation_url}"
    );
    let topic = api.call("GET", "/v1/topics/orders", None).await;
    assert_eq!(topic.body["endpoint"], "http://127.0.0.1:7777/topics/orders/api/events");
}

#[tokio::test]
async fn failed_handshakes_never_quote_the_endpoint_query() {
    let api = api().await;
    let (refusing, _) = receiver(Answer::Status(500)).await;
    let (_port, closed) = closed_url();
    // A refusing endpoint, and one nobody listens on (the HTTP client's error quotes
    // the URL it tried).
    for url in [refusing, closed] {
        let secret = format!("{url}?code=TOPSECRET");
        let failed = api
            .call("PUT", PATH, Some(subscription(&secret, "EventGridSchema")))
            .await;
        assert_eq!(failed.status, StatusCode::BAD_REQUEST);
        let message = failed.message();
        assert!(message.contains(&url) && !message.contains("TOPSECRET"), "{message}");
    }
}

#[tokio::test]
async fn cloud_events_endpoints_answer_the_options_handshake() {
    let api = api().await;
    let (url, seen) = receiver(Answer::Echo).await;
    let created = api
        .call("PUT", PATH, Some(subscription(&url, "CloudEventSchemaV1_0")))
        .await;
    assert_eq!(
        created.body["properties"]["provisioningState"], "Succeeded",
        "{}",
        created.body
    );
    let request = seen.lock().unwrap()[0].clone();
    assert_eq!(request.method, Method::OPTIONS);
    assert_eq!(request.headers["webhook-request-origin"], "eventgrid.azure.net");
    assert!(
        request.headers["webhook-request-callback"]
            .to_str()
            .unwrap()
            .contains("/validate?t=")
    );

    let (refusing, _) = receiver(Answer::Status(405)).await;
    let failed = api
        .call(
            "PUT",
            "/v1/topics/orders/eventSubscriptions/sub-2",
            Some(subscription(&refusing, "CloudEventSchemaV1_0")),
        )
        .await;
    assert_eq!(failed.status, StatusCode::BAD_REQUEST);
    assert!(
        failed.message().contains("WebHook-Allowed-Origin"),
        "{}",
        failed.message()
    );
}

#[tokio::test]
async fn forbidden_destinations_are_refused_at_create_even_without_a_handshake() {
    let api = TestApi::new().await;
    api.ok("POST", "/v1/topics", json!({"name": "orders"})).await;
    for (url, says) in [
        ("http://169.254.169.254/latest/meta-data", "link-local"),
        ("http://127.0.0.1:8080/hook", "--allow-loopback-webhooks"),
        ("http://10.1.2.3/hook", "--allow-private-webhooks"),
        ("http://localhost:8080/hook", "localhost resolves to"),
    ] {
        let refused = api
            .call(
                "PUT",
                &format!("{PATH}?skipValidation=true"),
                Some(subscription(url, "EventGridSchema")),
            )
            .await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{url}");
        assert!(refused.message().contains(says), "{url}: {}", refused.message());
    }
}
