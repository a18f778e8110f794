//! The ML lifecycle through the API raises exactly the events of seed 001, field by field.

mod common;

use axum::http::StatusCode;
use common::TestApi;
use serde_json::{Value, json};

/// An API with the workspace `mlws` of seed 001's resource path.
async fn api() -> TestApi {
    let api = TestApi::new().await;
    let ws = json!({"name": "mlws", "subscriptionId": "sub-1", "resourceGroup": "rg-1"});
    assert_eq!(
        api.call("POST", "/v1/workspaces", Some(ws)).await.status,
        StatusCode::CREATED
    );
    api
}

/// Every event the workspace raised, oldest first.
async fn raised(api: &TestApi) -> Vec<Value> {
    let page = api.events("workspaces", "mlws", "limit=1000").await;
    page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["event"].clone())
        .collect()
}

fn seed(name: &str) -> Value {
    let text = match name {
        "model_registered" => {
            include_str!("../../core/tests/fixtures/seed001_model_registered.json")
        }
        "model_deployed" => include_str!("../../core/tests/fixtures/seed001_model_deployed.json"),
        "run_completed" => include_str!("../../core/tests/fixtures/seed001_run_completed.json"),
        "run_status_changed" => {
            include_str!("../../core/tests/fixtures/seed001_run_status_changed.json")
        }
        _ => unreachable!(),
    };
    serde_json::from_str::<Value>(text).unwrap()[0].clone()
}

const TOPIC: &str =
    "/subscriptions/sub-1/resourceGroups/rg-1/providers/Microsoft.MachineLearningServices/workspaces/mlws";

/// Checks the envelope against the seed's: the same keys (plus mlgrid's `sequence` and
/// `etag`), the workspace's topic, a UUID id, Event Grid's time format.
fn assert_envelope_like_seed(event: &Value, seed: &Value, event_type: &str, subject: &str) {
    let mut keys: Vec<&str> = event.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort_unstable();
    let mut expected: Vec<&str> = seed
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .chain(["sequence", "etag"])
        .collect();
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(event["topic"], TOPIC);
    assert_eq!(event["eventType"], event_type);
    assert_eq!(event["subject"], subject);
    assert_eq!(event["dataVersion"], seed["dataVersion"]);
    assert_eq!(event["metadataVersion"], "1");
    assert!(uuid::Uuid::parse_str(event["id"].as_str().unwrap()).is_ok());
    let time = event["eventTime"].as_str().unwrap();
    assert!(
        time.len() == 28 && time.ends_with('Z') && time.as_bytes()[19] == b'.',
        "{time}"
    );
    assert!(event["sequence"].as_u64().unwrap() >= 1);
    assert!(event["etag"].is_string());
}

#[tokio::test]
async fn model_registered_matches_the_seed() {
    let api = api().await;
    let seed = seed("model_registered");
    let data = &seed["data"];
    let body =
        json!({"name": "sklearn_regression_model", "tags": data["ModelTags"], "properties": data["ModelProperties"]});
    let first = api
        .call_if_match("POST", "/v1/workspaces/mlws/models", Some(body.clone()), None)
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    assert_eq!(first.etag.as_deref(), first.body["etag"].as_str());
    let second = api.ok("POST", "/v1/workspaces/mlws/models", body).await;
    assert_eq!(second["version"], 2);
    let events = raised(&api).await;
    assert_eq!(events.len(), 2);
    assert_envelope_like_seed(
        &events[1],
        &seed,
        "Microsoft.MachineLearningServices.ModelRegistered",
        "models/sklearn_regression_model:2",
    );
    let mut expected = data.clone();
    expected["ModelVersion"] = json!(2);
    assert_eq!(events[1]["data"], expected);
    assert_eq!(events[1]["etag"], second["etag"]);
}

#[tokio::test]
async fn model_deployed_matches_the_seed_and_checks_models() {
    let api = api().await;
    let seed = seed("model_deployed");
    let data = &seed["data"];
    for _ in 0..2 {
        api.ok(
            "POST",
            "/v1/workspaces/mlws/models",
            json!({"name": "sklearn_regression_model"}),
        )
        .await;
    }
    let deploy = |models: Value| json!({"computeType": "ACI", "models": models, "tags": data["ServiceTags"], "properties": data["ServiceProperties"]});
    let missing = api
        .call_if_match(
            "PUT",
            "/v1/workspaces/mlws/deployments/my-sklearn-service",
            Some(deploy(json!([
                "sklearn_regression_model:1",
                "sklearn_regression_model:3"
            ]))),
            None,
        )
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST);
    assert!(
        missing.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sklearn_regression_model:3")
    );
    let bad_ref = api
        .call_if_match(
            "PUT",
            "/v1/workspaces/mlws/deployments/my-sklearn-service",
            Some(deploy(json!(["nover"]))),
            None,
        )
        .await;
    assert_eq!(bad_ref.status, StatusCode::BAD_REQUEST);
    let bad_compute = api
        .call_if_match(
            "PUT",
            "/v1/workspaces/mlws/deployments/x",
            Some(json!({"computeType": "GPU", "models": ["sklearn_regression_model:1"]})),
            None,
        )
        .await;
    assert!(
        bad_compute.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ACI, AKS or Local")
    );

    let created = api
        .call_if_match(
            "PUT",
            "/v1/workspaces/mlws/deployments/my-sklearn-service",
            Some(deploy(json!([
                "sklearn_regression_model:1",
                "sklearn_regression_model:2"
            ]))),
            None,
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let events = raised(&api).await;
    let deployed = events.last().unwrap();
    assert_envelope_like_seed(
        deployed,
        &seed,
        "Microsoft.MachineLearningServices.ModelDeployed",
        "endpoints/my-sklearn-service",
    );
    assert_eq!(deployed["data"], *data, "the data is exactly the seed's");

    let stale = api
        .call_if_match(
            "PUT",
            "/v1/workspaces/mlws/deployments/my-sklearn-service",
            Some(deploy(json!(["sklearn_regression_model:2"]))),
            Some("\"stale\""),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let redeployed = api
        .call_if_match(
            "PUT",
            "/v1/workspaces/mlws/deployments/my-sklearn-service",
            Some(deploy(json!(["sklearn_regression_model:2"]))),
            created.etag.as_deref(),
        )
        .await;
    assert_eq!(redeployed.status, StatusCode::OK);
    let events = raised(&api).await;
    assert_eq!(events.last().unwrap()["data"]["ModelIds"], "sklearn_regression_model:2");
    assert_eq!(
        events.last().unwrap()["sequence"],
        2,
        "the second event of this subject"
    );
    assert_eq!(
        api.call_if_match(
            "DELETE",
            "/v1/workspaces/mlws/deployments/my-sklearn-service",
            None,
            None
        )
        .await
        .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(raised(&api).await.len(), events.len(), "deleting raises nothing");
}

async fn seed_run(api: &TestApi, seed: &Value) -> Value {
    let data = &seed["data"];
    let body =
        json!({"experimentName": data["ExperimentName"], "runId": data["RunId"], "properties": data["RunProperties"]});
    let run = api
        .call_if_match("POST", "/v1/workspaces/mlws/runs", Some(body), None)
        .await;
    assert_eq!(run.status, StatusCode::CREATED, "{}", run.body);
    assert_eq!(run.body["status"], "Running");
    run.body
}

#[tokio::test]
async fn run_completed_matches_the_seed() {
    let api = api().await;
    let seed = seed("run_completed");
    let run = seed_run(&api, &seed).await;
    let run_id = run["runId"].as_str().unwrap();
    let completed = api
        .call_if_match(
            "PATCH",
            &format!("/v1/workspaces/mlws/runs/{run_id}"),
            Some(json!({"status": "Completed"})),
            run["etag"].as_str(),
        )
        .await;
    assert_eq!(completed.status, StatusCode::OK, "{}", completed.body);
    let events = raised(&api).await;
    assert_eq!(events.len(), 1, "starting a run raises nothing");
    let subject = format!("experiments/{}/runs/{run_id}", run["experimentId"].as_str().unwrap());
    assert_envelope_like_seed(
        &events[0],
        &seed,
        "Microsoft.MachineLearningServices.RunCompleted",
        &subject,
    );
    let mut expected = seed["data"].clone();
    expected["ExperimentId"] = run["experimentId"].clone();
    assert_eq!(events[0]["data"], expected);

    let again = api
        .call_if_match(
            "PATCH",
            &format!("/v1/workspaces/mlws/runs/{run_id}"),
            Some(json!({"status": "Completed"})),
            None,
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.body["error"]["message"].as_str().unwrap().contains("final"));
}

#[tokio::test]
async fn run_status_changed_matches_the_seed_and_cancel_raises_nothing() {
    let api = api().await;
    let seed = seed("run_status_changed");
    let run = seed_run(&api, &seed).await;
    let run_id = run["runId"].as_str().unwrap();
    let stale = api
        .call_if_match(
            "PATCH",
            &format!("/v1/workspaces/mlws/runs/{run_id}"),
            Some(json!({"status": "Failed"})),
            Some("\"stale\""),
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let failed = api
        .ok(
            "PATCH",
            &format!("/v1/workspaces/mlws/runs/{run_id}"),
            json!({"status": "Failed", "error": "diverged"}),
        )
        .await;
    assert_eq!(failed["error"], "diverged");
    let events = raised(&api).await;
    assert_eq!(events.len(), 1);
    let subject = format!("experiments/{}/runs/{run_id}", run["experimentId"].as_str().unwrap());
    // The seed labels this sample RunCompleted by mistake; the event type is RunStatusChanged.
    assert_envelope_like_seed(
        &events[0],
        &seed,
        "Microsoft.MachineLearningServices.RunStatusChanged",
        &subject,
    );
    let mut expected = seed["data"].clone();
    expected["ExperimentId"] = run["experimentId"].clone();
    assert_eq!(events[0]["data"], expected);

    let other = api
        .ok(
            "POST",
            "/v1/workspaces/mlws/runs",
            json!({"experimentName": "e2", "status": "Queued"}),
        )
        .await;
    let other_id = other["runId"].as_str().unwrap();
    let refused = api
        .call_if_match(
            "PATCH",
            &format!("/v1/workspaces/mlws/runs/{other_id}"),
            Some(json!({"status": "Completed"})),
            None,
        )
        .await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    assert!(
        refused.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("may become Running, Failed, Canceled")
    );
    api.ok(
        "PATCH",
        &format!("/v1/workspaces/mlws/runs/{other_id}"),
        json!({"status": "Canceled"}),
    )
    .await;
    let unknown = api
        .call_if_match(
            "PATCH",
            &format!("/v1/workspaces/mlws/runs/{other_id}"),
            Some(json!({"status": "Done"})),
            None,
        )
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        raised(&api).await.len(),
        1,
        "cancelling and refused changes raise nothing"
    );
}

#[tokio::test]
async fn runs_metrics_models_and_datasets_read_back() {
    let api = api().await;
    let parent = api
        .ok(
            "POST",
            "/v1/workspaces/mlws/runs",
            json!({"experimentName": "exp", "runType": "azureml.PipelineRun", "tags": {"a": "1"}}),
        )
        .await;
    let child = api
        .ok(
            "POST",
            "/v1/workspaces/mlws/runs",
            json!({"experimentName": "exp", "parentRunId": parent["runId"]}),
        )
        .await;
    assert_eq!(child["parentRunId"], parent["runId"]);
    let orphan = api
        .call_if_match(
            "POST",
            "/v1/workspaces/mlws/runs",
            Some(json!({"experimentName": "exp", "parentRunId": "nope"})),
            None,
        )
        .await;
    assert_eq!(orphan.status, StatusCode::BAD_REQUEST);
    let run_uri = format!("/v1/workspaces/mlws/runs/{}", parent["runId"].as_str().unwrap());
    let tagged = api.ok("PATCH", &run_uri, json!({"tags": {"a": null, "b": "2"}})).await;
    assert_eq!(tagged["tags"], json!({"b": "2"}));
    assert_ne!(tagged["etag"], parent["etag"]);
    let logged = api.call_if_match("POST", &format!("{run_uri}/metrics"), Some(json!({"metrics": [{"name": "loss", "value": 0.5, "step": 1}, {"name": "loss", "value": 0.25, "step": 2}]})), None).await;
    assert_eq!(logged.status, StatusCode::NO_CONTENT);
    let metrics = api
        .call_if_match("GET", &format!("{run_uri}/metrics"), None, None)
        .await
        .body;
    assert_eq!(metrics["value"].as_array().unwrap().len(), 2);
    let runs = api
        .call_if_match("GET", "/v1/workspaces/mlws/runs?experiment=exp", None, None)
        .await
        .body;
    assert_eq!(runs["value"].as_array().unwrap().len(), 2);
    let experiments = api
        .call_if_match("GET", "/v1/workspaces/mlws/experiments", None, None)
        .await
        .body;
    assert_eq!(experiments["value"][0]["experimentId"], parent["experimentId"]);

    let v1 = api
        .ok(
            "POST",
            "/v1/workspaces/mlws/models",
            json!({"name": "m", "path": "outputs/model.pkl"}),
        )
        .await;
    api.ok("POST", "/v1/workspaces/mlws/models", json!({"name": "m"})).await;
    let archive = api
        .call_if_match(
            "PATCH",
            "/v1/workspaces/mlws/models/m/versions/2",
            Some(json!({"archived": true})),
            None,
        )
        .await;
    assert_eq!(archive.status, StatusCode::OK);
    assert_eq!(
        api.call_if_match("GET", "/v1/workspaces/mlws/models/m", None, None)
            .await
            .body["version"],
        1
    );
    let shown = api
        .call_if_match("GET", "/v1/workspaces/mlws/models/m/versions/1", None, None)
        .await;
    assert_eq!(shown.body["path"], "outputs/model.pkl");
    assert_eq!(shown.etag.as_deref(), v1["etag"].as_str());
    let listed = api
        .call_if_match("GET", "/v1/workspaces/mlws/models?includeArchived=true", None, None)
        .await
        .body;
    assert_eq!(listed["value"].as_array().unwrap().len(), 2);
    let archived_deploy = api
        .call_if_match(
            "PUT",
            "/v1/workspaces/mlws/deployments/svc",
            Some(json!({"computeType": "Local", "models": ["m:2"]})),
            None,
        )
        .await;
    assert!(
        archived_deploy.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("archived")
    );
    let bad_name = api
        .call_if_match("POST", "/v1/workspaces/mlws/models", Some(json!({"name": "a/b"})), None)
        .await;
    assert_eq!(bad_name.status, StatusCode::BAD_REQUEST);

    api.ok(
        "POST",
        "/v1/workspaces/mlws/datasets",
        json!({"name": "train", "path": "data/train.csv"}),
    )
    .await;
    let v2 = api
        .ok(
            "POST",
            "/v1/workspaces/mlws/datasets",
            json!({"name": "train", "path": "data/train2.csv"}),
        )
        .await;
    assert_eq!(v2["version"], 2);
    assert_eq!(
        api.call_if_match("GET", "/v1/workspaces/mlws/datasets/train/versions/1", None, None)
            .await
            .body["path"],
        "data/train.csv"
    );
    assert_eq!(
        api.call_if_match("GET", "/v1/workspaces/mlws/datasets/train", None, None)
            .await
            .body["version"],
        2
    );
    let events = raised(&api).await;
    let types: Vec<&str> = events.iter().map(|e| e["eventType"].as_str().unwrap()).collect();
    assert_eq!(
        types, ["Microsoft.MachineLearningServices.ModelRegistered"; 2],
        "only registrations raised events here"
    );
}
