//! The one error type of the API and its JSON shape: `{"error": {"code", "message"}}`,
//! the shape Event Grid answers with.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mlgrid_core::publish::PublishError;
use mlgrid_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

/// An error answered to a client: a status, a stable code and a message that says what
/// to fix. Internal details never reach the client; they are logged once, here.
#[derive(Debug)]
pub enum ApiError {
    BadRequest {
        code: &'static str,
        message: String,
    },
    Unauthorized(String),
    Forbidden(String),
    NotFound(String),
    Conflict(String),
    PreconditionFailed(String),
    PayloadTooLarge(String),
    /// The client did not send its request body in time.
    RequestTimeout(String),
    UnsupportedMediaType(String),
    Unavailable(String),
    /// The store's disk is full: nothing of the request was written.
    InsufficientStorage(String),
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code: "BadRequest",
            message: message.into(),
        }
    }

    fn parts(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { code, .. } => (StatusCode::BAD_REQUEST, code),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "Forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "NotFound"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "Conflict"),
            ApiError::PreconditionFailed(_) => (StatusCode::PRECONDITION_FAILED, "PreconditionFailed"),
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLarge"),
            ApiError::RequestTimeout(_) => (StatusCode::REQUEST_TIMEOUT, "RequestTimeout"),
            ApiError::UnsupportedMediaType(_) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "UnsupportedMediaType"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable"),
            ApiError::InsufficientStorage(_) => (StatusCode::INSUFFICIENT_STORAGE, "InsufficientStorage"),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable, machine-readable code, e.g. `NotFound`, `InvalidEvent`.
    pub code: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.parts();
        let message = match self {
            ApiError::Internal(detail) => {
                // A detail may quote a webhook URL, whose query may hold a secret.
                let detail = mlgrid_core::redact::redact_urls(&detail);
                tracing::error!(%detail, "internal error");
                "internal error; the server log has the details".to_owned()
            }
            ApiError::BadRequest { message, .. }
            | ApiError::Unauthorized(message)
            | ApiError::Forbidden(message)
            | ApiError::NotFound(message)
            | ApiError::Conflict(message)
            | ApiError::PreconditionFailed(message)
            | ApiError::PayloadTooLarge(message)
            | ApiError::RequestTimeout(message)
            | ApiError::UnsupportedMediaType(message)
            | ApiError::Unavailable(message)
            | ApiError::InsufficientStorage(message) => message,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
            },
        };
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            StoreError::Conflict(message) => ApiError::Conflict(message),
            StoreError::Invalid(message) => ApiError::bad_request(message),
            StoreError::PreconditionFailed(message) => ApiError::PreconditionFailed(message),
            StoreError::Closed => {
                ApiError::Unavailable("the server is shutting down; retry against another node or later".to_owned())
            }
            StoreError::Full(detail) => {
                // Once per request, like internal errors: the operator has to act.
                tracing::error!(%detail, "the store's disk is full; a write was refused");
                ApiError::InsufficientStorage(
                    "the server's storage is full, so nothing of this request was stored; retry later: the server \
                     takes writes again by itself once its operator frees disk space (GET /healthz shows the state)"
                        .to_owned(),
                )
            }
            StoreError::Corrupt(_) | StoreError::Backend(_) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<mlgrid_pipelines::PipelineError> for ApiError {
    fn from(e: mlgrid_pipelines::PipelineError) -> Self {
        match e {
            mlgrid_pipelines::PipelineError::Invalid(message) => ApiError::bad_request(message),
            mlgrid_pipelines::PipelineError::Store(e) => e.into(),
            mlgrid_pipelines::PipelineError::Io(e) => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<mlgrid_pipelines::RegistryError> for ApiError {
    fn from(e: mlgrid_pipelines::RegistryError) -> Self {
        match e {
            mlgrid_pipelines::RegistryError::Invalid(message) => ApiError::bad_request(message),
            mlgrid_pipelines::RegistryError::Unreachable(e) => ApiError::BadRequest {
                code: "DatastoreUnreachable",
                message: e.to_string(),
            },
            mlgrid_pipelines::RegistryError::Store(e) => e.into(),
        }
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        match e {
            PublishError::EventTooLarge { .. } => ApiError::PayloadTooLarge(e.to_string()),
            _ => ApiError::BadRequest {
                code: e.code(),
                message: e.to_string(),
            },
        }
    }
}
