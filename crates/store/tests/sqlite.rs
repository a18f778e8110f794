//! The store suite on SQLite, and what only SQLite has (a database file to reopen).

mod suite;

use std::sync::Arc;

use mlgrid_core::resource::SourceKind;
use mlgrid_store::{SqliteStore, Store};
use suite::{event, keys, new_source};

async fn open() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("mlgrid.db")).await.unwrap();
    (store, dir)
}

suite::backend_tests!(open);

#[tokio::test]
async fn committed_events_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlgrid.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let topic = store
        .create_source(&new_source(SourceKind::Topic, "durable"), &keys())
        .await
        .unwrap();
    store
        .append_events(topic.id, (0..10).map(event).collect())
        .await
        .unwrap();
    store.close().await;
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.read_events(topic.id, 0, 100).await.unwrap().len(), 10);
    assert_eq!(
        store
            .append_events(topic.id, vec![event(10)])
            .await
            .unwrap()
            .first_sequence,
        11
    );
}
