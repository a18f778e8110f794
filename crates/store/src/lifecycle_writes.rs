//! What the ML lifecycle writes decide, once for both backends: the checks, the changes
//! made to a loaded run or model, and the events they raise. The backends read, lock and
//! write the rows around these.

use chrono::{DateTime, Utc};
use mlgrid_core::lifecycle::{ModelRef, RunFacts, RunStatus, run_event};
use mlgrid_core::ml::{MlEvent, ModelDeployed, ModelRegistered, Tags};

use crate::error::{Result, StoreError};
use crate::etag::new_etag;
use crate::lifecycle::*;

/// A tag map as the `tags` and `properties` columns keep it.
pub(crate) fn tags_json(tags: &Tags) -> String {
    serde_json::to_string(tags).expect("string maps serialise")
}

/// A new run may not start in a final status.
pub(crate) fn check_start(new: &NewRun) -> Result<()> {
    if new.status.is_terminal() {
        return Err(StoreError::Invalid(format!(
            "a run starts as NotStarted, Queued or Running, not {}",
            new.status
        )));
    }
    Ok(())
}

pub(crate) fn missing_parent(parent: &str) -> StoreError {
    StoreError::Invalid(format!("parent run `{parent}` does not exist in this workspace"))
}

/// The run's own ID, or one made from its experiment's name, the time and randomness.
pub(crate) fn run_id(new: &NewRun) -> String {
    new.run_id.clone().unwrap_or_else(|| {
        let random = uuid::Uuid::new_v4().simple().to_string();
        format!(
            "{}_{}_{}",
            new.experiment_name,
            Utc::now().timestamp_millis(),
            &random[..8]
        )
    })
}

/// Applies a change to a loaded run, with a new etag; `at` is when a status change
/// happened. Returns the status it moved to, if any (a terminal status counts again, so
/// that a repeated completion raises its event again).
pub(crate) fn apply_run_change(run: &mut Run, change: RunChange, at: DateTime<Utc>) -> Result<Option<RunStatus>> {
    let new_status = change.status.filter(|to| *to != run.status || run.status.is_terminal());
    if let Some(to) = new_status {
        run.status
            .check_transition(to)
            .map_err(|e| StoreError::Conflict(format!("run `{}`: {e}", run.run_id)))?;
        if to == RunStatus::Running && run.start_time.is_none() {
            run.start_time = Some(at);
        }
        if to.is_terminal() {
            run.end_time = Some(at);
        }
        run.status = to;
    }
    if change.error.is_some() {
        run.error = change.error;
    }
    apply_patch(&mut run.tags, &change.tags);
    apply_patch(&mut run.properties, &change.properties);
    run.etag = new_etag();
    Ok(new_status)
}

/// The event a run raises on moving to `status`, if that status raises one.
pub(crate) fn run_status_event(run: &Run, status: RunStatus) -> Option<MlEvent> {
    let facts = RunFacts {
        experiment_id: run.experiment_id.clone(),
        experiment_name: run.experiment_name.clone(),
        run_id: run.run_id.clone(),
        run_type: run.run_type.clone(),
        tags: run.tags.clone(),
        properties: run.properties.clone(),
    };
    run_event(&facts, status)
}

/// Metrics are logged only before a run ends.
pub(crate) fn check_metrics(run: &Run) -> Result<()> {
    if run.status.is_terminal() {
        return Err(StoreError::Conflict(format!(
            "run `{}` is {}; metrics can be logged only before a run ends",
            run.run_id, run.status
        )));
    }
    Ok(())
}

pub(crate) fn model_registered(model: &Model) -> MlEvent {
    MlEvent::ModelRegistered(ModelRegistered {
        model_name: model.name.clone(),
        model_version: model.version,
        model_tags: model.tags.clone(),
        model_properties: model.properties.clone(),
    })
}

/// Applies a change to a loaded model, with a new etag, updated `at`.
pub(crate) fn apply_model_change(model: &mut Model, change: ModelChange, at: DateTime<Utc>) {
    if change.description.is_some() {
        model.description = change.description;
    }
    apply_patch(&mut model.tags, &change.tags);
    apply_patch(&mut model.properties, &change.properties);
    if let Some(archived) = change.archived {
        model.archived = archived;
    }
    model.etag = new_etag();
    model.updated_at = at;
}

/// A deployment names at least one model.
pub(crate) fn check_deployment(new: &NewDeployment) -> Result<()> {
    if new.models.is_empty() {
        return Err(StoreError::Invalid(
            "a deployment needs at least one model (NAME:VERSION)".to_owned(),
        ));
    }
    Ok(())
}

/// A deployed model must exist and not be archived; `archived` is its flag, `None` when
/// there is no such model.
pub(crate) fn check_deployable(model: &ModelRef, archived: Option<bool>) -> Result<()> {
    match archived {
        None => Err(StoreError::Invalid(format!(
            "model `{model}` does not exist in this workspace; register it first or name an existing version"
        ))),
        Some(true) => Err(StoreError::Invalid(format!(
            "model `{model}` is archived; deploy another version or restore it"
        ))),
        Some(false) => Ok(()),
    }
}

/// The event a deployment raises; `model_ids` are its models as stored.
pub(crate) fn model_deployed(deployment: &Deployment, model_ids: String) -> MlEvent {
    MlEvent::ModelDeployed(ModelDeployed {
        service_name: deployment.name.clone(),
        service_compute_type: deployment.compute_type.as_str().to_owned(),
        model_ids,
        service_tags: deployment.tags.clone(),
        service_properties: deployment.properties.clone(),
    })
}
