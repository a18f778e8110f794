//! The embedded store: SQLite in WAL mode with `synchronous=FULL`.
//!
//! Reads go through a small pool; writes go through one writer task that commits
//! concurrent writes together ([`writer`]). Automatic WAL checkpoints are turned off on
//! the write path (they would stall a commit); a background task copies the log into the
//! database once a second (PASSIVE), and the writer restarts the log between groups when
//! it passes 64 MiB and truncates it when idle, so the log stays bounded under any load.
//!
//! Laid out like the PostgreSQL backend, one module per resource with the same names;
//! each holds the reads (on the pool) and the writes (run by the writer, on its
//! connection) of its resource, and [`SqliteStore`]'s `impl Store` only hands calls on.

mod access;
mod assets;
mod datastores;
mod db;
mod delivery;
mod events;
mod leases;
mod pipelines;
mod retention;
mod runs;
mod schedules;
mod sources;
mod subscriptions;
mod ticks;
mod watches;
mod writer;

use std::collections::HashMap;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mlgrid_core::resource::SourceKind;
use mlgrid_core::subscription::ProvisioningState;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, SqlitePool};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Store;
use crate::datastores::*;
use crate::delivery::*;
use crate::error::{Result, StoreError};
use crate::lifecycle::*;
use crate::model::*;
use crate::pipelines::*;
use crate::schedules::*;
use crate::storage::{FullDisk, StorageStats};
use crate::subscriptions::*;
use crate::watches::{DatastoreWatch, NewArrival, NewDatastoreWatch};
use writer::{Appends, BUSY_TIMEOUT_MS, WAL_LIMIT_BYTES, WriterHandle};

/// How often the background task folds the WAL back into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// The writer's page cache (`PRAGMA cache_size`, negative: KiB), 64 MiB rather than
/// SQLite's 2 MiB. The writer is the only connection whose cache stays valid from one
/// transaction to the next (a reader's is dropped whenever the database changed), and
/// its inserts land all over the indexes: with 2 MiB most of them read their pages back
/// from the file first.
const WRITER_CACHE_SIZE: &str = "-65536";

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

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// The embedded database belongs to one process at a time (several nodes share
    /// PostgreSQL instead): opening takes an exclusive lock on `{path}.lock`, refused while
    /// another process holds it, and gives back the delivery and step claims a crashed
    /// previous process left, so that their deliveries are retried, and their steps
    /// recovered, at once rather than after their leases.
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
        let mut write_conn = options
            .clone()
            .pragma("cache_size", WRITER_CACHE_SIZE)
            .connect()
            .await
            .map_err(StoreError::backend)?;
        refuse_case_clashes(&mut write_conn).await?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&mut write_conn)
            .await
            .map_err(StoreError::backend)?;
        sqlx::query("UPDATE deliveries SET lease_until = NULL WHERE lease_until IS NOT NULL")
            .execute(&mut write_conn)
            .await
            .map_err(StoreError::backend)?;
        // Steps that ran in a previous process lost it: their leases end now, so that
        // the next `recover_steps` makes them ready again (or fails them) at once.
        sqlx::query("UPDATE pipeline_steps SET lease_until = NULL WHERE state = 'Running'")
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
        access::has_principals(&self.reads).await
    }

    async fn principal_by_key_id(&self, key_id: &str) -> Result<Option<(Principal, ApiKeyHash)>> {
        access::principal_by_key_id(&self.reads, key_id).await
    }

    async fn role_assignments(&self, principal: PrincipalId) -> Result<Vec<RoleAssignment>> {
        access::role_assignments(&self.reads, principal).await
    }

    async fn create_principal(&self, name: &str, key: &ApiKeyHash) -> Result<Principal> {
        let (name, key) = (name.to_owned(), key.clone());
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { access::create_principal(conn, &name, &key).await })
            })
            .await
    }

    async fn principal(&self, name: &str) -> Result<Principal> {
        access::principal(&self.reads, name).await
    }

    async fn list_principals(&self) -> Result<Vec<PrincipalSummary>> {
        access::list_principals(&self.reads).await
    }

    async fn add_principal_key(&self, principal: PrincipalId, key: &ApiKeyHash) -> Result<()> {
        let key = key.clone();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { access::add_principal_key(conn, principal, &key).await })
            })
            .await
    }

    async fn revoke_principal_keys(&self, principal: PrincipalId) -> Result<u64> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(access::revoke_principal_keys(conn, principal))
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
                Box::pin(access::create_role_assignment(conn, principal, source, role))
            })
            .await
    }

    async fn list_role_assignments(&self) -> Result<Vec<RoleGrant>> {
        access::list_role_assignments(&self.reads).await
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
            .write(Appends::Nothing, move |conn| Box::pin(sources::create(conn, new, keys)))
            .await
    }

    async fn source(&self, kind: SourceKind, name: &str) -> Result<Source> {
        sources::get(&self.reads, kind, name).await
    }

    async fn list_sources(&self, kind: SourceKind) -> Result<Vec<Source>> {
        sources::list(&self.reads, kind).await
    }

    async fn delete_source(&self, kind: SourceKind, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { sources::delete(conn, kind, &name).await })
            })
            .await
    }

    async fn topic_keys(&self, source: SourceId) -> Result<Vec<TopicKey>> {
        sources::topic_keys(&self.reads, source).await
    }

    async fn replace_topic_key(&self, source: SourceId, key: &TopicKey) -> Result<()> {
        let key = key.clone();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(sources::replace_topic_key(conn, source, key))
            })
            .await
    }

    async fn append_events(&self, source: SourceId, events: Vec<NewEvent>) -> Result<AppendReceipt> {
        self.appends.append(&self.writer()?, source, events).await
    }

    async fn read_events(&self, source: SourceId, after: u64, limit: u32) -> Result<Vec<StoredEvent>> {
        events::read(&self.reads, source, after, limit).await
    }

    async fn set_source_retention(&self, source: SourceId, retention: SourceRetention) -> Result<Source> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(retention::set_retention(conn, source, retention))
            })
            .await
    }

    async fn log_head(&self, source: SourceId, after: u64, limit: u32) -> Result<LogHead> {
        retention::log_head(&self.reads, source, after, limit).await
    }

    async fn prune_events(&self, source: SourceId, through: u64, limit: u32) -> Result<PrunedEvents> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(retention::prune_events(conn, source, through, limit))
            })
            .await
    }

    async fn prunable_history(&self, cutoffs: HistoryCutoffs) -> Result<Vec<(SourceId, HistoryCounts)>> {
        retention::prunable_history(&self.reads, cutoffs).await
    }

    async fn prune_history(&self, cutoffs: HistoryCutoffs, limit: u32) -> Result<Vec<(SourceId, HistoryCounts)>> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(retention::prune_history(conn, cutoffs, limit))
            })
            .await
    }

    async fn experiments(&self, workspace: SourceId) -> Result<Vec<Experiment>> {
        runs::experiments(&self.reads, workspace).await
    }

    async fn start_run(&self, workspace: SourceId, new: NewRun) -> Result<Run> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(runs::start(conn, workspace, new))
            })
            .await
    }

    async fn run(&self, workspace: SourceId, run_id: &str) -> Result<Run> {
        runs::get(&self.reads, workspace, run_id).await
    }

    async fn list_runs(&self, workspace: SourceId, experiment: Option<&str>) -> Result<Vec<Run>> {
        runs::list(&self.reads, workspace, experiment).await
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
                Box::pin(async move { runs::change(conn, workspace, &run_id, change, if_match).await })
            })
            .await
    }

    async fn log_metrics(&self, workspace: SourceId, run_id: &str, metrics: Vec<NewMetric>) -> Result<()> {
        let run_id = run_id.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { runs::log_metrics(conn, workspace, &run_id, metrics).await })
            })
            .await
    }

    async fn run_metrics(&self, workspace: SourceId, run_id: &str) -> Result<Vec<Metric>> {
        runs::metrics(&self.reads, workspace, run_id).await
    }

    async fn register_model(&self, workspace: SourceId, new: NewModel) -> Result<Model> {
        self.writer()?
            .write(Appends::Events, move |conn| {
                Box::pin(assets::register_model(conn, workspace, new))
            })
            .await
    }

    async fn model(&self, workspace: SourceId, name: &str, version: Option<u64>) -> Result<Model> {
        assets::model(&self.reads, workspace, name, version).await
    }

    async fn list_models(&self, workspace: SourceId, name: Option<&str>, include_archived: bool) -> Result<Vec<Model>> {
        assets::list_models(&self.reads, workspace, name, include_archived).await
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
                Box::pin(async move { assets::change_model(conn, workspace, &name, version, change, if_match).await })
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
                Box::pin(assets::deploy(conn, workspace, new, if_match))
            })
            .await
    }

    async fn deployment(&self, workspace: SourceId, name: &str) -> Result<Deployment> {
        assets::deployment(&self.reads, workspace, name).await
    }

    async fn list_deployments(&self, workspace: SourceId) -> Result<Vec<Deployment>> {
        assets::list_deployments(&self.reads, workspace).await
    }

    async fn delete_deployment(&self, workspace: SourceId, name: &str, if_match: Option<String>) -> Result<()> {
        let name = name.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { assets::delete_deployment(conn, workspace, &name, if_match).await })
            })
            .await
    }

    async fn register_dataset(&self, workspace: SourceId, new: NewDataset) -> Result<Dataset> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(assets::register_dataset(conn, workspace, new))
            })
            .await
    }

    async fn dataset(&self, workspace: SourceId, name: &str, version: Option<u64>) -> Result<Dataset> {
        assets::dataset(&self.reads, workspace, name, version).await
    }

    async fn list_datasets(&self, workspace: SourceId, name: Option<&str>) -> Result<Vec<Dataset>> {
        assets::list_datasets(&self.reads, workspace, name).await
    }

    async fn create_datastore(&self, workspace: SourceId, new: NewDatastore) -> Result<StoredDatastore> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(datastores::create(conn, workspace, new))
            })
            .await
    }

    async fn datastore(&self, workspace: SourceId, name: &str) -> Result<StoredDatastore> {
        datastores::datastore(&self.reads, workspace, name).await
    }

    async fn list_datastores(&self, workspace: SourceId) -> Result<Vec<StoredDatastore>> {
        datastores::list(&self.reads, workspace).await
    }

    async fn delete_datastore(&self, workspace: SourceId, name: &str) -> Result<()> {
        let name = name.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { datastores::delete(conn, workspace, &name).await })
            })
            .await
    }

    async fn publish_pipeline(&self, workspace: SourceId, new: NewPipeline) -> Result<PublishedPipeline> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(pipelines::publish(conn, workspace, new))
            })
            .await
    }

    async fn pipeline(&self, workspace: SourceId, id: &str) -> Result<PublishedPipeline> {
        pipelines::pipeline(&self.reads, workspace, id).await
    }

    async fn list_pipelines(&self, workspace: SourceId, name: Option<&str>) -> Result<Vec<PublishedPipeline>> {
        pipelines::list(&self.reads, workspace, name).await
    }

    async fn set_pipeline_enabled(
        &self,
        workspace: SourceId,
        id: &str,
        enabled: bool,
        if_match: Option<String>,
    ) -> Result<PublishedPipeline> {
        let id = id.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { pipelines::set_enabled(conn, workspace, &id, enabled, if_match).await })
            })
            .await
    }

    async fn create_pipeline_endpoint(
        &self,
        workspace: SourceId,
        new: NewPipelineEndpoint,
    ) -> Result<PipelineEndpoint> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(pipelines::create_endpoint(conn, workspace, new))
            })
            .await
    }

    async fn pipeline_endpoint(&self, workspace: SourceId, name: &str) -> Result<PipelineEndpoint> {
        pipelines::endpoint(&self.reads, workspace, name).await
    }

    async fn list_pipeline_endpoints(&self, workspace: SourceId) -> Result<Vec<PipelineEndpoint>> {
        pipelines::endpoints(&self.reads, workspace).await
    }

    async fn set_pipeline_endpoint_default(
        &self,
        workspace: SourceId,
        name: &str,
        pipeline_id: &str,
        if_match: Option<String>,
    ) -> Result<PipelineEndpoint> {
        let (name, pipeline_id) = (name.to_owned(), pipeline_id.to_owned());
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move {
                    pipelines::set_endpoint_default(conn, workspace, &name, &pipeline_id, if_match).await
                })
            })
            .await
    }

    async fn submit_pipeline_run(&self, workspace: SourceId, new: NewPipelineRun) -> Result<Submitted> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(pipelines::submit(conn, workspace, new))
            })
            .await
    }

    async fn pipeline_run(&self, workspace: SourceId, run_id: &str) -> Result<PipelineRun> {
        pipelines::pipeline_run(&self.reads, workspace, run_id).await
    }

    async fn claim_steps(&self, claim: &StepClaim, limit: u32) -> Result<Vec<ClaimedStep>> {
        let claim = claim.clone();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(pipelines::claim(conn, claim, limit))
            })
            .await
    }

    async fn renew_steps(
        &self,
        holder: &str,
        steps: &[(SourceId, String, u64)],
        until: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        let (holder, steps) = (holder.to_owned(), steps.to_vec());
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(pipelines::renew(conn, holder, steps, until))
            })
            .await
    }

    async fn finish_step(
        &self,
        workspace: SourceId,
        step_run_id: &str,
        lease: u64,
        outcome: StepOutcome,
        next: Option<StepClaim>,
    ) -> Result<StepFinished> {
        let step_run_id = step_run_id.to_owned();
        self.writer()?
            .write(Appends::Events, move |conn| {
                Box::pin(async move { pipelines::finish(conn, workspace, &step_run_id, lease, outcome, next).await })
            })
            .await
    }

    async fn cancel_pipeline_run(
        &self,
        workspace: SourceId,
        run_id: &str,
        reason: &str,
        if_match: Option<String>,
    ) -> Result<PipelineRun> {
        let (run_id, reason) = (run_id.to_owned(), reason.to_owned());
        self.writer()?
            .write(Appends::Events, move |conn| {
                Box::pin(async move { pipelines::cancel(conn, workspace, &run_id, &reason, if_match.as_deref()).await })
            })
            .await
    }

    async fn recover_steps(&self, now: DateTime<Utc>, reason: &str) -> Result<u64> {
        let reason = reason.to_owned();
        self.writer()?
            .write(Appends::Events, move |conn| {
                Box::pin(async move { pipelines::recover(conn, now, &reason).await })
            })
            .await
    }

    async fn reusable_step(&self, workspace: SourceId, reuse_key: &str) -> Result<Option<(String, StepRun)>> {
        pipelines::reusable_step(&self.reads, workspace, reuse_key).await
    }

    async fn create_schedule(&self, workspace: SourceId, new: NewSchedule) -> Result<PipelineSchedule> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(schedules::create(conn, workspace, new))
            })
            .await
    }

    async fn schedule(&self, workspace: SourceId, name: &str) -> Result<PipelineSchedule> {
        schedules::get(&self.reads, workspace, name).await
    }

    async fn list_schedules(&self, workspace: SourceId, filter: ScheduleFilter) -> Result<Vec<PipelineSchedule>> {
        schedules::list(&self.reads, workspace, filter).await
    }

    async fn update_schedule(
        &self,
        workspace: SourceId,
        name: &str,
        new: NewSchedule,
        if_match: Option<String>,
    ) -> Result<PipelineSchedule> {
        let name = name.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { schedules::update(conn, workspace, &name, new, if_match).await })
            })
            .await
    }

    async fn delete_schedule(&self, workspace: SourceId, name: &str, if_match: Option<String>) -> Result<()> {
        let name = name.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { schedules::delete(conn, workspace, &name, if_match).await })
            })
            .await
    }

    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        after: Option<(DateTime<Utc>, String)>,
        limit: u32,
    ) -> Result<Vec<PipelineSchedule>> {
        schedules::due(&self.reads, now, after, limit).await
    }

    async fn earliest_fire(&self) -> Result<Option<DateTime<Utc>>> {
        schedules::earliest(&self.reads).await
    }

    async fn due_polls(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<PipelineSchedule>> {
        schedules::due_polls(&self.reads, now, limit).await
    }

    async fn earliest_poll(&self) -> Result<Option<DateTime<Utc>>> {
        schedules::earliest_poll(&self.reads).await
    }

    async fn record_poll(&self, poll: PollDone) -> Result<()> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(schedules::after_poll(conn, poll))
            })
            .await
    }

    async fn seen_objects(&self, watcher_id: &str) -> Result<Vec<SeenObject>> {
        schedules::seen_objects(&self.reads, watcher_id).await
    }

    async fn record_seen(&self, watcher_id: &str, objects: Vec<SeenObject>) -> Result<()> {
        let watcher_id = watcher_id.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { schedules::record_seen(conn, &watcher_id, &objects).await })
            })
            .await
    }

    async fn forget_seen(&self, watcher_id: &str, paths: Vec<String>) -> Result<()> {
        let watcher_id = watcher_id.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { schedules::forget_seen(conn, &watcher_id, &paths).await })
            })
            .await
    }

    async fn create_datastore_watch(&self, workspace: SourceId, new: NewDatastoreWatch) -> Result<DatastoreWatch> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(watches::create(conn, workspace, new))
            })
            .await
    }

    async fn datastore_watch(&self, workspace: SourceId, datastore: &str, name: &str) -> Result<DatastoreWatch> {
        watches::get(&self.reads, workspace, datastore, name).await
    }

    async fn list_datastore_watches(&self, workspace: SourceId, datastore: &str) -> Result<Vec<DatastoreWatch>> {
        watches::list(&self.reads, workspace, datastore).await
    }

    async fn delete_datastore_watch(&self, workspace: SourceId, datastore: &str, name: &str) -> Result<()> {
        let (datastore, name) = (datastore.to_owned(), name.to_owned());
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { watches::delete(conn, workspace, &datastore, &name).await })
            })
            .await
    }

    async fn due_watches(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<DatastoreWatch>> {
        watches::due(&self.reads, now, limit).await
    }

    async fn record_arrival(&self, arrival: NewArrival) -> Result<Option<u64>> {
        self.writer()?
            .write(Appends::Events, move |conn| {
                Box::pin(watches::record_arrival(conn, arrival))
            })
            .await
    }

    async fn record_change(
        &self,
        workspace: SourceId,
        change: NewChange,
        run: Option<NewPipelineRun>,
    ) -> Result<ChangeRecorded> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(schedules::record_change(conn, workspace, change, run))
            })
            .await
    }

    async fn record_fires(&self, ticks: Vec<NewTick>) -> Result<Vec<FireRecorded>> {
        if ticks.is_empty() {
            return Ok(Vec::new());
        }
        self.writer()?
            .write(Appends::Nothing, move |conn| Box::pin(ticks::record(conn, ticks)))
            .await
    }

    async fn schedule_fires(&self, schedule_id: &str, limit: u32) -> Result<Vec<ScheduleFire>> {
        schedules::fires(&self.reads, schedule_id, limit).await
    }

    async fn active_schedule_runs(&self, schedule_ids: &[String]) -> Result<HashMap<String, u32>> {
        schedules::active_runs(&self.reads, schedule_ids).await
    }

    async fn queued_fires(&self, limit: u32) -> Result<Vec<QueuedFire>> {
        schedules::queued(&self.reads, limit).await
    }

    async fn start_queued_fire(
        &self,
        workspace: SourceId,
        schedule_id: &str,
        fire_time: DateTime<Utc>,
        run: NewPipelineRun,
    ) -> Result<Option<ScheduleFire>> {
        let schedule_id = schedule_id.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { schedules::start_queued(conn, workspace, &schedule_id, fire_time, run).await })
            })
            .await
    }

    async fn advance_schedule(&self, schedule_id: &str, etag: &str, next_fire_at: Option<DateTime<Utc>>) -> Result<()> {
        let (schedule_id, etag) = (schedule_id.to_owned(), etag.to_owned());
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { schedules::advance(conn, &schedule_id, &etag, next_fire_at).await })
            })
            .await
    }

    async fn prune_fires(&self, after: &str, schedules: u32, keep: u32, limit: u32) -> Result<PrunedFires> {
        let after = after.to_owned();
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(async move { schedules::prune_fires(conn, &after, schedules, keep, limit).await })
            })
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
        subscriptions::get(&self.reads, source, name).await
    }

    async fn list_subscriptions(&self, source: Option<SourceId>) -> Result<Vec<EventSubscription>> {
        subscriptions::list(&self.reads, source).await
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
        subscriptions::version(&self.reads).await
    }

    async fn fanout_cursor(&self, source: SourceId) -> Result<u64> {
        subscriptions::fanout_cursor(&self.reads, source).await
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
        subscriptions::matches(&self.reads, subscription, after, limit).await
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
        delivery::attempts(&self.reads, subscription, limit).await
    }

    async fn delivery_stats(&self, subscription: SubscriptionId) -> Result<DeliveryStats> {
        delivery::stats(&self.reads, subscription).await
    }

    async fn dead_letters(&self, subscription: SubscriptionId, query: DeadLetterQuery) -> Result<Vec<DeadLetter>> {
        delivery::dead_letters(&self.reads, subscription, query).await
    }

    async fn redeliver(&self, subscription: SubscriptionId, filter: DeadLetterFilter) -> Result<u64> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(delivery::redeliver(conn, subscription, filter))
            })
            .await
    }

    async fn purge_dead_letters(&self, subscription: SubscriptionId, filter: DeadLetterFilter) -> Result<u64> {
        self.writer()?
            .write(Appends::Nothing, move |conn| {
                Box::pin(delivery::purge(conn, subscription, filter))
            })
            .await
    }

    async fn unexported_dead_letters(&self, subscription: SubscriptionId, limit: u32) -> Result<Vec<DeadLetter>> {
        delivery::unexported_dead_letters(&self.reads, subscription, limit).await
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
        leases::is_current(&self.reads, name, token).await
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
