//! The embedded store: SQLite in WAL mode with `synchronous=FULL`.
//!
//! Reads go through a small pool; writes go through one writer task that commits
//! concurrent writes together ([`writer`]). Automatic WAL checkpoints are turned off on
//! the write path (they would stall a commit); a background task checkpoints instead.

mod rows;
mod writer;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use mlgrid_core::resource::SourceKind;
use mlgrid_core::time::format_event_time;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, QueryBuilder, Sqlite, SqlitePool};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Store;
use crate::error::{Result, StoreError};
use crate::model::*;
use rows::{source_from_row, stored_event_from_row, topic_key_from_row, unique_violation};
use writer::{Appends, WriterHandle};

/// How often the background task folds the WAL back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);
/// Rows per multi-row `INSERT` of events (9 parameters each).
const INSERT_CHUNK: usize = 64;

/// The embedded SQLite store. See the [module docs](self).
pub struct SqliteStore {
    reads: SqlitePool,
    writer: std::sync::Mutex<Option<WriterHandle>>,
    background: Mutex<Vec<JoinHandle<()>>>,
    stop_checkpoints: CancellationToken,
    appended: watch::Receiver<u64>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub async fn open(path: impl AsRef<Path>) -> Result<Arc<SqliteStore>> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            .pragma("wal_autocheckpoint", "0");
        let mut write_conn = options.connect().await.map_err(StoreError::backend)?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut write_conn)
            .await
            .map_err(StoreError::backend)?;
        let reads = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().pragma("query_only", "ON"))
            .await
            .map_err(StoreError::backend)?;
        let (appended_tx, appended) = watch::channel(0);
        let (writer, writer_task) = WriterHandle::spawn(write_conn, appended_tx);
        let stop_checkpoints = CancellationToken::new();
        let checkpoints = tokio::spawn(checkpoint_loop(
            options.connect().await.map_err(StoreError::backend)?,
            stop_checkpoints.clone(),
        ));
        Ok(Arc::new(SqliteStore {
            reads,
            writer: std::sync::Mutex::new(Some(writer)),
            background: Mutex::new(vec![writer_task, checkpoints]),
            stop_checkpoints,
            appended,
        }))
    }

    fn writer(&self) -> Result<WriterHandle> {
        self.writer
            .lock()
            .expect("writer lock is never held across a panic")
            .clone()
            .ok_or(StoreError::Closed)
    }
}

async fn checkpoint_loop(mut conn: sqlx::SqliteConnection, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CHECKPOINT_EVERY) => {}
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&mut conn)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

fn now() -> String {
    format_event_time(Utc::now())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_bootstrap_owner(&self, name: &str, key: &ApiKeyHash) -> Result<bool> {
        let (name, key) = (name.to_owned(), key.clone());
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move {
                    let existing: i64 = sqlx::query_scalar("SELECT count(*) FROM principals")
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(StoreError::backend)?;
                    if existing > 0 {
                        return Ok(false);
                    }
                    let created = now();
                    let id: i64 = sqlx::query_scalar("INSERT INTO principals (name, created_at) VALUES (?, ?) RETURNING id")
                        .bind(&name)
                        .bind(&created)
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(StoreError::backend)?;
                    sqlx::query("INSERT INTO principal_keys (key_id, principal_id, key_hash, created_at) VALUES (?, ?, ?, ?)")
                        .bind(&key.key_id)
                        .bind(id)
                        .bind(&key.hash)
                        .bind(&created)
                        .execute(&mut *conn)
                        .await
                        .map_err(StoreError::backend)?;
                    sqlx::query("INSERT INTO role_assignments (principal_id, source_id, role, created_at) VALUES (?, NULL, 'Owner', ?)")
                        .bind(id)
                        .bind(&created)
                        .execute(&mut *conn)
                        .await
                        .map_err(StoreError::backend)?;
                    Ok(true)
                })
            })
            .await
    }

    async fn has_principals(&self) -> Result<bool> {
        let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM principals LIMIT 1")
            .fetch_optional(&self.reads)
            .await
            .map_err(StoreError::backend)?;
        Ok(any.is_some())
    }

    async fn principal_by_key_id(&self, key_id: &str) -> Result<Option<(Principal, ApiKeyHash)>> {
        let row = sqlx::query(
            "SELECT p.id, p.name, p.created_at, k.key_id, k.key_hash \
             FROM principal_keys k JOIN principals p ON p.id = k.principal_id WHERE k.key_id = ?",
        )
        .bind(key_id)
        .fetch_optional(&self.reads)
        .await
        .map_err(StoreError::backend)?;
        row.map(|row| rows::principal_key_from_row(&row))
            .transpose()
    }

    async fn role_assignments(&self, principal: PrincipalId) -> Result<Vec<RoleAssignment>> {
        let rows = sqlx::query(
            "SELECT principal_id, source_id, role FROM role_assignments WHERE principal_id = ?",
        )
        .bind(principal)
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::backend)?;
        rows.iter().map(rows::role_assignment_from_row).collect()
    }

    async fn create_source(&self, new: &NewSource, keys: &[TopicKey]) -> Result<Source> {
        let (new, keys) = (new.clone(), keys.to_vec());
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move {
                    let row = sqlx::query(
                        "INSERT INTO sources (kind, name, subscription_id, resource_group, created_at) \
                         VALUES (?, ?, ?, ?, ?) RETURNING *",
                    )
                    .bind(new.kind.as_str())
                    .bind(&new.name)
                    .bind(&new.subscription_id)
                    .bind(&new.resource_group)
                    .bind(now())
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| {
                        if unique_violation(&e) {
                            StoreError::Conflict(format!("{} `{}` already exists", new.kind, new.name))
                        } else {
                            StoreError::backend(e)
                        }
                    })?;
                    let source = source_from_row(&row)?;
                    for key in &keys {
                        sqlx::query("INSERT INTO topic_keys (source_id, key_name, salt, key_hash, created_at) VALUES (?, ?, ?, ?, ?)")
                            .bind(source.id)
                            .bind(key.name.as_str())
                            .bind(&key.salt)
                            .bind(&key.hash)
                            .bind(now())
                            .execute(&mut *conn)
                            .await
                            .map_err(StoreError::backend)?;
                    }
                    Ok(source)
                })
            })
            .await
    }

    async fn source(&self, kind: SourceKind, name: &str) -> Result<Source> {
        let row = sqlx::query("SELECT * FROM sources WHERE kind = ? AND name = ?")
            .bind(kind.as_str())
            .bind(name)
            .fetch_optional(&self.reads)
            .await
            .map_err(StoreError::backend)?;
        match row {
            Some(row) => source_from_row(&row),
            None => Err(StoreError::NotFound(format!("{kind} `{name}`"))),
        }
    }

    async fn list_sources(&self, kind: SourceKind) -> Result<Vec<Source>> {
        let rows = sqlx::query("SELECT * FROM sources WHERE kind = ? ORDER BY name")
            .bind(kind.as_str())
            .fetch_all(&self.reads)
            .await
            .map_err(StoreError::backend)?;
        rows.iter().map(source_from_row).collect()
    }

    async fn delete_source(&self, kind: SourceKind, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move {
                    let deleted = sqlx::query("DELETE FROM sources WHERE kind = ? AND name = ?")
                        .bind(kind.as_str())
                        .bind(&name)
                        .execute(&mut *conn)
                        .await
                        .map_err(StoreError::backend)?;
                    if deleted.rows_affected() == 0 {
                        return Err(StoreError::NotFound(format!("{kind} `{name}`")));
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn topic_keys(&self, source: SourceId) -> Result<Vec<TopicKey>> {
        let rows = sqlx::query(
            "SELECT key_name, salt, key_hash FROM topic_keys WHERE source_id = ? ORDER BY key_name",
        )
        .bind(source)
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::backend)?;
        rows.iter().map(topic_key_from_row).collect()
    }

    async fn replace_topic_key(&self, source: SourceId, key: &TopicKey) -> Result<()> {
        let key = key.clone();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move {
                    let updated = sqlx::query("UPDATE topic_keys SET salt = ?, key_hash = ?, created_at = ? WHERE source_id = ? AND key_name = ?")
                        .bind(&key.salt)
                        .bind(&key.hash)
                        .bind(now())
                        .bind(source)
                        .bind(key.name.as_str())
                        .execute(&mut *conn)
                        .await
                        .map_err(StoreError::backend)?;
                    if updated.rows_affected() == 0 {
                        return Err(StoreError::NotFound(format!("{} of source {source}", key.name.as_str())));
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn append_events(
        &self,
        source: SourceId,
        events: Vec<NewEvent>,
    ) -> Result<AppendReceipt> {
        self.writer()?
            .write(Appends::Events, move |conn| {
                Box::pin(async move {
                    let count = events.len() as i64;
                    let last: Option<i64> = sqlx::query_scalar(
                        "UPDATE sources SET last_sequence = last_sequence + ? WHERE id = ? RETURNING last_sequence",
                    )
                    .bind(count)
                    .bind(source)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(StoreError::backend)?;
                    let last = last.ok_or_else(|| StoreError::NotFound(format!("source {source}")))?;
                    let first = last - count + 1;
                    let published = now();
                    let mut sequence = first;
                    for chunk in events.chunks(INSERT_CHUNK) {
                        let mut insert = QueryBuilder::<Sqlite>::new(
                            "INSERT INTO events (source_id, sequence, event_id, schema, event_type, subject, published_at, body) ",
                        );
                        insert.push_values(chunk, |mut row, event| {
                            row.push_bind(source)
                                .push_bind(sequence)
                                .push_bind(event.id.clone())
                                .push_bind(event.schema.as_str())
                                .push_bind(event.event_type.clone())
                                .push_bind(event.subject.clone())
                                .push_bind(published.clone())
                                .push_bind(event.body.clone());
                            sequence += 1;
                        });
                        insert.build().execute(&mut *conn).await.map_err(StoreError::backend)?;
                    }
                    Ok(AppendReceipt {
                        first_sequence: first as u64,
                        last_sequence: last as u64,
                    })
                })
            })
            .await
    }

    async fn read_events(
        &self,
        source: SourceId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(
            "SELECT sequence, event_id, schema, event_type, subject, published_at, body \
             FROM events WHERE source_id = ? AND sequence > ? ORDER BY sequence LIMIT ?",
        )
        .bind(source)
        .bind(to_i64(after))
        .bind(limit.min(crate::MAX_READ_LIMIT))
        .fetch_all(&self.reads)
        .await
        .map_err(StoreError::backend)?;
        rows.iter().map(stored_event_from_row).collect()
    }

    fn appended(&self) -> watch::Receiver<u64> {
        self.appended.clone()
    }

    async fn close(&self) {
        // Dropping the last handle lets the writer finish its queue and stop.
        let handle = self
            .writer
            .lock()
            .expect("writer lock is never held across a panic")
            .take();
        drop(handle);
        self.stop_checkpoints.cancel();
        for task in self.background.lock().await.drain(..) {
            if let Err(e) = task.await {
                tracing::error!(error = %e, "store task failed");
            }
        }
        self.reads.close().await;
    }
}
