//! The embedded store: SQLite in WAL mode with `synchronous=FULL`.
//!
//! Reads go through a small pool; writes go through one writer task that commits
//! concurrent writes together ([`writer`]). Automatic WAL checkpoints are turned off on
//! the write path (they would stall a commit); a background task copies the log into the
//! database once a second (PASSIVE), and the writer restarts the log between groups when
//! it passes 64 MiB and truncates it when idle, so the log stays bounded under any load.

mod access;
mod db;
mod delivery;
mod events;
mod leases;
mod lifecycle;
mod retention;
mod subscriptions;
mod writer;

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mlgrid_core::resource::SourceKind;
use mlgrid_core::subscription::ProvisioningState;
use mlgrid_core::time::format_event_time;
use sqlx::sqlite::SqliteRow;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, SqlitePool};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Store;
use crate::delivery::*;
use crate::error::{Result, StoreError};
use crate::lifecycle::*;
use crate::model::*;
use crate::rows::{self, source_from_row, stored_event_from_row, topic_key_from_row};
use crate::storage::{FullDisk, StorageStats};
use crate::subscriptions::*;
use db::unique_violation;
use writer::{Appends, BUSY_TIMEOUT_MS, WAL_LIMIT_BYTES, WriterHandle};

/// How often the background task folds the WAL back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The embedded SQLite store. See the [module docs](self).
pub struct SqliteStore {
    /// The exclusive lock on `{database}.lock`: one process per embedded database.
    lock: std::sync::Mutex<Option<std::fs::File>>,
    reads: SqlitePool,
    writer: std::sync::Mutex<Option<WriterHandle>>,
    background: Mutex<Vec<JoinHandle<()>>>,
    stop_checkpoints: CancellationToken,
    appended: watch::Receiver<u64>,
    appends: crate::appends::Appends,
    /// The database file, and its write-ahead log.
    files: [PathBuf; 2],
    full: Arc<FullDisk>,
}

/// A read query on the pool.
type ReadQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

impl SqliteStore {
    /// Every row a read returns, mapped.
    async fn all<T>(&self, query: ReadQuery<'_>, map: fn(&SqliteRow) -> Result<T>) -> Result<Vec<T>> {
        let rows = query.fetch_all(&self.reads).await.map_err(StoreError::backend)?;
        rows.iter().map(map).collect()
    }

    /// The row a read returns, mapped; `missing()` when there is none.
    async fn one<T>(
        &self,
        query: ReadQuery<'_>,
        map: fn(&SqliteRow) -> Result<T>,
        missing: impl FnOnce() -> StoreError,
    ) -> Result<T> {
        let row = query.fetch_optional(&self.reads).await.map_err(StoreError::backend)?;
        row.as_ref().map(map).transpose()?.ok_or_else(missing)
    }

    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// The embedded database belongs to one process at a time (several nodes share
    /// PostgreSQL instead): opening takes an exclusive lock on `{path}.lock`, refused while
    /// another process holds it, and gives back the delivery claims a crashed previous
    /// process left, so that their deliveries are retried at once rather than after
    /// their leases.
    pub async fn open(path: impl AsRef<Path>) -> Result<Arc<SqliteStore>> {
        let path = path.as_ref();
        let lock = lock_database(path)?;
        create_private(path)?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS.into()))
            .pragma("wal_autocheckpoint", "0")
            .pragma("journal_size_limit", WAL_LIMIT_BYTES.to_string());
        let mut write_conn = options.connect().await.map_err(StoreError::backend)?;
        refuse_case_clashes(&mut write_conn).await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut write_conn)
            .await
            .map_err(StoreError::backend)?;
        sqlx::query("UPDATE deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL")
            .execute(&mut write_conn)
            .await
            .map_err(StoreError::backend)?;
        let reads = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone().pragma("query_only", "ON"))
            .await
            .map_err(StoreError::backend)?;
        let (appended_tx, appended) = watch::channel(0);
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let files = [path.to_owned(), PathBuf::from(wal)];
        let full = Arc::new(FullDisk::default());
        let (writer, writer_task) = WriterHandle::spawn(write_conn, appended_tx, files[1].clone(), full.clone());
        let stop_checkpoints = CancellationToken::new();
        let checkpoints = tokio::spawn(checkpoint_loop(
            options.connect().await.map_err(StoreError::backend)?,
            stop_checkpoints.clone(),
        ));
        Ok(Arc::new(SqliteStore {
            lock: std::sync::Mutex::new(Some(lock)),
            reads,
            writer: std::sync::Mutex::new(Some(writer)),
            background: Mutex::new(vec![writer_task, checkpoints]),
            stop_checkpoints,
            appended,
            appends: crate::appends::Appends::default(),
            files,
            full,
        }))
    }

    /// Bytes of the write-ahead log file (`{database}-wal`; 0 when there is none).
    pub fn wal_bytes(&self) -> u64 {
        std::fs::metadata(&self.files[1]).map_or(0, |m| m.len())
    }

    /// Caps the database at `pages` pages (SQLite's `max_page_count`) and returns the cap
    /// in force, which is never below the pages in use. Writes that need more pages fail
    /// with [`StoreError::Full`], as on a full disk: this is how tests fill the store
    /// deterministically, without root or a small file system. Not for production use.
    #[doc(hidden)]
    pub async fn set_max_page_count(&self, pages: u64) -> Result<u64> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move {
                    let cap: i64 = sqlx::query_scalar(AssertSqlSafe(format!("PRAGMA max_page_count = {pages}")))
                        .fetch_one(&mut *conn)
                        .await
                        .map_err(StoreError::backend)?;
                    Ok(u64::try_from(cap).unwrap_or(0))
                })
            })
            .await
    }

    fn writer(&self) -> Result<WriterHandle> {
        self.writer
            .lock()
            .expect("writer lock is never held across a panic")
            .clone()
            .ok_or(StoreError::Closed)
    }
}

/// Gives `name` `key` and Owner on everything; see [`crate::recover_owner`].
///
/// A connection of its own, beside the server's if one runs: WAL lets it read while the
/// server writes, and `BEGIN IMMEDIATE` takes SQLite's write lock, waiting (busy
/// timeout) until the server's writer ends its group commit. It does not take the lock
/// file: that says one *server* uses the database (its start gives back every delivery
/// lease), and recovery touches no delivery.
pub(crate) async fn recover_owner(path: &Path, name: &str, key: &ApiKeyHash) -> Result<crate::Recovered> {
    if !path.is_file() {
        return Err(StoreError::Invalid(format!(
            "there is no mlgrid database at {}: give the server's data directory (--data-dir), or its \
             --database-url if it runs on PostgreSQL",
            path.display()
        )));
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_millis(BUSY_TIMEOUT_MS.into()))
        .connect()
        .await
        .map_err(StoreError::backend)?;
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .map_err(StoreError::backend)?;
    let recovered = match access::recover(&mut conn, name, key).await {
        Ok(recovered) => sqlx::query("COMMIT")
            .execute(&mut conn)
            .await
            .map(|_| recovered)
            .map_err(StoreError::backend),
        Err(e) => Err(e),
    };
    if recovered.is_err() {
        // Nothing to keep; an error here only means SQLite rolled back already.
        let _ = sqlx::query("ROLLBACK").execute(&mut conn).await;
    }
    conn.close().await.map_err(StoreError::backend)?;
    recovered
}

/// Refuses a database whose names differ only in case, which migration 0008 (names
/// unique ignoring case) would refuse with a bare index error; says which and what to do.
async fn refuse_case_clashes(conn: &mut sqlx::SqliteConnection) -> Result<()> {
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sources'")
            .fetch_one(&mut *conn)
            .await
            .map_err(StoreError::backend)?;
    if tables == 0 {
        return Ok(());
    }
    let clashes: Vec<String> = sqlx::query_scalar(
        "SELECT kind || ' ' || group_concat(name, ' and ') FROM (SELECT kind, name FROM sources ORDER BY name) \
         GROUP BY kind, lower(name) HAVING count(*) > 1 \
         UNION ALL SELECT 'principal ' || group_concat(name, ' and ') FROM (SELECT name FROM principals ORDER BY name) \
         GROUP BY lower(name) HAVING count(*) > 1",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::backend)?;
    if clashes.is_empty() {
        return Ok(());
    }
    Err(StoreError::Invalid(crate::names::clashing(&clashes.join("; "))))
}

/// Mode of the files the store creates: the database holds events and hashes of keys.
const PRIVATE: u32 = 0o600;

/// Creates the database file, empty (which SQLite takes as a new database), with mode
/// 0600 whatever the umask, before SQLite would create it with 0644. SQLite gives the
/// `-wal` and `-shm` files it creates later the database file's mode. A file that exists
/// keeps its mode (an operator may have opened it to a backup group on purpose); a
/// warning says when others may read it.
fn create_private(path: &Path) -> Result<()> {
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE)
        .open(path)
    {
        Ok(file) => file
            .set_permissions(std::fs::Permissions::from_mode(PRIVATE))
            .map_err(StoreError::backend),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            for suffix in ["", "-wal", "-shm"] {
                let mut file = path.as_os_str().to_owned();
                file.push(suffix);
                warn_if_shared(Path::new(&file));
            }
            Ok(())
        }
        Err(e) => Err(StoreError::backend(std::io::Error::new(
            e.kind(),
            format!("cannot create the database {}: {e}", path.display()),
        ))),
    }
}

/// Logs a warning when users other than the owner may access `path`.
fn warn_if_shared(path: &Path) {
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            file = %path.display(),
            mode = format!("{:o}", meta.permissions().mode() & 0o777),
            "other users may access this file of the store; `chmod 600` it unless that is intended"
        );
    }
}

/// Takes the lock that keeps a second process off the database.
fn lock_database(path: &Path) -> Result<std::fs::File> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(PRIVATE)
        .open(&lock_path)
        .map_err(StoreError::backend)?;
    // It holds nothing, but older versions made it 0644: tighten it, whoever made it.
    file.set_permissions(std::fs::Permissions::from_mode(PRIVATE))
        .map_err(StoreError::backend)?;
    file.try_lock().map_err(|_| {
        StoreError::backend(std::io::Error::other(format!(
            "{} is in use by another process: run one `mlgrid serve` per data directory, \
             or several nodes on PostgreSQL (--database-url)",
            path.display()
        )))
    })?;
    Ok(file)
}

async fn checkpoint_loop(mut conn: sqlx::SqliteConnection, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(CHECKPOINT_EVERY) => {}
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&mut conn).await {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
}

/// Dead-lettered deliveries with their events, for `dead_letter_from_row`.
const DEAD_LETTERS: &str = "SELECT d.sequence, d.attempts, d.dead_letter_reason, d.last_outcome, d.last_status, \
     d.last_attempt_at, e.schema, e.body, e.published_at FROM deliveries d \
     JOIN events e ON e.source_id = d.source_id AND e.sequence = d.sequence";

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
                Box::pin(async move { access::create_bootstrap_owner(conn, &name, &key).await })
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
        row.map(|row| rows::principal_key_from_row(&row)).transpose()
    }

    async fn role_assignments(&self, principal: PrincipalId) -> Result<Vec<RoleAssignment>> {
        self.all(
            sqlx::query("SELECT principal_id, source_id, role FROM role_assignments WHERE principal_id = ?")
                .bind(principal),
            rows::role_assignment_from_row,
        )
        .await
    }

    async fn create_principal(&self, name: &str, key: &ApiKeyHash) -> Result<Principal> {
        let (name, key) = (name.to_owned(), key.clone());
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { access::insert_principal(conn, &name, &key).await })
            })
            .await
    }

    async fn principal(&self, name: &str) -> Result<Principal> {
        let query = sqlx::query("SELECT * FROM principals WHERE lower(name) = lower(?)").bind(name);
        self.one(query, rows::principal_from_row, || {
            StoreError::NotFound(format!("principal `{name}`"))
        })
        .await
    }

    async fn list_principals(&self) -> Result<Vec<PrincipalSummary>> {
        let query = sqlx::query(
            "SELECT p.*, (SELECT count(*) FROM principal_keys k WHERE k.principal_id = p.id) AS keys \
             FROM principals p ORDER BY p.name",
        );
        self.all(query, rows::principal_summary_from_row).await
    }

    async fn add_principal_key(&self, principal: PrincipalId, key: &ApiKeyHash) -> Result<()> {
        let key = key.clone();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { access::insert_key(conn, principal, &key).await })
            })
            .await
    }

    async fn revoke_principal_keys(&self, principal: PrincipalId) -> Result<u64> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(access::revoke_keys(conn, principal))
            })
            .await
    }

    async fn create_role_assignment(
        &self,
        principal: PrincipalId,
        source: Option<SourceId>,
        role: Role,
    ) -> Result<RoleGrant> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(access::grant(conn, principal, source, role))
            })
            .await
    }

    async fn list_role_assignments(&self) -> Result<Vec<RoleGrant>> {
        let query = sqlx::query(AssertSqlSafe(format!("{} ORDER BY p.name, a.id", access::GRANT_SELECT)));
        self.all(query, rows::role_grant_from_row).await
    }

    async fn delete_role_assignment(&self, id: i64) -> Result<()> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(access::delete_role_assignment(conn, id))
            })
            .await
    }

    async fn create_source(&self, new: &NewSource, keys: &[TopicKey]) -> Result<Source> {
        let (new, keys) = (new.clone(), keys.to_vec());
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move {
                    let existing: Option<String> =
                        sqlx::query_scalar("SELECT name FROM sources WHERE kind = ? AND lower(name) = lower(?)")
                            .bind(new.kind.as_str())
                            .bind(&new.name)
                            .fetch_optional(&mut *conn)
                            .await
                            .map_err(StoreError::backend)?;
                    if let Some(existing) = existing {
                        return Err(StoreError::Conflict(crate::names::taken(new.kind.as_str(), &existing)));
                    }
                    let row = sqlx::query(
                        "INSERT INTO sources (kind, name, subscription_id, resource_group, created_at, \
                         retention_seconds, retention_bytes) VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING *",
                    )
                    .bind(new.kind.as_str())
                    .bind(&new.name)
                    .bind(&new.subscription_id)
                    .bind(&new.resource_group)
                    .bind(now())
                    .bind(new.retention.time.map(|t| to_i64(t.seconds())))
                    .bind(new.retention.max_bytes.map(to_i64))
                    .fetch_one(&mut *conn)
                    .await
                    .map_err(|e| {
                        if unique_violation(&e) {
                            StoreError::Conflict(crate::names::taken(new.kind.as_str(), &new.name))
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
        let query = sqlx::query("SELECT * FROM sources WHERE kind = ? AND lower(name) = lower(?)")
            .bind(kind.as_str())
            .bind(name);
        self.one(query, source_from_row, || {
            StoreError::NotFound(format!("{kind} `{name}`"))
        })
        .await
    }

    async fn list_sources(&self, kind: SourceKind) -> Result<Vec<Source>> {
        self.all(
            sqlx::query("SELECT * FROM sources WHERE kind = ? ORDER BY name").bind(kind.as_str()),
            source_from_row,
        )
        .await
    }

    async fn delete_source(&self, kind: SourceKind, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move {
                    let deleted = sqlx::query("DELETE FROM sources WHERE kind = ? AND lower(name) = lower(?)")
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
        self.all(
            sqlx::query("SELECT key_name, salt, key_hash FROM topic_keys WHERE source_id = ? ORDER BY key_name")
                .bind(source),
            topic_key_from_row,
        )
        .await
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

    async fn append_events(&self, source: SourceId, events: Vec<NewEvent>) -> Result<AppendReceipt> {
        self.appends.append(&self.writer()?, source, events).await
    }

    async fn read_events(&self, source: SourceId, after: u64, limit: u32) -> Result<Vec<StoredEvent>> {
        self.all(
            sqlx::query(
                "SELECT sequence, event_id, schema, event_type, subject, published_at, body \
             FROM events WHERE source_id = ?1 AND sequence > ?2 \
             AND sequence > (SELECT pruned_through FROM sources WHERE id = ?1) ORDER BY sequence LIMIT ?3",
            )
            .bind(source)
            .bind(to_i64(after))
            .bind(limit.min(crate::MAX_READ_LIMIT)),
            stored_event_from_row,
        )
        .await
    }

    async fn set_source_retention(&self, source: SourceId, retention: SourceRetention) -> Result<Source> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(retention::set_retention(conn, source, retention))
            })
            .await
    }

    async fn log_head(&self, source: SourceId, after: u64, limit: u32) -> Result<LogHead> {
        let row: Option<(i64, i64, i64)> = sqlx::query_as(AssertSqlSafe(format!(
            "SELECT s.pruned_through, s.stored_bytes, {} FROM sources s WHERE s.id = ?",
            retention::ROUTED_THROUGH
        )))
        .bind(source)
        .fetch_optional(&self.reads)
        .await
        .map_err(StoreError::backend)?;
        let (pruned_through, stored_bytes, routed_through) =
            row.ok_or_else(|| StoreError::NotFound(format!("source {source}")))?;
        let entries = self
            .all(
                sqlx::query(
                    "SELECT sequence, published_at, length(CAST(body AS BLOB)) AS bytes FROM events \
                     WHERE source_id = ? AND sequence > ? ORDER BY sequence LIMIT ?",
                )
                .bind(source)
                .bind(to_i64(after).max(pruned_through))
                .bind(limit.min(crate::MAX_READ_LIMIT)),
                rows::log_entry_from_row,
            )
            .await?;
        Ok(LogHead {
            pruned_through: pruned_through.max(0) as u64,
            stored_bytes: stored_bytes.max(0) as u64,
            routed_through: routed_through.max(0) as u64,
            entries,
        })
    }

    async fn prune_events(&self, source: SourceId, through: u64, limit: u32) -> Result<PrunedEvents> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(retention::prune_events(conn, source, through, limit))
            })
            .await
    }

    async fn prunable_history(&self, cutoffs: HistoryCutoffs) -> Result<Vec<(SourceId, HistoryCounts)>> {
        let mut conn = self.reads.acquire().await.map_err(StoreError::backend)?;
        retention::prunable_history(&mut conn, cutoffs).await
    }

    async fn prune_history(&self, cutoffs: HistoryCutoffs, limit: u32) -> Result<Vec<(SourceId, HistoryCounts)>> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(retention::prune_history(conn, cutoffs, limit))
            })
            .await
    }

    async fn experiments(&self, workspace: SourceId) -> Result<Vec<Experiment>> {
        self.all(
            sqlx::query("SELECT * FROM experiments WHERE source_id = ? ORDER BY name").bind(workspace),
            rows::experiment_from_row,
        )
        .await
    }

    async fn start_run(&self, workspace: SourceId, new: NewRun) -> Result<Run> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(lifecycle::start_run(conn, workspace, new))
            })
            .await
    }

    async fn run(&self, workspace: SourceId, run_id: &str) -> Result<Run> {
        self.one(
            sqlx::query(AssertSqlSafe(format!(
                "{} WHERE r.source_id = ? AND r.run_id = ?",
                rows::RUN_SELECT
            )))
            .bind(workspace)
            .bind(run_id),
            rows::run_from_row,
            || StoreError::NotFound(format!("run `{run_id}`")),
        )
        .await
    }

    async fn list_runs(&self, workspace: SourceId, experiment: Option<&str>) -> Result<Vec<Run>> {
        self.all(
            sqlx::query(AssertSqlSafe(format!(
                "{} WHERE r.source_id = ? AND (? IS NULL OR e.name = ?) ORDER BY r.created_at, r.run_id",
                rows::RUN_SELECT
            )))
            .bind(workspace)
            .bind(experiment)
            .bind(experiment),
            rows::run_from_row,
        )
        .await
    }

    async fn change_run(
        &self,
        workspace: SourceId,
        run_id: &str,
        change: RunChange,
        if_match: Option<String>,
    ) -> Result<Run> {
        let run_id = run_id.to_owned();
        self.writer()?
            .write(Appends::Events, move |conn| {
                Box::pin(async move { lifecycle::change_run(conn, workspace, &run_id, change, if_match).await })
            })
            .await
    }

    async fn log_metrics(&self, workspace: SourceId, run_id: &str, metrics: Vec<NewMetric>) -> Result<()> {
        let run_id = run_id.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { lifecycle::log_metrics(conn, workspace, &run_id, metrics).await })
            })
            .await
    }

    async fn run_metrics(&self, workspace: SourceId, run_id: &str) -> Result<Vec<Metric>> {
        self.run(workspace, run_id).await?;
        let query =
            sqlx::query("SELECT * FROM run_metrics WHERE source_id = ? AND run_id = ? ORDER BY name, step, rowid");
        self.all(query.bind(workspace).bind(run_id), rows::metric_from_row)
            .await
    }

    async fn register_model(&self, workspace: SourceId, new: NewModel) -> Result<Model> {
        self.writer()?
            .write(Appends::Events, move |conn| {
                Box::pin(lifecycle::register_model(conn, workspace, new))
            })
            .await
    }

    async fn model(&self, workspace: SourceId, name: &str, version: Option<u64>) -> Result<Model> {
        self.one(sqlx::query(
            "SELECT * FROM models WHERE source_id = ? AND name = ? AND (version = ? OR (? IS NULL AND archived = 0)) \
             ORDER BY version DESC LIMIT 1",
        )
        .bind(workspace)
        .bind(name)
        .bind(version.map(to_i64))
        .bind(version.map(to_i64)), rows::model_from_row, || StoreError::NotFound(match version {
                Some(v) => format!("model `{name}:{v}`"),
                None => format!("a model `{name}` that is not archived"),
            })).await
    }

    async fn list_models(&self, workspace: SourceId, name: Option<&str>, include_archived: bool) -> Result<Vec<Model>> {
        self.all(sqlx::query("SELECT * FROM models WHERE source_id = ? AND (? IS NULL OR name = ?) AND (? OR archived = 0) ORDER BY name, version")
            .bind(workspace)
            .bind(name)
            .bind(name)
            .bind(include_archived), rows::model_from_row).await
    }

    async fn change_model(
        &self,
        workspace: SourceId,
        name: &str,
        version: u64,
        change: ModelChange,
        if_match: Option<String>,
    ) -> Result<Model> {
        let name = name.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(
                    async move { lifecycle::change_model(conn, workspace, &name, version, change, if_match).await },
                )
            })
            .await
    }

    async fn deploy(
        &self,
        workspace: SourceId,
        new: NewDeployment,
        if_match: Option<String>,
    ) -> Result<(Deployment, bool)> {
        self.writer()?
            .write(Appends::Events, move |conn| {
                Box::pin(lifecycle::deploy(conn, workspace, new, if_match))
            })
            .await
    }

    async fn deployment(&self, workspace: SourceId, name: &str) -> Result<Deployment> {
        self.one(
            sqlx::query("SELECT * FROM deployments WHERE source_id = ? AND name = ?")
                .bind(workspace)
                .bind(name),
            rows::deployment_from_row,
            || StoreError::NotFound(format!("deployment `{name}`")),
        )
        .await
    }

    async fn list_deployments(&self, workspace: SourceId) -> Result<Vec<Deployment>> {
        self.all(
            sqlx::query("SELECT * FROM deployments WHERE source_id = ? ORDER BY name").bind(workspace),
            rows::deployment_from_row,
        )
        .await
    }

    async fn delete_deployment(&self, workspace: SourceId, name: &str, if_match: Option<String>) -> Result<()> {
        let name = name.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { lifecycle::delete_deployment(conn, workspace, &name, if_match).await })
            })
            .await
    }

    async fn register_dataset(&self, workspace: SourceId, new: NewDataset) -> Result<Dataset> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(lifecycle::register_dataset(conn, workspace, new))
            })
            .await
    }

    async fn dataset(&self, workspace: SourceId, name: &str, version: Option<u64>) -> Result<Dataset> {
        let query = sqlx::query(
            "SELECT * FROM datasets WHERE source_id = ? AND name = ? AND (? IS NULL OR version = ?) \
             ORDER BY version DESC LIMIT 1",
        );
        let query = query
            .bind(workspace)
            .bind(name)
            .bind(version.map(to_i64))
            .bind(version.map(to_i64));
        self.one(query, rows::dataset_from_row, || {
            StoreError::NotFound(match version {
                Some(v) => format!("dataset `{name}` version {v}"),
                None => format!("dataset `{name}`"),
            })
        })
        .await
    }

    async fn list_datasets(&self, workspace: SourceId, name: Option<&str>) -> Result<Vec<Dataset>> {
        self.all(
            sqlx::query(
                "SELECT * FROM datasets WHERE source_id = ? AND (? IS NULL OR name = ?) ORDER BY name, version",
            )
            .bind(workspace)
            .bind(name)
            .bind(name),
            rows::dataset_from_row,
        )
        .await
    }

    async fn put_subscription(
        &self,
        source: SourceId,
        put: SubscriptionPut,
        if_match: Option<String>,
    ) -> Result<(EventSubscription, bool)> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(subscriptions::put(conn, source, put, if_match))
            })
            .await
    }

    async fn subscription(&self, source: SourceId, name: &str) -> Result<EventSubscription> {
        let query = sqlx::query("SELECT * FROM event_subscriptions WHERE source_id = ? AND name = ?")
            .bind(source)
            .bind(name);
        self.one(query, rows::subscription_from_row, || {
            StoreError::NotFound(format!("event subscription `{name}`"))
        })
        .await
    }

    async fn list_subscriptions(&self, source: Option<SourceId>) -> Result<Vec<EventSubscription>> {
        let query =
            sqlx::query("SELECT * FROM event_subscriptions WHERE ? IS NULL OR source_id = ? ORDER BY source_id, name");
        self.all(query.bind(source).bind(source), rows::subscription_from_row)
            .await
    }

    async fn rotate_subscription_secret(
        &self,
        source: SourceId,
        name: &str,
        salt: &str,
        grace_until: DateTime<Utc>,
    ) -> Result<EventSubscription> {
        let (name, salt) = (name.to_owned(), salt.to_owned());
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { subscriptions::rotate_secret(conn, source, &name, &salt, grace_until).await })
            })
            .await
    }

    async fn transition_subscription(
        &self,
        id: SubscriptionId,
        etag: &str,
        from: ProvisioningState,
        to: ProvisioningState,
    ) -> Result<Option<EventSubscription>> {
        let etag = etag.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { subscriptions::transition(conn, id, &etag, from, to).await })
            })
            .await
    }

    async fn delete_subscription(&self, source: SourceId, name: &str, if_match: Option<String>) -> Result<()> {
        let name = name.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { subscriptions::delete(conn, source, &name, if_match).await })
            })
            .await
    }

    async fn delete_expired_subscriptions(&self, now: DateTime<Utc>) -> Result<u64> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(subscriptions::delete_expired(conn, now))
            })
            .await
    }

    async fn subscriptions_version(&self) -> Result<u64> {
        let version: i64 = sqlx::query_scalar("SELECT version FROM subscription_versions WHERE id = 1")
            .fetch_one(&self.reads)
            .await
            .map_err(StoreError::backend)?;
        Ok(version as u64)
    }

    async fn fanout_cursor(&self, source: SourceId) -> Result<u64> {
        let cursor: Option<i64> = sqlx::query_scalar("SELECT last_sequence FROM fanout_cursors WHERE source_id = ?")
            .bind(source)
            .fetch_optional(&self.reads)
            .await
            .map_err(StoreError::backend)?;
        Ok(cursor.unwrap_or(0) as u64)
    }

    async fn record_matches(&self, batch: RoutedBatch) -> Result<()> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(subscriptions::record_matches(conn, batch))
            })
            .await
    }

    async fn subscription_matches(
        &self,
        subscription: SubscriptionId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        let query = sqlx::query(
            "SELECT e.sequence, e.event_id, e.schema, e.event_type, e.subject, e.published_at, e.body \
             FROM deliveries d JOIN events e ON e.source_id = d.source_id AND e.sequence = d.sequence \
             WHERE d.subscription_id = ?1 AND d.sequence > ?2 \
             AND d.sequence > (SELECT max(s.pruned_through, src.pruned_through) FROM event_subscriptions s \
                 JOIN sources src ON src.id = s.source_id WHERE s.id = ?1) \
             ORDER BY d.sequence LIMIT ?3",
        );
        let query = query
            .bind(subscription)
            .bind(to_i64(after))
            .bind(limit.min(crate::MAX_READ_LIMIT));
        self.all(query, stored_event_from_row).await
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueDelivery>> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(delivery::claim(conn, now, lease_until, limit))
            })
            .await
    }

    async fn release_deliveries(
        &self,
        subscription: SubscriptionId,
        sequences: Vec<u64>,
        due_at: DateTime<Utc>,
    ) -> Result<()> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(delivery::release(conn, subscription, sequences, due_at))
            })
            .await
    }

    async fn record_attempts(&self, attempts: Vec<AttemptRecord>) -> Result<()> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(delivery::record_attempts(conn, attempts))
            })
            .await
    }

    async fn delivery_attempts(&self, subscription: SubscriptionId, limit: u32) -> Result<Vec<Attempt>> {
        let query = sqlx::query("SELECT * FROM delivery_attempts WHERE subscription_id = ? ORDER BY id DESC LIMIT ?");
        self.all(
            query.bind(subscription).bind(limit.min(crate::MAX_READ_LIMIT)),
            rows::attempt_from_row,
        )
        .await
    }

    async fn delivery_stats(&self, subscription: SubscriptionId) -> Result<DeliveryStats> {
        let (delivered, dead, pending): (i64, i64, i64) = sqlx::query_as(
            "SELECT coalesce(sum(state = 'delivered'), 0), coalesce(sum(state = 'dead'), 0), coalesce(sum(state = 'pending'), 0) \
             FROM deliveries WHERE subscription_id = ?",
        )
        .bind(subscription)
        .fetch_one(&self.reads)
        .await
        .map_err(StoreError::backend)?;
        let (failed, last_error): (i64, Option<String>) = sqlx::query_as(
            "SELECT count(*), (SELECT coalesce(error, outcome) FROM delivery_attempts WHERE subscription_id = ?1 \
             AND outcome != 'Delivered' ORDER BY id DESC LIMIT 1) \
             FROM delivery_attempts WHERE subscription_id = ?1 AND outcome != 'Delivered'",
        )
        .bind(subscription)
        .fetch_one(&self.reads)
        .await
        .map_err(StoreError::backend)?;
        Ok(DeliveryStats {
            delivered: delivered as u64,
            dead_lettered: dead as u64,
            pending: pending as u64,
            failed_attempts: failed as u64,
            last_error,
        })
    }

    async fn dead_letters(&self, subscription: SubscriptionId, after: u64, limit: u32) -> Result<Vec<DeadLetter>> {
        let query = sqlx::query(AssertSqlSafe(format!(
            "{DEAD_LETTERS} WHERE d.subscription_id = ? AND d.state = 'dead' AND d.sequence > ? ORDER BY d.sequence LIMIT ?"
        )));
        let query = query
            .bind(subscription)
            .bind(to_i64(after))
            .bind(limit.min(crate::MAX_READ_LIMIT));
        self.all(query, rows::dead_letter_from_row).await
    }

    async fn redeliver(&self, subscription: SubscriptionId, sequences: Option<Vec<u64>>) -> Result<u64> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(delivery::redeliver(conn, subscription, sequences))
            })
            .await
    }

    async fn purge_dead_letters(&self, subscription: SubscriptionId, sequences: Option<Vec<u64>>) -> Result<u64> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(delivery::purge(conn, subscription, sequences))
            })
            .await
    }

    async fn unexported_dead_letters(&self, subscription: SubscriptionId, limit: u32) -> Result<Vec<DeadLetter>> {
        let query = sqlx::query(AssertSqlSafe(format!(
            "{DEAD_LETTERS} WHERE d.subscription_id = ? AND d.state = 'dead' AND d.dead_letter_exported_at IS NULL \
             ORDER BY d.sequence LIMIT ?"
        )));
        self.all(
            query.bind(subscription).bind(limit.min(crate::MAX_READ_LIMIT)),
            rows::dead_letter_from_row,
        )
        .await
    }

    async fn mark_dead_letters_exported(&self, subscription: SubscriptionId, sequences: Vec<u64>) -> Result<()> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(delivery::mark_exported(conn, subscription, sequences))
            })
            .await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<u64>> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { leases::acquire(conn, &name, &holder, now, until).await })
            })
            .await
    }

    async fn release_lease(&self, name: &str, holder: &str, token: u64) -> Result<()> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { leases::release(conn, &name, &holder, token).await })
            })
            .await
    }

    async fn lease_is_current(&self, name: &str, token: u64) -> Result<bool> {
        let current: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM leases WHERE name = ? AND token = ? AND holder IS NOT NULL")
                .bind(name)
                .bind(to_i64(token))
                .fetch_optional(&self.reads)
                .await
                .map_err(StoreError::backend)?;
        Ok(current.is_some())
    }

    async fn secret_fingerprint(&self, ours: &str) -> Result<String> {
        let ours = ours.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { leases::secret_fingerprint(conn, &ours).await })
            })
            .await
    }

    async fn storage(&self) -> Result<StorageStats> {
        let database = std::fs::metadata(&self.files[0]).map_err(|e| {
            StoreError::backend(std::io::Error::new(
                e.kind(),
                format!("cannot read the size of the database {}: {e}", self.files[0].display()),
            ))
        })?;
        Ok(StorageStats {
            wal_bytes: Some(self.wal_bytes()),
            database_bytes: database.len(),
            full: self.full.get(),
        })
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
        drop(self.lock.lock().expect("never held across a panic").take());
    }
}
