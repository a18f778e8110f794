//! What the API asks of schedules: creating, changing, enabling and deleting them, each
//! checked whole before anything is written, and what they will fire next.
//!
//! A recurrence is checked by core (`Recurrence::check`, whose error names the rule
//! broken), a change schedule's watch here (a datastore of the workspace, a folder
//! inside it, a polling interval of at least a minute, a data-path parameter the
//! pipeline has), the parameters against the pipeline's definition as a submission
//! would be, and the first tick computed here; the store refuses what only it can tell
//! (a taken name, a disabled pipeline, a change of kind). Every change wakes the
//! scheduler and the watcher, so a first tick or poll that comes sooner than the one
//! they sleep until is not missed.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use mlgrid_core::schedule::{Concurrency, MisfirePolicy, Recurrence, Schedule};
use mlgrid_store::{
    ChangeWatch, NewSchedule, PipelineSchedule, ScheduleFilter, ScheduleFire, ScheduleKind, ScheduleStatus, SourceId,
    Store,
};

use crate::datastore::relative_prefix;
use crate::scheduler::SchedulerHandle;
use crate::service::{PipelineError, Pipelines};
use crate::watcher::WatcherHandle;

/// Most fire times `next` computes at once.
pub const MAX_UPCOMING: usize = 100;

/// The polling interval of a change schedule that does not give one: Azure ML's.
pub const DEFAULT_POLLING_SECONDS: u32 = 300;

/// What a change schedule watches, as a person writes it: all of it but the datastore
/// and the path may be left out (then defaults, or for an update what it was).
#[derive(Debug, Clone, Default)]
pub struct WatchSpec {
    pub datastore: Option<String>,
    /// A folder relative to the datastore's root.
    pub path: Option<String>,
    pub recursive: Option<bool>,
    pub polling_seconds: Option<u32>,
    pub data_path_parameter: Option<String>,
}

/// A schedule as a person writes it (all of it, for a create): a recurrence (a time
/// schedule) or a watch (a change schedule).
#[derive(Debug, Clone)]
pub struct ScheduleSpec {
    pub pipeline_id: String,
    pub experiment_name: String,
    pub recurrence: Option<Recurrence>,
    pub watch: Option<WatchSpec>,
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
    /// What of a change schedule's watch changes.
    pub watch: Option<WatchSpec>,
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
    watcher: WatcherHandle,
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
    pub fn new(
        store: Arc<dyn Store>,
        pipelines: Pipelines,
        scheduler: SchedulerHandle,
        watcher: WatcherHandle,
    ) -> Schedules {
        Schedules {
            store,
            pipelines,
            scheduler,
            watcher,
        }
    }

    fn wake(&self) {
        self.scheduler.wake();
        self.watcher.wake();
    }

    /// A change schedule's watch checked whole: `spec` over `current` (an update's
    /// schedule, if any), changes counting from `since`, or from `now` when it watches
    /// another folder than `current`.
    async fn watch(
        &self,
        workspace: SourceId,
        pipeline_id: &str,
        spec: WatchSpec,
        current: Option<&ChangeWatch>,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<ChangeWatch, PipelineError> {
        let invalid = |m: String| PipelineError::Invalid(m);
        let datastore = spec
            .datastore
            .or_else(|| current.map(|c| c.datastore.clone()))
            .ok_or_else(|| invalid("a change schedule needs a datastore (`datastore`, `--datastore`)".to_owned()))?;
        let path = spec.path.or_else(|| current.map(|c| c.path.clone())).ok_or_else(|| {
            invalid(
                "a change schedule needs the folder to watch (`pathOnDatastore`, `--path-on-datastore`; `.` for \
                     the datastore's root)"
                    .to_owned(),
            )
        })?;
        let folder = relative_prefix(&datastore, &path).map_err(|e| invalid(e.to_string()))?;
        let path = folder.to_string_lossy().into_owned();
        let polling_seconds = spec
            .polling_seconds
            .or(current.map(|c| c.polling_seconds))
            .unwrap_or(DEFAULT_POLLING_SECONDS);
        self.watcher.check_interval(polling_seconds).map_err(invalid)?;
        let datastores = self.pipelines.datastores(workspace).await?;
        datastores.get(&datastore).map_err(|e| invalid(e.to_string()))?;
        let data_path_parameter = spec
            .data_path_parameter
            .or_else(|| current.and_then(|c| c.data_path_parameter.clone()));
        if let Some(name) = &data_path_parameter {
            self.pipelines
                .check_data_path_parameter(workspace, pipeline_id, name)
                .await?;
        }
        let recursive = spec.recursive.or(current.map(|c| c.recursive)).unwrap_or(false);
        // Another folder is watched from now: what it holds already does not fire.
        let since = match current {
            Some(c) if c.datastore == datastore && c.path == path && c.recursive == recursive => since,
            _ => now,
        };
        Ok(ChangeWatch {
            datastore,
            path,
            recursive,
            polling_seconds,
            data_path_parameter,
            since,
        })
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
        self.pipelines
            .check_parameters(workspace, &spec.pipeline_id, &spec.parameters)
            .await?;
        let (kind, recurrence, watch, next_fire_at) = match (spec.recurrence, spec.watch) {
            (Some(recurrence), None) => {
                let schedule = compile(&recurrence, now)?;
                let next = first_tick(&schedule, spec.status, now);
                (ScheduleKind::Time, Some(anchored(recurrence, &schedule)), None, next)
            }
            (None, Some(watch)) => {
                let watch = self.watch(workspace, &spec.pipeline_id, watch, None, now, now).await?;
                (ScheduleKind::Change, None, Some(watch), None)
            }
            (Some(_), Some(_)) => {
                return Err(PipelineError::Invalid(
                    "a schedule fires at times (a recurrence: --frequency, --interval, ...) or on changes (a \
                     datastore path: --datastore, --path-on-datastore, ...), not both: give one of them"
                        .to_owned(),
                ));
            }
            (None, None) => {
                return Err(PipelineError::Invalid(
                    "a new schedule needs a recurrence (a time schedule: --frequency and --interval) or a \
                     datastore path (a change schedule: --datastore and --path-on-datastore)"
                        .to_owned(),
                ));
            }
        };
        let next_poll_at = (watch.is_some() && spec.status == ScheduleStatus::Active).then_some(now);
        let new = NewSchedule {
            name: name.to_owned(),
            kind,
            next_fire_at,
            next_poll_at,
            pipeline_id: spec.pipeline_id,
            experiment_name: spec.experiment_name,
            recurrence,
            watch,
            parameters: spec.parameters,
            continue_on_step_failure: spec.continue_on_step_failure,
            status: spec.status,
            misfire: spec.misfire,
            concurrency: spec.concurrency,
        };
        let created = self.store.create_schedule(workspace, new).await?;
        self.wake();
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
        // Naming what the other kind has asks for the other kind, which the store
        // refuses saying so.
        let kind = match (change.kind, &change.recurrence, &change.watch) {
            (Some(kind), _, _) => kind,
            (None, Some(_), None) => ScheduleKind::Time,
            (None, None, Some(_)) => ScheduleKind::Change,
            _ => current.kind,
        };
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
        let watch = match (kind, current.kind) {
            (ScheduleKind::Change, ScheduleKind::Change) => {
                // Enabling watches from now on: what changed while disabled does not fire.
                let since = if status == ScheduleStatus::Active && current.status == ScheduleStatus::Disabled {
                    now
                } else {
                    current.watch.as_ref().map_or(now, |w| w.since)
                };
                let spec = change.watch.unwrap_or_default();
                Some(
                    self.watch(workspace, &pipeline_id, spec, current.watch.as_ref(), since, now)
                        .await?,
                )
            }
            _ => None,
        };
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
            parameters,
            continue_on_step_failure: change
                .continue_on_step_failure
                .unwrap_or(current.continue_on_step_failure),
            status,
            misfire: change.misfire.unwrap_or(current.misfire),
            concurrency: change.concurrency.unwrap_or(current.concurrency),
            next_fire_at,
            // Polled at once after a change: a new folder's first poll, or the first after
            // enabling, records what is there.
            next_poll_at: (watch.is_some() && status == ScheduleStatus::Active).then_some(now),
            watch,
        };
        let updated = self.store.update_schedule(workspace, name, new, if_match).await?;
        self.wake();
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
                "schedule `{name}` is change-based: it fires when a file is added or changed in its datastore \
                 folder, not at times, so it has no fire times to show (`mlgrid schedule show` gives its last \
                 and next poll)"
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
