//! The store suite on PostgreSQL, and what only a shared database has: several nodes
//! (stores) working on one schema at once.
//!
//! Each test works in a schema of its own, created for it and dropped afterwards, in the
//! database at `MLGRID_TEST_DATABASE_URL` (default [`DEFAULT_URL`]). Without a server
//! the tests fail, saying how to start one.

mod suite;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use mlgrid_core::resource::SourceKind;
use mlgrid_core::subscription::ProvisioningState;
use mlgrid_store::*;
use sqlx::{Connection, Executor, PgConnection};
use suite::{event, keys, new_source, webhook};

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn server_url() -> String {
    std::env::var("MLGRID_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

async fn connect_server() -> PgConnection {
    PgConnection::connect(&server_url()).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach PostgreSQL for the store tests ({e}). Start a server that accepts \
             MLGRID_TEST_DATABASE_URL (default `{DEFAULT_URL}`), e.g. `pg_ctlcluster 15 main start` \
             or `docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust -e POSTGRES_DB=test \
             postgres`, or point MLGRID_TEST_DATABASE_URL at a database the tests may create schemas in"
        )
    })
}

/// A schema of its own for one test; dropped with the guard.
struct Schema {
    name: String,
}

impl Schema {
    async fn create() -> Schema {
        let name = format!("t_{}", uuid::Uuid::new_v4().simple());
        let mut conn = connect_server().await;
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .await
            .unwrap();
        conn.close().await.unwrap();
        Schema { name }
    }

    /// The URL of a store working in this schema, named `node` in `pg_stat_activity`.
    fn url(&self, node: &str) -> String {
        let url = server_url();
        let separator = if url.contains('?') { '&' } else { '?' };
        format!(
            "{url}{separator}options%5Bsearch_path%5D={}&application_name={}-{node}",
            self.name, self.name
        )
    }

    async fn node(&self, node: &str) -> Arc<PostgresStore> {
        PostgresStore::connect(&self.url(node)).await.unwrap()
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop cannot await, and it blocks the test's runtime, which therefore cannot roll
        // back what its stores left open: end their sessions first, then drop the schema.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(async move {
                let mut conn = PgConnection::connect(&server_url()).await?;
                sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE $1")
                    .bind(format!("{name}-%"))
                    .execute(&mut conn)
                    .await?;
                conn.execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {name} CASCADE")))
                    .await?;
                conn.close().await
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test schema {}: {e}", self.name);
        }
    }
}

async fn open() -> (Arc<dyn Store>, Schema) {
    let schema = Schema::create().await;
    let store = schema.node("a").await;
    (store, schema)
}

suite::backend_tests!(open);

#[tokio::test]
async fn migrating_twice_changes_nothing() {
    let schema = Schema::create().await;
    let first = PostgresStore::migrate(&schema.url("a")).await.unwrap();
    assert_eq!(first.applied.first().map(|m| m.0), Some(1), "{first:?}");
    assert_eq!(first.applied.last().map(|m| m.0), Some(first.version));
    let second = PostgresStore::migrate(&schema.url("a")).await.unwrap();
    assert_eq!(second.applied, vec![], "nothing left to apply");
    assert_eq!(second.version, first.version);
    let store = schema.node("a").await;
    assert!(!store.has_principals().await.unwrap());
    store.close().await;
}

#[tokio::test]
async fn appends_from_two_nodes_get_gap_free_sequences() {
    let schema = Schema::create().await;
    let nodes = [schema.node("a").await, schema.node("b").await];
    let topic = nodes[0]
        .create_source(&new_source(SourceKind::Topic, "shared"), &keys())
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..8usize {
        let node = nodes[task % 2].clone();
        tasks.spawn(async move {
            let mut total = 0;
            for round in 0..25 {
                let n = 1 + (task + round) % 5;
                let events = (0..n).map(|i| event(task * 1000 + round * 10 + i)).collect();
                let receipt = node.append_events(topic.id, events).await.unwrap();
                assert_eq!(receipt.last_sequence - receipt.first_sequence + 1, n as u64);
                total += n;
            }
            total
        });
    }
    let mut total = 0;
    while let Some(n) = tasks.join_next().await {
        total += n.unwrap();
    }
    let events = nodes[1].read_events(topic.id, 0, MAX_READ_LIMIT).await.unwrap();
    let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert_eq!(sequences, (1..=total as u64).collect::<Vec<_>>(), "no gaps, no repeats");
    let ids: HashSet<&str> = events.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), total);
}

/// Appends that arrive together are written together; one that PostgreSQL refuses (text
/// cannot hold a NUL character) fails alone.
#[tokio::test]
async fn a_refused_append_among_combined_ones_fails_alone() {
    let schema = Schema::create().await;
    let node = schema.node("a").await;
    let topic = node
        .create_source(&new_source(SourceKind::Topic, "combined"), &keys())
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..40usize {
        let node = node.clone();
        tasks.spawn(async move {
            let mut events: Vec<NewEvent> = (0..10).map(|i| event(task * 100 + i)).collect();
            if task % 10 == 3 {
                events[5].body = "{\"bad\": \"\u{0}\"}".to_owned();
            }
            (task, node.append_events(topic.id, events).await)
        });
    }
    let mut appended = 0;
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            (task, Err(error)) => assert_eq!(task % 10, 3, "only the refused appends fail: {error}"),
            (task, Ok(receipt)) => {
                assert_ne!(task % 10, 3, "a NUL character was stored");
                assert_eq!(receipt.last_sequence - receipt.first_sequence + 1, 10);
                appended += 10;
            }
        }
    }
    assert_eq!(appended, 360);
    let sequences: Vec<u64> = node
        .read_events(topic.id, 0, MAX_READ_LIMIT)
        .await
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(sequences, (1..=360).collect::<Vec<_>>(), "no gaps, no repeats");
}

#[tokio::test]
async fn claims_from_two_nodes_never_overlap() {
    let schema = Schema::create().await;
    let nodes = [schema.node("a").await, schema.node("b").await];
    let topic = nodes[0]
        .create_source(&new_source(SourceKind::Topic, "claimed"), &keys())
        .await
        .unwrap();
    let put = SubscriptionPut {
        name: "sub".into(),
        spec: webhook("https://example.com/hook"),
        provisioning_state: ProvisioningState::Succeeded,
        expires_at: None,
        secret_salt: "salt".into(),
    };
    let (sub, _) = nodes[0].put_subscription(topic.id, put, None).await.unwrap();
    let count = 300u64;
    nodes[0]
        .append_events(topic.id, (1..=count as usize).map(event).collect())
        .await
        .unwrap();
    let batch = RoutedBatch {
        source: topic.id,
        from_sequence: 0,
        to_sequence: count,
        matches: (1..=count).map(|s| (sub.id, s)).collect(),
        lease_until: None,
    };
    nodes[1].record_matches(batch).await.unwrap();

    let now = chrono::Utc::now();
    let lease = now + chrono::Duration::seconds(60);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..6 {
        let node = nodes[worker % 2].clone();
        tasks.spawn(async move {
            let mut claimed = Vec::new();
            loop {
                let page = node.claim_deliveries(now, lease, 7).await.unwrap();
                if page.is_empty() {
                    return claimed;
                }
                claimed.extend(page.iter().map(|d| d.sequence));
            }
        });
    }
    let mut all = Vec::new();
    while let Some(claimed) = tasks.join_next().await {
        all.extend(claimed.unwrap());
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (1..=count).collect::<Vec<_>>(),
        "every delivery claimed exactly once"
    );
}

#[tokio::test]
async fn two_nodes_routing_one_stretch_record_it_once() {
    let schema = Schema::create().await;
    let nodes = [schema.node("a").await, schema.node("b").await];
    let topic = nodes[0]
        .create_source(&new_source(SourceKind::Topic, "routed"), &keys())
        .await
        .unwrap();
    for from in 0..10u64 {
        let batch = RoutedBatch {
            source: topic.id,
            from_sequence: from,
            to_sequence: from + 1,
            matches: Vec::new(),
            lease_until: None,
        };
        let (a, b) = tokio::join!(nodes[0].record_matches(batch.clone()), nodes[1].record_matches(batch));
        let conflicts = [&a, &b]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::Conflict(_))))
            .count();
        assert!(
            (a.is_ok() ^ b.is_ok()) && conflicts == 1,
            "one records, the other is refused: {a:?} {b:?}"
        );
        assert_eq!(nodes[1].fanout_cursor(topic.id).await.unwrap(), from + 1);
    }
}

#[tokio::test]
async fn two_nodes_finishing_one_handshake_move_it_once() {
    let schema = Schema::create().await;
    let nodes = [schema.node("a").await, schema.node("b").await];
    let topic = nodes[0]
        .create_source(&new_source(SourceKind::Topic, "validated"), &keys())
        .await
        .unwrap();
    let put = SubscriptionPut {
        name: "sub".into(),
        spec: webhook("https://example.com/hook"),
        provisioning_state: ProvisioningState::AwaitingManualAction,
        expires_at: None,
        secret_salt: "salt".into(),
    };
    let (sub, _) = nodes[0].put_subscription(topic.id, put, None).await.unwrap();
    let version = nodes[0].subscriptions_version().await.unwrap();
    let (a, b) = tokio::join!(
        nodes[0].transition_subscription(
            sub.id,
            &sub.etag,
            ProvisioningState::AwaitingManualAction,
            ProvisioningState::Succeeded
        ),
        nodes[1].transition_subscription(
            sub.id,
            &sub.etag,
            ProvisioningState::AwaitingManualAction,
            ProvisioningState::Failed
        )
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.is_some() ^ b.is_some(), "exactly one transition applies: {a:?} {b:?}");
    let state = a.or(b).unwrap().provisioning_state;
    assert_eq!(
        nodes[1].subscription(topic.id, "sub").await.unwrap().provisioning_state,
        state
    );
    assert_eq!(nodes[1].subscriptions_version().await.unwrap(), version + 1);
}

#[tokio::test]
async fn one_lease_holder_among_nodes() {
    let schema = Schema::create().await;
    let nodes = [schema.node("a").await, schema.node("b").await];
    let now = chrono::Utc::now();
    let until = now + chrono::Duration::seconds(30);
    let (a, b) = tokio::join!(
        nodes[0].acquire_lease("retention", "node-a", now, until),
        nodes[1].acquire_lease("retention", "node-b", now, until)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert!(a.is_some() ^ b.is_some(), "exactly one node holds it: {a:?} {b:?}");
    let token = a.or(b).unwrap();
    assert!(nodes[0].lease_is_current("retention", token).await.unwrap());
    assert!(nodes[1].lease_is_current("retention", token).await.unwrap());
}

#[tokio::test]
async fn nodes_starting_together_agree_on_one_secret_fingerprint() {
    let schema = Schema::create().await;
    let nodes = [schema.node("a").await, schema.node("b").await];
    let (a, b) = tokio::join!(
        nodes[0].secret_fingerprint("secret-a"),
        nodes[1].secret_fingerprint("secret-b")
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b, "both see the first node's fingerprint");
    assert!(a == "secret-a" || a == "secret-b");
}

/// Waits for the counter to change, at most a few seconds.
async fn changes(appended: &mut tokio::sync::watch::Receiver<u64>) -> bool {
    tokio::time::timeout(Duration::from_secs(5), appended.changed())
        .await
        .is_ok_and(|changed| changed.is_ok())
}

#[tokio::test]
async fn an_append_on_one_node_wakes_followers_on_the_other() {
    let schema = Schema::create().await;
    let (a, b) = (schema.node("a").await, schema.node("b").await);
    let topic = a
        .create_source(&new_source(SourceKind::Topic, "followed"), &keys())
        .await
        .unwrap();
    let mut appended = a.appended();
    appended.borrow_and_update();
    b.append_events(topic.id, vec![event(1)]).await.unwrap();
    assert!(changes(&mut appended).await, "b's append wakes a's followers");

    // A lifecycle change that raises an event wakes them too.
    let ws = b
        .create_source(&new_source(SourceKind::Workspace, "ws"), &[])
        .await
        .unwrap();
    appended.borrow_and_update();
    let model = NewModel {
        name: "m".into(),
        path: None,
        description: None,
        tags: Default::default(),
        properties: Default::default(),
    };
    b.register_model(ws.id, model).await.unwrap();
    assert!(changes(&mut appended).await, "b's raised event wakes a's followers");
}

#[tokio::test]
async fn followers_are_woken_again_after_the_listener_reconnects() {
    let schema = Schema::create().await;
    let (a, b) = (schema.node("a").await, schema.node("b").await);
    let topic = a
        .create_source(&new_source(SourceKind::Topic, "followed"), &keys())
        .await
        .unwrap();
    let mut appended = a.appended();
    appended.borrow_and_update();

    let mut admin = connect_server().await;
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1 AND query LIKE 'LISTEN%'",
    )
    .bind(format!("{}-a", schema.name))
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(killed, [true], "node a has one listening connection");
    assert!(
        changes(&mut appended).await,
        "a lost listener wakes followers (they may have missed appends)"
    );

    // Once listening again, appends from other nodes wake a's followers as before.
    let mut woken = false;
    for n in 0..20 {
        appended.borrow_and_update();
        b.append_events(topic.id, vec![event(n)]).await.unwrap();
        if changes(&mut appended).await {
            woken = true;
            break;
        }
    }
    assert!(woken, "the listener listens again");
}

/// The way back in when no Owner has a usable key: written beside a running node, which
/// accepts the key at once; run twice, it gives the same principal another key.
#[tokio::test]
async fn an_owner_is_recovered_beside_a_running_node() {
    let schema = Schema::create().await;
    let node = schema.node("a").await;
    let key = |id: &str| ApiKeyHash {
        key_id: id.into(),
        hash: format!("hash-{id}"),
    };
    node.create_bootstrap_owner("admin", &key("a")).await.unwrap();
    let url = schema.url("recovery");
    let recovered = recover_owner(RecoveryTarget::Postgres(&url), "rescuer", &key("r1"))
        .await
        .unwrap();
    assert_eq!(
        recovered,
        Recovered {
            principal: "rescuer".into(),
            created: true
        }
    );
    let (principal, _) = node.principal_by_key_id("r1").await.unwrap().unwrap();
    let roles = node.role_assignments(principal.id).await.unwrap();
    assert_eq!(
        roles.iter().map(|r| (r.source_id, r.role)).collect::<Vec<_>>(),
        [(None, Role::Owner)]
    );
    let again = recover_owner(RecoveryTarget::Postgres(&url), "rescuer", &key("r2"))
        .await
        .unwrap();
    assert!(!again.created);
    assert!(node.principal_by_key_id("r2").await.unwrap().is_some());
    assert_eq!(node.role_assignments(principal.id).await.unwrap().len(), 1);
}

/// A database made before names were unique ignoring case, holding `wsA` and `wsa`, is
/// refused by the migration with the names and what to do.
#[tokio::test]
async fn a_database_with_names_differing_only_in_case_is_refused_with_a_remedy() {
    let schema = Schema::create().await;
    schema.node("a").await.close().await;
    let mut conn = PgConnection::connect(&schema.url("setup")).await.unwrap();
    conn.execute(
        "DROP INDEX sources_kind_name_nocase; DROP INDEX principals_name_nocase; \
         DELETE FROM _sqlx_migrations WHERE version = 9; \
         INSERT INTO sources (kind, name, subscription_id, resource_group, created_at) VALUES \
         ('workspace', 'wsA', 's', 'rg', now()), ('workspace', 'wsa', 's', 'rg', now())",
    )
    .await
    .unwrap();
    let Err(refused) = PostgresStore::connect(&schema.url("b")).await else {
        panic!("migrated a database with clashing names")
    };
    let message = refused.to_string();
    assert!(
        message.contains("workspace wsA and wsa") && message.contains("rename them"),
        "{message}"
    );
    conn.execute("UPDATE sources SET name = 'wsA-2' WHERE name = 'wsA'")
        .await
        .unwrap();
    conn.close().await.unwrap();
    let store = schema.node("c").await;
    assert_eq!(
        store.source(SourceKind::Workspace, "WSA-2").await.unwrap().name,
        "wsA-2"
    );
    store.close().await;
}

/// Nodes claiming ready steps at once never get the same step: each claim skips the
/// steps another is claiming, and nothing ready is left behind.
#[tokio::test]
async fn nodes_claiming_steps_at_once_never_get_the_same_one() {
    let schema = Schema::create().await;
    let nodes = [schema.node("a").await, schema.node("b").await];
    let store: Arc<dyn Store> = nodes[0].clone();
    let (ws, pipeline_id) = suite::published(&store, "ws-claims").await;
    for _ in 0..10 {
        let steps = (0..4).map(|i| suite::step(&format!("s{i}"), &[], 0)).collect();
        store
            .submit_pipeline_run(ws, suite::submission(&pipeline_id, steps))
            .await
            .unwrap();
    }
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..8 {
        let node: Arc<dyn Store> = nodes[worker % 2].clone();
        tasks.spawn(async move {
            let claim = suite::claim_for(&format!("worker-{worker}"), 60);
            let mut mine = Vec::new();
            loop {
                let claimed = node.claim_steps(&claim, 3).await.unwrap();
                if claimed.is_empty() {
                    return mine;
                }
                mine.extend(claimed.into_iter().map(|c| c.step.run_id));
            }
        });
    }
    let mut claimed = Vec::new();
    while let Some(mine) = tasks.join_next().await {
        claimed.extend(mine.unwrap());
    }
    let distinct: HashSet<&String> = claimed.iter().collect();
    assert_eq!(distinct.len(), claimed.len(), "no step is claimed twice");
    assert_eq!(claimed.len(), 40, "every step is claimed");
    for node in nodes {
        node.close().await;
    }
}
