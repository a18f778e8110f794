//! The one test suite every store backend must pass. Each case takes a fresh, empty
//! store; `backend_tests!` instantiates every case for one backend.

use std::collections::HashSet;
use std::sync::Arc;

use mlgrid_core::EventSchema;
use mlgrid_core::resource::SourceKind;
use mlgrid_store::*;

fn new_source(kind: SourceKind, name: &str) -> NewSource {
    NewSource {
        kind,
        name: name.into(),
        subscription_id: "sub".into(),
        resource_group: "rg".into(),
    }
}

fn event(n: usize) -> NewEvent {
    NewEvent {
        id: format!("id-{n}"),
        schema: EventSchema::EventGridSchema,
        event_type: "T".into(),
        subject: format!("s/{n}"),
        body: format!(r#"{{"n":{n}}}"#),
    }
}

fn keys() -> Vec<TopicKey> {
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
    assert_eq!(
        store.source(SourceKind::Workspace, "ws1").await.unwrap(),
        ws
    );
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
    store
        .delete_source(SourceKind::Workspace, "ws1")
        .await
        .unwrap();
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
    let receipt = store
        .append_events(topic.id, vec![event(151)])
        .await
        .unwrap();
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
    assert!(
        store
            .read_events(topic.id, 151, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store
            .source(SourceKind::Topic, "t1")
            .await
            .unwrap()
            .last_sequence,
        151
    );
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
                let events = (0..n)
                    .map(|i| event(task * 1000 + round * 10 + i))
                    .collect();
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
    store
        .delete_source(SourceKind::Topic, "gone")
        .await
        .unwrap();
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
    assert!(
        !store
            .create_bootstrap_owner("admin2", &other)
            .await
            .unwrap()
    );
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
        store.replace_topic_key(9999, &new_key).await,
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

#[macro_export]
macro_rules! backend_tests {
    ($open:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $case() {
                let (store, _guard) = $open().await;
                $crate::$case(store).await;
            }
        )*
    };
}

mod sqlite {
    use super::*;

    async fn open() -> (Arc<dyn Store>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("mlgrid.db"))
            .await
            .unwrap();
        (store, dir)
    }

    backend_tests!(open;
        sources_are_created_listed_and_deleted,
        appended_events_read_back_in_order,
        concurrent_appends_get_gap_free_sequences,
        a_failed_write_leaves_others_and_sequences_intact,
        bootstrap_owner_is_created_once,
        topic_keys_are_kept_and_replaced,
        followers_are_woken_by_appends,
        writes_after_close_are_refused,
    );

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
}
