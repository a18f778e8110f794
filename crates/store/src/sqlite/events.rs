//! Event logs on SQLite: appends inside the writer's transaction (published events, and
//! those the lifecycle raises, the transactional outbox), and reads.

use std::sync::Arc;

use chrono::Utc;
use mlgrid_core::ml::MlEvent;
use mlgrid_core::resource::{SourceKind, resource_path};
use mlgrid_core::time::format_event_time;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use super::db::{all, to_i64};
use super::writer::{Appends, WriterHandle};
use crate::appends::EventLog;
use crate::error::{Result, StoreError};
use crate::lifecycle::raised_event;
use crate::model::{AppendReceipt, NewEvent, SourceId, StoredEvent};
use crate::rows::stored_event_from_row;
use crate::sql;

/// Rows per multi-row `INSERT` of events (8 parameters each, within SQLite's 32,766).
const INSERT_CHUNK: usize = 500;

/// Appends combined by [`crate::appends`] go to the writer: one job each, so the
/// appends of many requests cost the statements of one.
impl EventLog for WriterHandle {
    async fn insert(&self, source: SourceId, events: Arc<[NewEvent]>) -> Result<AppendReceipt> {
        self.write(Appends::Events, move |conn| {
            Box::pin(async move { insert_events(conn, source, &events).await })
        })
        .await
    }
}

/// Appends events to a source's log in the current transaction.
pub(super) async fn insert_events(
    conn: &mut SqliteConnection,
    source: SourceId,
    events: &[NewEvent],
) -> Result<AppendReceipt> {
    let count = events.len() as i64;
    let bytes: usize = events.iter().map(|e| e.body.len()).sum();
    let last: Option<i64> = sqlx::query_scalar(
        "UPDATE sources SET last_sequence = last_sequence + ?, stored_bytes = stored_bytes + ? WHERE id = ? \
         RETURNING last_sequence",
    )
    .bind(count)
    .bind(bytes as i64)
    .bind(source)
    .fetch_optional(&mut *conn)
    .await
    .map_err(StoreError::backend)?;
    let last = last.ok_or_else(|| StoreError::NotFound(format!("source {source}")))?;
    let first = last - count + 1;
    let published = format_event_time(Utc::now());
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
        insert
            .build()
            .persistent(false)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::backend)?;
    }
    Ok(AppendReceipt {
        first_sequence: first as u64,
        last_sequence: last as u64,
    })
}

pub(super) async fn read(pool: &SqlitePool, source: SourceId, after: u64, limit: u32) -> Result<Vec<StoredEvent>> {
    let query = sqlx::query(sql::READ_EVENTS)
        .bind(source)
        .bind(to_i64(after))
        .bind(limit.min(crate::MAX_READ_LIMIT));
    all(pool, query, stored_event_from_row).await
}

/// The resource path of a workspace; `NotFound` if there is none with this id.
pub(super) async fn workspace_topic(conn: &mut SqliteConnection, workspace: SourceId) -> Result<String> {
    source_path(conn, workspace, SourceKind::Workspace).await
}

/// The resource path of a source of `kind` (its events' `topic`); `NotFound` if there is
/// none with this id, `Invalid` if it is of the other kind.
pub(super) async fn source_path(conn: &mut SqliteConnection, source: SourceId, kind: SourceKind) -> Result<String> {
    let row: Option<(String, String, String, String)> = sqlx::query_as(sql::SOURCE_PATH)
        .bind(source)
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::backend)?;
    match row {
        Some((found, name, subscription_id, resource_group)) if found == kind.as_str() => {
            Ok(resource_path(kind, &subscription_id, &resource_group, &name))
        }
        Some((found, name, ..)) => Err(StoreError::Invalid(format!("`{name}` is a {found}, not a {kind}"))),
        None => Err(StoreError::NotFound(format!("{kind} {source}"))),
    }
}

/// Raises an Azure ML event in the current transaction: gives it the next sequence
/// number of its subject and the resource's new etag, and appends it to the log.
pub(super) async fn raise(conn: &mut SqliteConnection, workspace: SourceId, event: &MlEvent, etag: &str) -> Result<()> {
    let topic = workspace_topic(conn, workspace).await?;
    let subject = event.subject().to_string();
    let sequence: i64 = sqlx::query_scalar(
        "INSERT INTO subject_sequences (source_id, subject, last_sequence) VALUES (?, ?, 1) \
         ON CONFLICT (source_id, subject) DO UPDATE SET last_sequence = last_sequence + 1 RETURNING last_sequence",
    )
    .bind(workspace)
    .bind(&subject)
    .fetch_one(&mut *conn)
    .await
    .map_err(StoreError::backend)?;
    let stored = raised_event(event, &topic, sequence as u64, etag);
    insert_events(conn, workspace, std::slice::from_ref(&stored)).await?;
    Ok(())
}
