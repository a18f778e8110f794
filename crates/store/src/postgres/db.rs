//! Driver glue: errors, transactions, times as PostgreSQL keeps them (TIMESTAMPTZ), and the
//! values PostgreSQL cannot take as they are.

use chrono::{DateTime, SubsecRound, Utc};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Transaction};

use crate::error::Result;
use crate::rows::{TimeColumns, decode};

/// A transaction on the pool; rolled back when dropped uncommitted.
pub(super) type Tx = Transaction<'static, Postgres>;

pub(super) use crate::error::{db, unique};
pub(super) use crate::rows::{all, optional};
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

impl TimeColumns for PgRow {
    fn time(&self, column: &str) -> Result<DateTime<Utc>> {
        decode(self, column)
    }

    fn optional_time(&self, column: &str) -> Result<Option<DateTime<Utc>>> {
        decode(self, column)
    }
}
