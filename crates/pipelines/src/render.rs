//! A step with one run's values: the process to start, as a [`StepSpec`].
//!
//! Parameter values can come from untrusted events, so a value never becomes code. In
//! the script of a shell (`sh -c SCRIPT`, where core's `shell_script_index` finds it) a
//! value is quoted as one word; in any other argument, and in every environment
//! variable, it is passed as it is, and no shell reads it. Which argument is the script
//! is decided on the arguments as the shell will see them, so a value cannot move the
//! script elsewhere; a shell flag that combines `c` with others (`bash -ec`) is refused,
//! since the script it introduces could not be found and quoted.
//!
//! The environment is not the server's: a step gets only
//! - the [`INHERITED_VARIABLES`] of the server that are set (so that programs are found
//!   and behave as on the command line, but no secret of the server, such as
//!   `MLGRID_SECRET` or a database URL, reaches a step),
//! - then the step's declared `environment`, rendered (it may replace those),
//! - then `MLGRID_PARAM_<NAME>` for every parameter, `MLGRID_DATA_<NAME>` for every data
//!   path (the local file), `MLGRID_INPUT_<NAME>` and `MLGRID_OUTPUT_<NAME>` for the
//!   step's input and output folders (`NAME` upper-cased), set last so that they always
//!   say the truth.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mlgrid_core::pipeline::template::{is_shell, shell_script_index};
use mlgrid_core::pipeline::{ParameterValue, Placeholder, Step};

use crate::layout::{LayoutError, RunLayout};

/// The variables of the server's environment a step inherits, when they are set.
pub const INHERITED_VARIABLES: [&str; 4] = ["PATH", "HOME", "LANG", "TMPDIR"];

/// A step ready to run: what any [`StepRunner`](crate::StepRunner) needs.
#[derive(Debug, Clone, PartialEq)]
pub struct StepSpec {
    pub step: String,
    pub program: String,
    pub args: Vec<String>,
    /// The whole environment of the process (nothing else is inherited).
    pub env: BTreeMap<String, String>,
    /// The step's folder, or its `working_directory` (relative to that folder).
    pub working_dir: PathBuf,
    pub timeout: Option<Duration>,
    pub stdout_log: PathBuf,
    pub stderr_log: PathBuf,
    /// Every data path of the run, as the local file it resolved to.
    pub data_paths: BTreeMap<String, PathBuf>,
    /// The step's inputs: the output folders of the steps it reads.
    pub inputs: BTreeMap<String, PathBuf>,
    /// The step's output folders.
    pub outputs: BTreeMap<String, PathBuf>,
}

/// A step that cannot be made into a process with the run's values.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("step `{step}` uses {placeholder}, and the run has no value for it: assign one when submitting")]
    Missing { step: String, placeholder: Placeholder },
    #[error(
        "parameter `{parameter}` contains a NUL byte, which no argument or environment variable can carry; \
         submit a value without it"
    )]
    Nul { parameter: String },
    #[error(
        "step `{step}`: the path of {placeholder} is not UTF-8 ({}); \
         use a data directory and datastore paths in UTF-8",
        .path.display()
    )]
    NotUtf8 {
        step: String,
        placeholder: Placeholder,
        path: PathBuf,
    },
    #[error(
        "step `{step}` runs `{program} {flag}`: write `-c` as an argument of its own (`{program} -e -c SCRIPT`), \
         so that the values put into the script can be quoted"
    )]
    CombinedShellFlag {
        step: String,
        program: String,
        flag: String,
    },
    #[error(transparent)]
    Layout(#[from] LayoutError),
}

/// A step's templates rendered with some values.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Rendered {
    pub argv: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub working_directory: Option<String>,
}

/// Renders the step's command, declared environment and working directory with
/// `values`, the script of a shell with its values quoted. Every placeholder the step
/// uses must have a value.
pub(crate) fn render_templates(step: &Step, values: &BTreeMap<Placeholder, String>) -> Result<Rendered, RenderError> {
    let templates = step
        .command
        .iter()
        .chain(step.environment.values())
        .chain(&step.working_directory);
    for template in templates {
        if let Some(missing) = template.placeholders().find(|p| !values.contains_key(*p)) {
            return Err(RenderError::Missing {
                step: step.name.clone(),
                placeholder: missing.clone(),
            });
        }
    }
    let plain: Vec<String> = step.command.iter().map(|t| t.render(values, false)).collect();
    let script = shell_script_index(&plain);
    if script.is_none()
        && let Some(flag) = combined_script_flag(&plain)
    {
        return Err(RenderError::CombinedShellFlag {
            step: step.name.clone(),
            program: plain[0].clone(),
            flag: flag.to_owned(),
        });
    }
    let argv = match script {
        Some(index) => {
            let mut argv = plain;
            argv[index] = step.command[index].render(values, true);
            argv
        }
        None => plain,
    };
    Ok(Rendered {
        argv,
        environment: step
            .environment
            .iter()
            .map(|(name, value)| (name.clone(), value.render(values, false)))
            .collect(),
        working_directory: step.working_directory.as_ref().map(|t| t.render(values, false)),
    })
}

/// A flag such as `-ec` by which a shell runs its next argument as a script; `None`
/// when the program is no shell or has `-c` on its own.
fn combined_script_flag(argv: &[String]) -> Option<&str> {
    if !is_shell(&argv[0]) || shell_script_index(argv).is_some() {
        return None;
    }
    let mut args = argv[1..].iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "-o" | "+o" => {
                args.next();
            }
            "-" | "--" | "-c" => return None,
            long if long.starts_with("--") => {}
            flags if flags.starts_with('-') && flags.contains('c') => return Some(flags),
            option if option.starts_with(['-', '+']) => {}
            _ => return None,
        }
    }
    None
}

fn utf8(step: &Step, placeholder: Placeholder, path: &Path) -> Result<(Placeholder, String), RenderError> {
    match path.to_str() {
        Some(text) => Ok((placeholder, text.to_owned())),
        None => Err(RenderError::NotUtf8 {
            step: step.name.clone(),
            placeholder,
            path: path.to_owned(),
        }),
    }
}

/// The process that runs `step` in `run`: `parameters` are every parameter's value
/// (core's `Pipeline::assign`), `data_paths` every data path's local file (from
/// [`Datastores`](crate::Datastores)). Input and output folders come from the run's
/// layout. Reads the [`INHERITED_VARIABLES`] from the server's environment.
///
/// Makes no folder: before the step runs, [`StepLayout::prepare`](crate::StepLayout::prepare)
/// makes its folder and empty output folders.
pub fn render_step(
    step: &Step,
    parameters: &BTreeMap<String, ParameterValue>,
    data_paths: &BTreeMap<String, PathBuf>,
    run: &RunLayout,
) -> Result<StepSpec, RenderError> {
    let folder = run.step(&step.name)?;
    let inputs = step
        .inputs
        .iter()
        .map(|(input, (from, output))| Ok((input.clone(), run.step(from)?.output(output)?)))
        .collect::<Result<BTreeMap<_, _>, LayoutError>>()?;
    let outputs = step
        .outputs
        .iter()
        .map(|output| Ok((output.clone(), folder.output(output)?)))
        .collect::<Result<BTreeMap<_, _>, LayoutError>>()?;

    let mut values = BTreeMap::new();
    for (name, value) in parameters {
        let text = value.to_string();
        if text.contains('\0') {
            return Err(RenderError::Nul {
                parameter: name.clone(),
            });
        }
        values.insert(Placeholder::Parameter(name.clone()), text);
    }
    for (name, path) in data_paths {
        let (placeholder, text) = utf8(step, Placeholder::DataPath(name.clone()), path)?;
        values.insert(placeholder, text);
    }
    for (name, path) in &inputs {
        let (placeholder, text) = utf8(step, Placeholder::Input(name.clone()), path)?;
        values.insert(placeholder, text);
    }
    for (name, path) in &outputs {
        let (placeholder, text) = utf8(step, Placeholder::Output(name.clone()), path)?;
        values.insert(placeholder, text);
    }
    let rendered = render_templates(step, &values)?;

    let mut env: BTreeMap<String, String> = INHERITED_VARIABLES
        .iter()
        .filter_map(|name| Some(((*name).to_owned(), std::env::var(name).ok()?)))
        .collect();
    env.extend(rendered.environment);
    for (placeholder, value) in values {
        let (prefix, name) = match &placeholder {
            Placeholder::Parameter(name) => ("MLGRID_PARAM_", name),
            Placeholder::DataPath(name) => ("MLGRID_DATA_", name),
            Placeholder::Input(name) => ("MLGRID_INPUT_", name),
            Placeholder::Output(name) => ("MLGRID_OUTPUT_", name),
        };
        env.insert(format!("{prefix}{}", name.to_ascii_uppercase()), value);
    }

    let mut argv = rendered.argv.into_iter();
    let program = argv.next().expect("a checked step has a command");
    Ok(StepSpec {
        step: step.name.clone(),
        program,
        args: argv.collect(),
        env,
        working_dir: match rendered.working_directory {
            Some(dir) => folder.dir().join(dir),
            None => folder.dir().to_owned(),
        },
        timeout: step.timeout,
        stdout_log: folder.stdout_log(),
        stderr_log: folder.stderr_log(),
        data_paths: data_paths.clone(),
        inputs,
        outputs,
    })
}

#[cfg(test)]
mod tests {
    use mlgrid_core::pipeline::Pipeline;

    use super::*;
    use crate::layout::DataLayout;

    const PIPELINE: &str = r#"
name: retrain
parameters:
  model_name: {type: string, default: diabetes}
  epochs: {type: int, default: 3}
data_paths:
  input_data: {datastore: workspaceblobstore, path: raw/latest.csv}
steps:
  - name: prep
    command: ["cp", "${data_paths.input_data}", "${outputs.prepared}/data.csv"]
    outputs: [prepared]
  - name: train
    command: ["sh", "-c", "echo ${parameters.model_name} > ${outputs.model}/name.txt", "sh", "${parameters.model_name}"]
    environment: {MODEL: "${parameters.model_name}", DATA: "${inputs.data}/data.csv"}
    working_directory: "work"
    inputs: {data: prep.prepared}
    outputs: [model]
    timeout: 10m
"#;

    fn parameters(model_name: &str) -> BTreeMap<String, ParameterValue> {
        [
            ("model_name".to_owned(), ParameterValue::String(model_name.to_owned())),
            ("epochs".to_owned(), ParameterValue::Int(3)),
        ]
        .into()
    }

    fn data_paths() -> BTreeMap<String, PathBuf> {
        [("input_data".to_owned(), PathBuf::from("/data/ds/raw/latest.csv"))].into()
    }

    fn run() -> RunLayout {
        DataLayout::new("/data").run("ws", "r1").unwrap()
    }

    #[test]
    fn paths_and_values_take_their_places() {
        let pipeline = Pipeline::parse(PIPELINE).unwrap();
        let prep = render_step(&pipeline.steps[0], &parameters("m"), &data_paths(), &run()).unwrap();
        assert_eq!(prep.program, "cp");
        assert_eq!(
            prep.args,
            [
                "/data/ds/raw/latest.csv",
                "/data/pipeline-runs/ws/r1/prep/outputs/prepared/data.csv"
            ]
        );
        assert_eq!(prep.working_dir, Path::new("/data/pipeline-runs/ws/r1/prep"));
        assert_eq!(prep.stdout_log, Path::new("/data/pipeline-runs/ws/r1/prep/stdout.log"));
        assert_eq!(prep.timeout, None);

        let train = render_step(&pipeline.steps[1], &parameters("m"), &data_paths(), &run()).unwrap();
        assert_eq!(
            train.inputs["data"],
            Path::new("/data/pipeline-runs/ws/r1/prep/outputs/prepared")
        );
        assert_eq!(train.working_dir, Path::new("/data/pipeline-runs/ws/r1/train/work"));
        assert_eq!(train.timeout, Some(Duration::from_secs(600)));
        assert_eq!(train.env["MODEL"], "m");
        assert_eq!(
            train.env["DATA"],
            "/data/pipeline-runs/ws/r1/prep/outputs/prepared/data.csv"
        );
        assert_eq!(train.env["MLGRID_PARAM_MODEL_NAME"], "m");
        assert_eq!(train.env["MLGRID_PARAM_EPOCHS"], "3");
        assert_eq!(train.env["MLGRID_DATA_INPUT_DATA"], "/data/ds/raw/latest.csv");
        assert_eq!(train.env["MLGRID_INPUT_DATA"], train.inputs["data"].to_str().unwrap());
        assert_eq!(
            train.env["MLGRID_OUTPUT_MODEL"],
            train.outputs["model"].to_str().unwrap()
        );
        assert!(
            !train.env.contains_key("MLGRID_OUTPUT_PREPARED"),
            "not this step's output"
        );
    }

    #[test]
    fn a_value_is_quoted_in_the_script_only() {
        let pipeline = Pipeline::parse(PIPELINE).unwrap();
        let hostile = r#"x"; touch "$HOME/pwned"; echo ""#;
        let train = render_step(&pipeline.steps[1], &parameters(hostile), &data_paths(), &run()).unwrap();
        assert_eq!(train.program, "sh");
        let quoted = mlgrid_core::pipeline::template::shell_quote(hostile);
        assert_eq!(
            train.args[1],
            format!("echo {quoted} > '/data/pipeline-runs/ws/r1/train/outputs/model'/name.txt")
        );
        assert_eq!(train.args[3], hostile, "an argument after the script is $1, as it is");
        assert_eq!(train.env["MODEL"], hostile, "environment values are never quoted");
        assert_eq!(train.env["MLGRID_PARAM_MODEL_NAME"], hostile);
    }

    #[test]
    fn a_value_cannot_make_a_shell_read_another_argument_as_its_script() {
        let pipeline = Pipeline::parse(
            r#"
name: p
parameters: {flag: {type: string}, text: {type: string}}
steps:
  - {name: s, command: ["sh", "${parameters.flag}", "echo ${parameters.text}"]}
"#,
        )
        .unwrap();
        let step = &pipeline.steps[0];
        let values = |flag: &str| -> BTreeMap<String, ParameterValue> {
            [
                ("flag".to_owned(), ParameterValue::String(flag.to_owned())),
                ("text".to_owned(), ParameterValue::String("$(touch pwned)".to_owned())),
            ]
            .into()
        };
        let spec = render_step(step, &values("-c"), &BTreeMap::new(), &run()).unwrap();
        assert_eq!(spec.args, ["-c", "echo '$(touch pwned)'"]);
        let error = render_step(step, &values("-ec"), &BTreeMap::new(), &run()).unwrap_err();
        assert!(matches!(error, RenderError::CombinedShellFlag { .. }), "{error}");
        assert!(
            error.to_string().contains("write `-c` as an argument of its own"),
            "{error}"
        );
        let spec = render_step(step, &values("-e"), &BTreeMap::new(), &run()).unwrap();
        assert_eq!(
            spec.args,
            ["-e", "echo $(touch pwned)"],
            "a script file's name, which sh does not run as code"
        );
    }

    #[test]
    fn combined_flags_are_found_among_the_options_only() {
        let argv = |a: &[&str]| a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(combined_script_flag(&argv(&["bash", "-ec", "x"])), Some("-ec"));
        assert_eq!(
            combined_script_flag(&argv(&["bash", "--norc", "-o", "pipefail", "-xc", "x"])),
            Some("-xc")
        );
        assert_eq!(combined_script_flag(&argv(&["bash", "-e", "-c", "x"])), None);
        assert_eq!(combined_script_flag(&argv(&["bash", "script.sh", "-ec"])), None);
        assert_eq!(combined_script_flag(&argv(&["python", "-cx", "print(1)"])), None);
    }

    #[test]
    fn missing_values_and_nul_bytes_are_refused_by_name() {
        let pipeline = Pipeline::parse(PIPELINE).unwrap();
        let error = render_step(&pipeline.steps[0], &parameters("m"), &BTreeMap::new(), &run()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "step `prep` uses ${data_paths.input_data}, and the run has no value for it: assign one when submitting"
        );
        let error = render_step(&pipeline.steps[0], &parameters("a\0b"), &data_paths(), &run()).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("parameter `model_name` contains a NUL byte"),
            "{error}"
        );
    }
}
