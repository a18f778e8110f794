//! A batch of ticks recorded on SQLite with a few multi-row statements, whatever its
//! size, inside the writer's transaction. Tick by tick, each took about 19 statements in
//! the one writer (its record, the idempotency check, the pipeline, the run and each
//! step's run with their workspace and experiment, the step rows, the schedule's next
//! tick): 9,000 ticks due on one second were recorded over 9 s. A batch reads each of
//! its workspaces and pipelines once and writes each table once per chunk.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use mlgrid_core::pipeline::progress::StepState;
use mlgrid_core::time::{format_event_time, parse_rfc3339};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::db::{db, now};
use super::events::workspace_topic;
use super::pipelines::find_pipeline;
use crate::error::{Result, StoreError};
use crate::etag::new_etag;
use crate::lifecycle::NewRun;
use crate::lifecycle_writes::tags_json;
use crate::model::SourceId;
use crate::pipeline_writes::{disabled, json};
use crate::rows::fire_from_row;
use crate::schedule_sql as sql;
use crate::schedules::{FireOutcome, FireRecorded, NewTick, ScheduleFire};
use crate::tick_writes::{AfterFire, RunRows, TickPlan, after_fires, failed, refusal};

/// Rows per multi-row statement: at most 11 values a row, far under SQLite's 32,766.
const CHUNK: usize = 500;

fn time(t: DateTime<Utc>) -> String {
    format_event_time(t)
}

/// What the batch has read of workspaces and pipelines: why a run of each cannot start,
/// or `None` when it can.
#[derive(Default)]
struct Refusals {
    workspaces: HashMap<SourceId, Option<String>>,
    pipelines: HashMap<(SourceId, String), Option<String>>,
}

impl Refusals {
    async fn of(
        &mut self,
        conn: &mut SqliteConnection,
        workspace: SourceId,
        pipeline_id: &str,
    ) -> Result<Option<String>> {
        let workspace_refused = match self.workspaces.entry(workspace) {
            Entry::Occupied(known) => known.get().clone(),
            Entry::Vacant(unknown) => {
                let refused = match workspace_topic(conn, workspace).await {
                    Ok(_) => None,
                    Err(e) => Some(refusal(e)?),
                };
                unknown.insert(refused).clone()
            }
        };
        if workspace_refused.is_some() {
            return Ok(workspace_refused);
        }
        match self.pipelines.entry((workspace, pipeline_id.to_owned())) {
            Entry::Occupied(known) => Ok(known.get().clone()),
            Entry::Vacant(unknown) => {
                let refused = match find_pipeline(&mut *conn, workspace, pipeline_id).await {
                    Ok(pipeline) if pipeline.enabled => None,
                    Ok(pipeline) => {
                        let name: String = db(sqlx::query_scalar(crate::sql::WORKSPACE_NAME)
                            .bind(workspace)
                            .fetch_one(&mut *conn)
                            .await)?;
                        Some(refusal(disabled(&pipeline, &name))?)
                    }
                    Err(e) => Some(refusal(e)?),
                };
                Ok(unknown.insert(refused).clone())
            }
        }
    }
}

pub(super) async fn record(conn: &mut SqliteConnection, ticks: Vec<NewTick>) -> Result<Vec<FireRecorded>> {
    let mut refusals = Refusals::default();
    let mut taken = HashSet::new();
    let mut plans = Vec::with_capacity(ticks.len());
    for tick in ticks {
        let Some(run) = tick.run else {
            plans.push(TickPlan {
                workspace: tick.workspace,
                fire: tick.fire,
                run_id: None,
                create: None,
            });
            continue;
        };
        let settled = match refusals.of(conn, tick.workspace, &run.pipeline_id).await? {
            Some(reason) => Err(reason),
            None => match RunRows::new(run, &mut taken) {
                Ok(rows) => Ok(rows),
                Err(e) => Err(refusal(e)?),
            },
        };
        plans.push(match settled {
            Ok(rows) => TickPlan {
                workspace: tick.workspace,
                fire: tick.fire,
                run_id: Some(rows.run_id.clone()),
                create: Some(rows),
            },
            Err(reason) => TickPlan {
                workspace: tick.workspace,
                fire: failed(tick.fire, reason),
                run_id: None,
                create: None,
            },
        });
    }
    earlier_runs(conn, &mut plans).await?;
    let at = now();
    let mut inserted = insert_fires(conn, &plans, &at).await?;
    let created: Vec<(SourceId, &RunRows)> = plans
        .iter()
        .filter(|plan| {
            inserted
                .get(&owned(plan.key()))
                .is_some_and(|fire| fire.run_id == plan.run_id)
        })
        .filter_map(|plan| Some((plan.workspace, plan.create.as_ref()?)))
        .collect();
    insert_runs(conn, &created, &at).await?;

    let mut answers = Vec::with_capacity(plans.len());
    for plan in &plans {
        let answer = match inserted.remove(&owned(plan.key())) {
            Some(fire) => FireRecorded { fire, recorded: true },
            None => FireRecorded {
                fire: earlier_fire(conn, plan).await?,
                recorded: false,
            },
        };
        answers.push(answer);
    }
    let recorded = plans
        .iter()
        .zip(&answers)
        .filter(|(_, answer)| answer.recorded)
        .map(|(plan, answer)| (&plan.fire, &answer.fire));
    update_schedules(conn, after_fires(recorded)).await?;
    Ok(answers)
}

fn owned((schedule_id, fire_time): (&str, DateTime<Utc>)) -> (String, DateTime<Utc>) {
    (schedule_id.to_owned(), fire_time)
}

/// Ticks whose idempotency key names a run made before start no other: their record
/// names that run. A tick's key is (schedule, fire time), as its record's is, so this
/// finds a run only when the record of its tick was pruned and the tick fired again.
async fn earlier_runs(conn: &mut SqliteConnection, plans: &mut [TickPlan]) -> Result<()> {
    let mut by_workspace: HashMap<SourceId, Vec<String>> = HashMap::new();
    for plan in plans.iter() {
        if let Some(key) = plan.create.as_ref().and_then(|rows| rows.new.idempotency_key.clone()) {
            by_workspace.entry(plan.workspace).or_default().push(key);
        }
    }
    let mut earlier: HashMap<(SourceId, String), String> = HashMap::new();
    for (workspace, keys) in by_workspace {
        for chunk in keys.chunks(CHUNK) {
            let mut query =
                QueryBuilder::<Sqlite>::new("SELECT idempotency_key, run_id FROM pipeline_runs WHERE source_id = ");
            query.push_bind(workspace).push(" AND idempotency_key IN (");
            let mut keys = query.separated(", ");
            for key in chunk {
                keys.push_bind(key.clone());
            }
            query.push(")");
            let found: Vec<(String, String)> =
                db(query.build_query_as().persistent(false).fetch_all(&mut *conn).await)?;
            earlier.extend(found.into_iter().map(|(key, run_id)| ((workspace, key), run_id)));
        }
    }
    for plan in plans.iter_mut() {
        let key = plan.create.as_ref().and_then(|rows| rows.new.idempotency_key.clone());
        if let Some(run_id) = key.and_then(|key| earlier.get(&(plan.workspace, key))) {
            plan.run_id = Some(run_id.clone());
            plan.create = None;
        }
    }
    Ok(())
}

/// Inserts every tick not recorded before; returns the records made, by key. Which
/// were recorded before is asked first (in the writer's transaction nothing records
/// them meanwhile), so that the records made need not stream back, row by row, from
/// the database.
async fn insert_fires(
    conn: &mut SqliteConnection,
    plans: &[TickPlan],
    at: &str,
) -> Result<HashMap<(String, DateTime<Utc>), ScheduleFire>> {
    let recorded_at = parse_rfc3339(at).map_err(|_| StoreError::Corrupt(format!("`{at}` is not a time")))?;
    let mut inserted = HashMap::with_capacity(plans.len());
    for chunk in plans.chunks(CHUNK) {
        let mut existing = QueryBuilder::<Sqlite>::new(
            "SELECT schedule_id, fire_time FROM schedule_fires WHERE (schedule_id, fire_time) IN (",
        );
        existing.push_values(chunk, |mut row, plan| {
            row.push_bind(plan.fire.schedule_id.clone())
                .push_bind(time(plan.fire.fire_time));
        });
        existing.push(")");
        let before: HashSet<(String, String)> =
            db(existing.build_query_as().persistent(false).fetch_all(&mut *conn).await)?
                .into_iter()
                .collect();
        let mut new = Vec::with_capacity(chunk.len());
        for plan in chunk {
            let key = (plan.fire.schedule_id.clone(), time(plan.fire.fire_time));
            // A tick given twice in one batch is recorded once, as its first.
            if before.contains(&key) || inserted.contains_key(&owned(plan.key())) {
                continue;
            }
            let fire = ScheduleFire {
                schedule_id: plan.fire.schedule_id.clone(),
                fire_time: plan.fire.fire_time,
                outcome: match &plan.run_id {
                    Some(_) => FireOutcome::Started,
                    None => plan.fire.outcome,
                },
                run_id: plan.run_id.clone(),
                reason: plan.fire.reason.clone(),
                path: None,
                recorded_at,
            };
            inserted.insert(owned(plan.key()), fire.clone());
            new.push((plan.workspace, fire));
        }
        if new.is_empty() {
            continue;
        }
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO schedule_fires (schedule_id, fire_time, source_id, outcome, run_id, reason, recorded_at) ",
        );
        insert.push_values(&new, |mut row, (workspace, fire)| {
            row.push_bind(fire.schedule_id.clone())
                .push_bind(time(fire.fire_time))
                .push_bind(*workspace)
                .push_bind(fire.outcome.as_str())
                .push_bind(fire.run_id.clone())
                .push_bind(fire.reason.clone())
                .push_bind(at.to_owned());
        });
        db(insert.build().persistent(false).execute(&mut *conn).await)?;
    }
    Ok(inserted)
}

async fn earlier_fire(conn: &mut SqliteConnection, plan: &TickPlan) -> Result<ScheduleFire> {
    let query = sqlx::query(sql::FIRE)
        .bind(&plan.fire.schedule_id)
        .bind(time(plan.fire.fire_time));
    super::db::optional(&mut *conn, query, fire_from_row)
        .await?
        .ok_or_else(|| StoreError::Corrupt("a tick's record vanished inside its transaction".into()))
}

/// The runs of the started ticks, with their experiments, pipeline runs and steps.
async fn insert_runs(conn: &mut SqliteConnection, created: &[(SourceId, &RunRows)], at: &str) -> Result<()> {
    if created.is_empty() {
        return Ok(());
    }
    let mut experiments: HashMap<(SourceId, String), String> = HashMap::new();
    for &(workspace, rows) in created {
        let key = (workspace, rows.new.experiment_name.clone());
        if experiments.contains_key(&key) {
            continue;
        }
        db(sqlx::query(crate::sql::INSERT_EXPERIMENT)
            .bind(key.0)
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&key.1)
            .bind(at)
            .execute(&mut *conn)
            .await)?;
        let id: String = db(sqlx::query_scalar(crate::sql::EXPERIMENT_ID)
            .bind(key.0)
            .bind(&key.1)
            .fetch_one(&mut *conn)
            .await)?;
        experiments.insert(key, id);
    }
    let runs: Vec<(SourceId, &str, String, &NewRun)> = created
        .iter()
        .flat_map(|&(workspace, rows)| {
            let experiment = experiments[&(workspace, rows.new.experiment_name.clone())].clone();
            std::iter::once((workspace, rows.run_id.as_str(), experiment.clone(), &rows.run)).chain(
                rows.steps
                    .iter()
                    .map(move |step| (workspace, step.run_id.as_str(), experiment.clone(), &step.run)),
            )
        })
        .collect();
    for chunk in runs.chunks(CHUNK) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO runs (source_id, run_id, experiment_id, parent_run_id, run_type, status, tags, properties, \
             created_at, start_time, etag) ",
        );
        insert.push_values(chunk, |mut row, (workspace, run_id, experiment, run)| {
            row.push_bind(*workspace)
                .push_bind(run_id.to_string())
                .push_bind(experiment.clone())
                .push_bind(run.parent_run_id.clone())
                .push_bind(run.run_type.clone())
                .push_bind(run.status.as_str())
                .push_bind(tags_json(&run.tags))
                .push_bind(tags_json(&run.properties))
                .push_bind(at.to_owned())
                .push_bind(None::<String>)
                .push_bind(new_etag());
        });
        db(insert.build().persistent(false).execute(&mut *conn).await)?;
    }

    for chunk in created.chunks(CHUNK) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO pipeline_runs (source_id, run_id, pipeline_id, description, parameters, data_paths, \
             continue_on_step_failure, run_source, idempotency_key) ",
        );
        insert.push_values(chunk, |mut row, (workspace, rows)| {
            let new = &rows.new;
            row.push_bind(*workspace)
                .push_bind(rows.run_id.clone())
                .push_bind(new.pipeline_id.clone())
                .push_bind(new.description.clone())
                .push_bind(json(&new.parameters))
                .push_bind(json(&new.data_paths))
                .push_bind(new.continue_on_step_failure)
                .push_bind(new.run_source.clone())
                .push_bind(new.idempotency_key.clone());
        });
        db(insert.build().persistent(false).execute(&mut *conn).await)?;
    }

    let steps: Vec<_> = created
        .iter()
        .flat_map(|&(workspace, rows)| {
            rows.steps
                .iter()
                .map(move |step| (workspace, rows.run_id.as_str(), step))
        })
        .collect();
    for chunk in steps.chunks(CHUNK) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO pipeline_steps (source_id, pipeline_run_id, name, ordinal, run_id, state, depends_on, \
             retries, ready_at) ",
        );
        insert.push_values(chunk, |mut row, (workspace, pipeline_run_id, step)| {
            let ready = step.state == StepState::Ready;
            row.push_bind(*workspace)
                .push_bind(pipeline_run_id.to_string())
                .push_bind(step.step.name.clone())
                .push_bind(step.ordinal)
                .push_bind(step.run_id.clone())
                .push_bind(step.state.as_str())
                .push_bind(json(&step.step.depends_on))
                .push_bind(i64::from(step.step.retries))
                .push_bind(ready.then(|| at.to_owned()));
        });
        db(insert.build().persistent(false).execute(&mut *conn).await)?;
    }
    Ok(())
}

/// Moves each schedule's last and next tick on, as [`sql::AFTER_FIRE`] does one.
async fn update_schedules(conn: &mut SqliteConnection, after: Vec<AfterFire>) -> Result<()> {
    for chunk in after.chunks(CHUNK) {
        let mut update = QueryBuilder::<Sqlite>::new(
            "UPDATE schedules SET last_fire_at = v.column2, last_run_id = COALESCE(v.column3, last_run_id), \
             last_error = v.column4, next_fire_at = CASE WHEN etag = v.column5 THEN v.column6 ELSE next_fire_at END \
             FROM (",
        );
        update.push_values(chunk, |mut row, after| {
            row.push_bind(after.schedule_id.clone())
                .push_bind(time(after.last_fire_at))
                .push_bind(after.last_run_id.clone())
                .push_bind(after.last_error.clone())
                .push_bind(after.etag.clone())
                .push_bind(after.next_fire_at.map(time));
        });
        update.push(") AS v WHERE schedules.id = v.column1");
        db(update.build().persistent(false).execute(&mut *conn).await)?;
    }
    Ok(())
}
