//! The single mapping of [`OAuthError`] to status, headers and JSON body (RFC 6749 §5.2).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::oauth::OAuthError;

/// Seconds a client is asked to wait after a `503`.
const UNAVAILABLE_RETRY_AFTER: u64 = 5;

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1), for every token response.
pub(super) fn no_store(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::InvalidClient => StatusCode::UNAUTHORIZED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidRequest(_)
            | Self::UnsupportedGrantType
            | Self::InvalidScope(_)
            | Self::InvalidTarget(_) => StatusCode::BAD_REQUEST,
        };
        let body = serde_json::json!({
            "error": self.code(),
            "error_description": self.description(),
        });
        let mut response = (status, Json(body)).into_response();
        no_store(&mut response);
        let h = response.headers_mut();
        match self {
            Self::InvalidClient => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"token\", charset=\"UTF-8\""),
                );
            }
            Self::MethodNotAllowed => {
                h.insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            Self::RateLimited { retry_after } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            Self::TemporarilyUnavailable => {
                h.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(UNAVAILABLE_RETRY_AFTER),
                );
            }
            _ => {}
        }
        response
    }
}
