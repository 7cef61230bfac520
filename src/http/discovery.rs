//! `GET /.well-known/jwks.json` (RFC 7517), `GET /.well-known/oauth-authorization-server`
//! (RFC 8414) and `GET /.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4,
//! where API Gateway's JWT authorizer looks). They read public keys only: the JWKS function has
//! no access to private keys.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::clients::keys::ASSERTION_ALGORITHMS;
use crate::clock::Clock;
use crate::config::ServiceConfig;
use crate::keys::PublicKeyRecord;
use crate::keys::jwk::{jwks, oldest_pending_age};
use crate::oauth::dpop::PROOF_ALGORITHMS;
use crate::store::{ClientAdmin, PublicKeyStore};

/// Where `scopes_supported` comes from.
pub enum ScopesSupported {
    /// A configured list.
    Fixed(Vec<String>),
    /// The union of the registered clients' scopes (embedded shape).
    FromClients(Arc<dyn ClientAdmin>),
}

/// What the discovery routes need.
pub struct Discovery {
    config: Arc<ServiceConfig>,
    public_keys: Arc<dyn PublicKeyStore>,
    scopes: ScopesSupported,
    clock: Arc<dyn Clock>,
    /// The last public keys read and when: served while the store fails, for at most
    /// `jwks_max_stale`. The keys change only at rotation, and the schedule applied to them
    /// at the time of the request keeps the document right meanwhile.
    last_read: std::sync::Mutex<Option<(Vec<PublicKeyRecord>, time::OffsetDateTime)>>,
}

impl Discovery {
    /// Discovery over a public-key store.
    pub fn new(
        config: Arc<ServiceConfig>,
        public_keys: Arc<dyn PublicKeyStore>,
        scopes: ScopesSupported,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            config,
            public_keys,
            scopes,
            clock,
            last_read: std::sync::Mutex::new(None),
        }
    }

    /// The public keys: read from the store, or, while it fails, the last ones read if they
    /// are at most `jwks_max_stale` old.
    async fn public_keys(
        &self,
        now: time::OffsetDateTime,
    ) -> Result<Vec<PublicKeyRecord>, Response> {
        let last_read = || self.last_read.lock().unwrap_or_else(|e| e.into_inner());
        match self.public_keys.public_keys().await {
            Ok(records) => {
                *last_read() = Some((records.clone(), now));
                Ok(records)
            }
            Err(e) => match &*last_read() {
                Some((records, read_at)) if now - *read_at <= self.config.jwks_max_stale => {
                    metrics::counter!("jwks_served_stale").increment(1);
                    tracing::warn!(
                        error = %e,
                        age_seconds = (now - *read_at).whole_seconds(),
                        "public key store unavailable; serving the keys last read"
                    );
                    Ok(records.clone())
                }
                _ => Err(unavailable("public key store", e)),
            },
        }
    }
}

pub(super) fn routes(discovery: Arc<Discovery>) -> Router {
    Router::new()
        .route(
            "/.well-known/jwks.json",
            get(jwks_document).fallback(not_get),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata).fallback(not_get),
        )
        // The same handler, so the two documents can never disagree: a consumer that looks
        // for OpenID discovery (API Gateway's JWT authorizer follows its `jwks_uri`) reads
        // exactly the RFC 8414 metadata.
        .route(
            "/.well-known/openid-configuration",
            get(metadata).fallback(not_get),
        )
        .with_state(discovery)
}

fn cacheable(d: &Discovery, body: serde_json::Value) -> Response {
    let mut response = Json(body).into_response();
    let value = format!("public, max-age={}", d.config.jwks_max_age);
    if let Ok(v) = HeaderValue::from_str(&value) {
        response.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    response
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "{what} unavailable");
    let body = serde_json::json!({
        "error": "temporarily_unavailable",
        "error_description": "the service is temporarily unavailable; retry later",
    });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    response
}

async fn jwks_document(State(d): State<Arc<Discovery>>) -> Response {
    let now = d.clock.now();
    let records = match d.public_keys(now).await {
        Ok(records) => records,
        Err(unavailable) => return unavailable,
    };
    if let Some(age) = oldest_pending_age(&records, now) {
        // A rotation under way; the alarm on it fires when this stays above an hour.
        metrics::histogram!("pending_key_age_seconds").record(age as f64);
    }
    match serde_json::to_value(jwks(&records, &d.config.schedule, now)) {
        Ok(body) => cacheable(&d, body),
        Err(e) => unavailable("jwks", e),
    }
}

async fn metadata(State(d): State<Arc<Discovery>>) -> Response {
    let scopes = match &d.scopes {
        ScopesSupported::Fixed(list) => list.clone(),
        ScopesSupported::FromClients(store) => match store.list_clients().await {
            Ok(clients) => {
                let mut all: Vec<String> = clients.into_iter().flat_map(|c| c.scopes).collect();
                all.sort();
                all.dedup();
                all
            }
            Err(e) => return unavailable("client store", e),
        },
    };
    let c = &d.config;
    cacheable(
        &d,
        serde_json::json!({
            "issuer": c.issuer,
            "token_endpoint": c.token_endpoint(),
            "jwks_uri": c.jwks_uri(),
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported":
                ["client_secret_basic", "client_secret_post", "private_key_jwt"],
            "token_endpoint_auth_signing_alg_values_supported": ASSERTION_ALGORITHMS
                .iter()
                .map(|a| format!("{a:?}"))
                .collect::<Vec<_>>(),
            "dpop_signing_alg_values_supported": PROOF_ALGORITHMS,
            "scopes_supported": scopes,
            "response_types_supported": [],
        }),
    )
}

async fn not_get() -> Response {
    let body = serde_json::json!({
        "error": "invalid_request",
        "error_description": "this resource accepts GET only",
    });
    let mut response = (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
    response
}
