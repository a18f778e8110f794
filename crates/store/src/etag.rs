//! Etags and `If-Match` checks, the same for every backend.

use crate::error::{Result, StoreError};

/// A fresh strong etag, quoted as HTTP writes it.
pub(crate) fn new_etag() -> String {
    format!("\"{}\"", uuid::Uuid::new_v4().simple())
}

/// Refuses a change when `if_match` names another etag than the current one.
pub(crate) fn check_etag(what: &str, current: &str, if_match: Option<&str>) -> Result<()> {
    match if_match {
        Some(expected) if expected != "*" && expected != current => Err(StoreError::PreconditionFailed(format!(
            "{what} has changed: its etag is {current}, not {expected}; read it again and retry"
        ))),
        _ => Ok(()),
    }
}

/// Refuses a create-or-replace when `if_match` names another etag than the resource's,
/// or any etag (but `*`) when there is no resource yet.
pub(crate) fn check_put_etag(what: &str, current: Option<&str>, if_match: Option<&str>) -> Result<()> {
    match (current, if_match) {
        (Some(current), expected) => check_etag(what, current, expected),
        (None, Some(expected)) if expected != "*" => Err(StoreError::PreconditionFailed(format!(
            "{what} does not exist, so it cannot match etag {expected}"
        ))),
        (None, _) => Ok(()),
    }
}
