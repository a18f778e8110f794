//! Datastore watches on SQLite. Writes run inside the writer's transaction: an arrival's
//! seen row and its event commit together.

use chrono::{DateTime, Utc};
use mlgrid_core::resource::SourceKind;
use mlgrid_core::time::format_event_time;
use sqlx::{AssertSqlSafe, SqliteConnection, SqlitePool};

use super::db::{all, db, now, optional, unique};
use super::events::{insert_events, source_path, workspace_topic};
use super::schedules::move_seen;
use crate::error::Result;
use crate::etag::new_etag;
use crate::model::SourceId;
use crate::rows::watch_from_row;
use crate::schedule_sql::DELETE_SEEN_OF_WATCHER;
use crate::watch_sql as sql;
use crate::watches::*;

async fn by_id(conn: &mut SqliteConnection, id: &str) -> Result<Option<DatastoreWatch>> {
    let query = sqlx::query(AssertSqlSafe(sql::watch_by_id())).bind(id);
    optional(&mut *conn, query, watch_from_row).await
}

pub(super) async fn create(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    new: NewDatastoreWatch,
) -> Result<DatastoreWatch> {
    workspace_topic(conn, workspace).await?;
    source_path(conn, new.topic, SourceKind::Topic).await?;
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
            .execute(&mut *conn)
            .await,
        || watch_taken(&new.datastore, &new.name),
    )?;
    by_id(conn, &id)
        .await?
        .ok_or_else(|| missing_watch(&new.datastore, &new.name))
}

pub(super) async fn get(pool: &SqlitePool, workspace: SourceId, datastore: &str, name: &str) -> Result<DatastoreWatch> {
    let query = sqlx::query(AssertSqlSafe(sql::watch_by_name()))
        .bind(workspace)
        .bind(datastore)
        .bind(name);
    optional(pool, query, watch_from_row)
        .await?
        .ok_or_else(|| missing_watch(datastore, name))
}

pub(super) async fn list(pool: &SqlitePool, workspace: SourceId, datastore: &str) -> Result<Vec<DatastoreWatch>> {
    let query = sqlx::query(AssertSqlSafe(sql::watches_of_datastore()))
        .bind(workspace)
        .bind(datastore);
    all(pool, query, watch_from_row).await
}

pub(super) async fn delete(
    conn: &mut SqliteConnection,
    workspace: SourceId,
    datastore: &str,
    name: &str,
) -> Result<()> {
    let query = sqlx::query(AssertSqlSafe(sql::watch_by_name()))
        .bind(workspace)
        .bind(datastore)
        .bind(name);
    let current = optional(&mut *conn, query, watch_from_row)
        .await?
        .ok_or_else(|| missing_watch(datastore, name))?;
    for statement in [sql::DELETE_WATCH, DELETE_SEEN_OF_WATCHER] {
        db(sqlx::query(statement).bind(&current.id).execute(&mut *conn).await)?;
    }
    Ok(())
}

pub(super) async fn due(pool: &SqlitePool, now: DateTime<Utc>, limit: u32) -> Result<Vec<DatastoreWatch>> {
    let query = sqlx::query(AssertSqlSafe(sql::due_watches()))
        .bind(format_event_time(now))
        .bind(i64::from(limit));
    all(pool, query, watch_from_row).await
}

pub(super) async fn record_arrival(conn: &mut SqliteConnection, arrival: NewArrival) -> Result<Option<u64>> {
    if !move_seen(
        conn,
        &arrival.watch_id,
        arrival.previous.as_deref(),
        &arrival.seen,
        &now(),
    )
    .await?
    {
        return Ok(None);
    }
    let topic = source_path(conn, arrival.topic, SourceKind::Topic).await?;
    let event = arrival_event(&arrival, &topic);
    let receipt = insert_events(conn, arrival.topic, std::slice::from_ref(&event)).await?;
    db(sqlx::query(sql::AFTER_ARRIVAL)
        .bind(format_event_time(arrival.event_time))
        .bind(&arrival.watch_id)
        .execute(&mut *conn)
        .await)?;
    Ok(Some(receipt.last_sequence))
}
