//! The gateway's JSON failure answers:
//! `{"error":{"code":"…","message":"…","path":"…"}}`, with `Retry-After` where a retry helps.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use oneseal_core::ErrorClass;

/// A failure answered to the caller. Messages never carry bodies, keys or plaintext.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What happened and what to do.
    pub message: String,
    /// The JSON path involved, if any.
    pub path: Option<String>,
    /// Seconds for `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A failure with no path.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            path: None,
            retry_after: None,
        }
    }

    /// 503 with `Retry-After`.
    pub fn unavailable(code: &'static str, message: impl Into<String>, retry: u64) -> Self {
        ApiError {
            retry_after: Some(retry),
            ..ApiError::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// Maps a document-engine error: bad input 400 (naming the path), key service 503.
    pub fn from_engine(e: &oneseal_core::Error) -> Self {
        let mut a = match e.class() {
            ErrorClass::Input | ErrorClass::Config => {
                ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string())
            }
            class => Self::not_sent(class, e, "encryption_failed"),
        };
        a.path = e.path().map(str::to_string);
        a
    }

    /// A failure before anything was sent: the key service's (503 + `Retry-After`), or
    /// another (500 with `code`).
    pub fn not_sent(class: ErrorClass, e: &dyn std::fmt::Display, code: &'static str) -> Self {
        let message = format!("{e}; nothing was sent to the platform");
        match class {
            ErrorClass::KeyService => ApiError::unavailable("key_service_unavailable", message, 5),
            _ => ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, code, message),
        }
    }
}

impl ApiError {
    /// A key-service failure before anything was sent (503 when passing, else 500).
    pub fn key(e: &oneseal_core::KeyError) -> Self {
        ApiError::not_sent(e.class(), e, "key_provider_failed")
    }

    /// The spool directory failed (logged here, once, with the OS error).
    pub fn spool(e: &std::io::Error) -> Self {
        tracing::error!(error = %e, "spool directory failure");
        ApiError::unavailable(
            "spool_unavailable",
            "the gateway cannot write its spool directory",
            5,
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({"error": {"code": self.code, "message": self.message}});
        if let Some(p) = &self.path {
            body["error"]["path"] = p.clone().into();
        }
        let mut r = (self.status, axum::Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}
