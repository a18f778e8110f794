//! For unit tests: an embedded store holding one topic with one webhook subscription.

use std::sync::Arc;

use mlgrid_core::resource::SourceKind;
use mlgrid_core::subscription::ProvisioningState;
use mlgrid_store::{EventSubscription, NewSource, SqliteStore, Store, SubscriptionPut};

/// The store (in `dir`, kept while it is used), its topic `t`, and the subscription
/// `sub` to `https://127.0.0.1/` in `state`.
pub(crate) struct Fixture {
    pub _dir: tempfile::TempDir,
    pub store: Arc<SqliteStore>,
    pub topic: mlgrid_store::Source,
    pub subscription: EventSubscription,
}

pub(crate) async fn topic_with_subscription(state: ProvisioningState) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("mlgrid.db")).await.unwrap();
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
        spec: serde_json::from_str(
            r#"{"destination": {"endpointType": "WebHook", "properties": {"endpointUrl": "https://127.0.0.1/"}}}"#,
        )
        .unwrap(),
        provisioning_state: state,
        expires_at: None,
        secret_salt: "salt".into(),
    };
    let subscription = store.put_subscription(topic.id, put, None).await.unwrap().0;
    Fixture {
        _dir: dir,
        store,
        topic,
        subscription,
    }
}
