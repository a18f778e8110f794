//! Driver glue: errors, transactions, times as PostgreSQL keeps them (TIMESTAMPTZ), and the
//! values PostgreSQL cannot take as they are.

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};

use crate::error::{Result, StoreError};
use crate::rows::{TimeColumns, decode};

/// A transaction on the pool; rolled back when dropped uncommitted.
pub(super) type Tx = Transaction<'static, Postgres>;

/// A driver error as a store error: a closed pool means the store was closed.
pub(super) fn backend(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::PoolClosed => StoreError::Closed,
        e => StoreError::backend(e),
    }
}

/// A driver result as a store result.
pub(super) fn db<T>(result: std::result::Result<T, sqlx::Error>) -> Result<T> {
    result.map_err(backend)
}

/// A driver result as a store result, with a unique violation as `Conflict(conflict())`.
pub(super) fn unique<T>(result: std::result::Result<T, sqlx::Error>, conflict: impl FnOnce() -> String) -> Result<T> {
    result.map_err(|e| match e {
        sqlx::Error::Database(ref d) if d.is_unique_violation() => StoreError::Conflict(conflict()),
        e => backend(e),
    })
}

pub(super) async fn begin(pool: &PgPool) -> Result<Tx> {
    db(pool.begin().await)
}

/// Commits; returns once the commit is durable (`synchronous_commit` is on unless the
/// database was configured otherwise).
pub(super) async fn commit(tx: Tx) -> Result<()> {
    db(tx.commit().await)
}

/// A number the store gives out (sequence, version, token) as it is bound: PostgreSQL
/// has no unsigned integers, and none of these comes near `i64::MAX`.
pub(super) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Now, at the precision PostgreSQL keeps (microseconds), so that what a write returns
/// equals what a later read gets.
pub(super) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A query with its arguments bound.
pub(super) type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// Every row a query returns, mapped.
pub(super) async fn all<T>(
    exec: impl PgExecutor<'_>,
    query: Query<'_>,
    map: fn(&PgRow) -> Result<T>,
) -> Result<Vec<T>> {
    db(query.fetch_all(exec).await)?.iter().map(map).collect()
}

/// The row a query returns, if any, mapped.
pub(super) async fn optional<T>(
    exec: impl PgExecutor<'_>,
    query: Query<'_>,
    map: fn(&PgRow) -> Result<T>,
) -> Result<Option<T>> {
    db(query.fetch_optional(exec).await)?.as_ref().map(map).transpose()
}

impl TimeColumns for PgRow {
    fn time(&self, column: &str) -> Result<DateTime<Utc>> {
        decode(self, column)
    }

    fn optional_time(&self, column: &str) -> Result<Option<DateTime<Utc>>> {
        decode(self, column)
    }
}
