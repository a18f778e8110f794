//! The HTTP client the commands use: the server's URL, the API key, and the server's
//! error messages passed on as they are.

use std::path::Path;

use anyhow::{Context, anyhow, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::args::{DEFAULT_SERVER, Global};

pub struct Client {
    http: reqwest::Client,
    base: String,
    api_key: String,
}

/// Reads the key from `--api-key`/`MLGRID_API_KEY`, else `<data-dir>/admin.key`.
fn resolve_api_key(given: Option<&str>, data_dir: &Path) -> anyhow::Result<String> {
    if let Some(key) = given {
        return Ok(key.trim().to_owned());
    }
    let path = data_dir.join(mlgrid_server::bootstrap::ADMIN_KEY_FILE);
    let key = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "no API key: pass --api-key or set MLGRID_API_KEY, or point --data-dir at the server's \
             data directory (could not read {})",
            path.display()
        )
    })?;
    Ok(key.trim().to_owned())
}

impl Client {
    pub fn new(global: &Global) -> anyhow::Result<Client> {
        Ok(Client {
            http: reqwest::Client::new(),
            base: global
                .server
                .as_deref()
                .unwrap_or(DEFAULT_SERVER)
                .trim_end_matches('/')
                .to_owned(),
            api_key: resolve_api_key(global.api_key.as_deref(), &global.data_dir)?,
        })
    }

    pub fn with_key(base: &str, api_key: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            api_key: api_key.to_owned(),
        }
    }

    /// Sends a request and returns the JSON answer (`null` for an empty one); an error
    /// response becomes an error carrying the server's code and message.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        self.send(method, path, body, None).await
    }

    /// Like [`Self::call`], for a change that applies only while the resource still has
    /// `etag`.
    pub async fn call_if_match(&self, method: Method, path: &str, body: &Value, etag: &str) -> anyhow::Result<Value> {
        self.send(method, path, Some(body), Some(etag)).await
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> anyhow::Result<Value> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method, &url).bearer_auth(&self.api_key);
        if let Some(body) = body {
            request = request.json(body);
        }
        if let Some(etag) = if_match {
            request = request.header("if-match", etag);
        }
        let response = request.send().await.with_context(|| {
            format!(
                "cannot reach the mlgrid server at {} (is `mlgrid serve` running? see --server)",
                self.base
            )
        })?;
        let status = response.status();
        let bytes = response.bytes().await.context("reading the server's answer")?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        };
        if status.is_success() {
            return Ok(value);
        }
        Err(server_error(status, &value))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(Method::POST, path, Some(body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.call(Method::DELETE, path, None).await
    }

    /// Reads a piece of a step's log: its bytes, the log's size and whether it is
    /// complete (the `X-Log-Size` and `X-Log-Complete` headers).
    pub async fn get_log(&self, path: &str) -> anyhow::Result<(Vec<u8>, u64, bool)> {
        let url = format!("{}{path}", self.base);
        let response = self
            .http
            .get(&url)
            .bearer_auth(&self.api_key)
            .send()
            .await
            .with_context(|| format!("cannot reach the mlgrid server at {}", self.base))?;
        let status = response.status();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let (size, complete) = (header("x-log-size"), header("x-log-complete"));
        let bytes = response.bytes().await.context("reading the server's answer")?;
        if !status.is_success() {
            let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(server_error(status, &value));
        }
        let size = size.and_then(|s| s.parse().ok()).unwrap_or(0);
        Ok((bytes.to_vec(), size, complete.as_deref() == Some("true")))
    }
}

fn server_error(status: StatusCode, body: &Value) -> anyhow::Error {
    match (body["error"]["code"].as_str(), body["error"]["message"].as_str()) {
        (Some(code), Some(message)) => anyhow!("{code}: {message}"),
        _ => anyhow!("the server answered {status}: {body}"),
    }
}

/// Fails unless `value` is a list response `{"value": [...]}`, and returns the list.
pub fn list_value(mut value: Value) -> anyhow::Result<Value> {
    match value.get_mut("value") {
        Some(list) if list.is_array() => Ok(list.take()),
        _ => bail!("the server answered a list call without a `value` array: {value}"),
    }
}
