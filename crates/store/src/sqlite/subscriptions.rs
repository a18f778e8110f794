//! Event subscriptions and recorded matches on SQLite.

use std::collections::HashSet;

use chrono::Utc;
use mlgrid_core::time::format_event_time;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use super::db::{all, db, now, optional, to_i64};
use crate::error::{Result, StoreError};
use crate::etag::{check_etag, check_put_etag, new_etag};
use crate::model::{SourceId, StoredEvent};
use crate::rows::{listed_subscription_from_row, stored_event_from_row, subscription_from_row};
use crate::sql;
use crate::subscriptions::*;
use mlgrid_core::subscription::ProvisioningState;

async fn bump_version(conn: &mut SqliteConnection) -> Result<()> {
    db(sqlx::query(sql::BUMP_SUBSCRIPTIONS_VERSION).execute(&mut *conn).await)?;
    Ok(())
}

async fn load(conn: &mut SqliteConnection, source: SourceId, name: &str) -> Result<Option<EventSubscription>> {
    let query = sqlx::query(sql::SUBSCRIPTION).bind(source).bind(name);
    optional(&mut *conn, query, subscription_from_row).await
}

pub(super) async fn put(
    conn: &mut SqliteConnection,
    source: SourceId,
    put: SubscriptionPut,
    if_match: Option<String>,
) -> Result<(EventSubscription, bool)> {
    let existing = load(conn, source, &put.name).await?;
    let what = format!("event subscription `{}`", put.name);
    check_put_etag(&what, existing.as_ref().map(|e| e.etag.as_str()), if_match.as_deref())?;
    let row = db(sqlx::query(sql::PUT_SUBSCRIPTION)
        .bind(source)
        .bind(&put.name)
        .bind(spec_json(&put.spec))
        .bind(put.provisioning_state.as_str())
        .bind(put.expires_at.map(format_event_time))
        .bind(now())
        .bind(new_etag())
        .bind(&put.secret_salt)
        .fetch_one(&mut *conn)
        .await)?;
    bump_version(conn).await?;
    Ok((subscription_from_row(&row)?, existing.is_none()))
}

pub(super) async fn get(pool: &SqlitePool, source: SourceId, name: &str) -> Result<EventSubscription> {
    let query = sqlx::query(sql::SUBSCRIPTION).bind(source).bind(name);
    optional(pool, query, subscription_from_row)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("event subscription `{name}`")))
}

pub(super) async fn list(pool: &SqlitePool, source: Option<SourceId>) -> Result<Vec<EventSubscription>> {
    let query =
        sqlx::query("SELECT * FROM event_subscriptions WHERE ? IS NULL OR source_id = ? ORDER BY source_id, name");
    all(pool, query.bind(source).bind(source), listed_subscription_from_row)
        .await
        .map(|listed| listed.into_iter().flatten().collect())
}

pub(super) async fn rotate_secret(
    conn: &mut SqliteConnection,
    source: SourceId,
    name: &str,
    salt: &str,
    grace_until: chrono::DateTime<Utc>,
) -> Result<EventSubscription> {
    let row = db(sqlx::query(sql::ROTATE_SUBSCRIPTION_SECRET)
        .bind(format_event_time(grace_until))
        .bind(salt)
        .bind(new_etag())
        .bind(now())
        .bind(source)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await)?;
    let row = row.ok_or_else(|| StoreError::NotFound(format!("event subscription `{name}`")))?;
    bump_version(conn).await?;
    subscription_from_row(&row)
}

pub(super) async fn transition(
    conn: &mut SqliteConnection,
    id: SubscriptionId,
    etag: &str,
    from: ProvisioningState,
    to: ProvisioningState,
) -> Result<Option<EventSubscription>> {
    let row = db(sqlx::query(sql::TRANSITION_SUBSCRIPTION)
        .bind(to.as_str())
        .bind(now())
        .bind(id)
        .bind(etag)
        .bind(from.as_str())
        .fetch_optional(&mut *conn)
        .await)?;
    let Some(row) = row else { return Ok(None) };
    bump_version(conn).await?;
    subscription_from_row(&row).map(Some)
}

pub(super) async fn delete(
    conn: &mut SqliteConnection,
    source: SourceId,
    name: &str,
    if_match: Option<String>,
) -> Result<()> {
    let current = load(conn, source, name)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("event subscription `{name}`")))?;
    check_etag(
        &format!("event subscription `{name}`"),
        &current.etag,
        if_match.as_deref(),
    )?;
    db(sqlx::query(sql::DELETE_SUBSCRIPTION)
        .bind(current.id)
        .execute(&mut *conn)
        .await)?;
    bump_version(conn).await
}

pub(super) async fn delete_expired(conn: &mut SqliteConnection, now: chrono::DateTime<Utc>) -> Result<u64> {
    let deleted = db(sqlx::query(sql::DELETE_EXPIRED_SUBSCRIPTIONS)
        .bind(format_event_time(now))
        .execute(&mut *conn)
        .await)?
    .rows_affected();
    if deleted > 0 {
        bump_version(conn).await?;
    }
    Ok(deleted)
}

pub(super) async fn version(pool: &SqlitePool) -> Result<u64> {
    let version: i64 = db(sqlx::query_scalar(sql::SUBSCRIPTIONS_VERSION).fetch_one(pool).await)?;
    Ok(version as u64)
}

pub(super) async fn fanout_cursor(pool: &SqlitePool, source: SourceId) -> Result<u64> {
    let cursor: Option<i64> = db(sqlx::query_scalar(sql::FANOUT_CURSOR)
        .bind(source)
        .fetch_optional(pool)
        .await)?;
    Ok(cursor.unwrap_or(0) as u64)
}

/// Rows per multi-row `INSERT` of deliveries (6 parameters each).
const INSERT_CHUNK: usize = 1000;

pub(super) async fn record_matches(conn: &mut SqliteConnection, batch: RoutedBatch) -> Result<()> {
    let cursor: Option<i64> = db(sqlx::query_scalar(sql::FANOUT_CURSOR)
        .bind(batch.source)
        .fetch_optional(&mut *conn)
        .await)?;
    if cursor.unwrap_or(0) as u64 != batch.from_sequence {
        return Err(StoreError::Conflict(format!(
            "the fan-out cursor of source {} moved from {} to {}",
            batch.source,
            batch.from_sequence,
            cursor.unwrap_or(0)
        )));
    }
    // A subscription deleted since it was routed has nothing left to deliver to.
    let live: HashSet<SubscriptionId> = db(sqlx::query_scalar(
        "SELECT id FROM event_subscriptions WHERE source_id = ?",
    )
    .bind(batch.source)
    .fetch_all(&mut *conn)
    .await)?
    .into_iter()
    .collect();
    let matches: Vec<&(SubscriptionId, u64)> = batch.matches.iter().filter(|(s, _)| live.contains(s)).collect();
    let now = format_event_time(Utc::now());
    let lease_until = batch.lease_until.map(format_event_time);
    for chunk in matches.chunks(INSERT_CHUNK) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT OR IGNORE INTO deliveries (subscription_id, source_id, sequence, created_at, due_at, lease_until) ",
        );
        insert.push_values(chunk, |mut row, (subscription, sequence)| {
            row.push_bind(*subscription)
                .push_bind(batch.source)
                .push_bind(*sequence as i64)
                .push_bind(now.clone())
                .push_bind(now.clone())
                .push_bind(lease_until.clone());
        });
        db(insert.build().persistent(false).execute(&mut *conn).await)?;
    }
    db(sqlx::query(
        "INSERT INTO fanout_cursors (source_id, last_sequence) VALUES (?, ?) \
         ON CONFLICT (source_id) DO UPDATE SET last_sequence = excluded.last_sequence",
    )
    .bind(batch.source)
    .bind(batch.to_sequence as i64)
    .execute(&mut *conn)
    .await)?;
    Ok(())
}

pub(super) async fn matches(
    pool: &SqlitePool,
    subscription: SubscriptionId,
    after: u64,
    limit: u32,
) -> Result<Vec<StoredEvent>> {
    let query = sqlx::query(
        "SELECT e.sequence, e.event_id, e.schema, e.event_type, e.subject, e.published_at, e.body \
         FROM deliveries d JOIN events e ON e.source_id = d.source_id AND e.sequence = d.sequence \
         WHERE d.subscription_id = ?1 AND d.sequence > ?2 \
         AND d.sequence > (SELECT max(s.pruned_through, src.pruned_through) FROM event_subscriptions s \
             JOIN sources src ON src.id = s.source_id WHERE s.id = ?1) \
         ORDER BY d.sequence LIMIT ?3",
    )
    .bind(subscription)
    .bind(to_i64(after))
    .bind(limit.min(crate::MAX_READ_LIMIT));
    all(pool, query, stored_event_from_row).await
}
