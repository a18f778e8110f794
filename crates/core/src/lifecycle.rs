//! The rules of the ML lifecycle: run statuses and their transitions, which change
//! raises which Azure ML event, model references, compute types, tags given as `k=v`.
//!
//! Azure ML raises an event only for a change that happened: `RunCompleted` when a run
//! completes, `RunStatusChanged` (with `RunStatus` `failed`) only when a run fails, and
//! nothing for a cancelled run or a refused change.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::ml::{MlEvent, RunCompleted, RunStatusChanged, Tags};

/// The status of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RunStatus {
    NotStarted,
    Queued,
    Running,
    Completed,
    Failed,
    Canceled,
}

impl RunStatus {
    pub const ALL: [RunStatus; 6] = [
        RunStatus::NotStarted,
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Canceled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::NotStarted => "NotStarted",
            RunStatus::Queued => "Queued",
            RunStatus::Running => "Running",
            RunStatus::Completed => "Completed",
            RunStatus::Failed => "Failed",
            RunStatus::Canceled => "Canceled",
        }
    }

    /// Completed, Failed and Canceled are final.
    pub fn is_terminal(self) -> bool {
        matches!(self, RunStatus::Completed | RunStatus::Failed | RunStatus::Canceled)
    }

    /// The statuses a run in this status may move to.
    ///
    /// A run is queued before it runs and completes only after running; it may fail or
    /// be cancelled at any point before it ends.
    pub fn next(self) -> &'static [RunStatus] {
        use RunStatus::*;
        match self {
            NotStarted => &[Queued, Running, Failed, Canceled],
            Queued => &[Running, Failed, Canceled],
            Running => &[Completed, Failed, Canceled],
            Completed | Failed | Canceled => &[],
        }
    }

    /// Checks that a run may move from `self` to `to`.
    pub fn check_transition(self, to: RunStatus) -> Result<(), InvalidTransition> {
        if self.next().contains(&to) {
            Ok(())
        } else {
            Err(InvalidTransition { from: self, to })
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunStatus::ALL
            .into_iter()
            .find(|status| status.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                format!(
                    "unknown run status `{s}`; use one of {}",
                    RunStatus::ALL.map(RunStatus::as_str).join(", ")
                )
            })
    }
}

/// A refused status change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidTransition {
    pub from: RunStatus,
    pub to: RunStatus,
}

impl fmt::Display for InvalidTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let allowed = self.from.next();
        if allowed.is_empty() {
            write!(
                f,
                "the run is {} and cannot change status any more ({} is final)",
                self.from, self.from
            )
        } else {
            let list: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
            write!(
                f,
                "a {} run cannot become {}; from {} it may become {}",
                self.from,
                self.to,
                self.from,
                list.join(", ")
            )
        }
    }
}

impl std::error::Error for InvalidTransition {}

/// What an event needs to know of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunFacts {
    pub experiment_id: String,
    pub experiment_name: String,
    pub run_id: String,
    pub run_type: Option<String>,
    pub tags: Tags,
    pub properties: Tags,
}

/// The event Azure ML raises when a run reaches `status`, if any.
pub fn run_event(run: &RunFacts, status: RunStatus) -> Option<MlEvent> {
    let data = RunCompleted {
        experiment_id: run.experiment_id.clone(),
        experiment_name: run.experiment_name.clone(),
        run_id: run.run_id.clone(),
        run_type: run.run_type.clone(),
        run_tags: run.tags.clone(),
        run_properties: run.properties.clone(),
    };
    match status {
        RunStatus::Completed => Some(MlEvent::RunCompleted(data)),
        RunStatus::Failed => Some(MlEvent::RunStatusChanged(RunStatusChanged {
            run: data,
            run_status: "failed".to_owned(),
        })),
        _ => None,
    }
}

/// A model version, written `name:version`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelRef {
    pub name: String,
    pub version: u64,
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.version)
    }
}

impl FromStr for ModelRef {
    type Err = String;

    /// The version is after the last `:`, so names may contain colons.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("`{s}` is not a model reference; write NAME:VERSION, e.g. churn:3");
        let (name, version) = s.rsplit_once(':').ok_or_else(invalid)?;
        let version: u64 = version.parse().map_err(|_| invalid())?;
        if name.is_empty() || version == 0 {
            return Err(invalid());
        }
        Ok(ModelRef {
            name: name.to_owned(),
            version,
        })
    }
}

/// The `ModelIds` of a `ModelDeployed` event: the references joined by commas.
pub fn model_ids(models: &[ModelRef]) -> String {
    models.iter().map(ModelRef::to_string).collect::<Vec<_>>().join(",")
}

/// Where a model is deployed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ComputeType {
    #[serde(rename = "ACI")]
    Aci,
    #[serde(rename = "AKS")]
    Aks,
    Local,
}

impl ComputeType {
    pub const ALL: [ComputeType; 3] = [ComputeType::Aci, ComputeType::Aks, ComputeType::Local];

    pub fn as_str(self) -> &'static str {
        match self {
            ComputeType::Aci => "ACI",
            ComputeType::Aks => "AKS",
            ComputeType::Local => "Local",
        }
    }
}

impl FromStr for ComputeType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ComputeType::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown compute type `{s}`; use ACI, AKS or Local"))
    }
}

/// Checks the name of a model, deployment, dataset or experiment: 1-255 characters,
/// letters, digits, `-`, `_` and `.`, starting with a letter or digit (they appear in
/// subjects and URLs, so no `/` or `:`).
pub fn validate_asset_name(what: &str, name: &str) -> Result<(), String> {
    let ok = (1..=255).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name `{name}` is invalid: use 1 to 255 letters, digits, `-`, `_` and `.`, \
             starting with a letter or digit"
        ))
    }
}

/// Parses `key=value` pairs as given on a command line.
pub fn parse_tags<'a>(pairs: impl IntoIterator<Item = &'a str>) -> Result<Tags, String> {
    pairs
        .into_iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
            _ => Err(format!("`{pair}` is not a tag; write KEY=VALUE")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_states_are_final_and_every_refusal_says_what_is_allowed() {
        for from in RunStatus::ALL {
            for to in RunStatus::ALL {
                let result = from.check_transition(to);
                if from.is_terminal() {
                    assert!(result.unwrap_err().to_string().contains("final"));
                } else if let Err(e) = result {
                    let message = e.to_string();
                    for allowed in from.next() {
                        assert!(message.contains(allowed.as_str()), "{message}");
                    }
                }
            }
        }
        assert!(RunStatus::Running.check_transition(RunStatus::Completed).is_ok());
        assert!(RunStatus::Queued.check_transition(RunStatus::Completed).is_err());
        assert!(RunStatus::Running.check_transition(RunStatus::Running).is_err());
    }

    fn facts() -> RunFacts {
        RunFacts {
            experiment_id: "e".into(),
            experiment_name: "exp".into(),
            run_id: "r".into(),
            run_type: None,
            tags: Tags::new(),
            properties: Tags::new(),
        }
    }

    #[test]
    fn only_completion_and_failure_raise_events() {
        assert!(matches!(
            run_event(&facts(), RunStatus::Completed),
            Some(MlEvent::RunCompleted(_))
        ));
        match run_event(&facts(), RunStatus::Failed) {
            Some(MlEvent::RunStatusChanged(d)) => assert_eq!(d.run_status, "failed"),
            other => panic!("{other:?}"),
        }
        for status in [
            RunStatus::NotStarted,
            RunStatus::Queued,
            RunStatus::Running,
            RunStatus::Canceled,
        ] {
            assert_eq!(run_event(&facts(), status), None);
        }
    }

    #[test]
    fn model_refs_parse_and_join() {
        let refs: Vec<ModelRef> = ["a:1", "b:c:2"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(model_ids(&refs), "a:1,b:c:2");
        for bad in ["a", "a:", ":1", "a:0", "a:x"] {
            assert!(bad.parse::<ModelRef>().is_err(), "{bad}");
        }
    }

    #[test]
    fn names_tags_and_compute_types() {
        assert!(validate_asset_name("model", "sklearn_model-1.2").is_ok());
        assert!(validate_asset_name("model", "a:b").is_err());
        assert!(validate_asset_name("model", "").is_err());
        assert_eq!(parse_tags(["a=1", "b=x=y"]).unwrap()["b"], "x=y");
        assert!(parse_tags(["novalue"]).is_err());
        assert_eq!("aks".parse::<ComputeType>().unwrap(), ComputeType::Aks);
        assert!("gpu".parse::<ComputeType>().is_err());
    }
}
