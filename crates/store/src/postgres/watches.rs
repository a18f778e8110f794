//! Datastore watches on PostgreSQL, for several nodes at once: an arrival's compare and
//! set on its seen row waits for another node's transaction on the same row, then finds
//! it moved and publishes nothing, so one node publishes a file's version.

use chrono::{DateTime, Utc};
use mlgrid_core::resource::SourceKind;
use sqlx::{AssertSqlSafe, PgConnection, PgPool};

use super::db::{all, begin, commit, db, now, optional, unique};
use super::events::{insert_events, source_path, workspace_topic};
use super::schedules::move_seen;
use crate::error::Result;
use crate::etag::new_etag;
use crate::model::SourceId;
use crate::rows::watch_from_row;
use crate::schedule_sql::DELETE_SEEN_OF_WATCHER;
use crate::watch_sql as sql;
use crate::watches::*;

async fn by_id(conn: &mut PgConnection, id: &str) -> Result<Option<DatastoreWatch>> {
    let query = sqlx::query(AssertSqlSafe(sql::watch_by_id())).bind(id);
    optional(&mut *conn, query, watch_from_row).await
}

pub(super) async fn create(pool: &PgPool, workspace: SourceId, new: NewDatastoreWatch) -> Result<DatastoreWatch> {
    let mut tx = begin(pool).await?;
    workspace_topic(&mut tx, workspace).await?;
    source_path(&mut tx, new.topic, SourceKind::Topic).await?;
    let id = uuid::Uuid::new_v4().to_string();
    unique(
        sqlx::query(sql::INSERT_WATCH)
            .bind(workspace)
            .bind(&id)
            .bind(&new.name)
            .bind(&new.datastore)
            .bind(&new.path)
            .bind(new.recursive)
            .bind(i64::from(new.polling_seconds))
            .bind(new.topic)
            .bind(now())
            .bind(new_etag())
            .execute(&mut *tx)
            .await,
        || watch_taken(&new.datastore, &new.name),
    )?;
    let created = by_id(&mut tx, &id)
        .await?
        .ok_or_else(|| missing_watch(&new.datastore, &new.name))?;
    commit(tx).await?;
    Ok(created)
}

pub(super) async fn get(pool: &PgPool, workspace: SourceId, datastore: &str, name: &str) -> Result<DatastoreWatch> {
    let query = sqlx::query(AssertSqlSafe(sql::watch_by_name()))
        .bind(workspace)
        .bind(datastore)
        .bind(name);
    optional(pool, query, watch_from_row)
        .await?
        .ok_or_else(|| missing_watch(datastore, name))
}

pub(super) async fn list(pool: &PgPool, workspace: SourceId, datastore: &str) -> Result<Vec<DatastoreWatch>> {
    let query = sqlx::query(AssertSqlSafe(sql::watches_of_datastore()))
        .bind(workspace)
        .bind(datastore);
    all(pool, query, watch_from_row).await
}

pub(super) async fn delete(pool: &PgPool, workspace: SourceId, datastore: &str, name: &str) -> Result<()> {
    let mut tx = begin(pool).await?;
    let query = sqlx::query(AssertSqlSafe(sql::watch_by_name()))
        .bind(workspace)
        .bind(datastore)
        .bind(name);
    let current = optional(&mut *tx, query, watch_from_row)
        .await?
        .ok_or_else(|| missing_watch(datastore, name))?;
    for statement in [sql::DELETE_WATCH, DELETE_SEEN_OF_WATCHER] {
        db(sqlx::query(statement).bind(&current.id).execute(&mut *tx).await)?;
    }
    commit(tx).await
}

pub(super) async fn due(pool: &PgPool, now: DateTime<Utc>, limit: u32) -> Result<Vec<DatastoreWatch>> {
    let query = sqlx::query(AssertSqlSafe(sql::due_watches()))
        .bind(now)
        .bind(i64::from(limit));
    all(pool, query, watch_from_row).await
}

pub(super) async fn record_arrival(pool: &PgPool, arrival: NewArrival) -> Result<Option<u64>> {
    let mut tx = begin(pool).await?;
    if !move_seen(
        &mut tx,
        &arrival.watch_id,
        arrival.previous.as_deref(),
        &arrival.seen,
        now(),
    )
    .await?
    {
        return Ok(None);
    }
    let topic = source_path(&mut tx, arrival.topic, SourceKind::Topic).await?;
    let event = arrival_event(&arrival, &topic);
    let receipt = insert_events(&mut *tx, arrival.topic, std::slice::from_ref(&event)).await?;
    db(sqlx::query(sql::AFTER_ARRIVAL)
        .bind(arrival.event_time)
        .bind(&arrival.watch_id)
        .execute(&mut *tx)
        .await)?;
    commit(tx).await?;
    Ok(Some(receipt.last_sequence))
}
