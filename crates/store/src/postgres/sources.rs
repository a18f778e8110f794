//! Sources (workspaces and topics) and the access keys of topics on PostgreSQL.

use mlgrid_core::resource::SourceKind;
use sqlx::PgPool;

use super::db::{all, begin, commit, db, now, optional, to_i64, unique};
use crate::error::{Result, StoreError};
use crate::model::*;
use crate::rows::{source_from_row, topic_key_from_row};
use crate::sql;

pub(super) async fn create(pool: &PgPool, new: &NewSource, keys: &[TopicKey]) -> Result<Source> {
    let mut tx = begin(pool).await?;
    let existing: Option<String> = db(sqlx::query_scalar(sql::SOURCE_NAME)
        .bind(new.kind.as_str())
        .bind(&new.name)
        .fetch_optional(&mut *tx)
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
            .fetch_one(&mut *tx)
            .await,
        || crate::names::taken(new.kind.as_str(), &new.name),
    )?;
    let source = source_from_row(&row)?;
    for key in keys {
        db(sqlx::query(sql::INSERT_TOPIC_KEY)
            .bind(source.id)
            .bind(key.name.as_str())
            .bind(&key.salt)
            .bind(&key.hash)
            .bind(now())
            .execute(&mut *tx)
            .await)?;
    }
    commit(tx).await?;
    Ok(source)
}

pub(super) async fn get(pool: &PgPool, kind: SourceKind, name: &str) -> Result<Source> {
    let query = sqlx::query(sql::SOURCE).bind(kind.as_str()).bind(name);
    optional(pool, query, source_from_row)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("{kind} `{name}`")))
}

pub(super) async fn list(pool: &PgPool, kind: SourceKind) -> Result<Vec<Source>> {
    let query = sqlx::query(sql::SOURCES).bind(kind.as_str());
    all(pool, query, source_from_row).await
}

/// Deletes a source; its keys, roles, lifecycle and subscriptions go with it (`ON DELETE
/// CASCADE`), its events by a statement of the same transaction (they have no foreign key,
/// see migration 0008). An append waiting on the source's row then finds no source.
pub(super) async fn delete(pool: &PgPool, kind: SourceKind, name: &str) -> Result<()> {
    let mut tx = begin(pool).await?;
    let id: Option<SourceId> = db(sqlx::query_scalar(
        "DELETE FROM sources WHERE kind = $1 AND lower(name) = lower($2) RETURNING id",
    )
    .bind(kind.as_str())
    .bind(name)
    .fetch_optional(&mut *tx)
    .await)?;
    let Some(id) = id else {
        return Err(StoreError::NotFound(format!("{kind} `{name}`")));
    };
    db(sqlx::query("DELETE FROM events WHERE source_id = $1")
        .bind(id)
        .execute(&mut *tx)
        .await)?;
    commit(tx).await
}

pub(super) async fn topic_keys(pool: &PgPool, source: SourceId) -> Result<Vec<TopicKey>> {
    let query = sqlx::query(sql::TOPIC_KEYS);
    all(pool, query.bind(source), topic_key_from_row).await
}

pub(super) async fn replace_topic_key(pool: &PgPool, source: SourceId, key: &TopicKey) -> Result<()> {
    let updated = db(sqlx::query(sql::REPLACE_TOPIC_KEY)
        .bind(&key.salt)
        .bind(&key.hash)
        .bind(now())
        .bind(source)
        .bind(key.name.as_str())
        .execute(pool)
        .await)?;
    if updated.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!(
            "{} of source {source}",
            key.name.as_str()
        )));
    }
    Ok(())
}
