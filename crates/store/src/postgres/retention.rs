//! Retention on PostgreSQL: pruning batches as plain `DELETE`s of at most a batch of rows
//! each, in short transactions; autovacuum makes the space reusable as for any delete.

use std::collections::BTreeMap;

use sqlx::PgPool;

use super::db::{all, begin, commit, db, optional, to_i64};
use crate::error::{Result, StoreError};
use crate::model::*;
use crate::rows::{log_entry_from_row, source_from_row};
use crate::sql::{self, OLD_ATTEMPTS, YOUNG_ATTEMPT};

/// How far a source's log needs no more routing: the fan-out's cursor, or the earliest
/// start of its subscriptions (each matches only events after its start), or its last
/// sequence when it has none (one created later starts there).
const ROUTED_THROUGH: &str = "GREATEST(coalesce((SELECT last_sequence FROM fanout_cursors WHERE source_id = s.id), 0), \
     coalesce((SELECT min(start_sequence) FROM event_subscriptions WHERE source_id = s.id), s.last_sequence))";

pub(super) async fn set_retention(pool: &PgPool, source: SourceId, retention: SourceRetention) -> Result<Source> {
    let query = sqlx::query(sql::SET_RETENTION)
        .bind(retention.time.map(|t| to_i64(t.seconds())))
        .bind(retention.max_bytes.map(to_i64))
        .bind(source);
    optional(pool, query, source_from_row)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("source {source}")))
}

pub(super) async fn log_head(pool: &PgPool, source: SourceId, after: u64, limit: u32) -> Result<LogHead> {
    let row: Option<(i64, i64, i64)> = db(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT s.pruned_through, s.stored_bytes, {ROUTED_THROUGH} FROM sources s WHERE s.id = $1"
    )))
    .bind(source)
    .fetch_optional(pool)
    .await)?;
    let (pruned_through, stored_bytes, routed_through) =
        row.ok_or_else(|| StoreError::NotFound(format!("source {source}")))?;
    let query = sqlx::query(
        "SELECT sequence, published_at, octet_length(body)::bigint AS bytes FROM events \
         WHERE source_id = $1 AND sequence > $2 ORDER BY sequence LIMIT $3",
    )
    .bind(source)
    .bind(to_i64(after).max(pruned_through))
    .bind(i64::from(limit.min(crate::MAX_READ_LIMIT)));
    Ok(LogHead {
        pruned_through: pruned_through.max(0) as u64,
        stored_bytes: stored_bytes.max(0) as u64,
        routed_through: routed_through.max(0) as u64,
        entries: all(pool, query, log_entry_from_row).await?,
    })
}

/// One transaction: the deletes first, the source's row (which appends lock too) last,
/// so that appends wait on it only for the end of the batch.
pub(super) async fn prune_events(pool: &PgPool, source: SourceId, through: u64, limit: u32) -> Result<PrunedEvents> {
    let mut tx = begin(pool).await?;
    let mark: Option<i64> = db(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT GREATEST(s.pruned_through, LEAST($2, {ROUTED_THROUGH})) FROM sources s WHERE s.id = $1"
    )))
    .bind(source)
    .bind(to_i64(through))
    .fetch_optional(&mut *tx)
    .await)?;
    let mark = mark.ok_or_else(|| StoreError::NotFound(format!("source {source}")))?;
    let sizes: Vec<i64> = db(sqlx::query_scalar(
        "DELETE FROM events WHERE (source_id, sequence) IN (SELECT e.source_id, e.sequence FROM events e \
             WHERE e.source_id = $1 AND e.sequence <= $2 \
             AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.source_id = e.source_id AND d.sequence = e.sequence \
                 AND d.state != 'delivered') \
             ORDER BY e.sequence LIMIT $3) \
         RETURNING octet_length(body)::bigint",
    )
    .bind(source)
    .bind(mark)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await)?;
    let bytes: i64 = sizes.iter().sum();
    db(sqlx::query(
        "UPDATE sources SET pruned_through = GREATEST(pruned_through, $2), \
         stored_bytes = GREATEST(0, stored_bytes - $3) WHERE id = $1",
    )
    .bind(source)
    .bind(mark)
    .bind(bytes)
    .execute(&mut *tx)
    .await)?;
    commit(tx).await?;
    Ok(PrunedEvents {
        events: sizes.len() as u64,
        bytes: bytes as u64,
        pruned_through: mark as u64,
    })
}

pub(super) async fn prunable_history(pool: &PgPool, cutoffs: HistoryCutoffs) -> Result<Vec<(SourceId, HistoryCounts)>> {
    let mut counts: BTreeMap<SourceId, HistoryCounts> = BTreeMap::new();
    for (state, before) in [("delivered", cutoffs.delivered_before), ("dead", cutoffs.dead_before)] {
        let rows: Vec<(SourceId, i64)> = db(sqlx::query_as(
            "SELECT source_id, count(*) FROM deliveries WHERE state = $1 AND finished_at < $2 GROUP BY source_id",
        )
        .bind(state)
        .bind(before)
        .fetch_all(pool)
        .await)?;
        for (source, n) in rows {
            let entry = counts.entry(source).or_default();
            if state == "delivered" {
                entry.deliveries += n as u64;
            } else {
                entry.dead_letters += n as u64;
            }
        }
    }
    let rows: Vec<(SourceId, i64)> = db(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT s.source_id, count(*) FROM delivery_attempts a JOIN event_subscriptions s ON s.id = a.subscription_id \
         WHERE a.id < {YOUNG_ATTEMPT} GROUP BY s.source_id"
    )))
    .bind(cutoffs.attempts_before)
    .fetch_all(pool)
    .await)?;
    for (source, n) in rows {
        counts.entry(source).or_default().attempts += n as u64;
    }
    Ok(counts.into_iter().collect())
}

pub(super) async fn prune_history(
    pool: &PgPool,
    cutoffs: HistoryCutoffs,
    limit: u32,
) -> Result<Vec<(SourceId, HistoryCounts)>> {
    let mut counts: BTreeMap<SourceId, HistoryCounts> = BTreeMap::new();
    let mut tx = begin(pool).await?;
    for (state, before) in [("delivered", cutoffs.delivered_before), ("dead", cutoffs.dead_before)] {
        // Claimed rows are skipped, not waited for: the next pass takes them.
        let gone: Vec<(SourceId, i64, i64)> = db(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH gone AS (DELETE FROM deliveries WHERE (subscription_id, sequence) IN \
                 (SELECT subscription_id, sequence FROM deliveries WHERE state = '{state}' AND finished_at < $1 \
                  ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED) \
                 RETURNING subscription_id, source_id, sequence), \
             marked AS (UPDATE event_subscriptions s SET pruned_through = GREATEST(s.pruned_through, m.mark) \
                 FROM (SELECT subscription_id, max(sequence) AS mark FROM gone GROUP BY subscription_id) m \
                 WHERE s.id = m.subscription_id) \
             SELECT source_id, count(*), 0::bigint FROM gone GROUP BY source_id"
        )))
        .bind(before)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await)?;
        for (source, n, _) in gone {
            let entry = counts.entry(source).or_default();
            if state == "delivered" {
                entry.deliveries += n as u64;
            } else {
                entry.dead_letters += n as u64;
            }
        }
    }
    let gone: Vec<(SourceId, i64)> = db(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "WITH gone AS (DELETE FROM delivery_attempts WHERE id IN \
             ({OLD_ATTEMPTS}) \
             RETURNING subscription_id) \
         SELECT s.source_id, count(*) FROM gone JOIN event_subscriptions s ON s.id = gone.subscription_id \
         GROUP BY s.source_id"
    )))
    .bind(cutoffs.attempts_before)
    .bind(i64::from(limit))
    .fetch_all(&mut *tx)
    .await)?;
    for (source, n) in gone {
        counts.entry(source).or_default().attempts += n as u64;
    }
    commit(tx).await?;
    Ok(counts.into_iter().collect())
}
