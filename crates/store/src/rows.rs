//! Store types from database rows, written once for both backends.
//!
//! Reads run through [`all`] and [`optional`], on either backend's pool or connection. A
//! mapper reads a row through [`StoredRow`]: both drivers decode text, integers, reals
//! and flags alike, and each backend says how it keeps times ([`TimeColumns`]). What a
//! column holds is checked here (no negative sequences, known kinds and roles), so a
//! corrupt row is the same error on either backend.

use chrono::{DateTime, Utc};
use mlgrid_core::EventSchema;
use mlgrid_core::ml::Tags;
use mlgrid_core::resource::SourceKind;
use mlgrid_core::retention::{LogEntry, RetentionSpan};
use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Executor, IntoArguments, Row, Type};

use crate::datastores::*;
use crate::delivery::*;
use crate::error::{Result, StoreError, db};
use crate::lifecycle::*;
use crate::model::*;
use crate::pipelines::*;
use crate::schedules::*;
use crate::subscriptions::{EventSubscription, SubscriptionId};

/// How a backend keeps times: SQLite as RFC 3339 TEXT, PostgreSQL as TIMESTAMPTZ.
pub(crate) trait TimeColumns {
    fn time(&self, column: &str) -> Result<DateTime<Utc>>;
    fn optional_time(&self, column: &str) -> Result<Option<DateTime<Utc>>>;
}

/// A row of either backend, read column by column.
pub(crate) trait StoredRow: TimeColumns {
    fn text(&self, column: &str) -> Result<String>;
    fn optional_text(&self, column: &str) -> Result<Option<String>>;
    fn int(&self, column: &str) -> Result<i64>;
    fn optional_int(&self, column: &str) -> Result<Option<i64>>;
    fn real(&self, column: &str) -> Result<f64>;
    fn flag(&self, column: &str) -> Result<bool>;
}

impl<R> StoredRow for R
where
    R: Row + TimeColumns,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> f64: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> bool: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &str) -> Result<String> {
        decode(self, column)
    }

    fn optional_text(&self, column: &str) -> Result<Option<String>> {
        decode(self, column)
    }

    fn int(&self, column: &str) -> Result<i64> {
        decode(self, column)
    }

    fn optional_int(&self, column: &str) -> Result<Option<i64>> {
        decode(self, column)
    }

    fn real(&self, column: &str) -> Result<f64> {
        decode(self, column)
    }

    fn flag(&self, column: &str) -> Result<bool> {
        decode(self, column)
    }
}

/// A column's value as the driver decodes it.
pub(crate) fn decode<'r, R, T>(row: &'r R, column: &str) -> Result<T>
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    T: Decode<'r, R::Database> + Type<R::Database>,
{
    row.try_get(column).map_err(StoreError::backend)
}

/// Every row a query returns, mapped: reads on either backend end here.
pub(crate) async fn all<'q, 'c, DB, A, T>(
    exec: impl Executor<'c, Database = DB>,
    query: Query<'q, DB, A>,
    map: fn(&DB::Row) -> Result<T>,
) -> Result<Vec<T>>
where
    DB: Database,
    A: 'q + IntoArguments<DB>,
{
    db(query.fetch_all(exec).await)?.iter().map(map).collect()
}

/// The row a query returns, if any, mapped.
pub(crate) async fn optional<'q, 'c, DB, A, T>(
    exec: impl Executor<'c, Database = DB>,
    query: Query<'q, DB, A>,
    map: fn(&DB::Row) -> Result<T>,
) -> Result<Option<T>>
where
    DB: Database,
    A: 'q + IntoArguments<DB>,
{
    db(query.fetch_optional(exec).await)?.as_ref().map(map).transpose()
}

fn unsigned(row: &impl StoredRow, column: &str) -> Result<u64> {
    let n = row.int(column)?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{column} is negative: {n}")))
}

fn small(row: &impl StoredRow, column: &str) -> Result<u32> {
    let n = row.int(column)?;
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{column} out of range: {n}")))
}

fn optional_u16(row: &impl StoredRow, column: &str) -> Result<Option<u16>> {
    Ok(row.optional_int(column)?.and_then(|v| u16::try_from(v).ok()))
}

fn source_kind(kind: &str) -> Result<SourceKind> {
    match kind {
        "workspace" => Ok(SourceKind::Workspace),
        "topic" => Ok(SourceKind::Topic),
        other => Err(StoreError::Corrupt(format!("source kind `{other}`"))),
    }
}

fn role(row: &impl StoredRow) -> Result<Role> {
    let role = row.text("role")?;
    Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role `{role}`")))
}

fn tags(row: &impl StoredRow, column: &str) -> Result<Tags> {
    json(row, column)
}

/// A column holding JSON, read as the type it was written from.
fn json<T: serde::de::DeserializeOwned>(row: &impl StoredRow, column: &str) -> Result<T> {
    let text = row.text(column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn schema(row: &impl StoredRow) -> Result<EventSchema> {
    let schema = row.text("schema")?;
    EventSchema::parse(&schema).ok_or_else(|| StoreError::Corrupt(format!("event schema `{schema}`")))
}

pub(crate) fn source_from_row(row: &impl StoredRow) -> Result<Source> {
    Ok(Source {
        id: SourceId(row.int("id")?),
        kind: source_kind(&row.text("kind")?)?,
        name: row.text("name")?,
        subscription_id: row.text("subscription_id")?,
        resource_group: row.text("resource_group")?,
        created_at: row.time("created_at")?,
        last_sequence: unsigned(row, "last_sequence")?,
        retention: SourceRetention {
            time: match row.optional_int("retention_seconds")? {
                Some(seconds) => Some(
                    RetentionSpan::from_seconds(u64::try_from(seconds).unwrap_or(0))
                        .map_err(|e| StoreError::Corrupt(format!("retention_seconds {seconds}: {e}")))?,
                ),
                None => None,
            },
            max_bytes: row.optional_int("retention_bytes")?.map(|n| n.max(0) as u64),
        },
        pruned_through: unsigned(row, "pruned_through")?,
        stored_bytes: row.int("stored_bytes")?.max(0) as u64,
    })
}

pub(crate) fn topic_key_from_row(row: &impl StoredRow) -> Result<TopicKey> {
    let name = row.text("key_name")?;
    Ok(TopicKey {
        name: KeyName::parse(&name).ok_or_else(|| StoreError::Corrupt(format!("key name `{name}`")))?,
        salt: row.text("salt")?,
        hash: row.text("key_hash")?,
    })
}

pub(crate) fn principal_from_row(row: &impl StoredRow) -> Result<Principal> {
    Ok(Principal {
        id: row.int("id")?,
        name: row.text("name")?,
        created_at: row.time("created_at")?,
    })
}

pub(crate) fn principal_key_from_row(row: &impl StoredRow) -> Result<(Principal, ApiKeyHash)> {
    Ok((
        principal_from_row(row)?,
        ApiKeyHash {
            key_id: row.text("key_id")?,
            hash: row.text("key_hash")?,
        },
    ))
}

pub(crate) fn principal_summary_from_row(row: &impl StoredRow) -> Result<PrincipalSummary> {
    Ok(PrincipalSummary {
        principal: principal_from_row(row)?,
        keys: unsigned(row, "keys")?,
    })
}

pub(crate) fn role_assignment_from_row(row: &impl StoredRow) -> Result<RoleAssignment> {
    Ok(RoleAssignment {
        principal_id: row.int("principal_id")?,
        source_id: row.optional_int("source_id")?.map(SourceId),
        role: role(row)?,
    })
}

pub(crate) fn role_grant_from_row(row: &impl StoredRow) -> Result<RoleGrant> {
    let source = match row.optional_text("source_kind")? {
        None => None,
        Some(kind) => Some((source_kind(&kind)?, row.text("source_name")?)),
    };
    Ok(RoleGrant {
        id: row.int("id")?,
        principal: row.text("principal")?,
        source,
        role: role(row)?,
        created_at: row.time("created_at")?,
    })
}

pub(crate) fn stored_event_from_row(row: &impl StoredRow) -> Result<StoredEvent> {
    Ok(StoredEvent {
        sequence: unsigned(row, "sequence")?,
        id: row.text("event_id")?,
        schema: schema(row)?,
        event_type: row.text("event_type")?,
        subject: row.text("subject")?,
        published_at: row.time("published_at")?,
        body: row.text("body")?,
    })
}

pub(crate) fn experiment_from_row(row: &impl StoredRow) -> Result<Experiment> {
    Ok(Experiment {
        id: row.text("id")?,
        name: row.text("name")?,
        created_at: row.time("created_at")?,
    })
}

pub(crate) fn run_from_row(row: &impl StoredRow) -> Result<Run> {
    Ok(Run {
        run_id: row.text("run_id")?,
        experiment_id: row.text("experiment_id")?,
        experiment_name: row.text("experiment_name")?,
        parent_run_id: row.optional_text("parent_run_id")?,
        run_type: row.optional_text("run_type")?,
        status: row.text("status")?.parse().map_err(StoreError::Corrupt)?,
        tags: tags(row, "tags")?,
        properties: tags(row, "properties")?,
        error: row.optional_text("error")?,
        created_at: row.time("created_at")?,
        start_time: row.optional_time("start_time")?,
        end_time: row.optional_time("end_time")?,
        etag: row.text("etag")?,
    })
}

pub(crate) fn metric_from_row(row: &impl StoredRow) -> Result<Metric> {
    Ok(Metric {
        name: row.text("name")?,
        value: row.real("value")?,
        step: unsigned(row, "step")?,
        logged_at: row.time("logged_at")?,
    })
}

pub(crate) fn model_from_row(row: &impl StoredRow) -> Result<Model> {
    Ok(Model {
        name: row.text("name")?,
        version: unsigned(row, "version")?,
        path: row.optional_text("path")?,
        description: row.optional_text("description")?,
        tags: tags(row, "tags")?,
        properties: tags(row, "properties")?,
        archived: row.flag("archived")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        etag: row.text("etag")?,
    })
}

pub(crate) fn deployment_from_row(row: &impl StoredRow) -> Result<Deployment> {
    let models = row.text("models")?;
    let models = if models.is_empty() {
        Vec::new()
    } else {
        models
            .split(',')
            .map(|m| m.parse().map_err(StoreError::Corrupt))
            .collect::<Result<_>>()?
    };
    Ok(Deployment {
        name: row.text("name")?,
        compute_type: row.text("compute_type")?.parse().map_err(StoreError::Corrupt)?,
        models,
        tags: tags(row, "tags")?,
        properties: tags(row, "properties")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        etag: row.text("etag")?,
    })
}

pub(crate) fn dataset_from_row(row: &impl StoredRow) -> Result<Dataset> {
    Ok(Dataset {
        name: row.text("name")?,
        version: unsigned(row, "version")?,
        path: row.text("path")?,
        description: row.optional_text("description")?,
        tags: tags(row, "tags")?,
        created_at: row.time("created_at")?,
        etag: row.text("etag")?,
    })
}

/// A subscription, its definition parsed here once: every reader gets it typed.
/// A subscription of a list, unless its stored definition is one this version cannot
/// read: that one is logged and left out, so that it does not stop the delivery of every
/// other (reading it alone says `Corrupt`).
pub(crate) fn listed_subscription_from_row(row: &impl StoredRow) -> Result<Option<EventSubscription>> {
    match subscription_from_row(row) {
        Ok(subscription) => Ok(Some(subscription)),
        Err(StoreError::Corrupt(error)) => {
            tracing::error!(%error, "leaving out an event subscription this version cannot read");
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

pub(crate) fn subscription_from_row(row: &impl StoredRow) -> Result<EventSubscription> {
    let id = SubscriptionId(row.int("id")?);
    let name = row.text("name")?;
    let spec = serde_json::from_str(&row.text("spec")?)
        .map_err(|e| StoreError::Corrupt(format!("the definition of event subscription {id} (`{name}`): {e}")))?;
    let provisioning_state = row.text("provisioning_state")?.parse().map_err(|e| {
        StoreError::Corrupt(format!(
            "the provisioning state of event subscription {id} (`{name}`): {e}"
        ))
    })?;
    Ok(EventSubscription {
        id,
        source_id: SourceId(row.int("source_id")?),
        name,
        spec,
        provisioning_state,
        expires_at: row.optional_time("expires_at")?,
        start_sequence: unsigned(row, "start_sequence")?,
        pruned_through: unsigned(row, "pruned_through")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        etag: row.text("etag")?,
        secret_salt: row.optional_text("secret_salt")?.unwrap_or_default(),
        previous_salt: match (
            row.optional_text("previous_salt")?,
            row.optional_time("previous_until")?,
        ) {
            (Some(salt), Some(until)) => Some((salt, until)),
            _ => None,
        },
    })
}

pub(crate) fn due_delivery_from_row(row: &impl StoredRow) -> Result<DueDelivery> {
    Ok(DueDelivery {
        subscription_id: SubscriptionId(row.int("subscription_id")?),
        sequence: unsigned(row, "sequence")?,
        attempts: small(row, "attempts")?,
        schema: schema(row)?,
        published_at: row.time("published_at")?,
        body: row.text("body")?,
    })
}

pub(crate) fn attempt_from_row(row: &impl StoredRow) -> Result<Attempt> {
    Ok(Attempt {
        attempted_at: row.time("attempted_at")?,
        events: small(row, "events")?,
        first_sequence: unsigned(row, "first_sequence")?,
        status_code: optional_u16(row, "status_code")?,
        latency_ms: row.real("latency_ms")?,
        outcome: row.text("outcome")?,
        error: row.optional_text("error")?,
        response_excerpt: row.optional_text("response_excerpt")?,
    })
}

pub(crate) fn dead_letter_from_row(row: &impl StoredRow) -> Result<DeadLetter> {
    Ok(DeadLetter {
        sequence: unsigned(row, "sequence")?,
        schema: schema(row)?,
        body: row.text("body")?,
        dead_letter_reason: row.text("dead_letter_reason")?,
        delivery_attempts: small(row, "attempts")?,
        last_delivery_outcome: row.optional_text("last_outcome")?,
        last_http_status_code: optional_u16(row, "last_status")?,
        publish_time: row.time("published_at")?,
        last_delivery_attempt_time: row.optional_time("last_attempt_at")?,
    })
}

pub(crate) fn log_entry_from_row(row: &impl StoredRow) -> Result<LogEntry> {
    Ok(LogEntry {
        sequence: unsigned(row, "sequence")?,
        published_at: row.time("published_at")?,
        bytes: unsigned(row, "bytes")?,
    })
}

pub(crate) fn pipeline_from_row(row: &impl StoredRow) -> Result<PublishedPipeline> {
    Ok(PublishedPipeline {
        id: row.text("id")?,
        name: row.text("name")?,
        version: row.text("version")?,
        description: row.text("description")?,
        definition: row.text("definition")?,
        enabled: row.flag("enabled")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        etag: row.text("etag")?,
    })
}

pub(crate) fn pipeline_endpoint_from_row(row: &impl StoredRow) -> Result<PipelineEndpoint> {
    Ok(PipelineEndpoint {
        name: row.text("name")?,
        description: row.text("description")?,
        default_pipeline_id: row.text("default_pipeline_id")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        etag: row.text("etag")?,
    })
}

/// A pipeline run without its steps (read apart): a run's columns with its
/// experiment's name, and the pipeline run's own.
pub(crate) fn pipeline_run_from_row(row: &impl StoredRow) -> Result<PipelineRun> {
    Ok(PipelineRun {
        run: run_from_row(row)?,
        pipeline_id: row.text("pipeline_id")?,
        description: row.optional_text("description")?,
        parameters: json(row, "parameters")?,
        data_paths: json(row, "data_paths")?,
        continue_on_step_failure: row.flag("continue_on_step_failure")?,
        steps: Vec::new(),
    })
}

pub(crate) fn step_run_from_row(row: &impl StoredRow) -> Result<StepRun> {
    let exit_code = row
        .optional_int("exit_code")?
        .map(|code| i32::try_from(code).map_err(|_| StoreError::Corrupt(format!("exit_code out of range: {code}"))))
        .transpose()?;
    Ok(StepRun {
        name: row.text("name")?,
        run_id: row.text("run_id")?,
        state: row.text("state")?.parse().map_err(StoreError::Corrupt)?,
        depends_on: json(row, "depends_on")?,
        attempts: small(row, "attempts")?,
        retries: small(row, "retries")?,
        ready_at: row.optional_time("ready_at")?,
        started_at: row.optional_time("started_at")?,
        finished_at: row.optional_time("finished_at")?,
        exit_code,
        error: row.optional_text("error")?,
        reuse_key: row.optional_text("reuse_key")?,
        reused_from: row.optional_text("reused_from")?,
        cancel_requested: row.flag("cancel_requested")?,
    })
}

/// A step with the pipeline run it belongs to.
pub(crate) fn run_step_from_row(row: &impl StoredRow) -> Result<(String, StepRun)> {
    Ok((row.text("pipeline_run_id")?, step_run_from_row(row)?))
}

/// A claimed step: its row with its pipeline run's assignment and experiment.
pub(crate) fn claimed_step_from_row(row: &impl StoredRow) -> Result<ClaimedStep> {
    let step = step_run_from_row(row)?;
    Ok(ClaimedStep {
        workspace: SourceId(row.int("source_id")?),
        pipeline_run_id: row.text("pipeline_run_id")?,
        pipeline_id: row.text("pipeline_id")?,
        experiment_name: row.text("experiment_name")?,
        parameters: json(row, "parameters")?,
        data_paths: json(row, "data_paths")?,
        lease: crate::pipeline_writes::lease_of(&step),
        step,
    })
}

pub(crate) fn datastore_from_row(row: &impl StoredRow) -> Result<StoredDatastore> {
    let kind = row.text("kind")?;
    let credentials = row.text("credentials")?;
    Ok(StoredDatastore {
        name: row.text("name")?,
        kind: DatastoreKind::parse(&kind).ok_or_else(|| StoreError::Corrupt(format!("datastore kind `{kind}`")))?,
        settings: json(row, "settings")?,
        credentials: CredentialSource::parse(&credentials)
            .ok_or_else(|| StoreError::Corrupt(format!("datastore credentials `{credentials}`")))?,
        secret: row.optional_text("secret")?.map(SealedSecret),
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        etag: row.text("etag")?,
    })
}

// Schedules and their fires.

pub(crate) fn schedule_from_row(row: &impl StoredRow) -> Result<PipelineSchedule> {
    let recurrence = row
        .optional_text("recurrence")?
        .map(|text| serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("recurrence: {e}"))))
        .transpose()?;
    let kind = ScheduleKind::parse(&row.text("kind")?)?;
    let watch = match kind {
        ScheduleKind::Time => None,
        ScheduleKind::Change => {
            let polling = row.optional_int("polling_seconds")?.unwrap_or_default();
            Some(ChangeWatch {
                datastore: row.optional_text("datastore")?.unwrap_or_default(),
                path: row.optional_text("path_pattern")?.unwrap_or_default(),
                recursive: row.flag("recursive")?,
                polling_seconds: u32::try_from(polling)
                    .map_err(|_| StoreError::Corrupt(format!("polling_seconds {polling}")))?,
                data_path_parameter: row.optional_text("data_path_parameter")?,
                since: match row.optional_time("watch_since")? {
                    Some(since) => since,
                    None => row.time("created_at")?,
                },
            })
        }
    };
    let policy = |column: &str| -> Result<String> { Ok(format!("\"{}\"", row.text(column)?)) };
    let corrupt = |column: &'static str| move |e: serde_json::Error| StoreError::Corrupt(format!("{column}: {e}"));
    let max_concurrent = row.int("max_concurrent")?;
    Ok(PipelineSchedule {
        workspace: SourceId(row.int("source_id")?),
        id: row.text("id")?,
        name: row.text("name")?,
        kind,
        pipeline_id: row.text("pipeline_id")?,
        experiment_name: row.text("experiment_name")?,
        recurrence,
        watch,
        parameters: json(row, "parameters")?,
        continue_on_step_failure: row.flag("continue_on_step_failure")?,
        status: ScheduleStatus::parse(&row.text("status")?)?,
        misfire: serde_json::from_str(&policy("misfire_policy")?).map_err(corrupt("misfire_policy"))?,
        concurrency: mlgrid_core::schedule::Concurrency {
            overlap_policy: serde_json::from_str(&policy("overlap_policy")?).map_err(corrupt("overlap_policy"))?,
            max_concurrent: u32::try_from(max_concurrent)
                .ok()
                .and_then(std::num::NonZeroU32::new)
                .ok_or_else(|| StoreError::Corrupt(format!("max_concurrent {max_concurrent}")))?,
        },
        next_fire_at: row.optional_time("next_fire_at")?,
        last_poll_at: row.optional_time("last_poll_at")?,
        next_poll_at: row.optional_time("next_poll_at")?,
        poll_failures: u32::try_from(row.int("poll_failures")?).unwrap_or(u32::MAX),
        last_fire_at: row.optional_time("last_fire_at")?,
        last_run_id: row.optional_text("last_run_id")?,
        last_error: row.optional_text("last_error")?,
        created_at: row.time("created_at")?,
        updated_at: row.time("updated_at")?,
        etag: row.text("etag")?,
    })
}

pub(crate) fn fire_from_row(row: &impl StoredRow) -> Result<ScheduleFire> {
    Ok(ScheduleFire {
        schedule_id: row.text("schedule_id")?,
        fire_time: row.time("fire_time")?,
        outcome: FireOutcome::parse(&row.text("outcome")?)?,
        run_id: row.optional_text("run_id")?,
        reason: row.optional_text("reason")?,
        path: row.optional_text("path")?,
        recorded_at: row.time("recorded_at")?,
    })
}

pub(crate) fn seen_from_row(row: &impl StoredRow) -> Result<SeenObject> {
    let size = row.int("size")?;
    Ok(SeenObject {
        path: row.text("path")?,
        version: row.text("version")?,
        size: u64::try_from(size).map_err(|_| StoreError::Corrupt(format!("object size {size}")))?,
        last_modified: row.time("last_modified")?,
    })
}

pub(crate) fn queued_fire_from_row(row: &impl StoredRow) -> Result<QueuedFire> {
    Ok(QueuedFire {
        schedule: schedule_from_row(row)?,
        fire_time: row.time("fire_time")?,
    })
}

pub(crate) fn watch_from_row(row: &impl StoredRow) -> Result<crate::watches::DatastoreWatch> {
    let polling = row.int("polling_seconds")?;
    let published = row.int("events_published")?;
    Ok(crate::watches::DatastoreWatch {
        workspace: SourceId(row.int("source_id")?),
        workspace_name: row.text("workspace_name")?,
        id: row.text("id")?,
        name: row.text("name")?,
        datastore: row.text("datastore")?,
        path: row.text("path")?,
        recursive: row.flag("recursive")?,
        polling_seconds: u32::try_from(polling)
            .map_err(|_| StoreError::Corrupt(format!("polling_seconds {polling}")))?,
        topic: SourceId(row.int("topic_id")?),
        topic_name: row.text("topic_name")?,
        next_poll_at: row.time("next_poll_at")?,
        last_poll_at: row.optional_time("last_poll_at")?,
        poll_failures: u32::try_from(row.int("poll_failures")?).unwrap_or(u32::MAX),
        last_error: row.optional_text("last_error")?,
        last_event_at: row.optional_time("last_event_at")?,
        events_published: u64::try_from(published)
            .map_err(|_| StoreError::Corrupt(format!("events_published {published}")))?,
        created_at: row.time("created_at")?,
        etag: row.text("etag")?,
    })
}
