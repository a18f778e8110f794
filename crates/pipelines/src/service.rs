//! What the API asks of pipelines: publishing a definition, submitting a run (checked
//! whole before anything is created), cancelling one, reading a step's log.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use mlgrid_core::ml::Tags;
use mlgrid_core::pipeline::{DataPath, Pipeline};
use mlgrid_store::{
    NewPipeline, NewPipelineRun, NewStep, PipelineRun, PublishedPipeline, STEP_RUN_TYPE, SourceId, Store, StoreError,
    Submitted,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::datastore::Datastores;
use crate::datastore::registry::{DatastoreRegistry, RegistryError};
use crate::definitions::Definitions;
use crate::executor::ExecutorHandle;
use crate::layout::DataLayout;

/// Largest piece of a log one read returns.
pub const LOG_CHUNK_BYTES: u64 = 1024 * 1024;

/// What a submission runs: a pipeline by id, or an endpoint's default pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Pipeline(String),
    Endpoint(String),
}

/// A submission, whoever made it (the REST endpoint, the CLI, an event subscription, a
/// schedule).
#[derive(Debug, Clone, Default)]
pub struct Submission {
    pub experiment_name: String,
    /// Values by parameter name; checked against each parameter's type.
    pub parameters: BTreeMap<String, serde_json::Value>,
    /// Data path parameters assigned; the others keep the definition's default.
    pub data_paths: BTreeMap<String, DataPath>,
    pub run_source: String,
    pub description: Option<String>,
    pub tags: Tags,
    pub continue_on_step_failure: bool,
    /// Makes the submission idempotent (see [`NewPipelineRun::idempotency_key`]).
    pub idempotency_key: Option<String>,
}

/// A pipeline request refused, or a store failure.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The request is wrong; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file of the server could not be read.
    #[error(transparent)]
    Io(std::io::Error),
}

/// One of a step's two logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// A piece of a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub bytes: Vec<u8>,
    /// The log's size when read.
    pub size: u64,
    /// The step has ended: the log will not grow.
    pub complete: bool,
}

/// Pipelines of every workspace, as the API and the pipeline destination use them.
#[derive(Clone)]
pub struct Pipelines {
    store: Arc<dyn Store>,
    layout: DataLayout,
    datastores: DatastoreRegistry,
    definitions: Definitions,
    executor: ExecutorHandle,
}

impl Pipelines {
    pub fn new(
        store: Arc<dyn Store>,
        layout: DataLayout,
        datastores: DatastoreRegistry,
        definitions: Definitions,
        executor: ExecutorHandle,
    ) -> Pipelines {
        Pipelines {
            store,
            layout,
            datastores,
            definitions,
            executor,
        }
    }

    /// The datastores of a workspace, the registered ones among them.
    pub(crate) async fn datastores(&self, workspace: SourceId) -> Result<Datastores, PipelineError> {
        self.datastores.datastores(workspace).await.map_err(|e| match e {
            RegistryError::Store(e) => PipelineError::Store(e),
            other => PipelineError::Invalid(other.to_string()),
        })
    }

    /// Checks a definition whole, then publishes it.
    pub async fn publish(
        &self,
        workspace: SourceId,
        yaml: &str,
        version: Option<String>,
    ) -> Result<PublishedPipeline, PipelineError> {
        let pipeline = Pipeline::parse(yaml).map_err(|e| PipelineError::Invalid(e.to_string()))?;
        let known = self.datastores(workspace).await?.names();
        for (name, path) in &pipeline.data_paths {
            if !known.contains(&path.datastore) {
                return Err(PipelineError::Invalid(format!(
                    "data path `{name}` names datastore `{}`, which the workspace does not have; its datastores: {}",
                    path.datastore,
                    known.join(", ")
                )));
            }
        }
        let new = NewPipeline {
            name: pipeline.name,
            version,
            description: pipeline.description,
            definition: yaml.to_owned(),
        };
        Ok(self.store.publish_pipeline(workspace, new).await?)
    }

    /// Starts a run: the pipeline must be enabled, every parameter value of its type,
    /// every data path an existing file of a known datastore; then the run and its
    /// steps are created in one transaction and the executor is woken. Returns the
    /// pipeline's id and the run.
    pub async fn submit(
        &self,
        workspace: SourceId,
        target: Target,
        submission: Submission,
    ) -> Result<(String, Submitted), PipelineError> {
        let new = self.prepare(workspace, target, submission).await?;
        let pipeline_id = new.pipeline_id.clone();
        let submitted = self.store.submit_pipeline_run(workspace, new).await?;
        self.executor.wake();
        Ok((pipeline_id, submitted))
    }

    /// The run a schedule starts, checked as any submission: `Ok(Err(reason))` when the
    /// pipeline refuses it (the schedule records why), `Err` only when the store failed.
    pub(crate) async fn prepare_scheduled(
        &self,
        workspace: SourceId,
        target: Target,
        submission: Submission,
    ) -> Result<Result<NewPipelineRun, String>, StoreError> {
        scheduled(self.prepare(workspace, target, submission).await)
    }

    /// [`Pipelines::prepare_scheduled`] of a pipeline read before: a scheduler pass
    /// reads each pipeline once for all the ticks that start it.
    pub(crate) async fn prepare_scheduled_from(
        &self,
        workspace: SourceId,
        published: &PublishedPipeline,
        submission: Submission,
    ) -> Result<Result<NewPipelineRun, String>, StoreError> {
        scheduled(self.prepare_from(workspace, published, submission).await)
    }

    /// A submission checked whole and made into the run to create, without creating it:
    /// a schedule creates it in the transaction that records its tick.
    pub(crate) async fn prepare(
        &self,
        workspace: SourceId,
        target: Target,
        submission: Submission,
    ) -> Result<NewPipelineRun, PipelineError> {
        let published = match &target {
            Target::Pipeline(id) => self.store.pipeline(workspace, id).await?,
            Target::Endpoint(name) => {
                let endpoint = self.store.pipeline_endpoint(workspace, name).await?;
                self.store.pipeline(workspace, &endpoint.default_pipeline_id).await?
            }
        };
        self.prepare_from(workspace, &published, submission).await
    }

    async fn prepare_from(
        &self,
        workspace: SourceId,
        published: &PublishedPipeline,
        submission: Submission,
    ) -> Result<NewPipelineRun, PipelineError> {
        let pipeline = self.definitions.get(published)?;
        let values = pipeline
            .assign(&submission.parameters)
            .map_err(PipelineError::Invalid)?;
        let data_paths = self.data_paths(workspace, &pipeline, submission.data_paths).await?;
        let new = NewPipelineRun {
            pipeline_id: published.id.clone(),
            experiment_name: submission.experiment_name,
            description: submission.description,
            tags: submission.tags,
            parameters: values.iter().map(|(name, v)| (name.clone(), v.to_json())).collect(),
            data_paths,
            continue_on_step_failure: submission.continue_on_step_failure,
            run_source: submission.run_source,
            idempotency_key: submission.idempotency_key,
            steps: pipeline
                .steps
                .iter()
                .map(|step| NewStep {
                    name: step.name.clone(),
                    depends_on: step.depends_on.iter().cloned().collect(),
                    retries: step.retries,
                })
                .collect(),
        };
        Ok(new)
    }

    /// Holds back this node's executor from claiming new steps (see
    /// [`ExecutorHandle::hold`]).
    pub(crate) fn hold_executor(&self) -> crate::executor::ClaimHold {
        self.executor.hold()
    }

    /// Wakes the executor for runs created outside [`Pipelines::submit`].
    pub(crate) fn wake_executor(&self) {
        self.executor.wake();
    }

    /// Checks parameter values against a pipeline's definition, as a submission would.
    pub(crate) async fn check_parameters(
        &self,
        workspace: SourceId,
        pipeline_id: &str,
        parameters: &BTreeMap<String, serde_json::Value>,
    ) -> Result<PublishedPipeline, PipelineError> {
        let published = self.store.pipeline(workspace, pipeline_id).await?;
        self.definitions
            .get(&published)?
            .assign(parameters)
            .map_err(PipelineError::Invalid)?;
        Ok(published)
    }

    /// Refuses a data-path parameter the pipeline does not have, naming those it has.
    pub(crate) async fn check_data_path_parameter(
        &self,
        workspace: SourceId,
        pipeline_id: &str,
        name: &str,
    ) -> Result<(), PipelineError> {
        let published = self.store.pipeline(workspace, pipeline_id).await?;
        let pipeline = self.definitions.get(&published)?;
        if pipeline.data_paths.contains_key(name) {
            return Ok(());
        }
        let known: Vec<&str> = pipeline.data_paths.keys().map(String::as_str).collect();
        Err(PipelineError::Invalid(format!(
            "pipeline `{}` has no data-path parameter `{name}` to take the changed file; its data paths: {}",
            published.name,
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )))
    }

    /// What a pipeline trigger names: a pipeline's id, else a pipeline endpoint's name.
    pub async fn trigger_target(&self, workspace: SourceId, name: &str) -> Result<Target, PipelineError> {
        match self.store.pipeline(workspace, name).await {
            Ok(_) => return Ok(Target::Pipeline(name.to_owned())),
            Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        match self.store.pipeline_endpoint(workspace, name).await {
            Ok(_) => Ok(Target::Endpoint(name.to_owned())),
            Err(StoreError::NotFound(_)) => Err(PipelineError::Invalid(format!(
                "the workspace has no pipeline with id `{name}` and no pipeline endpoint named `{name}`: \
                 publish one (`mlgrid pipeline publish`) and give its id, or an endpoint's name"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// Every data path's file (core's `Pipeline::assign_data_paths`), each an existing
    /// file of a known datastore.
    async fn data_paths(
        &self,
        workspace: SourceId,
        pipeline: &Pipeline,
        assigned: BTreeMap<String, DataPath>,
    ) -> Result<BTreeMap<String, DataPath>, PipelineError> {
        let values = pipeline.assign_data_paths(assigned).map_err(PipelineError::Invalid)?;
        if values.is_empty() {
            // Nothing to check: no need to read the workspace's datastores.
            return Ok(values);
        }
        let datastores = self.datastores(workspace).await?;
        for (name, value) in &values {
            datastores
                .check(&value.datastore, &value.path)
                .await
                .map_err(|e| PipelineError::Invalid(format!("data path `{name}`: {e}")))?;
        }
        Ok(values)
    }

    /// Cancels a pipeline run (as it was read, when `if_match` names its etag), and
    /// stops its steps running on this node at once (other nodes stop theirs when they
    /// next renew their leases).
    pub async fn cancel(
        &self,
        workspace: SourceId,
        run_id: &str,
        reason: &str,
        if_match: Option<String>,
    ) -> Result<PipelineRun, PipelineError> {
        let run = self
            .store
            .cancel_pipeline_run(workspace, run_id, reason, if_match)
            .await?;
        for step in &run.steps {
            if step.cancel_requested {
                self.executor.cancel(&step.run_id);
            }
        }
        Ok(run)
    }

    /// A piece of a step's log from `offset`. `run_id` is a pipeline run (then `step`
    /// names the step, unless the run has only one) or a step's own run.
    pub async fn read_log(
        &self,
        workspace: SourceId,
        run_id: &str,
        step: Option<&str>,
        stream: LogStream,
        offset: u64,
    ) -> Result<LogChunk, PipelineError> {
        let (run, step) = match self.store.pipeline_run(workspace, run_id).await {
            Ok(run) => (run, step.map(str::to_owned)),
            Err(StoreError::NotFound(_)) => {
                let child = self.store.run(workspace, run_id).await?;
                let parent = child
                    .parent_run_id
                    .filter(|_| child.run_type.as_deref() == Some(STEP_RUN_TYPE))
                    .ok_or_else(|| {
                        PipelineError::Invalid(format!(
                            "run `{run_id}` is neither a pipeline run nor a step of one: it has no step logs"
                        ))
                    })?;
                let run = self.store.pipeline_run(workspace, &parent).await?;
                let name = run.steps.iter().find(|s| s.run_id == run_id).map(|s| s.name.clone());
                (run, name)
            }
            Err(e) => return Err(e.into()),
        };
        let run_id = run.run.run_id.as_str();
        let names: Vec<&str> = run.steps.iter().map(|s| s.name.as_str()).collect();
        let found = match step.as_deref() {
            Some(name) => run.steps.iter().find(|s| s.name == name).ok_or_else(|| {
                PipelineError::Invalid(format!(
                    "run `{run_id}` has no step `{name}`; its steps are: {}",
                    names.join(", ")
                ))
            })?,
            None if run.steps.len() == 1 => &run.steps[0],
            None => {
                return Err(PipelineError::Invalid(format!(
                    "run `{run_id}` has {} steps: name one with `step` ({})",
                    names.len(),
                    names.join(", ")
                )));
            }
        };
        let step = self
            .layout
            .run(&workspace.to_string(), run_id)
            .and_then(|run| run.step(&found.name))
            .map_err(|e| PipelineError::Invalid(e.to_string()))?;
        let path: PathBuf = match stream {
            LogStream::Stdout => step.stdout_log(),
            LogStream::Stderr => step.stderr_log(),
        };
        let complete = found.state.is_final();
        read_chunk(&path, offset)
            .await
            .map(|(bytes, size)| LogChunk { bytes, size, complete })
            .map_err(PipelineError::Io)
    }
}

/// Up to [`LOG_CHUNK_BYTES`] of a file from `offset`, and the file's size; a log not
/// written yet is empty.
async fn read_chunk(path: &std::path::Path, offset: u64) -> std::io::Result<(Vec<u8>, u64)> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), 0)),
        Err(e) => return Err(e),
    };
    let size = file.metadata().await?.len();
    if offset >= size {
        return Ok((Vec::new(), size));
    }
    file.seek(std::io::SeekFrom::Start(offset)).await?;
    let mut bytes = Vec::new();
    file.take(LOG_CHUNK_BYTES).read_to_end(&mut bytes).await?;
    Ok((bytes, size))
}

/// What a schedule's tick got: its value, why the pipeline refuses it (the tick records
/// the reason), or `Err` when the store failed.
pub(crate) fn scheduled<T>(prepared: Result<T, PipelineError>) -> Result<Result<T, String>, StoreError> {
    match prepared {
        Ok(value) => Ok(Ok(value)),
        Err(PipelineError::Invalid(reason)) => Ok(Err(reason)),
        Err(PipelineError::Store(StoreError::NotFound(what))) => Ok(Err(format!("{what} not found"))),
        Err(PipelineError::Store(e)) => Err(e),
        Err(PipelineError::Io(e)) => Ok(Err(e.to_string())),
    }
}
