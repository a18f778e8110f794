//! `/metrics` in the Prometheus text format.

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use mlgrid_core::resource::SourceKind;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;

/// The process's metrics: events published, routed, matched, delivered, failed and
/// dead-lettered, delivery attempt latencies, the backlog of each subscription
/// (measured at the scrape), and `mlgrid_node_info{node="..."} 1` naming the node.
/// Needs no key.
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let Some(handle) = &state.metrics else {
        return Err(ApiError::NotFound("metrics are not recorded by this server".to_owned()));
    };
    metrics::gauge!("mlgrid_node_info", "node" => state.config.node_id.clone(), "version" => env!("CARGO_PKG_VERSION"))
        .set(1.0);
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

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}
