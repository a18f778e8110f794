//! Driver glue: errors, times as SQLite keeps them (RFC 3339 TEXT), and reads on the pool.

use chrono::{DateTime, Utc};
use mlgrid_core::time::{format_event_time, parse_rfc3339};
use sqlx::sqlite::{SqliteArguments, SqliteRow};
use sqlx::{Sqlite, SqliteExecutor};

use crate::error::{Result, StoreError};
use crate::rows::{StoredRow, TimeColumns};

pub(super) use crate::error::{db, unique};
pub(super) use crate::sql::to_i64;

/// Now, as SQLite keeps times.
pub(super) fn now() -> String {
    format_event_time(Utc::now())
}

/// A query with its arguments bound.
pub(super) type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments>;

/// Every row a query returns, mapped.
pub(super) async fn all<T>(
    exec: impl SqliteExecutor<'_>,
    query: Query<'_>,
    map: fn(&SqliteRow) -> Result<T>,
) -> Result<Vec<T>> {
    db(query.fetch_all(exec).await)?.iter().map(map).collect()
}

/// The row a query returns, if any, mapped.
pub(super) async fn optional<T>(
    exec: impl SqliteExecutor<'_>,
    query: Query<'_>,
    map: fn(&SqliteRow) -> Result<T>,
) -> Result<Option<T>> {
    db(query.fetch_optional(exec).await)?.as_ref().map(map).transpose()
}

impl TimeColumns for SqliteRow {
    fn time(&self, column: &str) -> Result<DateTime<Utc>> {
        let text = self.text(column)?;
        parse_rfc3339(&text).map_err(|_| StoreError::Corrupt(format!("{column} `{text}` is not a time")))
    }

    fn optional_time(&self, column: &str) -> Result<Option<DateTime<Utc>>> {
        let text = self.optional_text(column)?;
        text.map(|t| parse_rfc3339(&t).map_err(|_| StoreError::Corrupt(format!("{column} `{t}`"))))
            .transpose()
    }
}
