//! Experiments, runs and their metrics.

use axum::Json as JsonResponse;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use mlgrid_core::lifecycle::RunStatus;
use mlgrid_core::ml::Tags;
use mlgrid_core::time::format_event_time;
use mlgrid_store::{Experiment, Metric, NewMetric, NewRun, PIPELINE_RUN_TYPE, Role, Run, RunChange, TagsPatch};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::lifecycle::{check_name, etagged, with_etag, workspace};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{IfMatch, Json, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartRun {
    /// Created on first use.
    pub experiment_name: String,
    /// Generated when absent.
    pub run_id: Option<String>,
    pub run_type: Option<String>,
    pub parent_run_id: Option<String>,
    /// `NotStarted`, `Queued` or `Running` (default).
    pub status: Option<String>,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default)]
    pub properties: Tags,
}

/// A change to a run. `tags` and `properties` are merge patches: a string sets a key,
/// `null` removes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateRun {
    /// The new status; Completed raises RunCompleted, Failed raises RunStatusChanged.
    pub status: Option<String>,
    /// Why the run failed or was cancelled.
    pub error: Option<String>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub tags: TagsPatch,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub properties: TagsPatch,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub run_id: String,
    pub experiment_id: String,
    pub experiment_name: String,
    pub parent_run_id: Option<String>,
    pub run_type: Option<String>,
    pub status: String,
    pub tags: Tags,
    pub properties: Tags,
    pub error: Option<String>,
    pub created_at: String,
    pub start_time: Option<String>,
    pub end_time: Option<String>,
    pub etag: String,
}

impl From<Run> for RunView {
    fn from(r: Run) -> Self {
        RunView {
            run_id: r.run_id,
            experiment_id: r.experiment_id,
            experiment_name: r.experiment_name,
            parent_run_id: r.parent_run_id,
            run_type: r.run_type,
            status: r.status.as_str().to_owned(),
            tags: r.tags,
            properties: r.properties,
            error: r.error,
            created_at: format_event_time(r.created_at),
            start_time: r.start_time.map(format_event_time),
            end_time: r.end_time.map(format_event_time),
            etag: r.etag,
        }
    }
}

etagged!(RunView);

#[derive(Debug, Serialize, ToSchema)]
pub struct RunList {
    pub value: Vec<RunView>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentView {
    pub experiment_id: String,
    pub name: String,
    pub created_at: String,
}

impl From<Experiment> for ExperimentView {
    fn from(e: Experiment) -> Self {
        ExperimentView {
            experiment_id: e.id,
            name: e.name,
            created_at: format_event_time(e.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ExperimentList {
    pub value: Vec<ExperimentView>,
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricInput {
    pub name: String,
    pub value: f64,
    /// Defaults to 0.
    #[serde(default)]
    pub step: u64,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogMetrics {
    pub metrics: Vec<MetricInput>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricView {
    pub name: String,
    pub value: f64,
    pub step: u64,
    pub logged_at: String,
}

impl From<Metric> for MetricView {
    fn from(m: Metric) -> Self {
        MetricView {
            name: m.name,
            value: m.value,
            step: m.step,
            logged_at: format_event_time(m.logged_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MetricList {
    pub value: Vec<MetricView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListRuns {
    /// Only the runs of this experiment (by name).
    experiment: Option<String>,
}

fn parse_status(status: &str) -> Result<RunStatus, ApiError> {
    status.parse().map_err(ApiError::bad_request)
}

/// Starts a run; its experiment is created on first use. Takes Contributor.
#[utoipa::path(post, path = "/v1/workspaces/{workspace}/runs", tag = "runs", security(("api_key" = [])),
    params(("workspace" = String, Path)), request_body = StartRun,
    responses((status = 201, body = RunView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn start_run(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Json(body): Json<StartRun>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Contributor).await?;
    check_name("experiment", &body.experiment_name)?;
    if let Some(run_id) = &body.run_id {
        check_name("run", run_id)?;
    }
    let new = NewRun {
        experiment_name: body.experiment_name,
        run_id: body.run_id,
        run_type: body.run_type,
        parent_run_id: body.parent_run_id,
        status: body
            .status
            .as_deref()
            .map(parse_status)
            .transpose()?
            .unwrap_or(RunStatus::Running),
        tags: body.tags,
        properties: body.properties,
    };
    let run = state.store.start_run(ws, new).await?;
    Ok(with_etag(StatusCode::CREATED, RunView::from(run)))
}

/// Lists runs, oldest first. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/runs", tag = "runs", security(("api_key" = [])),
    params(("workspace" = String, Path), ListRuns), responses((status = 200, body = RunList)))]
async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
    Query(query): Query<ListRuns>,
) -> Result<JsonResponse<RunList>, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Reader).await?;
    let runs = state.store.list_runs(ws, query.experiment.as_deref()).await?;
    Ok(JsonResponse(RunList {
        value: runs.into_iter().map(RunView::from).collect(),
    }))
}

/// Shows a run; its etag is also in the `ETag` header. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/runs/{run_id}", tag = "runs", security(("api_key" = [])),
    params(("workspace" = String, Path), ("run_id" = String, Path)),
    responses((status = 200, body = RunView), (status = 404, body = ErrorBody)))]
async fn show_run(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, run_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Reader).await?;
    let run = state.store.run(ws, &run_id).await?;
    Ok(with_etag(StatusCode::OK, RunView::from(run)))
}

/// Changes a run's status, tags or properties. A status change that is not allowed is a
/// 409 that names the allowed ones; a stale `If-Match` is a 412. Takes Contributor.
#[utoipa::path(patch, path = "/v1/workspaces/{workspace}/runs/{run_id}", tag = "runs", security(("api_key" = [])),
    params(("workspace" = String, Path), ("run_id" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = UpdateRun,
    responses((status = 200, body = RunView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody)))]
async fn update_run(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, run_id)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    Json(body): Json<UpdateRun>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Contributor).await?;
    let change = RunChange {
        status: body.status.as_deref().map(parse_status).transpose()?,
        error: body.error,
        tags: body.tags,
        properties: body.properties,
    };
    if change.status == Some(RunStatus::Canceled)
        && state.store.run(ws, &run_id).await?.run_type.as_deref() == Some(PIPELINE_RUN_TYPE)
    {
        // A pipeline run stops its steps too (the store checks `If-Match`); the other
        // changes follow.
        let reason = change
            .error
            .clone()
            .unwrap_or_else(|| format!("canceled by {}", caller.principal.name));
        state.pipelines.cancel(ws, &run_id, &reason, if_match).await?;
        let rest = RunChange { status: None, ..change };
        let run = state.store.change_run(ws, &run_id, rest, None).await?;
        return Ok(with_etag(StatusCode::OK, RunView::from(run)));
    }
    let run = state.store.change_run(ws, &run_id, change, if_match).await?;
    Ok(with_etag(StatusCode::OK, RunView::from(run)))
}

/// Logs metrics on a run that has not ended. Takes Contributor.
#[utoipa::path(post, path = "/v1/workspaces/{workspace}/runs/{run_id}/metrics", tag = "runs", security(("api_key" = [])),
    params(("workspace" = String, Path), ("run_id" = String, Path)), request_body = LogMetrics,
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn log_metrics(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, run_id)): Path<(String, String)>,
    Json(body): Json<LogMetrics>,
) -> Result<StatusCode, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Contributor).await?;
    if body.metrics.is_empty() {
        return Err(ApiError::bad_request(
            "`metrics` is empty; send at least one {name, value, step}",
        ));
    }
    let mut metrics = Vec::with_capacity(body.metrics.len());
    for m in body.metrics {
        if m.name.is_empty() || !m.value.is_finite() {
            return Err(ApiError::bad_request(format!(
                "metric `{}` needs a name and a finite value",
                m.name
            )));
        }
        metrics.push(NewMetric {
            name: m.name,
            value: m.value,
            step: m.step,
        });
    }
    state.store.log_metrics(ws, &run_id, metrics).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The metrics of a run, by name and step. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/runs/{run_id}/metrics", tag = "runs", security(("api_key" = [])),
    params(("workspace" = String, Path), ("run_id" = String, Path)),
    responses((status = 200, body = MetricList), (status = 404, body = ErrorBody)))]
async fn list_metrics(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws, run_id)): Path<(String, String)>,
) -> Result<JsonResponse<MetricList>, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Reader).await?;
    let metrics = state.store.run_metrics(ws, &run_id).await?;
    Ok(JsonResponse(MetricList {
        value: metrics.into_iter().map(MetricView::from).collect(),
    }))
}

/// The experiments of a workspace. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/experiments", tag = "runs", security(("api_key" = [])),
    params(("workspace" = String, Path)), responses((status = 200, body = ExperimentList)))]
async fn list_experiments(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws): Path<String>,
) -> Result<JsonResponse<ExperimentList>, ApiError> {
    let ws = workspace(&state, &caller, &ws, Role::Reader).await?;
    let experiments = state.store.experiments(ws).await?;
    Ok(JsonResponse(ExperimentList {
        value: experiments.into_iter().map(ExperimentView::from).collect(),
    }))
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_run, list_runs))
        .routes(routes!(show_run, update_run))
        .routes(routes!(log_metrics, list_metrics))
        .routes(routes!(list_experiments))
}
