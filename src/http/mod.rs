//! The one axum router served by the local server and by the Lambda functions.
//!
//! Each shape adds a [`RequestContext`] extension (source address, request id) with its own
//! middleware; the routes here never see a socket or an API Gateway type.

mod discovery;
mod error;
mod token;

use std::sync::Arc;

use axum::Router;

pub use discovery::{Discovery, ScopesSupported};

use crate::issue::TokenService;

/// What the HTTP front knows about a request's origin.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The front's request id, if it has one (API Gateway does).
    pub request_id: Option<String>,
    /// The source address: the socket peer locally, the API Gateway `sourceIp` on Lambda.
    pub source_ip: Option<String>,
}

/// The token endpoint route: `POST /oauth/token`.
pub fn token_routes(service: Arc<TokenService>) -> Router {
    token::routes(service)
}

/// The discovery routes: `GET /.well-known/jwks.json` and
/// `GET /.well-known/oauth-authorization-server`.
pub fn discovery_routes(discovery: Arc<Discovery>) -> Router {
    discovery::routes(discovery)
}

/// Every route, as the embedded server serves them.
pub fn router(service: Arc<TokenService>, discovery: Arc<Discovery>) -> Router {
    token_routes(service).merge(discovery_routes(discovery))
}
