//! Datastore watches: kept, listed and deleted with their seen objects, polled like
//! change schedules, and each arrival published once into the topic's log, the cases
//! every backend passes.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use mlgrid_core::resource::SourceKind;
use mlgrid_core::storage::{BlobCreated, sequencer};
use mlgrid_store::*;

use super::{local_datastore, new_source, workspace};

fn at(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// A workspace with a datastore `lake`, and a custom topic.
async fn watched(store: &Arc<dyn Store>, name: &str) -> (SourceId, Source) {
    let ws = workspace(store, name).await;
    store.create_datastore(ws, local_datastore("lake")).await.unwrap();
    let topic = store
        .create_source(&new_source(SourceKind::Topic, &format!("{name}-arrivals")), &[])
        .await
        .unwrap();
    (ws, topic)
}

fn new_watch(name: &str, topic: SourceId) -> NewDatastoreWatch {
    NewDatastoreWatch {
        name: name.into(),
        datastore: "lake".into(),
        path: "incoming".into(),
        recursive: false,
        polling_seconds: 300,
        topic,
    }
}

fn arrival(watch: &DatastoreWatch, previous: Option<&str>, version: &str, event_id: &str) -> NewArrival {
    NewArrival {
        watch_id: watch.id.clone(),
        topic: watch.topic,
        previous: previous.map(str::to_owned),
        seen: SeenObject {
            path: "incoming/a.csv".into(),
            version: version.into(),
            size: 12,
            last_modified: at("2026-01-01T00:10:00Z"),
        },
        event_id: event_id.into(),
        event_time: at("2026-01-01T00:11:00Z"),
        blob: BlobCreated::new("lake", "incoming/a.csv", "mlgrid://ws/datastores/lake/incoming/a.csv")
            .with_content(version, 12, "text/csv")
            .with_ids("r", "c", "b", sequencer(1)),
    }
}

pub async fn datastore_watches_are_kept_listed_polled_and_deleted(store: Arc<dyn Store>) {
    let (ws, topic) = watched(&store, "ws-watches").await;
    let created = store
        .create_datastore_watch(ws, new_watch("csv", topic.id))
        .await
        .unwrap();
    assert_eq!(
        (
            created.datastore.as_str(),
            created.path.as_str(),
            created.topic_name.as_str()
        ),
        ("lake", "incoming", topic.name.as_str())
    );
    assert_eq!(
        created.next_poll_at, created.created_at,
        "a new watch is polled at once"
    );
    assert_eq!(uuid::Uuid::parse_str(&created.id).map(|_| ()), Ok(()));
    let taken = store.create_datastore_watch(ws, new_watch("CSV", topic.id)).await;
    assert!(matches!(taken, Err(StoreError::Conflict(m)) if m.contains("a watch `CSV` already")));
    let found = store.datastore_watch(ws, "LAKE", "Csv").await.unwrap();
    assert_eq!(found, created);
    store
        .create_datastore_watch(ws, new_watch("all", topic.id))
        .await
        .unwrap();
    let names: Vec<String> = store
        .list_datastore_watches(ws, "lake")
        .await
        .unwrap()
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, ["all", "csv"]);

    let soon = created.next_poll_at + chrono::TimeDelta::minutes(1);
    let due = store.due_watches(soon, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    assert!(
        store
            .earliest_poll()
            .await
            .unwrap()
            .is_some_and(|t| t <= created.next_poll_at)
    );
    let next = created.next_poll_at + chrono::TimeDelta::minutes(5);
    store
        .record_poll(PollDone {
            watcher_id: created.id.clone(),
            polled_at: created.next_poll_at,
            next_poll_at: next,
            error: Some("the datastore cannot be listed".into()),
            failures: 1,
        })
        .await
        .unwrap();
    let polled = store.datastore_watch(ws, "lake", "csv").await.unwrap();
    assert_eq!(polled.next_poll_at, next);
    assert_eq!(polled.last_poll_at, Some(created.next_poll_at));
    assert_eq!(
        (polled.poll_failures, polled.last_error.as_deref()),
        (1, Some("the datastore cannot be listed"))
    );
    assert_eq!(store.due_watches(soon, 10).await.unwrap().len(), 1);

    let refused = store.delete_datastore(ws, "lake").await;
    assert!(
        matches!(&refused, Err(StoreError::Conflict(m)) if m.contains("`all`") && m.contains("`csv`")),
        "{refused:?}"
    );
    store
        .record_seen(&created.id, vec![arrival(&created, None, "v1", "e").seen])
        .await
        .unwrap();
    store.delete_datastore_watch(ws, "lake", "csv").await.unwrap();
    assert!(
        store.seen_objects(&created.id).await.unwrap().is_empty(),
        "what it saw goes with it"
    );
    assert!(matches!(
        store.delete_datastore_watch(ws, "lake", "csv").await,
        Err(StoreError::NotFound(_))
    ));

    store.delete_source(SourceKind::Topic, &topic.name).await.unwrap();
    assert!(
        store.list_datastore_watches(ws, "lake").await.unwrap().is_empty(),
        "a watch goes with its topic"
    );
    store.delete_datastore(ws, "lake").await.unwrap();
}

pub async fn an_arrival_is_published_once_into_the_topic(store: Arc<dyn Store>) {
    let (ws, topic) = watched(&store, "ws-arrivals").await;
    let watch = store
        .create_datastore_watch(ws, new_watch("csv", topic.id))
        .await
        .unwrap();
    let first = store.record_arrival(arrival(&watch, None, "v1", "e1")).await.unwrap();
    assert_eq!(first, Some(1));
    assert_eq!(
        store.record_arrival(arrival(&watch, None, "v1", "e1")).await.unwrap(),
        None,
        "a file seen already publishes nothing again"
    );
    assert_eq!(
        store
            .record_arrival(arrival(&watch, Some("v0"), "v2", "e2"))
            .await
            .unwrap(),
        None,
        "a stale version read publishes nothing"
    );
    assert_eq!(
        store
            .record_arrival(arrival(&watch, Some("v1"), "v2", "e2"))
            .await
            .unwrap(),
        Some(2)
    );
    let seen = store.seen_objects(&watch.id).await.unwrap();
    assert_eq!(seen.iter().map(|o| o.version.as_str()).collect::<Vec<_>>(), ["v2"]);

    let events = store.read_events(topic.id, 0, 10).await.unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].event_type, "Microsoft.Storage.BlobCreated");
    assert_eq!(
        events[0].subject,
        "/blobServices/default/containers/lake/blobs/incoming/a.csv"
    );
    let body: serde_json::Value = serde_json::from_str(&events[0].body).unwrap();
    assert_eq!(body["id"], "e1");
    assert_eq!(
        body["topic"],
        "/subscriptions/sub/resourceGroups/rg/providers/Microsoft.EventGrid/topics/ws-arrivals-arrivals"
    );
    assert_eq!(body["data"]["eTag"], "v1");
    assert_eq!(body["data"]["contentLength"], 12);
    assert_eq!(body["eventTime"], "2026-01-01T00:11:00.0000000Z");
    let shown = store.datastore_watch(ws, "lake", "csv").await.unwrap();
    assert_eq!(shown.events_published, 2);
    assert_eq!(shown.last_event_at, Some(at("2026-01-01T00:11:00Z")));
}

pub async fn concurrent_arrivals_of_one_file_publish_one_event(store: Arc<dyn Store>) {
    let (ws, topic) = watched(&store, "ws-arrival-race").await;
    let watch = store
        .create_datastore_watch(ws, new_watch("csv", topic.id))
        .await
        .unwrap();
    let tries = (0..8).map(|i| {
        let (store, arrival) = (store.clone(), arrival(&watch, None, "v1", &format!("e{i}")));
        tokio::spawn(async move { store.record_arrival(arrival).await.unwrap() })
    });
    let published: Vec<u64> = futures::future::join_all(tries)
        .await
        .into_iter()
        .filter_map(|r| r.unwrap())
        .collect();
    assert_eq!(published, [1]);
    assert_eq!(store.read_events(topic.id, 0, 10).await.unwrap().len(), 1);
}
