//! What the pipeline writes decide, once for both backends: versions, the checks, the
//! runs a submission starts, and how an attempt's end, the progress rules (core's
//! `pipeline::progress`) and a cancellation change a run's loaded steps. The backends
//! read, lock and write the rows around these, and move the runs through the lifecycle's
//! run changes, so that every status change raises its event in the same transaction.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use mlgrid_core::lifecycle::RunStatus;
use mlgrid_core::ml::Tags;
use mlgrid_core::pipeline::progress::{Progress, StepNode, StepState, progress};

use crate::error::{Result, StoreError};
use crate::etag::check_etag;
use crate::lifecycle::{NewRun, Run};
use crate::model::SourceId;
use crate::pipelines::*;

/// The run property saying who submitted a pipeline run (its `RunSource`).
const RUN_SOURCE: &str = "azureml.runsource";
/// The run property naming the pipeline a pipeline run or a step's run belongs to.
const PIPELINE_ID: &str = "azureml.pipelineid";
/// The run property naming the step a step's run runs.
const STEP_NAME: &str = "azureml.stepname";

/// The version a publication gets: the one given, or the next integer after the
/// highest numeric version among `taken` ("1" first); other versions do not count.
pub(crate) fn pipeline_version(given: Option<&str>, taken: &[String]) -> Result<String> {
    match given {
        Some(version) if version.trim().is_empty() => Err(StoreError::Invalid(
            "a pipeline version cannot be empty; give one, or leave it out to get the next number".to_owned(),
        )),
        Some(version) => Ok(version.to_owned()),
        None => {
            let highest = taken.iter().filter_map(|v| v.parse::<u64>().ok()).max().unwrap_or(0);
            Ok(highest.saturating_add(1).to_string())
        }
    }
}

/// Why a publication is refused: its name and version are taken.
pub(crate) fn version_taken(name: &str, version: &str) -> String {
    format!(
        "pipeline `{name}` version {version} is published already; publish under another version, or leave \
         the version out to get the next one"
    )
}

pub(crate) fn missing_pipeline(id: &str) -> StoreError {
    StoreError::NotFound(format!("pipeline `{id}`"))
}

pub(crate) fn missing_endpoint(name: &str) -> StoreError {
    StoreError::NotFound(format!("pipeline endpoint `{name}`"))
}

pub(crate) fn missing_pipeline_run(run_id: &str) -> StoreError {
    StoreError::NotFound(format!("pipeline run `{run_id}`"))
}

pub(crate) fn missing_step(step_run_id: &str) -> StoreError {
    StoreError::NotFound(format!("step run `{step_run_id}`"))
}

pub(crate) fn endpoint_taken(name: &str) -> String {
    format!("pipeline endpoint `{name}` already exists; point it at another pipeline, or choose another name")
}

/// Why a disabled pipeline refuses a submission, and how to enable it; `workspace` is
/// the workspace's name.
pub(crate) fn disabled(pipeline: &PublishedPipeline, workspace: &str) -> StoreError {
    StoreError::Conflict(format!(
        "pipeline `{}` version {} (id {}) is disabled: enable it with `mlgrid pipeline enable --workspace \
         {workspace} --id {}`",
        pipeline.name, pipeline.version, pipeline.id, pipeline.id
    ))
}

/// A run without steps would end as it starts.
pub(crate) fn check_submission(new: &NewPipelineRun) -> Result<()> {
    if new.steps.is_empty() {
        return Err(StoreError::Invalid("a pipeline run needs at least one step".to_owned()));
    }
    Ok(())
}

/// The pipeline run as a run: queued, tagged as submitted, with the submitter and the
/// pipeline among its properties (its events carry them).
pub(crate) fn new_pipeline_run(new: &NewPipelineRun) -> NewRun {
    NewRun {
        experiment_name: new.experiment_name.clone(),
        run_id: None,
        run_type: Some(PIPELINE_RUN_TYPE.to_owned()),
        parent_run_id: None,
        status: RunStatus::Queued,
        tags: new.tags.clone(),
        properties: Tags::from([
            (RUN_SOURCE.to_owned(), new.run_source.clone()),
            (PIPELINE_ID.to_owned(), new.pipeline_id.clone()),
        ]),
    }
}

/// Where each step of a new run starts: the rules applied to steps all waiting, so that
/// those without dependencies are ready.
pub(crate) fn initial_states(steps: &[NewStep]) -> Vec<StepState> {
    let nodes: Vec<StepNode> = steps
        .iter()
        .map(|s| StepNode {
            name: s.name.clone(),
            depends_on: s.depends_on.clone(),
            state: StepState::Waiting,
        })
        .collect();
    let progress = progress(&nodes, false);
    steps
        .iter()
        .map(|s| progress.changes.get(&s.name).copied().unwrap_or(StepState::Waiting))
        .collect()
}

/// A step's run: a child of the pipeline run named after it, in the status of the
/// step's first state.
pub(crate) fn new_step_run(new: &NewPipelineRun, pipeline_run_id: &str, step: &NewStep, state: StepState) -> NewRun {
    NewRun {
        experiment_name: new.experiment_name.clone(),
        run_id: Some(format!("{pipeline_run_id}_{}", step.name)),
        run_type: Some(STEP_RUN_TYPE.to_owned()),
        parent_run_id: Some(pipeline_run_id.to_owned()),
        status: state.run_status(),
        tags: Tags::new(),
        properties: Tags::from([
            (PIPELINE_ID.to_owned(), new.pipeline_id.clone()),
            (STEP_NAME.to_owned(), step.name.clone()),
        ]),
    }
}

/// The index of a run's step with this run id.
pub(crate) fn step_index(steps: &[StepRun], step_run_id: &str) -> Result<usize> {
    steps
        .iter()
        .position(|s| s.run_id == step_run_id)
        .ok_or_else(|| missing_step(step_run_id))
}

/// A step's lease is its attempt's: only the holder of the latest claim may end it.
pub(crate) fn lease_of(step: &StepRun) -> u64 {
    u64::from(step.attempts)
}

/// Refuses to record the end of an attempt whose lease is no longer the step's (it
/// expired and the step was recovered, or claimed again).
pub(crate) fn check_lease(step: &StepRun, pipeline_run_id: &str, lease: u64) -> Result<()> {
    if step.state == StepState::Running && lease_of(step) == lease {
        return Ok(());
    }
    Err(StoreError::Conflict(format!(
        "step `{}` of pipeline run `{pipeline_run_id}` is no longer held with lease {lease} (it is {} after {} \
         attempts): its lease ran out and another node recovered or claimed it; drop this attempt's result",
        step.name, step.state, step.attempts
    )))
}

/// Records how an attempt ended on its step, `at`; returns whether the step is ready
/// again for another attempt (a failure with retries left, unless a person asked to
/// cancel it). A retried step's run stays Running: a run never goes back to Queued, and
/// it ends once, with the step's last attempt.
pub(crate) fn record_outcome(step: &mut StepRun, outcome: StepOutcome, at: DateTime<Utc>) -> bool {
    match outcome {
        StepOutcome::Completed {
            reuse_key,
            reused_from,
            started_at,
        } => {
            step.started_at = started_at.or(step.started_at);
            step.state = StepState::Completed;
            step.reuse_key = reuse_key;
            step.reused_from = reused_from;
            step.exit_code = None;
            step.error = None;
        }
        StepOutcome::Failed {
            error,
            exit_code,
            started_at,
        } => {
            step.started_at = started_at.or(step.started_at);
            step.error = Some(error);
            step.exit_code = exit_code;
            if step.attempts <= step.retries && !step.cancel_requested {
                step.state = StepState::Ready;
                step.ready_at = Some(at);
                return true;
            }
            step.state = StepState::Failed;
        }
        StepOutcome::Canceled { reason } => {
            step.state = StepState::Canceled;
            step.error = Some(reason);
        }
    }
    step.finished_at = Some(at);
    false
}

/// Applies the progress rules to a run's steps, `at`: the steps they change take their
/// new state (ready ones from now, skipped and cancelled ones end now).
pub(crate) fn advance(steps: &mut [StepRun], continue_on_step_failure: bool, at: DateTime<Utc>) -> Progress {
    let nodes: Vec<StepNode> = steps
        .iter()
        .map(|s| StepNode {
            name: s.name.clone(),
            depends_on: s.depends_on.clone(),
            state: s.state,
        })
        .collect();
    let progress = progress(&nodes, continue_on_step_failure);
    for step in steps.iter_mut() {
        if let Some(state) = progress.changes.get(&step.name) {
            step.state = *state;
            if *state == StepState::Ready {
                step.ready_at = Some(at);
            } else {
                step.finished_at = Some(at);
            }
        }
    }
    progress
}

/// Cancels a run's steps, `at`: those not started end now, with `reason`; those running
/// are asked to stop (their holder learns it when renewing). Returns the indices of the
/// steps it changed.
pub(crate) fn cancel_steps(steps: &mut [StepRun], reason: &str, at: DateTime<Utc>) -> Vec<usize> {
    let mut changed = Vec::new();
    for (index, step) in steps.iter_mut().enumerate() {
        match step.state {
            StepState::Waiting | StepState::Ready => {
                step.state = StepState::Canceled;
                step.error = Some(reason.to_owned());
                step.finished_at = Some(at);
            }
            StepState::Running if !step.cancel_requested => step.cancel_requested = true,
            _ => continue,
        }
        changed.push(index);
    }
    changed
}

/// The runs that claimed steps start (theirs and their pipeline runs'), each once, in
/// one order whatever the node: claims lock them in this order, so that two nodes'
/// claims never wait for each other in a circle.
pub(crate) fn runs_started(claimed: &[ClaimedStep]) -> BTreeSet<(SourceId, String)> {
    claimed
        .iter()
        .flat_map(|c| {
            [
                (c.workspace, c.step.run_id.clone()),
                (c.workspace, c.pipeline_run_id.clone()),
            ]
        })
        .collect()
}

/// A pipeline run may be cancelled until it ends, and only as it was read when
/// `if_match` names its etag.
pub(crate) fn check_cancelable(run: &Run, if_match: Option<&str>) -> Result<()> {
    check_etag(&format!("run `{}`", run.run_id), &run.etag, if_match)?;
    if run.status.is_terminal() {
        return Err(StoreError::Conflict(format!(
            "pipeline run `{}` has ended ({}); there is nothing to cancel",
            run.run_id, run.status
        )));
    }
    Ok(())
}

/// What a step's run records of its step's end: the step's error once it failed or was
/// cancelled.
pub(crate) fn step_run_error(step: &StepRun) -> Option<String> {
    matches!(step.state, StepState::Failed | StepState::Canceled)
        .then(|| step.error.clone())
        .flatten()
}

/// Why a pipeline run ended `status`: its first step that ended that way, and why.
pub(crate) fn run_end_error(steps: &[StepRun], status: RunStatus) -> Option<String> {
    let state = match status {
        RunStatus::Failed => StepState::Failed,
        RunStatus::Canceled => StepState::Canceled,
        _ => return None,
    };
    let step = steps.iter().find(|s| s.state == state)?;
    Some(format!(
        "step `{}` {}: {}",
        step.name,
        state.as_str().to_lowercase(),
        step.error.as_deref().unwrap_or("no reason given")
    ))
}

/// A parameter or data path assignment as its column keeps it.
pub(crate) fn json(value: &impl serde::Serialize) -> String {
    serde_json::to_string(value).expect("maps of strings and JSON values serialise")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &str, deps: &[&str], state: StepState) -> StepRun {
        StepRun {
            name: name.into(),
            run_id: format!("pr_{name}"),
            state,
            depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
            attempts: 0,
            retries: 0,
            ready_at: None,
            started_at: None,
            finished_at: None,
            exit_code: None,
            error: None,
            reuse_key: None,
            reused_from: None,
            cancel_requested: false,
        }
    }

    #[test]
    fn versions_follow_the_highest_number() {
        let taken = ["1".to_owned(), "7".to_owned(), "beta".to_owned()];
        assert_eq!(pipeline_version(None, &[]).unwrap(), "1");
        assert_eq!(pipeline_version(None, &taken).unwrap(), "8");
        assert_eq!(pipeline_version(Some("rc"), &taken).unwrap(), "rc");
        assert!(pipeline_version(Some(" "), &taken).is_err());
    }

    #[test]
    fn a_failure_retries_while_retries_are_left_and_no_cancellation_was_asked() {
        let failed = || StepOutcome::Failed {
            error: "boom".into(),
            exit_code: Some(1),
            started_at: None,
        };
        let mut s = StepRun {
            attempts: 1,
            retries: 1,
            ..step("a", &[], StepState::Running)
        };
        assert!(record_outcome(&mut s, failed(), Utc::now()));
        assert_eq!(s.state, StepState::Ready);
        s.attempts = 2;
        assert!(!record_outcome(&mut s, failed(), Utc::now()));
        assert_eq!((s.state, s.exit_code), (StepState::Failed, Some(1)));
        let mut asked = StepRun {
            attempts: 1,
            retries: 3,
            cancel_requested: true,
            ..step("b", &[], StepState::Running)
        };
        assert!(!record_outcome(&mut asked, failed(), Utc::now()));
    }

    #[test]
    fn cancelling_ends_what_has_not_started_and_asks_the_rest() {
        let mut steps = [
            step("a", &[], StepState::Completed),
            step("b", &[], StepState::Running),
            step("c", &["a"], StepState::Ready),
            step("d", &["c"], StepState::Waiting),
        ];
        assert_eq!(cancel_steps(&mut steps, "stop", Utc::now()), [1, 2, 3]);
        assert!(steps[1].cancel_requested && steps[1].state == StepState::Running);
        assert_eq!(steps[3].error.as_deref(), Some("stop"));
        assert_eq!(
            run_end_error(&steps, RunStatus::Canceled).as_deref(),
            Some("step `c` canceled: stop")
        );
    }
}
