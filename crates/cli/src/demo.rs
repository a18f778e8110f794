//! `mlgrid demo`: the whole loop, end to end, on a throw-away server. A webhook receiver
//! in this process subscribes to a workspace; a model is registered and the receiver
//! prints its event; that event triggers a published pipeline, whose steps run and log;
//! the pipeline run's RunCompleted reaches the receiver; then a file dropped into the
//! workspace's datastore starts the pipeline again, through a change schedule, on that
//! file. Exits 0 once both loops closed.

use std::time::Duration;

use anyhow::{Context, bail};
use axum::Json;
use axum::extract::State;
use axum::routing::post;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::bench::local_server::{ClusterArgs, LocalCluster};
use crate::client::Client;

/// The demo's pipeline: the issue's example, as a user would write it.
pub const PIPELINE: &str = r#"name: retrain
description: Retrain on new data
parameters:
  model_name: {type: string, default: diabetes}
  epochs: {type: int, default: 3}
data_paths:
  input_data: {datastore: workspaceblobstore, path: raw/latest.csv}
steps:
  - name: prep
    command: ["sh", "-c", "cp ${data_paths.input_data} ${outputs.prepared}/data.csv && wc -l < ${outputs.prepared}/data.csv"]
    outputs: [prepared]
  - name: train
    command: ["sh", "-c", "echo training ${parameters.model_name} for ${parameters.epochs} epochs on $(wc -l < ${inputs.data}/data.csv) rows; echo ${parameters.model_name} > ${outputs.model}/model.txt"]
    inputs: {data: prep.prepared}
    outputs: [model]
    depends_on: [prep]
    timeout: 10m
"#;

/// How long the loop may take before the demo gives up.
const DEADLINE: Duration = Duration::from_secs(60);

fn say(step: &str, what: impl std::fmt::Display) {
    println!("demo: {step:<10} {what}");
}

/// The receiver: answers Event Grid's validation handshake, passes every other event on.
async fn receive(State(events): State<mpsc::UnboundedSender<Value>>, Json(batch): Json<Value>) -> Json<Value> {
    for event in batch.as_array().into_iter().flatten() {
        if event["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent" {
            return Json(json!({"validationResponse": event["data"]["validationCode"]}));
        }
        let _ = events.send(event.clone());
    }
    Json(json!({}))
}

async fn start_receiver() -> anyhow::Result<(String, mpsc::UnboundedReceiver<Value>)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().route("/events", post(receive)).with_state(tx);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/events", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, rx))
}

/// Waits for the receiver's next event that `wanted` accepts, printing each one.
async fn next_event(
    events: &mut mpsc::UnboundedReceiver<Value>,
    wanted: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    loop {
        let event = tokio::time::timeout(DEADLINE, events.recv())
            .await
            .context("no event reached the receiver in time")?
            .context("the receiver stopped")?;
        say(
            "receiver",
            format!(
                "got {} for {}",
                event["eventType"].as_str().unwrap_or("?"),
                event["subject"].as_str().unwrap_or("?")
            ),
        );
        if wanted(&event) {
            return Ok(event);
        }
    }
}

pub async fn run() -> anyhow::Result<()> {
    let cluster = LocalCluster::start(
        &ClusterArgs {
            database_url: None,
            nodes: 1,
        },
        // The change schedule polls every second, so the demo need not wait a minute.
        &["--allow-loopback-webhooks", "--min-polling-seconds", "1"],
    )
    .await?;
    say("server", cluster.started());
    let client = Client::with_key(&cluster.urls()[0], &cluster.api_key);
    let ws = "/v1/workspaces/demo";

    client.post("/v1/workspaces", &json!({"name": "demo"})).await?;
    say("workspace", "created `demo`");

    let (receiver, mut events) = start_receiver().await?;
    let webhook = json!({"properties": {
        "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": receiver}},
        "filter": {"includedEventTypes": [
            "Microsoft.MachineLearningServices.ModelRegistered",
            "Microsoft.MachineLearningServices.RunCompleted",
            "Microsoft.MachineLearningServices.RunStatusChanged"
        ]}
    }});
    client
        .call(
            Method::PUT,
            &format!("{ws}/eventSubscriptions/receiver"),
            Some(&webhook),
        )
        .await?;
    say(
        "subscribe",
        format!("webhook {receiver} validated; it receives ModelRegistered and run events"),
    );

    let data = cluster.data_dir().join("datastores/workspaceblobstore/raw");
    std::fs::create_dir_all(&data)?;
    std::fs::write(
        data.join("latest.csv"),
        "age,bmi,target\n59,32.1,151\n48,21.6,75\n72,30.5,141\n",
    )?;
    let published = client
        .post(&format!("{ws}/pipelines"), &json!({"definition": PIPELINE}))
        .await?;
    let pipeline_id = published["id"]
        .as_str()
        .context("the publish answer has no id")?
        .to_owned();
    say(
        "publish",
        format!(
            "pipeline `retrain` version {} at {}",
            published["version"].as_str().unwrap_or("?"),
            published["endpoint"].as_str().unwrap_or("?")
        ),
    );

    let trigger = json!({"properties": {
        "destination": {"endpointType": "Pipeline", "properties": {
            "pipeline": pipeline_id,
            "experimentName": "retrain-on-register",
            "parameterAssignments": {"model_name": "${data.ModelName}"}
        }},
        "filter": {"includedEventTypes": ["Microsoft.MachineLearningServices.ModelRegistered"]}
    }});
    client
        .call(
            Method::PUT,
            &format!("{ws}/eventSubscriptions/retrain-trigger"),
            Some(&trigger),
        )
        .await?;
    say(
        "trigger",
        "ModelRegistered events now submit `retrain` with model_name = ${data.ModelName}",
    );

    client
        .post(&format!("{ws}/models"), &json!({"name": "diabetes"}))
        .await?;
    say("register", "model `diabetes` version 1");
    next_event(&mut events, |e| {
        e["eventType"] == "Microsoft.MachineLearningServices.ModelRegistered"
    })
    .await?;

    let completed = next_event(&mut events, |e| e["data"]["RunType"] == "azureml.PipelineRun").await?;
    show_pipeline_run(&client, ws, &completed).await?;
    say(
        "done",
        "the registered model's pipeline run completed and its RunCompleted reached the receiver",
    );

    let schedule = json!({
        "pipelineId": pipeline_id,
        "experimentName": "retrain-on-data",
        "datastore": "workspaceblobstore",
        "pathOnDatastore": "incoming",
        "pollingIntervalSeconds": 1,
        "dataPathParameterName": "input_data",
    });
    client
        .call(Method::PUT, &format!("{ws}/schedules/on-new-data"), Some(&schedule))
        .await?;
    say(
        "schedule",
        "change schedule `on-new-data` watches workspaceblobstore/incoming; each new file runs `retrain` on it",
    );
    let incoming = cluster.data_dir().join("datastores/workspaceblobstore/incoming");
    std::fs::create_dir_all(&incoming)?;
    std::fs::write(
        incoming.join("batch-2.csv"),
        "age,bmi,target\n33,22.3,97\n61,27.8,160\n45,25.1,110\n52,31.4,135\n29,20.9,80\n",
    )?;
    say(
        "drop",
        "incoming/batch-2.csv (a header and 5 rows) written to the datastore",
    );
    let completed = next_event(&mut events, |e| {
        e["data"]["RunType"] == "azureml.PipelineRun" && e["data"]["ExperimentName"] == "retrain-on-data"
    })
    .await?;
    let run_id = show_pipeline_run(&client, ws, &completed).await?;
    say(
        "done",
        format!(
            "the file's pipeline run {run_id} completed and its RunCompleted reached the receiver: the loops closed"
        ),
    );
    cluster.stop().await
}

/// Prints a finished pipeline run's steps and their logs; fails unless it completed.
/// Returns its id.
async fn show_pipeline_run(client: &Client, ws: &str, completed: &Value) -> anyhow::Result<String> {
    let run_id = completed["data"]["RunId"]
        .as_str()
        .context("the run event has no RunId")?
        .to_owned();
    let run = client.get(&format!("{ws}/pipeline-runs/{run_id}")).await?;
    for step in run["steps"].as_array().into_iter().flatten() {
        say(
            "step",
            format!(
                "{} {} (attempts {})",
                step["name"].as_str().unwrap_or("?"),
                step["state"].as_str().unwrap_or("?"),
                step["attempts"]
            ),
        );
        let path = format!(
            "{ws}/pipeline-runs/{run_id}/logs?step={}",
            step["name"].as_str().unwrap_or_default()
        );
        let (log, _, _) = client.get_log(&path).await?;
        for line in String::from_utf8_lossy(&log).lines() {
            say("log", format!("{}: {line}", step["name"].as_str().unwrap_or("?")));
        }
    }
    if completed["eventType"] != "Microsoft.MachineLearningServices.RunCompleted" {
        bail!("the pipeline run {run_id} did not complete: {}", run["run"]["error"]);
    }
    Ok(run_id)
}
