//! Schedules of published pipelines: time schedules with Azure ML's recurrence, change
//! schedules on a datastore folder, their coming fire times, and what they fired. The rules live in the pipelines crate
//! (`Schedules`, the scheduler) and core (the recurrence); this module parses, calls and
//! maps.

use std::collections::BTreeMap;
use std::num::NonZeroU32;

use axum::Json as JsonResponse;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{SecondsFormat, Utc};
use mlgrid_core::schedule::{Concurrency, MisfirePolicy, OverlapPolicy, Recurrence};
use mlgrid_core::time::format_event_time;
use mlgrid_pipelines::{ScheduleChange, ScheduleSpec, WatchSpec};
use mlgrid_store::{PipelineSchedule, Role, ScheduleFilter, ScheduleFire, ScheduleKind, ScheduleStatus, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::lifecycle::{check_name, etagged, with_etag, workspace};
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{IfMatch, Json, Query};
use crate::state::AppState;

/// Most ticks `runs` lists.
const MAX_FIRES: u32 = 1000;

/// A schedule as a PUT gives it whole, or a PATCH in part (what it leaves out stays).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScheduleBody {
    /// `time` (with a recurrence) or `change` (with a datastore and a path); implied by
    /// which of them the body gives.
    pub kind: Option<String>,
    pub pipeline_id: Option<String>,
    pub experiment_name: Option<String>,
    /// Azure ML's `ScheduleRecurrence`: frequency (Minute, Hour, Day, Week, Month),
    /// interval, startTime, timeZone (IANA), hours, minutes, weekDays, endTime.
    #[schema(value_type = Object)]
    pub recurrence: Option<Recurrence>,
    /// A change schedule's datastore (one of the workspace's).
    pub datastore: Option<String>,
    /// The folder of the datastore a change schedule watches (relative, no `..`).
    pub path_on_datastore: Option<String>,
    /// Files in its subfolders count too (default false, as in Azure ML).
    pub recursive: Option<bool>,
    /// How often the folder is listed, in minutes (default 5, at least 1).
    pub polling_interval: Option<u32>,
    /// The same in seconds, for tests: a server refuses less than a minute unless
    /// started with a lower floor (`serve --min-polling-seconds`).
    pub polling_interval_seconds: Option<u32>,
    /// The pipeline's data-path parameter that gets the changed file.
    pub data_path_parameter_name: Option<String>,
    /// Parameter values by name for every run it starts.
    #[schema(value_type = Object)]
    pub parameter_assignments: Option<BTreeMap<String, serde_json::Value>>,
    pub continue_on_step_failure: Option<bool>,
    /// `Active` (the default) or `Disabled`.
    pub status: Option<String>,
    /// Ticks missed while the server was down: `none`, `latest` (default) or `all` (the
    /// latest 100).
    #[schema(value_type = Option<String>)]
    pub misfire_policy: Option<MisfirePolicy>,
    /// A tick while `maxConcurrent` runs are going: `skip` (default), `queue` or `allow`.
    #[schema(value_type = Option<String>)]
    pub overlap_policy: Option<OverlapPolicy>,
    /// Runs of the schedule that may go at once (default 1).
    pub max_concurrent: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleView {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub pipeline_id: String,
    pub experiment_name: String,
    #[schema(value_type = Object)]
    pub recurrence: Option<Recurrence>,
    /// What a change schedule watches.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datastore: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path_on_datastore: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recursive: Option<bool>,
    /// Minutes (whole; see the seconds for an interval under a minute).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polling_interval: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub polling_interval_seconds: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_path_parameter_name: Option<String>,
    /// When a change schedule's folder was last listed, and when it is next.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_poll_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_poll_time: Option<String>,
    /// Polls failed in a row (the datastore could not be listed; `lastError` says why).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll_failures: Option<u32>,
    #[schema(value_type = Object)]
    pub parameter_assignments: BTreeMap<String, serde_json::Value>,
    pub continue_on_step_failure: bool,
    pub status: String,
    #[schema(value_type = String)]
    pub misfire_policy: MisfirePolicy,
    #[schema(value_type = String)]
    pub overlap_policy: OverlapPolicy,
    pub max_concurrent: u32,
    /// The next tick (UTC); none while disabled or once past its end time.
    pub next_fire_time: Option<String>,
    pub last_fire_time: Option<String>,
    /// The run the latest tick that started one started.
    pub last_run_id: Option<String>,
    /// Why the latest tick started no run, when it did not.
    pub last_error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub etag: String,
}

etagged!(ScheduleView);

impl From<PipelineSchedule> for ScheduleView {
    fn from(s: PipelineSchedule) -> Self {
        let watch = s.watch.as_ref();
        ScheduleView {
            id: s.id,
            name: s.name,
            kind: s.kind.as_str().to_owned(),
            pipeline_id: s.pipeline_id,
            experiment_name: s.experiment_name,
            recurrence: s.recurrence,
            datastore: watch.map(|w| w.datastore.clone()),
            path_on_datastore: watch.map(|w| {
                if w.path.is_empty() {
                    ".".to_owned()
                } else {
                    w.path.clone()
                }
            }),
            recursive: watch.map(|w| w.recursive),
            polling_interval: watch.map(|w| w.polling_seconds / 60),
            polling_interval_seconds: watch.map(|w| w.polling_seconds),
            data_path_parameter_name: watch.and_then(|w| w.data_path_parameter.clone()),
            last_poll_time: s.last_poll_at.map(format_event_time),
            next_poll_time: s.next_poll_at.map(format_event_time),
            poll_failures: watch.map(|_| s.poll_failures),
            parameter_assignments: s.parameters,
            continue_on_step_failure: s.continue_on_step_failure,
            status: s.status.as_str().to_owned(),
            misfire_policy: s.misfire,
            overlap_policy: s.concurrency.overlap_policy,
            max_concurrent: s.concurrency.max_concurrent.get(),
            next_fire_time: s.next_fire_at.map(format_event_time),
            last_fire_time: s.last_fire_at.map(format_event_time),
            last_run_id: s.last_run_id,
            last_error: s.last_error,
            created_at: format_event_time(s.created_at),
            updated_at: format_event_time(s.updated_at),
            etag: s.etag,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ScheduleList {
    pub value: Vec<ScheduleView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListSchedules {
    /// Disabled schedules too (only active ones without it).
    all: Option<bool>,
    /// Only the schedules of this pipeline.
    pipeline_id: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NextQuery {
    /// How many fire times (default 5, at most 100).
    count: Option<usize>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FireTime {
    pub utc: String,
    /// The same instant on the schedule's zone's clock, with its offset.
    pub local: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NextFireTimes {
    /// The IANA zone whose clock Day, Week and Month recurrences follow.
    pub time_zone: String,
    pub value: Vec<FireTime>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FireView {
    pub fire_time: String,
    /// `started`, `skipped`, `queued` or `failed`.
    pub outcome: String,
    pub run_id: Option<String>,
    pub reason: Option<String>,
    /// The file whose change fired (change schedules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub recorded_at: String,
}

impl From<ScheduleFire> for FireView {
    fn from(f: ScheduleFire) -> Self {
        FireView {
            fire_time: format_event_time(f.fire_time),
            outcome: f.outcome.as_str().to_owned(),
            run_id: f.run_id,
            reason: f.reason,
            path: f.path,
            recorded_at: format_event_time(f.recorded_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FireList {
    pub value: Vec<FireView>,
}

fn kind(text: &str) -> Result<ScheduleKind, ApiError> {
    match text {
        "time" => Ok(ScheduleKind::Time),
        "change" => Ok(ScheduleKind::Change),
        other => Err(ApiError::bad_request(format!(
            "unknown schedule kind `{other}`: use `time` or `change`"
        ))),
    }
}

fn status(text: &str) -> Result<ScheduleStatus, ApiError> {
    match text {
        "Active" => Ok(ScheduleStatus::Active),
        "Disabled" => Ok(ScheduleStatus::Disabled),
        other => Err(ApiError::bad_request(format!(
            "unknown schedule status `{other}`: use `Active` or `Disabled`"
        ))),
    }
}

/// The overlap settings of a body, over `current` for what it leaves out.
fn concurrency(body: &ScheduleBody, current: Concurrency) -> Result<Concurrency, ApiError> {
    let max_concurrent = match body.max_concurrent {
        None => current.max_concurrent,
        Some(n) => NonZeroU32::new(n).ok_or_else(|| {
            ApiError::bad_request(
                "maxConcurrent must be at least 1: it is how many runs of the schedule may go at once",
            )
        })?,
    };
    Ok(Concurrency {
        overlap_policy: body.overlap_policy.unwrap_or(current.overlap_policy),
        max_concurrent,
    })
}

fn required<T>(value: Option<T>, field: &str) -> Result<T, ApiError> {
    value.ok_or_else(|| ApiError::bad_request(format!("a new schedule needs `{field}`")))
}

/// A polling interval given in minutes (`pollingInterval`) or, by tests, in seconds
/// (`pollingIntervalSeconds`), as seconds; giving both is refused.
pub(crate) fn polling_seconds(minutes: Option<u32>, seconds: Option<u32>) -> Result<Option<u32>, ApiError> {
    match (minutes, seconds) {
        (Some(_), Some(_)) => Err(ApiError::bad_request(
            "give the polling interval once: `pollingInterval` (minutes) or `pollingIntervalSeconds`",
        )),
        (Some(minutes), None) => Ok(Some(minutes.saturating_mul(60))),
        (None, seconds) => Ok(seconds),
    }
}

/// The watch a body gives, if it names any of a change schedule's fields.
fn watch(body: &ScheduleBody) -> Result<Option<WatchSpec>, ApiError> {
    let polling_seconds = polling_seconds(body.polling_interval, body.polling_interval_seconds)?;
    let spec = WatchSpec {
        datastore: body.datastore.clone(),
        path: body.path_on_datastore.clone(),
        recursive: body.recursive,
        polling_seconds,
        data_path_parameter: body.data_path_parameter_name.clone(),
    };
    let given = spec.datastore.is_some()
        || spec.path.is_some()
        || spec.recursive.is_some()
        || spec.polling_seconds.is_some()
        || spec.data_path_parameter.is_some();
    if given && body.recurrence.is_some() {
        return Err(ApiError::bad_request(
            "a schedule fires at times (`recurrence`) or on changes (`datastore`, `pathOnDatastore`, \
             `pollingInterval`, `dataPathParameterName`, `recursive`), not both: give one of them",
        ));
    }
    Ok(given.then_some(spec))
}

/// A whole schedule from a create's body.
fn spec(body: ScheduleBody) -> Result<ScheduleSpec, ApiError> {
    let watch = watch(&body)?;
    match body.kind.as_deref().map(kind).transpose()? {
        Some(ScheduleKind::Change) if watch.is_none() => {
            return Err(ApiError::bad_request(
                "a change schedule needs `datastore` and `pathOnDatastore`",
            ));
        }
        Some(ScheduleKind::Time) if watch.is_some() => {
            return Err(ApiError::bad_request(
                "a time schedule takes a `recurrence`, not a datastore path: use kind `change` for that",
            ));
        }
        _ => {}
    }
    let concurrency = concurrency(&body, Concurrency::default())?;
    let experiment_name = required(body.experiment_name, "experimentName")?;
    check_name("experiment", &experiment_name)?;
    Ok(ScheduleSpec {
        pipeline_id: required(body.pipeline_id, "pipelineId")?,
        experiment_name,
        recurrence: body.recurrence,
        watch,
        parameters: body.parameter_assignments.unwrap_or_default(),
        continue_on_step_failure: body.continue_on_step_failure.unwrap_or(false),
        status: body
            .status
            .as_deref()
            .map(status)
            .transpose()?
            .unwrap_or(ScheduleStatus::Active),
        misfire: body.misfire_policy.unwrap_or_default(),
        concurrency,
    })
}

/// What a body changes of `current`.
fn change(body: ScheduleBody, current: &PipelineSchedule) -> Result<ScheduleChange, ApiError> {
    let concurrency = concurrency(&body, current.concurrency)?;
    let watch = watch(&body)?;
    if let Some(name) = &body.experiment_name {
        check_name("experiment", name)?;
    }
    Ok(ScheduleChange {
        kind: body.kind.as_deref().map(kind).transpose()?,
        pipeline_id: body.pipeline_id,
        experiment_name: body.experiment_name,
        recurrence: body.recurrence,
        watch,
        parameters: body.parameter_assignments,
        continue_on_step_failure: body.continue_on_step_failure,
        status: body.status.as_deref().map(status).transpose()?,
        misfire: body.misfire_policy,
        concurrency: Some(concurrency),
    })
}

/// Creates a time or change schedule, or changes the one of that name as PATCH does
/// (`If-Match` applies then).
/// A recurrence that breaks a rule (an interval of 0, hours on a Minute recurrence, an
/// unknown time zone, a start after the end, ...) is a 400 naming the rule, and so is a
/// watch that does (an unknown datastore, a path with `..` or absolute, a polling
/// interval under a minute, a data-path parameter the pipeline lacks, a recurrence
/// too); an unknown pipeline a 404; nothing is created then. Takes Contributor.
#[utoipa::path(put, path = "/v1/workspaces/{workspace}/schedules/{name}", tag = "schedules", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = ScheduleBody,
    responses((status = 201, body = ScheduleView), (status = 200, body = ScheduleView), (status = 400, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody)))]
async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, name)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    Json(body): Json<ScheduleBody>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Contributor).await?;
    check_name("schedule", &name)?;
    match state.schedules.get(ws, &name).await {
        Ok(current) => {
            let change = change(body, &current)?;
            let updated = state.schedules.update(ws, &name, change, if_match, Utc::now()).await?;
            Ok(with_etag(StatusCode::OK, ScheduleView::from(updated)))
        }
        Err(mlgrid_pipelines::PipelineError::Store(StoreError::NotFound(_))) => {
            if let Some(etag) = if_match.filter(|e| e != "*") {
                return Err(StoreError::PreconditionFailed(format!(
                    "schedule `{name}` does not exist, so it cannot match etag {etag}"
                ))
                .into());
            }
            let created = state.schedules.create(ws, &name, spec(body)?, Utc::now()).await?;
            Ok(with_etag(StatusCode::CREATED, ScheduleView::from(created)))
        }
        Err(e) => Err(e.into()),
    }
}

/// Changes what the body names of a schedule; its next tick is computed again. A change
/// of kind (time to change-based) is refused with a 409. Takes Contributor.
#[utoipa::path(patch, path = "/v1/workspaces/{workspace}/schedules/{name}", tag = "schedules", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path), ("If-Match" = Option<String>, Header)),
    request_body = ScheduleBody,
    responses((status = 200, body = ScheduleView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 412, body = ErrorBody)))]
async fn patch(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, name)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
    Json(body): Json<ScheduleBody>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Contributor).await?;
    let current = state.schedules.get(ws, &name).await?;
    let change = change(body, &current)?;
    let updated = state.schedules.update(ws, &name, change, if_match, Utc::now()).await?;
    Ok(with_etag(StatusCode::OK, ScheduleView::from(updated)))
}

/// Shows a schedule, with its next fire time and its last run. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/schedules/{name}", tag = "schedules", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody)))]
async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Reader).await?;
    let schedule = state.schedules.get(ws, &name).await?;
    Ok(with_etag(StatusCode::OK, ScheduleView::from(schedule)))
}

/// Deletes a schedule and the record of its ticks; its runs stay. Takes Contributor.
#[utoipa::path(delete, path = "/v1/workspaces/{workspace}/schedules/{name}", tag = "schedules", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)))]
async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, name)): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
) -> Result<StatusCode, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Contributor).await?;
    state.schedules.delete(ws, &name, if_match).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists the active schedules of a workspace by name (`all=true`: disabled ones too).
/// Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/schedules", tag = "schedules", security(("api_key" = [])),
    params(("workspace" = String, Path), ListSchedules), responses((status = 200, body = ScheduleList)))]
async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(ws_name): Path<String>,
    Query(query): Query<ListSchedules>,
) -> Result<JsonResponse<ScheduleList>, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Reader).await?;
    let filter = ScheduleFilter {
        include_disabled: query.all.unwrap_or(false),
        pipeline_id: query.pipeline_id,
    };
    let schedules = state.schedules.list(ws, filter).await?;
    Ok(JsonResponse(ScheduleList {
        value: schedules.into_iter().map(ScheduleView::from).collect(),
    }))
}

async fn set_status(
    state: AppState,
    caller: Caller,
    (ws_name, name): (String, String),
    if_match: Option<String>,
    status: ScheduleStatus,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Contributor).await?;
    let change = ScheduleChange {
        status: Some(status),
        ..ScheduleChange::default()
    };
    let updated = state.schedules.update(ws, &name, change, if_match, Utc::now()).await?;
    Ok(with_etag(StatusCode::OK, ScheduleView::from(updated)))
}

/// Disables a schedule: it fires nothing until enabled. Takes Contributor.
#[utoipa::path(post, path = "/v1/workspaces/{workspace}/schedules/{name}/disable", tag = "schedules", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody), (status = 412, body = ErrorBody)))]
async fn disable(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
) -> Result<Response, ApiError> {
    set_status(state, caller, path, if_match, ScheduleStatus::Disabled).await
}

/// Enables a schedule from its next tick on (the ticks it slept through do not fire).
/// Takes Contributor.
#[utoipa::path(post, path = "/v1/workspaces/{workspace}/schedules/{name}/enable", tag = "schedules", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path), ("If-Match" = Option<String>, Header)),
    responses((status = 200, body = ScheduleView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 412, body = ErrorBody)))]
async fn enable(
    State(state): State<AppState>,
    caller: Caller,
    Path(path): Path<(String, String)>,
    IfMatch(if_match): IfMatch,
) -> Result<Response, ApiError> {
    set_status(state, caller, path, if_match, ScheduleStatus::Active).await
}

/// The coming fire times of a schedule, in UTC and on its zone's clock. Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/schedules/{name}/next", tag = "schedules", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path), NextQuery),
    responses((status = 200, body = NextFireTimes), (status = 404, body = ErrorBody)))]
async fn next(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, name)): Path<(String, String)>,
    Query(query): Query<NextQuery>,
) -> Result<JsonResponse<NextFireTimes>, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Reader).await?;
    let upcoming = state
        .schedules
        .upcoming(ws, &name, query.count.unwrap_or(5), Utc::now())
        .await?;
    Ok(JsonResponse(NextFireTimes {
        time_zone: upcoming.zone.name().to_owned(),
        value: upcoming
            .times
            .into_iter()
            .map(|t| FireTime {
                // Fire times are whole minutes: shown without fractions.
                utc: t.to_rfc3339_opts(SecondsFormat::Secs, true),
                local: t
                    .with_timezone(&upcoming.zone)
                    .to_rfc3339_opts(SecondsFormat::Secs, true),
            })
            .collect(),
    }))
}

/// The ticks a schedule handled, newest first: each with its run, or why it has none.
/// Takes Reader.
#[utoipa::path(get, path = "/v1/workspaces/{workspace}/schedules/{name}/runs", tag = "schedules", security(("api_key" = [])),
    params(("workspace" = String, Path), ("name" = String, Path)),
    responses((status = 200, body = FireList), (status = 404, body = ErrorBody)))]
async fn runs(
    State(state): State<AppState>,
    caller: Caller,
    Path((ws_name, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let ws = workspace(&state, &caller, &ws_name, Role::Reader).await?;
    let fires = state.schedules.fires(ws, &name, MAX_FIRES).await?;
    let list = FireList {
        value: fires.into_iter().map(FireView::from).collect(),
    };
    Ok((StatusCode::OK, JsonResponse(list)).into_response())
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(put, patch, show, delete))
        .routes(routes!(disable))
        .routes(routes!(enable))
        .routes(routes!(next))
        .routes(routes!(runs))
}
