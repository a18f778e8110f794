//! Mapping PostgreSQL rows to store types.

use chrono::{DateTime, Utc};
use mlgrid_core::EventSchema;
use mlgrid_core::ml::Tags;
use mlgrid_core::resource::SourceKind;
use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::delivery::*;
use crate::error::{Result, StoreError};
use crate::lifecycle::*;
use crate::model::*;
use crate::subscriptions::EventSubscription;

fn get<'r, T>(row: &'r PgRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(StoreError::backend)
}

fn unsigned(row: &PgRow, column: &str) -> Result<u64> {
    let n: i64 = get(row, column)?;
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("{column} is negative: {n}")))
}

fn source_kind(kind: &str) -> Result<SourceKind> {
    match kind {
        "workspace" => Ok(SourceKind::Workspace),
        "topic" => Ok(SourceKind::Topic),
        other => Err(StoreError::Corrupt(format!("source kind `{other}`"))),
    }
}

fn role(row: &PgRow) -> Result<Role> {
    let role: String = get(row, "role")?;
    Role::parse(&role).ok_or_else(|| StoreError::Corrupt(format!("role `{role}`")))
}

fn tags(row: &PgRow, column: &str) -> Result<Tags> {
    let text: String = get(row, column)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

fn schema(row: &PgRow) -> Result<EventSchema> {
    let schema: String = get(row, "schema")?;
    EventSchema::parse(&schema).ok_or_else(|| StoreError::Corrupt(format!("event schema `{schema}`")))
}

fn optional_u16(row: &PgRow, column: &str) -> Result<Option<u16>> {
    let value: Option<i64> = get(row, column)?;
    Ok(value.and_then(|v| u16::try_from(v).ok()))
}

fn small(row: &PgRow, column: &str) -> Result<u32> {
    let n: i64 = get(row, column)?;
    u32::try_from(n).map_err(|_| StoreError::Corrupt(format!("{column} out of range: {n}")))
}

pub(super) fn source_from_row(row: &PgRow) -> Result<Source> {
    let kind: String = get(row, "kind")?;
    Ok(Source {
        id: get(row, "id")?,
        kind: source_kind(&kind)?,
        name: get(row, "name")?,
        subscription_id: get(row, "subscription_id")?,
        resource_group: get(row, "resource_group")?,
        created_at: get(row, "created_at")?,
        last_sequence: unsigned(row, "last_sequence")?,
    })
}

pub(super) fn topic_key_from_row(row: &PgRow) -> Result<TopicKey> {
    let name: String = get(row, "key_name")?;
    Ok(TopicKey {
        name: KeyName::parse(&name).ok_or_else(|| StoreError::Corrupt(format!("key name `{name}`")))?,
        salt: get(row, "salt")?,
        hash: get(row, "key_hash")?,
    })
}

pub(super) fn principal_from_row(row: &PgRow) -> Result<Principal> {
    Ok(Principal {
        id: get(row, "id")?,
        name: get(row, "name")?,
        created_at: get(row, "created_at")?,
    })
}

pub(super) fn principal_key_from_row(row: &PgRow) -> Result<(Principal, ApiKeyHash)> {
    Ok((
        principal_from_row(row)?,
        ApiKeyHash {
            key_id: get(row, "key_id")?,
            hash: get(row, "key_hash")?,
        },
    ))
}

pub(super) fn principal_summary_from_row(row: &PgRow) -> Result<PrincipalSummary> {
    Ok(PrincipalSummary {
        principal: principal_from_row(row)?,
        keys: unsigned(row, "keys")?,
    })
}

pub(super) fn role_assignment_from_row(row: &PgRow) -> Result<RoleAssignment> {
    Ok(RoleAssignment {
        principal_id: get(row, "principal_id")?,
        source_id: get(row, "source_id")?,
        role: role(row)?,
    })
}

pub(super) fn role_grant_from_row(row: &PgRow) -> Result<RoleGrant> {
    let kind: Option<String> = get(row, "source_kind")?;
    let source = match kind {
        None => None,
        Some(kind) => Some((source_kind(&kind)?, get(row, "source_name")?)),
    };
    Ok(RoleGrant {
        id: get(row, "id")?,
        principal: get(row, "principal")?,
        source,
        role: role(row)?,
        created_at: get(row, "created_at")?,
    })
}

pub(super) fn stored_event_from_row(row: &PgRow) -> Result<StoredEvent> {
    Ok(StoredEvent {
        sequence: unsigned(row, "sequence")?,
        id: get(row, "event_id")?,
        schema: schema(row)?,
        event_type: get(row, "event_type")?,
        subject: get(row, "subject")?,
        published_at: get(row, "published_at")?,
        body: get(row, "body")?,
    })
}

pub(super) fn experiment_from_row(row: &PgRow) -> Result<Experiment> {
    Ok(Experiment {
        id: get(row, "id")?,
        name: get(row, "name")?,
        created_at: get(row, "created_at")?,
    })
}

/// Selects runs with their experiment's name.
pub(super) const RUN_SELECT: &str = "SELECT r.*, e.name AS experiment_name FROM runs r \
     JOIN experiments e ON e.source_id = r.source_id AND e.id = r.experiment_id";

pub(super) fn run_from_row(row: &PgRow) -> Result<Run> {
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
        created_at: get(row, "created_at")?,
        start_time: get(row, "start_time")?,
        end_time: get(row, "end_time")?,
        etag: get(row, "etag")?,
    })
}

pub(super) fn metric_from_row(row: &PgRow) -> Result<Metric> {
    Ok(Metric {
        name: get(row, "name")?,
        value: get(row, "value")?,
        step: unsigned(row, "step")?,
        logged_at: get(row, "logged_at")?,
    })
}

pub(super) fn model_from_row(row: &PgRow) -> Result<Model> {
    Ok(Model {
        name: get(row, "name")?,
        version: unsigned(row, "version")?,
        path: get(row, "path")?,
        description: get(row, "description")?,
        tags: tags(row, "tags")?,
        properties: tags(row, "properties")?,
        archived: get(row, "archived")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        etag: get(row, "etag")?,
    })
}

pub(super) fn deployment_from_row(row: &PgRow) -> Result<Deployment> {
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
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        etag: get(row, "etag")?,
    })
}

pub(super) fn dataset_from_row(row: &PgRow) -> Result<Dataset> {
    Ok(Dataset {
        name: get(row, "name")?,
        version: unsigned(row, "version")?,
        path: get(row, "path")?,
        description: get(row, "description")?,
        tags: tags(row, "tags")?,
        created_at: get(row, "created_at")?,
        etag: get(row, "etag")?,
    })
}

pub(super) fn subscription_from_row(row: &PgRow) -> Result<EventSubscription> {
    Ok(EventSubscription {
        id: get(row, "id")?,
        source_id: get(row, "source_id")?,
        name: get(row, "name")?,
        spec: get(row, "spec")?,
        provisioning_state: get(row, "provisioning_state")?,
        expires_at: get(row, "expires_at")?,
        start_sequence: unsigned(row, "start_sequence")?,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        etag: get(row, "etag")?,
        secret_salt: get::<Option<String>>(row, "secret_salt")?.unwrap_or_default(),
        previous_salt: match (
            get::<Option<String>>(row, "previous_salt")?,
            get::<Option<DateTime<Utc>>>(row, "previous_until")?,
        ) {
            (Some(salt), Some(until)) => Some((salt, until)),
            _ => None,
        },
    })
}

pub(super) fn due_delivery_from_row(row: &PgRow) -> Result<DueDelivery> {
    Ok(DueDelivery {
        subscription_id: get(row, "subscription_id")?,
        sequence: unsigned(row, "sequence")?,
        attempts: small(row, "attempts")?,
        schema: schema(row)?,
        published_at: get(row, "published_at")?,
        body: get(row, "body")?,
    })
}

pub(super) fn attempt_from_row(row: &PgRow) -> Result<Attempt> {
    Ok(Attempt {
        attempted_at: get(row, "attempted_at")?,
        events: small(row, "events")?,
        first_sequence: unsigned(row, "first_sequence")?,
        status_code: optional_u16(row, "status_code")?,
        latency_ms: get(row, "latency_ms")?,
        outcome: get(row, "outcome")?,
        error: get(row, "error")?,
        response_excerpt: get(row, "response_excerpt")?,
    })
}

pub(super) fn dead_letter_from_row(row: &PgRow) -> Result<DeadLetter> {
    Ok(DeadLetter {
        sequence: unsigned(row, "sequence")?,
        schema: schema(row)?,
        body: get(row, "body")?,
        dead_letter_reason: get(row, "dead_letter_reason")?,
        delivery_attempts: small(row, "attempts")?,
        last_delivery_outcome: get(row, "last_outcome")?,
        last_http_status_code: optional_u16(row, "last_status")?,
        publish_time: get(row, "published_at")?,
        last_delivery_attempt_time: get(row, "last_attempt_at")?,
    })
}
