//! Extractors that answer malformed requests in the API's error format.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// `axum::Json` whose rejections are [`ApiError`]s.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Json(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::UnsupportedMediaType(
                "send the body as JSON with `Content-Type: application/json`".to_owned(),
            )),
            Err(rejection) => Err(ApiError::BadRequest {
                code: "InvalidJson",
                message: rejection.body_text(),
            }),
        }
    }
}

/// `axum::extract::Query` whose rejections are [`ApiError`]s.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Query(value))
            .map_err(|rejection: QueryRejection| ApiError::BadRequest {
                code: "InvalidQuery",
                message: rejection.body_text(),
            })
    }
}

/// The URL clients and receivers reach this server under: the configured public URL,
/// else the listen address ([`ServerConfig::base_url`](crate::ServerConfig::base_url)),
/// never the request's `Host`, which the client chooses.
pub struct BaseUrl(pub String);

impl FromRequestParts<crate::state::AppState> for BaseUrl {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(_: &mut Parts, state: &crate::state::AppState) -> Result<Self, Self::Rejection> {
        Ok(BaseUrl(state.config.base_url()))
    }
}

/// The `If-Match` header: the etag a resource must still have for a change to apply.
pub struct IfMatch(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IfMatch {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(axum::http::header::IF_MATCH) {
            None => Ok(IfMatch(None)),
            Some(value) => value
                .to_str()
                .map(|v| IfMatch(Some(v.trim().to_owned())))
                .map_err(|_| ApiError::bad_request("the If-Match header must be an etag as the API returned it")),
        }
    }
}
