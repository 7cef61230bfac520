//! The single mapping of every refusal to status, headers and JSON body (RFC 6749 §5.2): the
//! OAuth errors, and the statuses only HTTP knows ([`HttpError`]: 405, 413, 429).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::oauth::OAuthError;
use crate::refusal::Refused;

/// Seconds a client is asked to wait after a `503`.
const UNAVAILABLE_RETRY_AFTER: u64 = 5;

/// A refusal that no OAuth error code names: an HTTP status with an OAuth error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpError {
    /// The method is not POST: `405` with `Allow: POST` (RFC 9110 §15.5.6) and an
    /// `invalid_request` body.
    MethodNotAllowed,
    /// The body is larger than the endpoint accepts: `413` (RFC 9110 §15.5.14) with an
    /// `invalid_request` body.
    PayloadTooLarge,
    /// Too many requests: `429` (RFC 6585 §4) with `Retry-After`. No RFC 6749 code names rate
    /// limiting; `temporarily_unavailable` (§4.1.2.1) is the registered code closest to it,
    /// and the status tells the two apart.
    TooManyRequests {
        /// Seconds until the client may try again.
        retry_after: u64,
    },
}

impl HttpError {
    /// The OAuth error a request turned away with this status is recorded as.
    pub fn recorded_as(self) -> OAuthError {
        match self {
            Self::MethodNotAllowed => {
                OAuthError::InvalidRequest("the token endpoint accepts POST only")
            }
            Self::PayloadTooLarge => {
                OAuthError::InvalidRequest("the request body exceeds 8192 bytes")
            }
            Self::TooManyRequests { .. } => OAuthError::TemporarilyUnavailable,
        }
    }

    fn description(self) -> &'static str {
        match self {
            Self::TooManyRequests { .. } => "too many requests; retry after the Retry-After delay",
            other => other.recorded_as().description(),
        }
    }
}

/// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1), for every token response.
pub(super) fn no_store(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// The error response: `status`, the JSON body of RFC 6749 §5.2, no-store.
fn error_response(status: StatusCode, code: &str, description: &str) -> Response {
    let body = serde_json::json!({
        "error": code,
        "error_description": description,
    });
    let mut response = (status, Json(body)).into_response();
    no_store(&mut response);
    response
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::InvalidClient => StatusCode::UNAUTHORIZED,
            Self::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::InvalidRequest(_)
            | Self::UnsupportedGrantType
            | Self::InvalidScope(_)
            | Self::InvalidTarget(_)
            | Self::InvalidDpopProof
            | Self::UseDpopNonce => StatusCode::BAD_REQUEST,
        };
        let mut response = error_response(status, self.code(), self.description());
        let h = response.headers_mut();
        match self {
            Self::InvalidClient => {
                h.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"token\", charset=\"UTF-8\""),
                );
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

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
        };
        let code = self.recorded_as().code();
        let mut response = error_response(status, code, self.description());
        let h = response.headers_mut();
        match self {
            Self::MethodNotAllowed => {
                h.insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            Self::TooManyRequests { retry_after } => {
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            Self::PayloadTooLarge => {}
        }
        response
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Self::OAuth(error) => error.into_response(),
            Self::RateLimited { retry_after } => {
                HttpError::TooManyRequests { retry_after }.into_response()
            }
        }
    }
}
