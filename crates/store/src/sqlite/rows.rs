//! Mapping SQLite rows to store types.

use chrono::{DateTime, Utc};
use mlgrid_core::EventSchema;
use mlgrid_core::ml::Tags;
use mlgrid_core::resource::SourceKind;
use mlgrid_core::time::parse_rfc3339;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::delivery::*;
use crate::error::{Result, StoreError};
use crate::lifecycle::*;
use crate::model::*;
use crate::subscriptions::EventSubscription;

/// A driver result as a store result.
pub(super) fn db<T>(result: std::result::Result<T, sqlx::Error>) -> Result<T> {
    result.map_err(StoreError::backend)
}

pub(super) fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column).map_err(StoreError::backend)
}

fn time(row: &SqliteRow, column: &str) -> Result<DateTime<Utc>> {
    let text: String = get(row, column)?;
    parse_rfc3339(&text).map_err(|_| StoreError::Corrupt(format!("{column} `{text}` is not a time")))
}

fn sequence(n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative sequence {n}")))
}

fn source_kind(kind: &str) -> Result<SourceKind> {
    match kind {
        "workspace" => Ok(SourceKind::Workspace),
        "topic" => Ok(SourceKind::Topic),
        other => Err(StoreError::Corrupt(format!("source kind `{other}`"))),
    }
}

pub(super) fn source_from_row(row: &SqliteRow) -> Result<Source> {
    let kind: String = get(row, "kind")?;
    Ok(Source {
        id: get(row, "id")?,
        kind: source_kind(&kind)?,
        name: get(row, "name")?,
        subscription_id: get(row, "subscription_id")?,
        resource_group: get(row, "resource_group")?,
        created_at: time(row, "created_at")?,
        last_sequence: sequence(get(row, "last_sequence")?)?,
    })
}

pub(super) fn topic_key_from_row(row: &SqliteRow) -> Result<TopicKey> {
    let name: String = get(row, "key_name")?;
    Ok(TopicKey {
        name: KeyName::parse(&name).ok_or_else(|| StoreError::Corrupt(format!("key name `{name}`")))?,
        salt: get(row, "salt")?,
        hash: get(row, "key_hash")?,
    })
}

pub(super) fn principal_key_from_row(row: &SqliteRow) -> Result<(Principal, ApiKeyHash)> {
    Ok((
        principal_from_row(row)?,
        ApiKeyHash {
            key_id: get(row, "key_id")?,
            hash: get(row, "key_hash")?,
        },
    ))
}

pub(super) fn role_assignment_from_row(row: &SqliteRow) -> Result<RoleAssignment> {
    let role: String = get(row, "role")?;
    Ok(RoleAssignment {
        principal_id: get(row, "principal_id")?,
        source_id: get(row, "source_id")?,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role `{role}`")))?,
    })
}

pub(super) fn stored_event_from_row(row: &SqliteRow) -> Result<StoredEvent> {
    Ok(StoredEvent {
        sequence: sequence(get(row, "sequence")?)?,
        id: get(row, "event_id")?,
        schema: schema(row)?,
        event_type: get(row, "event_type")?,
        subject: get(row, "subject")?,
        published_at: time(row, "published_at")?,
        body: get(row, "body")?,
    })
}

pub(super) fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

fn tags(row: &SqliteRow, column: &str) -> Result<Tags> {
    let text: String = get(row, column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn optional_time(row: &SqliteRow, column: &str) -> Result<Option<DateTime<Utc>>> {
    let text: Option<String> = get(row, column)?;
    text.map(|t| parse_rfc3339(&t).map_err(|_| StoreError::Corrupt(format!("{column} `{t}`"))))
        .transpose()
}

fn version(row: &SqliteRow) -> Result<u64> {
    let v: i64 = get(row, "version")?;
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("version {v}")))
}

pub(super) fn experiment_from_row(row: &SqliteRow) -> Result<Experiment> {
    Ok(Experiment {
        id: get(row, "id")?,
        name: get(row, "name")?,
        created_at: time(row, "created_at")?,
    })
}

/// Selects runs with their experiment's name.
pub(super) const RUN_SELECT: &str = "SELECT r.*, e.name AS experiment_name FROM runs r \
     JOIN experiments e ON e.source_id = r.source_id AND e.id = r.experiment_id";

pub(super) fn run_from_row(row: &SqliteRow) -> Result<Run> {
    let status: String = get(row, "status")?;
    Ok(Run {
        run_id: get(row, "run_id")?,
        experiment_id: get(row, "experiment_id")?,
        experiment_name: get(row, "experiment_name")?,
        parent_run_id: get(row, "parent_run_id")?,
        run_type: get(row, "run_type")?,
        status: status.parse().map_err(StoreError::Corrupt)?,
        tags: tags(row, "tags")?,
        properties: tags(row, "properties")?,
        error: get(row, "error")?,
        created_at: time(row, "created_at")?,
        start_time: optional_time(row, "start_time")?,
        end_time: optional_time(row, "end_time")?,
        etag: get(row, "etag")?,
    })
}

pub(super) fn metric_from_row(row: &SqliteRow) -> Result<Metric> {
    let step: i64 = get(row, "step")?;
    Ok(Metric {
        name: get(row, "name")?,
        value: get(row, "value")?,
        step: step as u64,
        logged_at: time(row, "logged_at")?,
    })
}

pub(super) fn model_from_row(row: &SqliteRow) -> Result<Model> {
    Ok(Model {
        name: get(row, "name")?,
        version: version(row)?,
        path: get(row, "path")?,
        description: get(row, "description")?,
        tags: tags(row, "tags")?,
        properties: tags(row, "properties")?,
        archived: get::<bool>(row, "archived")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
        etag: get(row, "etag")?,
    })
}

pub(super) fn deployment_from_row(row: &SqliteRow) -> Result<Deployment> {
    let compute: String = get(row, "compute_type")?;
    let models: String = get(row, "models")?;
    let models = if models.is_empty() {
        Vec::new()
    } else {
        models
            .split(',')
            .map(|m| m.parse().map_err(StoreError::Corrupt))
            .collect::<Result<_>>()?
    };
    Ok(Deployment {
        name: get(row, "name")?,
        compute_type: compute.parse().map_err(StoreError::Corrupt)?,
        models,
        tags: tags(row, "tags")?,
        properties: tags(row, "properties")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
        etag: get(row, "etag")?,
    })
}

pub(super) fn dataset_from_row(row: &SqliteRow) -> Result<Dataset> {
    Ok(Dataset {
        name: get(row, "name")?,
        version: version(row)?,
        path: get(row, "path")?,
        description: get(row, "description")?,
        tags: tags(row, "tags")?,
        created_at: time(row, "created_at")?,
        etag: get(row, "etag")?,
    })
}

pub(super) fn role_grant_from_row(row: &SqliteRow) -> Result<RoleGrant> {
    let role: String = get(row, "role")?;
    let kind: Option<String> = get(row, "source_kind")?;
    let source = match kind {
        None => None,
        Some(kind) => Some((source_kind(&kind)?, get(row, "source_name")?)),
    };
    Ok(RoleGrant {
        id: get(row, "id")?,
        principal: get(row, "principal")?,
        source,
        role: Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role `{role}`")))?,
        created_at: time(row, "created_at")?,
    })
}

pub(super) fn principal_summary_from_row(row: &SqliteRow) -> Result<PrincipalSummary> {
    let keys: i64 = get(row, "keys")?;
    Ok(PrincipalSummary {
        principal: principal_from_row(row)?,
        keys: keys as u64,
    })
}

pub(super) fn principal_from_row(row: &SqliteRow) -> Result<Principal> {
    Ok(Principal {
        id: get(row, "id")?,
        name: get(row, "name")?,
        created_at: time(row, "created_at")?,
    })
}

pub(super) fn subscription_from_row(row: &SqliteRow) -> Result<EventSubscription> {
    Ok(EventSubscription {
        id: get(row, "id")?,
        source_id: get(row, "source_id")?,
        name: get(row, "name")?,
        spec: get(row, "spec")?,
        provisioning_state: get(row, "provisioning_state")?,
        expires_at: optional_time(row, "expires_at")?,
        start_sequence: sequence(get(row, "start_sequence")?)?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
        etag: get(row, "etag")?,
        secret_salt: get::<Option<String>>(row, "secret_salt")?.unwrap_or_default(),
        previous_salt: match (
            get::<Option<String>>(row, "previous_salt")?,
            optional_time(row, "previous_until")?,
        ) {
            (Some(salt), Some(until)) => Some((salt, until)),
            _ => None,
        },
    })
}

fn optional_u16(row: &SqliteRow, column: &str) -> Result<Option<u16>> {
    let value: Option<i64> = get(row, column)?;
    Ok(value.and_then(|v| u16::try_from(v).ok()))
}

fn schema(row: &SqliteRow) -> Result<EventSchema> {
    let schema: String = get(row, "schema")?;
    EventSchema::parse(&schema).ok_or_else(|| StoreError::Corrupt(format!("event schema `{schema}`")))
}

pub(super) fn due_delivery_from_row(row: &SqliteRow) -> Result<DueDelivery> {
    let attempts: i64 = get(row, "attempts")?;
    Ok(DueDelivery {
        subscription_id: get(row, "subscription_id")?,
        sequence: sequence(get(row, "sequence")?)?,
        attempts: attempts as u32,
        schema: schema(row)?,
        published_at: time(row, "published_at")?,
        body: get(row, "body")?,
    })
}

pub(super) fn attempt_from_row(row: &SqliteRow) -> Result<Attempt> {
    let events: i64 = get(row, "events")?;
    Ok(Attempt {
        attempted_at: time(row, "attempted_at")?,
        events: events as u32,
        first_sequence: sequence(get(row, "first_sequence")?)?,
        status_code: optional_u16(row, "status_code")?,
        latency_ms: get(row, "latency_ms")?,
        outcome: get(row, "outcome")?,
        error: get(row, "error")?,
        response_excerpt: get(row, "response_excerpt")?,
    })
}

pub(super) fn dead_letter_from_row(row: &SqliteRow) -> Result<DeadLetter> {
    let attempts: i64 = get(row, "attempts")?;
    Ok(DeadLetter {
        sequence: sequence(get(row, "sequence")?)?,
        schema: schema(row)?,
        body: get(row, "body")?,
        dead_letter_reason: get(row, "dead_letter_reason")?,
        delivery_attempts: attempts as u32,
        last_delivery_outcome: get(row, "last_outcome")?,
        last_http_status_code: optional_u16(row, "last_status")?,
        publish_time: time(row, "published_at")?,
        last_delivery_attempt_time: optional_time(row, "last_attempt_at")?,
    })
}
