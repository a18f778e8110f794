//! `/metrics` in the Prometheus text format.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use mlgrid_core::resource::SourceKind;
use mlgrid_store::Role;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Caller, Scope};
use crate::error::{ApiError, ErrorBody};
use crate::state::AppState;

/// How often histogram samples are folded into their summaries between scrapes.
const UPKEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Folds the histograms' recent samples into their summaries every few seconds until
/// `stop`. The recorder keeps each sample until it is folded, and only a scrape or this
/// upkeep folds them: without it, a server nobody scrapes grows by every delivery's
/// latency sample, without end.
pub async fn upkeep(handle: metrics_exporter_prometheus::PrometheusHandle, stop: tokio_util::sync::CancellationToken) {
    let mut every = tokio::time::interval(UPKEEP_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => handle.run_upkeep(),
        }
    }
}

/// The process's metrics: events published, routed, matched, delivered, failed and
/// dead-lettered, delivery attempt latencies, the backlog of each subscription
/// (measured at the scrape), the store's sizes (`mlgrid_store_wal_bytes`, SQLite only, and
/// `mlgrid_store_database_bytes`), `mlgrid_store_full` (1 while writes are refused for want
/// of space), and `mlgrid_node_info{node="..."} 1` naming the node.
/// The labels name every workspace, topic and subscription, so on the API's listener it
/// takes a key with a role (Reader or stronger) on all workspaces and topics; the
/// `--metrics-listen` listener serves it without a key, for a private network.
#[utoipa::path(get, path = "/metrics", tag = "health", security(("api_key" = [])),
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn metrics(State(state): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    caller.require(Role::Reader, Scope::Everything)?;
    render(&state).await
}

/// The Prometheus text of the process's metrics, with the backlog gauges measured now.
async fn render(state: &AppState) -> Result<Response, ApiError> {
    let Some(handle) = &state.metrics else {
        return Err(ApiError::NotFound("metrics are not recorded by this server".to_owned()));
    };
    metrics::gauge!("mlgrid_node_info", "node" => state.config.node_id.clone(), "version" => env!("CARGO_PKG_VERSION"))
        .set(1.0);
    let storage = state.store.storage().await?;
    if let Some(wal) = storage.wal_bytes {
        metrics::gauge!("mlgrid_store_wal_bytes").set(wal as f64);
    }
    metrics::gauge!("mlgrid_store_database_bytes").set(storage.database_bytes as f64);
    metrics::gauge!("mlgrid_store_full").set(if storage.full.is_some() { 1.0 } else { 0.0 });
    let mut names = std::collections::HashMap::new();
    for kind in [SourceKind::Workspace, SourceKind::Topic] {
        names.extend(
            state
                .store
                .list_sources(kind)
                .await?
                .into_iter()
                .map(|s| (s.id, (kind, s.name))),
        );
    }
    for subscription in state.store.list_subscriptions(None).await? {
        let stats = state.store.delivery_stats(subscription.id).await?;
        let (kind, source) = names
            .get(&subscription.source_id)
            .cloned()
            .unwrap_or((SourceKind::Topic, String::new()));
        metrics::gauge!("mlgrid_delivery_backlog", "source_kind" => kind.as_str(), "source" => source, "subscription" => subscription.name)
            .set(stats.pending as f64);
    }
    Ok(([(CONTENT_TYPE, "text/plain; version=0.0.4")], handle.render()).into_response())
}

/// `/metrics` alone and without a key, for the metrics listener (`--metrics-listen`):
/// bind it to an address only the scrapers reach.
pub fn scrape_app(state: AppState) -> axum::Router {
    axum::Router::new()
        .route(
            "/metrics",
            axum::routing::get(|State(state): State<AppState>| async move { render(&state).await }),
        )
        .fallback(|| async { ApiError::NotFound("this listener serves only /metrics".to_owned()) })
        .with_state(state)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}
