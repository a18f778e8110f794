//! Schedules of published pipelines as the store keeps them, and the ticks they fired.
//!
//! A schedule is time-based (a recurrence, core's `schedule::Recurrence`) or, later,
//! change-based; its kind never changes. The store keeps each active time schedule's
//! next tick (`next_fire_at`), so the scheduler asks for the earliest one instead of
//! walking every schedule, and records every tick it handles keyed by (schedule, fire
//! time): a tick is recorded once, and a tick that starts a run submits it in the same
//! transaction ([`Store::record_fire`](crate::Store::record_fire)), so no crash or second
//! node can make a tick start two runs, or record a start without its run.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mlgrid_core::schedule::{Concurrency, MisfirePolicy, Recurrence};

use crate::error::{Result, StoreError};
use crate::model::SourceId;

/// What makes a schedule fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// A recurrence: fires at the times it gives.
    Time,
    /// Changes under a datastore path (not built yet: none is created).
    Change,
}

impl ScheduleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleKind::Time => "time",
            ScheduleKind::Change => "change",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<ScheduleKind> {
        match text {
            "time" => Ok(ScheduleKind::Time),
            "change" => Ok(ScheduleKind::Change),
            other => Err(StoreError::Corrupt(format!("schedule kind `{other}`"))),
        }
    }
}

/// Whether a schedule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleStatus {
    Active,
    Disabled,
}

impl ScheduleStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleStatus::Active => "Active",
            ScheduleStatus::Disabled => "Disabled",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<ScheduleStatus> {
        match text {
            "Active" => Ok(ScheduleStatus::Active),
            "Disabled" => Ok(ScheduleStatus::Disabled),
            other => Err(StoreError::Corrupt(format!("schedule status `{other}`"))),
        }
    }
}

/// A schedule to create, or what replaces one: the caller has checked the recurrence
/// (core's `Recurrence::check`) and computed its first tick.
#[derive(Debug, Clone, PartialEq)]
pub struct NewSchedule {
    pub name: String,
    pub kind: ScheduleKind,
    /// A pipeline of the same workspace.
    pub pipeline_id: String,
    pub experiment_name: String,
    /// Of a time schedule.
    pub recurrence: Option<Recurrence>,
    /// Values by parameter name, for every run it starts.
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub continue_on_step_failure: bool,
    pub status: ScheduleStatus,
    pub misfire: MisfirePolicy,
    pub concurrency: Concurrency,
    /// The next tick: none when the schedule is disabled, change-based, or past its end.
    pub next_fire_at: Option<DateTime<Utc>>,
}

/// A schedule as it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSchedule {
    pub workspace: SourceId,
    /// A UUID.
    pub id: String,
    pub name: String,
    pub kind: ScheduleKind,
    pub pipeline_id: String,
    pub experiment_name: String,
    pub recurrence: Option<Recurrence>,
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub continue_on_step_failure: bool,
    pub status: ScheduleStatus,
    pub misfire: MisfirePolicy,
    pub concurrency: Concurrency,
    pub next_fire_at: Option<DateTime<Utc>>,
    /// The latest tick handled (whatever its outcome).
    pub last_fire_at: Option<DateTime<Utc>>,
    /// The run the latest started tick submitted.
    pub last_run_id: Option<String>,
    /// Why the latest tick did not start a run, when it did not.
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Changes when a person changes the schedule, not when it fires.
    pub etag: String,
}

/// Which schedules a listing shows.
#[derive(Debug, Clone, Default)]
pub struct ScheduleFilter {
    /// Disabled ones too.
    pub include_disabled: bool,
    pub pipeline_id: Option<String>,
}

/// What a tick did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FireOutcome {
    /// It submitted a run.
    Started,
    /// The overlap policy dropped it.
    Skipped,
    /// The overlap policy kept it, to start when a run of the schedule ends.
    Queued,
    /// The submission was refused (the reason says why).
    Failed,
}

impl FireOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            FireOutcome::Started => "started",
            FireOutcome::Skipped => "skipped",
            FireOutcome::Queued => "queued",
            FireOutcome::Failed => "failed",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<FireOutcome> {
        match text {
            "started" => Ok(FireOutcome::Started),
            "skipped" => Ok(FireOutcome::Skipped),
            "queued" => Ok(FireOutcome::Queued),
            "failed" => Ok(FireOutcome::Failed),
            other => Err(StoreError::Corrupt(format!("fire outcome `{other}`"))),
        }
    }
}

/// A tick to record.
#[derive(Debug, Clone, PartialEq)]
pub struct NewFire {
    pub schedule_id: String,
    pub fire_time: DateTime<Utc>,
    pub outcome: FireOutcome,
    pub reason: Option<String>,
    /// The schedule's next tick after this one. It is stored only while the schedule
    /// still has `etag`: a person's change in between computed its own.
    pub next_fire_at: Option<DateTime<Utc>>,
    pub etag: String,
}

/// A tick as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleFire {
    pub schedule_id: String,
    pub fire_time: DateTime<Utc>,
    pub outcome: FireOutcome,
    pub run_id: Option<String>,
    pub reason: Option<String>,
    pub recorded_at: DateTime<Utc>,
}

/// What recording a tick did.
#[derive(Debug, Clone, PartialEq)]
pub struct FireRecorded {
    pub fire: ScheduleFire,
    /// `false` when the tick was recorded before (by another node, or before a crash):
    /// `fire` is that record, and nothing was submitted now.
    pub recorded: bool,
}

/// What a batch of [`Store::prune_fires`](crate::Store::prune_fires) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PrunedFires {
    /// Ticks deleted.
    pub fires: u64,
    /// The last schedule the batch walked, to walk on from; `None` when no schedule
    /// follows it (the walk starts again from the first).
    pub walked_to: Option<String>,
}

/// A queued tick of an active schedule, to start when the schedule has room.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedFire {
    pub schedule: PipelineSchedule,
    pub fire_time: DateTime<Utc>,
}

pub(crate) fn missing_schedule(name: &str) -> StoreError {
    StoreError::NotFound(format!("schedule `{name}`"))
}

pub(crate) fn schedule_taken(name: &str) -> String {
    format!("schedule `{name}` already exists in this workspace (names ignore case); update it, or choose another name")
}

/// A schedule's kind is what it is: a time schedule cannot become change-based.
pub(crate) fn check_same_kind(current: &PipelineSchedule, new: &NewSchedule) -> Result<()> {
    if current.kind != new.kind {
        return Err(StoreError::Conflict(format!(
            "schedule `{}` is {}-based and cannot become {}-based: delete it and create a {}-based schedule",
            current.name,
            current.kind.as_str(),
            new.kind.as_str(),
            new.kind.as_str()
        )));
    }
    Ok(())
}

/// Why a pipeline cannot be disabled: active schedules start it.
pub(crate) fn used_by_schedules(pipeline_id: &str, names: &[String]) -> StoreError {
    StoreError::Conflict(format!(
        "pipeline `{pipeline_id}` cannot be disabled while active schedules use it: {}; disable or delete them \
         first (`mlgrid schedule disable --workspace W --name N`)",
        names.join(", ")
    ))
}

/// A run status that is not over, as the run rows keep it: a schedule's runs in these
/// count against its `max_concurrent`.
pub(crate) const ENDED_RUN_STATUSES: &str = "('Completed', 'Failed', 'Canceled')";

/// A policy as its column keeps it: its lowercase name, as serde writes it.
pub(crate) fn policy_text(policy: &impl serde::Serialize) -> String {
    match serde_json::to_value(policy) {
        Ok(serde_json::Value::String(name)) => name,
        _ => unreachable!("policies serialise as their names"),
    }
}

pub(crate) fn recurrence_text(recurrence: Option<&Recurrence>) -> Option<String> {
    recurrence.map(|r| serde_json::to_string(r).expect("a recurrence serialises"))
}
