//! Published pipelines, their endpoints, pipeline runs and the claims of their steps on
//! PostgreSQL, for several nodes at once.
//!
//! Every write that moves a run on locks the pipeline run's row first, then its steps:
//! the ends of one run's steps apply one after another, whichever nodes record them.
//! Claims take ready steps with `FOR UPDATE SKIP LOCKED`, so two nodes never claim one
//! step and never wait for each other's claim, and then lock the runs they start in one
//! order ([`runs_started`]). Runs move through [`runs::move_to`], so a step's end, its
//! run's status and the events they raise commit together or not at all.

use chrono::{DateTime, Utc};
use mlgrid_core::lifecycle::RunStatus;
use mlgrid_core::pipeline::progress::StepState;
use sqlx::{AssertSqlSafe, PgConnection, PgExecutor, PgPool};

use super::db::{all, begin, commit, db, now, optional, to_i64, unique};
use super::events::workspace_topic;
use super::runs::{self, Lock};
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

/// How a row is read: as it is, or locked for the rest of the transaction.
const NO_LOCK: &str = "";
pub(super) const FOR_SHARE: &str = "FOR SHARE";
const FOR_UPDATE: &str = "FOR UPDATE";

/// Makes transactions about the same name or key of a workspace take turns until they
/// commit (a transaction-level advisory lock), so that the second sees what the first
/// wrote: the versions of a name published, the run made for an idempotency key.
async fn take_turns(conn: &mut PgConnection, workspace: SourceId, what: &str, key: &str) -> Result<()> {
    db(sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, $2))")
        .bind(format!("{what}:{key}"))
        .bind(workspace)
        .execute(&mut *conn)
        .await)?;
    Ok(())
}

pub(super) async fn publish(pool: &PgPool, workspace: SourceId, new: NewPipeline) -> Result<PublishedPipeline> {
    let mut tx = begin(pool).await?;
    workspace_topic(&mut tx, workspace).await?;
    take_turns(&mut tx, workspace, "pipeline", &new.name).await?;
    let taken: Vec<String> = db(sqlx::query_scalar(sql::PIPELINE_VERSIONS)
        .bind(workspace)
        .bind(&new.name)
        .fetch_all(&mut *tx)
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
            .fetch_one(&mut *tx)
            .await,
        || version_taken(&new.name, &version),
    )?;
    let pipeline = pipeline_from_row(&row)?;
    commit(tx).await?;
    Ok(pipeline)
}

/// A pipeline of the workspace, read with `lock` (one of the constants above).
pub(super) async fn find_pipeline<'c>(
    exec: impl PgExecutor<'c>,
    workspace: SourceId,
    id: &str,
    lock: &str,
) -> Result<PublishedPipeline> {
    let query = sqlx::query(AssertSqlSafe(format!("{} {lock}", sql::PIPELINE)));
    optional(exec, query.bind(workspace).bind(id), pipeline_from_row)
        .await?
        .ok_or_else(|| missing_pipeline(id))
}

/// An endpoint of the workspace, read with `lock` (one of the constants above).
async fn find_endpoint<'c>(
    exec: impl PgExecutor<'c>,
    workspace: SourceId,
    name: &str,
    lock: &str,
) -> Result<PipelineEndpoint> {
    let query = sqlx::query(AssertSqlSafe(format!("{} {lock}", sql::PIPELINE_ENDPOINT)));
    optional(exec, query.bind(workspace).bind(name), pipeline_endpoint_from_row)
        .await?
        .ok_or_else(|| missing_endpoint(name))
}

pub(super) async fn set_enabled(
    pool: &PgPool,
    workspace: SourceId,
    id: &str,
    enabled: bool,
    if_match: Option<String>,
) -> Result<PublishedPipeline> {
    let mut tx = begin(pool).await?;
    let current = find_pipeline(&mut *tx, workspace, id, FOR_UPDATE).await?;
    check_etag(&format!("pipeline `{id}`"), &current.etag, if_match.as_deref())?;
    if !enabled {
        super::schedules::refuse_if_scheduled(&mut tx, workspace, id).await?;
    }
    let row = db(sqlx::query(sql::SET_PIPELINE_ENABLED)
        .bind(enabled)
        .bind(now())
        .bind(new_etag())
        .bind(workspace)
        .bind(id)
        .fetch_one(&mut *tx)
        .await)?;
    let pipeline = pipeline_from_row(&row)?;
    commit(tx).await?;
    Ok(pipeline)
}

pub(super) async fn create_endpoint(
    pool: &PgPool,
    workspace: SourceId,
    new: NewPipelineEndpoint,
) -> Result<PipelineEndpoint> {
    let mut tx = begin(pool).await?;
    find_pipeline(&mut *tx, workspace, &new.pipeline_id, FOR_SHARE).await?;
    let row = unique(
        sqlx::query(sql::INSERT_PIPELINE_ENDPOINT)
            .bind(workspace)
            .bind(&new.name)
            .bind(&new.description)
            .bind(&new.pipeline_id)
            .bind(now())
            .bind(new_etag())
            .fetch_one(&mut *tx)
            .await,
        || endpoint_taken(&new.name),
    )?;
    let endpoint = pipeline_endpoint_from_row(&row)?;
    commit(tx).await?;
    Ok(endpoint)
}

pub(super) async fn set_endpoint_default(
    pool: &PgPool,
    workspace: SourceId,
    name: &str,
    pipeline_id: &str,
    if_match: Option<String>,
) -> Result<PipelineEndpoint> {
    let mut tx = begin(pool).await?;
    let current = find_endpoint(&mut *tx, workspace, name, FOR_UPDATE).await?;
    check_etag(
        &format!("pipeline endpoint `{name}`"),
        &current.etag,
        if_match.as_deref(),
    )?;
    find_pipeline(&mut *tx, workspace, pipeline_id, FOR_SHARE).await?;
    let row = db(sqlx::query(sql::SET_PIPELINE_ENDPOINT_DEFAULT)
        .bind(pipeline_id)
        .bind(now())
        .bind(new_etag())
        .bind(workspace)
        .bind(name)
        .fetch_one(&mut *tx)
        .await)?;
    let endpoint = pipeline_endpoint_from_row(&row)?;
    commit(tx).await?;
    Ok(endpoint)
}

/// Creates the pipeline run, its steps and their runs in one transaction; an idempotency
/// key seen before returns the run made for it, even if the pipeline was disabled since.
/// Submissions with the same key take turns, so that only the first creates a run.
pub(super) async fn submit(pool: &PgPool, workspace: SourceId, new: NewPipelineRun) -> Result<Submitted> {
    let mut tx = begin(pool).await?;
    let submitted = submit_in(&mut tx, workspace, new).await?;
    commit(tx).await?;
    Ok(submitted)
}

/// [`submit`] inside the caller's transaction (a schedule's tick records itself in it).
pub(super) async fn submit_in(tx: &mut PgConnection, workspace: SourceId, new: NewPipelineRun) -> Result<Submitted> {
    if let Some(key) = &new.idempotency_key {
        take_turns(&mut *tx, workspace, "pipeline run", key).await?;
    }
    if let Some(run) = earlier_run(&mut *tx, workspace, new.idempotency_key.as_deref()).await? {
        return Ok(Submitted { run, created: false });
    }
    // Share-locked: the pipeline cannot be disabled before the run is created.
    let pipeline = find_pipeline(&mut *tx, workspace, &new.pipeline_id, FOR_SHARE).await?;
    if !pipeline.enabled {
        let name: String = db(sqlx::query_scalar(sql::WORKSPACE_NAME)
            .bind(workspace)
            .fetch_one(&mut *tx)
            .await)?;
        return Err(disabled(&pipeline, &name));
    }
    check_submission(&new)?;
    let run = runs::start_in(&mut *tx, workspace, new_pipeline_run(&new)).await?;
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
        .execute(&mut *tx)
        .await)?;
    let ready_at = now();
    for (ordinal, (step, state)) in new.steps.iter().zip(initial_states(&new.steps)).enumerate() {
        let step_run = runs::start_in(&mut *tx, workspace, new_step_run(&new, &run.run_id, step, state)).await?;
        db(sqlx::query(sql::INSERT_STEP)
            .bind(workspace)
            .bind(&run.run_id)
            .bind(&step.name)
            .bind(ordinal as i64)
            .bind(&step_run.run_id)
            .bind(state.as_str())
            .bind(json(&step.depends_on))
            .bind(i64::from(step.retries))
            .bind((state == StepState::Ready).then_some(ready_at))
            .execute(&mut *tx)
            .await)?;
    }
    Ok(Submitted { run, created: true })
}

/// The run an earlier submission with this idempotency key made, if any.
async fn earlier_run(conn: &mut PgConnection, workspace: SourceId, key: Option<&str>) -> Result<Option<Run>> {
    let Some(key) = key else {
        return Ok(None);
    };
    let run_id: Option<String> = db(sqlx::query_scalar(sql::IDEMPOTENT_PIPELINE_RUN)
        .bind(workspace)
        .bind(key)
        .fetch_optional(&mut *conn)
        .await)?;
    match run_id {
        Some(run_id) => Ok(Some(runs::load_run(conn, workspace, &run_id, Lock::Share).await?)),
        None => Ok(None),
    }
}

/// Claims up to `limit` ready steps of any workspace, the longest ready first, skipping
/// those another node is claiming or moving on.
pub(super) async fn claim(pool: &PgPool, claim: &StepClaim, limit: u32) -> Result<Vec<ClaimedStep>> {
    let mut tx = begin(pool).await?;
    let keys: Vec<(SourceId, String)> = db(sqlx::query_as(AssertSqlSafe(format!(
        "{} FOR UPDATE SKIP LOCKED",
        sql::READY_STEPS
    )))
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await)?;
    let claimed = claim_keys(&mut tx, &keys, claim).await?;
    commit(tx).await?;
    Ok(claimed)
}

/// Claims these ready steps, locked by this transaction, for `claim.holder`: each starts
/// its next attempt, and its run and its pipeline run are Running.
async fn claim_keys(
    conn: &mut PgConnection,
    keys: &[(SourceId, String)],
    claim: &StepClaim,
) -> Result<Vec<ClaimedStep>> {
    let mut claimed = Vec::with_capacity(keys.len());
    for (workspace, step_run_id) in keys {
        db(sqlx::query(sql::CLAIM_STEP)
            .bind(claim.now)
            .bind(&claim.holder)
            .bind(claim.lease_until)
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
/// cancellation was asked. One statement per step, outside a transaction: a renewal
/// holds one step's row at a time, so it never waits in a circle with a write that
/// locks a run's steps.
pub(super) async fn renew(
    pool: &PgPool,
    holder: &str,
    steps: &[(SourceId, String, u64)],
    until: DateTime<Utc>,
) -> Result<Vec<String>> {
    let mut stop = Vec::new();
    for (workspace, step_run_id, lease) in steps {
        let cancel_requested: Option<bool> = db(sqlx::query_scalar(sql::RENEW_STEP)
            .bind(until)
            .bind(workspace)
            .bind(step_run_id)
            .bind(holder)
            .bind(to_i64(*lease))
            .fetch_optional(pool)
            .await)?;
        if cancel_requested != Some(false) {
            stop.push(step_run_id.clone());
        }
    }
    Ok(stop)
}

pub(super) async fn finish(
    pool: &PgPool,
    workspace: SourceId,
    step_run_id: &str,
    lease: u64,
    outcome: StepOutcome,
    next: Option<StepClaim>,
) -> Result<StepFinished> {
    let mut tx = begin(pool).await?;
    let run = lock_step_run(&mut tx, workspace, step_run_id).await?;
    let index = step_index(&run.steps, step_run_id)?;
    check_lease(&run.steps[index], &run.pipeline_run_id, lease)?;
    let finished = end_attempt(&mut tx, run, index, outcome, next.as_ref()).await?;
    commit(tx).await?;
    Ok(finished)
}

/// A pipeline run's steps, locked to be moved on.
struct RunSteps {
    workspace: SourceId,
    pipeline_run_id: String,
    continues: bool,
    steps: Vec<StepRun>,
}

/// Locks the pipeline run a step belongs to, then its steps.
async fn lock_step_run(conn: &mut PgConnection, workspace: SourceId, step_run_id: &str) -> Result<RunSteps> {
    let pipeline_run_id: String = db(sqlx::query_scalar(sql::STEP_PIPELINE_RUN)
        .bind(workspace)
        .bind(step_run_id)
        .fetch_optional(&mut *conn)
        .await)?
    .ok_or_else(|| missing_step(step_run_id))?;
    lock_steps(conn, workspace, &pipeline_run_id).await
}

/// Locks a pipeline run's row, then its steps (in that order, as every write that moves
/// a run on does).
async fn lock_steps(conn: &mut PgConnection, workspace: SourceId, pipeline_run_id: &str) -> Result<RunSteps> {
    let continues: Option<bool> = db(sqlx::query_scalar(AssertSqlSafe(format!(
        "{} {FOR_UPDATE}",
        sql::CONTINUES_ON_STEP_FAILURE
    )))
    .bind(workspace)
    .bind(pipeline_run_id)
    .fetch_optional(&mut *conn)
    .await)?;
    let continues = continues.ok_or_else(|| missing_pipeline_run(pipeline_run_id))?;
    let query = sqlx::query(AssertSqlSafe(format!("{} {FOR_UPDATE}", sql::STEPS)));
    let steps = all(
        &mut *conn,
        query.bind(workspace).bind(pipeline_run_id),
        step_run_from_row,
    )
    .await?;
    Ok(RunSteps {
        workspace,
        pipeline_run_id: pipeline_run_id.to_owned(),
        continues,
        steps,
    })
}

/// Records how the attempt of step `index` ended and moves the run on: its run ends, the
/// rules ready, skip or cancel other steps, the pipeline run ends when they say so, and
/// with `next` the steps made ready are claimed at once.
async fn end_attempt(
    conn: &mut PgConnection,
    mut run: RunSteps,
    index: usize,
    outcome: StepOutcome,
    next: Option<&StepClaim>,
) -> Result<StepFinished> {
    let at = now();
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
    conn: &mut PgConnection,
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

async fn save_step(conn: &mut PgConnection, workspace: SourceId, step: &StepRun) -> Result<()> {
    db(sqlx::query(sql::SAVE_STEP)
        .bind(step.state.as_str())
        .bind(step.ready_at)
        .bind(step.finished_at)
        .bind(step.exit_code.map(i64::from))
        .bind(&step.error)
        .bind(&step.reuse_key)
        .bind(&step.reused_from)
        .bind(step.cancel_requested)
        .bind(workspace)
        .bind(&step.run_id)
        .bind(step.started_at)
        .execute(&mut *conn)
        .await)?;
    Ok(())
}

/// Moves a step's run to the status of the step's state.
async fn move_step_run(conn: &mut PgConnection, workspace: SourceId, step: &StepRun) -> Result<()> {
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
    pool: &PgPool,
    workspace: SourceId,
    run_id: &str,
    reason: &str,
    if_match: Option<&str>,
) -> Result<PipelineRun> {
    let mut tx = begin(pool).await?;
    let mut run = lock_steps(&mut tx, workspace, run_id).await?;
    check_cancelable(
        &runs::load_run(&mut tx, workspace, run_id, Lock::Update).await?,
        if_match,
    )?;
    let at = now();
    for index in cancel_steps(&mut run.steps, reason, at) {
        save_step(&mut tx, workspace, &run.steps[index]).await?;
        move_step_run(&mut tx, workspace, &run.steps[index]).await?;
    }
    progress_run(&mut tx, &mut run, at).await?;
    let canceled = read_pipeline_run(&mut tx, workspace, run_id).await?;
    commit(tx).await?;
    Ok(canceled)
}

/// Ends the attempts whose lease expired at `now` as failures (retried while retries
/// are left), each in a transaction of its own; returns how many. A step that another
/// node recovered meanwhile (or whose holder renewed it) is left alone.
pub(super) async fn recover(pool: &PgPool, now: DateTime<Utc>, reason: &str) -> Result<u64> {
    let expired: Vec<(SourceId, String, i64)> = db(sqlx::query_as(sql::EXPIRED_STEPS).bind(now).fetch_all(pool).await)?;
    let mut recovered = 0;
    for (workspace, step_run_id, attempts) in expired {
        let mut tx = begin(pool).await?;
        let run = lock_step_run(&mut tx, workspace, &step_run_id).await?;
        let still_expired: Option<String> = db(sqlx::query_scalar(sql::STEP_EXPIRED)
            .bind(workspace)
            .bind(&step_run_id)
            .bind(attempts)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await)?;
        if still_expired.is_none() {
            continue;
        }
        let index = step_index(&run.steps, &step_run_id)?;
        let failed = StepOutcome::Failed {
            error: reason.to_owned(),
            exit_code: None,
            started_at: None,
        };
        end_attempt(&mut tx, run, index, failed, None).await?;
        commit(tx).await?;
        recovered += 1;
    }
    Ok(recovered)
}

pub(super) async fn reusable_step(
    pool: &PgPool,
    workspace: SourceId,
    reuse_key: &str,
) -> Result<Option<(String, StepRun)>> {
    let query = sqlx::query(sql::REUSABLE_STEP).bind(workspace).bind(reuse_key);
    optional(pool, query, run_step_from_row).await
}

pub(super) async fn pipeline(pool: &PgPool, workspace: SourceId, id: &str) -> Result<PublishedPipeline> {
    find_pipeline(pool, workspace, id, NO_LOCK).await
}

pub(super) async fn list(pool: &PgPool, workspace: SourceId, name: Option<&str>) -> Result<Vec<PublishedPipeline>> {
    let query = sqlx::query(sql::PIPELINES).bind(workspace).bind(name);
    all(pool, query, pipeline_from_row).await
}

pub(super) async fn endpoint(pool: &PgPool, workspace: SourceId, name: &str) -> Result<PipelineEndpoint> {
    find_endpoint(pool, workspace, name, NO_LOCK).await
}

pub(super) async fn endpoints(pool: &PgPool, workspace: SourceId) -> Result<Vec<PipelineEndpoint>> {
    let query = sqlx::query(sql::PIPELINE_ENDPOINTS).bind(workspace);
    all(pool, query, pipeline_endpoint_from_row).await
}

pub(super) async fn pipeline_run(pool: &PgPool, workspace: SourceId, run_id: &str) -> Result<PipelineRun> {
    let mut conn = db(pool.acquire().await)?;
    read_pipeline_run(&mut conn, workspace, run_id).await
}

/// A pipeline run with its steps.
async fn read_pipeline_run(conn: &mut PgConnection, workspace: SourceId, run_id: &str) -> Result<PipelineRun> {
    let query = sqlx::query(sql::PIPELINE_RUN).bind(workspace).bind(run_id);
    let mut run = optional(&mut *conn, query, pipeline_run_from_row)
        .await?
        .ok_or_else(|| missing_pipeline_run(run_id))?;
    let query = sqlx::query(sql::STEPS).bind(workspace).bind(run_id);
    run.steps = all(&mut *conn, query, step_run_from_row).await?;
    Ok(run)
}
