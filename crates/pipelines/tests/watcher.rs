//! The watcher of change schedules, driven pass by pass with an injected "now" over real
//! folders: files' last-modified times are set by the tests, so nothing sleeps. No
//! executor runs: the runs a change starts stay queued, which is all these tests read.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use mlgrid_core::schedule::{Concurrency, MisfirePolicy};
use mlgrid_pipelines::{
    DataLayout, DatastoreRegistry, DatastoreWatches, Definitions, EndpointGuard, Executor, ExecutorConfig,
    LocalProcessRunner, Pipelines, ScheduleChange, ScheduleSpec, Scheduler, Schedules, SecretKey, WatchRequest,
    WatchSpec, Watcher, WatcherConfig,
};
use mlgrid_store::{
    CredentialSource, DatastoreKind, DatastoreSettings, FireOutcome, NewDatastore, NewSource, ScheduleStatus, SourceId,
    SqliteStore, Store,
};

const PIPELINE: &str = r#"
name: ingest
data_paths:
  input_data: {datastore: files, path: seed.csv}
steps:
  - name: read
    command: ["true"]
"#;

struct NoEndpoints;

#[async_trait::async_trait]
impl EndpointGuard for NoEndpoints {
    async fn check(&self, _url: &str) -> Result<(), String> {
        Err("no endpoints in these tests".into())
    }
}

struct World {
    dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    ws: SourceId,
    pipeline_id: String,
    pipelines: Pipelines,
    schedules: Schedules,
    watcher: Watcher,
}

fn config() -> WatcherConfig {
    WatcherConfig {
        skew: Duration::ZERO,
        min_polling: Duration::from_secs(1),
        ..WatcherConfig::default()
    }
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = SqliteStore::open(dir.path().join("mlgrid.db")).await.unwrap();
    let ws = store
        .create_source(
            &NewSource {
                kind: mlgrid_core::resource::SourceKind::Workspace,
                name: "ws".into(),
                subscription_id: "sub".into(),
                resource_group: "rg".into(),
                retention: Default::default(),
            },
            &[],
        )
        .await
        .unwrap()
        .id;
    for (name, folder) in [("files", "files"), ("gone", "no-such-folder")] {
        let settings = DatastoreSettings {
            path: Some(dir.path().join(folder).to_string_lossy().into_owned()),
            ..DatastoreSettings::default()
        };
        let new = NewDatastore {
            name: name.into(),
            kind: DatastoreKind::Local,
            settings,
            credentials: CredentialSource::None,
            secret: None,
        };
        store.create_datastore(ws, new).await.unwrap();
    }
    std::fs::create_dir_all(dir.path().join("files/incoming/sub")).unwrap();
    let layout = DataLayout::new(dir.path());
    let definitions = Definitions::default();
    let datastores = DatastoreRegistry::new(
        store.clone(),
        layout.clone(),
        SecretKey::new([7; 32]),
        Arc::new(NoEndpoints),
    );
    let executor = Executor::new(
        store.clone(),
        Arc::new(LocalProcessRunner),
        layout.clone(),
        datastores.clone(),
        definitions.clone(),
        ExecutorConfig::default(),
    );
    let pipelines = Pipelines::new(store.clone(), layout, datastores, definitions, executor.handle());
    let pipeline_id = pipelines.publish(ws, PIPELINE, None).await.unwrap().id;
    let scheduler = Scheduler::new(store.clone(), pipelines.clone(), "node-a");
    let watcher = Watcher::new(store.clone(), pipelines.clone(), "node-a").with_config(config());
    let schedules = Schedules::new(store.clone(), pipelines.clone(), scheduler.handle(), watcher.handle());
    World {
        pipelines,
        dir,
        store,
        ws,
        pipeline_id,
        schedules,
        watcher,
    }
}

/// Writes a file of the `files` datastore, last modified at `modified`.
fn write(root: &Path, path: &str, text: &str, modified: DateTime<Utc>) {
    let file = root.join("files").join(path);
    std::fs::write(&file, text).unwrap();
    let at = SystemTime::from(modified);
    std::fs::File::options()
        .write(true)
        .open(&file)
        .unwrap()
        .set_modified(at)
        .unwrap();
}

fn watch(datastore: &str, path: &str, recursive: bool) -> WatchSpec {
    WatchSpec {
        datastore: Some(datastore.into()),
        path: Some(path.into()),
        recursive: Some(recursive),
        polling_seconds: Some(60),
        data_path_parameter: Some("input_data".into()),
    }
}

impl World {
    async fn create(&self, name: &str, watch: WatchSpec, now: DateTime<Utc>) {
        let spec = ScheduleSpec {
            pipeline_id: self.pipeline_id.clone(),
            experiment_name: "on-data".into(),
            recurrence: None,
            watch: Some(watch),
            parameters: Default::default(),
            continue_on_step_failure: false,
            status: ScheduleStatus::Active,
            misfire: MisfirePolicy::default(),
            concurrency: Concurrency::default(),
        };
        self.schedules.create(self.ws, name, spec, now).await.unwrap();
    }

    /// (path, outcome) of every change the schedule recorded, oldest first.
    async fn changes(&self, name: &str) -> Vec<(String, FireOutcome)> {
        let mut fires: Vec<_> = self
            .schedules
            .fires(self.ws, name, 1000)
            .await
            .unwrap()
            .into_iter()
            .map(|f| (f.path.unwrap_or_default(), f.outcome))
            .collect();
        fires.reverse();
        fires
    }
}

/// The time now, in the store's precision (microseconds).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn paths(changes: &[(String, FireOutcome)]) -> Vec<&str> {
    changes.iter().map(|(p, _)| p.as_str()).collect()
}

#[tokio::test]
async fn a_file_added_or_changed_after_creation_fires_once_with_its_path() {
    let w = world().await;
    let created = now();
    write(w.dir.path(), "incoming/old.csv", "a", created - TimeDelta::hours(1));
    w.create("on-data", watch("files", "incoming", false), created).await;

    let first = w.watcher.pass(created + TimeDelta::seconds(1)).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].quiet, 1,
        "a file there before the schedule is recorded without firing"
    );
    assert!(first[0].fired.is_empty());

    write(w.dir.path(), "incoming/new.csv", "b", created + TimeDelta::seconds(10));
    write(
        w.dir.path(),
        "incoming/sub/deep.csv",
        "c",
        created + TimeDelta::seconds(10),
    );
    assert!(
        w.watcher
            .pass(created + TimeDelta::seconds(30))
            .await
            .unwrap()
            .is_empty(),
        "not due before its interval"
    );
    let second = w.watcher.pass(created + TimeDelta::seconds(61)).await.unwrap();
    assert_eq!(second[0].fired.len(), 1, "{second:?}");
    let (path, outcome, run_id) = &second[0].fired[0];
    assert_eq!((path.as_str(), *outcome), ("incoming/new.csv", FireOutcome::Started));
    let run = w.store.pipeline_run(w.ws, run_id.as_deref().unwrap()).await.unwrap();
    let input = &run.data_paths["input_data"];
    assert_eq!(
        (input.datastore.as_str(), input.path.as_str()),
        ("files", "incoming/new.csv")
    );

    let third = w.watcher.pass(created + TimeDelta::seconds(122)).await.unwrap();
    assert!(third[0].fired.is_empty(), "a change fires once");
    write(
        w.dir.path(),
        "incoming/old.csv",
        "a, edited",
        created + TimeDelta::seconds(130),
    );
    let fourth = w.watcher.pass(created + TimeDelta::seconds(183)).await.unwrap();
    assert_eq!(fourth[0].fired.len(), 1, "a file there before fires when it changes");
    assert_eq!(
        paths(&w.changes("on-data").await),
        ["incoming/new.csv", "incoming/old.csv"],
        "subfolders do not count without --recursive"
    );
    let shown = w.schedules.get(w.ws, "on-data").await.unwrap();
    assert_eq!(shown.last_poll_at, Some(created + TimeDelta::seconds(183)));
    assert_eq!(shown.last_error, None);
}

#[tokio::test]
async fn a_recursive_schedule_sees_subfolders_and_a_new_watcher_fires_nothing_twice() {
    let w = world().await;
    let created = now();
    w.create("deep", watch("files", "incoming", true), created).await;
    write(
        w.dir.path(),
        "incoming/sub/deep.csv",
        "c",
        created + TimeDelta::seconds(1),
    );
    let first = w.watcher.pass(created + TimeDelta::seconds(1)).await.unwrap();
    assert_eq!(paths(&w.changes("deep").await), ["incoming/sub/deep.csv"], "{first:?}");

    // Another node (or this one restarted) compares with what the store saw.
    let restarted = Watcher::new(w.store.clone(), w.pipelines.clone(), "node-b").with_config(config());
    assert!(
        restarted.pass(created + TimeDelta::seconds(61)).await.unwrap()[0]
            .fired
            .is_empty()
    );
    write(
        w.dir.path(),
        "incoming/later.csv",
        "d",
        created + TimeDelta::seconds(70),
    );
    let (a, b) = tokio::join!(
        restarted.pass(created + TimeDelta::seconds(122)),
        w.watcher.pass(created + TimeDelta::seconds(122)),
    );
    let fired = a
        .unwrap()
        .iter()
        .chain(b.unwrap().iter())
        .map(|p| p.fired.len())
        .sum::<usize>();
    assert_eq!(fired, 1, "two watchers polling at once fire a change once");
    assert_eq!(
        paths(&w.changes("deep").await),
        ["incoming/sub/deep.csv", "incoming/later.csv"]
    );
}

#[tokio::test]
async fn an_unreachable_datastore_records_its_error_and_backs_off_alone() {
    let w = world().await;
    let created = now();
    w.create("broken", watch("gone", ".", false), created).await;
    w.create("fine", watch("files", "incoming", false), created).await;
    write(w.dir.path(), "incoming/new.csv", "b", created + TimeDelta::seconds(1));
    let polled = w.watcher.pass(created + TimeDelta::seconds(1)).await.unwrap();
    assert_eq!(polled.len(), 2);
    assert_eq!(paths(&w.changes("fine").await), ["incoming/new.csv"]);
    let broken = w.schedules.get(w.ws, "broken").await.unwrap();
    let error = broken.last_error.unwrap();
    assert!(error.contains("polling failed 1 time(s) in a row"), "{error}");
    assert!(error.contains("gone"), "{error}");
    assert_eq!(broken.next_poll_at, Some(created + TimeDelta::seconds(61)));

    w.watcher.pass(created + TimeDelta::seconds(61)).await.unwrap();
    let again = w.schedules.get(w.ws, "broken").await.unwrap();
    assert_eq!(again.poll_failures, 2);
    assert_eq!(
        again.next_poll_at,
        Some(created + TimeDelta::seconds(181)),
        "backs off: twice the interval"
    );
    std::fs::create_dir_all(w.dir.path().join("no-such-folder")).unwrap();
    w.watcher.pass(created + TimeDelta::seconds(181)).await.unwrap();
    let healed = w.schedules.get(w.ws, "broken").await.unwrap();
    assert_eq!((healed.poll_failures, healed.last_error), (0, None));
}

#[tokio::test]
async fn enabling_fires_nothing_for_what_changed_while_disabled() {
    let w = world().await;
    let created = now() - TimeDelta::hours(2);
    w.create("on-data", watch("files", "incoming", false), created).await;
    w.watcher.pass(created).await.unwrap();
    let off = ScheduleChange {
        status: Some(ScheduleStatus::Disabled),
        ..ScheduleChange::default()
    };
    w.schedules.update(w.ws, "on-data", off, None, created).await.unwrap();
    write(
        w.dir.path(),
        "incoming/while-off.csv",
        "x",
        created + TimeDelta::minutes(30),
    );
    assert!(
        w.watcher
            .pass(created + TimeDelta::minutes(40))
            .await
            .unwrap()
            .is_empty(),
        "not polled"
    );
    let enabled_at = created + TimeDelta::hours(1);
    let on = ScheduleChange {
        status: Some(ScheduleStatus::Active),
        ..ScheduleChange::default()
    };
    w.schedules.update(w.ws, "on-data", on, None, enabled_at).await.unwrap();
    let polled = w.watcher.pass(enabled_at + TimeDelta::seconds(1)).await.unwrap();
    assert_eq!(polled[0].quiet, 1);
    assert!(w.changes("on-data").await.is_empty());
}

#[tokio::test]
async fn a_watch_is_checked_whole_before_anything_is_written() {
    let w = world().await;
    let now = now();
    let refused = |spec: WatchSpec| {
        let w = &w;
        async move {
            let spec = ScheduleSpec {
                pipeline_id: w.pipeline_id.clone(),
                experiment_name: "on-data".into(),
                recurrence: None,
                watch: Some(spec),
                parameters: Default::default(),
                continue_on_step_failure: false,
                status: ScheduleStatus::Active,
                misfire: MisfirePolicy::default(),
                concurrency: Concurrency::default(),
            };
            w.schedules
                .create(w.ws, "bad", spec, now)
                .await
                .unwrap_err()
                .to_string()
        }
    };
    let unknown = refused(watch("nowhere", "incoming", false)).await;
    assert!(unknown.contains("no datastore `nowhere`"), "{unknown}");
    let outside = refused(watch("files", "../etc", false)).await;
    assert!(outside.contains("`..` is not allowed"), "{outside}");
    let absolute = refused(watch("files", "/etc", false)).await;
    assert!(absolute.contains("it is absolute"), "{absolute}");
    let parameter = refused(WatchSpec {
        data_path_parameter: Some("nope".into()),
        ..watch("files", "incoming", false)
    })
    .await;
    assert!(parameter.contains("no data-path parameter `nope`"), "{parameter}");
    let fast = refused(WatchSpec {
        polling_seconds: Some(0),
        ..watch("files", "incoming", false)
    })
    .await;
    assert!(fast.contains("polling interval must be at least"), "{fast}");
    assert!(w.schedules.get(w.ws, "bad").await.is_err(), "nothing was created");
}

/// The custom topic `arrivals` and a watch `csv` of `files/incoming` publishing into it,
/// polled every minute.
async fn arrivals_watch(w: &World) -> (DatastoreWatches, SourceId) {
    let topic = w
        .store
        .create_source(
            &NewSource {
                kind: mlgrid_core::resource::SourceKind::Topic,
                name: "arrivals".into(),
                subscription_id: "sub".into(),
                resource_group: "rg".into(),
                retention: Default::default(),
            },
            &[],
        )
        .await
        .unwrap()
        .id;
    let watches = DatastoreWatches::new(w.store.clone(), w.pipelines.clone(), w.watcher.handle());
    let request = WatchRequest {
        path: Some("incoming".into()),
        recursive: false,
        polling_seconds: Some(60),
    };
    watches.create(w.ws, "files", "csv", topic, request).await.unwrap();
    (watches, topic)
}

#[tokio::test]
async fn a_datastore_watch_publishes_each_new_or_changed_file_once_as_blob_created() {
    let w = world().await;
    let created = now();
    write(w.dir.path(), "incoming/old.csv", "a", created - TimeDelta::hours(1));
    let (_, topic) = arrivals_watch(&w).await;

    let first = w.watcher.pass(created + TimeDelta::seconds(1)).await.unwrap();
    assert_eq!(
        (first[0].quiet, first[0].published.len()),
        (1, 0),
        "what was there before publishes nothing"
    );
    write(w.dir.path(), "incoming/new.csv", "bb", created + TimeDelta::seconds(10));
    let second = w.watcher.pass(created + TimeDelta::seconds(61)).await.unwrap();
    assert_eq!(second[0].published, [("incoming/new.csv".to_owned(), 1)]);

    let events = w.store.read_events(topic, 0, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    let event: serde_json::Value = serde_json::from_str(&events[0].body).unwrap();
    assert_eq!(event["eventType"], "Microsoft.Storage.BlobCreated");
    assert_eq!(
        event["subject"],
        "/blobServices/default/containers/files/blobs/incoming/new.csv"
    );
    assert_eq!(
        event["topic"],
        "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.EventGrid/topics/arrivals"
    );
    assert_eq!(
        (event["dataVersion"].as_str(), event["metadataVersion"].as_str()),
        (Some(""), Some("1"))
    );
    let data = &event["data"];
    assert_eq!(data["url"], "mlgrid://ws/datastores/files/incoming/new.csv");
    assert_eq!(
        (data["api"].as_str(), data["blobType"].as_str()),
        (Some("PutBlob"), Some("BlockBlob"))
    );
    assert_eq!(
        (data["contentType"].as_str(), data["contentLength"].as_u64()),
        (Some("text/csv"), Some(2))
    );
    assert_eq!(data["sequencer"].as_str().map(str::len), Some(32));
    assert!(data["eTag"].as_str().is_some_and(|t| !t.is_empty()));

    let third = w.watcher.pass(created + TimeDelta::seconds(122)).await.unwrap();
    assert!(third[0].published.is_empty(), "a change publishes once");
    write(
        w.dir.path(),
        "incoming/new.csv",
        "ccc",
        created + TimeDelta::seconds(130),
    );
    let restarted = Watcher::new(w.store.clone(), w.pipelines.clone(), "node-b").with_config(config());
    let fourth = restarted.pass(created + TimeDelta::seconds(183)).await.unwrap();
    assert_eq!(
        fourth[0].published.len(),
        1,
        "a change made meanwhile is found after a restart, once"
    );
    let events = w.store.read_events(topic, 0, 10).await.unwrap();
    let later: serde_json::Value = serde_json::from_str(&events[1].body).unwrap();
    assert!(
        later["data"]["sequencer"].as_str() > event["data"]["sequencer"].as_str(),
        "a blob's sequencers grow"
    );
}

#[tokio::test]
async fn a_datastore_watch_is_refused_naming_the_rule_it_breaks() {
    let w = world().await;
    let (watches, topic) = arrivals_watch(&w).await;
    let request = |path: &str, seconds: u32| WatchRequest {
        path: Some(path.into()),
        recursive: false,
        polling_seconds: Some(seconds),
    };
    let unknown = watches
        .create(w.ws, "lake", "x", topic, request("in", 60))
        .await
        .unwrap_err();
    assert!(unknown.to_string().contains("no datastore `lake`"), "{unknown}");
    let outside = watches
        .create(w.ws, "files", "x", topic, request("../up", 60))
        .await
        .unwrap_err();
    assert!(outside.to_string().contains("`..` is not allowed"), "{outside}");
    let absolute = watches
        .create(w.ws, "files", "x", topic, request("/etc", 60))
        .await
        .unwrap_err();
    assert!(absolute.to_string().contains("it is absolute"), "{absolute}");
    let fast = watches
        .create(w.ws, "files", "x", topic, request("in", 0))
        .await
        .unwrap_err();
    assert!(fast.to_string().contains("at least 1 seconds"), "{fast}");
    let taken = watches
        .create(w.ws, "files", "CSV", topic, request("in", 60))
        .await
        .unwrap_err();
    assert!(taken.to_string().contains("already"), "{taken}");
    assert_eq!(
        w.store.list_datastore_watches(w.ws, "files").await.unwrap().len(),
        1,
        "nothing half-created"
    );
}
