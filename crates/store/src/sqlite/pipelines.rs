//! Published pipelines, their endpoints, pipeline runs and the claims of their steps on
//! SQLite. Writes run inside the writer's transaction, one at a time, so a run's steps
//! never change under a write; runs move through [`runs::move_to`], so a step's end, its
//! run's status and the events they raise commit together or not at all.

use chrono::{DateTime, Utc};
use mlgrid_core::lifecycle::RunStatus;
use mlgrid_core::pipeline::progress::StepState;
use mlgrid_core::time::format_event_time;
use sqlx::{SqliteConnection, SqliteExecutor, SqlitePool};

use super::db::{all, db, now, optional, to_i64, unique};
use super::events::workspace_topic;
use super::runs;
use crate::error::Result;
use crate::etag::{check_etag, new_etag};
use crate::lifecycle::Run;
use crate::model::SourceId;
use crate::pipeline_writes::*;
use crate::pipelines::*;
use crate::rows::{
    claimed_step_from_row, pipeline_endpoint_from_row, pipeline_from_row, pipeline_run_from_row, run_step_from_row,
    step_run_from_row,
};
use crate::sql;

fn time(t: DateTime<Utc>) -> String {
    format_event_time(t)
}

pub(super) async fn publish(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    new: NewPipeline,
) -> Result<PublishedPipeline> {
    workspace_topic(conn, workspace).await?;
    let taken: Vec<String> = db(sqlx::query_scalar(sql::PIPELINE_VERSIONS)
        .bind(workspace)
        .bind(&new.name)
        .fetch_all(&mut *conn)
        .await)?;
    let version = pipeline_version(new.version.as_deref(), &taken)?;
    let row = unique(
        sqlx::query(sql::INSERT_PIPELINE)
            .bind(workspace)
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&new.name)
            .bind(&version)
            .bind(&new.description)
            .bind(&new.definition)
            .bind(now())
            .bind(new_etag())
            .fetch_one(&mut *conn)
            .await,
        || version_taken(&new.name, &version),
    )?;
    pipeline_from_row(&row)
}

pub(super) async fn find_pipeline<'c>(
    exec: impl SqliteExecutor<'c>,
    workspace: SourceId,
    id: &str,
) -> Result<PublishedPipeline> {
    let query = sqlx::query(sql::PIPELINE).bind(workspace).bind(id);
    optional(exec, query, pipeline_from_row)
        .await?
        .ok_or_else(|| missing_pipeline(id))
}

async fn find_endpoint<'c>(exec: impl SqliteExecutor<'c>, workspace: SourceId, name: &str) -> Result<PipelineEndpoint> {
    let query = sqlx::query(sql::PIPELINE_ENDPOINT).bind(workspace).bind(name);
    optional(exec, query, pipeline_endpoint_from_row)
        .await?
        .ok_or_else(|| missing_endpoint(name))
}

pub(super) async fn set_enabled(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    id: &str,
    enabled: bool,
    if_match: Option<String>,
) -> Result<PublishedPipeline> {
    let current = find_pipeline(&mut *conn, workspace, id).await?;
    check_etag(&format!("pipeline `{id}`"), &current.etag, if_match.as_deref())?;
    if !enabled {
        super::schedules::refuse_if_scheduled(conn, workspace, id).await?;
    }
    let row = db(sqlx::query(sql::SET_PIPELINE_ENABLED)
        .bind(enabled)
        .bind(now())
        .bind(new_etag())
        .bind(workspace)
        .bind(id)
        .fetch_one(&mut *conn)
        .await)?;
    pipeline_from_row(&row)
}

pub(super) async fn create_endpoint(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    new: NewPipelineEndpoint,
) -> Result<PipelineEndpoint> {
    find_pipeline(&mut *conn, workspace, &new.pipeline_id).await?;
    let row = unique(
        sqlx::query(sql::INSERT_PIPELINE_ENDPOINT)
            .bind(workspace)
            .bind(&new.name)
            .bind(&new.description)
            .bind(&new.pipeline_id)
            .bind(now())
            .bind(new_etag())
            .fetch_one(&mut *conn)
            .await,
        || endpoint_taken(&new.name),
    )?;
    pipeline_endpoint_from_row(&row)
}

pub(super) async fn set_endpoint_default(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    name: &str,
    pipeline_id: &str,
    if_match: Option<String>,
) -> Result<PipelineEndpoint> {
    let current = find_endpoint(&mut *conn, workspace, name).await?;
    check_etag(
        &format!("pipeline endpoint `{name}`"),
        &current.etag,
        if_match.as_deref(),
    )?;
    find_pipeline(&mut *conn, workspace, pipeline_id).await?;
    let row = db(sqlx::query(sql::SET_PIPELINE_ENDPOINT_DEFAULT)
        .bind(pipeline_id)
        .bind(now())
        .bind(new_etag())
        .bind(workspace)
        .bind(name)
        .fetch_one(&mut *conn)
        .await)?;
    pipeline_endpoint_from_row(&row)
}

/// Creates the pipeline run, its steps and their runs; an idempotency key seen before
/// returns the run made for it, even if the pipeline was disabled since.
pub(super) async fn submit(conn: &mut SqliteConnection, workspace: SourceId, new: NewPipelineRun) -> Result<Submitted> {
    if let Some(run) = earlier_run(conn, workspace, new.idempotency_key.as_deref()).await? {
        return Ok(Submitted { run, created: false });
    }
    let pipeline = find_pipeline(&mut *conn, workspace, &new.pipeline_id).await?;
    if !pipeline.enabled {
        let name: String = db(sqlx::query_scalar(sql::WORKSPACE_NAME)
            .bind(workspace)
            .fetch_one(&mut *conn)
            .await)?;
        return Err(disabled(&pipeline, &name));
    }
    check_submission(&new)?;
    let run = runs::start(conn, workspace, new_pipeline_run(&new)).await?;
    db(sqlx::query(sql::INSERT_PIPELINE_RUN)
        .bind(workspace)
        .bind(&run.run_id)
        .bind(&new.pipeline_id)
        .bind(&new.description)
        .bind(json(&new.parameters))
        .bind(json(&new.data_paths))
        .bind(new.continue_on_step_failure)
        .bind(&new.run_source)
        .bind(&new.idempotency_key)
        .execute(&mut *conn)
        .await)?;
    let ready_at = now();
    for (ordinal, (step, state)) in new.steps.iter().zip(initial_states(&new.steps)).enumerate() {
        let step_run = runs::start(conn, workspace, new_step_run(&new, &run.run_id, step, state)).await?;
        db(sqlx::query(sql::INSERT_STEP)
            .bind(workspace)
            .bind(&run.run_id)
            .bind(&step.name)
            .bind(ordinal as i64)
            .bind(&step_run.run_id)
            .bind(state.as_str())
            .bind(json(&step.depends_on))
            .bind(i64::from(step.retries))
            .bind((state == StepState::Ready).then(|| ready_at.clone()))
            .execute(&mut *conn)
            .await)?;
    }
    Ok(Submitted { run, created: true })
}

/// The run an earlier submission with this idempotency key made, if any.
async fn earlier_run(conn: &mut SqliteConnection, workspace: SourceId, key: Option<&str>) -> Result<Option<Run>> {
    let Some(key) = key else {
        return Ok(None);
    };
    let run_id: Option<String> = db(sqlx::query_scalar(sql::IDEMPOTENT_PIPELINE_RUN)
        .bind(workspace)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await)?;
    match run_id {
        Some(run_id) => Ok(Some(runs::load_run(conn, workspace, &run_id).await?)),
        None => Ok(None),
    }
}

/// Claims up to `limit` ready steps of any workspace, the longest ready first.
pub(super) async fn claim(conn: &mut SqliteConnection, claim: StepClaim, limit: u32) -> Result<Vec<ClaimedStep>> {
    let keys: Vec<(SourceId, String)> = db(sqlx::query_as(sql::READY_STEPS)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await)?;
    claim_keys(conn, &keys, &claim).await
}

/// Claims these ready steps for `claim.holder`: each starts its next attempt, and its
/// run and its pipeline run are Running.
async fn claim_keys(
    conn: &mut SqliteConnection,
    keys: &[(SourceId, String)],
    claim: &StepClaim,
) -> Result<Vec<ClaimedStep>> {
    let mut claimed = Vec::with_capacity(keys.len());
    for (workspace, step_run_id) in keys {
        db(sqlx::query(sql::CLAIM_STEP)
            .bind(time(claim.now))
            .bind(&claim.holder)
            .bind(time(claim.lease_until))
            .bind(workspace)
            .bind(step_run_id)
            .execute(&mut *conn)
            .await)?;
        let query = sqlx::query(sql::CLAIMED_STEP).bind(workspace).bind(step_run_id);
        let step = optional(&mut *conn, query, claimed_step_from_row)
            .await?
            .ok_or_else(|| missing_step(step_run_id))?;
        claimed.push(step);
    }
    for (workspace, run_id) in runs_started(&claimed) {
        runs::move_to(conn, workspace, &run_id, RunStatus::Running, None).await?;
    }
    Ok(claimed)
}

/// Extends the leases `holder` still has; returns the steps it lost or whose
/// cancellation was asked.
pub(super) async fn renew(
    conn: &mut SqliteConnection,
    holder: String,
    steps: Vec<(SourceId, String, u64)>,
    until: DateTime<Utc>,
) -> Result<Vec<String>> {
    let mut stop = Vec::new();
    for (workspace, step_run_id, lease) in steps {
        let cancel_requested: Option<bool> = db(sqlx::query_scalar(sql::RENEW_STEP)
            .bind(time(until))
            .bind(workspace)
            .bind(&step_run_id)
            .bind(&holder)
            .bind(to_i64(lease))
            .fetch_optional(&mut *conn)
            .await)?;
        if cancel_requested != Some(false) {
            stop.push(step_run_id);
        }
    }
    Ok(stop)
}

pub(super) async fn finish(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    step_run_id: &str,
    lease: u64,
    outcome: StepOutcome,
    next: Option<StepClaim>,
) -> Result<StepFinished> {
    let pipeline_run_id: String = db(sqlx::query_scalar(sql::STEP_PIPELINE_RUN)
        .bind(workspace)
        .bind(step_run_id)
        .fetch_optional(&mut *conn)
        .await)?
    .ok_or_else(|| missing_step(step_run_id))?;
    let (continues, steps) = load_steps(conn, workspace, &pipeline_run_id).await?;
    let index = step_index(&steps, step_run_id)?;
    check_lease(&steps[index], &pipeline_run_id, lease)?;
    let run = RunSteps {
        workspace,
        pipeline_run_id,
        continues,
        steps,
    };
    end_attempt(conn, run, index, outcome, next.as_ref()).await
}

/// A pipeline run's steps, loaded to be moved on.
struct RunSteps {
    workspace: SourceId,
    pipeline_run_id: String,
    continues: bool,
    steps: Vec<StepRun>,
}

/// Whether the run goes on after a step fails, and its steps.
async fn load_steps(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    pipeline_run_id: &str,
) -> Result<(bool, Vec<StepRun>)> {
    let continues: Option<bool> = db(sqlx::query_scalar(sql::CONTINUES_ON_STEP_FAILURE)
        .bind(workspace)
        .bind(pipeline_run_id)
        .fetch_optional(&mut *conn)
        .await)?;
    let continues = continues.ok_or_else(|| missing_pipeline_run(pipeline_run_id))?;
    let query = sqlx::query(sql::STEPS).bind(workspace).bind(pipeline_run_id);
    Ok((continues, all(&mut *conn, query, step_run_from_row).await?))
}

/// Records how the attempt of step `index` ended and moves the run on: its run ends, the
/// rules ready, skip or cancel other steps, the pipeline run ends when they say so, and
/// with `next` the steps made ready are claimed at once.
async fn end_attempt(
    conn: &mut SqliteConnection,
    mut run: RunSteps,
    index: usize,
    outcome: StepOutcome,
    next: Option<&StepClaim>,
) -> Result<StepFinished> {
    let at = Utc::now();
    let retrying = record_outcome(&mut run.steps[index], outcome, at);
    save_step(conn, run.workspace, &run.steps[index]).await?;
    if retrying {
        return Ok(StepFinished {
            retrying: true,
            ..StepFinished::default()
        });
    }
    move_step_run(conn, run.workspace, &run.steps[index]).await?;
    let (ready, run_finished) = progress_run(conn, &mut run, at).await?;
    let claimed = match next {
        Some(claim) => claim_keys(conn, &ready, claim).await?,
        None => Vec::new(),
    };
    Ok(StepFinished {
        claimed,
        run_finished,
        retrying: false,
    })
}

/// Applies the progress rules to the run's steps and writes what they change: the
/// steps, their runs, and the pipeline run when it ends. Returns the steps made ready
/// and the run's end.
async fn progress_run(
    conn: &mut SqliteConnection,
    run: &mut RunSteps,
    at: DateTime<Utc>,
) -> Result<(Vec<(SourceId, String)>, Option<RunStatus>)> {
    let progress = advance(&mut run.steps, run.continues, at);
    let mut ready = Vec::new();
    for step in run.steps.iter().filter(|s| progress.changes.contains_key(&s.name)) {
        save_step(conn, run.workspace, step).await?;
        move_step_run(conn, run.workspace, step).await?;
        if step.state == StepState::Ready {
            ready.push((run.workspace, step.run_id.clone()));
        }
    }
    if let Some(status) = progress.finished {
        let error = run_end_error(&run.steps, status);
        runs::move_to(conn, run.workspace, &run.pipeline_run_id, status, error).await?;
    }
    Ok((ready, progress.finished))
}

async fn save_step(conn: &mut SqliteConnection, workspace: SourceId, step: &StepRun) -> Result<()> {
    db(sqlx::query(sql::SAVE_STEP)
        .bind(step.state.as_str())
        .bind(step.ready_at.map(time))
        .bind(step.finished_at.map(time))
        .bind(step.exit_code.map(i64::from))
        .bind(&step.error)
        .bind(&step.reuse_key)
        .bind(&step.reused_from)
        .bind(step.cancel_requested)
        .bind(workspace)
        .bind(&step.run_id)
        .bind(step.started_at.map(time))
        .execute(&mut *conn)
        .await)?;
    Ok(())
}

/// Moves a step's run to the status of the step's state.
async fn move_step_run(conn: &mut SqliteConnection, workspace: SourceId, step: &StepRun) -> Result<()> {
    runs::move_to(
        conn,
        workspace,
        &step.run_id,
        step.state.run_status(),
        step_run_error(step),
    )
    .await?;
    Ok(())
}

/// Cancels a pipeline run: steps not started end, running ones are asked to stop, and
/// the run ends once none runs.
pub(super) async fn cancel(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    run_id: &str,
    reason: &str,
    if_match: Option<&str>,
) -> Result<PipelineRun> {
    let (continues, steps) = load_steps(conn, workspace, run_id).await?;
    check_cancelable(&runs::load_run(conn, workspace, run_id).await?, if_match)?;
    let mut run = RunSteps {
        workspace,
        pipeline_run_id: run_id.to_owned(),
        continues,
        steps,
    };
    let at = Utc::now();
    for index in cancel_steps(&mut run.steps, reason, at) {
        save_step(conn, workspace, &run.steps[index]).await?;
        move_step_run(conn, workspace, &run.steps[index]).await?;
    }
    progress_run(conn, &mut run, at).await?;
    read_pipeline_run(conn, workspace, run_id).await
}

/// Ends the attempts whose lease expired at `now` as failures (retried while retries
/// are left); returns how many.
pub(super) async fn recover(conn: &mut SqliteConnection, now: DateTime<Utc>, reason: &str) -> Result<u64> {
    let expired: Vec<(SourceId, String, i64)> = db(sqlx::query_as(sql::EXPIRED_STEPS)
        .bind(time(now))
        .fetch_all(&mut *conn)
        .await)?;
    for (workspace, step_run_id, attempts) in &expired {
        let failed = StepOutcome::Failed {
            error: reason.to_owned(),
            exit_code: None,
            started_at: None,
        };
        finish(conn, *workspace, step_run_id, *attempts as u64, failed, None).await?;
    }
    Ok(expired.len() as u64)
}

pub(super) async fn reusable_step(
    pool: &SqlitePool,
    workspace: SourceId,
    reuse_key: &str,
) -> Result<Option<(String, StepRun)>> {
    let query = sqlx::query(sql::REUSABLE_STEP).bind(workspace).bind(reuse_key);
    optional(pool, query, run_step_from_row).await
}

pub(super) async fn pipeline(pool: &SqlitePool, workspace: SourceId, id: &str) -> Result<PublishedPipeline> {
    find_pipeline(pool, workspace, id).await
}

pub(super) async fn list(pool: &SqlitePool, workspace: SourceId, name: Option<&str>) -> Result<Vec<PublishedPipeline>> {
    let query = sqlx::query(sql::PIPELINES).bind(workspace).bind(name);
    all(pool, query, pipeline_from_row).await
}

pub(super) async fn endpoint(pool: &SqlitePool, workspace: SourceId, name: &str) -> Result<PipelineEndpoint> {
    find_endpoint(pool, workspace, name).await
}

pub(super) async fn endpoints(pool: &SqlitePool, workspace: SourceId) -> Result<Vec<PipelineEndpoint>> {
    let query = sqlx::query(sql::PIPELINE_ENDPOINTS).bind(workspace);
    all(pool, query, pipeline_endpoint_from_row).await
}

pub(super) async fn pipeline_run(pool: &SqlitePool, workspace: SourceId, run_id: &str) -> Result<PipelineRun> {
    let mut conn = db(pool.acquire().await)?;
    read_pipeline_run(&mut conn, workspace, run_id).await
}

/// A pipeline run with its steps.
async fn read_pipeline_run(conn: &mut SqliteConnection, workspace: SourceId, run_id: &str) -> Result<PipelineRun> {
    let query = sqlx::query(sql::PIPELINE_RUN).bind(workspace).bind(run_id);
    let mut run = optional(&mut *conn, query, pipeline_run_from_row)
        .await?
        .ok_or_else(|| missing_pipeline_run(run_id))?;
    let query = sqlx::query(sql::STEPS).bind(workspace).bind(run_id);
    run.steps = all(&mut *conn, query, step_run_from_row).await?;
    Ok(run)
}
