//! Mapping SQLite rows to store types.

use mlgrid_core::EventSchema;
use mlgrid_core::resource::SourceKind;
use mlgrid_core::time::parse_rfc3339;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use crate::error::{Result, StoreError};
use crate::model::*;

fn get<'r, T>(row: &'r SqliteRow, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Sqlite> + sqlx::Type<sqlx::Sqlite>,
{
    row.try_get(column).map_err(StoreError::backend)
}

fn time(row: &SqliteRow, column: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    let text: String = get(row, column)?;
    parse_rfc3339(&text).map_err(|_| StoreError::Corrupt(format!("{column} `{text}` is not a time")))
}

fn sequence(n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| StoreError::Corrupt(format!("negative sequence {n}")))
}

pub(super) fn source_from_row(row: &SqliteRow) -> Result<Source> {
    let kind: String = get(row, "kind")?;
    Ok(Source {
        id: get(row, "id")?,
        kind: match kind.as_str() {
            "workspace" => SourceKind::Workspace,
            "topic" => SourceKind::Topic,
            other => return Err(StoreError::Corrupt(format!("source kind `{other}`"))),
        },
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
        Principal {
            id: get(row, "id")?,
            name: get(row, "name")?,
            created_at: time(row, "created_at")?,
        },
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
    let schema: String = get(row, "schema")?;
    Ok(StoredEvent {
        sequence: sequence(get(row, "sequence")?)?,
        id: get(row, "event_id")?,
        schema: EventSchema::parse(&schema).ok_or_else(|| StoreError::Corrupt(format!("event schema `{schema}`")))?,
        event_type: get(row, "event_type")?,
        subject: get(row, "subject")?,
        published_at: time(row, "published_at")?,
        body: get(row, "body")?,
    })
}

pub(super) fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}
