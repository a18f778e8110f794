//! The store suite on SQLite, and what only SQLite has (a database file to reopen).

mod suite;

use std::sync::Arc;

use chrono::Utc;
use mlgrid_core::resource::SourceKind;
use mlgrid_store::{ApiKeyHash, Recovered, RecoveryTarget, Role, SqliteStore, Store, StoreError, recover_owner};
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

/// After `close`, reads are refused as `Closed` like writes (on PostgreSQL too), not as a
/// driver error.
#[tokio::test]
async fn reads_and_writes_after_close_are_closed() {
    let (store, _dir) = open().await;
    store.close().await;
    let read = store.list_sources(SourceKind::Topic).await.unwrap_err();
    assert!(matches!(read, StoreError::Closed), "{read:?}");
    let write = store
        .create_source(&new_source(SourceKind::Topic, "late"), &keys())
        .await
        .unwrap_err();
    assert!(matches!(write, StoreError::Closed), "{write:?}");
}

/// A subscription is parsed once, when its row is read: a definition that does not parse
/// (a hand-edited database) is `Corrupt`, naming the subscription, not a bare serde error
/// further on; a list leaves it out, so that it does not stop the others' delivery.
#[tokio::test]
async fn a_stored_definition_that_does_not_parse_is_corrupt_and_named() {
    use sqlx::{Connection, SqliteConnection};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlgrid.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let topic = store
        .create_source(&new_source(SourceKind::Topic, "edited"), &keys())
        .await
        .unwrap();
    for name in ["by-hand", "intact"] {
        store
            .put_subscription(topic.id, suite::put(name, "https://example.com/hook"), None)
            .await
            .unwrap();
    }
    store.close().await;
    let mut conn = SqliteConnection::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query("UPDATE event_subscriptions SET spec = '{\"destination\": 1}' WHERE name = 'by-hand'")
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    let store = SqliteStore::open(&path).await.unwrap();
    let corrupt = store.subscription(topic.id, "by-hand").await.unwrap_err();
    assert!(
        matches!(&corrupt, StoreError::Corrupt(m) if m.contains("event subscription 1 (`by-hand`)")),
        "{corrupt:?}"
    );
    let listed: Vec<String> = store
        .list_subscriptions(None)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(listed, ["intact"]);
    store.close().await;
}

/// Appends `batches` batches of `per_batch` events of about 2 KiB to `topic`, one commit
/// each.
async fn append_many(store: &SqliteStore, topic: mlgrid_store::SourceId, batches: usize, per_batch: usize) {
    let payload = "x".repeat(2048);
    for b in 0..batches {
        let events = (0..per_batch)
            .map(|i| {
                let mut e = event(b * per_batch + i);
                e.body = format!(r#"{{"n":{},"pad":"{payload}"}}"#, b * per_batch + i);
                e
            })
            .collect();
        store.append_events(topic, events).await.unwrap();
    }
}

/// The write-ahead log is restarted once it passes 64 MiB, even while a reader queries
/// it all the time (which kept PASSIVE checkpoints from ever restarting it: it grew to
/// gigabytes), and a restarted log is cut back to 32 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wal_stays_bounded_while_a_reader_keeps_reading() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("mlgrid.db")).await.unwrap();
    let topic = store
        .create_source(&new_source(SourceKind::Topic, "busy"), &keys())
        .await
        .unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let reader = tokio::spawn({
        let (store, stop) = (store.clone(), stop.clone());
        async move {
            let mut reads = 0u64;
            while !stop.is_cancelled() {
                store.read_events(topic.id, reads % 1000, 100).await.unwrap();
                reads += 1;
            }
            reads
        }
    });
    // 200 MiB of events in 1,000 commits: without restarts the log holds all of it.
    let mut largest = 0;
    for _ in 0..100 {
        append_many(&store, topic.id, 10, 100).await;
        largest = largest.max(store.wal_bytes());
    }
    eprintln!("largest WAL: {largest} bytes");
    stop.cancel();
    assert!(reader.await.unwrap() > 0);
    assert!(
        largest < 128 << 20,
        "the WAL reached {largest} bytes, over twice the size at which it is restarted"
    );
    assert_eq!(store.read_events(topic.id, 99_000, 10_000).await.unwrap().len(), 1_000);
}

/// A log that is not written for a second is truncated to nothing.
#[tokio::test]
async fn an_idle_wal_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("mlgrid.db")).await.unwrap();
    let topic = store
        .create_source(&new_source(SourceKind::Topic, "idle"), &keys())
        .await
        .unwrap();
    append_many(&store, topic.id, 50, 10).await;
    assert!(store.wal_bytes() > 0);
    let stats = store.storage().await.unwrap();
    assert_eq!(stats.wal_bytes, Some(store.wal_bytes()));
    // Waits on the writer's idle timer, not on a figure: fails only if it never truncates.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.wal_bytes() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the idle WAL was never truncated"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(store.read_events(topic.id, 0, 1000).await.unwrap().len(), 500);
}

/// A database that cannot grow refuses writes with `Full`, whole (no half-appended
/// request, no sequence number used), says so in its stats, and takes writes again by
/// itself once it may grow.
#[tokio::test]
async fn a_full_database_refuses_writes_whole_and_recovers_when_it_may_grow() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("mlgrid.db")).await.unwrap();
    let topic = store
        .create_source(&new_source(SourceKind::Topic, "full"), &keys())
        .await
        .unwrap();
    append_many(&store, topic.id, 1, 10).await;
    let cap = store.set_max_page_count(1).await.unwrap();
    let mut accepted = 10;
    let refused = loop {
        match store.append_events(topic.id, (0..20).map(event).collect()).await {
            Ok(receipt) => {
                assert_eq!(receipt.first_sequence, accepted + 1, "gap-free while it fits");
                accepted += 20;
            }
            Err(e) => break e,
        }
        assert!(
            accepted < 100_000,
            "the database never filled up (max_page_count {cap})"
        );
    };
    assert!(matches!(refused, StoreError::Full(_)), "{refused:?}");
    assert!(refused.to_string().contains("free space"), "{refused}");
    let full = store.storage().await.unwrap().full;
    assert!(full.is_some(), "the stats say the disk is full");
    // Stats say so until a write that changes something commits.
    store.set_max_page_count(1).await.unwrap();
    assert!(store.storage().await.unwrap().full.is_some());

    store.set_max_page_count(1 << 30).await.unwrap();
    let receipt = store
        .append_events(topic.id, (0..20).map(event).collect())
        .await
        .unwrap();
    assert_eq!(
        receipt.first_sequence,
        accepted + 1,
        "no sequence number was used by a refused write"
    );
    assert_eq!(store.storage().await.unwrap().full, None);
    let all = store.read_events(topic.id, 0, 10_000).await.unwrap();
    assert_eq!(all.len() as u64, accepted + 20);
    assert!(all.iter().zip(1..).all(|(e, n)| e.sequence == n));
}

/// The steps that ran in a previous process are recovered as soon as the store opens
/// again, not after their leases.
#[tokio::test]
async fn steps_that_ran_before_a_restart_are_recovered_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mlgrid.db");
    let store: Arc<dyn Store> = SqliteStore::open(&path).await.unwrap();
    let (ws, pipeline_id) = suite::published(&store, "ws-restart").await;
    let steps = vec![suite::step("train", &[], 1)];
    store
        .submit_pipeline_run(ws, suite::submission(&pipeline_id, steps))
        .await
        .unwrap();
    let hour = suite::claim_for("node-a", 3600);
    assert_eq!(store.claim_steps(&hour, 1).await.unwrap().len(), 1);
    assert_eq!(store.recover_steps(Utc::now(), "restarted").await.unwrap(), 0);
    store.close().await;

    let store = SqliteStore::open(&path).await.unwrap();
    assert_eq!(store.recover_steps(Utc::now(), "restarted").await.unwrap(), 1);
    let again = store.claim_steps(&hour, 1).await.unwrap();
    assert_eq!(again[0].lease, 2, "its next attempt");
}
