//! Pipelines: a graph of steps, each a command, with typed parameters and data paths,
//! as a YAML file defines them ([`definition`]), checked whole when published
//! ([`Pipeline::parse`]) so that a run never meets an unknown reference, a cycle or a
//! value of the wrong type.
//!
//! ```
//! use mlgrid_core::pipeline::Pipeline;
//!
//! let pipeline = Pipeline::parse(r#"
//! name: retrain
//! parameters:
//!   epochs: {type: int, default: 3}
//! steps:
//!   - name: train
//!     command: ["sh", "-c", "echo ${parameters.epochs}"]
//! "#).unwrap();
//! assert_eq!(pipeline.steps[0].name, "train");
//! ```

pub mod definition;
pub mod progress;
pub mod template;
pub mod trigger;
pub mod values;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

pub use definition::{DataPath, ParameterType};
pub use template::{Placeholder, Template};
pub use values::ParameterValue;

use crate::retention::RetentionSpan;

/// A definition refused, naming what to fix, with the YAML line when the parser knows it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct DefinitionError {
    pub message: String,
    pub line: Option<usize>,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

fn refused(message: String) -> DefinitionError {
    DefinitionError { message, line: None }
}

/// A typed parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameter {
    pub kind: ParameterType,
    /// Without one, every submission must assign it.
    pub default: Option<ParameterValue>,
}

/// A step, checked: its placeholders name what exists, its inputs come from steps it
/// depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    pub command: Vec<Template>,
    pub environment: BTreeMap<String, Template>,
    pub working_directory: Option<Template>,
    /// Input name to the (step, output) it reads.
    pub inputs: BTreeMap<String, (String, String)>,
    pub outputs: Vec<String>,
    /// Every step it waits for: those named in `depends_on` and those it reads from.
    pub depends_on: BTreeSet<String>,
    pub timeout: Option<Duration>,
    pub retries: u32,
    pub allow_reuse: bool,
}

/// A pipeline, checked whole; its steps in an order that runs each after the steps it
/// depends on.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    pub name: String,
    pub description: String,
    pub parameters: BTreeMap<String, Parameter>,
    pub data_paths: BTreeMap<String, DataPath>,
    pub steps: Vec<Step>,
}

/// Whether `name` may name a parameter, data path, input or output: it also becomes an
/// environment variable's name (`MLGRID_PARAM_<NAME>`).
fn check_identifier(what: &str, name: &str) -> Result<(), DefinitionError> {
    let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 64;
    if ok {
        Ok(())
    } else {
        Err(refused(format!(
            "{what} `{name}` is not a valid name: use up to 64 letters, digits and `_`, not starting with a digit"
        )))
    }
}

impl Pipeline {
    /// Reads and checks a pipeline's YAML.
    pub fn parse(yaml: &str) -> Result<Pipeline, DefinitionError> {
        let file: definition::PipelineFile = serde_norway::from_str(yaml).map_err(|e| DefinitionError {
            line: e.location().map(|l| l.line()),
            message: format!("the pipeline file is not valid: {e}"),
        })?;
        Pipeline::check(file)
    }

    fn check(file: definition::PipelineFile) -> Result<Pipeline, DefinitionError> {
        crate::lifecycle::validate_asset_name("pipeline", &file.name).map_err(refused)?;
        let mut parameters = BTreeMap::new();
        let mut variables = BTreeSet::new();
        for (name, parameter) in file.parameters {
            check_identifier("parameter", &name)?;
            let default = match &parameter.default {
                None => None,
                Some(value) => Some(
                    parameter
                        .kind
                        .value(value)
                        .map_err(|e| refused(format!("the default of parameter `{name}`: {e}")))?,
                ),
            };
            if !variables.insert(name.to_ascii_uppercase()) {
                return Err(refused(format!(
                    "parameter `{name}` differs from another only in case; their environment variables would clash"
                )));
            }
            parameters.insert(
                name,
                Parameter {
                    kind: parameter.kind,
                    default,
                },
            );
        }
        for (name, path) in &file.data_paths {
            check_identifier("data path", name)?;
            if path.datastore.is_empty() || path.path.is_empty() {
                return Err(refused(format!("data path `{name}` needs both `datastore` and `path`")));
            }
        }
        if file.steps.is_empty() {
            return Err(refused(
                "the pipeline has no steps: add at least one under `steps`".into(),
            ));
        }
        let mut outputs_of: BTreeMap<&str, &[String]> = BTreeMap::new();
        for step in &file.steps {
            crate::lifecycle::validate_asset_name("step", &step.name).map_err(refused)?;
            if outputs_of.insert(&step.name, &step.outputs).is_some() {
                return Err(refused(format!(
                    "two steps are named `{}`: step names must differ",
                    step.name
                )));
            }
        }
        let mut steps = Vec::with_capacity(file.steps.len());
        for step in &file.steps {
            steps.push(check_step(step, &outputs_of, &parameters, &file.data_paths)?);
        }
        let steps = in_order(steps)?;
        Ok(Pipeline {
            name: file.name,
            description: file.description,
            parameters,
            data_paths: file.data_paths,
            steps,
        })
    }

    /// The value of every parameter for a submission assigning `assigned`: each checked
    /// against its type, the defaults for the rest. An unknown name, a value of the wrong
    /// type or a parameter left without a value is an error naming it.
    pub fn assign(
        &self,
        assigned: &BTreeMap<String, serde_json::Value>,
    ) -> Result<BTreeMap<String, ParameterValue>, String> {
        self.refuse_unknown("parameter", assigned.keys(), self.parameters.keys())?;
        let mut values = BTreeMap::new();
        for (name, parameter) in &self.parameters {
            let value = match assigned.get(name) {
                Some(value) => parameter
                    .kind
                    .value(value)
                    .map_err(|e| format!("parameter `{name}`: {e}"))?,
                None => parameter
                    .default
                    .clone()
                    .ok_or_else(|| format!("parameter `{name}` has no default: assign it a value"))?,
            };
            values.insert(name.clone(), value);
        }
        Ok(values)
    }

    /// The file of every data path for a submission assigning `assigned`: those
    /// assigned, the defaults for the rest. An unknown name is an error naming it.
    pub fn assign_data_paths(
        &self,
        mut assigned: BTreeMap<String, DataPath>,
    ) -> Result<BTreeMap<String, DataPath>, String> {
        self.refuse_unknown("data path", assigned.keys(), self.data_paths.keys())?;
        Ok(self
            .data_paths
            .iter()
            .map(|(name, default)| {
                let value = assigned.remove(name).unwrap_or_else(|| default.clone());
                (name.clone(), value)
            })
            .collect())
    }

    /// An error naming the first of `assigned` that is not among `known` (`what` they
    /// are), listing the known ones.
    fn refuse_unknown<'a>(
        &self,
        what: &str,
        mut assigned: impl Iterator<Item = &'a String>,
        known: impl Iterator<Item = &'a String>,
    ) -> Result<(), String> {
        let known: Vec<&str> = known.map(String::as_str).collect();
        match assigned.find(|name| !known.contains(&name.as_str())) {
            None => Ok(()),
            Some(unknown) => Err(format!(
                "pipeline `{}` has no {what} `{unknown}`; its {what}s are: {}",
                self.name,
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )),
        }
    }
}

/// Checks one step against the pipeline's parameters, data paths and steps.
fn check_step(
    step: &definition::StepFile,
    outputs_of: &BTreeMap<&str, &[String]>,
    parameters: &BTreeMap<String, Parameter>,
    data_paths: &BTreeMap<String, DataPath>,
) -> Result<Step, DefinitionError> {
    let name = &step.name;
    let at = |field: &str, message: String| refused(format!("step `{name}`, {field}: {message}"));
    if step.command.is_empty() {
        return Err(at("command", "is empty: give the program and its arguments".into()));
    }
    let mut outputs = BTreeSet::new();
    for output in &step.outputs {
        check_identifier("output", output).map_err(|e| at("outputs", e.message))?;
        if !outputs.insert(output) {
            return Err(at("outputs", format!("`{output}` is listed twice")));
        }
    }
    let mut depends_on = BTreeSet::new();
    for dependency in &step.depends_on {
        if dependency == name {
            return Err(at("depends_on", "a step cannot depend on itself".into()));
        }
        if !outputs_of.contains_key(dependency.as_str()) {
            return Err(at("depends_on", format!("there is no step `{dependency}`")));
        }
        depends_on.insert(dependency.clone());
    }
    let mut inputs = BTreeMap::new();
    for (input, source) in &step.inputs {
        check_identifier("input", input).map_err(|e| at("inputs", e.message))?;
        let Some((from, output)) = source.split_once('.') else {
            return Err(at(
                "inputs",
                format!("`{input}: {source}` must name a step's output as STEP.OUTPUT"),
            ));
        };
        let Some(declared) = outputs_of.get(from) else {
            return Err(at(
                "inputs",
                format!("`{input}` reads from `{from}`, and there is no such step"),
            ));
        };
        if from == name {
            return Err(at("inputs", format!("`{input}` reads the step's own output")));
        }
        if !declared.iter().any(|o| o == output) {
            return Err(at(
                "inputs",
                format!(
                    "step `{from}` has no output `{output}` (its outputs: {})",
                    declared.join(", ")
                ),
            ));
        }
        depends_on.insert(from.to_owned());
        inputs.insert(input.clone(), (from.to_owned(), output.to_owned()));
    }
    let template = |field: &str, text: &str| -> Result<Template, DefinitionError> {
        let template = Template::parse(text).map_err(|e| at(field, e))?;
        for placeholder in template.placeholders() {
            let known = match placeholder {
                Placeholder::Parameter(p) => parameters.contains_key(p),
                Placeholder::DataPath(d) => data_paths.contains_key(d),
                Placeholder::Input(i) => inputs.contains_key(i),
                Placeholder::Output(o) => outputs.contains(o),
            };
            if !known {
                return Err(at(field, format!("{placeholder} is not declared")));
            }
        }
        Ok(template)
    };
    let command = step
        .command
        .iter()
        .map(|arg| template("command", arg))
        .collect::<Result<_, _>>()?;
    let mut environment = BTreeMap::new();
    for (variable, value) in &step.environment {
        if variable.is_empty() || variable.contains(['=', '\0']) {
            return Err(at("environment", format!("`{variable}` is not a variable name")));
        }
        environment.insert(variable.clone(), template("environment", value)?);
    }
    let working_directory = step
        .working_directory
        .as_deref()
        .map(|dir| template("working_directory", dir))
        .transpose()?;
    let timeout = step
        .timeout
        .as_deref()
        .map(|t| {
            RetentionSpan::parse(t)
                .map(|span| Duration::from_secs(span.seconds()))
                .map_err(|e| at("timeout", e.to_string()))
        })
        .transpose()?;
    Ok(Step {
        name: name.clone(),
        command,
        environment,
        working_directory,
        inputs,
        outputs: step.outputs.clone(),
        depends_on,
        timeout,
        retries: step.retries,
        allow_reuse: step.allow_reuse,
    })
}

/// The steps in an order that runs each after its dependencies (Kahn's algorithm, in
/// file order among the ready ones); a cycle is an error that names its steps.
fn in_order(mut steps: Vec<Step>) -> Result<Vec<Step>, DefinitionError> {
    let mut done: BTreeSet<String> = BTreeSet::new();
    let mut ordered = Vec::with_capacity(steps.len());
    while !steps.is_empty() {
        let before = steps.len();
        let mut waiting = Vec::new();
        for step in steps {
            if step.depends_on.iter().all(|d| done.contains(d)) {
                done.insert(step.name.clone());
                ordered.push(step);
            } else {
                waiting.push(step);
            }
        }
        if waiting.len() == before {
            let names: Vec<&str> = waiting.iter().map(|s| s.name.as_str()).collect();
            return Err(refused(format!(
                "the steps {} depend on each other in a cycle: remove one of their depends_on or inputs",
                names.join(", ")
            )));
        }
        steps = waiting;
    }
    Ok(ordered)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The issue's example, as the README shows it.
    const RETRAIN: &str = include_str!("../../../../examples/retrain.yml");

    fn refusal(yaml: &str) -> String {
        Pipeline::parse(yaml).unwrap_err().to_string()
    }

    #[test]
    fn the_issues_example_reads_as_written() {
        let pipeline = Pipeline::parse(RETRAIN).unwrap();
        assert_eq!(pipeline.name, "retrain");
        assert_eq!(pipeline.parameters["epochs"].default, Some(ParameterValue::Int(3)));
        assert_eq!(pipeline.data_paths["input_data"].path, "raw/latest.csv");
        let train = &pipeline.steps[1];
        assert_eq!(train.name, "train");
        assert_eq!(train.inputs["data"], ("prep".to_owned(), "prepared".to_owned()));
        assert_eq!(train.timeout, Some(Duration::from_secs(600)));
        assert!(train.allow_reuse);
    }

    #[test]
    fn steps_come_after_what_they_read_whatever_the_file_order() {
        let pipeline = Pipeline::parse(
            r#"
name: p
steps:
  - {name: c, command: ["true"], inputs: {x: b.out}}
  - {name: b, command: ["true"], outputs: [out], depends_on: [a]}
  - {name: a, command: ["true"]}
"#,
        )
        .unwrap();
        let order: Vec<&str> = pipeline.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(order, ["a", "b", "c"]);
        assert!(pipeline.steps[2].depends_on.contains("b"), "an input is a dependency");
    }

    #[test]
    fn bad_definitions_are_refused_naming_the_step_and_field() {
        let cases = [
            (
                RETRAIN.replace("name: train", "name: prep"),
                "two steps are named `prep`",
            ),
            (
                RETRAIN.replace("depends_on: [prep]", "depends_on: [clean]"),
                "step `train`, depends_on: there is no step `clean`",
            ),
            (
                RETRAIN.replace("${parameters.epochs}", "${parameters.rounds}"),
                "step `train`, command: ${parameters.rounds} is not declared",
            ),
            (
                RETRAIN.replace("prep.prepared", "prep.cleaned"),
                "step `prep` has no output `cleaned`",
            ),
            (
                RETRAIN.replace("prep.prepared", "fetch.prepared"),
                "reads from `fetch`, and there is no such step",
            ),
            (
                RETRAIN.replace("default: 3", "default: three"),
                "the default of parameter `epochs`: expected a int",
            ),
            (
                RETRAIN.replace("timeout: 10m", "timeout: soon"),
                "step `train`, timeout:",
            ),
            (
                RETRAIN.replace("${outputs.model}", "${output.model}"),
                "placeholders are",
            ),
            (
                RETRAIN.replace("outputs: [prepared]", "outputs: [prepared]\n    depends_on: [train]"),
                "in a cycle",
            ),
        ];
        for (yaml, says) in cases {
            let message = refusal(&yaml);
            assert!(message.contains(says), "{says:?} not in {message:?}");
        }
    }

    #[test]
    fn malformed_yaml_says_the_line() {
        let error = Pipeline::parse("name: p\nsteps:\n  - name: a\n    command: [\"true\"\n").unwrap_err();
        assert!(error.line.is_some(), "{error}");
        assert!(error.to_string().starts_with("line "), "{error}");
        let unknown = Pipeline::parse("name: p\nstep: []\n").unwrap_err();
        assert!(unknown.message.contains("unknown field `step`"), "{unknown}");
    }

    #[test]
    fn submissions_are_checked_against_the_parameters() {
        let pipeline = Pipeline::parse(RETRAIN).unwrap();
        let assigned: BTreeMap<String, serde_json::Value> = [("epochs".to_owned(), json!("5"))].into();
        let values = pipeline.assign(&assigned).unwrap();
        assert_eq!(values["epochs"], ParameterValue::Int(5));
        assert_eq!(values["model_name"], ParameterValue::String("diabetes".into()));
        let unknown: BTreeMap<String, serde_json::Value> = [("lr".to_owned(), json!(1))].into();
        assert!(pipeline.assign(&unknown).unwrap_err().contains("no parameter `lr`"));
        let wrong: BTreeMap<String, serde_json::Value> = [("epochs".to_owned(), json!("many"))].into();
        assert!(
            pipeline
                .assign(&wrong)
                .unwrap_err()
                .contains("parameter `epochs`: expected a int")
        );
    }

    #[test]
    fn data_paths_take_their_defaults_unless_assigned_and_unknown_ones_are_refused() {
        let pipeline = Pipeline::parse(RETRAIN).unwrap();
        let defaults = pipeline.assign_data_paths(BTreeMap::new()).unwrap();
        assert_eq!(defaults["input_data"].path, "raw/latest.csv");
        let other = DataPath {
            datastore: "workspaceblobstore".into(),
            path: "raw/2024.csv".into(),
        };
        let assigned = pipeline
            .assign_data_paths(BTreeMap::from([("input_data".to_owned(), other.clone())]))
            .unwrap();
        assert_eq!(assigned["input_data"], other);
        let unknown = pipeline
            .assign_data_paths(BTreeMap::from([("labels".to_owned(), other)]))
            .unwrap_err();
        assert_eq!(
            unknown,
            "pipeline `retrain` has no data path `labels`; its data paths are: input_data"
        );
    }
}
