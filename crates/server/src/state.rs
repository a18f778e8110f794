//! What every handler shares.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlgrid_core::publish::PublishLimits;
use mlgrid_core::resource::SourceKind;
use mlgrid_core::validation::VALIDATION_WINDOW_MINUTES;
use mlgrid_delivery::Validator;
use mlgrid_store::{SourceId, Store};

use crate::error::ApiError;
use crate::keys::ServerSecret;

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This node's name among the nodes sharing a database, shown by `/healthz` and
    /// `/metrics`.
    pub node_id: String,
    /// Base URL under which clients reach this server, for the `endpoint` of topics;
    /// when unset, the request's `Host` header is used.
    pub public_url: Option<String>,
    /// Largest publish request, in bytes (Event Grid: 1 MB for the whole array).
    pub max_request_bytes: usize,
    pub publish_limits: PublishLimits,
    /// How webhooks are delivered, and which addresses they may reach.
    pub delivery: mlgrid_delivery::DispatcherConfig,
    /// The folder holding the local datastores (the built-in `workspaceblobstore`
    /// among them), where dead letters are written.
    pub datastore_root: PathBuf,
    /// Whether Contributors may skip the validation handshake of a webhook (else it
    /// takes Owner: the receiver has not consented to the events).
    pub allow_contributor_skip_validation: bool,
}

impl ServerConfig {
    /// How long an endpoint has to validate a subscription manually: Event Grid's
    /// 5 minutes, on the delivery schedule's time scale.
    pub fn validation_window(&self) -> chrono::Duration {
        let window = Duration::from_secs(60 * VALIDATION_WINDOW_MINUTES as u64).mul_f64(self.delivery.schedule.scale);
        chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX)
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            node_id: "mlgrid".to_owned(),
            public_url: None,
            max_request_bytes: 1024 * 1024,
            publish_limits: PublishLimits::default(),
            delivery: mlgrid_delivery::DispatcherConfig::default(),
            datastore_root: PathBuf::from("mlgrid-data/datastores"),
            allow_contributor_skip_validation: false,
        }
    }
}

/// Shared state of the handlers; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub secret: ServerSecret,
    pub config: Arc<ServerConfig>,
    pub(crate) topics: Arc<TopicCache>,
    /// Renders the process's metrics for `/metrics`; `None` when no recorder is installed.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Runs the validation handshake of webhook subscriptions.
    pub validator: Validator,
}

impl AppState {
    /// Fails only if the HTTP client for webhooks cannot be built.
    pub fn new(store: Arc<dyn Store>, secret: ServerSecret, config: ServerConfig) -> std::io::Result<AppState> {
        let validator = Validator::new(config.delivery.addresses, config.delivery.timeout)
            .map_err(|e| std::io::Error::other(format!("cannot build the webhook client: {e}")))?;
        Ok(AppState {
            store,
            secret,
            config: Arc::new(config),
            topics: Arc::new(TopicCache::default()),
            metrics: None,
            validator,
        })
    }
}

/// What the publish path needs to know about a topic.
#[derive(Debug)]
pub(crate) struct TopicAuth {
    pub source_id: SourceId,
    pub topic: String,
    pub key_hashes: Vec<String>,
}

/// How long a node trusts its cached copy of a topic's keys. Another node's key
/// regeneration or topic deletion takes effect here within this time; this node's own
/// take effect at once.
const TOPIC_CACHE_TTL: Duration = Duration::from_secs(5);

/// Topics and their key hashes, so that publishing does not read the database for every
/// request.
#[derive(Default)]
pub(crate) struct TopicCache {
    entries: Mutex<HashMap<String, (Instant, Arc<TopicAuth>)>>,
}

impl TopicCache {
    pub async fn get(&self, store: &dyn Store, name: &str) -> Result<Arc<TopicAuth>, ApiError> {
        if let Some((loaded, auth)) = self.lock().get(name)
            && loaded.elapsed() < TOPIC_CACHE_TTL
        {
            return Ok(auth.clone());
        }
        let source = store.source(SourceKind::Topic, name).await?;
        let keys = store.topic_keys(source.id).await?;
        let auth = Arc::new(TopicAuth {
            source_id: source.id,
            topic: source.topic(),
            key_hashes: keys.into_iter().map(|k| k.hash).collect(),
        });
        self.lock().insert(name.to_owned(), (Instant::now(), auth.clone()));
        Ok(auth)
    }

    pub fn forget(&self, name: &str) {
        self.lock().remove(name);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<TopicAuth>)>> {
        self.entries
            .lock()
            .expect("topic cache lock is never held across a panic")
    }
}
