//! Published pipelines as the store keeps them: versioned definitions, named endpoints
//! whose default version can be switched, pipeline runs with their steps, and the steps'
//! claims (leases, like deliveries) so that a step runs on one node at a time.
//!
//! A pipeline run is a run of the lifecycle (`azureml.PipelineRun`) with one child run
//! per step (`azureml.StepRun`): their status changes raise `RunCompleted` and
//! `RunStatusChanged` through the same outbox as any run.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mlgrid_core::lifecycle::RunStatus;
use mlgrid_core::ml::Tags;
use mlgrid_core::pipeline::DataPath;
use mlgrid_core::pipeline::progress::StepState;

use crate::lifecycle::Run;
use crate::model::SourceId;

/// The run type of a pipeline run.
pub const PIPELINE_RUN_TYPE: &str = "azureml.PipelineRun";
/// The run type of a step's run.
pub const STEP_RUN_TYPE: &str = "azureml.StepRun";

/// A pipeline to publish: its YAML as given (already checked by core's
/// `Pipeline::parse`), under its name.
#[derive(Debug, Clone)]
pub struct NewPipeline {
    pub name: String,
    /// Without one, the next integer after the name's highest numeric version ("1" first).
    pub version: Option<String>,
    pub description: String,
    /// The YAML as published.
    pub definition: String,
}

/// A published pipeline: immutable but for `enabled`.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedPipeline {
    /// A UUID.
    pub id: String,
    pub name: String,
    pub version: String,
    pub description: String,
    pub definition: String,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub etag: String,
}

/// A stable name whose submissions go to its default pipeline.
#[derive(Debug, Clone)]
pub struct NewPipelineEndpoint {
    pub name: String,
    pub description: String,
    /// The first default: a pipeline of the same workspace.
    pub pipeline_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PipelineEndpoint {
    pub name: String,
    pub description: String,
    pub default_pipeline_id: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub etag: String,
}

/// A step of a run to create, as the definition gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewStep {
    pub name: String,
    pub depends_on: Vec<String>,
    /// Attempts after the first when it fails.
    pub retries: u32,
}

/// A pipeline run to create: the caller has checked the assignment against the
/// definition (core's `Pipeline::assign`) and resolved the data paths.
#[derive(Debug, Clone)]
pub struct NewPipelineRun {
    pub pipeline_id: String,
    pub experiment_name: String,
    pub description: Option<String>,
    pub tags: Tags,
    /// Every parameter's value (assigned or default), as JSON of its type.
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub data_paths: BTreeMap<String, DataPath>,
    pub continue_on_step_failure: bool,
    /// Who submitted it (`RunSource`: "SDK", "Schedule", "EventSubscription", ...).
    pub run_source: String,
    /// Makes submission idempotent: a second submission with the same key creates
    /// nothing and returns the first run (the pipeline destination uses the event id
    /// and the subscription).
    pub idempotency_key: Option<String>,
    pub steps: Vec<NewStep>,
}

/// What a submission did.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub run: Run,
    /// `false` when the idempotency key named an earlier run, which `run` is.
    pub created: bool,
}

/// A step of a pipeline run, as it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRun {
    pub name: String,
    /// The step's own run (`azureml.StepRun`, child of the pipeline run).
    pub run_id: String,
    pub state: StepState,
    pub depends_on: Vec<String>,
    /// Attempts started so far.
    pub attempts: u32,
    pub retries: u32,
    /// When its last dependency ended (or the run was submitted): the step's overhead
    /// is measured from here to its process start.
    pub ready_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    /// Hash of what determines its outputs (command, environment, parameters, inputs).
    pub reuse_key: Option<String>,
    /// The step run whose outputs it reused instead of running.
    pub reused_from: Option<String>,
    /// A person asked to cancel it while it ran.
    pub cancel_requested: bool,
}

/// A pipeline run with its assignment and its steps.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineRun {
    pub run: Run,
    pub pipeline_id: String,
    /// As submitted (a run has no description of its own).
    pub description: Option<String>,
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub data_paths: BTreeMap<String, DataPath>,
    pub continue_on_step_failure: bool,
    pub steps: Vec<StepRun>,
}

/// A step a node claimed: what the executor needs to run it.
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedStep {
    pub workspace: SourceId,
    pub pipeline_run_id: String,
    pub pipeline_id: String,
    pub experiment_name: String,
    pub step: StepRun,
    pub parameters: BTreeMap<String, serde_json::Value>,
    pub data_paths: BTreeMap<String, DataPath>,
    /// The lease's fencing token: finishing with another is refused.
    pub lease: u64,
}

/// How a step's attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StepOutcome {
    Completed {
        reuse_key: Option<String>,
        /// Outputs taken from this earlier step run instead of running.
        reused_from: Option<String>,
        /// When its process started (the claim's time stays when it has none).
        started_at: Option<DateTime<Utc>>,
    },
    /// Retried while it has retries left, else the step fails with `error`.
    Failed {
        error: String,
        exit_code: Option<i32>,
        started_at: Option<DateTime<Utc>>,
    },
    /// Cancelled while it ran (its process group was killed).
    Canceled { reason: String },
}

/// A step's end, with what it set in motion.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StepFinished {
    /// Steps the end made ready, already claimed by the same holder (so that the next
    /// step starts without waiting for a poll).
    pub claimed: Vec<ClaimedStep>,
    /// The pipeline run's final status, when this end finished it.
    pub run_finished: Option<RunStatus>,
    /// Whether the attempt failed and the step is ready again for its next attempt.
    pub retrying: bool,
}

/// A claim's terms: who holds it and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepClaim {
    pub holder: String,
    pub now: DateTime<Utc>,
    pub lease_until: DateTime<Utc>,
}
