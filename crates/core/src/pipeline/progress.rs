//! How a pipeline run moves on: which steps a step's end makes ready, which it skips or
//! cancels, and when the run itself ends, with which status. The stores apply these rules
//! inside the transaction that records the step's end, so that every node agrees.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::lifecycle::RunStatus;

/// Where a step of a pipeline run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StepState {
    /// Some step it depends on has not completed.
    Waiting,
    /// Every step it depends on completed: a node may claim it.
    Ready,
    /// A node runs it (under a lease).
    Running,
    Completed,
    Failed,
    /// Cancelled by a person, or never started because another step failed.
    Canceled,
    /// Not run because a step it depends on did not complete (with
    /// `continue_on_step_failure`, the steps that do not depend on it go on).
    Skipped,
}

impl StepState {
    pub const ALL: [StepState; 7] = [
        StepState::Waiting,
        StepState::Ready,
        StepState::Running,
        StepState::Completed,
        StepState::Failed,
        StepState::Canceled,
        StepState::Skipped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepState::Waiting => "Waiting",
            StepState::Ready => "Ready",
            StepState::Running => "Running",
            StepState::Completed => "Completed",
            StepState::Failed => "Failed",
            StepState::Canceled => "Canceled",
            StepState::Skipped => "Skipped",
        }
    }

    /// Whether the step will not change again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            StepState::Completed | StepState::Failed | StepState::Canceled | StepState::Skipped
        )
    }

    /// The status of the step's run (`azureml.StepRun`) in this state.
    pub fn run_status(self) -> RunStatus {
        match self {
            StepState::Waiting | StepState::Skipped => RunStatus::NotStarted,
            StepState::Ready => RunStatus::Queued,
            StepState::Running => RunStatus::Running,
            StepState::Completed => RunStatus::Completed,
            StepState::Failed => RunStatus::Failed,
            StepState::Canceled => RunStatus::Canceled,
        }
    }
}

impl fmt::Display for StepState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepState {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StepState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown step state `{s}`"))
    }
}

/// A step of a run as the rules see it: its name, the steps it waits for, its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepNode {
    pub name: String,
    pub depends_on: Vec<String>,
    pub state: StepState,
}

/// The changes the rules make to a run's steps, and the run's end if it has come.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Steps whose state changes, to their new state.
    pub changes: BTreeMap<String, StepState>,
    /// The run's final status, once no step can change any more.
    pub finished: Option<RunStatus>,
}

impl Progress {
    /// The steps that became ready.
    pub fn ready(&self) -> impl Iterator<Item = &str> {
        self.changes
            .iter()
            .filter(|(_, state)| **state == StepState::Ready)
            .map(|(name, _)| name.as_str())
    }
}

/// Applies the rules to a run's steps as they are now:
/// - a waiting step whose dependencies all completed becomes ready;
/// - a waiting step with a dependency that failed, was skipped or was cancelled is skipped;
/// - once a step has failed, without `continue_on_step_failure` no other step starts: the
///   waiting and ready ones are cancelled (running ones end on their own);
/// - when no step is waiting, ready or running, the run ends: Completed if every step
///   completed, Failed if one failed, Canceled otherwise.
///
/// The rules reach a fixed point in one call: a skip that makes another step skippable is
/// applied too.
pub fn progress(steps: &[StepNode], continue_on_step_failure: bool) -> Progress {
    let mut state: BTreeMap<&str, StepState> = steps.iter().map(|s| (s.name.as_str(), s.state)).collect();
    let mut changes = BTreeMap::new();
    let failed = steps.iter().any(|s| s.state == StepState::Failed);
    let stop_all = failed && !continue_on_step_failure;
    loop {
        let mut changed = false;
        for step in steps {
            let now = state[step.name.as_str()];
            let next = match now {
                StepState::Ready if stop_all => StepState::Canceled,
                StepState::Waiting if stop_all => StepState::Canceled,
                StepState::Waiting => {
                    let deps: Vec<StepState> = step
                        .depends_on
                        .iter()
                        .map(|d| state.get(d.as_str()).copied().unwrap_or(StepState::Completed))
                        .collect();
                    if deps.iter().all(|d| *d == StepState::Completed) {
                        StepState::Ready
                    } else if deps.iter().any(|d| d.is_final() && *d != StepState::Completed) {
                        StepState::Skipped
                    } else {
                        now
                    }
                }
                _ => now,
            };
            if next != now {
                state.insert(step.name.as_str(), next);
                changes.insert(step.name.clone(), next);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let finished = state.values().all(|s| s.is_final()).then(|| {
        if state.values().all(|s| *s == StepState::Completed) {
            RunStatus::Completed
        } else if state.values().any(|s| *s == StepState::Failed) {
            RunStatus::Failed
        } else {
            RunStatus::Canceled
        }
    });
    Progress { changes, finished }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, deps: &[&str], state: StepState) -> StepNode {
        StepNode {
            name: name.into(),
            depends_on: deps.iter().map(|d| (*d).to_owned()).collect(),
            state,
        }
    }

    use StepState::*;

    #[test]
    fn a_completed_step_readies_the_steps_that_waited_for_it_alone() {
        let steps = [
            node("prep", &[], Completed),
            node("train", &["prep"], Waiting),
            node("eval", &["train"], Waiting),
        ];
        let p = progress(&steps, false);
        assert_eq!(p.ready().collect::<Vec<_>>(), ["train"]);
        assert_eq!(p.changes.len(), 1);
        assert_eq!(p.finished, None);
    }

    #[test]
    fn a_step_waits_for_every_dependency() {
        let steps = [
            node("a", &[], Completed),
            node("b", &[], Running),
            node("join", &["a", "b"], Waiting),
        ];
        assert_eq!(progress(&steps, false), Progress::default());
    }

    #[test]
    fn a_failure_cancels_what_has_not_started_and_lets_running_steps_end() {
        let steps = [
            node("a", &[], Failed),
            node("b", &[], Running),
            node("c", &[], Ready),
            node("d", &["a"], Waiting),
        ];
        let p = progress(&steps, false);
        assert_eq!(
            p.changes,
            BTreeMap::from([("c".into(), Canceled), ("d".into(), Canceled)])
        );
        assert_eq!(p.finished, None, "b still runs");
        let ended = [
            node("a", &[], Failed),
            node("b", &[], Completed),
            node("c", &[], Canceled),
            node("d", &["a"], Canceled),
        ];
        assert_eq!(progress(&ended, false).finished, Some(RunStatus::Failed));
    }

    #[test]
    fn continuing_on_failure_skips_only_what_depends_on_the_failed_step() {
        let steps = [
            node("a", &[], Failed),
            node("after_a", &["a"], Waiting),
            node("after_after_a", &["after_a"], Waiting),
            node("b", &[], Completed),
            node("after_b", &["b"], Waiting),
        ];
        let p = progress(&steps, true);
        assert_eq!(
            p.changes,
            BTreeMap::from([
                ("after_a".into(), Skipped),
                ("after_after_a".into(), Skipped),
                ("after_b".into(), Ready),
            ])
        );
        assert_eq!(p.finished, None);
    }

    #[test]
    fn the_run_ends_with_the_status_its_steps_earned() {
        let all = |state| [node("a", &[], Completed), node("b", &["a"], state)];
        assert_eq!(progress(&all(Completed), false).finished, Some(RunStatus::Completed));
        assert_eq!(progress(&all(Failed), true).finished, Some(RunStatus::Failed));
        assert_eq!(progress(&all(Canceled), false).finished, Some(RunStatus::Canceled));
        assert_eq!(progress(&all(Running), false).finished, None);
    }

    #[test]
    fn states_read_back_from_their_names() {
        for state in StepState::ALL {
            assert_eq!(state.as_str().parse::<StepState>(), Ok(state));
        }
        assert!("Done".parse::<StepState>().is_err());
    }
}
