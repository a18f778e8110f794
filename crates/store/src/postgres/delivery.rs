//! Delivery state on PostgreSQL: claims with leases, attempts, dead letters.

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, PgPool, Postgres, QueryBuilder};

use super::db::{all, begin, commit, db, now, to_i64};
use crate::delivery::*;
use crate::error::Result;
use crate::rows::{attempt_from_row, dead_letter_from_row, due_delivery_from_row};
use crate::sql::{self, DEAD_LETTERS};
use crate::subscriptions::SubscriptionId;

/// Claims due deliveries of active (`Succeeded`) subscriptions, the longest due first.
///
/// One statement locks the rows it picks with `SKIP LOCKED` and sets their lease: a
/// node never waits for another's claim, and never gets a delivery another node holds
/// (claimed rows are locked until the lease is committed, and leased afterwards).
pub(super) async fn claim(
    pool: &PgPool,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<DueDelivery>> {
    let query = sqlx::query(
        "WITH due AS ( \
             SELECT d.subscription_id, d.sequence FROM deliveries d \
             JOIN event_subscriptions s ON s.id = d.subscription_id \
             WHERE d.state = 'pending' AND d.due_at <= $1 AND (d.lease_until IS NULL OR d.lease_until <= $1) \
             AND s.provisioning_state = 'Succeeded' \
             ORDER BY d.due_at, d.subscription_id, d.sequence LIMIT $3 \
             FOR UPDATE OF d SKIP LOCKED \
         ), leased AS ( \
             UPDATE deliveries d SET lease_until = $2 FROM due \
             WHERE d.subscription_id = due.subscription_id AND d.sequence = due.sequence \
             RETURNING d.subscription_id, d.sequence, d.attempts, d.source_id, d.due_at \
         ) \
         SELECT l.subscription_id, l.sequence, l.attempts, e.schema, e.published_at, e.body \
         FROM leased l JOIN events e ON e.source_id = l.source_id AND e.sequence = l.sequence \
         ORDER BY l.due_at, l.subscription_id, l.sequence",
    )
    .bind(now)
    .bind(lease_until)
    .bind(i64::from(limit));
    all(pool, query, due_delivery_from_row).await
}

/// Records attempts with two statements, whatever their number: the attempts
/// themselves, and the new state of every delivery they carried.
pub(super) async fn record_attempts(pool: &PgPool, attempts: Vec<AttemptRecord>) -> Result<()> {
    let mut tx = begin(pool).await?;
    db(sqlx::query(
        "INSERT INTO delivery_attempts (subscription_id, attempted_at, events, first_sequence, status_code, \
         latency_ms, outcome, error, response_excerpt) \
         SELECT a.subscription_id, a.attempted_at, a.events, a.first_sequence, a.status_code, a.latency_ms, \
             a.outcome, a.error, a.response_excerpt \
         FROM unnest($1::bigint[], $2::timestamptz[], $3::bigint[], $4::bigint[], $5::bigint[], $6::float8[], \
             $7::text[], $8::text[], $9::text[]) WITH ORDINALITY AS a(subscription_id, attempted_at, events, \
             first_sequence, status_code, latency_ms, outcome, error, response_excerpt, n) \
         ORDER BY a.n",
    )
    .bind(attempts.iter().map(|a| a.subscription_id).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.attempted_at).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.sequences.len() as i64).collect::<Vec<_>>())
    .bind(
        attempts
            .iter()
            .map(|a| to_i64(a.sequences.first().copied().unwrap_or(0)))
            .collect::<Vec<_>>(),
    )
    .bind(
        attempts
            .iter()
            .map(|a| a.status_code.map(i64::from))
            .collect::<Vec<_>>(),
    )
    .bind(attempts.iter().map(|a| a.latency_ms).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.outcome.as_str()).collect::<Vec<_>>())
    .bind(attempts.iter().map(|a| a.error.as_deref()).collect::<Vec<_>>())
    .bind(
        attempts
            .iter()
            .map(|a| a.response_excerpt.as_deref())
            .collect::<Vec<_>>(),
    )
    .execute(&mut *tx)
    .await)?;

    // One row per delivery.
    let mut rows = DeliveryUpdates::default();
    for attempt in &attempts {
        for sequence in &attempt.sequences {
            rows.push(attempt, *sequence);
        }
    }
    db(sqlx::query(
        "UPDATE deliveries d SET attempts = d.attempts + 1, lease_until = NULL, state = v.state, due_at = v.due_at, \
         dead_letter_reason = v.reason, finished_at = CASE WHEN v.state = 'pending' THEN NULL ELSE v.attempted_at END, \
         last_attempt_at = v.attempted_at, last_status = v.status, last_outcome = v.outcome, last_error = v.error \
         FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::timestamptz[], $5::text[], $6::timestamptz[], \
             $7::bigint[], $8::text[], $9::text[]) \
             AS v(subscription_id, sequence, state, due_at, reason, attempted_at, status, outcome, error) \
         WHERE d.subscription_id = v.subscription_id AND d.sequence = v.sequence",
    )
    .bind(rows.subscription)
    .bind(rows.sequence)
    .bind(rows.state)
    .bind(rows.due_at)
    .bind(rows.reason)
    .bind(rows.attempted_at)
    .bind(rows.status)
    .bind(rows.outcome)
    .bind(rows.error)
    .execute(&mut *tx)
    .await)?;
    commit(tx).await
}

/// The new state of each delivery an attempt carried, column by column (for `unnest`).
#[derive(Default)]
struct DeliveryUpdates {
    subscription: Vec<i64>,
    sequence: Vec<i64>,
    state: Vec<&'static str>,
    due_at: Vec<Option<DateTime<Utc>>>,
    reason: Vec<Option<String>>,
    attempted_at: Vec<DateTime<Utc>>,
    status: Vec<Option<i64>>,
    outcome: Vec<String>,
    error: Vec<Option<String>>,
}

impl DeliveryUpdates {
    fn push(&mut self, attempt: &AttemptRecord, sequence: u64) {
        let (state, due_at, reason) = attempt.next.columns();
        self.subscription.push(attempt.subscription_id.0);
        self.sequence.push(to_i64(sequence));
        self.state.push(state);
        self.due_at.push(due_at);
        self.reason.push(reason.map(str::to_owned));
        self.attempted_at.push(attempt.attempted_at);
        self.status.push(attempt.status_code.map(i64::from));
        self.outcome.push(attempt.outcome.clone());
        self.error.push(attempt.error.clone());
    }
}

pub(super) async fn release(
    pool: &PgPool,
    subscription: SubscriptionId,
    sequences: Vec<u64>,
    due_at: DateTime<Utc>,
) -> Result<()> {
    db(sqlx::query(
        "UPDATE deliveries SET lease_until = NULL, due_at = $1 \
         WHERE state = 'pending' AND subscription_id = $2 AND sequence = ANY($3)",
    )
    .bind(due_at)
    .bind(subscription)
    .bind(sequences.into_iter().map(to_i64).collect::<Vec<_>>())
    .execute(pool)
    .await)?;
    Ok(())
}

/// PostgreSQL's `lower` follows the locale; Event Grid's names compare ignoring ASCII
/// case only.
fn ascii_lower(column: &str) -> String {
    format!("translate({column}, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz')")
}

/// `AND` every condition of a dead-letter filter, on the `deliveries` row named `row`.
fn push_filter(query: &mut QueryBuilder<Postgres>, row: &str, filter: &DeadLetterFilter) {
    if let Some(sequences) = &filter.sequences {
        query
            .push(format_args!(" AND {row}.sequence = ANY("))
            .push_bind(sequences.iter().copied().map(to_i64).collect::<Vec<_>>())
            .push(")");
    }
    sql::push_dead_letter_conditions(query, row, filter, ascii_lower);
}

pub(super) async fn redeliver(pool: &PgPool, subscription: SubscriptionId, filter: DeadLetterFilter) -> Result<u64> {
    let mut query = QueryBuilder::<Postgres>::new(
        "UPDATE deliveries SET state = 'pending', attempts = 0, lease_until = NULL, dead_letter_reason = NULL, \
         finished_at = NULL, dead_letter_exported_at = NULL, due_at = ",
    );
    query
        .push_bind(now())
        .push(" WHERE state = 'dead' AND subscription_id = ")
        .push_bind(subscription);
    push_filter(&mut query, "deliveries", &filter);
    Ok(db(query.build().execute(pool).await)?.rows_affected())
}

pub(super) async fn purge(pool: &PgPool, subscription: SubscriptionId, filter: DeadLetterFilter) -> Result<u64> {
    let mut query = QueryBuilder::<Postgres>::new("DELETE FROM deliveries WHERE state = 'dead' AND subscription_id = ");
    query.push_bind(subscription);
    push_filter(&mut query, "deliveries", &filter);
    Ok(db(query.build().execute(pool).await)?.rows_affected())
}

pub(super) async fn attempts(pool: &PgPool, subscription: SubscriptionId, limit: u32) -> Result<Vec<Attempt>> {
    let query = sqlx::query(sql::ATTEMPTS)
        .bind(subscription)
        .bind(i64::from(limit.min(crate::MAX_READ_LIMIT)));
    all(pool, query, attempt_from_row).await
}

pub(super) async fn stats(pool: &PgPool, subscription: SubscriptionId) -> Result<DeliveryStats> {
    let (delivered, dead, pending): (i64, i64, i64) = db(sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'delivered'), count(*) FILTER (WHERE state = 'dead'), \
         count(*) FILTER (WHERE state = 'pending') FROM deliveries WHERE subscription_id = $1",
    )
    .bind(subscription)
    .fetch_one(pool)
    .await)?;
    let (failed, last_error): (i64, Option<String>) = db(sqlx::query_as(sql::FAILED_ATTEMPTS)
        .bind(subscription)
        .fetch_one(pool)
        .await)?;
    Ok(DeliveryStats {
        delivered: delivered as u64,
        dead_lettered: dead as u64,
        pending: pending as u64,
        failed_attempts: failed as u64,
        last_error,
    })
}

pub(super) async fn dead_letters(
    pool: &PgPool,
    subscription: SubscriptionId,
    query: DeadLetterQuery,
) -> Result<Vec<DeadLetter>> {
    let mut select = QueryBuilder::<Postgres>::new(DEAD_LETTERS);
    select
        .push(" WHERE d.subscription_id = ")
        .push_bind(subscription)
        .push(" AND d.state = 'dead' AND d.sequence > ")
        .push_bind(to_i64(query.after));
    push_filter(&mut select, "d", &query.filter);
    select
        .push(" ORDER BY d.sequence LIMIT ")
        .push_bind(i64::from(query.limit.min(crate::MAX_READ_LIMIT)));
    all(pool, select.build(), dead_letter_from_row).await
}

pub(super) async fn unexported_dead_letters(
    pool: &PgPool,
    subscription: SubscriptionId,
    limit: u32,
) -> Result<Vec<DeadLetter>> {
    let query = sqlx::query(AssertSqlSafe(format!(
        "{DEAD_LETTERS} WHERE d.subscription_id = $1 AND d.state = 'dead' AND d.dead_letter_exported_at IS NULL \
         ORDER BY d.sequence LIMIT $2"
    )))
    .bind(subscription)
    .bind(i64::from(limit.min(crate::MAX_READ_LIMIT)));
    all(pool, query, dead_letter_from_row).await
}

pub(super) async fn mark_exported(pool: &PgPool, subscription: SubscriptionId, sequences: Vec<u64>) -> Result<()> {
    db(sqlx::query(
        "UPDATE deliveries SET dead_letter_exported_at = $1 \
         WHERE state = 'dead' AND subscription_id = $2 AND sequence = ANY($3)",
    )
    .bind(now())
    .bind(subscription)
    .bind(sequences.into_iter().map(to_i64).collect::<Vec<_>>())
    .execute(pool)
    .await)?;
    Ok(())
}
