//! The embedded database belongs to one process at a time.

use chrono::Utc;
use mlgrid_core::EventSchema;
use mlgrid_core::resource::SourceKind;
use mlgrid_core::subscription::ProvisioningState;
use mlgrid_store::{NewEvent, NewSource, RoutedBatch, SqliteStore, Store, SubscriptionPut};

#[tokio::test]
async fn a_second_opener_is_refused_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlgrid.db");
    let first = SqliteStore::open(&path).await.unwrap();
    let refused = SqliteStore::open(&path).await.err().expect("refused");
    let message = refused.to_string();
    assert!(
        message.contains("in use by another process") && message.contains("PostgreSQL"),
        "{message}"
    );
    first.close().await;
    let second = SqliteStore::open(&path).await.unwrap();
    second.close().await;
}

#[tokio::test]
async fn claims_of_a_crashed_process_are_given_back_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlgrid.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let topic = store
        .create_source(
            &NewSource {
                kind: SourceKind::Topic,
                name: "t".into(),
                subscription_id: "s".into(),
                resource_group: "rg".into(),
                retention: Default::default(),
            },
            &[],
        )
        .await
        .unwrap();
    let put = SubscriptionPut {
        name: "sub".into(),
        spec: serde_json::from_value(serde_json::json!({
            "destination": {"endpointType": "WebHook", "properties": {"endpointUrl": "https://example.com/hook"}}
        }))
        .unwrap(),
        provisioning_state: ProvisioningState::Succeeded,
        expires_at: None,
        secret_salt: "salt".into(),
    };
    let (sub, _) = store.put_subscription(topic.id, put, None).await.unwrap();
    let event = NewEvent {
        id: "e".into(),
        schema: EventSchema::EventGridSchema,
        event_type: "T".into(),
        subject: "s".into(),
        body: "{}".into(),
    };
    store.append_events(topic.id, vec![event]).await.unwrap();
    store
        .record_matches(RoutedBatch {
            source: topic.id,
            from_sequence: 0,
            to_sequence: 1,
            matches: vec![(sub.id, 1)],
            lease_until: None,
        })
        .await
        .unwrap();
    let lease = Utc::now() + chrono::Duration::hours(1);
    assert_eq!(store.claim_deliveries(Utc::now(), lease, 10).await.unwrap().len(), 1);
    assert!(store.claim_deliveries(Utc::now(), lease, 10).await.unwrap().is_empty());
    store.close().await;

    let reopened = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        reopened.claim_deliveries(Utc::now(), lease, 10).await.unwrap().len(),
        1,
        "no waiting for the lease of a process that is gone"
    );
    reopened.close().await;
}
