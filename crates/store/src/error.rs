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
    /// What the store read back is not what it wrote (a bug or a hand-edited database).
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The database failed.
    #[error("database error: {0}")]
    Backend(#[source] Arc<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    pub(crate) fn backend(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
        StoreError::Backend(Arc::new(e))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
