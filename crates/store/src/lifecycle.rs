//! The ML lifecycle as the store keeps it: experiments, runs and metrics, registered
//! models, deployments and datasets.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use mlgrid_core::lifecycle::{ComputeType, ModelRef, RunStatus};
use mlgrid_core::ml::{MlEvent, Tags};
use mlgrid_core::time::format_event_time;
use mlgrid_core::{Event, EventSchema};

use crate::model::NewEvent;

/// Changes to a tag map, as a JSON merge patch: a value sets the key, `None` removes it.
pub type TagsPatch = BTreeMap<String, Option<String>>;

/// Applies a merge patch to a tag map.
pub fn apply_patch(tags: &mut Tags, patch: &TagsPatch) {
    for (key, value) in patch {
        match value {
            Some(value) => {
                tags.insert(key.clone(), value.clone());
            }
            None => {
                tags.remove(key);
            }
        }
    }
}

/// The event a workspace raises for an ML change, as its log stores it: an Event Grid
/// envelope on `topic` (the workspace's resource path) carrying the subject's
/// `sequence` and the changed resource's `etag`.
pub(crate) fn raised_event(event: &MlEvent, topic: &str, sequence: u64, etag: &str) -> NewEvent {
    let id = uuid::Uuid::new_v4().to_string();
    let mut envelope = event.to_event_grid(topic, &id, &format_event_time(Utc::now()));
    envelope.sequence = Some(sequence);
    envelope.etag = Some(etag.to_owned());
    let stored = NewEvent::from(&Event::EventGrid(envelope));
    debug_assert_eq!(stored.schema, EventSchema::EventGridSchema);
    stored
}

#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    /// A UUID, given on first use of the name.
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub run_id: String,
    pub experiment_id: String,
    pub experiment_name: String,
    pub parent_run_id: Option<String>,
    pub run_type: Option<String>,
    pub status: RunStatus,
    pub tags: Tags,
    pub properties: Tags,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    pub etag: String,
}

/// A run to start. The experiment is created on first use of its name.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub experiment_name: String,
    /// Chosen by the caller, or generated (`{experiment}_{milliseconds}_{random}`).
    pub run_id: Option<String>,
    pub run_type: Option<String>,
    pub parent_run_id: Option<String>,
    /// NotStarted, Queued or Running.
    pub status: RunStatus,
    pub tags: Tags,
    pub properties: Tags,
}

/// A change to a run; `None` leaves that part as it is.
#[derive(Debug, Clone, Default)]
pub struct RunChange {
    pub status: Option<RunStatus>,
    /// Why the run failed or was cancelled.
    pub error: Option<String>,
    pub tags: TagsPatch,
    pub properties: TagsPatch,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewMetric {
    pub name: String,
    pub value: f64,
    pub step: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub value: f64,
    pub step: u64,
    pub logged_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub name: String,
    pub version: u64,
    pub path: Option<String>,
    pub description: Option<String>,
    pub tags: Tags,
    pub properties: Tags,
    pub archived: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub etag: String,
}

#[derive(Debug, Clone)]
pub struct NewModel {
    pub name: String,
    pub path: Option<String>,
    pub description: Option<String>,
    pub tags: Tags,
    pub properties: Tags,
}

/// A change to a model version; raises no event.
#[derive(Debug, Clone, Default)]
pub struct ModelChange {
    pub description: Option<String>,
    pub tags: TagsPatch,
    pub properties: TagsPatch,
    /// `Some(true)` archives the version, `Some(false)` restores it.
    pub archived: Option<bool>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub name: String,
    pub compute_type: ComputeType,
    pub models: Vec<ModelRef>,
    pub tags: Tags,
    pub properties: Tags,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub etag: String,
}

#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub name: String,
    pub compute_type: ComputeType,
    pub models: Vec<ModelRef>,
    pub tags: Tags,
    pub properties: Tags,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub version: u64,
    /// File or folder on a datastore (a local path until datastores arrive).
    pub path: String,
    pub description: Option<String>,
    pub tags: Tags,
    pub created_at: DateTime<Utc>,
    pub etag: String,
}

#[derive(Debug, Clone)]
pub struct NewDataset {
    pub name: String,
    pub path: String,
    pub description: Option<String>,
    pub tags: Tags,
}
