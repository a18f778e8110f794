//! Event subscriptions and recorded matches on PostgreSQL.
//!
//! Every change to a subscription bumps the one `subscription_versions` row in its own
//! transaction, so the version changes with every change any node makes (and changes
//! apply one after the other). Recording matches locks the source's fan-out cursor:
//! of two nodes routing one stretch, one records it and the other gets `Conflict`.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};

use super::db::{all, begin, commit, db, now, optional, to_i64};
use crate::error::{Result, StoreError};
use crate::etag::{check_etag, check_put_etag, new_etag};
use crate::model::{SourceId, StoredEvent};
use crate::rows::{listed_subscription_from_row, stored_event_from_row, subscription_from_row};
use crate::sql;
use crate::subscriptions::*;
use mlgrid_core::subscription::ProvisioningState;

async fn bump_version(conn: &mut PgConnection) -> Result<()> {
    db(sqlx::query(sql::BUMP_SUBSCRIPTIONS_VERSION).execute(&mut *conn).await)?;
    Ok(())
}

/// A subscription, locked for the rest of the transaction.
async fn lock(conn: &mut PgConnection, source: SourceId, name: &str) -> Result<Option<EventSubscription>> {
    let query = sqlx::query("SELECT * FROM event_subscriptions WHERE source_id = $1 AND name = $2 FOR UPDATE")
        .bind(source)
        .bind(name);
    optional(&mut *conn, query, subscription_from_row).await
}

pub(super) async fn put(
    pool: &PgPool,
    source: SourceId,
    put: SubscriptionPut,
    if_match: Option<String>,
) -> Result<(EventSubscription, bool)> {
    let mut tx = begin(pool).await?;
    let existing = lock(&mut tx, source, &put.name).await?;
    let what = format!("event subscription `{}`", put.name);
    check_put_etag(&what, existing.as_ref().map(|e| e.etag.as_str()), if_match.as_deref())?;
    let row = db(sqlx::query(sql::PUT_SUBSCRIPTION)
        .bind(source)
        .bind(&put.name)
        .bind(spec_json(&put.spec))
        .bind(put.provisioning_state.as_str())
        .bind(put.expires_at)
        .bind(now())
        .bind(new_etag())
        .bind(&put.secret_salt)
        .fetch_one(&mut *tx)
        .await)?;
    bump_version(&mut tx).await?;
    commit(tx).await?;
    Ok((subscription_from_row(&row)?, existing.is_none()))
}

pub(super) async fn get(pool: &PgPool, source: SourceId, name: &str) -> Result<EventSubscription> {
    let query = sqlx::query(sql::SUBSCRIPTION).bind(source).bind(name);
    optional(pool, query, subscription_from_row)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("event subscription `{name}`")))
}

pub(super) async fn list(pool: &PgPool, source: Option<SourceId>) -> Result<Vec<EventSubscription>> {
    let query = sqlx::query(
        "SELECT * FROM event_subscriptions WHERE $1::bigint IS NULL OR source_id = $1 ORDER BY source_id, name",
    );
    all(pool, query.bind(source), listed_subscription_from_row)
        .await
        .map(|listed| listed.into_iter().flatten().collect())
}

pub(super) async fn rotate_secret(
    pool: &PgPool,
    source: SourceId,
    name: &str,
    salt: &str,
    grace_until: DateTime<Utc>,
) -> Result<EventSubscription> {
    let mut tx = begin(pool).await?;
    let row = db(sqlx::query(sql::ROTATE_SUBSCRIPTION_SECRET)
        .bind(grace_until)
        .bind(salt)
        .bind(new_etag())
        .bind(now())
        .bind(source)
        .bind(name)
        .fetch_optional(&mut *tx)
        .await)?;
    let row = row.ok_or_else(|| StoreError::NotFound(format!("event subscription `{name}`")))?;
    bump_version(&mut tx).await?;
    commit(tx).await?;
    subscription_from_row(&row)
}

/// Moves a subscription from provisioning state `from` to `to` if its definition still
/// has `etag`; the conditions are in the `UPDATE`, so of two nodes finishing one
/// handshake (or a handshake and its timeout) only the first moves it.
pub(super) async fn transition(
    pool: &PgPool,
    id: SubscriptionId,
    etag: &str,
    from: ProvisioningState,
    to: ProvisioningState,
) -> Result<Option<EventSubscription>> {
    let mut tx = begin(pool).await?;
    let query = sqlx::query(sql::TRANSITION_SUBSCRIPTION)
        .bind(to.as_str())
        .bind(now())
        .bind(id)
        .bind(etag)
        .bind(from.as_str());
    let Some(moved) = optional(&mut *tx, query, subscription_from_row).await? else {
        return Ok(None);
    };
    bump_version(&mut tx).await?;
    commit(tx).await?;
    Ok(Some(moved))
}

pub(super) async fn delete(pool: &PgPool, source: SourceId, name: &str, if_match: Option<String>) -> Result<()> {
    let mut tx = begin(pool).await?;
    let current = lock(&mut tx, source, name)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("event subscription `{name}`")))?;
    check_etag(
        &format!("event subscription `{name}`"),
        &current.etag,
        if_match.as_deref(),
    )?;
    db(sqlx::query(sql::DELETE_SUBSCRIPTION)
        .bind(current.id)
        .execute(&mut *tx)
        .await)?;
    bump_version(&mut tx).await?;
    commit(tx).await
}

pub(super) async fn delete_expired(pool: &PgPool, now: DateTime<Utc>) -> Result<u64> {
    let mut tx = begin(pool).await?;
    let deleted = db(sqlx::query(sql::DELETE_EXPIRED_SUBSCRIPTIONS)
        .bind(now)
        .execute(&mut *tx)
        .await)?
    .rows_affected();
    if deleted > 0 {
        bump_version(&mut tx).await?;
    }
    commit(tx).await?;
    Ok(deleted)
}

pub(super) async fn version(pool: &PgPool) -> Result<u64> {
    let version: i64 = db(sqlx::query_scalar(sql::SUBSCRIPTIONS_VERSION).fetch_one(pool).await)?;
    Ok(version as u64)
}

pub(super) async fn fanout_cursor(pool: &PgPool, source: SourceId) -> Result<u64> {
    let cursor: Option<i64> = db(sqlx::query_scalar(sql::FANOUT_CURSOR)
        .bind(source)
        .fetch_optional(pool)
        .await)?;
    Ok(cursor.unwrap_or(0) as u64)
}

/// Records a routed stretch and moves the cursor, in one transaction.
///
/// The cursor row is created if missing and then locked: a second router of the same
/// source waits for the first to commit and then sees the moved cursor (`Conflict`).
/// The source's subscriptions are key-share locked, so none can be deleted before the
/// matches referring to it commit; matches of those already deleted are dropped.
pub(super) async fn record_matches(pool: &PgPool, batch: RoutedBatch) -> Result<()> {
    let mut tx = begin(pool).await?;
    db(sqlx::query(
        "INSERT INTO fanout_cursors (source_id, last_sequence) VALUES ($1, 0) ON CONFLICT (source_id) DO NOTHING",
    )
    .bind(batch.source)
    .execute(&mut *tx)
    .await)?;
    let cursor: i64 = db(sqlx::query_scalar(
        "SELECT last_sequence FROM fanout_cursors WHERE source_id = $1 FOR UPDATE",
    )
    .bind(batch.source)
    .fetch_one(&mut *tx)
    .await)?;
    if cursor as u64 != batch.from_sequence {
        return Err(StoreError::Conflict(format!(
            "the fan-out cursor of source {} moved from {} to {cursor}",
            batch.source, batch.from_sequence
        )));
    }
    let (subscriptions, sequences): (Vec<i64>, Vec<i64>) = batch.matches.iter().map(|(s, q)| (s.0, to_i64(*q))).unzip();
    db(sqlx::query(
        "INSERT INTO deliveries (subscription_id, source_id, sequence, created_at, due_at, lease_until) \
         SELECT m.subscription_id, $1, m.sequence, $2, $2, $5 \
         FROM unnest($3::bigint[], $4::bigint[]) AS m(subscription_id, sequence) \
         WHERE m.subscription_id IN ( \
             SELECT id FROM event_subscriptions WHERE source_id = $1 FOR KEY SHARE \
         ) \
         ON CONFLICT (subscription_id, sequence) DO NOTHING",
    )
    .bind(batch.source)
    .bind(now())
    .bind(subscriptions)
    .bind(sequences)
    .bind(batch.lease_until)
    .execute(&mut *tx)
    .await)?;
    db(
        sqlx::query("UPDATE fanout_cursors SET last_sequence = $2 WHERE source_id = $1")
            .bind(batch.source)
            .bind(to_i64(batch.to_sequence))
            .execute(&mut *tx)
            .await,
    )?;
    commit(tx).await
}

pub(super) async fn matches(
    pool: &PgPool,
    subscription: SubscriptionId,
    after: u64,
    limit: u32,
) -> Result<Vec<StoredEvent>> {
    let query = sqlx::query(
        "SELECT e.sequence, e.event_id, e.schema, e.event_type, e.subject, e.published_at, e.body \
         FROM deliveries d JOIN events e ON e.source_id = d.source_id AND e.sequence = d.sequence \
         WHERE d.subscription_id = $1 AND d.sequence > $2 \
         AND d.sequence > (SELECT GREATEST(s.pruned_through, src.pruned_through) FROM event_subscriptions s \
             JOIN sources src ON src.id = s.source_id WHERE s.id = $1) \
         ORDER BY d.sequence LIMIT $3",
    )
    .bind(subscription)
    .bind(to_i64(after))
    .bind(i64::from(limit.min(crate::MAX_READ_LIMIT)));
    all(pool, query, stored_event_from_row).await
}
