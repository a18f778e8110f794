//! The store suite on SQLite, and what only SQLite has (a database file to reopen).

mod suite;

use std::sync::Arc;

use mlgrid_core::resource::SourceKind;
use mlgrid_store::{ApiKeyHash, Recovered, RecoveryTarget, Role, SqliteStore, Store, recover_owner};
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

/// The way back in when no Owner has a usable key: written beside the running store
/// (which holds the lock file), which accepts the key at once; run twice, it gives the
/// same principal another key.
#[tokio::test]
async fn an_owner_is_recovered_beside_the_running_store() {
    let (store, dir) = open().await;
    let key = |id: &str| ApiKeyHash {
        key_id: id.into(),
        hash: format!("hash-{id}"),
    };
    store.create_bootstrap_owner("admin", &key("a")).await.unwrap();
    let path = dir.path().join("mlgrid.db");
    let recovered = recover_owner(RecoveryTarget::Sqlite(&path), "rescuer", &key("r1"))
        .await
        .unwrap();
    assert_eq!(
        recovered,
        Recovered {
            principal: "rescuer".into(),
            created: true
        }
    );
    let (principal, _) = store.principal_by_key_id("r1").await.unwrap().unwrap();
    let roles = store.role_assignments(principal.id).await.unwrap();
    assert_eq!(
        roles.iter().map(|r| (r.source_id, r.role)).collect::<Vec<_>>(),
        [(None, Role::Owner)]
    );
    // The store keeps writing meanwhile, and so does a second recovery.
    let topic = store
        .create_source(&new_source(SourceKind::Topic, "busy"), &keys())
        .await
        .unwrap();
    let second = key("r2");
    let (appended, again) = tokio::join!(
        store.append_events(topic.id, (0..100).map(event).collect()),
        recover_owner(RecoveryTarget::Sqlite(&path), "rescuer", &second)
    );
    appended.unwrap();
    assert!(!again.unwrap().created);
    assert!(store.principal_by_key_id("r2").await.unwrap().is_some());
    assert_eq!(store.role_assignments(principal.id).await.unwrap().len(), 1);

    let nowhere = dir.path().join("nope.db");
    let missing = recover_owner(RecoveryTarget::Sqlite(&nowhere), "x", &key("x"))
        .await
        .unwrap_err();
    assert!(missing.to_string().contains("--data-dir"), "{missing}");
}

/// The database, its WAL and shared-memory files and the lock file are the owner's
/// alone (0600), whatever the umask leaves of SQLite's 0644.
#[tokio::test]
async fn the_database_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let (store, dir) = open().await;
    let topic = store
        .create_source(&new_source(SourceKind::Topic, "private"), &keys())
        .await
        .unwrap();
    store.append_events(topic.id, vec![event(1)]).await.unwrap();
    for file in ["mlgrid.db", "mlgrid.db-wal", "mlgrid.db-shm", "mlgrid.db.lock"] {
        let meta = std::fs::metadata(dir.path().join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
    }
    store.close().await;
}

/// A database made before names were unique ignoring case, holding `wsA` and `wsa`, is
/// refused with the names and what to do, and opens once one is renamed.
#[tokio::test]
async fn a_database_with_names_differing_only_in_case_is_refused_with_a_remedy() {
    use sqlx::{Connection, SqliteConnection};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlgrid.db");
    SqliteStore::open(&path).await.unwrap().close().await;
    let url = format!("sqlite://{}", path.display());
    let mut conn = SqliteConnection::connect(&url).await.unwrap();
    for sql in [
        "DROP INDEX sources_kind_name_nocase",
        "DROP INDEX principals_name_nocase",
        "DELETE FROM _sqlx_migrations WHERE version = 8",
        "INSERT INTO sources (kind, name, subscription_id, resource_group, created_at) VALUES \
         ('workspace', 'wsA', 's', 'rg', '2026-01-01T00:00:00Z'), ('workspace', 'wsa', 's', 'rg', '2026-01-01T00:00:00Z')",
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await.unwrap();
    }
    let Err(refused) = SqliteStore::open(&path).await else {
        panic!("opened a database with clashing names")
    };
    let message = refused.to_string();
    assert!(
        message.contains("workspace wsA and wsa") && message.contains("rename them"),
        "{message}"
    );
    sqlx::query("UPDATE sources SET name = 'wsA-2' WHERE name = 'wsA'")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(
        store.source(SourceKind::Workspace, "WSA-2").await.unwrap().name,
        "wsA-2"
    );
    store.close().await;
}
