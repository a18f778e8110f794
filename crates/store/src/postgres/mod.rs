//! The shared store: PostgreSQL, for several mlgrid nodes working on one database.
//!
//! PostgreSQL has real concurrency, so there is no writer task: each write is one
//! statement or one transaction on a pooled connection, and row locks make concurrent
//! writers from any node take turns where they must (a source's sequence counter, a
//! run's status, a fan-out cursor, a lease). Deliveries are claimed with
//! `FOR UPDATE SKIP LOCKED`. Appends notify a channel that every node listens on
//! ([`listener`]), so followers on every node wake up.
//!
//! Writes return after `COMMIT`, which is durable under PostgreSQL's default
//! `synchronous_commit = on`. Times are `TIMESTAMPTZ` (microseconds); event bodies are
//! `TEXT`, kept exactly as published. The store works in the first schema of the
//! connection's `search_path`, which a URL can set with
//! `?options[search_path]=<schema>`.

mod access;
mod assets;
mod datastores;
mod db;
mod delivery;
mod events;
mod leases;
mod listener;
mod pipelines;
mod retention;
mod runs;
mod schedules;
mod sources;
mod subscriptions;
mod watches;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mlgrid_core::resource::SourceKind;
use mlgrid_core::subscription::ProvisioningState;
use sqlx::migrate::{Migrate, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

use crate::Store;
use crate::appends::Appends;
use crate::datastores::*;
use crate::delivery::*;
use crate::error::{Result, StoreError};
use crate::lifecycle::*;
use crate::model::*;
use crate::pipelines::*;
use crate::schedules::*;
use crate::storage::StorageStats;
use crate::subscriptions::*;
use crate::watches::{DatastoreWatch, NewArrival, NewDatastoreWatch};
use db::db;

/// The schema, brought up to date by [`PostgresStore::connect`] and
/// [`PostgresStore::migrate`]. Nodes
/// starting together take turns (the migrator holds an advisory lock).
static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The table where sqlx records applied migrations (its default).
const MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// What [`PostgresStore::migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// The migrations it applied (version and description), oldest first; empty when
    /// the schema was up to date.
    pub applied: Vec<(i64, String)>,
    /// The schema's version now: the newest migration this build knows.
    pub version: i64,
}

/// Connections a store's queries use at most; the listener holds one more.
const MAX_CONNECTIONS: u32 = 10;

/// The shared store: several nodes on one PostgreSQL database (see the crate docs).
pub struct PostgresStore {
    pool: PgPool,
    appends: Appends,
    appended: watch::Receiver<u64>,
    listener: Mutex<Option<JoinHandle<()>>>,
}

fn options(url: &str) -> Result<PgConnectOptions> {
    // The driver takes any scheme as PostgreSQL's; a `mysql://` URL is a mistake to name.
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(StoreError::Invalid(
            "the database URL must start with postgres:// or postgresql://".to_owned(),
        ));
    }
    url.parse()
        .map_err(|e| StoreError::Invalid(format!("the database URL is not a PostgreSQL URL: {e}")))
}

/// See [`crate::recover_owner`].
pub(crate) async fn recover_owner(url: &str, name: &str, key: &ApiKeyHash) -> Result<crate::Recovered> {
    access::recover_owner(url, name, key).await
}

impl PostgresStore {
    /// Brings the schema of the database at `url` up to date, and does nothing else (for
    /// deployments that migrate before starting nodes); says which migrations it applied.
    pub async fn migrate(url: &str) -> Result<Migrated> {
        let mut conn = db(options(url)?.connect().await)?;
        // Under the migrator's lock (which `run_direct` takes again, nested), so that what
        // was applied before is not changed by another node meanwhile.
        let migrated = async {
            conn.lock().await?;
            conn.ensure_migrations_table(MIGRATIONS_TABLE).await?;
            let before: HashSet<i64> = conn
                .list_applied_migrations(MIGRATIONS_TABLE)
                .await?
                .into_iter()
                .map(|m| m.version)
                .collect();
            MIGRATOR.run_direct(None, &mut conn, false).await?;
            conn.unlock().await?;
            Ok::<_, sqlx::migrate::MigrateError>(before)
        }
        .await
        .map_err(StoreError::backend)
        .map(|before| Migrated {
            applied: MIGRATOR
                .iter()
                .filter(|m| !before.contains(&m.version))
                .map(|m| (m.version, m.description.to_string()))
                .collect(),
            version: MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0),
        });
        db(conn.close().await)?;
        migrated
    }

    /// Connects to the database at `url` (`postgres://user:password@host:port/database`),
    /// brings its schema up to date and starts listening for appends.
    pub async fn connect(url: &str) -> Result<Arc<PostgresStore>> {
        let pool = db(PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS + 1)
            .connect_with(options(url)?)
            .await)?;
        MIGRATOR.run(&pool).await.map_err(StoreError::backend)?;
        let (appended, listener) = listener::spawn(&pool).await?;
        Ok(Arc::new(PostgresStore {
            pool,
            appends: Appends::default(),
            appended,
            listener: Mutex::new(Some(listener)),
        }))
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn create_bootstrap_owner(&self, name: &str, key: &ApiKeyHash) -> Result<bool> {
        access::create_bootstrap_owner(&self.pool, name, key).await
    }

    async fn has_principals(&self) -> Result<bool> {
        access::has_principals(&self.pool).await
    }

    async fn principal_by_key_id(&self, key_id: &str) -> Result<Option<(Principal, ApiKeyHash)>> {
        access::principal_by_key_id(&self.pool, key_id).await
    }

    async fn role_assignments(&self, principal: PrincipalId) -> Result<Vec<RoleAssignment>> {
        access::role_assignments(&self.pool, principal).await
    }

    async fn create_principal(&self, name: &str, key: &ApiKeyHash) -> Result<Principal> {
        access::create_principal(&self.pool, name, key).await
    }

    async fn principal(&self, name: &str) -> Result<Principal> {
        access::principal(&self.pool, name).await
    }

    async fn list_principals(&self) -> Result<Vec<PrincipalSummary>> {
        access::list_principals(&self.pool).await
    }

    async fn add_principal_key(&self, principal: PrincipalId, key: &ApiKeyHash) -> Result<()> {
        access::add_principal_key(&self.pool, principal, key).await
    }

    async fn revoke_principal_keys(&self, principal: PrincipalId) -> Result<u64> {
        access::revoke_principal_keys(&self.pool, principal).await
    }

    async fn create_role_assignment(
        &self,
        principal: PrincipalId,
        source: Option<SourceId>,
        role: Role,
    ) -> Result<RoleGrant> {
        access::create_role_assignment(&self.pool, principal, source, role).await
    }

    async fn list_role_assignments(&self) -> Result<Vec<RoleGrant>> {
        access::list_role_assignments(&self.pool).await
    }

    async fn delete_role_assignment(&self, id: i64) -> Result<()> {
        access::delete_role_assignment(&self.pool, id).await
    }

    async fn create_source(&self, new: &NewSource, keys: &[TopicKey]) -> Result<Source> {
        sources::create(&self.pool, new, keys).await
    }

    async fn source(&self, kind: SourceKind, name: &str) -> Result<Source> {
        sources::get(&self.pool, kind, name).await
    }

    async fn list_sources(&self, kind: SourceKind) -> Result<Vec<Source>> {
        sources::list(&self.pool, kind).await
    }

    async fn delete_source(&self, kind: SourceKind, name: &str) -> Result<()> {
        sources::delete(&self.pool, kind, name).await
    }

    async fn topic_keys(&self, source: SourceId) -> Result<Vec<TopicKey>> {
        sources::topic_keys(&self.pool, source).await
    }

    async fn replace_topic_key(&self, source: SourceId, key: &TopicKey) -> Result<()> {
        sources::replace_topic_key(&self.pool, source, key).await
    }

    async fn append_events(&self, source: SourceId, events: Vec<NewEvent>) -> Result<AppendReceipt> {
        self.appends.append(&self.pool, source, events).await
    }

    async fn read_events(&self, source: SourceId, after: u64, limit: u32) -> Result<Vec<StoredEvent>> {
        events::read(&self.pool, source, after, limit).await
    }

    async fn set_source_retention(&self, source: SourceId, retention: SourceRetention) -> Result<Source> {
        retention::set_retention(&self.pool, source, retention).await
    }

    async fn log_head(&self, source: SourceId, after: u64, limit: u32) -> Result<LogHead> {
        retention::log_head(&self.pool, source, after, limit).await
    }

    async fn prune_events(&self, source: SourceId, through: u64, limit: u32) -> Result<PrunedEvents> {
        retention::prune_events(&self.pool, source, through, limit).await
    }

    async fn prunable_history(&self, cutoffs: HistoryCutoffs) -> Result<Vec<(SourceId, HistoryCounts)>> {
        retention::prunable_history(&self.pool, cutoffs).await
    }

    async fn prune_history(&self, cutoffs: HistoryCutoffs, limit: u32) -> Result<Vec<(SourceId, HistoryCounts)>> {
        retention::prune_history(&self.pool, cutoffs, limit).await
    }

    async fn experiments(&self, workspace: SourceId) -> Result<Vec<Experiment>> {
        runs::experiments(&self.pool, workspace).await
    }

    async fn start_run(&self, workspace: SourceId, new: NewRun) -> Result<Run> {
        runs::start(&self.pool, workspace, new).await
    }

    async fn run(&self, workspace: SourceId, run_id: &str) -> Result<Run> {
        runs::get(&self.pool, workspace, run_id).await
    }

    async fn list_runs(&self, workspace: SourceId, experiment: Option<&str>) -> Result<Vec<Run>> {
        runs::list(&self.pool, workspace, experiment).await
    }

    async fn change_run(
        &self,
        workspace: SourceId,
        run_id: &str,
        change: RunChange,
        if_match: Option<String>,
    ) -> Result<Run> {
        runs::change(&self.pool, workspace, run_id, change, if_match).await
    }

    async fn log_metrics(&self, workspace: SourceId, run_id: &str, metrics: Vec<NewMetric>) -> Result<()> {
        runs::log_metrics(&self.pool, workspace, run_id, metrics).await
    }

    async fn run_metrics(&self, workspace: SourceId, run_id: &str) -> Result<Vec<Metric>> {
        runs::metrics(&self.pool, workspace, run_id).await
    }

    async fn register_model(&self, workspace: SourceId, new: NewModel) -> Result<Model> {
        assets::register_model(&self.pool, workspace, new).await
    }

    async fn model(&self, workspace: SourceId, name: &str, version: Option<u64>) -> Result<Model> {
        assets::model(&self.pool, workspace, name, version).await
    }

    async fn list_models(&self, workspace: SourceId, name: Option<&str>, include_archived: bool) -> Result<Vec<Model>> {
        assets::list_models(&self.pool, workspace, name, include_archived).await
    }

    async fn change_model(
        &self,
        workspace: SourceId,
        name: &str,
        version: u64,
        change: ModelChange,
        if_match: Option<String>,
    ) -> Result<Model> {
        assets::change_model(&self.pool, workspace, name, version, change, if_match).await
    }

    async fn deploy(
        &self,
        workspace: SourceId,
        new: NewDeployment,
        if_match: Option<String>,
    ) -> Result<(Deployment, bool)> {
        assets::deploy(&self.pool, workspace, new, if_match).await
    }

    async fn deployment(&self, workspace: SourceId, name: &str) -> Result<Deployment> {
        assets::deployment(&self.pool, workspace, name).await
    }

    async fn list_deployments(&self, workspace: SourceId) -> Result<Vec<Deployment>> {
        assets::list_deployments(&self.pool, workspace).await
    }

    async fn delete_deployment(&self, workspace: SourceId, name: &str, if_match: Option<String>) -> Result<()> {
        assets::delete_deployment(&self.pool, workspace, name, if_match).await
    }

    async fn register_dataset(&self, workspace: SourceId, new: NewDataset) -> Result<Dataset> {
        assets::register_dataset(&self.pool, workspace, new).await
    }

    async fn dataset(&self, workspace: SourceId, name: &str, version: Option<u64>) -> Result<Dataset> {
        assets::dataset(&self.pool, workspace, name, version).await
    }

    async fn list_datasets(&self, workspace: SourceId, name: Option<&str>) -> Result<Vec<Dataset>> {
        assets::list_datasets(&self.pool, workspace, name).await
    }

    async fn create_datastore(&self, workspace: SourceId, new: NewDatastore) -> Result<StoredDatastore> {
        datastores::create(&self.pool, workspace, new).await
    }

    async fn datastore(&self, workspace: SourceId, name: &str) -> Result<StoredDatastore> {
        datastores::datastore(&self.pool, workspace, name).await
    }

    async fn list_datastores(&self, workspace: SourceId) -> Result<Vec<StoredDatastore>> {
        datastores::list(&self.pool, workspace).await
    }

    async fn delete_datastore(&self, workspace: SourceId, name: &str) -> Result<()> {
        datastores::delete(&self.pool, workspace, name).await
    }

    async fn publish_pipeline(&self, workspace: SourceId, new: NewPipeline) -> Result<PublishedPipeline> {
        pipelines::publish(&self.pool, workspace, new).await
    }

    async fn pipeline(&self, workspace: SourceId, id: &str) -> Result<PublishedPipeline> {
        pipelines::pipeline(&self.pool, workspace, id).await
    }

    async fn list_pipelines(&self, workspace: SourceId, name: Option<&str>) -> Result<Vec<PublishedPipeline>> {
        pipelines::list(&self.pool, workspace, name).await
    }

    async fn set_pipeline_enabled(
        &self,
        workspace: SourceId,
        id: &str,
        enabled: bool,
        if_match: Option<String>,
    ) -> Result<PublishedPipeline> {
        pipelines::set_enabled(&self.pool, workspace, id, enabled, if_match).await
    }

    async fn create_pipeline_endpoint(
        &self,
        workspace: SourceId,
        new: NewPipelineEndpoint,
    ) -> Result<PipelineEndpoint> {
        pipelines::create_endpoint(&self.pool, workspace, new).await
    }

    async fn pipeline_endpoint(&self, workspace: SourceId, name: &str) -> Result<PipelineEndpoint> {
        pipelines::endpoint(&self.pool, workspace, name).await
    }

    async fn list_pipeline_endpoints(&self, workspace: SourceId) -> Result<Vec<PipelineEndpoint>> {
        pipelines::endpoints(&self.pool, workspace).await
    }

    async fn set_pipeline_endpoint_default(
        &self,
        workspace: SourceId,
        name: &str,
        pipeline_id: &str,
        if_match: Option<String>,
    ) -> Result<PipelineEndpoint> {
        pipelines::set_endpoint_default(&self.pool, workspace, name, pipeline_id, if_match).await
    }

    async fn submit_pipeline_run(&self, workspace: SourceId, new: NewPipelineRun) -> Result<Submitted> {
        pipelines::submit(&self.pool, workspace, new).await
    }

    async fn pipeline_run(&self, workspace: SourceId, run_id: &str) -> Result<PipelineRun> {
        pipelines::pipeline_run(&self.pool, workspace, run_id).await
    }

    async fn claim_steps(&self, claim: &StepClaim, limit: u32) -> Result<Vec<ClaimedStep>> {
        pipelines::claim(&self.pool, claim, limit).await
    }

    async fn renew_steps(
        &self,
        holder: &str,
        steps: &[(SourceId, String, u64)],
        until: DateTime<Utc>,
    ) -> Result<Vec<String>> {
        pipelines::renew(&self.pool, holder, steps, until).await
    }

    async fn finish_step(
        &self,
        workspace: SourceId,
        step_run_id: &str,
        lease: u64,
        outcome: StepOutcome,
        next: Option<StepClaim>,
    ) -> Result<StepFinished> {
        pipelines::finish(&self.pool, workspace, step_run_id, lease, outcome, next).await
    }

    async fn cancel_pipeline_run(
        &self,
        workspace: SourceId,
        run_id: &str,
        reason: &str,
        if_match: Option<String>,
    ) -> Result<PipelineRun> {
        pipelines::cancel(&self.pool, workspace, run_id, reason, if_match.as_deref()).await
    }

    async fn recover_steps(&self, now: DateTime<Utc>, reason: &str) -> Result<u64> {
        pipelines::recover(&self.pool, now, reason).await
    }

    async fn reusable_step(&self, workspace: SourceId, reuse_key: &str) -> Result<Option<(String, StepRun)>> {
        pipelines::reusable_step(&self.pool, workspace, reuse_key).await
    }

    async fn create_schedule(&self, workspace: SourceId, new: NewSchedule) -> Result<PipelineSchedule> {
        schedules::create(&self.pool, workspace, new).await
    }

    async fn schedule(&self, workspace: SourceId, name: &str) -> Result<PipelineSchedule> {
        schedules::get(&self.pool, workspace, name).await
    }

    async fn list_schedules(&self, workspace: SourceId, filter: ScheduleFilter) -> Result<Vec<PipelineSchedule>> {
        schedules::list(&self.pool, workspace, filter).await
    }

    async fn update_schedule(
        &self,
        workspace: SourceId,
        name: &str,
        new: NewSchedule,
        if_match: Option<String>,
    ) -> Result<PipelineSchedule> {
        schedules::update(&self.pool, workspace, name, new, if_match).await
    }

    async fn delete_schedule(&self, workspace: SourceId, name: &str, if_match: Option<String>) -> Result<()> {
        schedules::delete(&self.pool, workspace, name, if_match).await
    }

    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        after: Option<(DateTime<Utc>, String)>,
        limit: u32,
    ) -> Result<Vec<PipelineSchedule>> {
        schedules::due(&self.pool, now, after, limit).await
    }

    async fn earliest_fire(&self) -> Result<Option<DateTime<Utc>>> {
        schedules::earliest(&self.pool).await
    }

    async fn due_polls(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<PipelineSchedule>> {
        schedules::due_polls(&self.pool, now, limit).await
    }

    async fn earliest_poll(&self) -> Result<Option<DateTime<Utc>>> {
        schedules::earliest_poll(&self.pool).await
    }

    async fn record_poll(&self, poll: PollDone) -> Result<()> {
        schedules::after_poll(&self.pool, poll).await
    }

    async fn seen_objects(&self, watcher_id: &str) -> Result<Vec<SeenObject>> {
        schedules::seen_objects(&self.pool, watcher_id).await
    }

    async fn record_seen(&self, watcher_id: &str, objects: Vec<SeenObject>) -> Result<()> {
        schedules::record_seen(&self.pool, watcher_id, &objects).await
    }

    async fn forget_seen(&self, watcher_id: &str, paths: Vec<String>) -> Result<()> {
        schedules::forget_seen(&self.pool, watcher_id, &paths).await
    }

    async fn create_datastore_watch(&self, workspace: SourceId, new: NewDatastoreWatch) -> Result<DatastoreWatch> {
        watches::create(&self.pool, workspace, new).await
    }

    async fn datastore_watch(&self, workspace: SourceId, datastore: &str, name: &str) -> Result<DatastoreWatch> {
        watches::get(&self.pool, workspace, datastore, name).await
    }

    async fn list_datastore_watches(&self, workspace: SourceId, datastore: &str) -> Result<Vec<DatastoreWatch>> {
        watches::list(&self.pool, workspace, datastore).await
    }

    async fn delete_datastore_watch(&self, workspace: SourceId, datastore: &str, name: &str) -> Result<()> {
        watches::delete(&self.pool, workspace, datastore, name).await
    }

    async fn due_watches(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<DatastoreWatch>> {
        watches::due(&self.pool, now, limit).await
    }

    async fn record_arrival(&self, arrival: NewArrival) -> Result<Option<u64>> {
        watches::record_arrival(&self.pool, arrival).await
    }

    async fn record_change(
        &self,
        workspace: SourceId,
        change: NewChange,
        run: Option<NewPipelineRun>,
    ) -> Result<ChangeRecorded> {
        schedules::record_change(&self.pool, workspace, change, run).await
    }

    async fn record_fires(&self, ticks: Vec<NewTick>) -> Result<Vec<FireRecorded>> {
        if ticks.is_empty() {
            return Ok(Vec::new());
        }
        schedules::record_fires(&self.pool, ticks).await
    }

    async fn schedule_fires(&self, schedule_id: &str, limit: u32) -> Result<Vec<ScheduleFire>> {
        schedules::fires(&self.pool, schedule_id, limit).await
    }

    async fn active_schedule_runs(&self, schedule_ids: &[String]) -> Result<HashMap<String, u32>> {
        schedules::active_runs(&self.pool, schedule_ids).await
    }

    async fn queued_fires(&self, limit: u32) -> Result<Vec<QueuedFire>> {
        schedules::queued(&self.pool, limit).await
    }

    async fn start_queued_fire(
        &self,
        workspace: SourceId,
        schedule_id: &str,
        fire_time: DateTime<Utc>,
        run: NewPipelineRun,
    ) -> Result<Option<ScheduleFire>> {
        schedules::start_queued(&self.pool, workspace, schedule_id, fire_time, run).await
    }

    async fn advance_schedule(&self, schedule_id: &str, etag: &str, next_fire_at: Option<DateTime<Utc>>) -> Result<()> {
        schedules::advance(&self.pool, schedule_id, etag, next_fire_at).await
    }

    async fn prune_fires(&self, after: &str, schedules: u32, keep: u32, limit: u32) -> Result<PrunedFires> {
        schedules::prune_fires(&self.pool, after, schedules, keep, limit).await
    }

    async fn put_subscription(
        &self,
        source: SourceId,
        put: SubscriptionPut,
        if_match: Option<String>,
    ) -> Result<(EventSubscription, bool)> {
        subscriptions::put(&self.pool, source, put, if_match).await
    }

    async fn subscription(&self, source: SourceId, name: &str) -> Result<EventSubscription> {
        subscriptions::get(&self.pool, source, name).await
    }

    async fn list_subscriptions(&self, source: Option<SourceId>) -> Result<Vec<EventSubscription>> {
        subscriptions::list(&self.pool, source).await
    }

    async fn rotate_subscription_secret(
        &self,
        source: SourceId,
        name: &str,
        salt: &str,
        grace_until: DateTime<Utc>,
    ) -> Result<EventSubscription> {
        subscriptions::rotate_secret(&self.pool, source, name, salt, grace_until).await
    }

    async fn transition_subscription(
        &self,
        id: SubscriptionId,
        etag: &str,
        from: ProvisioningState,
        to: ProvisioningState,
    ) -> Result<Option<EventSubscription>> {
        subscriptions::transition(&self.pool, id, etag, from, to).await
    }

    async fn delete_subscription(&self, source: SourceId, name: &str, if_match: Option<String>) -> Result<()> {
        subscriptions::delete(&self.pool, source, name, if_match).await
    }

    async fn delete_expired_subscriptions(&self, now: DateTime<Utc>) -> Result<u64> {
        subscriptions::delete_expired(&self.pool, now).await
    }

    async fn subscriptions_version(&self) -> Result<u64> {
        subscriptions::version(&self.pool).await
    }

    async fn fanout_cursor(&self, source: SourceId) -> Result<u64> {
        subscriptions::fanout_cursor(&self.pool, source).await
    }

    async fn record_matches(&self, batch: RoutedBatch) -> Result<()> {
        subscriptions::record_matches(&self.pool, batch).await
    }

    async fn subscription_matches(
        &self,
        subscription: SubscriptionId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>> {
        subscriptions::matches(&self.pool, subscription, after, limit).await
    }

    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueDelivery>> {
        delivery::claim(&self.pool, now, lease_until, limit).await
    }

    async fn release_deliveries(
        &self,
        subscription: SubscriptionId,
        sequences: Vec<u64>,
        due_at: DateTime<Utc>,
    ) -> Result<()> {
        delivery::release(&self.pool, subscription, sequences, due_at).await
    }

    async fn record_attempts(&self, attempts: Vec<AttemptRecord>) -> Result<()> {
        delivery::record_attempts(&self.pool, attempts).await
    }

    async fn delivery_attempts(&self, subscription: SubscriptionId, limit: u32) -> Result<Vec<Attempt>> {
        delivery::attempts(&self.pool, subscription, limit).await
    }

    async fn delivery_stats(&self, subscription: SubscriptionId) -> Result<DeliveryStats> {
        delivery::stats(&self.pool, subscription).await
    }

    async fn dead_letters(&self, subscription: SubscriptionId, query: DeadLetterQuery) -> Result<Vec<DeadLetter>> {
        delivery::dead_letters(&self.pool, subscription, query).await
    }

    async fn redeliver(&self, subscription: SubscriptionId, filter: DeadLetterFilter) -> Result<u64> {
        delivery::redeliver(&self.pool, subscription, filter).await
    }

    async fn purge_dead_letters(&self, subscription: SubscriptionId, filter: DeadLetterFilter) -> Result<u64> {
        delivery::purge(&self.pool, subscription, filter).await
    }

    async fn unexported_dead_letters(&self, subscription: SubscriptionId, limit: u32) -> Result<Vec<DeadLetter>> {
        delivery::unexported_dead_letters(&self.pool, subscription, limit).await
    }

    async fn mark_dead_letters_exported(&self, subscription: SubscriptionId, sequences: Vec<u64>) -> Result<()> {
        delivery::mark_exported(&self.pool, subscription, sequences).await
    }

    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<u64>> {
        leases::acquire(&self.pool, name, holder, now, until).await
    }

    async fn release_lease(&self, name: &str, holder: &str, token: u64) -> Result<()> {
        leases::release(&self.pool, name, holder, token).await
    }

    async fn lease_is_current(&self, name: &str, token: u64) -> Result<bool> {
        leases::is_current(&self.pool, name, token).await
    }

    async fn secret_fingerprint(&self, ours: &str) -> Result<String> {
        leases::secret_fingerprint(&self.pool, ours).await
    }

    /// PostgreSQL's WAL is the database server's own (`walBytes` is `None`), and its disk
    /// is watched where the database server runs: writes refused for want of space answer
    /// [`StoreError::Full`], but `full` stays `None` here.
    async fn storage(&self) -> Result<StorageStats> {
        let bytes: i64 = db(sqlx::query_scalar("SELECT pg_database_size(current_database())")
            .fetch_one(&self.pool)
            .await)?;
        Ok(StorageStats {
            wal_bytes: None,
            database_bytes: u64::try_from(bytes).unwrap_or(0),
            full: None,
        })
    }

    fn appended(&self) -> watch::Receiver<u64> {
        self.appended.clone()
    }

    /// Waits for running calls to give their connections back, then closes them and the
    /// listener. Calls made afterwards fail with [`StoreError::Closed`].
    async fn close(&self) {
        // Closing the pool also wakes the listener, which then gives its connection back.
        self.pool.close().await;
        if let Some(task) = self.listener.lock().await.take()
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "the append listener failed");
        }
    }
}
