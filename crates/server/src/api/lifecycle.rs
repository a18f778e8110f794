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

/// A resource as JSON with its etag also in the `ETag` header.
pub fn with_etag<T: Serialize>(status: StatusCode, etag: &str, body: T) -> Response {
    let mut response = (status, JsonResponse(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(ETAG, value);
    }
    response
}

pub fn check_name(what: &str, name: &str) -> Result<(), ApiError> {
    validate_asset_name(what, name).map_err(ApiError::bad_request)
}
