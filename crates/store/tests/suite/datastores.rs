//! Registered datastores: the cases every backend passes.

use std::sync::Arc;

use mlgrid_store::*;

use super::workspace;

fn s3_datastore(name: &str) -> NewDatastore {
    NewDatastore {
        name: name.into(),
        kind: DatastoreKind::S3,
        settings: DatastoreSettings {
            bucket: Some("training".into()),
            region: Some("us-east-1".into()),
            endpoint: Some("http://127.0.0.1:5000".into()),
            prefix: Some("raw".into()),
            ..DatastoreSettings::default()
        },
        credentials: CredentialSource::Stored,
        secret: Some(SealedSecret("sealed-bytes".into())),
    }
}

pub fn local_datastore(name: &str) -> NewDatastore {
    NewDatastore {
        name: name.into(),
        kind: DatastoreKind::Local,
        settings: DatastoreSettings {
            path: Some("/srv/data".into()),
            ..DatastoreSettings::default()
        },
        credentials: CredentialSource::None,
        secret: None,
    }
}

pub async fn datastores_are_created_found_ignoring_case_listed_and_deleted(store: Arc<dyn Store>) {
    let ws = workspace(&store, "ws-datastores").await;
    let other = workspace(&store, "ws-other").await;
    let lake = store.create_datastore(ws, s3_datastore("Lake")).await.unwrap();
    assert_eq!(lake.name, "Lake");
    assert_eq!(lake.kind, DatastoreKind::S3);
    assert_eq!(lake.credentials, CredentialSource::Stored);
    assert_eq!(lake.secret, Some(SealedSecret("sealed-bytes".into())));
    assert_eq!(lake.settings.bucket.as_deref(), Some("training"));
    assert!(!format!("{lake:?}").contains("sealed-bytes"), "Debug shows no secret");
    store.create_datastore(ws, local_datastore("archive")).await.unwrap();
    store.create_datastore(other, local_datastore("lake")).await.unwrap();

    assert_eq!(store.datastore(ws, "LAKE").await.unwrap(), lake);
    let taken = store.create_datastore(ws, local_datastore("lake")).await.unwrap_err();
    assert!(matches!(taken, StoreError::Conflict(_)), "{taken:?}");
    assert!(taken.to_string().contains("`lake` already exists"), "{taken}");

    let names: Vec<String> = store
        .list_datastores(ws)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(names, ["archive", "Lake"]);

    store.delete_datastore(ws, "lake").await.unwrap();
    assert!(matches!(
        store.datastore(ws, "Lake").await.unwrap_err(),
        StoreError::NotFound(_)
    ));
    assert!(matches!(
        store.delete_datastore(ws, "Lake").await.unwrap_err(),
        StoreError::NotFound(_)
    ));
    assert_eq!(
        store.list_datastores(other).await.unwrap().len(),
        1,
        "other workspaces keep theirs"
    );
    let unknown = store
        .create_datastore(SourceId(999_999), local_datastore("x"))
        .await
        .unwrap_err();
    assert!(matches!(unknown, StoreError::NotFound(_)), "{unknown:?}");
}

pub async fn a_datastore_that_an_enabled_pipeline_reads_cannot_be_deleted(store: Arc<dyn Store>) {
    let ws = workspace(&store, "ws-datastore-users").await;
    store.create_datastore(ws, s3_datastore("lake")).await.unwrap();
    let definition = "name: retrain\n\
        data_paths:\n  input: {datastore: Lake, path: raw/latest.csv}\n\
        steps:\n  - name: prep\n    command: [\"true\"]\n";
    let pipeline = store
        .publish_pipeline(
            ws,
            NewPipeline {
                name: "retrain".into(),
                version: None,
                description: String::new(),
                definition: definition.into(),
            },
        )
        .await
        .unwrap();
    let refused = store.delete_datastore(ws, "lake").await.unwrap_err();
    assert!(matches!(refused, StoreError::Conflict(_)), "{refused:?}");
    let message = refused.to_string();
    assert!(message.contains("datastore `lake` is in use"), "{message}");
    assert!(message.contains("`retrain` version 1"), "{message}");
    assert!(message.contains(&pipeline.id), "{message}");
    assert!(store.datastore(ws, "lake").await.is_ok(), "nothing deleted");

    store.set_pipeline_enabled(ws, &pipeline.id, false, None).await.unwrap();
    store.delete_datastore(ws, "lake").await.unwrap();
}
