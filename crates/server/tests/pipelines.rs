//! Published pipelines through the API: definitions checked on publish, versions,
//! endpoints, submissions checked whole, runs executed with their events, pipeline
//! triggers, and values from events that never become code.

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::TestApi;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const RETRAIN: &str = r#"name: retrain
description: Retrain on new data
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
    command: ["sh", "-c", "echo ${parameters.model_name} ${parameters.epochs} > ${outputs.model}/model.txt; cat ${outputs.model}/model.txt"]
    inputs: {data: prep.prepared}
    outputs: [model]
    depends_on: [prep]
    timeout: 10m
"#;

/// An API with workspace `ws` and the retrain pipeline's input file in its datastore.
async fn api() -> TestApi {
    let api = TestApi::new().await;
    api.ok("POST", "/v1/workspaces", json!({"name": "mlws"})).await;
    let raw = api.state.config.datastore_root.join("workspaceblobstore/raw");
    std::fs::create_dir_all(&raw).unwrap();
    std::fs::write(raw.join("latest.csv"), "a,b\n1,2\n").unwrap();
    api
}

async fn publish(api: &TestApi, yaml: &str) -> Value {
    api.ok("POST", "/v1/workspaces/mlws/pipelines", json!({"definition": yaml}))
        .await
}

/// Runs the executor of the API's node until the returned token is cancelled.
fn execute(api: &TestApi) -> CancellationToken {
    let stop = CancellationToken::new();
    tokio::spawn(api.state.executor.clone().run(stop.clone()));
    stop
}

/// Waits for a pipeline run to end and returns it with its steps.
async fn finished(api: &TestApi, run_id: &str) -> Value {
    for _ in 0..400 {
        let run = api
            .call("GET", &format!("/v1/workspaces/mlws/pipeline-runs/{run_id}"), None)
            .await;
        assert_eq!(run.status, StatusCode::OK, "{}", run.body);
        if matches!(
            run.body["run"]["status"].as_str(),
            Some("Completed" | "Failed" | "Canceled")
        ) {
            return run.body;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("run {run_id} did not finish");
}

async fn log(api: &TestApi, run_id: &str, step: &str, stream: &str) -> String {
    let reply = api
        .call(
            "GET",
            &format!("/v1/workspaces/mlws/pipeline-runs/{run_id}/logs?step={step}&stream={stream}"),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body.as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn a_definition_that_does_not_check_is_refused_naming_what_to_fix() {
    let api = api().await;
    let cases = [
        ("name: x\nsteps: [", "line"),
        (
            "name: x\nsteps:\n  - {name: a, command: [\"true\"], depends_on: [b]}\n  - {name: b, command: [\"true\"], depends_on: [a]}\n",
            "cycle",
        ),
        (
            "name: x\nsteps:\n  - {name: a, command: [\"echo\", \"${parameters.nope}\"]}\n",
            "step `a`, command",
        ),
        (
            "name: x\nsteps:\n  - {name: a, command: [\"true\"]}\n  - {name: a, command: [\"true\"]}\n",
            "two steps are named `a`",
        ),
        (
            "name: x\ndata_paths:\n  d: {datastore: elsewhere, path: f.csv}\nsteps:\n  - {name: a, command: [\"true\"]}\n",
            "elsewhere",
        ),
    ];
    for (yaml, expected) in cases {
        let reply = api
            .call(
                "POST",
                "/v1/workspaces/mlws/pipelines",
                Some(json!({"definition": yaml})),
            )
            .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{yaml}: {}", reply.body);
        assert!(reply.message().contains(expected), "{yaml}: {}", reply.message());
    }
    let listed = api.call("GET", "/v1/workspaces/mlws/pipelines", None).await;
    assert_eq!(listed.body["value"], json!([]), "nothing half-created");
}

#[tokio::test]
async fn versions_count_up_and_a_disabled_pipeline_refuses_submissions() {
    let api = api().await;
    let first = publish(&api, RETRAIN).await;
    let second = publish(&api, RETRAIN).await;
    assert_eq!(
        (first["version"].as_str(), second["version"].as_str()),
        (Some("1"), Some("2"))
    );
    let id = first["id"].as_str().unwrap();
    assert!(
        first["endpoint"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/workspaces/mlws/pipelines/{id}/submit")),
        "{first}"
    );
    let taken = api
        .call(
            "POST",
            "/v1/workspaces/mlws/pipelines",
            Some(json!({"definition": RETRAIN, "version": "2"})),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);

    let disabled = api
        .ok(
            "POST",
            &format!("/v1/workspaces/mlws/pipelines/{id}/disable"),
            json!({}),
        )
        .await;
    assert_eq!(disabled["enabled"], json!(false));
    let body = json!({"ExperimentName": "e"});
    let refused = api
        .call(
            "POST",
            &format!("/v1/workspaces/mlws/pipelines/{id}/submit"),
            Some(body.clone()),
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{}", refused.body);
    assert!(refused.message().contains("disabled"), "{}", refused.message());
    api.ok("POST", &format!("/v1/workspaces/mlws/pipelines/{id}/enable"), json!({}))
        .await;
    let accepted = api
        .call(
            "POST",
            &format!("/v1/workspaces/mlws/pipelines/{id}/submit"),
            Some(body),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::OK, "{}", accepted.body);
    assert!(accepted.body["Id"].is_string());
}

#[tokio::test]
async fn submissions_are_checked_whole_before_anything_is_created() {
    let api = api().await;
    let id = publish(&api, RETRAIN).await["id"].as_str().unwrap().to_owned();
    let submit = format!("/v1/workspaces/mlws/pipelines/{id}/submit");
    let cases = [
        (
            json!({"ExperimentName": "e", "ParameterAssignments": {"nope": 1}}),
            "no parameter `nope`",
        ),
        (
            json!({"ExperimentName": "e", "ParameterAssignments": {"epochs": "three"}}),
            "epochs",
        ),
        (
            json!({"ExperimentName": "e", "DataPathAssignments": {"input_data": {"DataStoreName": "workspaceblobstore", "RelativePath": "raw/missing.csv"}}}),
            "raw/missing.csv",
        ),
        (
            json!({"ExperimentName": "e", "DataPathAssignments": {"input_data": {"DataStoreName": "nowhere", "RelativePath": "raw/latest.csv"}}}),
            "nowhere",
        ),
        (
            json!({"ExperimentName": "e", "DataPathAssignments": {"input_data": {"DataStoreName": "workspaceblobstore", "RelativePath": "../../../etc/passwd"}}}),
            "input_data",
        ),
    ];
    for (body, expected) in cases {
        let reply = api.call("POST", &submit, Some(body.clone())).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{body}: {}", reply.body);
        assert!(reply.message().contains(expected), "{body}: {}", reply.message());
    }
    let runs = api.call("GET", "/v1/workspaces/mlws/runs", None).await;
    assert_eq!(runs.body["value"], json!([]), "no run was created");

    // Another workspace does not see the pipeline.
    api.ok("POST", "/v1/workspaces", json!({"name": "other"})).await;
    let elsewhere = api
        .call(
            "POST",
            &format!("/v1/workspaces/other/pipelines/{id}/submit"),
            Some(json!({"ExperimentName": "e"})),
        )
        .await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND, "{}", elsewhere.body);
}

#[tokio::test]
async fn an_endpoint_submits_to_its_default_pipeline() {
    let api = api().await;
    let v1 = publish(&api, RETRAIN).await["id"].as_str().unwrap().to_owned();
    let v2 = publish(&api, RETRAIN).await["id"].as_str().unwrap().to_owned();
    let created = api
        .call(
            "POST",
            "/v1/workspaces/mlws/pipeline-endpoints",
            Some(json!({"name": "retrain", "pipelineId": v1})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let submit = |body| {
        api.call(
            "POST",
            "/v1/workspaces/mlws/pipeline-endpoints/retrain/submit",
            Some(body),
        )
    };
    let first = submit(json!({"ExperimentName": "e"})).await;
    assert_eq!(first.body["PipelineId"], json!(v1), "{}", first.body);
    let switched = api
        .call(
            "PUT",
            "/v1/workspaces/mlws/pipeline-endpoints/retrain/default",
            Some(json!({"pipelineId": v2})),
        )
        .await;
    assert_eq!(switched.status, StatusCode::OK, "{}", switched.body);
    let second = submit(json!({"ExperimentName": "e"})).await;
    assert_eq!(second.body["PipelineId"], json!(v2), "{}", second.body);
    let unknown = api
        .call(
            "PUT",
            "/v1/workspaces/mlws/pipeline-endpoints/retrain/default",
            Some(json!({"pipelineId": "no-such-pipeline"})),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.body);
}

#[tokio::test]
async fn a_run_executes_its_steps_in_order_and_raises_their_events() {
    let api = api().await;
    let id = publish(&api, RETRAIN).await["id"].as_str().unwrap().to_owned();
    let stop = execute(&api);
    let body = json!({"ExperimentName": "retrain", "ParameterAssignments": {"model_name": "wine", "epochs": "5"}, "RunSource": "SDK"});
    let submitted = api
        .ok("POST", &format!("/v1/workspaces/mlws/pipelines/{id}/submit"), body)
        .await;
    let run_id = submitted["Id"].as_str().unwrap();
    let run = finished(&api, run_id).await;
    assert_eq!(run["run"]["status"], json!("Completed"), "{run}");
    assert_eq!(run["run"]["runType"], json!("azureml.PipelineRun"));
    let states: Vec<&str> = run["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["Completed", "Completed"]);
    assert_eq!(log(&api, run_id, "train", "stdout").await, "wine 5\n");

    let events = api.events("workspaces", "mlws", "limit=100").await;
    let completed: Vec<&str> = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"]["eventType"] == "Microsoft.MachineLearningServices.RunCompleted")
        .map(|e| e["event"]["data"]["RunType"].as_str().unwrap())
        .collect();
    assert_eq!(completed, ["azureml.StepRun", "azureml.StepRun", "azureml.PipelineRun"]);
    stop.cancel();
}

#[tokio::test]
async fn a_command_that_does_not_exist_fails_its_run_and_says_so() {
    let api = api().await;
    let yaml = "name: broken\nsteps:\n  - {name: a, command: [\"mlgrid-no-such-program\"]}\n  - {name: b, command: [\"true\"], depends_on: [a]}\n";
    let id = publish(&api, yaml).await["id"].as_str().unwrap().to_owned();
    let stop = execute(&api);
    let submitted = api
        .ok(
            "POST",
            &format!("/v1/workspaces/mlws/pipelines/{id}/submit"),
            json!({"ExperimentName": "e"}),
        )
        .await;
    let run_id = submitted["Id"].as_str().unwrap();
    let run = finished(&api, run_id).await;
    assert_eq!(run["run"]["status"], json!("Failed"), "{run}");
    assert_eq!(run["steps"][1]["state"], json!("Canceled"), "{run}");
    let stderr = log(&api, run_id, "a", "stderr").await;
    assert!(stderr.contains("command not found"), "{stderr}");
    let events = api.events("workspaces", "mlws", "limit=100").await;
    assert!(
        events["events"].as_array().unwrap().iter().any(|e| {
            e["event"]["eventType"] == "Microsoft.MachineLearningServices.RunStatusChanged"
                && e["event"]["data"]["RunId"] == json!(run_id)
        }),
        "{events}"
    );
    // The server goes on: another run of a good pipeline completes.
    let good = publish(&api, "name: good\nsteps:\n  - {name: a, command: [\"true\"]}\n").await;
    let submitted = api
        .ok(
            "POST",
            &format!("/v1/workspaces/mlws/pipelines/{}/submit", good["id"].as_str().unwrap()),
            json!({"ExperimentName": "e"}),
        )
        .await;
    assert_eq!(
        finished(&api, submitted["Id"].as_str().unwrap()).await["run"]["status"],
        json!("Completed")
    );
    stop.cancel();
}

/// The issue's hostile values: each reaches the step as one word, and no file appears.
#[tokio::test]
async fn values_from_events_never_become_code() {
    let api = api().await;
    let home = tempfile::tempdir().unwrap();
    let yaml = format!(
        "name: echo\nparameters:\n  model_name: {{type: string}}\nsteps:\n  - name: say\n    command: [\"sh\", \"-c\", \"echo ${{parameters.model_name}}\"]\n    environment: {{HOME: {}}}\n    allow_reuse: false\n",
        home.path().display()
    );
    let id = publish(&api, &yaml).await["id"].as_str().unwrap().to_owned();
    api.ok("POST", "/v1/topics", json!({"name": "incoming"})).await;
    let trigger = json!({"properties": {
        "destination": {"endpointType": "Pipeline", "properties": {
            "pipeline": id, "workspace": "mlws", "experimentName": "hostile",
            "parameterAssignments": {"model_name": "${data.ModelName}"}
        }}
    }});
    let created = api
        .call("PUT", "/v1/topics/incoming/eventSubscriptions/trigger", Some(trigger))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);

    let hostile = [
        r#"x"; touch "$HOME/pwned"; echo ""#,
        r#"x`touch "$HOME/pwned"`"#,
        r#"x$(touch "$HOME/pwned")"#,
    ];
    let events: Vec<Value> = hostile
        .iter()
        .enumerate()
        .map(|(n, name)| {
            json!({"id": format!("e{n}"), "subject": "models/x", "eventType": "ModelRegistered",
                   "eventTime": "2026-12-01T00:00:00Z", "dataVersion": "1", "data": {"ModelName": name}})
        })
        .collect();
    // A whole node: its fan-out and dispatcher deliver the events to the trigger, its
    // executor runs the steps.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = tokio::spawn(mlgrid_server::run_node(listener, api.state.clone(), async move {
        let _ = stopped.await;
    }));
    api.publish("incoming", Value::Array(events)).await;
    let mut printed = Vec::new();
    for _ in 0..400 {
        let runs = api
            .call("GET", "/v1/workspaces/mlws/runs?experiment=hostile", None)
            .await;
        let pipeline_runs: Vec<String> = runs.body["value"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["runType"] == "azureml.PipelineRun")
            .map(|r| r["runId"].as_str().unwrap().to_owned())
            .collect();
        if pipeline_runs.len() == hostile.len() {
            for run_id in &pipeline_runs {
                assert_eq!(finished(&api, run_id).await["run"]["status"], json!("Completed"));
                printed.push(log(&api, run_id, "say", "stdout").await);
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    printed.sort();
    let mut expected: Vec<String> = hostile.iter().map(|h| format!("{h}\n")).collect();
    expected.sort();
    assert_eq!(printed, expected, "each value is printed as it is");
    assert!(!home.path().join("pwned").exists(), "a value ran as code");
    stop.send(()).unwrap();
    node.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_step_whose_work_is_unchanged_reuses_the_earlier_outputs() {
    let api = api().await;
    let yaml = "name: counted\nsteps:\n  - name: count\n    command: [\"sh\", \"-c\", \"date +%s%N > ${outputs.out}/stamp\"]\n    outputs: [out]\n  - name: show\n    command: [\"cat\", \"${inputs.stamp}/stamp\"]\n    inputs: {stamp: count.out}\n    allow_reuse: false\n";
    let id = publish(&api, yaml).await["id"].as_str().unwrap().to_owned();
    let stop = execute(&api);
    let submit = format!("/v1/workspaces/mlws/pipelines/{id}/submit");
    let first = api.ok("POST", &submit, json!({"ExperimentName": "e"})).await;
    let first = finished(&api, first["Id"].as_str().unwrap()).await;
    let second = api.ok("POST", &submit, json!({"ExperimentName": "e"})).await;
    let second = finished(&api, second["Id"].as_str().unwrap()).await;
    assert_eq!(second["run"]["status"], json!("Completed"), "{second}");
    assert_eq!(second["steps"][0]["reusedFrom"], first["steps"][0]["runId"], "{second}");
    assert_eq!(
        second["steps"][1]["reusedFrom"],
        Value::Null,
        "allow_reuse: false runs again"
    );
    let (run1, run2) = (
        first["run"]["runId"].as_str().unwrap(),
        second["run"]["runId"].as_str().unwrap(),
    );
    assert_eq!(
        log(&api, run1, "show", "stdout").await,
        log(&api, run2, "show", "stdout").await,
        "the second run read the first one's output"
    );
    stop.cancel();
}
