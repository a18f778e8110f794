//! The one test suite every store backend must pass. Each case takes a fresh, empty
//! store; `backend_tests!` instantiates every case for one backend, so a case added
//! here runs on every backend.
//!
//! Included as a module by each backend's test file (`tests/sqlite.rs`,
//! `tests/postgres.rs`).

use std::collections::HashSet;
use std::sync::Arc;

use mlgrid_core::EventSchema;
use mlgrid_core::lifecycle::RunStatus;
use mlgrid_core::resource::SourceKind;
use mlgrid_core::subscription::{ProvisioningState, SubscriptionSpec};
use mlgrid_store::*;

mod datastores;
mod pipelines;
pub use datastores::*;
pub use pipelines::*;
mod change_schedules;
mod schedules;
pub use change_schedules::*;
pub use schedules::*;
mod watches;
pub use watches::*;

pub fn new_source(kind: SourceKind, name: &str) -> NewSource {
    NewSource {
        kind,
        name: name.into(),
        subscription_id: "sub".into(),
        resource_group: "rg".into(),
        retention: Default::default(),
    }
}

pub fn event(n: usize) -> NewEvent {
    NewEvent {
        id: format!("id-{n}"),
        schema: EventSchema::EventGridSchema,
        event_type: "T".into(),
        subject: format!("s/{n}"),
        body: format!(r#"{{"n":{n}}}"#),
    }
}

pub fn keys() -> Vec<TopicKey> {
    KeyName::BOTH
        .into_iter()
        .map(|name| TopicKey {
            name,
            salt: format!("salt-{}", name.as_str()),
            hash: format!("hash-{}", name.as_str()),
        })
        .collect()
}

pub async fn sources_are_created_listed_and_deleted(store: Arc<dyn Store>) {
    let ws = store
        .create_source(&new_source(SourceKind::Workspace, "ws1"), &[])
        .await
        .unwrap();
    assert_eq!(ws.last_sequence, 0);
    assert_eq!(
        ws.topic(),
        "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.MachineLearningServices/workspaces/ws1"
    );
    // The same name may be used by a workspace and a topic.
    store
        .create_source(&new_source(SourceKind::Topic, "ws1"), &keys())
        .await
        .unwrap();
    let dup = store
        .create_source(&new_source(SourceKind::Workspace, "ws1"), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(dup, StoreError::Conflict(ref m) if m.contains("ws1")),
        "{dup:?}"
    );
    assert_eq!(store.source(SourceKind::Workspace, "ws1").await.unwrap(), ws);
    store
        .create_source(&new_source(SourceKind::Workspace, "a-ws"), &[])
        .await
        .unwrap();
    let names: Vec<String> = store
        .list_sources(SourceKind::Workspace)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["a-ws", "ws1"]);

    store.append_events(ws.id, vec![event(1)]).await.unwrap();
    store.delete_source(SourceKind::Workspace, "ws1").await.unwrap();
    assert!(matches!(
        store.source(SourceKind::Workspace, "ws1").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_source(SourceKind::Workspace, "ws1").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.read_events(ws.id, 0, 10).await.unwrap().is_empty());
    assert!(matches!(
        store.append_events(ws.id, vec![event(2)]).await,
        Err(StoreError::NotFound(_))
    ));
    // A re-created source starts a new log.
    let again = store
        .create_source(&new_source(SourceKind::Workspace, "ws1"), &[])
        .await
        .unwrap();
    assert_eq!(
        store
            .append_events(again.id, vec![event(3)])
            .await
            .unwrap()
            .first_sequence,
        1
    );
}

pub async fn appended_events_read_back_in_order(store: Arc<dyn Store>) {
    let topic = store
        .create_source(&new_source(SourceKind::Topic, "t1"), &keys())
        .await
        .unwrap();
    let receipt = store
        .append_events(topic.id, (1..=150).map(event).collect())
        .await
        .unwrap();
    assert_eq!((receipt.first_sequence, receipt.last_sequence), (1, 150));
    let receipt = store.append_events(topic.id, vec![event(151)]).await.unwrap();
    assert_eq!((receipt.first_sequence, receipt.last_sequence), (151, 151));

    let page = store.read_events(topic.id, 0, 100).await.unwrap();
    assert_eq!(page.len(), 100);
    assert_eq!(page[0].sequence, 1);
    assert_eq!(page[0].id, "id-1");
    assert_eq!(page[0].subject, "s/1");
    assert_eq!(page[0].body, r#"{"n":1}"#);
    assert_eq!(page[0].schema, EventSchema::EventGridSchema);
    let rest = store.read_events(topic.id, 100, 100).await.unwrap();
    let seqs: Vec<u64> = rest.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, (101..=151).collect::<Vec<_>>());
    assert!(store.read_events(topic.id, 151, 10).await.unwrap().is_empty());
    assert_eq!(store.source(SourceKind::Topic, "t1").await.unwrap().last_sequence, 151);
}

pub async fn concurrent_appends_get_gap_free_sequences(store: Arc<dyn Store>) {
    let a = store
        .create_source(&new_source(SourceKind::Topic, "ta"), &keys())
        .await
        .unwrap();
    let b = store
        .create_source(&new_source(SourceKind::Topic, "tb"), &keys())
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..8usize {
        let store = store.clone();
        let source = if task % 2 == 0 { a.id } else { b.id };
        tasks.spawn(async move {
            let mut receipts = Vec::new();
            for round in 0..25 {
                let n = 1 + (task + round) % 5;
                let events = (0..n).map(|i| event(task * 1000 + round * 10 + i)).collect();
                receipts.push((n as u64, store.append_events(source, events).await.unwrap()));
            }
            receipts
        });
    }
    let mut total = 0;
    while let Some(receipts) = tasks.join_next().await {
        for (n, r) in receipts.unwrap() {
            assert_eq!(
                r.last_sequence - r.first_sequence + 1,
                n,
                "a receipt covers exactly its events"
            );
            total += n;
        }
    }
    let mut seen = 0;
    for source in [a.id, b.id] {
        let events = store.read_events(source, 0, MAX_READ_LIMIT).await.unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
        assert_eq!(
            seqs,
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "no gaps, no repeats"
        );
        let ids: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids.len(), events.len());
        seen += events.len() as u64;
    }
    assert_eq!(seen, total);
}

pub async fn a_failed_write_leaves_others_and_sequences_intact(store: Arc<dyn Store>) {
    let good = store
        .create_source(&new_source(SourceKind::Topic, "good"), &keys())
        .await
        .unwrap();
    let gone = store
        .create_source(&new_source(SourceKind::Topic, "gone"), &keys())
        .await
        .unwrap();
    store.delete_source(SourceKind::Topic, "gone").await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..40 {
        let store = store.clone();
        let source = if i % 3 == 0 { gone.id } else { good.id };
        tasks.spawn(async move { (source, store.append_events(source, vec![event(i)]).await) });
    }
    let mut ok = 0;
    while let Some(result) = tasks.join_next().await {
        let (source, result) = result.unwrap();
        if source == gone.id {
            assert!(matches!(result, Err(StoreError::NotFound(_))), "{result:?}");
        } else {
            result.unwrap();
            ok += 1;
        }
    }
    let events = store.read_events(good.id, 0, 100).await.unwrap();
    assert_eq!(events.len(), ok);
    assert_eq!(events.last().unwrap().sequence, ok as u64);
}

pub async fn bootstrap_owner_is_created_once(store: Arc<dyn Store>) {
    let key = ApiKeyHash {
        key_id: "k1".into(),
        hash: "h1".into(),
    };
    assert!(!store.has_principals().await.unwrap());
    assert!(store.create_bootstrap_owner("admin", &key).await.unwrap());
    assert!(store.has_principals().await.unwrap());
    let other = ApiKeyHash {
        key_id: "k2".into(),
        hash: "h2".into(),
    };
    assert!(!store.create_bootstrap_owner("admin2", &other).await.unwrap());
    let (principal, stored) = store.principal_by_key_id("k1").await.unwrap().unwrap();
    assert_eq!(principal.name, "admin");
    assert_eq!(stored, key);
    assert!(store.principal_by_key_id("k2").await.unwrap().is_none());
    let roles = store.role_assignments(principal.id).await.unwrap();
    assert_eq!(
        roles,
        [RoleAssignment {
            principal_id: principal.id,
            source_id: None,
            role: Role::Owner
        }]
    );
}

pub async fn topic_keys_are_kept_and_replaced(store: Arc<dyn Store>) {
    let topic = store
        .create_source(&new_source(SourceKind::Topic, "keys"), &keys())
        .await
        .unwrap();
    assert_eq!(store.topic_keys(topic.id).await.unwrap(), keys());
    let new_key = TopicKey {
        name: KeyName::Key2,
        salt: "s2".into(),
        hash: "h2".into(),
    };
    store.replace_topic_key(topic.id, &new_key).await.unwrap();
    let stored = store.topic_keys(topic.id).await.unwrap();
    assert_eq!(stored[0], keys()[0]);
    assert_eq!(stored[1], new_key);
    assert!(matches!(
        store.replace_topic_key(SourceId(9999), &new_key).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn followers_are_woken_by_appends(store: Arc<dyn Store>) {
    let topic = store
        .create_source(&new_source(SourceKind::Topic, "watch"), &keys())
        .await
        .unwrap();
    let mut appended = store.appended();
    appended.borrow_and_update();
    let writer = {
        let store = store.clone();
        tokio::spawn(async move { store.append_events(topic.id, vec![event(1)]).await })
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), appended.changed())
        .await
        .expect("an append wakes followers")
        .unwrap();
    writer.await.unwrap().unwrap();
}

pub async fn storage_reports_the_database_size(store: Arc<dyn Store>) {
    let topic = store
        .create_source(&new_source(SourceKind::Topic, "sized"), &keys())
        .await
        .unwrap();
    store.append_events(topic.id, vec![event(1)]).await.unwrap();
    let stats = store.storage().await.unwrap();
    assert!(stats.database_bytes > 0, "{stats:?}");
    assert_eq!(stats.full, None);
}

pub async fn writes_after_close_are_refused(store: Arc<dyn Store>) {
    let topic = store
        .create_source(&new_source(SourceKind::Topic, "closing"), &keys())
        .await
        .unwrap();
    store.append_events(topic.id, vec![event(1)]).await.unwrap();
    store.close().await;
    assert!(matches!(
        store.append_events(topic.id, vec![event(2)]).await,
        Err(StoreError::Closed)
    ));
}

async fn workspace(store: &Arc<dyn Store>, name: &str) -> SourceId {
    store
        .create_source(&new_source(SourceKind::Workspace, name), &[])
        .await
        .unwrap()
        .id
}

fn new_run(experiment: &str) -> NewRun {
    NewRun {
        experiment_name: experiment.into(),
        run_id: None,
        run_type: None,
        parent_run_id: None,
        status: RunStatus::Running,
        tags: [("team".to_owned(), "ml".to_owned())].into(),
        properties: Default::default(),
    }
}

fn status(to: RunStatus) -> RunChange {
    RunChange {
        status: Some(to),
        ..RunChange::default()
    }
}

/// The workspace's log as (eventType, subject, data, sequence) tuples.
async fn raised(store: &Arc<dyn Store>, ws: SourceId) -> Vec<(String, String, serde_json::Value, u64)> {
    store
        .read_events(ws, 0, MAX_READ_LIMIT)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            let body: serde_json::Value = serde_json::from_str(&e.body).unwrap();
            (
                e.event_type,
                e.subject,
                body["data"].clone(),
                body["sequence"].as_u64().unwrap(),
            )
        })
        .collect()
}

pub async fn runs_move_through_validated_statuses_and_raise_azure_ml_events(store: Arc<dyn Store>) {
    let ws = workspace(&store, "ws-runs").await;
    let a = store.start_run(ws, new_run("exp")).await.unwrap();
    let b = store.start_run(ws, new_run("exp")).await.unwrap();
    assert_eq!(
        a.experiment_id, b.experiment_id,
        "the experiment is created once, on first use"
    );
    assert_eq!(a.status, RunStatus::Running);
    assert!(a.start_time.is_some() && a.end_time.is_none());
    assert_ne!(a.run_id, b.run_id);
    assert_eq!(store.experiments(ws).await.unwrap().len(), 1);

    let completed = store
        .change_run(ws, &a.run_id, status(RunStatus::Completed), Some(a.etag.clone()))
        .await
        .unwrap();
    assert_eq!(completed.status, RunStatus::Completed);
    assert!(completed.end_time.is_some());
    assert_ne!(completed.etag, a.etag);
    let again = store
        .change_run(ws, &a.run_id, status(RunStatus::Completed), None)
        .await
        .unwrap_err();
    assert!(
        matches!(again, StoreError::Conflict(ref m) if m.contains("final")),
        "{again:?}"
    );
    let stale = store
        .change_run(ws, &b.run_id, status(RunStatus::Failed), Some("\"old\"".into()))
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::PreconditionFailed(_)), "{stale:?}");
    let failed = RunChange {
        status: Some(RunStatus::Failed),
        error: Some("out of memory".into()),
        ..RunChange::default()
    };
    assert_eq!(
        store
            .change_run(ws, &b.run_id, failed, None)
            .await
            .unwrap()
            .error
            .as_deref(),
        Some("out of memory")
    );
    let c = store.start_run(ws, new_run("other")).await.unwrap();
    store
        .change_run(ws, &c.run_id, status(RunStatus::Canceled), None)
        .await
        .unwrap();
    let queued = store
        .start_run(
            ws,
            NewRun {
                status: RunStatus::Queued,
                ..new_run("other")
            },
        )
        .await
        .unwrap();
    let refused = store
        .change_run(ws, &queued.run_id, status(RunStatus::Completed), None)
        .await
        .unwrap_err();
    assert!(
        matches!(refused, StoreError::Conflict(ref m) if m.contains("Running, Failed, Canceled")),
        "{refused:?}"
    );

    let events = raised(&store, ws).await;
    let types: Vec<&str> = events.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        types,
        [
            "Microsoft.MachineLearningServices.RunCompleted",
            "Microsoft.MachineLearningServices.RunStatusChanged"
        ],
        "nothing for starting, cancelling or refused changes"
    );
    assert_eq!(
        events[0].1,
        format!("experiments/{}/runs/{}", a.experiment_id, a.run_id)
    );
    assert_eq!(events[0].2["ExperimentName"], "exp");
    assert_eq!(events[0].2["RunTags"]["team"], "ml");
    assert!(events[0].2["RunType"].is_null());
    assert_eq!(events[1].2["RunStatus"], "failed");

    let missing_parent = store
        .start_run(
            ws,
            NewRun {
                parent_run_id: Some("nope".into()),
                ..new_run("exp")
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(missing_parent, StoreError::Invalid(ref m) if m.contains("nope")));
    let child = store
        .start_run(
            ws,
            NewRun {
                parent_run_id: Some(a.run_id.clone()),
                run_id: Some("child-1".into()),
                ..new_run("exp")
            },
        )
        .await
        .unwrap();
    assert_eq!(child.parent_run_id.as_deref(), Some(a.run_id.as_str()));
    let duplicate = store
        .start_run(
            ws,
            NewRun {
                run_id: Some("child-1".into()),
                ..new_run("exp")
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(duplicate, StoreError::Conflict(_)), "{duplicate:?}");
    assert_eq!(store.list_runs(ws, Some("exp")).await.unwrap().len(), 3);

    store
        .log_metrics(
            ws,
            "child-1",
            vec![
                NewMetric {
                    name: "loss".into(),
                    value: 0.5,
                    step: 1,
                },
                NewMetric {
                    name: "loss".into(),
                    value: 0.25,
                    step: 2,
                },
            ],
        )
        .await
        .unwrap();
    let metrics = store.run_metrics(ws, "child-1").await.unwrap();
    assert_eq!(
        metrics.iter().map(|m| (m.step, m.value)).collect::<Vec<_>>(),
        [(1, 0.5), (2, 0.25)]
    );
    assert!(matches!(
        store
            .log_metrics(
                ws,
                &a.run_id,
                vec![NewMetric {
                    name: "x".into(),
                    value: 1.0,
                    step: 0
                }]
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
}

pub async fn concurrent_completions_raise_exactly_one_event(store: Arc<dyn Store>) {
    let ws = workspace(&store, "ws-race").await;
    let run = store.start_run(ws, new_run("race")).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let (store, run_id) = (store.clone(), run.run_id.clone());
        tasks.spawn(async move { store.change_run(ws, &run_id, status(RunStatus::Completed), None).await });
    }
    let mut ok = 0;
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            Ok(_) => ok += 1,
            Err(StoreError::Conflict(_)) => {}
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(raised(&store, ws).await.len(), 1);
}

pub async fn model_versions_are_never_reused_even_concurrently(store: Arc<dyn Store>) {
    let ws = workspace(&store, "ws-models").await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.spawn(async move {
            let new = NewModel {
                name: "churn".into(),
                path: Some(format!("outputs/{i}")),
                description: None,
                tags: Default::default(),
                properties: Default::default(),
            };
            store.register_model(ws, new).await.unwrap().version
        });
    }
    let mut versions = Vec::new();
    while let Some(v) = tasks.join_next().await {
        versions.push(v.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=20).collect::<Vec<u64>>());
    let events = raised(&store, ws).await;
    assert_eq!(events.len(), 20);
    let mut event_versions: Vec<u64> = events.iter().map(|e| e.2["ModelVersion"].as_u64().unwrap()).collect();
    event_versions.sort_unstable();
    assert_eq!(event_versions, versions, "one ModelRegistered per version");
    assert!(
        events
            .iter()
            .all(|e| e.1 == format!("models/churn:{}", e.2["ModelVersion"]))
    );
    assert!(events.iter().all(|e| e.3 == 1), "each version is its own subject");

    let latest = store.model(ws, "churn", None).await.unwrap();
    assert_eq!(latest.version, 20);
    let archived = store
        .change_model(
            ws,
            "churn",
            20,
            ModelChange {
                archived: Some(true),
                ..ModelChange::default()
            },
            Some(latest.etag.clone()),
        )
        .await
        .unwrap();
    assert!(archived.archived);
    assert_eq!(
        store.model(ws, "churn", None).await.unwrap().version,
        19,
        "latest skips archived versions"
    );
    assert_eq!(store.list_models(ws, Some("churn"), false).await.unwrap().len(), 19);
    assert_eq!(store.list_models(ws, None, true).await.unwrap().len(), 20);
    let tagged = store
        .change_model(
            ws,
            "churn",
            3,
            ModelChange {
                tags: [("stage".to_owned(), Some("prod".to_owned()))].into(),
                description: Some("v3".into()),
                ..ModelChange::default()
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(tagged.tags["stage"], "prod");
    let stale = store
        .change_model(ws, "churn", 3, ModelChange::default(), Some(archived.etag.clone()))
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::PreconditionFailed(_)));
    assert_eq!(raised(&store, ws).await.len(), 20, "updates raise no event");
    // Versions are not reused after a later registration either.
    let next = NewModel {
        name: "churn".into(),
        path: None,
        description: None,
        tags: Default::default(),
        properties: Default::default(),
    };
    assert_eq!(store.register_model(ws, next).await.unwrap().version, 21);
}

pub async fn deployments_check_models_and_raise_on_each_deploy(store: Arc<dyn Store>) {
    let ws = workspace(&store, "ws-deploy").await;
    let model = NewModel {
        name: "m".into(),
        path: None,
        description: None,
        tags: Default::default(),
        properties: Default::default(),
    };
    store.register_model(ws, model.clone()).await.unwrap();
    store.register_model(ws, model).await.unwrap();
    let deployment = |models: &[&str]| NewDeployment {
        name: "svc".into(),
        compute_type: mlgrid_core::lifecycle::ComputeType::Aks,
        models: models.iter().map(|m| m.parse().unwrap()).collect(),
        tags: Default::default(),
        properties: [("owner".to_owned(), "ml".to_owned())].into(),
    };
    let missing = store.deploy(ws, deployment(&["m:1", "m:7"]), None).await.unwrap_err();
    assert!(
        matches!(missing, StoreError::Invalid(ref m) if m.contains("m:7")),
        "{missing:?}"
    );
    assert!(
        matches!(store.deployment(ws, "svc").await, Err(StoreError::NotFound(_))),
        "a refused deploy changes nothing"
    );
    let (first, created) = store.deploy(ws, deployment(&["m:1"]), None).await.unwrap();
    assert!(created);
    let (second, created) = store
        .deploy(ws, deployment(&["m:1", "m:2"]), Some(first.etag.clone()))
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(second.created_at, first.created_at);
    assert_eq!(second.models.len(), 2);
    let stale = store
        .deploy(ws, deployment(&["m:2"]), Some(first.etag.clone()))
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::PreconditionFailed(_)));

    let events = raised(&store, ws).await;
    let deployed: Vec<_> = events.iter().filter(|e| e.0.ends_with("ModelDeployed")).collect();
    assert_eq!(deployed.len(), 2);
    assert_eq!(deployed[1].1, "endpoints/svc");
    assert_eq!(deployed[1].2["ModelIds"], "m:1,m:2");
    assert_eq!(deployed[1].2["ServiceComputeType"], "AKS");
    assert_eq!((deployed[0].3, deployed[1].3), (1, 2), "per-subject sequence");

    assert_eq!(store.list_deployments(ws).await.unwrap().len(), 1);
    store
        .delete_deployment(ws, "svc", Some(second.etag.clone()))
        .await
        .unwrap();
    assert!(matches!(
        store.delete_deployment(ws, "svc", None).await,
        Err(StoreError::NotFound(_))
    ));
}

pub async fn datasets_are_versioned(store: Arc<dyn Store>) {
    let ws = workspace(&store, "ws-data").await;
    let new = |path: &str| NewDataset {
        name: "train".into(),
        path: path.into(),
        description: None,
        tags: Default::default(),
    };
    assert_eq!(store.register_dataset(ws, new("data/v1.csv")).await.unwrap().version, 1);
    assert_eq!(store.register_dataset(ws, new("data/v2.csv")).await.unwrap().version, 2);
    assert_eq!(store.dataset(ws, "train", None).await.unwrap().path, "data/v2.csv");
    assert_eq!(store.dataset(ws, "train", Some(1)).await.unwrap().path, "data/v1.csv");
    assert_eq!(store.list_datasets(ws, None).await.unwrap().len(), 2);
    assert!(matches!(
        store.dataset(ws, "train", Some(9)).await,
        Err(StoreError::NotFound(_))
    ));
    let topic = store
        .create_source(&new_source(SourceKind::Topic, "not-a-ws"), &keys())
        .await
        .unwrap();
    assert!(matches!(
        store.register_dataset(topic.id, new("x")).await,
        Err(StoreError::Invalid(_))
    ));
}

pub async fn principals_keys_and_role_assignments(store: Arc<dyn Store>) {
    let admin_key = ApiKeyHash {
        key_id: "a".into(),
        hash: "ha".into(),
    };
    store.create_bootstrap_owner("admin", &admin_key).await.unwrap();
    let bob = store
        .create_principal(
            "bob",
            &ApiKeyHash {
                key_id: "b1".into(),
                hash: "hb1".into(),
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_principal(
                "bob",
                &ApiKeyHash {
                    key_id: "x".into(),
                    hash: "y".into()
                }
            )
            .await,
        Err(StoreError::Conflict(_))
    ));
    store
        .add_principal_key(
            bob.id,
            &ApiKeyHash {
                key_id: "b2".into(),
                hash: "hb2".into(),
            },
        )
        .await
        .unwrap();
    let listed = store.list_principals().await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|p| (p.principal.name.as_str(), p.keys))
            .collect::<Vec<_>>(),
        [("admin", 1), ("bob", 2)]
    );
    assert_eq!(store.revoke_principal_keys(bob.id).await.unwrap(), 2);
    assert!(
        store.principal_by_key_id("b1").await.unwrap().is_none(),
        "revoked keys stop working at once"
    );
    assert_eq!(store.principal("bob").await.unwrap(), bob);

    let ws = workspace(&store, "ws-access").await;
    let grant = store
        .create_role_assignment(bob.id, Some(ws), Role::Reader)
        .await
        .unwrap();
    assert_eq!(
        (grant.principal.as_str(), grant.source.clone(), grant.role),
        (
            "bob",
            Some((SourceKind::Workspace, "ws-access".to_owned())),
            Role::Reader
        )
    );
    assert!(matches!(
        store.create_role_assignment(bob.id, Some(ws), Role::Reader).await,
        Err(StoreError::Conflict(_))
    ));
    let global = store
        .create_role_assignment(bob.id, None, Role::Contributor)
        .await
        .unwrap();
    assert_eq!(global.source, None);
    assert!(matches!(
        store.create_role_assignment(bob.id, None, Role::Contributor).await,
        Err(StoreError::Conflict(_))
    ));
    let roles = store.role_assignments(bob.id).await.unwrap();
    assert_eq!(roles.len(), 2);
    assert_eq!(store.list_role_assignments().await.unwrap().len(), 3);

    let admin_grant = store
        .list_role_assignments()
        .await
        .unwrap()
        .into_iter()
        .find(|g| g.principal == "admin")
        .unwrap();
    let last = store.delete_role_assignment(admin_grant.id).await.unwrap_err();
    assert!(
        matches!(last, StoreError::Conflict(ref m) if m.contains("last Owner")),
        "{last:?}"
    );
    store.delete_role_assignment(grant.id).await.unwrap();
    assert!(matches!(
        store.delete_role_assignment(grant.id).await,
        Err(StoreError::NotFound(_))
    ));
    // Deleting a workspace removes the roles held on it.
    let again = store
        .create_role_assignment(bob.id, Some(ws), Role::Owner)
        .await
        .unwrap();
    store.delete_source(SourceKind::Workspace, "ws-access").await.unwrap();
    assert!(
        !store
            .list_role_assignments()
            .await
            .unwrap()
            .iter()
            .any(|g| g.id == again.id)
    );
}

fn key(id: &str) -> ApiKeyHash {
    ApiKeyHash {
        key_id: id.into(),
        hash: format!("hash-{id}"),
    }
}

pub async fn the_last_usable_owner_keeps_its_keys(store: Arc<dyn Store>) {
    store.create_bootstrap_owner("admin", &key("a")).await.unwrap();
    let admin = store.principal("admin").await.unwrap();
    let refused = store.revoke_principal_keys(admin.id).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::Conflict(ref m) if m.contains("`admin` is the last Owner") && m.contains("another Owner")),
        "{refused:?}"
    );
    assert!(
        store.principal_by_key_id("a").await.unwrap().is_some(),
        "nothing was revoked"
    );

    // An Owner of one workspace, or an Owner of everything without a key, does not count.
    let ws = workspace(&store, "ws-owners").await;
    let local = store.create_principal("local", &key("l")).await.unwrap();
    store
        .create_role_assignment(local.id, Some(ws), Role::Owner)
        .await
        .unwrap();
    let keyless = store.create_principal("keyless", &key("k")).await.unwrap();
    store
        .create_role_assignment(keyless.id, None, Role::Owner)
        .await
        .unwrap();
    assert_eq!(store.revoke_principal_keys(keyless.id).await.unwrap(), 1);
    assert!(matches!(
        store.revoke_principal_keys(admin.id).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.revoke_principal_keys(local.id).await.unwrap(), 1);
    assert_eq!(
        store.revoke_principal_keys(keyless.id).await.unwrap(),
        0,
        "nothing left to revoke"
    );

    // Two Owners revoking each other at once: one wins, one usable Owner stays.
    let bob = store.create_principal("bob", &key("b")).await.unwrap();
    store.create_role_assignment(bob.id, None, Role::Owner).await.unwrap();
    let (a, b) = tokio::join!(
        store.revoke_principal_keys(admin.id),
        store.revoke_principal_keys(bob.id)
    );
    assert_eq!(
        [a.is_ok(), b.is_ok()].iter().filter(|ok| **ok).count(),
        1,
        "exactly one revocation passes: {a:?} {b:?}"
    );
    let usable = ["a", "b"];
    let mut left = 0;
    for id in usable {
        left += usize::from(store.principal_by_key_id(id).await.unwrap().is_some());
    }
    assert_eq!(left, 1);
}

pub async fn names_are_unique_and_found_ignoring_case(store: Arc<dyn Store>) {
    let ws = store
        .create_source(&new_source(SourceKind::Workspace, "wsA"), &[])
        .await
        .unwrap();
    let clash = store
        .create_source(&new_source(SourceKind::Workspace, "wsa"), &[])
        .await
        .unwrap_err();
    assert!(
        matches!(clash, StoreError::Conflict(ref m) if m.contains("workspace `wsA` already exists") && m.contains("ignoring case")),
        "{clash:?}"
    );
    assert_eq!(store.source(SourceKind::Workspace, "WSA").await.unwrap(), ws);
    // Another kind is another namespace, as before.
    store
        .create_source(&new_source(SourceKind::Topic, "WSA"), &keys())
        .await
        .unwrap();
    store.delete_source(SourceKind::Workspace, "wsa").await.unwrap();
    assert!(matches!(
        store.source(SourceKind::Workspace, "wsA").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.source(SourceKind::Topic, "wsa").await.unwrap().name, "WSA");

    let bob = store.create_principal("Bob", &key("b")).await.unwrap();
    let clash = store.create_principal("bob", &key("b2")).await.unwrap_err();
    assert!(
        matches!(clash, StoreError::Conflict(ref m) if m.contains("principal `Bob` already exists")),
        "{clash:?}"
    );
    assert_eq!(store.principal("BOB").await.unwrap(), bob);
}

/// The definition of a webhook subscription to `url`.
pub fn webhook(url: &str) -> SubscriptionSpec {
    serde_json::from_value(serde_json::json!({
        "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": url}}
    }))
    .expect("a webhook definition")
}

/// An active webhook subscription named `name`, delivering to `url`.
pub fn put(name: &str, url: &str) -> SubscriptionPut {
    SubscriptionPut {
        name: name.into(),
        spec: webhook(url),
        provisioning_state: ProvisioningState::Succeeded,
        expires_at: None,
        secret_salt: format!("salt-{name}"),
    }
}

pub async fn subscriptions_are_put_listed_expired_and_deleted(store: Arc<dyn Store>) {
    let ws = workspace(&store, "ws-subs").await;
    let v0 = store.subscriptions_version().await.unwrap();
    let (created, new) = store
        .put_subscription(ws, put("sub-a", "https://example.com/v1"), None)
        .await
        .unwrap();
    assert!(new);
    assert!(
        store.subscriptions_version().await.unwrap() > v0,
        "changes bump the version"
    );
    let stale = store
        .put_subscription(ws, put("sub-a", "https://example.com/v2"), Some("\"old\"".into()))
        .await
        .unwrap_err();
    assert!(matches!(stale, StoreError::PreconditionFailed(_)));
    let (replaced, new) = store
        .put_subscription(ws, put("sub-a", "https://example.com/v2"), Some(created.etag.clone()))
        .await
        .unwrap();
    assert!(!new);
    assert_eq!(
        (
            replaced.id,
            replaced.spec.destination.properties.endpoint_url.as_str(),
            replaced.created_at
        ),
        (created.id, "https://example.com/v2", created.created_at)
    );
    assert_ne!(replaced.etag, created.etag);
    assert_eq!(
        (replaced.secret_salt.as_str(), &replaced.previous_salt),
        ("salt-sub-a", &None),
        "a replaced subscription keeps its secret"
    );
    let grace = chrono::Utc::now() + chrono::Duration::hours(1);
    let rotated = store
        .rotate_subscription_secret(ws, "sub-a", "salt-2", grace)
        .await
        .unwrap();
    assert_eq!(rotated.secret_salt, "salt-2");
    assert_eq!(
        rotated.previous_salt.as_ref().map(|(s, _)| s.as_str()),
        Some("salt-sub-a")
    );
    let replaced = rotated;
    let soon = SubscriptionPut {
        expires_at: Some(chrono::Utc::now() + chrono::Duration::seconds(1)),
        ..put("sub-b", "https://example.com/b")
    };
    store.put_subscription(ws, soon, None).await.unwrap();
    assert_eq!(store.list_subscriptions(Some(ws)).await.unwrap().len(), 2);
    assert_eq!(store.delete_expired_subscriptions(chrono::Utc::now()).await.unwrap(), 0);
    assert_eq!(
        store
            .delete_expired_subscriptions(chrono::Utc::now() + chrono::Duration::seconds(2))
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        store.subscription(ws, "sub-b").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.subscription(ws, "sub-a").await.unwrap(), replaced);
    store.delete_subscription(ws, "sub-a", None).await.unwrap();
    assert!(matches!(
        store.delete_subscription(ws, "sub-a", None).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store.list_subscriptions(None).await.unwrap().is_empty());
}

pub async fn matches_are_recorded_once_with_the_cursor(store: Arc<dyn Store>) {
    let topic = store
        .create_source(&new_source(SourceKind::Topic, "routed"), &keys())
        .await
        .unwrap();
    store.append_events(topic.id, vec![event(0)]).await.unwrap();
    let (a, _) = store
        .put_subscription(topic.id, put("sub-a", "https://example.com/a"), None)
        .await
        .unwrap();
    assert_eq!(a.start_sequence, 1, "it receives only events published after it");
    let (b, _) = store
        .put_subscription(topic.id, put("sub-b", "https://example.com/b"), None)
        .await
        .unwrap();
    store
        .append_events(topic.id, (1..=4).map(event).collect())
        .await
        .unwrap();
    assert_eq!(store.fanout_cursor(topic.id).await.unwrap(), 0);
    let batch = RoutedBatch {
        source: topic.id,
        from_sequence: 0,
        to_sequence: 3,
        matches: vec![(a.id, 2), (b.id, 2), (a.id, 3)],
        lease_until: None,
    };
    store.record_matches(batch.clone()).await.unwrap();
    assert_eq!(store.fanout_cursor(topic.id).await.unwrap(), 3);
    let again = store.record_matches(batch).await.unwrap_err();
    assert!(
        matches!(again, StoreError::Conflict(_)),
        "a stale cursor is refused: {again:?}"
    );
    store.delete_subscription(topic.id, "sub-b", None).await.unwrap();
    let batch = RoutedBatch {
        source: topic.id,
        from_sequence: 3,
        to_sequence: 5,
        matches: vec![(a.id, 5), (b.id, 4)],
        lease_until: None,
    };
    store.record_matches(batch).await.unwrap();
    let matched: Vec<u64> = store
        .subscription_matches(a.id, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(matched, [2, 3, 5]);
    assert_eq!(store.subscription_matches(a.id, 2, 1).await.unwrap()[0].id, "id-2");
    assert!(
        store.subscription_matches(b.id, 0, 100).await.unwrap().is_empty(),
        "a deleted subscription keeps nothing"
    );
}

fn attempt(
    subscription: SubscriptionId,
    sequences: Vec<u64>,
    status: Option<u16>,
    next: AfterAttempt,
) -> AttemptRecord {
    AttemptRecord {
        subscription_id: subscription,
        sequences,
        attempted_at: chrono::Utc::now(),
        status_code: status,
        latency_ms: 1.5,
        outcome: if next == AfterAttempt::Delivered {
            "Delivered".into()
        } else {
            "Failed".into()
        },
        error: status.is_none().then(|| "connection refused".to_owned()),
        response_excerpt: None,
        next,
    }
}

pub async fn batch_outcomes_touch_only_their_own_deliveries(store: Arc<dyn Store>) {
    let (topic, sub) = topic_with_events(&store, "batches", 30).await;
    let now = chrono::Utc::now();
    let lease = now + chrono::Duration::seconds(30);
    store
        .record_matches(RoutedBatch {
            source: topic.id,
            from_sequence: 0,
            to_sequence: 30,
            matches: (1..=30).map(|s| (sub.id, s)).collect(),
            lease_until: Some(lease),
        })
        .await
        .unwrap();
    let retry_at = lease + chrono::Duration::seconds(10);
    let with_gap: Vec<u64> = (11..=14).chain(16..=19).collect();
    store
        .record_attempts(vec![
            attempt(sub.id, (1..=10).collect(), Some(200), AfterAttempt::Delivered),
            attempt(sub.id, with_gap.clone(), Some(503), AfterAttempt::RetryAt(retry_at)),
            attempt(
                sub.id,
                (20..=29).collect(),
                Some(413),
                AfterAttempt::DeadLetter("NonRetriableStatus".into()),
            ),
        ])
        .await
        .unwrap();

    let stats = store.delivery_stats(sub.id).await.unwrap();
    assert_eq!((stats.delivered, stats.dead_lettered, stats.pending), (10, 10, 10));
    let after_lease = lease + chrono::Duration::seconds(1);
    let unattempted = store
        .claim_deliveries(after_lease, after_lease + chrono::Duration::seconds(30), 100)
        .await
        .unwrap();
    let mut unattempted: Vec<(u64, u32)> = unattempted.iter().map(|d| (d.sequence, d.attempts)).collect();
    unattempted.sort();
    assert_eq!(
        unattempted,
        [(15, 0), (30, 0)],
        "the gap in a batch and the delivery after it are left alone"
    );
    let retried = store.claim_deliveries(retry_at, retry_at, 100).await.unwrap();
    let mut sequences: Vec<u64> = retried.iter().map(|d| d.sequence).collect();
    sequences.sort();
    assert_eq!(sequences, with_gap);
    assert!(retried.iter().all(|d| d.attempts == 1));
    let dead = store.dead_letters(sub.id, DeadLetterQuery::page(0, 100)).await.unwrap();
    assert_eq!(
        dead.iter().map(|d| d.sequence).collect::<Vec<_>>(),
        (20..=29).collect::<Vec<_>>()
    );
    assert!(
        dead.iter()
            .all(|d| d.dead_letter_reason == "NonRetriableStatus" && d.delivery_attempts == 1)
    );
}

/// A topic with one subscription that matches everything, and events 1..=`events`
/// appended after it.
async fn topic_with_events(store: &Arc<dyn Store>, name: &str, events: usize) -> (Source, EventSubscription) {
    let topic = store
        .create_source(&new_source(SourceKind::Topic, name), &keys())
        .await
        .unwrap();
    let (sub, _) = store
        .put_subscription(topic.id, put("sub-a", "https://example.com/a"), None)
        .await
        .unwrap();
    store
        .append_events(topic.id, (1..=events).map(event).collect())
        .await
        .unwrap();
    (topic, sub)
}

pub async fn deliveries_are_leased_attempted_and_dead_lettered(store: Arc<dyn Store>) {
    let (topic, sub) = topic_with_events(&store, "deliver", 4).await;
    let matches = (1..=4).map(|s| (sub.id, s)).collect();
    store
        .record_matches(RoutedBatch {
            source: topic.id,
            from_sequence: 0,
            to_sequence: 4,
            matches,
            lease_until: None,
        })
        .await
        .unwrap();

    let now = chrono::Utc::now();
    let lease = now + chrono::Duration::seconds(30);
    let claimed = store.claim_deliveries(now, lease, 3).await.unwrap();
    assert_eq!(claimed.iter().map(|d| d.sequence).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!((claimed[0].attempts, claimed[0].body.as_str()), (0, r#"{"n":1}"#));
    assert_eq!(
        store.claim_deliveries(now, lease, 10).await.unwrap().len(),
        1,
        "leased deliveries are not claimed twice"
    );
    // A dead worker's lease runs out: the deliveries are due again.
    let later = now + chrono::Duration::seconds(31);
    assert_eq!(
        store
            .claim_deliveries(later, later + chrono::Duration::seconds(30), 10)
            .await
            .unwrap()
            .len(),
        4
    );

    store
        .record_attempts(vec![attempt(sub.id, vec![1], Some(200), AfterAttempt::Delivered)])
        .await
        .unwrap();
    let retry_at = later + chrono::Duration::seconds(10);
    store
        .record_attempts(vec![attempt(
            sub.id,
            vec![2, 3],
            Some(500),
            AfterAttempt::RetryAt(retry_at),
        )])
        .await
        .unwrap();
    store
        .record_attempts(vec![attempt(
            sub.id,
            vec![4],
            Some(400),
            AfterAttempt::DeadLetter("NonRetriableStatus".into()),
        )])
        .await
        .unwrap();
    assert!(
        store.claim_deliveries(later, later, 10).await.unwrap().is_empty(),
        "a retry waits for its time"
    );
    let retried = store
        .claim_deliveries(retry_at, retry_at + chrono::Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(
        retried.iter().map(|d| (d.sequence, d.attempts)).collect::<Vec<_>>(),
        [(2, 1), (3, 1)]
    );

    // A busy endpoint gives deliveries back without an attempt.
    let retried_at = retry_at + chrono::Duration::seconds(30);
    store.release_deliveries(sub.id, vec![2, 3], retried_at).await.unwrap();
    assert!(store.claim_deliveries(retry_at, retry_at, 10).await.unwrap().is_empty());
    let back = store
        .claim_deliveries(retried_at, retried_at + chrono::Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(
        back.iter().map(|d| (d.sequence, d.attempts)).collect::<Vec<_>>(),
        [(2, 1), (3, 1)]
    );

    let stats = store.delivery_stats(sub.id).await.unwrap();
    assert_eq!(
        (
            stats.delivered,
            stats.dead_lettered,
            stats.pending,
            stats.failed_attempts
        ),
        (1, 1, 2, 2)
    );
    let attempts = store.delivery_attempts(sub.id, 10).await.unwrap();
    assert_eq!(attempts.len(), 3);
    assert_eq!(
        (attempts[0].status_code, attempts[0].first_sequence),
        (Some(400), 4),
        "newest first"
    );
    assert_eq!(attempts[1].events, 2);

    let dead = store.dead_letters(sub.id, DeadLetterQuery::page(0, 10)).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (
            dead[0].sequence,
            dead[0].dead_letter_reason.as_str(),
            dead[0].delivery_attempts,
            dead[0].last_http_status_code
        ),
        (4, "NonRetriableStatus", 1, Some(400))
    );
    assert_eq!(store.redeliver(sub.id, only(vec![4])).await.unwrap(), 1);
    assert!(
        store
            .dead_letters(sub.id, DeadLetterQuery::page(0, 10))
            .await
            .unwrap()
            .is_empty()
    );
    let again = store.claim_deliveries(retried_at, retried_at, 10).await.unwrap();
    assert_eq!(
        again.iter().map(|d| (d.sequence, d.attempts)).collect::<Vec<_>>(),
        [(4, 0)],
        "redelivery starts over"
    );
    store
        .record_attempts(vec![attempt(
            sub.id,
            vec![4],
            None,
            AfterAttempt::DeadLetter("MaxDeliveryAttemptsExceeded".into()),
        )])
        .await
        .unwrap();
    assert_eq!(
        store
            .purge_dead_letters(sub.id, DeadLetterFilter::default())
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.delivery_stats(sub.id).await.unwrap().dead_lettered, 0);
}

/// Dead letters of `sub` with these sequences only.
fn only(sequences: Vec<u64>) -> DeadLetterFilter {
    DeadLetterFilter {
        sequences: Some(sequences),
        ..DeadLetterFilter::default()
    }
}

/// An event of either schema, its type in its body where that schema keeps it.
fn typed_event(n: usize, schema: EventSchema, event_type: &str) -> NewEvent {
    let body = match schema {
        EventSchema::EventGridSchema => serde_json::json!({"id": format!("id-{n}"), "eventType": event_type}),
        EventSchema::CloudEventSchemaV1_0 => serde_json::json!({"id": format!("id-{n}"), "type": event_type}),
    };
    NewEvent {
        id: format!("id-{n}"),
        schema,
        event_type: event_type.into(),
        subject: format!("s/{n}"),
        body: body.to_string(),
    }
}

/// Dead letters are selected in the store's query, by reason, by their event's type (of
/// either schema) and by the last attempt's status, each ignoring ASCII case only, all
/// conditions together, with or without a list of sequences; listing, redelivering and
/// purging select alike.
pub async fn dead_letters_are_selected_by_reason_event_type_and_status(store: Arc<dyn Store>) {
    use EventSchema::{CloudEventSchemaV1_0 as Cloud, EventGridSchema as Grid};
    let topic = store
        .create_source(&new_source(SourceKind::Topic, "selected"), &keys())
        .await
        .unwrap();
    let (sub, _) = store
        .put_subscription(topic.id, put("sub", "https://example.com/hook"), None)
        .await
        .unwrap();
    let events = [
        (Grid, "Shop.OrderPlaced", Some(400), Some("NonRetriableStatus")),
        (
            Cloud,
            "shop.orderplaced",
            Some(503),
            Some("MaxDeliveryAttemptsExceeded"),
        ),
        (Grid, "Shop.OrderShipped", Some(404), Some("NonRetriableStatus")),
        (Cloud, "Shop.OrderShipped", None, Some("TimeToLiveExceeded")),
        (Grid, "Shop.OrderPlaced", Some(200), None),
        (Cloud, "Shop.Örder", Some(400), Some("NonRetriableStatus")),
    ];
    store
        .append_events(
            topic.id,
            events
                .iter()
                .enumerate()
                .map(|(i, (schema, event_type, ..))| typed_event(i + 1, *schema, event_type))
                .collect(),
        )
        .await
        .unwrap();
    store
        .record_matches(RoutedBatch {
            source: topic.id,
            from_sequence: 0,
            to_sequence: 6,
            matches: (1..=6).map(|q| (sub.id, q)).collect(),
            lease_until: None,
        })
        .await
        .unwrap();
    let now = chrono::Utc::now();
    assert_eq!(
        store
            .claim_deliveries(now, now + chrono::Duration::seconds(30), 10)
            .await
            .unwrap()
            .len(),
        6
    );
    let outcomes = events.iter().enumerate().map(|(i, (_, _, status, reason))| {
        let next = match reason {
            Some(reason) => AfterAttempt::DeadLetter((*reason).into()),
            None => AfterAttempt::Delivered,
        };
        attempt(sub.id, vec![i as u64 + 1], *status, next)
    });
    store.record_attempts(outcomes.collect()).await.unwrap();

    let select = |filter: DeadLetterFilter| {
        let store = store.clone();
        async move {
            let query = DeadLetterQuery {
                after: 0,
                limit: 100,
                filter,
            };
            let dead = store.dead_letters(sub.id, query).await.unwrap();
            dead.iter().map(|d| d.sequence).collect::<Vec<_>>()
        }
    };
    assert_eq!(select(DeadLetterFilter::default()).await, [1, 2, 3, 4, 6]);
    let by_reason = DeadLetterFilter {
        reason: Some("nonretriablestatus".into()),
        ..DeadLetterFilter::default()
    };
    assert_eq!(select(by_reason.clone()).await, [1, 3, 6]);
    let by_type = DeadLetterFilter {
        event_type: Some("SHOP.ORDERPLACED".into()),
        ..DeadLetterFilter::default()
    };
    assert_eq!(
        select(by_type.clone()).await,
        [1, 2],
        "Event Grid's eventType and CloudEvents' type, any ASCII case; delivered events are no dead letters"
    );
    let non_ascii = |event_type: &str| DeadLetterFilter {
        event_type: Some(event_type.into()),
        ..DeadLetterFilter::default()
    };
    assert_eq!(select(non_ascii("SHOP.Örder")).await, [6]);
    assert!(
        select(non_ascii("shop.örder")).await.is_empty(),
        "only ASCII letters compare ignoring case"
    );
    let by_status = DeadLetterFilter {
        status_code: Some(400),
        ..DeadLetterFilter::default()
    };
    assert_eq!(select(by_status).await, [1, 6]);
    let all_of = DeadLetterFilter {
        reason: Some("NonRetriableStatus".into()),
        event_type: Some("shop.ordershipped".into()),
        status_code: Some(404),
        sequences: None,
    };
    assert_eq!(select(all_of).await, [3]);
    let with_sequences = DeadLetterFilter {
        sequences: Some(vec![2, 3, 5]),
        ..by_reason.clone()
    };
    assert_eq!(select(with_sequences).await, [3]);
    assert!(select(only(Vec::new())).await.is_empty());
    let page = DeadLetterQuery {
        after: 1,
        limit: 1,
        filter: by_reason.clone(),
    };
    let paged: Vec<u64> = store
        .dead_letters(sub.id, page)
        .await
        .unwrap()
        .iter()
        .map(|d| d.sequence)
        .collect();
    assert_eq!(paged, [3]);

    assert_eq!(store.redeliver(sub.id, by_type).await.unwrap(), 2);
    assert_eq!(select(DeadLetterFilter::default()).await, [3, 4, 6]);
    assert_eq!(store.purge_dead_letters(sub.id, by_reason).await.unwrap(), 2);
    assert_eq!(select(DeadLetterFilter::default()).await, [4]);
    let none_left = DeadLetterFilter {
        status_code: Some(400),
        ..DeadLetterFilter::default()
    };
    assert_eq!(store.purge_dead_letters(sub.id, none_left).await.unwrap(), 0);
    assert_eq!(store.delivery_stats(sub.id).await.unwrap().pending, 2, "redelivered");
}

pub async fn unvalidated_subscriptions_hold_their_backlog_until_they_succeed(store: Arc<dyn Store>) {
    let topic = store
        .create_source(&new_source(SourceKind::Topic, "handshake"), &keys())
        .await
        .unwrap();
    let awaiting = SubscriptionPut {
        provisioning_state: ProvisioningState::AwaitingManualAction,
        ..put("sub-a", "https://example.com/a")
    };
    let (sub, _) = store.put_subscription(topic.id, awaiting, None).await.unwrap();
    store
        .append_events(topic.id, (1..=3).map(event).collect())
        .await
        .unwrap();
    store
        .record_matches(RoutedBatch {
            source: topic.id,
            from_sequence: 0,
            to_sequence: 3,
            matches: vec![(sub.id, 1)],
            lease_until: None,
        })
        .await
        .unwrap();
    let now = chrono::Utc::now();
    let lease = now + chrono::Duration::seconds(30);
    assert!(
        store.claim_deliveries(now, lease, 10).await.unwrap().is_empty(),
        "nothing is delivered to an endpoint that has not validated"
    );

    let version = store.subscriptions_version().await.unwrap();
    let wrong_state = store
        .transition_subscription(
            sub.id,
            &sub.etag,
            ProvisioningState::Failed,
            ProvisioningState::Succeeded,
        )
        .await
        .unwrap();
    assert_eq!(wrong_state, None);
    let wrong_etag = store
        .transition_subscription(
            sub.id,
            "\"other\"",
            ProvisioningState::AwaitingManualAction,
            ProvisioningState::Succeeded,
        )
        .await
        .unwrap();
    assert_eq!(
        wrong_etag, None,
        "a replaced definition is not validated by an old handshake"
    );
    let active = store
        .transition_subscription(
            sub.id,
            &sub.etag,
            ProvisioningState::AwaitingManualAction,
            ProvisioningState::Succeeded,
        )
        .await
        .unwrap()
        .expect("moved");
    assert_eq!(active.provisioning_state, ProvisioningState::Succeeded);
    assert_eq!(active.etag, sub.etag);
    assert_eq!(active.start_sequence, 3, "it receives what is published from now on");
    assert!(store.subscriptions_version().await.unwrap() > version);
    let claimed = store.claim_deliveries(now, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1, "the backlog flows once it succeeded");
    assert_eq!(
        store
            .transition_subscription(
                sub.id,
                &sub.etag,
                ProvisioningState::AwaitingManualAction,
                ProvisioningState::Failed
            )
            .await
            .unwrap(),
        None,
        "a late timeout does not undo a validation"
    );

    // Dead letters are listed for export until marked, and again after redelivery.
    store
        .record_attempts(vec![attempt(
            sub.id,
            vec![1],
            Some(400),
            AfterAttempt::DeadLetter("NoRetryHttpStatusCode".into()),
        )])
        .await
        .unwrap();
    let unexported = store.unexported_dead_letters(sub.id, 10).await.unwrap();
    assert_eq!(unexported.iter().map(|d| d.sequence).collect::<Vec<_>>(), [1]);
    store.mark_dead_letters_exported(sub.id, vec![1]).await.unwrap();
    assert!(store.unexported_dead_letters(sub.id, 10).await.unwrap().is_empty());
    assert_eq!(
        store
            .dead_letters(sub.id, DeadLetterQuery::page(0, 10))
            .await
            .unwrap()
            .len(),
        1,
        "still kept"
    );
    store.redeliver(sub.id, DeadLetterFilter::default()).await.unwrap();
    let again = store.claim_deliveries(chrono::Utc::now(), lease, 10).await.unwrap();
    store
        .record_attempts(vec![attempt(
            sub.id,
            vec![again[0].sequence],
            Some(413),
            AfterAttempt::DeadLetter("NoRetryHttpStatusCode".into()),
        )])
        .await
        .unwrap();
    assert_eq!(store.unexported_dead_letters(sub.id, 10).await.unwrap().len(), 1);
}

pub async fn leases_fence_holders_with_growing_tokens(store: Arc<dyn Store>) {
    let t0 = chrono::Utc::now();
    let at = |s: i64| t0 + chrono::Duration::seconds(s);
    let acquire = |holder: &'static str, now: i64, until: i64| {
        let store = store.clone();
        async move { store.acquire_lease("fanout", holder, at(now), at(until)).await.unwrap() }
    };
    let current = |token: u64| {
        let store = store.clone();
        async move { store.lease_is_current("fanout", token).await.unwrap() }
    };

    let a = acquire("node-a", 0, 10).await.expect("a free lease is taken");
    assert!(current(a).await);
    assert_eq!(acquire("node-b", 5, 15).await, None, "a running lease is refused");
    assert_eq!(acquire("node-a", 5, 20).await, Some(a), "renewal keeps the token");
    assert_eq!(acquire("node-b", 15, 25).await, None, "the renewal counts");

    let b = acquire("node-b", 20, 30).await.expect("an expired lease is taken over");
    assert!(b > a, "a takeover gets a bigger token: {b} > {a}");
    assert!(!current(a).await, "a stale token is not current");
    assert!(current(b).await);
    store.release_lease("fanout", "node-a", a).await.unwrap();
    assert!(current(b).await, "a stale holder cannot release");
    assert_eq!(acquire("node-a", 21, 40).await, None);
    assert_eq!(acquire("node-b", 22, 30).await, Some(b));
    assert!(
        store
            .acquire_lease("other", "node-a", at(22), at(30))
            .await
            .unwrap()
            .is_some(),
        "leases are independent"
    );

    store.release_lease("fanout", "node-b", b).await.unwrap();
    assert!(!current(b).await, "a released token is not current");
    let c = acquire("node-b", 23, 30).await.expect("a released lease is free");
    assert!(c > b, "taking a released lease back starts a new tenure: {c} > {b}");
}

pub async fn concurrent_acquirers_one_wins(store: Arc<dyn Store>) {
    let now = chrono::Utc::now();
    let until = now + chrono::Duration::seconds(30);
    let mut tasks = tokio::task::JoinSet::new();
    for node in 0..16 {
        let store = store.clone();
        tasks.spawn(async move {
            store
                .acquire_lease("singleton", &format!("node-{node}"), now, until)
                .await
                .unwrap()
        });
    }
    let mut tokens = Vec::new();
    while let Some(token) = tasks.join_next().await {
        tokens.extend(token.unwrap());
    }
    assert_eq!(tokens.len(), 1, "exactly one acquirer wins: {tokens:?}");
    assert!(store.lease_is_current("singleton", tokens[0]).await.unwrap());
}

pub async fn the_first_secret_fingerprint_is_kept(store: Arc<dyn Store>) {
    assert_eq!(store.secret_fingerprint("first").await.unwrap(), "first");
    assert_eq!(
        store.secret_fingerprint("first").await.unwrap(),
        "first",
        "the same node again"
    );
    assert_eq!(
        store.secret_fingerprint("other").await.unwrap(),
        "first",
        "a node with another secret is told the recorded one"
    );
}

pub async fn handed_over_matches_are_created_claimed(store: Arc<dyn Store>) {
    let (topic, sub) = topic_with_events(&store, "handoff", 2).await;
    let now = chrono::Utc::now();
    store
        .record_matches(RoutedBatch {
            source: topic.id,
            from_sequence: 0,
            to_sequence: 2,
            matches: vec![(sub.id, 1), (sub.id, 2)],
            lease_until: Some(now + chrono::Duration::seconds(60)),
        })
        .await
        .unwrap();
    let lease = now + chrono::Duration::seconds(30);
    assert!(
        store.claim_deliveries(now, lease, 10).await.unwrap().is_empty(),
        "the router's dispatcher holds them"
    );
    let later = now + chrono::Duration::seconds(61);
    let claimed = store
        .claim_deliveries(later, later + chrono::Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(
        claimed.len(),
        2,
        "claimable once the lease ran out (the dispatcher died)"
    );
}

pub async fn retention_is_kept_per_source_with_the_size_of_its_log(store: Arc<dyn Store>) {
    use mlgrid_core::retention::RetentionSpan;
    let mut new = new_source(SourceKind::Topic, "kept");
    new.retention = SourceRetention {
        time: Some(RetentionSpan::parse("12h").unwrap()),
        max_bytes: Some(4096),
    };
    let topic = store.create_source(&new, &keys()).await.unwrap();
    assert_eq!(topic.retention, new.retention);
    assert_eq!((topic.pruned_through, topic.stored_bytes), (0, 0));
    store
        .append_events(topic.id, (1..=3).map(event).collect())
        .await
        .unwrap();
    let bodies: u64 = (1..=3).map(|n| event(n).body.len() as u64).sum();
    let topic = store.source(SourceKind::Topic, "kept").await.unwrap();
    assert_eq!(topic.stored_bytes, bodies);

    let changed = SourceRetention {
        time: None,
        max_bytes: Some(1),
    };
    assert_eq!(
        store.set_source_retention(topic.id, changed).await.unwrap().retention,
        changed
    );
    assert_eq!(
        store.source(SourceKind::Topic, "kept").await.unwrap().retention,
        changed
    );
    assert!(matches!(
        store.set_source_retention(SourceId(9999), changed).await,
        Err(StoreError::NotFound(_))
    ));
    let head = store.log_head(topic.id, 1, 10).await.unwrap();
    assert_eq!(head.entries.iter().map(|e| e.sequence).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(head.entries[0].bytes, event(2).body.len() as u64);
    assert_eq!(head.stored_bytes, bodies);
    assert_eq!(
        head.routed_through, 3,
        "with no subscription, nothing waits to be routed"
    );
}

pub async fn pruning_removes_a_routed_prefix_and_keeps_what_deliveries_hold(store: Arc<dyn Store>) {
    let (topic, sub) = topic_with_events(&store, "pruned", 10).await;
    // Routed through 6: events 1..=5 matched, 6 matched nothing.
    store
        .record_matches(RoutedBatch {
            source: topic.id,
            from_sequence: 0,
            to_sequence: 6,
            matches: (1..=5).map(|s| (sub.id, s)).collect(),
            lease_until: None,
        })
        .await
        .unwrap();
    store
        .record_attempts(vec![
            attempt(sub.id, vec![1, 2, 3], Some(200), AfterAttempt::Delivered),
            attempt(
                sub.id,
                vec![4],
                Some(400),
                AfterAttempt::DeadLetter("NonRetriableStatus".into()),
            ),
        ])
        .await
        .unwrap();
    let head = store.log_head(topic.id, 0, 100).await.unwrap();
    assert_eq!(head.routed_through, 6);

    // Asked for everything: the mark stops at what is routed; 4 (dead letter) and 5
    // (pending) stay for their deliveries.
    let pruned = store.prune_events(topic.id, 10, 1000).await.unwrap();
    assert_eq!((pruned.events, pruned.pruned_through), (4, 6));
    let gone: u64 = [1, 2, 3, 6].iter().map(|n| event(*n).body.len() as u64).sum();
    assert_eq!(pruned.bytes, gone);
    let topic_now = store.source(SourceKind::Topic, "pruned").await.unwrap();
    assert_eq!(topic_now.pruned_through, 6);
    let all: u64 = (1..=10).map(|n| event(n).body.len() as u64).sum();
    assert_eq!(topic_now.stored_bytes, all - gone);
    let read: Vec<u64> = store
        .read_events(topic.id, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(read, (7..=10).collect::<Vec<_>>(), "reads start after the mark");
    assert!(store.subscription_matches(sub.id, 0, 100).await.unwrap().is_empty());
    let dead = store.dead_letters(sub.id, DeadLetterQuery::page(0, 100)).await.unwrap();
    assert_eq!(
        dead.iter().map(|d| d.sequence).collect::<Vec<_>>(),
        [4],
        "a dead letter keeps its event"
    );
    let now = chrono::Utc::now();
    let due = store
        .claim_deliveries(now, now + chrono::Duration::seconds(30), 10)
        .await
        .unwrap();
    assert_eq!(
        due.iter().map(|d| (d.sequence, d.body.as_str())).collect::<Vec<_>>(),
        [(5, r#"{"n":5}"#)],
        "a pending delivery keeps its event"
    );

    // Once purged, the dead letter's event goes on the next pass; the mark never moves back.
    store.purge_dead_letters(sub.id, only(vec![4])).await.unwrap();
    let pruned = store.prune_events(topic.id, 2, 1000).await.unwrap();
    assert_eq!((pruned.events, pruned.pruned_through), (1, 6));
    // In batches: at most `limit` at a time.
    store
        .record_matches(RoutedBatch {
            source: topic.id,
            from_sequence: 6,
            to_sequence: 10,
            matches: Vec::new(),
            lease_until: None,
        })
        .await
        .unwrap();
    assert_eq!(store.prune_events(topic.id, 10, 3).await.unwrap().events, 3);
    assert_eq!(store.prune_events(topic.id, 10, 3).await.unwrap().events, 1);
    assert_eq!(store.prune_events(topic.id, 10, 3).await.unwrap().events, 0);
    assert!(store.read_events(topic.id, 0, 100).await.unwrap().is_empty());
    assert_eq!(
        store.source(SourceKind::Topic, "pruned").await.unwrap().last_sequence,
        10
    );
}

pub async fn pruning_history_removes_old_deliveries_dead_letters_and_attempts(store: Arc<dyn Store>) {
    let (topic, sub) = topic_with_events(&store, "history", 4).await;
    store
        .record_matches(RoutedBatch {
            source: topic.id,
            from_sequence: 0,
            to_sequence: 4,
            matches: (1..=4).map(|s| (sub.id, s)).collect(),
            lease_until: None,
        })
        .await
        .unwrap();
    let later = chrono::Utc::now() + chrono::Duration::minutes(1);
    store
        .record_attempts(vec![attempt(sub.id, vec![1, 2], Some(200), AfterAttempt::Delivered)])
        .await
        .unwrap();
    store
        .record_attempts(vec![attempt(
            sub.id,
            vec![3],
            Some(400),
            AfterAttempt::DeadLetter("NonRetriableStatus".into()),
        )])
        .await
        .unwrap();
    store
        .record_attempts(vec![attempt(sub.id, vec![4], Some(503), AfterAttempt::RetryAt(later))])
        .await
        .unwrap();
    let long_ago = chrono::Utc::now() - chrono::Duration::days(1);
    let cutoffs = HistoryCutoffs {
        delivered_before: later,
        dead_before: long_ago,
        attempts_before: later,
    };
    let expected = HistoryCounts {
        deliveries: 2,
        dead_letters: 0,
        attempts: 3,
    };
    assert_eq!(store.prunable_history(cutoffs).await.unwrap(), [(topic.id, expected)]);
    let nothing_old = HistoryCutoffs {
        delivered_before: long_ago,
        dead_before: long_ago,
        attempts_before: long_ago,
    };
    assert!(store.prunable_history(nothing_old).await.unwrap().is_empty());
    assert!(store.prune_history(nothing_old, 10).await.unwrap().is_empty());

    let first = store.prune_history(cutoffs, 1).await.unwrap();
    assert_eq!(
        first,
        [(
            topic.id,
            HistoryCounts {
                deliveries: 1,
                dead_letters: 0,
                attempts: 1
            }
        )]
    );
    let rest = store.prune_history(cutoffs, 100).await.unwrap();
    assert_eq!(
        rest,
        [(
            topic.id,
            HistoryCounts {
                deliveries: 1,
                dead_letters: 0,
                attempts: 2
            }
        )]
    );
    assert!(store.delivery_attempts(sub.id, 100).await.unwrap().is_empty());
    let stats = store.delivery_stats(sub.id).await.unwrap();
    assert_eq!((stats.delivered, stats.dead_lettered, stats.pending), (0, 1, 1));
    let sub_now = store.subscription(topic.id, "sub-a").await.unwrap();
    assert_eq!(sub_now.pruned_through, 2);
    let listed: Vec<u64> = store
        .subscription_matches(sub.id, 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(listed, [3, 4], "what it matched is listed after its pruned mark");

    // Dead letters go after their own retention.
    let dead_too = HistoryCutoffs {
        dead_before: later,
        ..cutoffs
    };
    let pruned = store.prune_history(dead_too, 100).await.unwrap();
    assert_eq!(pruned[0].1.dead_letters, 1);
    assert!(
        store
            .dead_letters(sub.id, DeadLetterQuery::page(0, 100))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Instantiates every case of the suite for one backend: `backend_tests!(open)`, where
/// `open().await` returns a fresh, empty store and a guard that cleans up when dropped.
macro_rules! backend_tests {
    ($open:path) => {
        $crate::suite::backend_tests!(@cases $open;
            sources_are_created_listed_and_deleted,
            appended_events_read_back_in_order,
            concurrent_appends_get_gap_free_sequences,
            a_failed_write_leaves_others_and_sequences_intact,
            bootstrap_owner_is_created_once,
            topic_keys_are_kept_and_replaced,
            followers_are_woken_by_appends,
            writes_after_close_are_refused,
            dead_letters_are_selected_by_reason_event_type_and_status,
            storage_reports_the_database_size,
            runs_move_through_validated_statuses_and_raise_azure_ml_events,
            concurrent_completions_raise_exactly_one_event,
            model_versions_are_never_reused_even_concurrently,
            deployments_check_models_and_raise_on_each_deploy,
            datasets_are_versioned,
            principals_keys_and_role_assignments,
            the_last_usable_owner_keeps_its_keys,
            names_are_unique_and_found_ignoring_case,
            subscriptions_are_put_listed_expired_and_deleted,
            matches_are_recorded_once_with_the_cursor,
            deliveries_are_leased_attempted_and_dead_lettered,
            batch_outcomes_touch_only_their_own_deliveries,
            handed_over_matches_are_created_claimed,
            unvalidated_subscriptions_hold_their_backlog_until_they_succeed,
            leases_fence_holders_with_growing_tokens,
            concurrent_acquirers_one_wins,
            the_first_secret_fingerprint_is_kept,
            retention_is_kept_per_source_with_the_size_of_its_log,
            pruning_removes_a_routed_prefix_and_keeps_what_deliveries_hold,
            pruning_history_removes_old_deliveries_dead_letters_and_attempts,
            pipelines_are_published_in_versions_and_enabled_with_etags,
            pipeline_endpoints_point_at_pipelines_of_their_workspace,
            a_submission_creates_the_run_its_step_runs_and_ready_steps,
            a_chain_runs_step_after_step_and_raises_run_events,
            a_failed_step_is_retried_and_a_stale_lease_refused,
            a_failure_cancels_the_other_steps_unless_the_run_continues,
            cancelling_a_pipeline_run_stops_its_steps,
            steps_whose_lease_expired_are_recovered,
            completed_steps_are_found_by_reuse_key,
            concurrent_publications_and_keyed_submissions_take_turns,
            datastores_are_created_found_ignoring_case_listed_and_deleted,
            a_datastore_that_an_enabled_pipeline_reads_cannot_be_deleted,
            schedules_are_created_listed_updated_and_deleted,
            a_pipeline_that_active_schedules_start_cannot_be_disabled,
            a_tick_is_recorded_once_with_its_run,
            due_schedules_come_in_pages_by_next_tick_then_id,
            a_refused_run_is_recorded_as_a_failed_tick,
            a_batch_records_each_tick_in_order_with_its_run,
            a_tick_given_twice_in_a_batch_is_recorded_once_with_one_run,
            concurrent_fires_of_one_tick_start_one_run,
            a_queued_tick_starts_once,
            change_schedules_keep_their_watch_and_their_polls,
            a_change_is_recorded_once_with_its_run,
            concurrent_records_of_one_change_start_one_run,
            a_datastore_that_a_change_schedule_watches_cannot_be_deleted,
            old_ticks_are_pruned_but_queued_ones_and_unfinished_runs_stay,
            datastore_watches_are_kept_listed_polled_and_deleted,
            an_arrival_is_published_once_into_the_topic,
            concurrent_arrivals_of_one_file_publish_one_event,
        );
    };
    (@cases $open:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = $open().await;
                $crate::suite::$case(store).await;
            }
        )*
    };
}
pub(crate) use backend_tests;
