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
use serde_json::Value;
use tower::ServiceExt;

pub const ADMIN_KEY: &str = "test-admin-key-0123456789abcdefghijklmnop";

pub struct TestApi {
    pub app: Router,
    pub store: Arc<dyn Store>,
    _dir: tempfile::TempDir,
}

pub struct Reply {
    pub status: StatusCode,
    pub etag: Option<String>,
    pub body: Value,
}

impl Reply {
    pub fn message(&self) -> &str {
        self.body["error"]["message"].as_str().unwrap_or_default()
    }
}

impl TestApi {
    pub async fn new() -> TestApi {
        TestApi::with_config(ServerConfig::default()).await
    }

    pub async fn with_config(config: ServerConfig) -> TestApi {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = SqliteStore::open(dir.path().join("mlgrid.db")).await.unwrap();
        bootstrap_owner(&*store, dir.path(), Some(ADMIN_KEY)).await.unwrap();
        TestApi {
            app: app(AppState::new(store.clone(), ServerSecret::generate(), config).unwrap()),
            store,
            _dir: dir,
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
            .header("host", "mlgrid.test")
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
        let response = self.app.clone().oneshot(request.body(body).unwrap()).await.unwrap();
        let status = response.status();
        let etag = response.headers().get("etag").map(|v| v.to_str().unwrap().to_owned());
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        Reply { status, etag, body }
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
