//! The one error envelope of the API (DESIGN §8) and its stable codes:
//!
//! ```json
//! {"error": {"code": "DEVICE_NOT_FOUND", "message": "...", "status": 404, "request_id": "...", "details": {}}}
//! ```
//!
//! Handlers return `Result<_, ApiError>`; warp rejections mean only "this
//! route did not match", and [`recover`] turns whatever is left (unknown
//! route, wrong method, bad body, too large) into the envelope. Every code is
//! listed in `docs/errors.md` with cause and fix; a test holds the two
//! together.

use std::convert::Infallible;

use plantwatch_actors::bacnet::types::{abort_reason_name, reject_reason_name};
use plantwatch_actors::plant::device::DeviceError;
use plantwatch_actors::plant::CallError;
use plantwatch_actors::transport::BacnetError;
use serde_json::{json, Value as Json};
use warp::http::StatusCode;
use warp::reply::Response;
use warp::Reply;

/// Stable error codes. Each maps to exactly one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A path or query parameter is malformed or out of range.
    InvalidParameter,
    /// The body is not JSON, has unknown fields or wrong types.
    MalformedBody,
    /// The body is well-formed but a value is not acceptable.
    ValidationFailed,
    NotFound,
    NetworkNotFound,
    DeviceNotFound,
    PointNotFound,
    MethodNotAllowed,
    /// The device is not enrolled yet: its points are unknown.
    DeviceNotEnrolled,
    PayloadTooLarge,
    UnsupportedMediaType,
    /// The device answered with a BACnet Error, Reject or Abort.
    DeviceRefused,
    Internal,
    NotReady,
    /// The device is offline, failed, or its actor is not running.
    DeviceUnavailable,
    /// The device has too many writes waiting.
    DeviceBusy,
    StoreUnavailable,
    /// The device did not answer within the request's time.
    DeviceTimeout,
    /// The request did not finish within `server.request_timeout`.
    RequestTimeout,
    /// No API key, or an unknown, revoked or malformed one.
    Unauthenticated,
    /// The key's role does not allow this route.
    Forbidden,
    /// Over the rate limit of the key or the client address.
    RateLimited,
    KeyNotFound,
    /// A CORS preflight from an origin, or for a method or header, not allowed.
    CorsRejected,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 24] = [
        ErrorCode::InvalidParameter,
        ErrorCode::MalformedBody,
        ErrorCode::ValidationFailed,
        ErrorCode::NotFound,
        ErrorCode::NetworkNotFound,
        ErrorCode::DeviceNotFound,
        ErrorCode::PointNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::DeviceNotEnrolled,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::DeviceRefused,
        ErrorCode::Internal,
        ErrorCode::NotReady,
        ErrorCode::DeviceUnavailable,
        ErrorCode::DeviceBusy,
        ErrorCode::StoreUnavailable,
        ErrorCode::DeviceTimeout,
        ErrorCode::RequestTimeout,
        ErrorCode::Unauthenticated,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::KeyNotFound,
        ErrorCode::CorsRejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidParameter => "INVALID_PARAMETER",
            ErrorCode::MalformedBody => "MALFORMED_BODY",
            ErrorCode::ValidationFailed => "VALIDATION_FAILED",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::NetworkNotFound => "NETWORK_NOT_FOUND",
            ErrorCode::DeviceNotFound => "DEVICE_NOT_FOUND",
            ErrorCode::PointNotFound => "POINT_NOT_FOUND",
            ErrorCode::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            ErrorCode::DeviceNotEnrolled => "DEVICE_NOT_ENROLLED",
            ErrorCode::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            ErrorCode::UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            ErrorCode::DeviceRefused => "DEVICE_REFUSED",
            ErrorCode::Internal => "INTERNAL",
            ErrorCode::NotReady => "NOT_READY",
            ErrorCode::DeviceUnavailable => "DEVICE_UNAVAILABLE",
            ErrorCode::DeviceBusy => "DEVICE_BUSY",
            ErrorCode::StoreUnavailable => "STORE_UNAVAILABLE",
            ErrorCode::DeviceTimeout => "DEVICE_TIMEOUT",
            ErrorCode::RequestTimeout => "REQUEST_TIMEOUT",
            ErrorCode::Unauthenticated => "UNAUTHENTICATED",
            ErrorCode::Forbidden => "FORBIDDEN",
            ErrorCode::RateLimited => "RATE_LIMITED",
            ErrorCode::KeyNotFound => "KEY_NOT_FOUND",
            ErrorCode::CorsRejected => "CORS_REJECTED",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidParameter | ErrorCode::MalformedBody => StatusCode::BAD_REQUEST,
            ErrorCode::NotFound
            | ErrorCode::NetworkNotFound
            | ErrorCode::DeviceNotFound
            | ErrorCode::PointNotFound
            | ErrorCode::KeyNotFound => StatusCode::NOT_FOUND,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::Forbidden => StatusCode::FORBIDDEN,
            ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::CorsRejected => StatusCode::FORBIDDEN,
            ErrorCode::DeviceNotEnrolled => StatusCode::CONFLICT,
            ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorCode::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorCode::DeviceRefused => StatusCode::BAD_GATEWAY,
            ErrorCode::NotReady
            | ErrorCode::DeviceUnavailable
            | ErrorCode::DeviceBusy
            | ErrorCode::StoreUnavailable
            | ErrorCode::RequestTimeout => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::DeviceTimeout => StatusCode::GATEWAY_TIMEOUT,
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

    /// A bad path or query parameter, listed in `details.fields`.
    pub fn parameter(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::new(ErrorCode::InvalidParameter, format!("{field}: {reason}"))
            .with_details(json!({"fields": [{"field": field, "reason": reason}]}))
    }

    /// An unacceptable value in the body, listed in `details.fields`.
    pub fn invalid(field: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        Self::new(ErrorCode::ValidationFailed, format!("{field}: {reason}"))
            .with_details(json!({"fields": [{"field": field, "reason": reason}]}))
    }

    pub fn store(e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "store failed");
        Self::new(ErrorCode::StoreUnavailable, "the store failed; see the service log")
    }
}

/// What a device said, for `details`.
pub fn bacnet_details(e: &BacnetError) -> Json {
    match e {
        BacnetError::Error(ec) => {
            json!({"bacnet": {"kind": "error", "class": ec.class, "code": ec.code, "text": ec.to_string()}})
        }
        BacnetError::Reject { reason } => {
            json!({"bacnet": {"kind": "reject", "reason": reason, "text": reject_reason_name(*reason)}})
        }
        BacnetError::Abort { reason, by_server } => {
            json!({"bacnet": {"kind": "abort", "reason": reason, "text": abort_reason_name(*reason), "by_device": by_server}})
        }
        BacnetError::Timeout { attempts } => json!({"bacnet": {"kind": "timeout", "attempts": attempts}}),
        other => json!({"bacnet": {"kind": "local", "text": other.to_string()}}),
    }
}

impl From<CallError> for ApiError {
    fn from(e: CallError) -> Self {
        match e {
            CallError::UnknownDevice(i) => ApiError::new(ErrorCode::DeviceNotFound, format!("no device {i}")),
            CallError::NotRunning(i) => {
                ApiError::new(ErrorCode::DeviceUnavailable, format!("device {i} has failed and is not running"))
            }
            CallError::Timeout(i, t) => ApiError::new(
                ErrorCode::DeviceTimeout,
                format!("device {i} did not answer within {} ms", t.as_millis()),
            ),
            CallError::Device(d) => d.into(),
        }
    }
}

impl From<DeviceError> for ApiError {
    fn from(e: DeviceError) -> Self {
        match e {
            DeviceError::Bacnet(b @ BacnetError::Timeout { .. }) => {
                ApiError::new(ErrorCode::DeviceTimeout, b.to_string()).with_details(bacnet_details(&b))
            }
            DeviceError::Bacnet(
                b @ (BacnetError::Error(_) | BacnetError::Reject { .. } | BacnetError::Abort { .. }),
            ) => ApiError::new(ErrorCode::DeviceRefused, b.to_string()).with_details(bacnet_details(&b)),
            DeviceError::Bacnet(b @ (BacnetError::Decode(_) | BacnetError::Encode(_))) => {
                ApiError::new(ErrorCode::DeviceRefused, b.to_string()).with_details(bacnet_details(&b))
            }
            DeviceError::Bacnet(b @ (BacnetError::Io(_) | BacnetError::Closed)) => {
                ApiError::new(ErrorCode::DeviceUnavailable, b.to_string())
            }
            DeviceError::UnknownPoint { instance, object } => {
                ApiError::new(ErrorCode::PointNotFound, format!("device {instance} has no point {object}"))
            }
            DeviceError::Busy { instance } => ApiError::new(
                ErrorCode::DeviceBusy,
                format!("device {instance} has too many writes waiting; retry shortly"),
            ),
            DeviceError::Offline { instance } => {
                ApiError::new(ErrorCode::DeviceUnavailable, format!("device {instance} is offline"))
            }
        }
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
        let mut resp = warp::reply::with_status(warp::reply::json(&body), status).into_response();
        // For the access log's metrics: the code without parsing the body.
        resp.extensions_mut().insert(self.code);
        resp
    }
}

/// Turns warp's leftover rejections into the envelope.
pub async fn recover(r: warp::Rejection) -> Result<Response, Infallible> {
    let e = if r.is_not_found() {
        ApiError::new(ErrorCode::NotFound, "no such route; GET /api/v1/openapi.json lists them")
    } else if let Some(e) = r.find::<ApiError>() {
        e.clone()
    } else if let Some(e) = r.find::<warp::reject::InvalidQuery>() {
        ApiError::new(ErrorCode::InvalidParameter, format!("invalid query string: {e}"))
    } else if let Some(e) = r.find::<warp::filters::body::BodyDeserializeError>() {
        ApiError::new(ErrorCode::MalformedBody, format!("the body is not the expected JSON: {}", source_text(e)))
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(ErrorCode::PayloadTooLarge, format!("the body is larger than {} bytes", super::MAX_BODY))
    } else if r.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(ErrorCode::MalformedBody, "a body with a Content-Length is required")
    } else if r.find::<warp::reject::UnsupportedMediaType>().is_some() {
        ApiError::new(ErrorCode::UnsupportedMediaType, "send the body as Content-Type: application/json")
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(ErrorCode::MethodNotAllowed, "this route does not take that method")
    } else if r.find::<warp::reject::InvalidHeader>().is_some() || r.find::<warp::reject::MissingHeader>().is_some() {
        ApiError::new(ErrorCode::InvalidParameter, "a header is missing or invalid")
    } else {
        tracing::warn!(rejection = ?r, "unhandled rejection");
        ApiError::new(ErrorCode::Internal, "the request could not be handled")
    };
    Ok(e.into_response())
}

fn source_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text = s.to_string();
        source = s.source();
    }
    text
}

impl warp::reject::Reject for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/errors.md lists exactly the codes of `ErrorCode`, with their statuses.
    #[test]
    fn the_error_reference_and_the_code_agree() {
        let doc = include_str!("../../docs/errors.md");
        let listed: Vec<(String, u16)> = doc
            .lines()
            .filter_map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                let code = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                let status = cells.get(2)?.parse().ok()?;
                Some((code.to_string(), status))
            })
            .collect();
        let known: Vec<(String, u16)> =
            ErrorCode::ALL.iter().map(|c| (c.as_str().to_string(), c.status().as_u16())).collect();
        for k in &known {
            assert!(listed.contains(k), "docs/errors.md lacks {k:?}");
        }
        for l in &listed {
            assert!(known.contains(l), "docs/errors.md lists {l:?}, which the code does not have");
        }
        // and ALL really is all: every variant's name is distinct
        let mut names: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ErrorCode::ALL.len());
    }
}
