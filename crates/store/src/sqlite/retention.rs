//! Retention on SQLite: pruning batches, each one more write for the writer task (one
//! short transaction among the group commits, never a long lock).

use std::collections::BTreeMap;

use mlgrid_core::time::format_event_time;
use sqlx::{AssertSqlSafe, SqliteConnection, SqlitePool};

use super::db::{all, db, to_i64};
use crate::error::{Result, StoreError};
use crate::model::*;
use crate::rows::log_entry_from_row;
use crate::sql::{self, OLD_ATTEMPTS, YOUNG_ATTEMPT};
use crate::subscriptions::SubscriptionId;

/// How far a source's log needs no more routing: the fan-out's cursor, or the earliest
/// start of its subscriptions (each matches only events after its start), or its last
/// sequence when it has none (one created later starts there).
const ROUTED_THROUGH: &str = "max(coalesce((SELECT last_sequence FROM fanout_cursors WHERE source_id = s.id), 0), \
     coalesce((SELECT min(start_sequence) FROM event_subscriptions WHERE source_id = s.id), s.last_sequence))";

pub(super) async fn set_retention(
    conn: &mut SqliteConnection,
    source: SourceId,
    retention: SourceRetention,
) -> Result<Source> {
    let row = sqlx::query(sql::SET_RETENTION)
        .bind(retention.time.map(|t| to_i64(t.seconds())))
        .bind(retention.max_bytes.map(to_i64))
        .bind(source)
        .fetch_optional(&mut *conn)
        .await
        .map_err(StoreError::backend)?;
    let row = row.ok_or_else(|| StoreError::NotFound(format!("source {source}")))?;
    crate::rows::source_from_row(&row)
}

pub(super) async fn log_head(pool: &SqlitePool, source: SourceId, after: u64, limit: u32) -> Result<LogHead> {
    let row: Option<(i64, i64, i64)> = db(sqlx::query_as(AssertSqlSafe(format!(
        "SELECT s.pruned_through, s.stored_bytes, {ROUTED_THROUGH} FROM sources s WHERE s.id = ?"
    )))
    .bind(source)
    .fetch_optional(pool)
    .await)?;
    let (pruned_through, stored_bytes, routed_through) =
        row.ok_or_else(|| StoreError::NotFound(format!("source {source}")))?;
    let query = sqlx::query(
        "SELECT sequence, published_at, length(CAST(body AS BLOB)) AS bytes FROM events \
         WHERE source_id = ? AND sequence > ? ORDER BY sequence LIMIT ?",
    )
    .bind(source)
    .bind(to_i64(after).max(pruned_through))
    .bind(limit.min(crate::MAX_READ_LIMIT));
    let entries = all(pool, query, log_entry_from_row).await?;
    Ok(LogHead {
        pruned_through: pruned_through.max(0) as u64,
        stored_bytes: stored_bytes.max(0) as u64,
        routed_through: routed_through.max(0) as u64,
        entries,
    })
}

pub(super) async fn prune_events(
    conn: &mut SqliteConnection,
    source: SourceId,
    through: u64,
    limit: u32,
) -> Result<PrunedEvents> {
    let mark: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "UPDATE sources AS s SET pruned_through = max(pruned_through, min(?, {ROUTED_THROUGH})) \
         WHERE id = ? RETURNING pruned_through"
    )))
    .bind(to_i64(through))
    .bind(source)
    .fetch_optional(&mut *conn)
    .await
    .map_err(StoreError::backend)?;
    let mark = mark.ok_or_else(|| StoreError::NotFound(format!("source {source}")))?;
    let sizes: Vec<i64> = sqlx::query_scalar(
        "DELETE FROM events WHERE rowid IN (SELECT e.rowid FROM events e WHERE e.source_id = ?1 AND e.sequence <= ?2 \
             AND NOT EXISTS (SELECT 1 FROM event_subscriptions s JOIN deliveries d ON d.subscription_id = s.id \
                 AND d.sequence = e.sequence WHERE s.source_id = e.source_id AND d.state != 'delivered') \
             ORDER BY e.sequence LIMIT ?3) \
         RETURNING length(CAST(body AS BLOB))",
    )
    .bind(source)
    .bind(mark)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::backend)?;
    let bytes: i64 = sizes.iter().sum();
    if bytes > 0 {
        sqlx::query("UPDATE sources SET stored_bytes = max(0, stored_bytes - ?) WHERE id = ?")
            .bind(bytes)
            .bind(source)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::backend)?;
    }
    Ok(PrunedEvents {
        events: sizes.len() as u64,
        bytes: bytes as u64,
        pruned_through: mark as u64,
    })
}

pub(super) async fn prunable_history(
    pool: &SqlitePool,
    cutoffs: HistoryCutoffs,
) -> Result<Vec<(SourceId, HistoryCounts)>> {
    let mut counts: BTreeMap<SourceId, HistoryCounts> = BTreeMap::new();
    for (state, before) in [("delivered", cutoffs.delivered_before), ("dead", cutoffs.dead_before)] {
        let rows: Vec<(SourceId, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT source_id, count(*) FROM deliveries WHERE state = '{state}' AND finished_at < ? GROUP BY source_id"
        )))
        .bind(format_event_time(before))
        .fetch_all(pool)
        .await
        .map_err(StoreError::backend)?;
        for (source, n) in rows {
            let entry = counts.entry(source).or_default();
            if state == "delivered" {
                entry.deliveries += n as u64;
            } else {
                entry.dead_letters += n as u64;
            }
        }
    }
    let rows: Vec<(SourceId, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT s.source_id, count(*) FROM delivery_attempts a JOIN event_subscriptions s ON s.id = a.subscription_id \
         WHERE a.id < {YOUNG_ATTEMPT} GROUP BY s.source_id"
    )))
    .bind(format_event_time(cutoffs.attempts_before))
    .fetch_all(pool)
    .await
    .map_err(StoreError::backend)?;
    for (source, n) in rows {
        counts.entry(source).or_default().attempts += n as u64;
    }
    Ok(counts.into_iter().collect())
}

pub(super) async fn prune_history(
    conn: &mut SqliteConnection,
    cutoffs: HistoryCutoffs,
    limit: u32,
) -> Result<Vec<(SourceId, HistoryCounts)>> {
    let mut counts: BTreeMap<SourceId, HistoryCounts> = BTreeMap::new();
    let mut marks: BTreeMap<SubscriptionId, i64> = BTreeMap::new();
    for (state, before) in [("delivered", cutoffs.delivered_before), ("dead", cutoffs.dead_before)] {
        // The state is written out, not bound, so that SQLite reads its partial index.
        let gone: Vec<(SubscriptionId, SourceId, i64)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "DELETE FROM deliveries WHERE (subscription_id, sequence) IN (SELECT subscription_id, sequence \
                 FROM deliveries WHERE state = '{state}' AND finished_at < ?1 ORDER BY finished_at LIMIT ?2) \
             RETURNING subscription_id, source_id, sequence"
        )))
        .bind(format_event_time(before))
        .bind(limit)
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::backend)?;
        for (subscription, source, sequence) in gone {
            let entry = counts.entry(source).or_default();
            if state == "delivered" {
                entry.deliveries += 1;
            } else {
                entry.dead_letters += 1;
            }
            let mark = marks.entry(subscription).or_default();
            *mark = (*mark).max(sequence);
        }
    }
    for (subscription, mark) in marks {
        sqlx::query("UPDATE event_subscriptions SET pruned_through = max(pruned_through, ?) WHERE id = ?")
            .bind(mark)
            .bind(subscription)
            .execute(&mut *conn)
            .await
            .map_err(StoreError::backend)?;
    }
    let gone: Vec<SubscriptionId> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "DELETE FROM delivery_attempts WHERE id IN ({OLD_ATTEMPTS}) \
         RETURNING subscription_id"
    )))
    .bind(format_event_time(cutoffs.attempts_before))
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::backend)?;
    let mut by_subscription: BTreeMap<SubscriptionId, u64> = BTreeMap::new();
    for subscription in gone {
        *by_subscription.entry(subscription).or_default() += 1;
    }
    for (subscription, n) in by_subscription {
        let source: Option<SourceId> = sqlx::query_scalar("SELECT source_id FROM event_subscriptions WHERE id = ?")
            .bind(subscription)
            .fetch_optional(&mut *conn)
            .await
            .map_err(StoreError::backend)?;
        if let Some(source) = source {
            counts.entry(source).or_default().attempts += n;
        }
    }
    Ok(counts.into_iter().collect())
}
