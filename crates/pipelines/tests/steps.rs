//! Steps of pipeline definitions rendered and run for real: one step's outputs read by
//! the next, hostile values that stay values, the `MLGRID_*` variables, and reuse keys
//! across runs in other folders.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mlgrid_core::pipeline::{ParameterValue, Pipeline};
use mlgrid_pipelines::{
    DataLayout, Datastores, ExitOutcome, LocalProcessRunner, RunLayout, StepRunner, StepSpec, copy_outputs,
    render_step, reuse_key,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const RETRAIN: &str = r#"
name: retrain
parameters:
  model_name: {type: string, default: diabetes}
  epochs: {type: int, default: 3}
data_paths:
  input_data: {datastore: workspaceblobstore, path: raw/latest.csv}
steps:
  - name: prep
    command: ["sh", "-c", "cp ${data_paths.input_data} ${outputs.prepared}/data.csv"]
    outputs: [prepared]
  - name: train
    command: ["sh", "-c", "cat ${inputs.data}/data.csv ${data_paths.input_data} > ${outputs.model}/model.txt; echo ${parameters.model_name} ${parameters.epochs} >> ${outputs.model}/model.txt"]
    inputs: {data: prep.prepared}
    outputs: [model]
    timeout: 10m
"#;

/// One pipeline run: its definition, values and folders.
struct Run {
    pipeline: Pipeline,
    parameters: BTreeMap<String, ParameterValue>,
    data_paths: BTreeMap<String, PathBuf>,
    layout: RunLayout,
}

impl Run {
    /// A run of `yaml` in `data_dir` with `assigned` parameters, its workspace's
    /// `raw/latest.csv` holding `csv`.
    async fn start(yaml: &str, data_dir: &Path, run_id: &str, csv: &str, assigned: serde_json::Value) -> Run {
        let pipeline = Pipeline::parse(yaml).unwrap();
        let data = DataLayout::new(data_dir);
        let store = data.datastore("workspaceblobstore").unwrap();
        std::fs::create_dir_all(store.join("raw")).unwrap();
        std::fs::write(store.join("raw/latest.csv"), csv).unwrap();
        let datastores = Datastores::new(&data, "ws").unwrap();
        let mut data_paths = BTreeMap::new();
        for (name, path) in &pipeline.data_paths {
            let local = datastores.resolve(&path.datastore, &path.path).await.unwrap();
            data_paths.insert(name.clone(), local);
        }
        let assigned: BTreeMap<String, serde_json::Value> = serde_json::from_value(assigned).unwrap();
        Run {
            parameters: pipeline.assign(&assigned).unwrap(),
            pipeline,
            data_paths,
            layout: data.run("ws", run_id).unwrap(),
        }
    }

    /// Runs step `name` to its end; returns its spec and how it ended.
    async fn step(&self, name: &str) -> (StepSpec, ExitOutcome) {
        let step = self.pipeline.steps.iter().find(|s| s.name == name).unwrap();
        self.layout.step(name).unwrap().prepare(&step.outputs).await.unwrap();
        let spec = render_step(step, &self.parameters, &self.data_paths, &self.layout).unwrap();
        let exit = LocalProcessRunner.run(&spec, CancellationToken::new()).await;
        (spec, exit.outcome)
    }

    async fn key(&self, name: &str, spec: &StepSpec) -> String {
        let step = self.pipeline.steps.iter().find(|s| s.name == name).unwrap();
        reuse_key(&self.pipeline.name, step, &self.parameters, spec)
            .await
            .unwrap()
    }

    /// Runs every step in order; returns each one's reuse key.
    async fn all(&self) -> Vec<String> {
        let mut keys = Vec::new();
        for step in &self.pipeline.steps {
            let (spec, outcome) = self.step(&step.name).await;
            assert_eq!(outcome, ExitOutcome::Succeeded, "step {}", step.name);
            keys.push(self.key(&step.name, &spec).await);
        }
        keys
    }
}

#[tokio::test]
async fn a_step_reads_what_the_step_before_wrote() {
    let data = tempfile::tempdir().unwrap();
    let run = Run::start(RETRAIN, data.path(), "run-1", "a,b\n", json!({"epochs": "5"})).await;
    run.all().await;
    let model = run
        .layout
        .step("train")
        .unwrap()
        .output("model")
        .unwrap()
        .join("model.txt");
    assert_eq!(std::fs::read_to_string(model).unwrap(), "a,b\na,b\ndiabetes 5\n");
}

#[tokio::test]
async fn hostile_values_are_printed_and_never_run() {
    let home = tempfile::tempdir().unwrap();
    let yaml = format!(
        r#"
name: hostile
parameters: {{model_name: {{type: string}}}}
steps:
  - name: script
    command: ["sh", "-c", "echo ${{parameters.model_name}}"]
    environment: {{HOME: "{home}"}}
  - name: argument
    command: ["printf", "%s\n", "${{parameters.model_name}}"]
    environment: {{HOME: "{home}"}}
  - name: environment
    command: ["sh", "-c", "printenv MLGRID_PARAM_MODEL_NAME; printenv NAME"]
    environment: {{HOME: "{home}", NAME: "${{parameters.model_name}}"}}
"#,
        home = home.path().display()
    );
    let data = tempfile::tempdir().unwrap();
    let pwned = home.path().join("pwned");
    for hostile in [
        r#"x"; touch "$HOME/pwned"; echo ""#,
        r#"x`touch "$HOME/pwned"`"#,
        r#"x$(touch "$HOME/pwned")"#,
        r#"x'; touch "$HOME/pwned"; echo '"#,
    ] {
        let run = Run::start(&yaml, data.path(), "run-1", "", json!({ "model_name": hostile })).await;
        for (step, printed) in [
            ("script", format!("{hostile}\n")),
            ("argument", format!("{hostile}\n")),
            ("environment", format!("{hostile}\n{hostile}\n")),
        ] {
            let (spec, outcome) = run.step(step).await;
            assert_eq!(outcome, ExitOutcome::Succeeded, "{step}: {hostile}");
            assert_eq!(std::fs::read_to_string(&spec.stdout_log).unwrap(), printed, "{step}");
            assert!(!pwned.exists(), "{step}: {hostile} ran");
        }
    }
}

#[tokio::test]
async fn every_parameter_data_path_input_and_output_is_in_the_environment() {
    let yaml = RETRAIN.replace(
        r#"command: ["sh", "-c", "cat ${inputs.data}"#,
        r#"command: ["sh", "-c", "printenv MLGRID_PARAM_MODEL_NAME MLGRID_PARAM_EPOCHS MLGRID_DATA_INPUT_DATA MLGRID_INPUT_DATA MLGRID_OUTPUT_MODEL; : ${inputs.data}"#,
    );
    let data = tempfile::tempdir().unwrap();
    let run = Run::start(&yaml, data.path(), "run-1", "a,b\n", json!({})).await;
    run.step("prep").await;
    let (spec, outcome) = run.step("train").await;
    assert_eq!(outcome, ExitOutcome::Succeeded);
    let printed = std::fs::read_to_string(&spec.stdout_log).unwrap();
    let expected = format!(
        "diabetes\n3\n{}\n{}\n{}\n",
        spec.data_paths["input_data"].display(),
        spec.inputs["data"].display(),
        spec.outputs["model"].display()
    );
    assert_eq!(printed, expected);
}

#[tokio::test]
async fn identical_runs_in_other_folders_share_reuse_keys_and_other_data_does_not() {
    let (one, two, three) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let first = Run::start(RETRAIN, one.path(), "run-1", "a,b\n1,2\n", json!({})).await;
    let same = Run::start(RETRAIN, two.path(), "run-2", "a,b\n1,2\n", json!({})).await;
    let first_keys = first.all().await;
    assert_eq!(first_keys, same.all().await, "same work in other folders");
    assert!(
        first_keys
            .iter()
            .all(|k| k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()))
    );
    assert_ne!(first_keys[0], first_keys[1], "steps differ");

    let other_data = Run::start(RETRAIN, three.path(), "run-3", "a,b\n1,3\n", json!({})).await;
    let other_keys = other_data.all().await;
    assert_ne!(other_keys[0], first_keys[0], "prep's data path changed");
    assert_ne!(other_keys[1], first_keys[1], "train's input and data path changed");

    let other_epochs = Run::start(RETRAIN, three.path(), "run-4", "a,b\n1,2\n", json!({"epochs": 4})).await;
    let epochs_keys = other_epochs.all().await;
    assert_ne!(
        epochs_keys[0], first_keys[0],
        "every parameter counts: a step sees them all"
    );
    assert_ne!(epochs_keys[1], first_keys[1]);
}

#[tokio::test]
async fn an_input_file_changed_changes_the_key() {
    let data = tempfile::tempdir().unwrap();
    let run = Run::start(RETRAIN, data.path(), "run-1", "a,b\n", json!({})).await;
    run.step("prep").await;
    let (spec, _) = run.step("train").await;
    let before = run.key("train", &spec).await;
    assert_eq!(run.key("train", &spec).await, before, "the same contents, the same key");
    std::fs::write(spec.inputs["data"].join("data.csv"), "a,b\n9,9\n").unwrap();
    assert_ne!(run.key("train", &spec).await, before);
}

#[tokio::test]
async fn a_reused_steps_outputs_are_there_for_the_next_steps() {
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = Run::start(RETRAIN, one.path(), "run-1", "a,b\n", json!({})).await;
    first.all().await;
    let second = Run::start(RETRAIN, two.path(), "run-2", "a,b\n", json!({})).await;
    let prep = second.layout.step("prep").unwrap();
    prep.prepare(&["prepared".to_owned()]).await.unwrap();
    let earlier = first.layout.step("prep").unwrap().output("prepared").unwrap();
    copy_outputs(&earlier, &prep.output("prepared").unwrap()).await.unwrap();
    let (_, outcome) = second.step("train").await;
    assert_eq!(outcome, ExitOutcome::Succeeded);
    let model = second
        .layout
        .step("train")
        .unwrap()
        .output("model")
        .unwrap()
        .join("model.txt");
    assert_eq!(std::fs::read_to_string(model).unwrap(), "a,b\na,b\ndiabetes 3\n");
}
