//! Driver glue: errors, and times as SQLite keeps them (RFC 3339 TEXT).

use chrono::{DateTime, Utc};
use mlgrid_core::time::parse_rfc3339;
use sqlx::sqlite::SqliteRow;

use crate::error::{Result, StoreError};
use crate::rows::{StoredRow, TimeColumns};

/// A driver result as a store result.
pub(super) fn db<T>(result: std::result::Result<T, sqlx::Error>) -> Result<T> {
    result.map_err(StoreError::backend)
}

pub(super) fn unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
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
