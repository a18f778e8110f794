//! The five Azure Machine Learning event types, their data and their subjects.
//!
//! Field names are PascalCase exactly as the Event Grid schema for Azure ML names them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::event_grid::EventGridEvent;

/// String-to-string tags or properties of a model, service or run.
pub type Tags = BTreeMap<String, String>;

/// The prefix shared by every Azure ML event type.
pub const EVENT_TYPE_PREFIX: &str = "Microsoft.MachineLearningServices.";

/// The Azure ML event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MlEventType {
    ModelRegistered,
    ModelDeployed,
    RunCompleted,
    RunStatusChanged,
    DatasetDriftDetected,
}

impl MlEventType {
    pub const ALL: [MlEventType; 5] = [
        MlEventType::ModelRegistered,
        MlEventType::ModelDeployed,
        MlEventType::RunCompleted,
        MlEventType::RunStatusChanged,
        MlEventType::DatasetDriftDetected,
    ];

    /// The full `eventType`, e.g. `Microsoft.MachineLearningServices.ModelRegistered`.
    pub fn as_str(self) -> &'static str {
        match self {
            MlEventType::ModelRegistered => "Microsoft.MachineLearningServices.ModelRegistered",
            MlEventType::ModelDeployed => "Microsoft.MachineLearningServices.ModelDeployed",
            MlEventType::RunCompleted => "Microsoft.MachineLearningServices.RunCompleted",
            MlEventType::RunStatusChanged => "Microsoft.MachineLearningServices.RunStatusChanged",
            MlEventType::DatasetDriftDetected => "Microsoft.MachineLearningServices.DatasetDriftDetected",
        }
    }
}

impl fmt::Display for MlEventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MlEventType {
    type Err = UnknownEventType;

    /// Event types compare case-insensitively, as Event Grid compares them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MlEventType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownEventType(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("unknown Azure ML event type `{0}`; expected one of {list}", list = MlEventType::ALL.map(|t| t.as_str()).join(", "))]
pub struct UnknownEventType(pub String);

/// Data of `ModelRegistered`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModelRegistered {
    pub model_name: String,
    pub model_version: u64,
    pub model_tags: Tags,
    pub model_properties: Tags,
}

/// Data of `ModelDeployed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ModelDeployed {
    pub service_name: String,
    pub service_compute_type: String,
    /// Comma-separated `name:version` list.
    pub model_ids: String,
    pub service_tags: Tags,
    pub service_properties: Tags,
}

/// Data of `RunCompleted`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunCompleted {
    pub experiment_id: String,
    pub experiment_name: String,
    pub run_id: String,
    /// Written as `null` when the run has no type.
    pub run_type: Option<String>,
    pub run_tags: Tags,
    pub run_properties: Tags,
}

/// Data of `RunStatusChanged`: the run fields plus the new status (`failed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunStatusChanged {
    #[serde(flatten)]
    pub run: RunCompleted,
    pub run_status: String,
}

/// Data of `DatasetDriftDetected`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DatasetDriftDetected {
    pub data_drift_id: String,
    pub data_drift_name: String,
    pub run_id: String,
    pub base_dataset_id: String,
    pub target_dataset_id: String,
    pub drift_coefficient: f64,
    #[serde(with = "crate::time::offset_time")]
    pub start_time: DateTime<Utc>,
    #[serde(with = "crate::time::offset_time")]
    pub end_time: DateTime<Utc>,
}

/// An Azure ML event's data, tagged by its type.
#[derive(Debug, Clone, PartialEq)]
pub enum MlEvent {
    ModelRegistered(ModelRegistered),
    ModelDeployed(ModelDeployed),
    RunCompleted(RunCompleted),
    RunStatusChanged(RunStatusChanged),
    DatasetDriftDetected(DatasetDriftDetected),
}

impl MlEvent {
    pub fn event_type(&self) -> MlEventType {
        match self {
            MlEvent::ModelRegistered(_) => MlEventType::ModelRegistered,
            MlEvent::ModelDeployed(_) => MlEventType::ModelDeployed,
            MlEvent::RunCompleted(_) => MlEventType::RunCompleted,
            MlEvent::RunStatusChanged(_) => MlEventType::RunStatusChanged,
            MlEvent::DatasetDriftDetected(_) => MlEventType::DatasetDriftDetected,
        }
    }

    /// The subject Azure ML gives this event.
    pub fn subject(&self) -> MlSubject {
        match self {
            MlEvent::ModelRegistered(d) => MlSubject::Model {
                name: d.model_name.clone(),
                version: d.model_version,
            },
            MlEvent::ModelDeployed(d) => MlSubject::Endpoint {
                service: d.service_name.clone(),
            },
            MlEvent::RunCompleted(d) | MlEvent::RunStatusChanged(RunStatusChanged { run: d, .. }) => MlSubject::Run {
                experiment_id: d.experiment_id.clone(),
                run_id: d.run_id.clone(),
            },
            MlEvent::DatasetDriftDetected(d) => MlSubject::DataDrift {
                drift_id: d.data_drift_id.clone(),
                run_id: d.run_id.clone(),
            },
        }
    }

    /// The Event Grid envelope for this event, raised on the workspace `topic`.
    pub fn to_event_grid(&self, topic: &str, id: &str, event_time: &str) -> EventGridEvent {
        let data = match self {
            MlEvent::ModelRegistered(d) => serde_json::value::to_raw_value(d),
            MlEvent::ModelDeployed(d) => serde_json::value::to_raw_value(d),
            MlEvent::RunCompleted(d) => serde_json::value::to_raw_value(d),
            MlEvent::RunStatusChanged(d) => serde_json::value::to_raw_value(d),
            MlEvent::DatasetDriftDetected(d) => serde_json::value::to_raw_value(d),
        }
        .expect("ML event data are maps of strings and finite numbers");
        EventGridEvent {
            topic: topic.to_owned(),
            subject: self.subject().to_string(),
            event_type: self.event_type().as_str().to_owned(),
            event_time: event_time.to_owned(),
            id: id.to_owned(),
            data,
            data_version: String::new(),
            metadata_version: crate::event_grid::METADATA_VERSION.to_owned(),
            sequence: None,
            etag: None,
        }
    }

    /// Reads the typed data of an Azure ML event.
    pub fn from_event_grid(event: &EventGridEvent) -> Result<MlEvent, MlEventError> {
        let event_type: MlEventType = event.event_type.parse()?;
        let parsed = match event_type {
            MlEventType::ModelRegistered => event.data_as().map(MlEvent::ModelRegistered),
            MlEventType::ModelDeployed => event.data_as().map(MlEvent::ModelDeployed),
            MlEventType::RunCompleted => event.data_as().map(MlEvent::RunCompleted),
            MlEventType::RunStatusChanged => event.data_as().map(MlEvent::RunStatusChanged),
            MlEventType::DatasetDriftDetected => event.data_as().map(MlEvent::DatasetDriftDetected),
        };
        parsed.map_err(|source| MlEventError::Data { event_type, source })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MlEventError {
    #[error(transparent)]
    UnknownType(#[from] UnknownEventType),
    #[error("data of {event_type} does not match its schema: {source}")]
    Data {
        event_type: MlEventType,
        source: serde_json::Error,
    },
}

/// The subject of an Azure ML event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MlSubject {
    /// `models/{ModelName}:{ModelVersion}`
    Model { name: String, version: u64 },
    /// `endpoints/{ServiceName}`
    Endpoint { service: String },
    /// `experiments/{ExperimentId}/runs/{RunId}`
    Run { experiment_id: String, run_id: String },
    /// `datadrift/{DataDriftId}/run/{RunId}`
    DataDrift { drift_id: String, run_id: String },
}

impl fmt::Display for MlSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MlSubject::Model { name, version } => write!(f, "models/{name}:{version}"),
            MlSubject::Endpoint { service } => write!(f, "endpoints/{service}"),
            MlSubject::Run { experiment_id, run_id } => write!(f, "experiments/{experiment_id}/runs/{run_id}"),
            MlSubject::DataDrift { drift_id, run_id } => {
                write!(f, "datadrift/{drift_id}/run/{run_id}")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "`{0}` is not an Azure ML subject; expected models/NAME:VERSION, endpoints/SERVICE, \
     experiments/EXPERIMENT_ID/runs/RUN_ID or datadrift/DRIFT_ID/run/RUN_ID"
)]
pub struct InvalidSubject(pub String);

impl FromStr for MlSubject {
    type Err = InvalidSubject;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || InvalidSubject(s.to_owned());
        let segment = |part: &str| (!part.is_empty() && !part.contains('/')).then(|| part.to_owned());
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            ["models", name_version] => {
                let (name, version) = name_version.rsplit_once(':').ok_or_else(invalid)?;
                Ok(MlSubject::Model {
                    name: segment(name).ok_or_else(invalid)?,
                    version: version.parse().map_err(|_| invalid())?,
                })
            }
            ["endpoints", service] => Ok(MlSubject::Endpoint {
                service: segment(service).ok_or_else(invalid)?,
            }),
            ["experiments", experiment_id, "runs", run_id] => Ok(MlSubject::Run {
                experiment_id: segment(experiment_id).ok_or_else(invalid)?,
                run_id: segment(run_id).ok_or_else(invalid)?,
            }),
            ["datadrift", drift_id, "run", run_id] => Ok(MlSubject::DataDrift {
                drift_id: segment(drift_id).ok_or_else(invalid)?,
                run_id: segment(run_id).ok_or_else(invalid)?,
            }),
            _ => Err(invalid()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_round_trip() {
        for s in [
            "models/sklearn_regression_model:20",
            "endpoints/my-sklearn-service",
            "experiments/0fa9dfaa-cba3-4fa7-b590-23e48548f5c1/runs/AutoML_ad912b2d_5",
            "datadrift/01d29aa4/run/01d29aa4_1571590300380",
        ] {
            assert_eq!(s.parse::<MlSubject>().unwrap().to_string(), s);
        }
    }

    #[test]
    fn model_names_may_contain_colons_the_version_is_after_the_last() {
        let subject: MlSubject = "models/a:b:3".parse().unwrap();
        assert_eq!(
            subject,
            MlSubject::Model {
                name: "a:b".into(),
                version: 3
            }
        );
    }

    #[test]
    fn malformed_subjects_are_refused() {
        for s in [
            "",
            "models/x",
            "models/x:v1",
            "models/:1",
            "endpoints/",
            "endpoints/a/b",
            "experiments/e/runs",
            "experiments//runs/r",
            "datadrifts/d/runs/r",
            "other/x",
        ] {
            assert!(s.parse::<MlSubject>().is_err(), "{s} should be refused");
        }
    }

    #[test]
    fn event_types_parse_case_insensitively_and_reject_others() {
        assert_eq!(
            "microsoft.machinelearningservices.modelregistered"
                .parse::<MlEventType>()
                .unwrap(),
            MlEventType::ModelRegistered
        );
        let err = "Microsoft.MachineLearningServices.ModelDeleted"
            .parse::<MlEventType>()
            .unwrap_err();
        assert!(err.to_string().contains("ModelRegistered"));
    }
}
