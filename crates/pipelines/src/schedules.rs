//! What the API asks of schedules: creating, changing, enabling and deleting them, each
//! checked whole before anything is written, and what they will fire next.
//!
//! A recurrence is checked by core (`Recurrence::check`, whose error names the rule
//! broken), the parameters against the pipeline's definition as a submission would be,
//! and the first tick computed here; the store refuses what only it can tell (a taken
//! name, a disabled pipeline, a change of kind). Every change wakes the scheduler, so a
//! new first tick that comes sooner than the one it sleeps until is not missed.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use mlgrid_core::schedule::{Concurrency, MisfirePolicy, Recurrence, Schedule};
use mlgrid_store::{
    NewSchedule, PipelineSchedule, ScheduleFilter, ScheduleFire, ScheduleKind, ScheduleStatus, SourceId, Store,
};

use crate::scheduler::SchedulerHandle;
use crate::service::{PipelineError, Pipelines};

/// Most fire times `next` computes at once.
pub const MAX_UPCOMING: usize = 100;

/// A time schedule as a person writes it (all of it, for a create).
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    pub pipeline_id: String,
    pub experiment_name: String,
    pub recurrence: Recurrence,
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub continue_on_step_failure: bool,
    pub status: ScheduleStatus,
    pub misfire: MisfirePolicy,
    pub concurrency: Concurrency,
}

/// What an update changes; what is `None` stays.
#[derive(Debug, Clone, Default)]
pub struct ScheduleChange {
    /// A schedule's kind never changes: naming another is refused.
    pub kind: Option<ScheduleKind>,
    pub pipeline_id: Option<String>,
    pub experiment_name: Option<String>,
    pub recurrence: Option<Recurrence>,
    pub parameters: Option<BTreeMap<String, serde_json::Value>>,
    pub continue_on_step_failure: Option<bool>,
    pub status: Option<ScheduleStatus>,
    pub misfire: Option<MisfirePolicy>,
    pub concurrency: Option<Concurrency>,
}

/// The coming fire times of a schedule, and the zone its recurrence follows.
#[derive(Debug, Clone, PartialEq)]
pub struct Upcoming {
    pub zone: Tz,
    pub times: Vec<DateTime<Utc>>,
}

/// Schedules of every workspace, as the API uses them.
#[derive(Clone)]
pub struct Schedules {
    store: Arc<dyn Store>,
    pipelines: Pipelines,
    scheduler: SchedulerHandle,
}

/// A recurrence checked by core; its refusal, which names the rule, is a bad request.
fn compile(recurrence: &Recurrence, created: DateTime<Utc>) -> Result<Schedule, PipelineError> {
    recurrence
        .check(created)
        .map_err(|e| PipelineError::Invalid(e.to_string()))
}

/// The recurrence with its anchor written in: without a start time, the instant it was
/// checked at (its creation) is the anchor, and it must stay so whenever the recurrence is
/// read again, on whichever node.
fn anchored(mut recurrence: Recurrence, schedule: &Schedule) -> Recurrence {
    if recurrence.start_time.is_none() {
        recurrence.start_time = Some(schedule.anchor().fixed_offset());
    }
    recurrence
}

/// The first tick after `after` of an active schedule; none for a disabled one.
fn first_tick(schedule: &Schedule, status: ScheduleStatus, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    (status == ScheduleStatus::Active)
        .then(|| schedule.next_after(after))
        .flatten()
}

impl Schedules {
    pub fn new(store: Arc<dyn Store>, pipelines: Pipelines, scheduler: SchedulerHandle) -> Schedules {
        Schedules {
            store,
            pipelines,
            scheduler,
        }
    }

    /// Creates a time schedule named `name` at `now`.
    pub async fn create(
        &self,
        workspace: SourceId,
        name: &str,
        spec: ScheduleSpec,
        now: DateTime<Utc>,
    ) -> Result<PipelineSchedule, PipelineError> {
        if name.trim().is_empty() {
            return Err(PipelineError::Invalid("a schedule needs a name".to_owned()));
        }
        let schedule = compile(&spec.recurrence, now)?;
        let recurrence = anchored(spec.recurrence, &schedule);
        self.pipelines
            .check_parameters(workspace, &spec.pipeline_id, &spec.parameters)
            .await?;
        let new = NewSchedule {
            name: name.to_owned(),
            kind: ScheduleKind::Time,
            next_fire_at: first_tick(&schedule, spec.status, now),
            pipeline_id: spec.pipeline_id,
            experiment_name: spec.experiment_name,
            recurrence: Some(recurrence),
            watch: None,
            parameters: spec.parameters,
            continue_on_step_failure: spec.continue_on_step_failure,
            status: spec.status,
            misfire: spec.misfire,
            concurrency: spec.concurrency,
        };
        let created = self.store.create_schedule(workspace, new).await?;
        self.scheduler.wake();
        Ok(created)
    }

    pub async fn get(&self, workspace: SourceId, name: &str) -> Result<PipelineSchedule, PipelineError> {
        Ok(self.store.schedule(workspace, name).await?)
    }

    pub async fn list(
        &self,
        workspace: SourceId,
        filter: ScheduleFilter,
    ) -> Result<Vec<PipelineSchedule>, PipelineError> {
        Ok(self.store.list_schedules(workspace, filter).await?)
    }

    /// Changes a schedule (as it was read, when `if_match` names its etag). Its next tick
    /// is computed again, after `now` and after the last tick it fired, so a change never
    /// fires a tick twice; enabling a schedule does not fire the ticks it slept through
    /// while disabled.
    pub async fn update(
        &self,
        workspace: SourceId,
        name: &str,
        change: ScheduleChange,
        if_match: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<PipelineSchedule, PipelineError> {
        let current = self.store.schedule(workspace, name).await?;
        let kind = change.kind.unwrap_or(current.kind);
        // A new recurrence without a start time keeps the schedule's anchor.
        let recurrence = match (change.recurrence, &current.recurrence) {
            (Some(mut new), Some(old)) if new.start_time.is_none() => {
                new.start_time = old.start_time;
                Some(new)
            }
            (new, old) => new.or(old.clone()),
        };
        let status = change.status.unwrap_or(current.status);
        let parameters = change.parameters.unwrap_or(current.parameters.clone());
        let pipeline_id = change.pipeline_id.unwrap_or(current.pipeline_id.clone());
        let next_fire_at = match (&recurrence, kind) {
            (Some(recurrence), ScheduleKind::Time) => {
                let schedule = compile(recurrence, current.created_at)?;
                let after = current.last_fire_at.map_or(now, |last| last.max(now));
                first_tick(&schedule, status, after)
            }
            _ => None,
        };
        if status == ScheduleStatus::Active || pipeline_id != current.pipeline_id {
            self.pipelines
                .check_parameters(workspace, &pipeline_id, &parameters)
                .await?;
        }
        let new = NewSchedule {
            name: current.name.clone(),
            kind,
            pipeline_id,
            experiment_name: change.experiment_name.unwrap_or(current.experiment_name.clone()),
            recurrence,
            watch: current.watch.clone(),
            parameters,
            continue_on_step_failure: change
                .continue_on_step_failure
                .unwrap_or(current.continue_on_step_failure),
            status,
            misfire: change.misfire.unwrap_or(current.misfire),
            concurrency: change.concurrency.unwrap_or(current.concurrency),
            next_fire_at,
        };
        let updated = self.store.update_schedule(workspace, name, new, if_match).await?;
        self.scheduler.wake();
        Ok(updated)
    }

    pub async fn delete(&self, workspace: SourceId, name: &str, if_match: Option<String>) -> Result<(), PipelineError> {
        Ok(self.store.delete_schedule(workspace, name, if_match).await?)
    }

    /// The next `count` (at most [`MAX_UPCOMING`]) fire times after `now` of a time
    /// schedule, whether or not it is active.
    pub async fn upcoming(
        &self,
        workspace: SourceId,
        name: &str,
        count: usize,
        now: DateTime<Utc>,
    ) -> Result<Upcoming, PipelineError> {
        let current = self.store.schedule(workspace, name).await?;
        let Some(recurrence) = &current.recurrence else {
            return Err(PipelineError::Invalid(format!(
                "schedule `{name}` fires on changes, not at times: it has no fire times to show"
            )));
        };
        let schedule = compile(recurrence, current.created_at)?;
        Ok(Upcoming {
            zone: schedule.zone(),
            times: schedule.upcoming(now, count.min(MAX_UPCOMING)),
        })
    }

    /// The ticks a schedule handled, newest first.
    pub async fn fires(&self, workspace: SourceId, name: &str, limit: u32) -> Result<Vec<ScheduleFire>, PipelineError> {
        let current = self.store.schedule(workspace, name).await?;
        Ok(self.store.schedule_fires(&current.id, limit).await?)
    }
}
