//! Published pipelines and their endpoints, submissions in Azure ML's body, pipeline runs
//! with their steps, cancellation and step logs.

use std::collections::BTreeMap;

use axum::Json as JsonResponse;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use mlgrid_core::ml::Tags;
use mlgrid_core::pipeline::DataPath;
use mlgrid_core::time::format_event_time;
use mlgrid_pipelines::{LogStream, Submission, Target};
use mlgrid_store::{NewPipelineEndpoint, PipelineEndpoint, PipelineRun, PublishedPipeline, Role, SourceId, StepRun};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::lifecycle::{check_name, etagged, with_etag, workspace};
use super::runs::RunView;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{IfMatch, Json, Query};
use crate::state::AppState;

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PublishPipeline {
    /// The pipeline's YAML definition.
    pub definition: String,
    /// Defaults to the next integer after the name's highest numeric version.
    pub version: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineView {
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: String,
    pub enabled: bool,
    /// The URL to POST a submission to.
    pub endpoint: String,
    pub definition: String,
    pub created_at: String,
    pub updated_at: String,
    pub etag: String,
}

etagged!(PipelineView);

#[derive(Debug, Serialize, ToSchema)]
pub struct PipelineList {
    pub value: Vec<PipelineView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListPipelines {
    /// Only the versions of this pipeline name.
    name: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateEndpoint {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The pipeline submissions go to until the default is switched.
    pub pipeline_id: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetDefault {
    pub pipeline_id: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct EndpointView {
    pub name: String,
    pub description: String,
    pub default_pipeline_id: String,
    /// The URL to POST a submission to; it runs the default pipeline.
    pub endpoint: String,
    pub created_at: String,
    pub updated_at: String,
    pub etag: String,
}

etagged!(EndpointView);

#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointList {
    pub value: Vec<EndpointView>,
}

/// A data path parameter's value: a file of a datastore.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DataPathAssignment {
    #[serde(rename = "DataStoreName")]
    pub datastore_name: String,
    #[serde(rename = "RelativePath")]
    pub relative_path: String,
}

/// A submission, in Azure ML's body for a published pipeline's REST endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitPipeline {
    #[serde(rename = "ExperimentName")]
    pub experiment_name: String,
    /// Parameter values by name (a string that reads as the type is accepted).
    #[serde(rename = "ParameterAssignments", default)]
    #[schema(value_type = Object)]
    pub parameter_assignments: BTreeMap<String, serde_json::Value>,
    #[serde(rename = "DataPathAssignments", default)]
    pub data_path_assignments: BTreeMap<String, DataPathAssignment>,
    /// Who submitted it; "SDK" when absent.
    #[serde(rename = "RunSource")]
    pub run_source: Option<String>,
    #[serde(rename = "Description")]
    pub description: Option<String>,
    #[serde(rename = "Tags", default)]
    pub tags: Tags,
    /// Whether independent steps go on after a step fails (default false).
    #[serde(rename = "ContinueOnStepFailure", default)]
    pub continue_on_step_failure: bool,
}

/// The run a submission started, in Azure ML's casing.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubmittedRun {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "Status")]
    pub status: String,
    #[serde(rename = "ExperimentName")]
    pub experiment_name: String,
    #[serde(rename = "PipelineId")]
    pub pipeline_id: String,
    #[serde(rename = "RunType")]
    pub run_type: Option<String>,
    #[serde(rename = "CreatedTime")]
    pub created_time: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepView {
    pub name: String,
    pub run_id: String,
    pub state: String,
    pub depends_on: Vec<String>,
    pub attempts: u32,
    pub retries: u32,
    pub ready_at: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// The step run whose outputs this step reused instead of running.
    pub reused_from: Option<String>,
}

impl From<StepRun> for StepView {
    fn from(s: StepRun) -> Self {
        StepView {
            name: s.name,
            run_id: s.run_id,
            state: s.state.as_str().to_owned(),
            depends_on: s.depends_on,
            attempts: s.attempts,
            retries: s.retries,
            ready_at: s.ready_at.map(format_event_time),
            started_at: s.started_at.map(format_event_time),
            finished_at: s.finished_at.map(format_event_time),
            exit_code: s.exit_code,
            error: s.error,
            reused_from: s.reused_from,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineRunView {
    pub run: RunView,
    pub pipeline_id: String,
    #[schema(value_type = Object)]
    pub parameters: BTreeMap<String, serde_json::Value>,
    #[schema(value_type = Object)]
    pub data_paths: BTreeMap<String, DataPath>,
    pub continue_on_step_failure: bool,
    pub steps: Vec<StepView>,
}

impl From<PipelineRun> for PipelineRunView {
    fn from(r: PipelineRun) -> Self {
        PipelineRunView {
            run: RunView::from(r.run),
            pipeline_id: r.pipeline_id,
            parameters: r.parameters,
            data_paths: r.data_paths,
            continue_on_step_failure: r.continue_on_step_failure,
            steps: r.steps.into_iter().map(StepView::from).collect(),
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CancelRun {
    /// Why; shown as the run's error.
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReadLogs {
    /// The step (by name); required for a pipeline run.
    step: Option<String>,
    /// `stdout` (default) or `stderr`.
    stream: Option<String>,
    /// The byte to start from (for following a log); 0 when absent.
    offset: Option<u64>,
}

fn pipeline_view(state: &AppState, ws_name: &str, p: PublishedPipeline) -> PipelineView {
    PipelineView {
        endpoint: format!(
            "{}/v1/workspaces/{ws_name}/pipelines/{}/submit",
            state.config.base_url(),
            p.id
        ),
        id: p.id,
        name: p.name,
        version: p.version,
        description: p.description,
        enabled: p.enabled,
        definition: p.definition,
        created_at: format_event_time(p.created_at),
        updated_at: format_event_time(p.updated_at),
        etag: p.etag,
    }
}

fn endpoint_view(state: &AppState, ws_name: &str, e: PipelineEndpoint) -> EndpointView {
    EndpointView {
        endpoint: format!(
            "{}/v1/workspaces/{ws_name}/pipeline-endpoints/{}/submit",
            state.config.base_url(),
            e.name
        ),
        name: e.name,
        description: e.description,
        default_pipeline_id: e.default_pipeline_id,
        created_at: format_event_time(e.created_at),
        updated_at: format_event_time(e.updated_at),
        etag: e.etag,
    }
}

/// Publishes a pipeline from its YAML. A definition that does not check (an unknown
/// reference, a cycle, a duplicate step, ...) is a 400 naming the step, the field and
/// the line. Takes Contributor.
#[utoipa::path(post, path = "/v1/workspaces/{workspace}/pipelines", tag = "pipelines", security(("api_key" = [])),
    params(("workspace" = String, Path)), request_body = PublishPipeline,
    responses((status = 201, body = PipelineView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn publish(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws_name): Path<String>,
    Json(body): Json<PublishPipeline>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Contributor).await?;
    if let Some(version) = &body.version {
        check_name("version", version)?;
    }
    let published = state.pipelines.publish(ws, &body.definition, body.version).await?;
    Ok(with_etag(
        StatusCode::CREATED,
        pipeline_view(&state, &ws_name, published),
    ))
}

/// Lists pipelines, oldest first. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/pipelines", tag = "pipelines", security(("api_key" = [])),
    params(("workspace" = String, Path), ListPipelines), responses((status = 200, body = PipelineList)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws_name): Path<String>,
    Query(query): Query<ListPipelines>,
) -> Result<JsonResponse<PipelineList>, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Reader).await?;
    let pipelines = state.store.list_pipelines(ws, query.name.as_deref()).await?;
    Ok(JsonResponse(PipelineList {
        value: pipelines
            .into_iter()
            .map(|p| pipeline_view(&state, &ws_name, p))
            .collect(),
    }))
}

/// Shows a pipeline. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/pipelines/{id}", tag = "pipelines", security(("api_key" = [])),
    params(("workspace" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = PipelineView), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Reader).await?;
    let pipeline = state.store.pipeline(ws, &id).await?;
    Ok(with_etag(StatusCode::OK, pipeline_view(&state, &ws_name, pipeline)))
}

async fn set_enabled(
    state: AppState,
    caller: Caller,
    (ws_name, id): (String, String),
    if_match: Option<String>,
    enabled: bool,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Contributor).await?;
    let pipeline = state.store.set_pipeline_enabled(ws, &id, enabled, if_match).await?;
    Ok(with_etag(StatusCode::OK, pipeline_view(&state, &ws_name, pipeline)))
}

/// Disables a pipeline: its submissions are refused until it is enabled. Takes
/// Contributor.
#[utoipa::path(post, path = "/v1/workspaces/{workspace}/pipelines/{id}/disable", tag = "pipelines", security(("api_key" = [])),
    params(("workspace" = String, Path), ("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = PipelineView), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)))]
async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
) -> Result<Response, ApiError> {
    set_enabled(state, caller, path, if_match, false).await
}

/// Enables a pipeline. Takes Contributor.
#[utoipa::path(post, path = "/v1/workspaces/{workspace}/pipelines/{id}/enable", tag = "pipelines", security(("api_key" = [])),
    params(("workspace" = String, Path), ("id" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = PipelineView), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)))]
async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
) -> Result<Response, ApiError> {
    set_enabled(state, caller, path, if_match, true).await
}

async fn submit_to(state: &AppState, ws: SourceId, target: Target, body: SubmitPipeline) -> Result<Response, ApiError> {
    check_name("experiment", &body.experiment_name)?;
    let submission = Submission {
        experiment_name: body.experiment_name,
        parameters: body.parameter_assignments,
        data_paths: body
            .data_path_assignments
            .into_iter()
            .map(|(name, a)| {
                let value = DataPath {
                    datastore: a.datastore_name,
                    path: a.relative_path,
                };
                (name, value)
            })
            .collect(),
        run_source: body.run_source.unwrap_or_else(|| "SDK".to_owned()),
        description: body.description,
        tags: body.tags,
        continue_on_step_failure: body.continue_on_step_failure,
        idempotency_key: None,
    };
    let (pipeline_id, submitted) = state.pipelines.submit(ws, target, submission).await?;
    let run = submitted.run;
    let view = SubmittedRun {
        id: run.run_id,
        status: run.status.as_str().to_owned(),
        experiment_name: run.experiment_name,
        pipeline_id,
        run_type: run.run_type,
        created_time: format_event_time(run.created_at),
    };
    Ok((StatusCode::OK, JsonResponse(view)).into_response())
}

/// Starts a run of a published pipeline, with Azure ML's submission body. An unknown
/// parameter, a value of the wrong type, a missing datastore or file is a 400 naming
/// it; a disabled pipeline is a 409. Takes Contributor.
#[utoipa::path(post, path = "/v1/workspaces/{workspace}/pipelines/{id}/submit", tag = "pipelines", security(("api_key" = [])),
    params(("workspace" = String, Path), ("id" = String, Path)), request_body = SubmitPipeline,
    responses((status = 200, body = SubmittedRun), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn submit(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, id)): Path<(String, String)>,
    Json(body): Json<SubmitPipeline>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Contributor).await?;
    submit_to(&state, ws, Target::Pipeline(id), body).await
}

/// Creates a pipeline endpoint: a stable name whose default pipeline can be switched.
/// Takes Contributor.
#[utoipa::path(post, path = "/v1/workspaces/{workspace}/pipeline-endpoints", tag = "pipelines", security(("api_key" = [])),
    params(("workspace" = String, Path)), request_body = CreateEndpoint,
    responses((status = 201, body = EndpointView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws_name): Path<String>,
    Json(body): Json<CreateEndpoint>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Contributor).await?;
    check_name("pipeline endpoint", &body.name)?;
    let new = NewPipelineEndpoint {
        name: body.name,
        description: body.description,
        pipeline_id: body.pipeline_id,
    };
    let endpoint = state.store.create_pipeline_endpoint(ws, new).await?;
    Ok(with_etag(
        StatusCode::CREATED,
        endpoint_view(&state, &ws_name, endpoint),
    ))
}

/// Lists pipeline endpoints. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/pipeline-endpoints", tag = "pipelines", security(("api_key" = [])),
    params(("workspace" = String, Path)), responses((status = 200, body = EndpointList)))]
async fn list_endpoints(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws_name): Path<String>,
) -> Result<JsonResponse<EndpointList>, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Reader).await?;
    let endpoints = state.store.list_pipeline_endpoints(ws).await?;
    Ok(JsonResponse(EndpointList {
        value: endpoints
            .into_iter()
            .map(|e| endpoint_view(&state, &ws_name, e))
            .collect(),
    }))
}

/// Shows a pipeline endpoint. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/pipeline-endpoints/{name}", tag = "pipelines", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody)))]
async fn show_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Reader).await?;
    let endpoint = state.store.pipeline_endpoint(ws, &name).await?;
    Ok(with_etag(StatusCode::OK, endpoint_view(&state, &ws_name, endpoint)))
}

/// Switches an endpoint's default pipeline. Takes Contributor.
#[utoipa::path(put, path = "/v1/workspaces/{workspace}/pipeline-endpoints/{name}/default", tag = "pipelines", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = SetDefault,
    responses((status = 200, body = EndpointView), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)))]
async fn set_default(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, name)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    Json(body): Json<SetDefault>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Contributor).await?;
    let endpoint = state
        .store
        .set_pipeline_endpoint_default(ws, &name, &body.pipeline_id, if_match)
        .await?;
    Ok(with_etag(StatusCode::OK, endpoint_view(&state, &ws_name, endpoint)))
}

/// Starts a run of an endpoint's default pipeline. Takes Contributor.
#[utoipa::path(post, path = "/v1/workspaces/{workspace}/pipeline-endpoints/{name}/submit", tag = "pipelines", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path)), request_body = SubmitPipeline,
    responses((status = 200, body = SubmittedRun), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn submit_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, name)): Path<(String, String)>,
    Json(body): Json<SubmitPipeline>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Contributor).await?;
    submit_to(&state, ws, Target::Endpoint(name), body).await
}

/// A pipeline run with its steps. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/pipeline-runs/{run_id}", tag = "pipelines", security(("api_key" = [])),
    params(("workspace" = String, Path), ("run_id" = String, Path)),
    responses((status = 200, body = PipelineRunView), (status = 404, body = ErrorBody)))]
async fn show_run(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, run_id)): Path<(String, String)>,
) -> Result<JsonResponse<PipelineRunView>, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Reader).await?;
    let run = state.store.pipeline_run(ws, &run_id).await?;
    Ok(JsonResponse(PipelineRunView::from(run)))
}

/// Cancels a pipeline run: steps not started never start, running ones are killed
/// (their whole process group). Takes Contributor.
#[utoipa::path(post, path = "/v1/workspaces/{workspace}/pipeline-runs/{run_id}/cancel", tag = "pipelines", security(("api_key" = [])),
    params(("workspace" = String, Path), ("run_id" = String, Path)), request_body = CancelRun,
    responses((status = 200, body = PipelineRunView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, run_id)): Path<(String, String)>,
    Json(body): Json<CancelRun>,
) -> Result<JsonResponse<PipelineRunView>, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Contributor).await?;
    let reason = body
        .reason
        .unwrap_or_else(|| format!("canceled by {}", caller.principal.name));
    let run = state.pipelines.cancel(ws, &run_id, &reason, None).await?;
    Ok(JsonResponse(PipelineRunView::from(run)))
}

/// A step's log, from `offset` on (at most 1 MiB per read): the `X-Log-Size` header
/// says how far the log has grown, `X-Log-Complete: true` that it will not grow any more.
/// Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/pipeline-runs/{run_id}/logs", tag = "pipelines", security(("api_key" = [])),
    params(("workspace" = String, Path), ("run_id" = String, Path), ReadLogs),
    responses((status = 200, body = String, content_type = "text/plain"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn logs(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, run_id)): Path<(String, String)>,
    Query(query): Query<ReadLogs>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Reader).await?;
    let stream = match query.stream.as_deref() {
        None | Some("stdout") => LogStream::Stdout,
        Some("stderr") => LogStream::Stderr,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown log stream `{other}`: use `stdout` or `stderr`"
            )));
        }
    };
    let chunk = state
        .pipelines
        .read_log(ws, &run_id, query.step.as_deref(), stream, query.offset.unwrap_or(0))
        .await?;
    let mut response = (
        StatusCode::OK,
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        chunk.bytes,
    )
        .into_response();
    let headers = response.headers_mut();
    headers.insert("x-log-size", chunk.size.into());
    headers.insert(
        "x-log-complete",
        if chunk.complete { "true" } else { "false" }.parse().expect("ascii"),
    );
    Ok(response)
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(publish, list))
        .routes(routes!(show))
        .routes(routes!(disable))
        .routes(routes!(enable))
        .routes(routes!(submit))
        .routes(routes!(create_endpoint, list_endpoints))
        .routes(routes!(show_endpoint))
        .routes(routes!(set_default))
        .routes(routes!(submit_endpoint))
        .routes(routes!(show_run))
        .routes(routes!(cancel_run))
        .routes(routes!(logs))
}
