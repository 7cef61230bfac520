//! The one axum router served by the local server and by the Lambda functions.
//!
//! Each shape adds a [`FrontContext`] extension (source address, request id) with its own
//! middleware; the routes here never see a socket or an API Gateway type.

mod discovery;
mod error;
#[cfg(feature = "scanning")]
mod scanning;
mod token;

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

pub use discovery::{Discovery, ScopesSupported};
pub use error::HttpError;

use crate::issue::TokenService;

/// What the HTTP front knows about a request's origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrontContext {
    /// The front's request id, if it has one (API Gateway does).
    pub request_id: Option<String>,
    /// The source address: the socket peer locally, the API Gateway `sourceIp` on Lambda.
    pub source_ip: Option<String>,
}

/// The token endpoint's path.
pub const TOKEN_PATH: &str = "/oauth/token";

/// The token endpoint route: `POST /oauth/token`.
pub fn token_routes(service: Arc<TokenService>) -> Router {
    token::routes(service).fallback(not_found)
}

/// The discovery routes: `GET /.well-known/jwks.json`,
/// `GET /.well-known/oauth-authorization-server` and `GET /.well-known/openid-configuration`
/// (the same document).
pub fn discovery_routes(discovery: Arc<Discovery>) -> Router {
    discovery::routes(discovery).fallback(not_found)
}

/// Every route, as the embedded server serves them.
pub fn router(service: Arc<TokenService>, discovery: Arc<Discovery>) -> Router {
    token::routes(service)
        .merge(discovery::routes(discovery))
        .fallback(not_found)
}

/// The secret-scanning routes: `POST /secret-scanning/github` and
/// `POST /secret-scanning/gitlab` (the latter `404` while GitLab's keys URL is unset).
#[cfg(feature = "scanning")]
pub fn scanning_routes(service: Arc<crate::scanning::SecretScanning>) -> Router {
    scanning::routes(service).fallback(not_found)
}

/// Every route with the secret-scanning ones, as the embedded server serves them.
#[cfg(feature = "scanning")]
pub fn router_with_scanning(
    service: Arc<TokenService>,
    discovery: Arc<Discovery>,
    scanning: Arc<crate::scanning::SecretScanning>,
) -> Router {
    token::routes(service)
        .merge(discovery::routes(discovery))
        .merge(scanning::routes(scanning))
        .fallback(not_found)
}

/// Any other path: `404` with a JSON error body like every other refusal, not axum's empty
/// one. Not a token request, so not audited (API Gateway answers these itself on AWS).
async fn not_found() -> Response {
    let body = serde_json::json!({
        "error": "invalid_request",
        "error_description": "no such endpoint",
    });
    let mut response = (StatusCode::NOT_FOUND, axum::Json(body)).into_response();
    error::no_store(&mut response);
    response
}
