//! Driver glue: errors, transactions, times as PostgreSQL keeps them (TIMESTAMPTZ), and the
//! values PostgreSQL cannot take as they are.

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};

use crate::error::Result;
use crate::rows::{TimeColumns, decode};

/// A transaction on the pool; rolled back when dropped uncommitted.
pub(super) type Tx = Transaction<'static, Postgres>;

pub(super) use crate::error::{db, unique};
pub(super) use crate::sql::to_i64;

pub(super) async fn begin(pool: &PgPool) -> Result<Tx> {
    db(pool.begin().await)
}

/// Commits; returns once the commit is durable (`synchronous_commit` is on unless the
/// database was configured otherwise).
pub(super) async fn commit(tx: Tx) -> Result<()> {
    db(tx.commit().await)
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
