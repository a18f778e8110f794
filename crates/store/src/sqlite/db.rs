//! Driver glue: times as SQLite keeps them (RFC 3339 TEXT), and what both backends share.

use chrono::{DateTime, Utc};
use mlgrid_core::time::{format_event_time, parse_rfc3339};
use sqlx::sqlite::SqliteRow;

use crate::error::{Result, StoreError};
use crate::rows::{StoredRow, TimeColumns};

pub(super) use crate::error::{db, unique};
pub(super) use crate::rows::{all, optional};
pub(super) use crate::sql::to_i64;

/// Now, as SQLite keeps times.
pub(super) fn now() -> String {
    format_event_time(Utc::now())
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
