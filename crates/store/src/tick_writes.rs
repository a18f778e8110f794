//! What recording a batch of ticks writes, decided once for both backends: why a tick's
//! run is refused, the rows of the runs the others start (their ids unique within the
//! batch), and what each schedule keeps of its latest tick. The backends read the
//! workspaces and pipelines that the refusals need, and write these rows.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use mlgrid_core::pipeline::progress::StepState;

use crate::error::{Result, StoreError};
use crate::lifecycle::NewRun;
use crate::lifecycle_writes::{check_start, run_id};
use crate::model::SourceId;
use crate::pipeline_writes::{check_submission, initial_states, new_pipeline_run, new_step_run};
use crate::pipelines::{NewPipelineRun, NewStep};
use crate::schedules::{FireOutcome, NewFire, ScheduleFire};

/// Why a run cannot start, in the words its tick records; `Err` when the store itself
/// failed, which no tick records.
pub(crate) fn refusal(error: StoreError) -> Result<String> {
    match error {
        StoreError::NotFound(what) => Ok(format!("{what} not found")),
        StoreError::Conflict(reason) | StoreError::Invalid(reason) => Ok(reason),
        other => Err(other),
    }
}

/// A tick whose run was refused: recorded as failed, with why.
pub(crate) fn failed(fire: NewFire, reason: String) -> NewFire {
    NewFire {
        outcome: FireOutcome::Failed,
        reason: Some(reason),
        ..fire
    }
}

/// A tick as it will be recorded.
pub(crate) struct TickPlan {
    pub workspace: SourceId,
    pub fire: NewFire,
    /// The run the tick records: the one it creates, or the earlier one its idempotency
    /// key names.
    pub run_id: Option<String>,
    /// The run to create, if the tick's record is new and no earlier run has its key.
    pub create: Option<RunRows>,
}

impl TickPlan {
    pub(crate) fn key(&self) -> (&str, DateTime<Utc>) {
        (&self.fire.schedule_id, self.fire.fire_time)
    }
}

/// The rows a started tick's run writes: the pipeline run, as a run and as itself, and
/// each of its steps with the step's run.
pub(crate) struct RunRows {
    pub new: NewPipelineRun,
    pub run_id: String,
    pub run: NewRun,
    pub steps: Vec<StepRows>,
}

pub(crate) struct StepRows {
    pub ordinal: i64,
    pub step: NewStep,
    pub state: StepState,
    pub run_id: String,
    pub run: NewRun,
}

impl RunRows {
    /// The rows of `new`'s run, checked as any submission is. Its id is none of `taken`,
    /// which it joins: ids made of the same experiment and millisecond differ only by 32
    /// random bits, which a batch of thousands could repeat.
    pub(crate) fn new(new: NewPipelineRun, taken: &mut HashSet<String>) -> Result<RunRows> {
        check_submission(&new)?;
        let run = new_pipeline_run(&new);
        check_start(&run)?;
        let run_id = loop {
            let id = run_id(&run);
            if taken.insert(id.clone()) {
                break id;
            }
        };
        let mut steps = Vec::with_capacity(new.steps.len());
        for (ordinal, (step, state)) in new.steps.iter().zip(initial_states(&new.steps)).enumerate() {
            let step_run = new_step_run(&new, &run_id, step, state);
            check_start(&step_run)?;
            steps.push(StepRows {
                ordinal: ordinal as i64,
                step: step.clone(),
                state,
                run_id: crate::lifecycle_writes::run_id(&step_run),
                run: step_run,
            });
        }
        Ok(RunRows {
            new,
            run_id,
            run,
            steps,
        })
    }
}

/// What a schedule keeps of its latest recorded tick of a batch.
#[derive(Debug, PartialEq)]
pub(crate) struct AfterFire {
    pub schedule_id: String,
    pub last_fire_at: DateTime<Utc>,
    /// The latest run its ticks of the batch started; none keeps the one before.
    pub last_run_id: Option<String>,
    pub last_error: Option<String>,
    /// The next tick is stored only while the schedule still has this etag.
    pub etag: String,
    pub next_fire_at: Option<DateTime<Utc>>,
}

/// Per schedule, what its ticks recorded now leave on it, as if each had been recorded
/// after the one before: `recorded` in the order of the batch.
pub(crate) fn after_fires<'a>(recorded: impl IntoIterator<Item = (&'a NewFire, &'a ScheduleFire)>) -> Vec<AfterFire> {
    let mut order = Vec::new();
    let mut by_schedule: HashMap<&str, AfterFire> = HashMap::new();
    for (new, fire) in recorded {
        let after = by_schedule.entry(&new.schedule_id).or_insert_with(|| {
            order.push(new.schedule_id.as_str());
            AfterFire {
                schedule_id: new.schedule_id.clone(),
                last_fire_at: fire.fire_time,
                last_run_id: None,
                last_error: None,
                etag: new.etag.clone(),
                next_fire_at: None,
            }
        });
        after.last_fire_at = fire.fire_time;
        if fire.run_id.is_some() {
            after.last_run_id = fire.run_id.clone();
        }
        after.last_error = fire.reason.clone();
        after.etag = new.etag.clone();
        after.next_fire_at = new.next_fire_at;
    }
    order
        .into_iter()
        .map(|id| {
            by_schedule
                .remove(id)
                .expect("each schedule in the order has its entry")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: u32) -> DateTime<Utc> {
        format!("2026-01-01T00:{minute:02}:00Z").parse().unwrap()
    }

    fn tick(schedule: &str, minute: u32, run: Option<&str>, reason: Option<&str>) -> (NewFire, ScheduleFire) {
        let new = NewFire {
            schedule_id: schedule.to_owned(),
            fire_time: at(minute),
            outcome: FireOutcome::Started,
            reason: None,
            next_fire_at: Some(at(minute + 1)),
            etag: "\"e\"".to_owned(),
        };
        let fire = ScheduleFire {
            schedule_id: schedule.to_owned(),
            fire_time: at(minute),
            outcome: FireOutcome::Started,
            run_id: run.map(str::to_owned),
            reason: reason.map(str::to_owned),
            path: None,
            recorded_at: at(minute),
        };
        (new, fire)
    }

    #[test]
    fn a_schedule_keeps_its_latest_tick_and_its_latest_run() {
        let ticks = [
            tick("a", 1, Some("run-1"), None),
            tick("b", 1, None, Some("skipped")),
            tick("a", 2, None, Some("skipped")),
        ];
        let after = after_fires(ticks.iter().map(|(new, fire)| (new, fire)));
        assert_eq!(after.len(), 2);
        assert_eq!(after[0].schedule_id, "a");
        assert_eq!(after[0].last_fire_at, at(2));
        assert_eq!(after[0].last_run_id.as_deref(), Some("run-1"));
        assert_eq!(after[0].last_error.as_deref(), Some("skipped"));
        assert_eq!(after[0].next_fire_at, Some(at(3)));
        assert_eq!(after[1].schedule_id, "b");
        assert_eq!(after[1].last_run_id, None);
    }

    #[test]
    fn only_store_failures_are_errors() {
        assert_eq!(
            refusal(StoreError::NotFound("pipeline `p`".into())).unwrap(),
            "pipeline `p` not found"
        );
        assert_eq!(refusal(StoreError::Conflict("disabled".into())).unwrap(), "disabled");
        assert!(refusal(StoreError::Closed).is_err());
    }
}
