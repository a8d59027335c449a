//! The one error envelope of the API (DESIGN §8) and its stable codes:
//!
//! ```json
//! {"error": {"code": "DEVICE_NOT_FOUND", "message": "...", "status": 404, "request_id": "...", "details": {}}}
//! ```
//!
//! Handlers return `Result<_, ApiError>`; warp rejections mean only "this
//! route did not match", and [`recover`] turns whatever is left (unknown
//! route, wrong method, bad query) into the envelope.

use std::convert::Infallible;

use serde_json::{json, Value as Json};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

/// Stable error codes; `docs/errors.md` lists each with cause and fix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    NotFound,
    MethodNotAllowed,
    ValidationFailed,
    DeviceNotFound,
    PointNotFound,
    NotReady,
    DeviceUnavailable,
    DeviceTimeout,
    Internal,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::ValidationFailed,
        ErrorCode::DeviceNotFound,
        ErrorCode::PointNotFound,
        ErrorCode::NotReady,
        ErrorCode::DeviceUnavailable,
        ErrorCode::DeviceTimeout,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::ValidationFailed => "VALIDATION_FAILED",
            ErrorCode::DeviceNotFound => "DEVICE_NOT_FOUND",
            ErrorCode::PointNotFound => "POINT_NOT_FOUND",
            ErrorCode::NotReady => "NOT_READY",
            ErrorCode::DeviceUnavailable => "DEVICE_UNAVAILABLE",
            ErrorCode::DeviceTimeout => "DEVICE_TIMEOUT",
            ErrorCode::Internal => "INTERNAL",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::NotFound | ErrorCode::DeviceNotFound | ErrorCode::PointNotFound => StatusCode::NOT_FOUND,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::ValidationFailed => StatusCode::BAD_REQUEST,
            ErrorCode::NotReady | ErrorCode::DeviceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::DeviceTimeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub details: Json,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), details: json!({}) }
    }

    pub fn with_details(mut self, details: Json) -> Self {
        self.details = details;
        self
    }

    /// A bad query or path parameter, listed in `details.fields`.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::new(ErrorCode::ValidationFailed, format!("{field}: {reason}"))
            .with_details(json!({"fields": [{"field": field, "reason": reason}]}))
    }
}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let body = json!({"error": {
            "code": self.code.as_str(),
            "message": self.message,
            "status": status.as_u16(),
            "request_id": super::request_id(),
            "details": self.details,
        }});
        warp::reply::with_status(warp::reply::json(&body), status).into_response()
    }
}

/// Turns warp's leftover rejections into the envelope.
pub async fn recover(r: warp::Rejection) -> Result<Response, Infallible> {
    let e = if r.is_not_found() {
        ApiError::new(ErrorCode::NotFound, "no such route")
    } else if let Some(e) = r.find::<ApiError>() {
        e.clone()
    } else if let Some(e) = r.find::<warp::reject::InvalidQuery>() {
        ApiError::new(ErrorCode::ValidationFailed, format!("invalid query string: {e}"))
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(ErrorCode::MethodNotAllowed, "this route does not take that method")
    } else {
        tracing::warn!(rejection = ?r, "unhandled rejection");
        ApiError::new(ErrorCode::Internal, "the request could not be handled")
    };
    Ok(e.into_response())
}

impl warp::reject::Reject for ApiError {}
