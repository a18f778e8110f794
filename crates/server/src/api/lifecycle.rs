//! What the lifecycle resources share: the workspace they live in, the `ETag` header,
//! name checks.

use axum::Json as JsonResponse;
use axum::http::header::ETAG;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use mlgrid_core::lifecycle::validate_asset_name;
use mlgrid_core::resource::SourceKind;
use mlgrid_store::{Role, SourceId};
use serde::Serialize;

use super::sources;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The id of workspace `name`, if the caller holds `needed` on it.
pub async fn workspace(state: &AppState, caller: &Caller, name: &str, needed: Role) -> Result<SourceId, ApiError> {
    Ok(sources::load(state, caller, SourceKind::Workspace, name, needed)
        .await?
        .id)
}

/// A resource as clients see it, etag included: the one the `ETag` header repeats and
/// `If-Match` must name.
pub trait Etagged: Serialize {
    fn etag(&self) -> &str;
}

/// Implements [`Etagged`] for views whose `etag` field holds it.
macro_rules! etagged {
    ($($view:ty),+) => {
        $(impl $crate::api::lifecycle::Etagged for $view {
            fn etag(&self) -> &str {
                &self.etag
            }
        })+
    };
}
pub(crate) use etagged;

/// A resource as JSON with its etag also in the `ETag` header.
pub fn with_etag(status: StatusCode, view: impl Etagged) -> Response {
    let etag = HeaderValue::from_str(view.etag()).ok();
    let mut response = (status, JsonResponse(view)).into_response();
    if let Some(value) = etag {
        response.headers_mut().insert(ETAG, value);
    }
    response
}

pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    validate_asset_name(what, name).map_err(ApiError::bad_request)
}
