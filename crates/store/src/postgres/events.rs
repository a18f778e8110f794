//! Event logs on PostgreSQL: appends (published events and those the lifecycle raises,
//! the transactional outbox) and reads.

use std::sync::Arc;

use mlgrid_core::ml::MlEvent;
use mlgrid_core::resource::{SourceKind, resource_path};
use sqlx::{PgConnection, PgExecutor, PgPool};

use super::db::{all, db, now, to_i64};
use super::listener::APPENDED_CHANNEL;
use crate::appends::EventLog;
use crate::error::{Result, StoreError};
use crate::lifecycle::raised_event;
use crate::model::{AppendReceipt, NewEvent, SourceId, StoredEvent};
use crate::rows::stored_event_from_row;
use crate::sql;

/// Appends events to a source's log in one statement, so it is atomic on its own and,
/// run outside a transaction, durable when it returns.
///
/// **Invariant:** sequences have no gaps and no repeats, whatever the number of nodes:
/// the `UPDATE` takes the next `n` numbers under the source row's lock, held until the
/// inserts commit. The same statement notifies [`APPENDED_CHANNEL`] (delivered at
/// commit, to every node) with the schema as payload. No source, no rows: `NotFound`.
pub(super) async fn insert_events(
    exec: impl PgExecutor<'_>,
    source: SourceId,
    events: &[NewEvent],
) -> Result<AppendReceipt> {
    let count = events.len() as i64;
    let column = |f: fn(&NewEvent) -> &str| events.iter().map(f).collect::<Vec<&str>>();
    let last: Option<i64> = db(sqlx::query_scalar(
        "WITH taken AS ( \
             UPDATE sources SET last_sequence = last_sequence + $2, stored_bytes = stored_bytes + $10 \
             WHERE id = $1 RETURNING last_sequence \
         ), appended AS ( \
             INSERT INTO events (source_id, sequence, event_id, schema, event_type, subject, published_at, body) \
             SELECT $1, taken.last_sequence - $2 + e.n, e.id, e.schema, e.event_type, e.subject, $8, e.body \
             FROM taken, unnest($3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) \
                 WITH ORDINALITY AS e(id, schema, event_type, subject, body, n) \
         ) \
         SELECT last_sequence FROM taken, LATERAL pg_notify($9, current_schema()) AS notified",
    )
    .bind(source)
    .bind(count)
    .bind(column(|e| &e.id))
    .bind(column(|e| e.schema.as_str()))
    .bind(column(|e| &e.event_type))
    .bind(column(|e| &e.subject))
    .bind(column(|e| &e.body))
    .bind(now())
    .bind(APPENDED_CHANNEL)
    .bind(events.iter().map(|e| e.body.len() as i64).sum::<i64>())
    .fetch_optional(exec)
    .await)?;
    let last = last.ok_or_else(|| StoreError::NotFound(format!("source {source}")))?;
    Ok(AppendReceipt {
        first_sequence: (last - count + 1) as u64,
        last_sequence: last as u64,
    })
}

/// Appends combined by [`crate::appends`] go straight to the pool: one statement each.
impl EventLog for PgPool {
    async fn insert(&self, source: SourceId, events: Arc<[NewEvent]>) -> Result<AppendReceipt> {
        insert_events(self, source, &events).await
    }
}

pub(super) async fn read(pool: &PgPool, source: SourceId, after: u64, limit: u32) -> Result<Vec<StoredEvent>> {
    let query = sqlx::query(sql::READ_EVENTS)
        .bind(source)
        .bind(to_i64(after))
        .bind(i64::from(limit.min(crate::MAX_READ_LIMIT)));
    all(pool, query, stored_event_from_row).await
}

/// The resource path of a workspace; `NotFound` if there is none with this id.
pub(super) async fn workspace_topic(conn: &mut PgConnection, workspace: SourceId) -> Result<String> {
    source_path(conn, workspace, SourceKind::Workspace).await
}

/// The resource path of a source of `kind` (its events' `topic`); `NotFound` if there is
/// none with this id, `Invalid` if it is of the other kind.
pub(super) async fn source_path(conn: &mut PgConnection, source: SourceId, kind: SourceKind) -> Result<String> {
    let row: Option<(String, String, String, String)> = db(sqlx::query_as(sql::SOURCE_PATH)
        .bind(source)
        .fetch_optional(&mut *conn)
        .await)?;
    match row {
        Some((found, name, subscription_id, resource_group)) if found == kind.as_str() => {
            Ok(resource_path(kind, &subscription_id, &resource_group, &name))
        }
        Some((found, name, ..)) => Err(StoreError::Invalid(format!("`{name}` is a {found}, not a {kind}"))),
        None => Err(StoreError::NotFound(format!("{kind} {source}"))),
    }
}

/// Raises an Azure ML event in the current transaction: gives it the next sequence
/// number of its subject (under that counter's row lock) and the resource's new etag,
/// and appends it to the workspace's log.
pub(super) async fn raise(conn: &mut PgConnection, workspace: SourceId, event: &MlEvent, etag: &str) -> Result<()> {
    let topic = workspace_topic(conn, workspace).await?;
    let sequence: i64 = db(sqlx::query_scalar(
        "INSERT INTO subject_sequences (source_id, subject, last_sequence) VALUES ($1, $2, 1) \
         ON CONFLICT (source_id, subject) DO UPDATE SET last_sequence = subject_sequences.last_sequence + 1 \
         RETURNING last_sequence",
    )
    .bind(workspace)
    .bind(event.subject().to_string())
    .fetch_one(&mut *conn)
    .await)?;
    let stored = raised_event(event, &topic, sequence as u64, etag);
    insert_events(&mut *conn, workspace, std::slice::from_ref(&stored)).await?;
    Ok(())
}
