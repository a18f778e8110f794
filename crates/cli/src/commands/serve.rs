//! `mlgrid serve`: the server on the embedded store.

use std::path::Path;

use anyhow::Context;
use mlgrid_core::retry::RetrySchedule;
use mlgrid_delivery::AddressPolicy;
use mlgrid_server::bootstrap::{Bootstrap, bootstrap_owner, load_or_create_secret, prepare_data_dir};
use mlgrid_server::{AppState, ServerConfig, run_node};
use mlgrid_store::{SqliteStore, Store};
use tokio::net::TcpListener;

use crate::args::ServeArgs;

/// Name of the SQLite database in the data directory.
const DATABASE_FILE: &str = "mlgrid.db";

pub async fn run(args: ServeArgs, data_dir: &Path) -> anyhow::Result<()> {
    prepare_data_dir(data_dir)?;
    let secret = load_or_create_secret(data_dir, std::env::var("MLGRID_SECRET").ok().as_deref())?;
    let store = SqliteStore::open(data_dir.join(DATABASE_FILE))
        .await
        .with_context(|| format!("opening the store in {}", data_dir.display()))?;
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
    let mut config = ServerConfig {
        public_url: args.public_url,
        max_request_bytes: args.max_request_bytes,
        datastore_root: data_dir.join("datastores"),
        ..ServerConfig::default()
    };
    config.delivery.addresses = AddressPolicy {
        allow_private: args.allow_private_webhooks,
        allow_loopback: args.allow_loopback_webhooks,
    };
    config.delivery.schedule = RetrySchedule {
        scale: args.retry_time_scale,
    };
    let mut state = AppState::new(store.clone(), secret, config)?;
    state.metrics = Some(
        metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
            .context("installing the metrics recorder")?,
    );
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {} (in use? see --listen)", args.listen))?;
    tracing::info!(address = %listener.local_addr()?, data_dir = %data_dir.display(), "mlgrid listening");
    run_node(listener, state, shutdown_signal()).await?;
    tracing::info!("requests drained; closing the store");
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
