//! What every handler shares.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mlgrid_core::publish::PublishLimits;
use mlgrid_core::resource::SourceKind;
use mlgrid_core::validation::VALIDATION_WINDOW_MINUTES;
use mlgrid_delivery::{ExportProblems, Handshakes, Validator};
use mlgrid_pipelines::{
    DataLayout, DatastoreRegistry, DatastoreWatches, Definitions, Executor, LocalProcessRunner, Pipelines, Scheduler,
    Schedules, Watcher,
};
use mlgrid_store::{SourceId, Store};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::keys::ServerSecret;

/// Settings of a running server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// This node's name among the nodes sharing a database, shown by `/healthz` and
    /// `/metrics`.
    pub node_id: String,
    /// Base URL under which clients and receivers reach this server: the `endpoint` of
    /// topics and the validation URL of handshakes. When unset, `listen` is used; a
    /// request's `Host` header never is (a forged one would send receivers elsewhere).
    pub public_url: Option<String>,
    /// The address the server listens on; `run_node` sets it from its listener.
    pub listen: SocketAddr,
    /// Largest publish request, in bytes (Event Grid: 1 MB for the whole array).
    pub max_request_bytes: usize,
    pub publish_limits: PublishLimits,
    /// How webhooks are delivered, and which addresses they may reach.
    pub delivery: mlgrid_delivery::DispatcherConfig,
    /// Timeouts and the cap on connections, against slow and too many clients.
    pub connections: crate::ConnectionLimits,
    /// The folder holding the local datastores (the built-in `workspaceblobstore`
    /// among them), where dead letters are written.
    pub datastore_root: PathBuf,
    /// The folder holding pipeline runs' outputs and logs.
    pub pipeline_runs_root: PathBuf,
    /// How the pipeline executor of this node runs steps (at most how many at once).
    pub executor: mlgrid_pipelines::ExecutorConfig,
    /// How the scheduler holds its lease and paces its passes.
    pub scheduler: mlgrid_pipelines::SchedulerConfig,
    /// How the watcher of change schedules and datastore watches holds its lease and
    /// paces its polls.
    pub watcher: mlgrid_pipelines::WatcherConfig,
    /// Whether Contributors may skip the validation handshake of a webhook (else it
    /// takes Owner: the receiver has not consented to the events).
    pub allow_contributor_skip_validation: bool,
    /// How long events, delivery history and dead letters are kept, and how pruning
    /// paces itself.
    pub retention: crate::prune::RetentionConfig,
}

impl ServerConfig {
    /// The URL clients and receivers reach this server under, without a trailing `/`:
    /// the public URL, else `http://` and the listen address (loopback for an
    /// unspecified address: the only one sure to reach this host).
    pub fn base_url(&self) -> String {
        if let Some(url) = &self.public_url {
            return url.trim_end_matches('/').to_owned();
        }
        let mut listen = self.listen;
        if listen.ip().is_unspecified() {
            listen.set_ip(match listen.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        format!("http://{listen}")
    }

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
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 7070)),
            max_request_bytes: 1024 * 1024,
            publish_limits: PublishLimits::default(),
            delivery: mlgrid_delivery::DispatcherConfig::default(),
            datastore_root: PathBuf::from("mlgrid-data/datastores"),
            pipeline_runs_root: PathBuf::from("mlgrid-data/pipeline-runs"),
            executor: mlgrid_pipelines::ExecutorConfig::default(),
            scheduler: mlgrid_pipelines::SchedulerConfig::default(),
            watcher: mlgrid_pipelines::WatcherConfig::default(),
            connections: crate::ConnectionLimits::default(),
            allow_contributor_skip_validation: false,
            retention: crate::prune::RetentionConfig::default(),
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
    pub handshakes: Handshakes,
    /// Why subscriptions' dead letters could not be written to their folders lately.
    pub dead_letter_exports: ExportProblems,
    /// Cancelled when the server starts shutting down: long polls answer at once with
    /// what they have, rather than holding the drain for up to a minute.
    pub shutdown: CancellationToken,
    /// Publishing, submitting and cancelling pipelines.
    pub pipelines: Pipelines,
    /// Runs the steps of pipeline runs; [`crate::run_node`] starts it.
    pub executor: Executor,
    /// Registers datastores and builds each workspace's.
    pub datastores: DatastoreRegistry,
    /// Creating, changing and reading schedules of pipelines.
    pub schedules: Schedules,
    /// Creating datastore watches, checked whole.
    pub watches: DatastoreWatches,
    /// Fires the ticks of schedules (on the node holding its lease); [`crate::run_node`]
    /// starts it.
    pub scheduler: Scheduler,
    /// Polls the folders of change schedules and datastore watches (on the node holding
    /// its lease);
    /// [`crate::run_node`] starts it.
    pub watcher: Watcher,
}

impl AppState {
    /// Fails only if the HTTP client for webhooks cannot be built.
    pub fn new(store: Arc<dyn Store>, secret: ServerSecret, config: ServerConfig) -> std::io::Result<AppState> {
        let validator = Validator::new(config.delivery.addresses, config.delivery.timeout)
            .map_err(|e| std::io::Error::other(format!("cannot build the webhook client: {e}")))?;
        let handshakes = Handshakes::new(
            store.clone(),
            validator,
            config.delivery.clock.clone(),
            config.validation_window(),
        );
        let layout = DataLayout::from_roots(config.datastore_root.clone(), config.pipeline_runs_root.clone());
        let datastores = DatastoreRegistry::new(
            store.clone(),
            layout.clone(),
            secret.datastore_key(),
            Arc::new(crate::datastore_endpoints::AddressRules(config.delivery.addresses)),
        );
        let definitions = Definitions::default();
        let mut executor_config = config.executor.clone();
        executor_config.holder = config.node_id.clone();
        let executor = Executor::new(
            store.clone(),
            Arc::new(LocalProcessRunner),
            layout.clone(),
            datastores.clone(),
            definitions.clone(),
            executor_config,
        );
        let pipelines = Pipelines::new(
            store.clone(),
            layout,
            datastores.clone(),
            definitions,
            executor.handle(),
        );
        let scheduler =
            Scheduler::new(store.clone(), pipelines.clone(), config.node_id.clone()).with_config(config.scheduler);
        let watcher =
            Watcher::new(store.clone(), pipelines.clone(), config.node_id.clone()).with_config(config.watcher);
        let schedules = Schedules::new(store.clone(), pipelines.clone(), scheduler.handle(), watcher.handle());
        let watches = DatastoreWatches::new(store.clone(), pipelines.clone(), watcher.handle());
        Ok(AppState {
            watches,
            watcher,
            schedules,
            scheduler,
            pipelines,
            executor,
            datastores,
            store,
            secret,
            config: Arc::new(config),
            topics: Arc::new(TopicCache::default()),
            metrics: None,
            handshakes,
            dead_letter_exports: ExportProblems::default(),
            shutdown: CancellationToken::new(),
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
/// request. Keyed by the name in lower case: names ignore case, and a key change must
/// drop the entry whatever case publishers use.
#[derive(Default)]
pub(crate) struct TopicCache {
    entries: Mutex<HashMap<String, (Instant, Arc<TopicAuth>)>>,
}

impl TopicCache {
    pub async fn get(&self, store: &dyn Store, name: &str) -> Result<Arc<TopicAuth>, ApiError> {
        let key = name.to_ascii_lowercase();
        if let Some((loaded, auth)) = self.lock().get(&key)
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
        self.lock().insert(key, (Instant::now(), auth.clone()));
        Ok(auth)
    }

    pub fn forget(&self, name: &str) {
        self.lock().remove(&name.to_ascii_lowercase());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<TopicAuth>)>> {
        self.entries
            .lock()
            .expect("topic cache lock is never held across a panic")
    }
}
