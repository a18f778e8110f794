//! Sources (workspaces and topics) and the access keys of topics on SQLite.

use mlgrid_core::resource::SourceKind;
use sqlx::{SqliteConnection, SqlitePool};

use super::db::{all, db, now, optional, to_i64, unique};
use crate::error::{Result, StoreError};
use crate::model::*;
use crate::rows::{source_from_row, topic_key_from_row};
use crate::sql;

pub(super) async fn create(conn: &mut SqliteConnection, new: NewSource, keys: Vec<TopicKey>) -> Result<Source> {
    let existing: Option<String> = db(sqlx::query_scalar(sql::SOURCE_NAME)
        .bind(new.kind.as_str())
        .bind(&new.name)
        .fetch_optional(&mut *conn)
        .await)?;
    if let Some(existing) = existing {
        return Err(StoreError::Conflict(crate::names::taken(new.kind.as_str(), &existing)));
    }
    let row = unique(
        sqlx::query(sql::INSERT_SOURCE)
            .bind(new.kind.as_str())
            .bind(&new.name)
            .bind(&new.subscription_id)
            .bind(&new.resource_group)
            .bind(now())
            .bind(new.retention.time.map(|t| to_i64(t.seconds())))
            .bind(new.retention.max_bytes.map(to_i64))
            .fetch_one(&mut *conn)
            .await,
        || crate::names::taken(new.kind.as_str(), &new.name),
    )?;
    let source = source_from_row(&row)?;
    for key in &keys {
        db(sqlx::query(sql::INSERT_TOPIC_KEY)
            .bind(source.id)
            .bind(key.name.as_str())
            .bind(&key.salt)
            .bind(&key.hash)
            .bind(now())
            .execute(&mut *conn)
            .await)?;
    }
    Ok(source)
}

pub(super) async fn get(pool: &SqlitePool, kind: SourceKind, name: &str) -> Result<Source> {
    let query = sqlx::query(sql::SOURCE).bind(kind.as_str()).bind(name);
    optional(pool, query, source_from_row)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("{kind} `{name}`")))
}

pub(super) async fn list(pool: &SqlitePool, kind: SourceKind) -> Result<Vec<Source>> {
    let query = sqlx::query(sql::SOURCES).bind(kind.as_str());
    all(pool, query, source_from_row).await
}

/// Deletes a source; its keys, roles, lifecycle, subscriptions and events go with it
/// (`ON DELETE CASCADE`).
pub(super) async fn delete(conn: &mut SqliteConnection, kind: SourceKind, name: &str) -> Result<()> {
    let deleted = db(
        sqlx::query("DELETE FROM sources WHERE kind = ? AND lower(name) = lower(?)")
            .bind(kind.as_str())
            .bind(name)
            .execute(&mut *conn)
            .await,
    )?;
    if deleted.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("{kind} `{name}`")));
    }
    Ok(())
}

pub(super) async fn topic_keys(pool: &SqlitePool, source: SourceId) -> Result<Vec<TopicKey>> {
    let query = sqlx::query(sql::TOPIC_KEYS);
    all(pool, query.bind(source), topic_key_from_row).await
}

pub(super) async fn replace_topic_key(conn: &mut SqliteConnection, source: SourceId, key: TopicKey) -> Result<()> {
    let updated = db(sqlx::query(sql::REPLACE_TOPIC_KEY)
        .bind(&key.salt)
        .bind(&key.hash)
        .bind(now())
        .bind(source)
        .bind(key.name.as_str())
        .execute(&mut *conn)
        .await)?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!(
            "{} of source {source}",
            key.name.as_str()
        )));
    }
    Ok(())
}
