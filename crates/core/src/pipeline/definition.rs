//! A pipeline definition as its YAML file writes it, before any check.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The YAML of a pipeline: what `mlgrid pipeline publish --file` reads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineFile {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub parameters: BTreeMap<String, ParameterFile>,
    #[serde(default)]
    pub data_paths: BTreeMap<String, DataPath>,
    pub steps: Vec<StepFile>,
}

/// A typed parameter and its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParameterFile {
    #[serde(rename = "type")]
    pub kind: ParameterType,
    /// Checked against `kind` when the pipeline is published.
    #[serde(default)]
    pub default: Option<serde_json::Value>,
}

/// The types a parameter may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParameterType {
    String,
    Int,
    Float,
    Bool,
}

/// A file on a datastore: a data-path parameter's default, or what a submission assigns.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DataPath {
    pub datastore: String,
    /// Relative to the datastore's root.
    pub path: String,
}

/// One step as the file writes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    pub name: String,
    /// The program and its arguments; run as given, through a shell only if it is one.
    pub command: Vec<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Relative to the step's working area.
    #[serde(default)]
    pub working_directory: Option<String>,
    /// Input name to `step.output`: the folder another step wrote.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// Folders this step writes, for the steps after it.
    #[serde(default)]
    pub outputs: Vec<String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// How long the step may run, e.g. `10m` (the units of retention times: s, m, h, d).
    #[serde(default)]
    pub timeout: Option<String>,
    /// How many times a failed step is tried again.
    #[serde(default)]
    pub retries: u32,
    /// Whether a step with the same command, environment, parameters and inputs as an
    /// earlier completed one reuses its outputs (Azure ML's `allow_reuse`).
    #[serde(default = "reuse_by_default")]
    pub allow_reuse: bool,
}

fn reuse_by_default() -> bool {
    true
}
