//! Delivery state on SQLite: claims with leases, attempts, dead letters.

use chrono::{DateTime, Utc};
use mlgrid_core::time::format_event_time;
use sqlx::{AssertSqlSafe, QueryBuilder, Sqlite, SqliteConnection, SqlitePool};

use super::db::{all, db, to_i64};
use crate::delivery::*;
use crate::error::Result;
use crate::rows::{attempt_from_row, dead_letter_from_row, due_delivery_from_row};
use crate::sql::{self, DEAD_LETTERS};
use crate::subscriptions::SubscriptionId;

pub(super) async fn claim(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<DueDelivery>> {
    let now = format_event_time(now);
    let rows = db(sqlx::query(
        "SELECT d.subscription_id, d.sequence, d.attempts, e.schema, e.published_at, e.body \
         FROM deliveries d JOIN events e ON e.source_id = d.source_id AND e.sequence = d.sequence \
         JOIN event_subscriptions s ON s.id = d.subscription_id AND s.provisioning_state = 'Succeeded' \
         WHERE d.state = 'pending' AND d.due_at <= ? AND (d.lease_until IS NULL OR d.lease_until <= ?) \
         ORDER BY d.due_at LIMIT ?",
    )
    .bind(&now)
    .bind(&now)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await)?;
    let due: Vec<DueDelivery> = rows.iter().map(due_delivery_from_row).collect::<Result<_>>()?;
    if due.is_empty() {
        return Ok(due);
    }
    let mut lease = QueryBuilder::<Sqlite>::new("UPDATE deliveries SET lease_until = ");
    lease
        .push_bind(format_event_time(lease_until))
        .push(" WHERE (subscription_id, sequence) IN (VALUES ");
    let mut separated = lease.separated(", ");
    for d in &due {
        separated
            .push("(")
            .push_bind_unseparated(d.subscription_id)
            .push_unseparated(", ");
        separated.push_bind_unseparated(d.sequence as i64).push_unseparated(")");
    }
    lease.push(")");
    db(lease.build().persistent(false).execute(&mut *conn).await)?;
    Ok(due)
}

/// Rows per multi-row statement when recording attempts (at most 10 parameters a row).
const RECORD_CHUNK: usize = 1000;

/// Records attempts with two statements per chunk, whatever their number: the attempts
/// themselves, and the new state of every delivery they carried.
pub(super) async fn record_attempts(conn: &mut SqliteConnection, attempts: Vec<AttemptRecord>) -> Result<()> {
    for chunk in attempts.chunks(RECORD_CHUNK) {
        let mut insert = QueryBuilder::<Sqlite>::new(
            "INSERT INTO delivery_attempts (subscription_id, attempted_at, events, first_sequence, status_code, latency_ms, outcome, error, response_excerpt) ",
        );
        insert.push_values(chunk, |mut row, a| {
            row.push_bind(a.subscription_id)
                .push_bind(format_event_time(a.attempted_at))
                .push_bind(a.sequences.len() as i64)
                .push_bind(a.sequences.first().copied().unwrap_or(0) as i64)
                .push_bind(a.status_code.map(i64::from))
                .push_bind(a.latency_ms)
                .push_bind(a.outcome.clone())
                .push_bind(a.error.clone())
                .push_bind(a.response_excerpt.clone());
        });
        db(insert.build().persistent(false).execute(&mut *conn).await)?;
    }
    // A batch whose sequences are consecutive is updated as one range: every row of the
    // subscription in that range is one of the batch's (a delivery is one row per
    // subscription and sequence), and a range needs no per-row values.
    let (ranged, single): (Vec<&AttemptRecord>, Vec<&AttemptRecord>) =
        attempts.iter().partition(|a| consecutive_run(&a.sequences).is_some());
    for attempt in ranged {
        let (first, last) = consecutive_run(&attempt.sequences).expect("partitioned on it");
        let outcome = OutcomeColumns::of(attempt);
        db(sqlx::query(
            "UPDATE deliveries SET attempts = attempts + 1, lease_until = NULL, state = ?, due_at = ?, \
             dead_letter_reason = ?, finished_at = ?, last_attempt_at = ?, last_status = ?, last_outcome = ?, \
             last_error = ? WHERE subscription_id = ? AND sequence BETWEEN ? AND ?",
        )
        .bind(outcome.state)
        .bind(outcome.due_at)
        .bind(outcome.reason)
        .bind(outcome.finished_at)
        .bind(outcome.attempted_at)
        .bind(attempt.status_code.map(i64::from))
        .bind(&attempt.outcome)
        .bind(&attempt.error)
        .bind(attempt.subscription_id)
        .bind(first as i64)
        .bind(last as i64)
        .execute(&mut *conn)
        .await)?;
    }
    // The others row by row: (subscription, sequence, state, due_at, reason, finished_at,
    // attempted_at, status, outcome, error).
    let outcomes: Vec<(&AttemptRecord, OutcomeColumns)> =
        single.into_iter().map(|a| (a, OutcomeColumns::of(a))).collect();
    let rows: Vec<(&AttemptRecord, &OutcomeColumns, u64)> = outcomes
        .iter()
        .flat_map(|(a, outcome)| a.sequences.iter().map(move |s| (*a, outcome, *s)))
        .collect();
    for chunk in rows.chunks(RECORD_CHUNK) {
        let mut update = QueryBuilder::<Sqlite>::new(
            "UPDATE deliveries SET attempts = attempts + 1, lease_until = NULL, state = v.column3, due_at = v.column4, \
             dead_letter_reason = v.column5, finished_at = v.column6, last_attempt_at = v.column7, last_status = v.column8, \
             last_outcome = v.column9, last_error = v.column10 FROM (VALUES ",
        );
        let mut separated = update.separated(", ");
        for (attempt, outcome, sequence) in chunk {
            separated
                .push("(")
                .push_bind_unseparated(attempt.subscription_id)
                .push_unseparated(", ")
                .push_bind_unseparated(*sequence as i64)
                .push_unseparated(", ")
                .push_bind_unseparated(outcome.state)
                .push_unseparated(", ")
                .push_bind_unseparated(outcome.due_at.clone())
                .push_unseparated(", ")
                .push_bind_unseparated(outcome.reason.clone())
                .push_unseparated(", ")
                .push_bind_unseparated(outcome.finished_at.clone())
                .push_unseparated(", ")
                .push_bind_unseparated(outcome.attempted_at.clone())
                .push_unseparated(", ")
                .push_bind_unseparated(attempt.status_code.map(i64::from))
                .push_unseparated(", ")
                .push_bind_unseparated(attempt.outcome.clone())
                .push_unseparated(", ")
                .push_bind_unseparated(attempt.error.clone())
                .push_unseparated(")");
        }
        update.push(") AS v WHERE deliveries.subscription_id = v.column1 AND deliveries.sequence = v.column2");
        db(update.build().persistent(false).execute(&mut *conn).await)?;
    }
    Ok(())
}

/// Batches of at least this many events that are consecutive are updated as a range.
const RANGE_MIN: usize = 8;

/// `(first, last)` when `sequences` are at least [`RANGE_MIN`] consecutive numbers in order.
fn consecutive_run(sequences: &[u64]) -> Option<(u64, u64)> {
    let (&first, &last) = (sequences.first()?, sequences.last()?);
    let consecutive = sequences.len() >= RANGE_MIN && sequences.windows(2).all(|w| w[1] == w[0] + 1);
    consecutive.then_some((first, last))
}

/// The columns an attempt writes to each of its deliveries.
struct OutcomeColumns {
    state: &'static str,
    due_at: Option<String>,
    reason: Option<String>,
    finished_at: Option<String>,
    attempted_at: String,
}

impl OutcomeColumns {
    fn of(attempt: &AttemptRecord) -> OutcomeColumns {
        let attempted_at = format_event_time(attempt.attempted_at);
        let (state, due_at, reason) = attempt.next.columns();
        OutcomeColumns {
            state,
            due_at: due_at.map(format_event_time),
            reason: reason.map(str::to_owned),
            finished_at: (state != "pending").then(|| attempted_at.clone()),
            attempted_at,
        }
    }
}

pub(super) async fn release(
    conn: &mut SqliteConnection,
    subscription: SubscriptionId,
    sequences: Vec<u64>,
    due_at: DateTime<Utc>,
) -> Result<()> {
    let mut query = QueryBuilder::<Sqlite>::new("UPDATE deliveries SET lease_until = NULL, due_at = ");
    query
        .push_bind(format_event_time(due_at))
        .push(" WHERE state = 'pending' AND subscription_id = ")
        .push_bind(subscription);
    push_sequences(&mut query, "sequence", &Some(sequences));
    db(query.build().persistent(false).execute(&mut *conn).await)?;
    Ok(())
}

/// `AND {column} IN (...)` for an optional list of sequences.
fn push_sequences(query: &mut QueryBuilder<Sqlite>, column: &str, sequences: &Option<Vec<u64>>) {
    if let Some(sequences) = sequences {
        query.push(format_args!(" AND {column} IN ("));
        let mut separated = query.separated(", ");
        for sequence in sequences {
            separated.push_bind(*sequence as i64);
        }
        separated.push_unseparated(")");
    }
}

/// SQLite's `lower` changes ASCII letters only.
fn ascii_lower(column: &str) -> String {
    format!("lower({column})")
}

/// `AND` every condition of a dead-letter filter, on the `deliveries` row named `row`.
fn push_filter(query: &mut QueryBuilder<Sqlite>, row: &str, filter: &DeadLetterFilter) {
    push_sequences(query, &format!("{row}.sequence"), &filter.sequences);
    sql::push_dead_letter_conditions(query, row, filter, ascii_lower);
}

/// Whether a filter names sequences but none: it selects nothing.
fn selects_nothing(filter: &DeadLetterFilter) -> bool {
    filter.sequences.as_ref().is_some_and(Vec::is_empty)
}

pub(super) async fn redeliver(
    conn: &mut SqliteConnection,
    subscription: SubscriptionId,
    filter: DeadLetterFilter,
) -> Result<u64> {
    if selects_nothing(&filter) {
        return Ok(0);
    }
    let mut query = QueryBuilder::<Sqlite>::new(
        "UPDATE deliveries SET state = 'pending', attempts = 0, lease_until = NULL, dead_letter_reason = NULL, \
         finished_at = NULL, dead_letter_exported_at = NULL, due_at = ",
    );
    query
        .push_bind(format_event_time(Utc::now()))
        .push(" WHERE state = 'dead' AND subscription_id = ")
        .push_bind(subscription);
    push_filter(&mut query, "deliveries", &filter);
    Ok(db(query.build().persistent(false).execute(&mut *conn).await)?.rows_affected())
}

pub(super) async fn purge(
    conn: &mut SqliteConnection,
    subscription: SubscriptionId,
    filter: DeadLetterFilter,
) -> Result<u64> {
    if selects_nothing(&filter) {
        return Ok(0);
    }
    let mut query = QueryBuilder::<Sqlite>::new("DELETE FROM deliveries WHERE state = 'dead' AND subscription_id = ");
    query.push_bind(subscription);
    push_filter(&mut query, "deliveries", &filter);
    Ok(db(query.build().persistent(false).execute(&mut *conn).await)?.rows_affected())
}

pub(super) async fn attempts(pool: &SqlitePool, subscription: SubscriptionId, limit: u32) -> Result<Vec<Attempt>> {
    let query = sqlx::query(sql::ATTEMPTS);
    all(
        pool,
        query.bind(subscription).bind(limit.min(crate::MAX_READ_LIMIT)),
        attempt_from_row,
    )
    .await
}

pub(super) async fn stats(pool: &SqlitePool, subscription: SubscriptionId) -> Result<DeliveryStats> {
    let (delivered, dead, pending): (i64, i64, i64) = db(sqlx::query_as(
        "SELECT coalesce(sum(state = 'delivered'), 0), coalesce(sum(state = 'dead'), 0), coalesce(sum(state = 'pending'), 0) \
         FROM deliveries WHERE subscription_id = ?",
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
    pool: &SqlitePool,
    subscription: SubscriptionId,
    query: DeadLetterQuery,
) -> Result<Vec<DeadLetter>> {
    if selects_nothing(&query.filter) {
        return Ok(Vec::new());
    }
    let mut select = QueryBuilder::<Sqlite>::new(DEAD_LETTERS);
    select
        .push(" WHERE d.subscription_id = ")
        .push_bind(subscription)
        .push(" AND d.state = 'dead' AND d.sequence > ")
        .push_bind(to_i64(query.after));
    push_filter(&mut select, "d", &query.filter);
    select
        .push(" ORDER BY d.sequence LIMIT ")
        .push_bind(query.limit.min(crate::MAX_READ_LIMIT));
    all(pool, select.build(), dead_letter_from_row).await
}

pub(super) async fn unexported_dead_letters(
    pool: &SqlitePool,
    subscription: SubscriptionId,
    limit: u32,
) -> Result<Vec<DeadLetter>> {
    let query = sqlx::query(AssertSqlSafe(format!(
        "{DEAD_LETTERS} WHERE d.subscription_id = ? AND d.state = 'dead' AND d.dead_letter_exported_at IS NULL \
         ORDER BY d.sequence LIMIT ?"
    )))
    .bind(subscription)
    .bind(limit.min(crate::MAX_READ_LIMIT));
    all(pool, query, dead_letter_from_row).await
}

pub(super) async fn mark_exported(
    conn: &mut SqliteConnection,
    subscription: SubscriptionId,
    sequences: Vec<u64>,
) -> Result<()> {
    if sequences.is_empty() {
        return Ok(());
    }
    let mut query = QueryBuilder::<Sqlite>::new("UPDATE deliveries SET dead_letter_exported_at = ");
    query
        .push_bind(format_event_time(Utc::now()))
        .push(" WHERE state = 'dead' AND subscription_id = ")
        .push_bind(subscription);
    push_sequences(&mut query, "sequence", &Some(sequences));
    db(query.build().persistent(false).execute(&mut *conn).await)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{RANGE_MIN, consecutive_run};

    #[test]
    fn only_long_runs_of_consecutive_sequences_are_ranges() {
        let run: Vec<u64> = (5..5 + RANGE_MIN as u64).collect();
        assert_eq!(consecutive_run(&run), Some((5, 4 + RANGE_MIN as u64)));
        let mut gap = run.clone();
        gap[3] += 100;
        assert_eq!(consecutive_run(&gap), None, "a gap");
        let mut unordered = run.clone();
        unordered.swap(0, 1);
        assert_eq!(consecutive_run(&unordered), None, "out of order");
        assert_eq!(consecutive_run(&run[..RANGE_MIN - 1]), None, "too short");
        assert_eq!(consecutive_run(&[]), None);
    }
}
