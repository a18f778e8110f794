//! The topic a bench publishes to: a fresh one, on the servers the bench starts or on
//! `--server`.

use std::sync::Arc;

use anyhow::Context;
use serde_json::json;

use super::local_server::{ClusterArgs, LocalCluster, Sample};
use crate::args::Global;
use crate::client::Client;

pub struct BenchTopic {
    /// The servers the bench started; `None` with `--server`.
    local: Option<LocalCluster>,
    /// Where the bench's own requests go (the first node).
    pub client: Client,
    pub name: String,
    /// Each node's publishing endpoint: requests go to the nodes in turn.
    pub endpoints: Arc<Vec<String>>,
    /// The topic's `key1`, for `aeg-sas-key`.
    pub key: String,
}

impl BenchTopic {
    /// Starts local servers with `flags` unless `--server` is given, and creates a topic.
    pub async fn create(cluster: &ClusterArgs, global: &Global, flags: &[&str]) -> anyhow::Result<BenchTopic> {
        let local = match &global.server {
            Some(_) => None,
            None => {
                let local = LocalCluster::start(cluster, flags).await?;
                eprintln!("bench: {}", local.started());
                Some(local)
            }
        };
        let client = match &local {
            Some(cluster) => Client::with_key(&cluster.urls()[0], &cluster.api_key),
            None => Client::new(global)?,
        };
        let name = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let topic = client.post("/v1/topics", &json!({"name": name})).await?;
        let endpoints = match &local {
            Some(cluster) => cluster
                .urls()
                .iter()
                .map(|url| format!("{url}/topics/{name}/api/events?api-version=2018-01-01"))
                .collect(),
            None => vec![format!(
                "{}?api-version=2018-01-01",
                topic["endpoint"].as_str().context("the topic has no endpoint")?
            )],
        };
        let keys = client.post(&format!("/v1/topics/{name}/listKeys"), &json!({})).await?;
        let key = keys["key1"].as_str().context("the topic has no key1")?.to_owned();
        Ok(BenchTopic {
            local,
            client,
            name,
            endpoints: Arc::new(endpoints),
            key,
        })
    }

    /// Subscribes a webhook to the topic for each of `receivers`, delivering in batches
    /// of up to `max_events_per_batch`.
    pub async fn subscribe_webhooks(&self, receivers: &[String], max_events_per_batch: u32) -> anyhow::Result<()> {
        for (s, url) in receivers.iter().enumerate() {
            let destination = json!({"endpointType": "WebHook", "properties": {"endpointUrl": url, "maxEventsPerBatch": max_events_per_batch}});
            self.client
                .call(
                    reqwest::Method::PUT,
                    &format!("/v1/topics/{}/eventSubscriptions/sub-{s}", self.name),
                    Some(&json!({"properties": {"destination": destination}})),
                )
                .await?;
        }
        eprintln!(
            "bench: {} subscriptions deliver to receivers of their own",
            receivers.len()
        );
        Ok(())
    }

    /// The servers, as a bench's result names them.
    pub fn server(&self, global: &Global) -> String {
        self.local.as_ref().map_or_else(
            || global.server.clone().unwrap_or_default(),
            |cluster| cluster.description().to_owned(),
        )
    }

    /// The first local server's memory and store files now; `None` with `--server`.
    pub fn sample(&self) -> Option<Sample> {
        self.local.as_ref().map(LocalCluster::sample)
    }

    /// The local servers' peak memory; `None` with `--server`.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        self.local.as_ref().and_then(LocalCluster::peak_rss_mb)
    }

    /// Stops the servers the bench started.
    pub async fn stop(self) -> anyhow::Result<()> {
        match self.local {
            Some(cluster) => cluster.stop().await,
            None => Ok(()),
        }
    }
}
