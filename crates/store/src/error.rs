use std::sync::Arc;

/// Why a store call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The named thing exists already, or a uniqueness rule forbids the change.
    #[error("{0}")]
    Conflict(String),
    /// The request is wrong in a way only the stored data can tell (e.g. a model
    /// reference to a version that does not exist).
    #[error("{0}")]
    Invalid(String),
    /// An `If-Match` etag is not the resource's current etag.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The store has been closed; no more writes are taken.
    #[error("the store is shut down")]
    Closed,
    /// The disk holding the database is full (or the database reached its size limit):
    /// the write was rolled back whole. Writes succeed again, by themselves, once space
    /// is freed; callers pause and retry rather than give up.
    #[error("the disk holding the database is full ({0}); free space on it, and writes resume by themselves")]
    Full(String),
    /// What the store read back is not what it wrote (a bug or a hand-edited database).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error: {0}")]
    Backend(#[source] Arc<dyn std::error::Error + Send + Sync>),
}

/// SQLite's primary result code for "database or disk is full" (`SQLITE_FULL`); SQLite's
/// Unix file layer answers it when a write fails with `ENOSPC`, and when the database
/// reaches `max_page_count`.
const SQLITE_FULL: i32 = 13;

/// PostgreSQL's SQLSTATE `disk_full`.
const PG_DISK_FULL: &str = "53100";

impl StoreError {
    /// A driver or I/O error as a store error, the same way on both backends: a closed
    /// pool is [`StoreError::Closed`] (the store was closed), running out of space is
    /// [`StoreError::Full`], anything else [`StoreError::Backend`]. No driver type leaves
    /// the store either way. Unique violations are [`unique`]'s, where a caller expects one.
    pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        let e: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
        if matches!(e.downcast_ref::<sqlx::Error>(), Some(sqlx::Error::PoolClosed)) {
            return StoreError::Closed;
        }
        if let Some(reason) = out_of_space(&*e) {
            return StoreError::Full(reason);
        }
        StoreError::Backend(Arc::from(e))
    }
}

/// A driver result as a store result (see [`StoreError::backend`]).
pub(crate) fn db<T>(result: std::result::Result<T, sqlx::Error>) -> Result<T> {
    result.map_err(StoreError::backend)
}

/// A driver result as a store result, with a unique violation as `Conflict(conflict())`:
/// for the writes where a name or key being taken is the caller's mistake, not a failure.
pub(crate) fn unique<T>(result: std::result::Result<T, sqlx::Error>, conflict: impl FnOnce() -> String) -> Result<T> {
    result.map_err(|e| match e {
        sqlx::Error::Database(ref d) if d.is_unique_violation() => StoreError::Conflict(conflict()),
        e => StoreError::backend(e),
    })
}

/// Why `e` means the disk is full, if it does.
fn out_of_space(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return (io.kind() == std::io::ErrorKind::StorageFull).then(|| io.to_string());
    }
    let sqlx::Error::Database(db) = e.downcast_ref::<sqlx::Error>()? else {
        return match e.downcast_ref::<sqlx::Error>()? {
            sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::StorageFull => Some(io.to_string()),
            _ => None,
        };
    };
    let full = if db.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
        // Extended codes keep the primary code in their low byte.
        db.code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| code & 0xff == SQLITE_FULL)
    } else {
        db.code().as_deref() == Some(PG_DISK_FULL)
    };
    full.then(|| db.message().to_owned())
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// A read on either backend's pool after `close` is `Closed`, like a write.
    #[tokio::test]
    async fn a_closed_sqlite_pool_is_closed() {
        let pool = sqlx::SqlitePool::connect("sqlite::memory:").await.unwrap();
        pool.close().await;
        let read = db(sqlx::query("SELECT 1").execute(&pool).await).unwrap_err();
        assert!(matches!(read, StoreError::Closed), "{read:?}");
    }

    #[test]
    fn other_driver_errors_are_backend_errors() {
        let e = StoreError::backend(sqlx::Error::RowNotFound);
        assert!(matches!(e, StoreError::Backend(_)), "{e:?}");
    }
}
