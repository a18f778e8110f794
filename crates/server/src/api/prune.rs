//! Pruning on demand: one pass now, or what it would remove.

use axum::Json as JsonResponse;
use axum::extract::State;
use mlgrid_store::Role;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::sources::collection;
use crate::auth::{Caller, Scope};
use crate::error::{ApiError, ErrorBody};
use crate::extract::Query;
use crate::prune::{Pruner, SourcePruned};
use crate::state::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PruneOptions {
    /// Remove nothing; say what a pass would remove.
    #[serde(default)]
    dry_run: bool,
}

/// What a pass removed, or would remove, from one workspace or topic.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SourcePrunedView {
    /// `workspaces` or `topics`.
    pub collection: String,
    pub name: String,
    /// Events of the log (with a dry run, some may stay a while longer for a delivery
    /// that still needs them).
    pub events: u64,
    /// Bytes of those events' bodies.
    pub bytes: u64,
    /// Delivered deliveries.
    pub deliveries: u64,
    pub attempts: u64,
    pub dead_letters: u64,
}

impl From<SourcePruned> for SourcePrunedView {
    fn from(s: SourcePruned) -> Self {
        SourcePrunedView {
            collection: s.kind.map(collection).unwrap_or_default().to_owned(),
            name: s.name,
            events: s.events,
            bytes: s.bytes,
            deliveries: s.history.deliveries,
            attempts: s.history.attempts,
            dead_letters: s.history.dead_letters,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub dry_run: bool,
    /// The sources something went from (or would), by collection and name.
    pub value: Vec<SourcePrunedView>,
}

/// Runs one pruning pass now (the server runs one every 10 seconds anyway), or with
/// `dryRun=true` says what it would remove. Takes Owner on everything.
#[utoipa::path(post, path = "/v1/prune", tag = "retention", security(("api_key" = [])),
    params(PruneOptions),
    responses((status = 200, body = PruneReport), (status = 403, body = ErrorBody)))]
async fn prune(
    State(state): State<AppState>,
    caller: Caller,
    Query(options): Query<PruneOptions>,
) -> Result<JsonResponse<PruneReport>, ApiError> {
    caller.require(Role::Owner, Scope::Everything)?;
    let pruner = Pruner::new(
        state.store.clone(),
        state.config.retention,
        state.config.node_id.clone(),
    );
    let mut value: Vec<SourcePrunedView> = pruner
        .pass(options.dry_run)
        .await?
        .into_iter()
        .map(SourcePrunedView::from)
        .collect();
    value.sort_by(|a, b| (&a.collection, &a.name).cmp(&(&b.collection, &b.name)));
    Ok(JsonResponse(PruneReport {
        dry_run: options.dry_run,
        value,
    }))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(prune))
}
