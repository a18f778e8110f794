//! `mlgrid serve`: a node, on the embedded store or on PostgreSQL shared with other nodes.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use mlgrid_core::retry::RetrySchedule;
use mlgrid_delivery::AddressPolicy;
use mlgrid_server::bootstrap::{Bootstrap, bootstrap_owner, check_secret, load_or_create_secret, prepare_data_dir};
use mlgrid_server::{AppState, ServerConfig, run_node};
use mlgrid_store::{PostgresStore, SqliteStore, Store};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::migrate::{cannot_use, shown};
use crate::args::ServeArgs;

/// Name of the SQLite database in the data directory.
pub const DATABASE_FILE: &str = "mlgrid.db";

/// The store: PostgreSQL when a database URL is given, else the embedded database in
/// the data directory.
async fn open_store(database_url: Option<&str>, data_dir: &Path) -> anyhow::Result<Arc<dyn Store>> {
    Ok(match database_url {
        Some(url) => PostgresStore::connect(url).await.map_err(|e| cannot_use(url, e))?,
        None => SqliteStore::open(data_dir.join(DATABASE_FILE))
            .await
            .with_context(|| format!("opening the store in {}", data_dir.display()))?,
    })
}

/// The machine's host name, `mlgrid` if it has none.
fn host_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    match host.trim() {
        "" => "mlgrid".to_owned(),
        host => host.to_owned(),
    }
}

/// The machine's host name and the port: unique among the nodes of a cluster.
fn default_node_id(listen: std::net::SocketAddr) -> String {
    format!("{}:{}", host_name(), listen.port())
}

/// The URL clients and receivers reach this node under when --public-url is not given:
/// the listen address, or the host name for an unspecified one (0.0.0.0, ::). The
/// server never takes it from a request's Host header, which the client chooses.
fn default_public_url(listen: std::net::SocketAddr) -> Option<String> {
    if !listen.ip().is_unspecified() {
        return None; // the server uses its listen address
    }
    let url = format!("http://{}:{}", host_name(), listen.port());
    tracing::info!(public_url = %url, "listening on every address without --public-url: topic endpoints and validation URLs name this host; set --public-url if clients reach it otherwise");
    Some(url)
}

/// The connection cap: as asked, but within the open-file limit (less a reserve for the
/// database, the log and outgoing webhooks), so that accepting never runs out of
/// descriptors.
fn connection_cap(asked: usize) -> usize {
    const RESERVE: usize = 256;
    let limit = std::fs::read_to_string("/proc/self/limits").ok().and_then(|limits| {
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        line.split_whitespace().nth(3)?.parse::<usize>().ok()
    });
    match limit {
        Some(limit) if limit.saturating_sub(RESERVE) < asked => {
            let cap = limit.saturating_sub(RESERVE).max(16);
            tracing::warn!(
                asked,
                cap,
                open_file_limit = limit,
                "--max-connections lowered to fit the open-file limit; raise it with ulimit -n"
            );
            cap
        }
        _ => asked,
    }
}

pub async fn run(args: ServeArgs, data_dir: &Path) -> anyhow::Result<()> {
    prepare_data_dir(data_dir)?;
    let secret = load_or_create_secret(data_dir, std::env::var("MLGRID_SECRET").ok().as_deref())?;
    let store = open_store(args.database_url.as_deref(), data_dir).await?;
    check_secret(&*store, &secret).await?;
    let bootstrap_key = std::env::var("MLGRID_BOOTSTRAP_KEY").ok();
    match bootstrap_owner(&*store, data_dir, bootstrap_key.as_deref()).await? {
        Bootstrap::Created(Some(path)) => {
            tracing::info!(key_file = %path.display(), "created the first Owner; its API key is in the key file")
        }
        Bootstrap::Created(None) => {
            tracing::info!("created the first Owner with the key from MLGRID_BOOTSTRAP_KEY")
        }
        Bootstrap::AlreadyDone => {}
    }
    let node_id = args.node_id.unwrap_or_else(|| default_node_id(args.listen));
    let mut config = ServerConfig {
        node_id: node_id.clone(),
        public_url: args.public_url.or_else(|| default_public_url(args.listen)),
        max_request_bytes: args.max_request_bytes,
        datastore_root: data_dir.join("datastores"),
        pipeline_runs_root: data_dir.join("pipeline-runs"),
        allow_contributor_skip_validation: args.allow_contributor_skip_validation,
        ..ServerConfig::default()
    };
    config.retention.events = args.retention;
    config.retention.deliveries = args.delivery_retention;
    config.retention.dead_letters = args.dead_letter_retention;
    config.retention.every = Duration::from_secs(args.prune_every_seconds.max(1));
    config.retention.schedule_fires = args.schedule_fires_kept;
    config.connections.shutdown_timeout = Duration::from_secs(args.shutdown_timeout);
    config.connections.max_connections = connection_cap(args.max_connections);
    config.delivery.addresses = AddressPolicy {
        allow_private: args.allow_private_webhooks,
        allow_loopback: args.allow_loopback_webhooks,
    };
    config.delivery.schedule = RetrySchedule {
        scale: args.retry_time_scale,
    };
    config.delivery.lease = Duration::from_secs(args.delivery_lease_seconds);
    if let Some(steps) = args.max_parallel_steps {
        anyhow::ensure!(steps >= 1, "--max-parallel-steps must be at least 1");
        config.executor.max_parallel = steps;
    }
    config.executor.lease = Duration::from_secs(args.step_lease_seconds.max(1));
    config.executor.exclusive = args.database_url.is_none();
    let lease = Duration::from_secs(args.scheduler_lease_seconds.max(3));
    config.scheduler.lease = lease;
    config.scheduler.renew_every = lease / 3;
    config.watcher.lease = lease;
    config.watcher.renew_every = lease / 3;
    config.watcher.min_polling = Duration::from_secs(args.min_polling_seconds.max(1));
    let mut state = AppState::new(store.clone(), secret, config)?;
    state.metrics = Some(
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .context("installing the metrics recorder")?,
    );
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (in use? see --listen)", args.listen))?;
    let database = match &args.database_url {
        Some(url) => shown(url),
        None => data_dir.join(DATABASE_FILE).display().to_string(),
    };
    let stop = CancellationToken::new();
    if let Some(handle) = state.metrics.clone() {
        tokio::spawn(mlgrid_server::api::metrics::upkeep(handle, stop.clone()));
    }
    if let Some(address) = args.metrics_listen {
        let metrics = TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address} for metrics (in use? see --metrics-listen)"))?;
        tracing::info!(%address, "serving /metrics without a key");
        let app = mlgrid_server::api::metrics::scrape_app(state.clone());
        tokio::spawn(mlgrid_server::serve(metrics, app, stop.clone().cancelled_owned()));
    }
    tracing::info!(node = %node_id, address = %listener.local_addr()?, %database, data_dir = %data_dir.display(), "mlgrid listening");
    let on_signal = stop.clone();
    run_node(listener, state, async move {
        shutdown_signal().await;
        on_signal.cancel();
    })
    .await?;
    tracing::info!(node = %node_id, "requests drained; closing the store");
    store.close().await;
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: no new connections, ending long polls, finishing requests in flight");
}
