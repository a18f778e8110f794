//! Pipeline triggers: the delivery engine's pipeline destination submits through the
//! node's pipelines, like any other submission.

use async_trait::async_trait;
use mlgrid_delivery::{Launch, LaunchError, PipelineLauncher};
use mlgrid_pipelines::{PipelineError, Pipelines, Submission};
use std::sync::Arc;

use mlgrid_core::resource::SourceKind;
use mlgrid_store::{SourceId, Store, StoreError};

/// Who pipeline triggers say submitted their runs (`azureml.runsource`).
const RUN_SOURCE: &str = "EventSubscription";

pub(crate) struct Triggers {
    pub store: Arc<dyn Store>,
    pub pipelines: Pipelines,
}

#[async_trait]
impl PipelineLauncher for Triggers {
    async fn launch(&self, source: SourceId, launch: Launch) -> Result<String, LaunchError> {
        let workspace = match &launch.workspace {
            Some(name) => {
                self.store
                    .source(SourceKind::Workspace, name)
                    .await
                    .map_err(|e| classify(e.into()))?
                    .id
            }
            None => source,
        };
        let target = self
            .pipelines
            .trigger_target(workspace, &launch.pipeline)
            .await
            .map_err(classify)?;
        let submission = Submission {
            experiment_name: launch.experiment_name,
            parameters: launch.parameters,
            run_source: RUN_SOURCE.to_owned(),
            idempotency_key: Some(launch.idempotency_key),
            ..Submission::default()
        };
        let (_, submitted) = self
            .pipelines
            .submit(workspace, target, submission)
            .await
            .map_err(classify)?;
        Ok(submitted.run.run_id)
    }
}

/// Whether a failed submission could succeed later (the store was unavailable) or never
/// will as it stands (the event is dead-lettered with the reason).
fn classify(error: PipelineError) -> LaunchError {
    match error {
        PipelineError::Invalid(reason) => LaunchError::Refused(reason),
        PipelineError::Store(
            e @ (StoreError::NotFound(_)
            | StoreError::Conflict(_)
            | StoreError::Invalid(_)
            | StoreError::PreconditionFailed(_)),
        ) => LaunchError::Refused(e.to_string()),
        PipelineError::Store(e) => LaunchError::Unavailable(e.to_string()),
        PipelineError::Io(e) => LaunchError::Unavailable(e.to_string()),
    }
}
