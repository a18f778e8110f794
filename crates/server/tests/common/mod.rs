//! A router on a real SQLite store, driven without a socket.

#![allow(dead_code)] // each test binary uses its own part of this module

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use mlgrid_server::bootstrap::bootstrap_owner;
use mlgrid_server::keys::ServerSecret;
use mlgrid_server::{AppState, ServerConfig, app};
use mlgrid_store::{SqliteStore, Store};
use serde_json::{Value, json};
use tower::ServiceExt;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdefghijklmnop";
/// The `Host` every request names, and the public URL's host of [`TestApi::new`].
pub const HOST: &str = "mlgrid.test:7070";

pub struct TestApi {
    pub app: Router,
    /// The state `app` was built over, for building other routers on it.
    pub state: AppState,
    pub store: Arc<dyn Store>,
    /// `store`, as what it is, for what only SQLite has (a size cap to fill it).
    pub sqlite: Arc<SqliteStore>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
}

impl TestApi {
    /// A server whose public URL is `http://{HOST}`.
    pub async fn new() -> TestApi {
        TestApi::with_config(ServerConfig {
            public_url: Some(format!("http://{HOST}")),
            ..ServerConfig::default()
        })
        .await
    }

    pub async fn with_config(config: ServerConfig) -> TestApi {
        TestApi::with_clock(config, mlgrid_delivery::system_clock()).await
    }

    /// A server that goes by `clock` (a [`mlgrid_delivery::ManualClock`] the test moves).
    pub async fn with_clock(mut config: ServerConfig, clock: mlgrid_delivery::SharedClock) -> TestApi {
        config.delivery.clock = clock;
        let dir = tempfile::tempdir().unwrap();
        // Nothing a test runs writes beside the sources.
        if config.datastore_root.is_relative() {
            config.datastore_root = dir.path().join("datastores");
        }
        if config.pipeline_runs_root.is_relative() {
            config.pipeline_runs_root = dir.path().join("pipeline-runs");
        }
        let sqlite = SqliteStore::open(dir.path().join("mlgrid.db")).await.unwrap();
        let store: Arc<dyn Store> = sqlite.clone();
        bootstrap_owner(&*store, dir.path(), Some(ADMIN_KEY)).await.unwrap();
        let state = AppState::new(store.clone(), ServerSecret::generate(), config).unwrap();
        TestApi {
            app: app(state.clone()),
            state,
            store,
            sqlite,
            _dir: dir,
        }
    }

    /// Sends a request as it is, and reads the answer (JSON, or text as a string).
    pub async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let etag = headers.get("etag").map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply {
            status,
            etag,
            headers,
            body,
        }
    }

    /// Sends a request as the principal holding `key`.
    pub async fn call_as(
        &self,
        key: &str,
        method: &str,
        uri: &str,
        body: Option<Value>,
        if_match: Option<&str>,
    ) -> Reply {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", HOST)
            .header("authorization", format!("Bearer {key}"));
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        let body = match body {
            Some(body) => {
                request = request.header("content-type", "application/json");
                Body::from(body.to_string())
            }
            None => Body::empty(),
        };
        self.send(request.body(body).unwrap()).await
    }

    /// Sends a request as the first Owner, with an `If-Match` etag.
    pub async fn call_if_match(&self, method: &str, uri: &str, body: Option<Value>, if_match: Option<&str>) -> Reply {
        self.call_as(ADMIN_KEY, method, uri, body, if_match).await
    }

    /// Sends a request as the first Owner.
    pub async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> Reply {
        self.call_as(ADMIN_KEY, method, uri, body, None).await
    }

    /// Sends a request as the first Owner and insists it succeeds.
    pub async fn ok(&self, method: &str, uri: &str, body: Value) -> Value {
        let reply = self.call(method, uri, Some(body)).await;
        assert!(
            reply.status.is_success(),
            "{method} {uri}: {} {}",
            reply.status,
            reply.body
        );
        reply.body
    }

    /// Publishes a body to a topic's Event Grid endpoint as it is.
    pub async fn publish_with(&self, topic: &str, key: &str, content_type: &str, body: impl Into<String>) -> Reply {
        let request = Request::post(format!("/topics/{topic}/api/events?api-version=2018-01-01"))
            .header("aeg-sas-key", key)
            .header("content-type", content_type)
            .body(Body::from(body.into()))
            .unwrap();
        self.send(request).await
    }

    /// Creates a topic and returns its two keys.
    pub async fn topic_with_keys(&self, name: &str) -> (String, String) {
        let created = self.call("POST", "/v1/topics", Some(json!({"name": name}))).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let keys = self.call("POST", &format!("/v1/topics/{name}/listKeys"), None).await;
        assert_eq!(keys.status, StatusCode::OK);
        (
            keys.body["key1"].as_str().unwrap().into(),
            keys.body["key2"].as_str().unwrap().into(),
        )
    }

    /// A page of a workspace's or topic's event log.
    pub async fn events(&self, kind: &str, name: &str, query: &str) -> Value {
        let reply = self
            .call("GET", &format!("/v1/{kind}/{name}/events?{query}"), None)
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
        reply.body
    }

    /// Publishes Event Grid events to a topic with its first key.
    pub async fn publish(&self, topic: &str, events: Value) {
        let keys = self
            .call("POST", &format!("/v1/topics/{topic}/listKeys"), None)
            .await
            .body;
        let request = Request::post(format!("/topics/{topic}/api/events"))
            .header("aeg-sas-key", keys["key1"].as_str().unwrap())
            .header("content-type", "application/json")
            .body(Body::from(events.to_string()))
            .unwrap();
        let response = self.app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }
}
