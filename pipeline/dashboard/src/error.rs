//! Every API error is JSON, `{"error": {"code", "message"}}`, with the status that says whose
//! fault it is: 400 bad input (the message names the parameter or the body's field and what is
//! allowed), 401 no or wrong key, 404 nothing there, 409 a conflict (a finished job cancelled),
//! 429 too many requests, 500 a file of the work dir that cannot be read (named).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::BAD_REQUEST, code: "bad_request", message: message.into() }
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::UNAUTHORIZED, code: "unauthorized", message: message.into() }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::NOT_FOUND, code: "not_found", message: message.into() }
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::CONFLICT, code: "conflict", message: message.into() }
    }
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError { status: StatusCode::INTERNAL_SERVER_ERROR, code: "internal", message: message.into() }
    }
}

impl From<distill_core::Error> for ApiError {
    fn from(e: distill_core::Error) -> Self {
        // Core errors already name the file, the line and the fix.
        ApiError::internal(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({"error": {"code": self.code, "message": self.message}}))).into_response()
    }
}

/// A blocking task that panicked or was cancelled.
pub fn join_error(e: tokio::task::JoinError) -> ApiError {
    ApiError::internal(format!("a background task failed: {e}"))
}
