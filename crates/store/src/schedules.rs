//! Schedules of published pipelines as the store keeps them, and the ticks they fired.
//!
//! A schedule is time-based (a recurrence, core's `schedule::Recurrence`) or
//! change-based (a [`ChangeWatch`] on a datastore folder); its kind never changes. The store keeps each active time schedule's
//! next tick (`next_fire_at`), so the scheduler asks for the earliest one instead of
//! walking every schedule, and records every tick it handles keyed by (schedule, fire
//! time): a tick is recorded once, and a tick that starts a run submits it in the same
//! transaction ([`Store::record_fires`](crate::Store::record_fires)), so no crash or second
//! node can make a tick start two runs, or record a start without its run.
//!
//! A change schedule's watcher keeps every object it has seen with the version it saw
//! ([`SeenObject`]); a change is recorded by moving that row from the version the
//! watcher read to the new one, in the transaction that starts the change's run
//! ([`Store::record_change`](crate::Store::record_change)): a change fires once, and a
//! change made while no node watched is found by the next poll.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mlgrid_core::schedule::{Concurrency, MisfirePolicy, Recurrence};

use crate::error::{Result, StoreError};
use crate::model::SourceId;
use crate::pipelines::NewPipelineRun;

/// What makes a schedule fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduleKind {
    /// A recurrence: fires at the times it gives.
    Time,
    /// Files added or changed in a datastore folder: fires once per change.
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

/// What a change-based schedule watches, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeWatch {
    /// A datastore of the schedule's workspace.
    pub datastore: String,
    /// A folder relative to the datastore's root (`""` for the root), checked by the
    /// caller to stay inside it.
    pub path: String,
    /// Files in subfolders count too (Azure ML watches the folder itself only).
    pub recursive: bool,
    /// How often the folder is listed.
    pub polling_seconds: u32,
    /// The pipeline's data-path parameter that gets the changed file, if any.
    pub data_path_parameter: Option<String>,
    /// Changes count from this instant: its creation, or when it was last enabled or
    /// pointed at another folder. The first poll after it records older files as seen
    /// without firing.
    pub since: DateTime<Utc>,
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
    /// Of a change schedule.
    pub watch: Option<ChangeWatch>,
    /// Values by parameter name, for every run it starts.
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub continue_on_step_failure: bool,
    pub status: ScheduleStatus,
    pub misfire: MisfirePolicy,
    pub concurrency: Concurrency,
    /// The next tick: none when the schedule is disabled, change-based, or past its end.
    pub next_fire_at: Option<DateTime<Utc>>,
    /// The next poll of an active change schedule (none for the others).
    pub next_poll_at: Option<DateTime<Utc>>,
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
    pub watch: Option<ChangeWatch>,
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub continue_on_step_failure: bool,
    pub status: ScheduleStatus,
    pub misfire: MisfirePolicy,
    pub concurrency: Concurrency,
    pub next_fire_at: Option<DateTime<Utc>>,
    /// When a change schedule's folder was last listed (whether or not it could be).
    pub last_poll_at: Option<DateTime<Utc>>,
    /// When an active change schedule is polled next.
    pub next_poll_at: Option<DateTime<Utc>>,
    /// Polls of a change schedule failed in a row (the datastore could not be listed).
    pub poll_failures: u32,
    /// The latest tick handled (whatever its outcome).
    pub last_fire_at: Option<DateTime<Utc>>,
    /// The run the latest started tick submitted.
    pub last_run_id: Option<String>,
    /// Why the latest tick did not start a run, when it did not; for a change schedule
    /// also why its latest poll failed.
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

/// A tick to record in its schedule's workspace, with the run it starts, if any (see
/// [`Store::record_fires`](crate::Store::record_fires)).
#[derive(Debug, Clone)]
pub struct NewTick {
    pub workspace: SourceId,
    pub fire: NewFire,
    pub run: Option<NewPipelineRun>,
}

/// A tick as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleFire {
    pub schedule_id: String,
    pub fire_time: DateTime<Utc>,
    pub outcome: FireOutcome,
    pub run_id: Option<String>,
    pub reason: Option<String>,
    /// The file a change fired for (none for a time schedule's tick).
    pub path: Option<String>,
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

/// An object a watcher has seen, as it saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenObject {
    /// Relative to the datastore's root, `/`-separated.
    pub path: String,
    /// The object's e-tag, or its last-modified time and size when it has none: what
    /// tells one content from the next.
    pub version: String,
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

/// A change a watcher found, to record with the run it starts (or why it starts none).
#[derive(Debug, Clone, PartialEq)]
pub struct NewChange {
    pub schedule_id: String,
    /// The version the watcher read before this change: none for a file it never saw.
    /// The change is recorded only if the row still has it (compare and set).
    pub previous: Option<String>,
    pub seen: SeenObject,
    /// When it was found: the fire time of its record, unique within the schedule.
    pub fire_time: DateTime<Utc>,
    /// `Started` (with a run) or `Failed` (with the reason).
    pub outcome: FireOutcome,
    pub reason: Option<String>,
}

/// What recording a change did.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeRecorded {
    /// The record, when this call made it; `None` when the seen row no longer had the
    /// version read (another node, or an earlier pass, recorded the change): nothing was
    /// submitted then.
    pub fire: Option<ScheduleFire>,
}

/// How a poll of a change schedule or a datastore watch went.
#[derive(Debug, Clone, PartialEq)]
pub struct PollDone {
    /// The change schedule's or the datastore watch's id.
    pub watcher_id: String,
    pub polled_at: DateTime<Utc>,
    pub next_poll_at: DateTime<Utc>,
    /// Why the folder could not be listed (kept as the schedule's last error), or what
    /// the poll could not do in full; `None` clears the last error.
    pub error: Option<String>,
    /// Polls failed in a row, this one included (0 after a poll that listed).
    pub failures: u32,
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

/// A schedule's change-watch columns as both backends write them: empty for a time
/// schedule.
pub(crate) struct WatchColumns {
    pub datastore: Option<String>,
    pub path: Option<String>,
    pub recursive: bool,
    pub polling_seconds: Option<i64>,
    pub data_path_parameter: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub next_poll_at: Option<DateTime<Utc>>,
}

pub(crate) fn watch_columns(new: &NewSchedule) -> WatchColumns {
    let watch = new.watch.as_ref();
    WatchColumns {
        datastore: watch.map(|w| w.datastore.clone()),
        path: watch.map(|w| w.path.clone()),
        recursive: watch.is_some_and(|w| w.recursive),
        polling_seconds: watch.map(|w| i64::from(w.polling_seconds)),
        data_path_parameter: watch.and_then(|w| w.data_path_parameter.clone()),
        since: watch.map(|w| w.since),
        next_poll_at: watch.and(new.next_poll_at),
    }
}
