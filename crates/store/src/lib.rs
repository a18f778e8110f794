//! Storage for mlgrid: one [`Store`] trait, and its implementations.
//!
//! The store keeps event sources (workspaces and custom topics), principals with their
//! hashed API keys and roles, topic access keys (hashed), and each source's append-only
//! event log with a gap-free, increasing sequence number.
//!
//! **Invariant:** when a write call returns `Ok`, what it wrote is on disk (committed
//! and fsync'd). Callers acknowledge nothing to anyone before that.
//!
//! [`SqliteStore`] is the embedded implementation: WAL mode, `synchronous=FULL`, and
//! one writer task that commits concurrent writes together (group commit), so that one
//! fsync covers many requests.
//!
//! [`PostgresStore`] is the shared implementation, for several nodes on one database:
//! each write is one statement or transaction, row locks order concurrent writers from
//! any node (per-source sequences stay gap-free), deliveries are claimed with
//! `FOR UPDATE SKIP LOCKED`, and appends are announced to every node with
//! `LISTEN`/`NOTIFY`. Its writes are durable under PostgreSQL's default
//! `synchronous_commit = on`. Leases with fencing tokens let nodes do a thing once.
//!
//! ```no_run
//! # async fn demo() -> mlgrid_store::Result<()> {
//! use mlgrid_core::resource::SourceKind;
//! use mlgrid_store::{NewSource, SqliteStore, Store};
//!
//! let store = SqliteStore::open("mlgrid-data/mlgrid.db").await?;
//! let topic = store
//!     .create_source(&NewSource {
//!         kind: SourceKind::Topic,
//!         name: "orders".into(),
//!         subscription_id: "sub".into(),
//!         resource_group: "rg".into(),
//!         retention: Default::default(),
//!     }, &[])
//!     .await?;
//! assert_eq!(topic.last_sequence, 0);
//! store.close().await;
//! # Ok(()) }
//! ```
//!
//! Several nodes share a PostgreSQL database the same way, through the same trait:
//!
//! ```no_run
//! # async fn demo() -> mlgrid_store::Result<()> {
//! use mlgrid_store::{PostgresStore, Store};
//!
//! let store = PostgresStore::connect("postgres://mlgrid@db.internal/mlgrid").await?;
//! let mut appended = store.appended(); // changes after any node's append
//! # let _ = appended.changed().await;
//! store.close().await;
//! # Ok(()) }
//! ```

mod access;
mod appends;
pub mod datastores;
mod delivery;
mod error;
mod etag;
mod lifecycle;
mod lifecycle_writes;
mod model;
mod names;
mod pipeline_writes;
pub mod pipelines;
mod postgres;
mod rows;
mod schedule_sql;
pub mod schedules;
mod sql;
mod sqlite;
mod storage;
mod subscriptions;
mod tick_writes;
mod watch_sql;
pub mod watches;

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use mlgrid_core::resource::SourceKind;
use mlgrid_core::subscription::ProvisioningState;
use tokio::sync::watch;

pub use access::{Recovered, RecoveryTarget, recover_owner};
pub use datastores::*;
pub use delivery::*;
pub use error::{Result, StoreError};
pub use lifecycle::*;
pub use model::*;
pub use pipelines::*;
pub use postgres::{Migrated, PostgresStore};
pub use schedules::*;
pub use sqlite::SqliteStore;
pub use storage::StorageStats;
pub use subscriptions::*;
pub use watches::*;

/// Name of the setting holding the server secret's fingerprint.
const SECRET_FINGERPRINT: &str = "secret_fingerprint";

/// Largest page of events one read returns.
pub const MAX_READ_LIMIT: u32 = 10_000;

/// Everything mlgrid keeps, behind one interface; held as `Arc<dyn Store>`.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates the first principal, named `name`, as Owner of everything, with `key`;
    /// does nothing and returns `false` if any principal exists.
    async fn create_bootstrap_owner(&self, name: &str, key: &ApiKeyHash) -> Result<bool>;

    /// Whether any principal exists.
    async fn has_principals(&self) -> Result<bool>;

    /// The principal holding the API key with this public id, and the key's hash.
    async fn principal_by_key_id(&self, key_id: &str) -> Result<Option<(Principal, ApiKeyHash)>>;

    /// Every role the principal holds.
    async fn role_assignments(&self, principal: PrincipalId) -> Result<Vec<RoleAssignment>>;

    /// Creates a principal with its first API key; `Conflict` if the name is taken.
    async fn create_principal(&self, name: &str, key: &ApiKeyHash) -> Result<Principal>;

    async fn principal(&self, name: &str) -> Result<Principal>;

    async fn list_principals(&self) -> Result<Vec<PrincipalSummary>>;

    /// Gives a principal one more API key.
    async fn add_principal_key(&self, principal: PrincipalId, key: &ApiKeyHash) -> Result<()>;

    /// Revokes every API key of a principal at once; returns how many there were.
    /// Refuses (`Conflict`) to revoke the keys of the last Owner of every source that has
    /// a key, which would leave nobody able to manage access; two concurrent revocations
    /// cannot both pass that check.
    async fn revoke_principal_keys(&self, principal: PrincipalId) -> Result<u64>;

    /// Grants a role on one source, or on every source when `source` is `None`;
    /// `Conflict` if the principal already holds it there.
    async fn create_role_assignment(
        &self,
        principal: PrincipalId,
        source: Option<SourceId>,
        role: Role,
    ) -> Result<RoleGrant>;

    /// Every role assignment, by principal name.
    async fn list_role_assignments(&self) -> Result<Vec<RoleGrant>>;

    /// Removes a role assignment; refuses (`Conflict`) to remove the last Owner of every
    /// source, which would leave nobody able to manage access.
    async fn delete_role_assignment(&self, id: i64) -> Result<()>;

    /// Creates a source with its access keys (topics have two, workspaces none).
    async fn create_source(&self, new: &NewSource, keys: &[TopicKey]) -> Result<Source>;

    async fn source(&self, kind: SourceKind, name: &str) -> Result<Source>;

    async fn list_sources(&self, kind: SourceKind) -> Result<Vec<Source>>;

    /// Deletes a source with its keys, roles and events.
    async fn delete_source(&self, kind: SourceKind, name: &str) -> Result<()>;

    async fn topic_keys(&self, source: SourceId) -> Result<Vec<TopicKey>>;

    /// Replaces one access key of a topic.
    async fn replace_topic_key(&self, source: SourceId, key: &TopicKey) -> Result<()>;

    /// Appends events to a source's log and returns the sequence numbers they got, in
    /// order. All or none are appended.
    async fn append_events(&self, source: SourceId, events: Vec<NewEvent>) -> Result<AppendReceipt>;

    /// Events of a source with a sequence number above `after` and above the source's
    /// pruned mark, oldest first, at most `limit` (capped at [`MAX_READ_LIMIT`]).
    async fn read_events(&self, source: SourceId, after: u64, limit: u32) -> Result<Vec<StoredEvent>>;

    // Retention: a source's own retention, and pruning in small batches (each one
    // transaction, a short write that never holds appends or deliveries for long).

    /// Sets a source's own retention (unset parts take the server's defaults).
    async fn set_source_retention(&self, source: SourceId, retention: SourceRetention) -> Result<Source>;

    /// The old end of a source's log: its pruned mark and size, how far it is routed,
    /// and up to `limit` events after `after` and after the mark, oldest first.
    async fn log_head(&self, source: SourceId, after: u64, limit: u32) -> Result<LogHead>;

    /// Moves the source's pruned mark up to `through` (never past what is routed, never
    /// back) and deletes up to `limit` events at or below the mark that no delivery
    /// holds: a pending, leased or dead-lettered delivery keeps its event until it is
    /// delivered, purged or pruned itself.
    async fn prune_events(&self, source: SourceId, through: u64, limit: u32) -> Result<PrunedEvents>;

    /// Per source, the delivered deliveries, dead letters and attempts older than the
    /// cutoffs (what [`Store::prune_history`] would remove).
    async fn prunable_history(&self, cutoffs: HistoryCutoffs) -> Result<Vec<(SourceId, HistoryCounts)>>;

    /// Deletes up to `limit` each of the delivered deliveries, dead letters and attempts
    /// older than the cutoffs (oldest first); returns per source what went. A
    /// subscription's pruned mark moves up to the deliveries deleted.
    async fn prune_history(&self, cutoffs: HistoryCutoffs, limit: u32) -> Result<Vec<(SourceId, HistoryCounts)>>;

    // The ML lifecycle of a workspace. Every change that Azure ML announces appends its
    // event in the same transaction (transactional outbox): no event without its change,
    // no change without its event. `if_match` is an etag the resource must still have.

    async fn experiments(&self, workspace: SourceId) -> Result<Vec<Experiment>>;

    /// Starts a run (creating its experiment on first use). Raises no event.
    async fn start_run(&self, workspace: SourceId, new: NewRun) -> Result<Run>;

    async fn run(&self, workspace: SourceId, run_id: &str) -> Result<Run>;

    /// Runs of the workspace, or of one experiment, oldest first.
    async fn list_runs(&self, workspace: SourceId, experiment: Option<&str>) -> Result<Vec<Run>>;

    /// Changes a run's status, tags or properties. A refused status transition is a
    /// `Conflict` naming the allowed ones. Completing raises `RunCompleted`, failing
    /// raises `RunStatusChanged`.
    async fn change_run(
        &self,
        workspace: SourceId,
        run_id: &str,
        change: RunChange,
        if_match: Option<String>,
    ) -> Result<Run>;

    /// Logs metrics on a run that has not ended.
    async fn log_metrics(&self, workspace: SourceId, run_id: &str, metrics: Vec<NewMetric>) -> Result<()>;

    async fn run_metrics(&self, workspace: SourceId, run_id: &str) -> Result<Vec<Metric>>;

    /// Registers the next version of a model (1, 2, 3, ...; never reused) and raises
    /// `ModelRegistered`.
    async fn register_model(&self, workspace: SourceId, new: NewModel) -> Result<Model>;

    /// One version of a model, or its latest version that is not archived.
    async fn model(&self, workspace: SourceId, name: &str, version: Option<u64>) -> Result<Model>;

    /// Model versions, of one name or all, by name and version.
    async fn list_models(&self, workspace: SourceId, name: Option<&str>, include_archived: bool) -> Result<Vec<Model>>;

    /// Updates a model version's description, tags, properties or archived flag; raises
    /// no event.
    async fn change_model(
        &self,
        workspace: SourceId,
        name: &str,
        version: u64,
        change: ModelChange,
        if_match: Option<String>,
    ) -> Result<Model>;

    /// Creates or replaces a deployment after checking every model reference exists and
    /// is not archived (`Invalid` naming the first that does not), and raises
    /// `ModelDeployed`. Returns whether the deployment is new.
    async fn deploy(
        &self,
        workspace: SourceId,
        new: NewDeployment,
        if_match: Option<String>,
    ) -> Result<(Deployment, bool)>;

    async fn deployment(&self, workspace: SourceId, name: &str) -> Result<Deployment>;

    async fn list_deployments(&self, workspace: SourceId) -> Result<Vec<Deployment>>;

    async fn delete_deployment(&self, workspace: SourceId, name: &str, if_match: Option<String>) -> Result<()>;

    /// Registers the next version of a dataset.
    async fn register_dataset(&self, workspace: SourceId, new: NewDataset) -> Result<Dataset>;

    /// One version of a dataset, or its latest.
    async fn dataset(&self, workspace: SourceId, name: &str, version: Option<u64>) -> Result<Dataset>;

    async fn list_datasets(&self, workspace: SourceId, name: Option<&str>) -> Result<Vec<Dataset>>;

    // Registered datastores (see `datastores`).

    /// Registers a datastore; a name taken already (ignoring case) is a `Conflict`.
    async fn create_datastore(&self, workspace: SourceId, new: NewDatastore) -> Result<StoredDatastore>;
    /// A datastore, found by its name ignoring case.
    async fn datastore(&self, workspace: SourceId, name: &str) -> Result<StoredDatastore>;
    /// The workspace's datastores, by name.
    async fn list_datastores(&self, workspace: SourceId) -> Result<Vec<StoredDatastore>>;
    /// Deletes a datastore; refused with a `Conflict` naming them while [`DatastoreUsers`]
    /// use it.
    async fn delete_datastore(&self, workspace: SourceId, name: &str) -> Result<()>;

    // Published pipelines, their endpoints, and the runs of their steps (see
    // [`pipelines`]). Pipeline runs are runs: their status changes raise events.

    /// Publishes a pipeline under its name; a version taken already is a `Conflict`.
    async fn publish_pipeline(&self, workspace: SourceId, new: NewPipeline) -> Result<PublishedPipeline>;

    /// A pipeline of the workspace by id (`NotFound` for another workspace's).
    async fn pipeline(&self, workspace: SourceId, id: &str) -> Result<PublishedPipeline>;

    /// Pipelines of the workspace, or the versions of one name, oldest first.
    async fn list_pipelines(&self, workspace: SourceId, name: Option<&str>) -> Result<Vec<PublishedPipeline>>;

    /// Enables or disables a pipeline (a disabled one refuses submissions). Disabling
    /// one that active schedules start is a `Conflict` naming them.
    async fn set_pipeline_enabled(
        &self,
        workspace: SourceId,
        id: &str,
        enabled: bool,
        if_match: Option<String>,
    ) -> Result<PublishedPipeline>;

    /// Creates a named endpoint; a name taken already is a `Conflict`.
    async fn create_pipeline_endpoint(&self, workspace: SourceId, new: NewPipelineEndpoint)
    -> Result<PipelineEndpoint>;

    async fn pipeline_endpoint(&self, workspace: SourceId, name: &str) -> Result<PipelineEndpoint>;

    async fn list_pipeline_endpoints(&self, workspace: SourceId) -> Result<Vec<PipelineEndpoint>>;

    /// Points an endpoint at another pipeline of the workspace.
    async fn set_pipeline_endpoint_default(
        &self,
        workspace: SourceId,
        name: &str,
        pipeline_id: &str,
        if_match: Option<String>,
    ) -> Result<PipelineEndpoint>;

    /// Creates a pipeline run, a child run per step, and the steps (those without
    /// dependencies ready), in one transaction. A disabled pipeline is a `Conflict` that
    /// says so; an idempotency key seen before returns the earlier run.
    async fn submit_pipeline_run(&self, workspace: SourceId, new: NewPipelineRun) -> Result<Submitted>;

    /// A pipeline run with its steps (`NotFound` when the run is not a pipeline run).
    async fn pipeline_run(&self, workspace: SourceId, run_id: &str) -> Result<PipelineRun>;

    /// Claims up to `limit` ready steps of any workspace, oldest ready first, for
    /// `claim.holder` until `claim.lease_until`: each becomes Running (its run too, and
    /// the pipeline run when it is the first).
    async fn claim_steps(&self, claim: &StepClaim, limit: u32) -> Result<Vec<ClaimedStep>>;

    /// Extends the leases `holder` still has on these steps (`(workspace, step run id,
    /// lease)`); returns those it no longer holds or whose cancellation was asked, which
    /// the executor stops.
    async fn renew_steps(
        &self,
        holder: &str,
        steps: &[(SourceId, String, u64)],
        until: DateTime<Utc>,
    ) -> Result<Vec<String>>;

    /// Records how a claimed step's attempt ended, and in the same transaction moves the
    /// run on (core's `pipeline::progress`): a failure with retries left makes it ready
    /// again; dependents become ready (and, with `next`, claimed by its holder at once)
    /// or are skipped; the pipeline run ends when no step can change. A lease that is no
    /// longer current is a `Conflict`, and nothing changes.
    async fn finish_step(
        &self,
        workspace: SourceId,
        step_run_id: &str,
        lease: u64,
        outcome: StepOutcome,
        next: Option<StepClaim>,
    ) -> Result<StepFinished>;

    /// Cancels a pipeline run: steps not started are cancelled, running ones are asked
    /// to stop (see [`Store::renew_steps`]); the run is Canceled once none runs.
    async fn cancel_pipeline_run(
        &self,
        workspace: SourceId,
        run_id: &str,
        reason: &str,
        if_match: Option<String>,
    ) -> Result<PipelineRun>;

    /// Steps whose lease expired while they ran (their node died or restarted): each is
    /// ready again if it has retries left, else failed with `reason`. Returns how many.
    async fn recover_steps(&self, now: DateTime<Utc>, reason: &str) -> Result<u64>;

    /// The latest completed step run of the workspace with this reuse key, whose outputs
    /// a step with the same key may take instead of running, with the id of the pipeline
    /// run it belongs to.
    async fn reusable_step(&self, workspace: SourceId, reuse_key: &str) -> Result<Option<(String, StepRun)>>;

    // Schedules of pipelines and the ticks they fired (see [`schedules`]). Each change
    // that can start a pipeline (creating, updating, enabling a schedule) share-locks the
    // pipeline, so disabling it cannot slip past an active schedule.

    /// Creates a schedule of a pipeline of the workspace (`NotFound` when there is no such
    /// pipeline, `Conflict` when it is disabled or the name is taken, ignoring case).
    async fn create_schedule(&self, workspace: SourceId, new: NewSchedule) -> Result<PipelineSchedule>;

    async fn schedule(&self, workspace: SourceId, name: &str) -> Result<PipelineSchedule>;

    /// The schedules of a workspace the filter selects, by name.
    async fn list_schedules(&self, workspace: SourceId, filter: ScheduleFilter) -> Result<Vec<PipelineSchedule>>;

    /// Replaces a schedule's definition (status included); a change of kind is a
    /// `Conflict` that says so, and so is an active schedule of a disabled pipeline.
    async fn update_schedule(
        &self,
        workspace: SourceId,
        name: &str,
        new: NewSchedule,
        if_match: Option<String>,
    ) -> Result<PipelineSchedule>;

    /// Deletes a schedule with the record of its ticks (its runs stay).
    async fn delete_schedule(&self, workspace: SourceId, name: &str, if_match: Option<String>) -> Result<()>;

    /// Active time schedules whose next tick is at or before `now`, the longest due
    /// first (then by id), at most `limit`; with `after`, those that come after the
    /// schedule with that next tick and id in this order (the last of the page before).
    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        after: Option<(DateTime<Utc>, String)>,
        limit: u32,
    ) -> Result<Vec<PipelineSchedule>>;

    /// The earliest next tick of every active time schedule: what the scheduler sleeps
    /// until. One index lookup, however many schedules there are.
    async fn earliest_fire(&self) -> Result<Option<DateTime<Utc>>>;

    /// Records ticks of schedules, each once, all in one transaction, and answers for
    /// each in the order given. A tick recorded before (by another node, or before a
    /// crash) comes back as it was (`recorded: false`), and nothing else happens for it.
    /// A tick with a run (outcome `Started`) submits it in the same transaction, so a
    /// tick and its run are committed together or not at all; a run refused (its
    /// pipeline disabled or gone, its workspace gone, a run with no step) is recorded as
    /// a `Failed` tick saying why. Each schedule's last tick and next tick move on with
    /// its latest tick of the batch. `Err` only when the store failed: nothing is
    /// recorded then, and the ticks stay due.
    async fn record_fires(&self, ticks: Vec<NewTick>) -> Result<Vec<FireRecorded>>;

    /// The ticks a schedule handled, newest first, at most `limit`.
    async fn schedule_fires(&self, schedule_id: &str, limit: u32) -> Result<Vec<ScheduleFire>>;

    /// Per schedule of `schedule_ids`, how many of the runs it started are not over:
    /// what its overlap policy counts. A schedule with none has no entry.
    async fn active_schedule_runs(&self, schedule_ids: &[String]) -> Result<HashMap<String, u32>>;

    /// Queued ticks of active schedules with their schedules, oldest first, at most
    /// `limit`.
    async fn queued_fires(&self, limit: u32) -> Result<Vec<QueuedFire>>;

    /// Starts a queued tick: submits `run` and marks the tick started, in one
    /// transaction; `None` when the tick is no longer queued (started by another node,
    /// or its schedule deleted).
    async fn start_queued_fire(
        &self,
        workspace: SourceId,
        schedule_id: &str,
        fire_time: DateTime<Utc>,
        run: NewPipelineRun,
    ) -> Result<Option<ScheduleFire>>;

    /// Moves a schedule's next tick to `next_fire_at` without firing, if it still has
    /// `etag`.
    async fn advance_schedule(&self, schedule_id: &str, etag: &str, next_fire_at: Option<DateTime<Utc>>) -> Result<()>;

    // The watcher of change schedules: polls, the objects it has seen, and the changes
    // it records (see [`schedules`]).

    /// Active change schedules whose next poll is at or before `now`, the longest due
    /// first, at most `limit`.
    async fn due_polls(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<PipelineSchedule>>;

    /// The earliest next poll of every active change schedule and every datastore watch:
    /// what the watcher sleeps until.
    async fn earliest_poll(&self) -> Result<Option<DateTime<Utc>>>;

    /// Records how a poll went on its change schedule or datastore watch: when, the next
    /// poll (unless the schedule was disabled meanwhile), and its error or the end of one.
    async fn record_poll(&self, poll: PollDone) -> Result<()>;

    /// Every object the watcher has seen, by path.
    async fn seen_objects(&self, watcher_id: &str) -> Result<Vec<SeenObject>>;

    /// Records objects as seen without firing (what was there before the schedule
    /// watched), replacing what was recorded of them.
    async fn record_seen(&self, watcher_id: &str, objects: Vec<SeenObject>) -> Result<()>;

    /// Forgets objects the watcher saw that are gone: one that comes back is new.
    async fn forget_seen(&self, watcher_id: &str, paths: Vec<String>) -> Result<()>;

    /// Records a change found by a change schedule's watcher, once: its seen row moves
    /// from `change.previous` to the new version only if it still has the previous one
    /// (else nothing happens and `fire` is `None`). In the same transaction the change's
    /// record is written and, with `run`, the run submitted: a refused submission
    /// records nothing and is the error.
    async fn record_change(
        &self,
        workspace: SourceId,
        change: NewChange,
        run: Option<NewPipelineRun>,
    ) -> Result<ChangeRecorded>;
    /// Prunes the record of ticks of the next `schedules` schedules by id after `after`
    /// (`""` for the first): each keeps its latest `keep` ticks, its queued ticks and
    /// the started ones whose run is not over; at most `limit` rows go, in one short
    /// transaction. A batch that deleted `limit` rows may have left some: walk the same
    /// schedules again before moving on.
    async fn prune_fires(&self, after: &str, schedules: u32, keep: u32, limit: u32) -> Result<PrunedFires>;

    // Datastore watches: folders whose new and changed files are published as
    // `BlobCreated` events into a custom topic (see [`watches`]). They poll through the
    // watcher's calls above (`earliest_poll`, `record_poll`, the seen objects).

    /// Creates a watch on a datastore of the workspace (`Conflict` when the datastore has
    /// one of that name, ignoring case; `NotFound` when the topic is gone).
    async fn create_datastore_watch(&self, workspace: SourceId, new: NewDatastoreWatch) -> Result<DatastoreWatch>;

    async fn datastore_watch(&self, workspace: SourceId, datastore: &str, name: &str) -> Result<DatastoreWatch>;

    /// The watches of a datastore, by name.
    async fn list_datastore_watches(&self, workspace: SourceId, datastore: &str) -> Result<Vec<DatastoreWatch>>;

    /// Deletes a watch with what it has seen (the events it published stay).
    async fn delete_datastore_watch(&self, workspace: SourceId, datastore: &str, name: &str) -> Result<()>;

    /// Watches whose next poll is at or before `now`, the longest due first, at most
    /// `limit`.
    async fn due_watches(&self, now: DateTime<Utc>, limit: u32) -> Result<Vec<DatastoreWatch>>;

    /// Publishes a file's arrival once: its seen row moves from `arrival.previous` to the
    /// new version only if it still has the previous one, and in the same transaction
    /// the event is appended to the topic's log (its sequence is returned). `None` when
    /// the row had moved already (another node, or an earlier pass, published it).
    async fn record_arrival(&self, arrival: NewArrival) -> Result<Option<u64>>;

    // Event subscriptions and the fan-out that records which events each one matches.

    /// Creates or replaces a subscription of a source; returns it and whether it is new.
    async fn put_subscription(
        &self,
        source: SourceId,
        put: SubscriptionPut,
        if_match: Option<String>,
    ) -> Result<(EventSubscription, bool)>;

    async fn subscription(&self, source: SourceId, name: &str) -> Result<EventSubscription>;

    /// The subscriptions of a source, or of every source, by name.
    async fn list_subscriptions(&self, source: Option<SourceId>) -> Result<Vec<EventSubscription>>;

    /// Replaces a subscription's signing secret; the old one keeps signing until
    /// `grace_until`.
    async fn rotate_subscription_secret(
        &self,
        source: SourceId,
        name: &str,
        salt: &str,
        grace_until: DateTime<Utc>,
    ) -> Result<EventSubscription>;

    /// Moves a subscription whose definition still has `etag` from provisioning state
    /// `from` to `to`; returns it, or `None` when it is gone, was replaced (another etag)
    /// or is not in `from`. Becoming `Succeeded` also moves its start to the source's last
    /// sequence: it receives the events published after it became active. Bumps the
    /// subscriptions version.
    async fn transition_subscription(
        &self,
        id: SubscriptionId,
        etag: &str,
        from: ProvisioningState,
        to: ProvisioningState,
    ) -> Result<Option<EventSubscription>>;

    async fn delete_subscription(&self, source: SourceId, name: &str, if_match: Option<String>) -> Result<()>;

    /// Removes the subscriptions that expired at or before `now`; returns how many.
    async fn delete_expired_subscriptions(&self, now: DateTime<Utc>) -> Result<u64>;

    /// A number that changes whenever any subscription is created, replaced or deleted.
    async fn subscriptions_version(&self) -> Result<u64>;

    /// How far the fan-out has routed a source's log.
    async fn fanout_cursor(&self, source: SourceId) -> Result<u64>;

    /// Records the matches of a stretch of a log and moves the cursor, in one
    /// transaction; `Conflict` if the cursor is no longer `from_sequence`.
    async fn record_matches(&self, batch: RoutedBatch) -> Result<()>;

    /// The events a subscription matched, after a sequence number, oldest first.
    async fn subscription_matches(
        &self,
        subscription: SubscriptionId,
        after: u64,
        limit: u32,
    ) -> Result<Vec<StoredEvent>>;

    // Delivery: claiming due deliveries with a lease, recording attempts, dead letters.

    /// Claims up to `limit` pending deliveries that are due at `now` and not leased,
    /// leasing them until `lease_until`; the longest due first. Only deliveries of
    /// subscriptions in provisioning state `Succeeded` are claimed: one awaiting or
    /// failing its validation handshake keeps its backlog.
    async fn claim_deliveries(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueDelivery>>;

    /// Gives claimed deliveries back without an attempt, due again at `due_at` (the
    /// endpoint is busy or on probation).
    async fn release_deliveries(
        &self,
        subscription: SubscriptionId,
        sequences: Vec<u64>,
        due_at: DateTime<Utc>,
    ) -> Result<()>;

    /// Records attempts and moves their deliveries on (delivered, retry later, dead), in
    /// one transaction.
    async fn record_attempts(&self, attempts: Vec<AttemptRecord>) -> Result<()>;

    /// The latest attempts for a subscription, newest first.
    async fn delivery_attempts(&self, subscription: SubscriptionId, limit: u32) -> Result<Vec<Attempt>>;

    async fn delivery_stats(&self, subscription: SubscriptionId) -> Result<DeliveryStats>;

    /// Dead-lettered events of a subscription that the query selects, oldest first.
    async fn dead_letters(&self, subscription: SubscriptionId, query: DeadLetterQuery) -> Result<Vec<DeadLetter>>;

    /// Makes the dead-lettered events the filter selects pending again, due now, with
    /// their attempts reset; returns how many.
    async fn redeliver(&self, subscription: SubscriptionId, filter: DeadLetterFilter) -> Result<u64>;

    /// Deletes the dead-lettered events the filter selects; returns how many.
    async fn purge_dead_letters(&self, subscription: SubscriptionId, filter: DeadLetterFilter) -> Result<u64>;

    /// Dead letters of a subscription not yet written to its dead-letter destination,
    /// oldest first, at most `limit`. A redelivered event that dies again is listed again.
    async fn unexported_dead_letters(&self, subscription: SubscriptionId, limit: u32) -> Result<Vec<DeadLetter>>;

    /// Marks dead letters as written to the subscription's dead-letter destination.
    async fn mark_dead_letters_exported(&self, subscription: SubscriptionId, sequences: Vec<u64>) -> Result<()>;

    // Leases with fencing tokens: work that one node at a time does (a singleton task in
    // a cluster). Nodes pass their own clock's `now`; leases should be long compared to
    // the clock skew between nodes.

    /// Takes or renews the named lease for `holder` until `until`, if it is free (never
    /// taken, or released), expired at `now`, or already held by `holder`; returns its
    /// fencing token, or `None` while another holder's lease runs.
    ///
    /// **Invariant:** the token increases every time the lease changes hands (a release
    /// ends a tenure too, so taking it back gives a new token), and never on renewal.
    async fn acquire_lease(
        &self,
        name: &str,
        holder: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<Option<u64>>;

    /// Gives the lease up if `holder` holds it with `token`; does nothing otherwise (it
    /// has changed hands already).
    async fn release_lease(&self, name: &str, holder: &str, token: u64) -> Result<()>;

    /// Whether `token` is still the named lease's token: nobody took the lease over and
    /// it was not released. Check before acting on the lease's behalf. Expiry alone does
    /// not end a token (it takes another holder to), and a check cannot stop a takeover
    /// that follows it: keep leases long compared to the work done between checks.
    async fn lease_is_current(&self, name: &str, token: u64) -> Result<bool>;

    /// The fingerprint of the server secret this database was set up with: the one
    /// recorded, or `ours`, recorded now if none was (the first node to start decides).
    /// Nodes sharing a database must share the secret; each compares at start-up.
    async fn secret_fingerprint(&self, ours: &str) -> Result<String>;

    /// The sizes of the store's files and whether its disk is full, for `/healthz` and
    /// `/metrics`. Cheap: no scan of the data.
    async fn storage(&self) -> Result<StorageStats>;

    /// A counter that changes after every commit that appended events: wait on it to
    /// follow logs without polling.
    fn appended(&self) -> watch::Receiver<u64>;

    /// Finishes queued writes and closes the database. Writes after this fail with
    /// [`StoreError::Closed`].
    async fn close(&self);
}
