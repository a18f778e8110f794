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

/// The machine's host name and the port: unique among the nodes of a cluster.
fn default_node_id(listen: std::net::SocketAddr) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = match host.trim() {
        "" => "mlgrid",
        host => host,
    };
    format!("{host}:{}", listen.port())
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
        public_url: args.public_url,
        max_request_bytes: args.max_request_bytes,
        datastore_root: data_dir.join("datastores"),
        allow_contributor_skip_validation: args.allow_contributor_skip_validation,
        ..ServerConfig::default()
    };
    config.delivery.addresses = AddressPolicy {
        allow_private: args.allow_private_webhooks,
        allow_loopback: args.allow_loopback_webhooks,
    };
    config.delivery.schedule = RetrySchedule {
        scale: args.retry_time_scale,
    };
    config.delivery.lease = Duration::from_secs(args.delivery_lease_seconds);
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
    tracing::info!(node = %node_id, address = %listener.local_addr()?, %database, data_dir = %data_dir.display(), "mlgrid listening");
    run_node(listener, state, shutdown_signal()).await?;
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
    tracing::info!("shutting down: no new connections, finishing requests in flight");
}
