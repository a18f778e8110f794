//! Published pipelines, endpoints, pipeline runs and their steps: the cases every backend
//! passes, and the fixtures the backends' own pipeline tests share.

use std::sync::Arc;

use chrono::{Duration, Timelike, Utc};
use mlgrid_core::lifecycle::RunStatus;
use mlgrid_core::pipeline::DataPath;
use mlgrid_core::pipeline::progress::StepState;
use mlgrid_store::*;

use super::{raised, workspace};

pub fn new_pipeline(name: &str, version: Option<&str>) -> NewPipeline {
    NewPipeline {
        name: name.into(),
        version: version.map(Into::into),
        description: format!("the {name} pipeline"),
        definition: format!("name: {name}\nsteps: []\n"),
    }
}

pub fn step(name: &str, depends_on: &[&str], retries: u32) -> NewStep {
    NewStep {
        name: name.into(),
        depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
        retries,
    }
}

pub fn submission(pipeline_id: &str, steps: Vec<NewStep>) -> NewPipelineRun {
    NewPipelineRun {
        pipeline_id: pipeline_id.into(),
        experiment_name: "retrain-exp".into(),
        description: Some("nightly retraining".into()),
        tags: [("team".to_owned(), "ml".to_owned())].into(),
        parameters: [("epochs".to_owned(), serde_json::json!(3))].into(),
        data_paths: [(
            "input".to_owned(),
            DataPath {
                datastore: "blobs".into(),
                path: "data/in.csv".into(),
            },
        )]
        .into(),
        continue_on_step_failure: false,
        run_source: "SDK".into(),
        idempotency_key: None,
        steps,
    }
}

/// A claim for `holder` from now, for `seconds` (negative: one that has run out).
pub fn claim_for(holder: &str, seconds: i64) -> StepClaim {
    let now = Utc::now();
    StepClaim {
        holder: holder.into(),
        now: now - Duration::seconds(seconds.min(0).abs() + 1),
        lease_until: now + Duration::seconds(seconds),
    }
}

/// A workspace named `name` with one pipeline published in it; returns both ids.
pub async fn published(store: &Arc<dyn Store>, name: &str) -> (SourceId, String) {
    let ws = workspace(store, name).await;
    let pipeline = store.publish_pipeline(ws, new_pipeline("retrain", None)).await.unwrap();
    (ws, pipeline.id)
}

fn completed() -> StepOutcome {
    StepOutcome::Completed {
        reuse_key: None,
        reused_from: None,
        started_at: None,
    }
}

fn failed(error: &str) -> StepOutcome {
    StepOutcome::Failed {
        error: error.into(),
        exit_code: Some(1),
        started_at: None,
    }
}

/// Each step of a pipeline run with its state.
async fn states(store: &Arc<dyn Store>, ws: SourceId, run_id: &str) -> Vec<(String, StepState)> {
    let run = store.pipeline_run(ws, run_id).await.unwrap();
    run.steps.into_iter().map(|s| (s.name, s.state)).collect()
}

fn expect(states: &[(&str, StepState)]) -> Vec<(String, StepState)> {
    states.iter().map(|(n, s)| ((*n).to_owned(), *s)).collect()
}

/// The run events of the workspace's log: (short event type, run id).
async fn run_events(store: &Arc<dyn Store>, ws: SourceId) -> Vec<(String, String)> {
    raised(store, ws)
        .await
        .into_iter()
        .map(|(event_type, _, data, _)| {
            let short = event_type.trim_start_matches("Microsoft.MachineLearningServices.");
            (short.to_owned(), data["RunId"].as_str().unwrap().to_owned())
        })
        .collect()
}

fn event(event_type: &str, run_id: &str) -> (String, String) {
    (event_type.to_owned(), run_id.to_owned())
}

/// The run of a step of a pipeline run.
fn step_run_id(run_id: &str, step: &str) -> String {
    format!("{run_id}_{step}")
}

async fn run_status(store: &Arc<dyn Store>, ws: SourceId, run_id: &str) -> RunStatus {
    store.run(ws, run_id).await.unwrap().status
}

pub async fn pipelines_are_published_in_versions_and_enabled_with_etags(store: Arc<dyn Store>) {
    let ws = workspace(&store, "ws-publish").await;
    let first = store.publish_pipeline(ws, new_pipeline("retrain", None)).await.unwrap();
    assert_eq!(first.version, "1");
    assert!(first.enabled);
    assert_eq!(first.definition, "name: retrain\nsteps: []\n");
    let second = store.publish_pipeline(ws, new_pipeline("retrain", None)).await.unwrap();
    assert_eq!(second.version, "2");
    assert_ne!(first.id, second.id);
    store
        .publish_pipeline(ws, new_pipeline("retrain", Some("beta")))
        .await
        .unwrap();
    let third = store.publish_pipeline(ws, new_pipeline("retrain", None)).await.unwrap();
    assert_eq!(third.version, "3", "the next number after the highest numeric version");
    let taken = store
        .publish_pipeline(ws, new_pipeline("retrain", Some("2")))
        .await
        .unwrap_err();
    assert!(
        matches!(taken, StoreError::Conflict(ref m) if m.contains("`retrain` version 2")),
        "{taken:?}"
    );
    let other = store.publish_pipeline(ws, new_pipeline("score", None)).await.unwrap();
    assert_eq!(other.version, "1", "versions count per name");

    let versions: Vec<String> = store
        .list_pipelines(ws, Some("retrain"))
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.version)
        .collect();
    assert_eq!(versions, ["1", "2", "beta", "3"]);
    assert_eq!(store.list_pipelines(ws, None).await.unwrap().len(), 5);
    assert_eq!(store.pipeline(ws, &first.id).await.unwrap(), first);
    let elsewhere = workspace(&store, "ws-publish-other").await;
    assert!(matches!(
        store.pipeline(elsewhere, &first.id).await,
        Err(StoreError::NotFound(_))
    ));

    let stale = store
        .set_pipeline_enabled(ws, &first.id, false, Some("\"old\"".into()))
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::PreconditionFailed(_)), "{stale:?}");
    let disabled = store
        .set_pipeline_enabled(ws, &first.id, false, Some(first.etag.clone()))
        .await
        .unwrap();
    assert!(!disabled.enabled);
    assert_ne!(disabled.etag, first.etag);
    assert_eq!(store.pipeline(ws, &first.id).await.unwrap(), disabled);
    let enabled = store.set_pipeline_enabled(ws, &first.id, true, None).await.unwrap();
    assert!(enabled.enabled);
    assert!(matches!(
        store.set_pipeline_enabled(ws, "no-such-id", true, None).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn pipeline_endpoints_point_at_pipelines_of_their_workspace(store: Arc<dyn Store>) {
    let ws = workspace(&store, "ws-endpoints").await;
    let v1 = store.publish_pipeline(ws, new_pipeline("retrain", None)).await.unwrap();
    let v2 = store.publish_pipeline(ws, new_pipeline("retrain", None)).await.unwrap();
    let elsewhere = workspace(&store, "ws-endpoints-other").await;
    let foreign = store
        .publish_pipeline(elsewhere, new_pipeline("retrain", None))
        .await
        .unwrap();
    let endpoint = |pipeline_id: &str| NewPipelineEndpoint {
        name: "nightly".into(),
        description: "retrains every night".into(),
        pipeline_id: pipeline_id.into(),
    };

    let created = store.create_pipeline_endpoint(ws, endpoint(&v1.id)).await.unwrap();
    assert_eq!(created.default_pipeline_id, v1.id);
    let taken = store.create_pipeline_endpoint(ws, endpoint(&v2.id)).await.unwrap_err();
    assert!(
        matches!(taken, StoreError::Conflict(ref m) if m.contains("nightly")),
        "{taken:?}"
    );
    let foreign_first = store
        .create_pipeline_endpoint(elsewhere, endpoint(&v1.id))
        .await
        .unwrap_err();
    assert!(
        matches!(foreign_first, StoreError::NotFound(ref m) if m.contains(&v1.id)),
        "{foreign_first:?}"
    );

    let stale = store
        .set_pipeline_endpoint_default(ws, "nightly", &v2.id, Some("\"old\"".into()))
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::PreconditionFailed(_)), "{stale:?}");
    let switched = store
        .set_pipeline_endpoint_default(ws, "nightly", &v2.id, Some(created.etag.clone()))
        .await
        .unwrap();
    assert_eq!(switched.default_pipeline_id, v2.id);
    assert_ne!(switched.etag, created.etag);
    let refused = store
        .set_pipeline_endpoint_default(ws, "nightly", &foreign.id, None)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::NotFound(ref m) if m.contains(&foreign.id)),
        "{refused:?}"
    );
    assert_eq!(store.pipeline_endpoint(ws, "nightly").await.unwrap(), switched);
    assert_eq!(store.list_pipeline_endpoints(ws).await.unwrap(), [switched]);
    assert!(matches!(
        store.pipeline_endpoint(ws, "weekly").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.list_pipeline_endpoints(elsewhere).await.unwrap().is_empty());
}

pub async fn a_submission_creates_the_run_its_step_runs_and_ready_steps(store: Arc<dyn Store>) {
    let (ws, pipeline_id) = published(&store, "ws-submit").await;
    let steps = vec![
        step("prep", &[], 0),
        step("train", &["prep"], 2),
        step("eval", &["train"], 0),
        step("lint", &[], 0),
    ];
    let submitted = store
        .submit_pipeline_run(ws, submission(&pipeline_id, steps.clone()))
        .await
        .unwrap();
    assert!(submitted.created);
    let run = submitted.run;
    assert_eq!(run.run_type.as_deref(), Some(PIPELINE_RUN_TYPE));
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.experiment_name, "retrain-exp");
    assert!(run.run_id.starts_with("retrain-exp_"), "{}", run.run_id);
    assert_eq!(run.tags["team"], "ml");
    assert_eq!(run.properties["azureml.runsource"], "SDK");
    assert_eq!(run.properties["azureml.pipelineid"], pipeline_id);

    let pipeline_run = store.pipeline_run(ws, &run.run_id).await.unwrap();
    assert_eq!(pipeline_run.run, run);
    assert_eq!(pipeline_run.pipeline_id, pipeline_id);
    assert_eq!(pipeline_run.description.as_deref(), Some("nightly retraining"));
    assert_eq!(pipeline_run.parameters["epochs"], 3);
    assert_eq!(pipeline_run.data_paths["input"].path, "data/in.csv");
    assert!(!pipeline_run.continue_on_step_failure);
    use StepState::*;
    assert_eq!(
        states(&store, ws, &run.run_id).await,
        expect(&[("prep", Ready), ("train", Waiting), ("eval", Waiting), ("lint", Ready)])
    );
    let train = &pipeline_run.steps[1];
    assert_eq!(train.depends_on, ["prep"]);
    assert_eq!((train.attempts, train.retries), (0, 2));
    assert!(train.ready_at.is_none() && pipeline_run.steps[0].ready_at.is_some());

    let children: Vec<Run> = store
        .list_runs(ws, Some("retrain-exp"))
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.parent_run_id.as_deref() == Some(run.run_id.as_str()))
        .collect();
    assert_eq!(children.len(), 4);
    for child in &children {
        assert_eq!(child.run_type.as_deref(), Some(STEP_RUN_TYPE));
        let step = pipeline_run.steps.iter().find(|s| s.run_id == child.run_id).unwrap();
        assert_eq!(child.run_id, step_run_id(&run.run_id, &step.name));
        assert_eq!(child.status, step.state.run_status(), "{}", step.name);
    }
    assert!(run_events(&store, ws).await.is_empty(), "submitting raises nothing");

    let keyed = || NewPipelineRun {
        idempotency_key: Some("event-1/sub".into()),
        ..submission(&pipeline_id, steps.clone())
    };
    let first = store.submit_pipeline_run(ws, keyed()).await.unwrap();
    assert!(first.created);
    let again = store.submit_pipeline_run(ws, keyed()).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.run.run_id, first.run.run_id);
    let runs = store.list_runs(ws, None).await.unwrap().len();
    assert_eq!(runs, 10, "two pipeline runs with four step runs each");

    store.set_pipeline_enabled(ws, &pipeline_id, false, None).await.unwrap();
    let refused = store
        .submit_pipeline_run(ws, submission(&pipeline_id, steps.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::Conflict(ref m)
            if m.contains("is disabled") && m.contains("mlgrid pipeline enable --workspace ws-submit")),
        "{refused:?}"
    );
    let replayed = store.submit_pipeline_run(ws, keyed()).await.unwrap();
    assert_eq!(
        replayed.run.run_id, first.run.run_id,
        "a key seen before returns its run, even once the pipeline is disabled"
    );
    assert_eq!(store.list_runs(ws, None).await.unwrap().len(), runs);
    assert!(matches!(
        store
            .submit_pipeline_run(ws, submission("no-such-pipeline", steps))
            .await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn a_chain_runs_step_after_step_and_raises_run_events(store: Arc<dyn Store>) {
    let (ws, pipeline_id) = published(&store, "ws-chain").await;
    let steps = vec![
        step("prep", &[], 0),
        step("train", &["prep"], 0),
        step("eval", &["train"], 0),
    ];
    let run = store
        .submit_pipeline_run(ws, submission(&pipeline_id, steps))
        .await
        .unwrap()
        .run;
    let node = claim_for("node-a", 60);

    let claimed = store.claim_steps(&node, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "only the first step is ready");
    let prep = &claimed[0];
    assert_eq!(
        (prep.workspace, prep.pipeline_run_id.as_str()),
        (ws, run.run_id.as_str())
    );
    assert_eq!(prep.step.name, "prep");
    assert_eq!(
        (prep.step.state, prep.step.attempts, prep.lease),
        (StepState::Running, 1, 1)
    );
    assert_eq!(prep.pipeline_id, pipeline_id);
    assert_eq!(prep.experiment_name, "retrain-exp");
    assert_eq!(prep.parameters["epochs"], 3);
    assert_eq!(prep.data_paths["input"].datastore, "blobs");
    assert_eq!(run_status(&store, ws, &run.run_id).await, RunStatus::Running);
    assert_eq!(run_status(&store, ws, &prep.step.run_id).await, RunStatus::Running);

    let finished = store
        .finish_step(ws, &prep.step.run_id, prep.lease, completed(), Some(node.clone()))
        .await
        .unwrap();
    assert_eq!(finished.run_finished, None);
    assert!(!finished.retrying);
    let names: Vec<&str> = finished.claimed.iter().map(|c| c.step.name.as_str()).collect();
    assert_eq!(names, ["train"], "the next step is claimed by the same holder at once");
    assert!(store.claim_steps(&node, 10).await.unwrap().is_empty());

    let train = &finished.claimed[0];
    let finished = store
        .finish_step(ws, &train.step.run_id, train.lease, completed(), Some(node.clone()))
        .await
        .unwrap();
    let eval = &finished.claimed[0];
    let finished = store
        .finish_step(ws, &eval.step.run_id, eval.lease, completed(), None)
        .await
        .unwrap();
    assert_eq!(finished.run_finished, Some(RunStatus::Completed));
    assert!(finished.claimed.is_empty());

    use StepState::*;
    assert_eq!(
        states(&store, ws, &run.run_id).await,
        expect(&[("prep", Completed), ("train", Completed), ("eval", Completed)])
    );
    let ended = store.run(ws, &run.run_id).await.unwrap();
    assert_eq!(ended.status, RunStatus::Completed);
    assert!(ended.end_time.is_some());
    assert_eq!(
        run_events(&store, ws).await,
        [
            event("RunCompleted", &step_run_id(&run.run_id, "prep")),
            event("RunCompleted", &step_run_id(&run.run_id, "train")),
            event("RunCompleted", &step_run_id(&run.run_id, "eval")),
            event("RunCompleted", &run.run_id),
        ]
    );
    let repeated = store
        .finish_step(ws, &eval.step.run_id, eval.lease, completed(), None)
        .await
        .unwrap_err();
    assert!(matches!(repeated, StoreError::Conflict(_)), "{repeated:?}");
}

pub async fn a_failed_step_is_retried_and_a_stale_lease_refused(store: Arc<dyn Store>) {
    let (ws, pipeline_id) = published(&store, "ws-retry").await;
    let run = store
        .submit_pipeline_run(ws, submission(&pipeline_id, vec![step("flaky", &[], 1)]))
        .await
        .unwrap()
        .run;
    let node = claim_for("node-a", 60);
    let first = store.claim_steps(&node, 1).await.unwrap().remove(0);
    let retried = store
        .finish_step(
            ws,
            &first.step.run_id,
            first.lease,
            failed("exit 1"),
            Some(node.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        retried,
        StepFinished {
            retrying: true,
            ..StepFinished::default()
        }
    );
    let step = store.pipeline_run(ws, &run.run_id).await.unwrap().steps.remove(0);
    assert_eq!((step.state, step.attempts), (StepState::Ready, 1));
    assert_eq!((step.error.as_deref(), step.exit_code), (Some("exit 1"), Some(1)));
    assert!(
        run_events(&store, ws).await.is_empty(),
        "a retried failure raises nothing"
    );

    let second = store.claim_steps(&node, 1).await.unwrap().remove(0);
    assert_eq!(second.lease, 2, "every claim has a new lease");
    let stale = store
        .finish_step(ws, &first.step.run_id, first.lease, completed(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(stale, StoreError::Conflict(ref m) if m.contains("lease 1")),
        "{stale:?}"
    );
    let unchanged = store.pipeline_run(ws, &run.run_id).await.unwrap().steps.remove(0);
    assert_eq!((unchanged.state, unchanged.attempts), (StepState::Running, 2));
    let lost = store
        .renew_steps("node-a", &[(ws, second.step.run_id.clone(), first.lease)], Utc::now())
        .await
        .unwrap();
    assert_eq!(lost, [second.step.run_id.as_str()], "a stale lease is not renewed");

    let ended = store
        .finish_step(ws, &second.step.run_id, second.lease, failed("exit 2"), None)
        .await
        .unwrap();
    assert!(!ended.retrying);
    assert_eq!(ended.run_finished, Some(RunStatus::Failed));
    let pipeline_run = store.run(ws, &run.run_id).await.unwrap();
    assert_eq!(pipeline_run.status, RunStatus::Failed);
    assert!(
        pipeline_run
            .error
            .as_deref()
            .is_some_and(|e| e.contains("flaky") && e.contains("exit 2")),
        "{:?}",
        pipeline_run.error
    );
    assert_eq!(
        store.run(ws, &second.step.run_id).await.unwrap().error.as_deref(),
        Some("exit 2")
    );
    assert_eq!(
        run_events(&store, ws).await,
        [
            event("RunStatusChanged", &step_run_id(&run.run_id, "flaky")),
            event("RunStatusChanged", &run.run_id),
        ]
    );
}

pub async fn a_failure_cancels_the_other_steps_unless_the_run_continues(store: Arc<dyn Store>) {
    use StepState::*;
    let (ws, pipeline_id) = published(&store, "ws-failure").await;
    let node = claim_for("node-a", 60);
    let steps = || vec![step("a", &[], 0), step("b", &["a"], 0), step("c", &[], 0)];
    let run = store
        .submit_pipeline_run(ws, submission(&pipeline_id, steps()))
        .await
        .unwrap()
        .run;
    let a = store.claim_steps(&node, 1).await.unwrap().remove(0);
    assert_eq!(
        a.step.name, "a",
        "equally old ready steps are claimed in their runs' order"
    );
    let finished = store
        .finish_step(ws, &a.step.run_id, a.lease, failed("oom"), Some(node.clone()))
        .await
        .unwrap();
    assert_eq!(finished.run_finished, Some(RunStatus::Failed));
    assert!(finished.claimed.is_empty());
    assert_eq!(
        states(&store, ws, &run.run_id).await,
        expect(&[("a", Failed), ("b", Canceled), ("c", Canceled)])
    );
    for step in ["b", "c"] {
        assert_eq!(
            run_status(&store, ws, &step_run_id(&run.run_id, step)).await,
            RunStatus::Canceled
        );
    }
    assert_eq!(
        run_events(&store, ws).await,
        [
            event("RunStatusChanged", &step_run_id(&run.run_id, "a")),
            event("RunStatusChanged", &run.run_id),
        ]
    );
    assert!(store.claim_steps(&node, 10).await.unwrap().is_empty());

    let continuing = NewPipelineRun {
        continue_on_step_failure: true,
        ..submission(
            &pipeline_id,
            vec![
                step("a", &[], 0),
                step("b", &["a"], 0),
                step("c", &[], 0),
                step("d", &["c"], 0),
            ],
        )
    };
    let run = store.submit_pipeline_run(ws, continuing).await.unwrap().run;
    let claimed = store.claim_steps(&node, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let (a, c) = (&claimed[0], &claimed[1]);
    let after_a = store
        .finish_step(ws, &a.step.run_id, a.lease, failed("oom"), None)
        .await
        .unwrap();
    assert_eq!(after_a.run_finished, None, "the independent branch goes on");
    let after_c = store
        .finish_step(ws, &c.step.run_id, c.lease, completed(), Some(node.clone()))
        .await
        .unwrap();
    let d = &after_c.claimed[0];
    assert_eq!(d.step.name, "d");
    let after_d = store
        .finish_step(ws, &d.step.run_id, d.lease, completed(), None)
        .await
        .unwrap();
    assert_eq!(after_d.run_finished, Some(RunStatus::Failed));
    assert_eq!(
        states(&store, ws, &run.run_id).await,
        expect(&[("a", Failed), ("b", Skipped), ("c", Completed), ("d", Completed)])
    );
    assert_eq!(
        run_status(&store, ws, &step_run_id(&run.run_id, "b")).await,
        RunStatus::NotStarted
    );
}

pub async fn cancelling_a_pipeline_run_stops_its_steps(store: Arc<dyn Store>) {
    use StepState::*;
    let (ws, pipeline_id) = published(&store, "ws-cancel").await;
    let node = claim_for("node-a", 60);
    let steps = || vec![step("a", &[], 0), step("b", &["a"], 0), step("c", &[], 0)];
    let run = store
        .submit_pipeline_run(ws, submission(&pipeline_id, steps()))
        .await
        .unwrap()
        .run;
    let a = store.claim_steps(&node, 1).await.unwrap().remove(0);
    let stale = store
        .cancel_pipeline_run(ws, &run.run_id, "not needed", Some("\"old\"".into()))
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::PreconditionFailed(_)), "{stale}");
    let untouched = store.pipeline_run(ws, &run.run_id).await.unwrap();
    assert!(
        untouched
            .steps
            .iter()
            .all(|s| !s.cancel_requested && s.state != StepState::Canceled)
    );
    let current = store.run(ws, &run.run_id).await.unwrap().etag;
    let canceled = store
        .cancel_pipeline_run(ws, &run.run_id, "not needed", Some(current))
        .await
        .unwrap();
    assert_eq!(canceled.run.status, RunStatus::Running, "a step still runs");
    let summary: Vec<(&str, StepState, bool)> = canceled
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.state, s.cancel_requested))
        .collect();
    assert_eq!(
        summary,
        [("a", Running, true), ("b", Canceled, false), ("c", Canceled, false)]
    );
    assert_eq!(canceled.steps[2].error.as_deref(), Some("not needed"));
    let stop = store
        .renew_steps(
            "node-a",
            &[(ws, a.step.run_id.clone(), a.lease)],
            Utc::now() + Duration::seconds(60),
        )
        .await
        .unwrap();
    assert_eq!(stop, [a.step.run_id.as_str()], "the holder is told to stop");

    let finished = store
        .finish_step(
            ws,
            &a.step.run_id,
            a.lease,
            StepOutcome::Canceled {
                reason: "killed".into(),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(finished.run_finished, Some(RunStatus::Canceled));
    assert_eq!(run_status(&store, ws, &run.run_id).await, RunStatus::Canceled);
    assert_eq!(run_status(&store, ws, &a.step.run_id).await, RunStatus::Canceled);
    assert!(run_events(&store, ws).await.is_empty(), "cancelling raises nothing");
    let again = store
        .cancel_pipeline_run(ws, &run.run_id, "twice", None)
        .await
        .unwrap_err();
    assert!(
        matches!(again, StoreError::Conflict(ref m) if m.contains("has ended")),
        "{again:?}"
    );

    let idle = store
        .submit_pipeline_run(ws, submission(&pipeline_id, steps()))
        .await
        .unwrap()
        .run;
    let canceled = store.cancel_pipeline_run(ws, &idle.run_id, "stop", None).await.unwrap();
    assert_eq!(canceled.run.status, RunStatus::Canceled, "nothing ran: it ends at once");
    assert!(canceled.steps.iter().all(|s| s.state == Canceled));
    assert!(store.claim_steps(&node, 10).await.unwrap().is_empty());
    assert!(matches!(
        store.cancel_pipeline_run(ws, "no-such-run", "stop", None).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn steps_whose_lease_expired_are_recovered(store: Arc<dyn Store>) {
    use StepState::*;
    let (ws, pipeline_id) = published(&store, "ws-recover").await;
    let continuing = NewPipelineRun {
        continue_on_step_failure: true,
        ..submission(&pipeline_id, vec![step("a", &[], 1), step("b", &[], 0)])
    };
    let run = store.submit_pipeline_run(ws, continuing).await.unwrap().run;
    assert_eq!(store.recover_steps(Utc::now(), "node died").await.unwrap(), 0);
    let expired = claim_for("node-gone", -60);
    assert_eq!(store.claim_steps(&expired, 10).await.unwrap().len(), 2);

    assert_eq!(store.recover_steps(Utc::now(), "node died").await.unwrap(), 2);
    let steps = store.pipeline_run(ws, &run.run_id).await.unwrap().steps;
    assert_eq!((steps[0].state, steps[0].attempts), (Ready, 1), "a has a retry left");
    assert_eq!(steps[1].state, Failed);
    assert_eq!(steps[1].error.as_deref(), Some("node died"));
    assert_eq!(
        run_events(&store, ws).await,
        [event("RunStatusChanged", &step_run_id(&run.run_id, "b"))]
    );

    let live = store.claim_steps(&claim_for("node-b", 60), 10).await.unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(
        store.recover_steps(Utc::now(), "node died").await.unwrap(),
        0,
        "a live lease is left alone"
    );
    let finished = store
        .finish_step(ws, &live[0].step.run_id, live[0].lease, completed(), None)
        .await
        .unwrap();
    assert_eq!(finished.run_finished, Some(RunStatus::Failed));
}

pub async fn completed_steps_are_found_by_reuse_key(store: Arc<dyn Store>) {
    let (ws, pipeline_id) = published(&store, "ws-reuse").await;
    let node = claim_for("node-a", 60);
    let process_started = Utc::now().with_nanosecond(0).unwrap() + Duration::seconds(1);
    assert_eq!(store.reusable_step(ws, "k1").await.unwrap(), None);
    let mut finished = Vec::new();
    for reused_from in [None, Some("earlier")] {
        let run = store
            .submit_pipeline_run(ws, submission(&pipeline_id, vec![step("train", &[], 0)]))
            .await
            .unwrap()
            .run;
        let claimed = store.claim_steps(&node, 1).await.unwrap().remove(0);
        let outcome = StepOutcome::Completed {
            reuse_key: Some("k1".into()),
            reused_from: reused_from.map(Into::into),
            started_at: Some(process_started),
        };
        store
            .finish_step(ws, &claimed.step.run_id, claimed.lease, outcome, None)
            .await
            .unwrap();
        finished.push(run.run_id);
    }
    let (pipeline_run_id, step) = store.reusable_step(ws, "k1").await.unwrap().unwrap();
    assert_eq!(pipeline_run_id, finished[1], "the latest");
    assert_eq!(
        step.started_at,
        Some(process_started),
        "the process's start, not the claim's"
    );
    assert_eq!(step.name, "train");
    assert_eq!(step.state, StepState::Completed);
    assert_eq!(step.reuse_key.as_deref(), Some("k1"));
    assert_eq!(step.reused_from.as_deref(), Some("earlier"));
    assert_eq!(store.reusable_step(ws, "k2").await.unwrap(), None);
    let elsewhere = workspace(&store, "ws-reuse-other").await;
    assert_eq!(store.reusable_step(elsewhere, "k1").await.unwrap(), None);
}

pub async fn concurrent_publications_and_keyed_submissions_take_turns(store: Arc<dyn Store>) {
    let ws = workspace(&store, "ws-turns").await;
    let mut publications = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let store = store.clone();
        publications.spawn(async move { store.publish_pipeline(ws, new_pipeline("retrain", None)).await });
    }
    let mut versions = Vec::new();
    while let Some(published) = publications.join_next().await {
        versions.push(published.unwrap().unwrap().version.parse::<u64>().unwrap());
    }
    versions.sort_unstable();
    assert_eq!(
        versions,
        [1, 2, 3, 4, 5, 6],
        "every publication gets a version of its own"
    );

    let pipeline_id = store.list_pipelines(ws, None).await.unwrap().remove(0).id;
    let mut submissions = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let (store, pipeline_id) = (store.clone(), pipeline_id.clone());
        submissions.spawn(async move {
            let keyed = NewPipelineRun {
                idempotency_key: Some("event-7/sub".into()),
                ..submission(&pipeline_id, vec![step("train", &[], 0)])
            };
            store.submit_pipeline_run(ws, keyed).await
        });
    }
    let mut created = 0;
    let mut run_ids = std::collections::HashSet::new();
    while let Some(submitted) = submissions.join_next().await {
        let submitted = submitted.unwrap().unwrap();
        created += usize::from(submitted.created);
        run_ids.insert(submitted.run.run_id);
    }
    assert_eq!((created, run_ids.len()), (1, 1), "one key, one run");
    assert_eq!(
        store.list_runs(ws, None).await.unwrap().len(),
        2,
        "the run and its step's"
    );
}
