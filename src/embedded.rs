//! The embedded shape: every port served by one SQLite file, wired into the shared router.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::middleware::{self, Next};
use axum::response::Response;

use crate::admin::Admin;
use crate::clock::Clock;
use crate::config::ServiceConfig;
use crate::http::{self, Discovery, RequestContext, ScopesSupported};
use crate::issue::TokenService;
use crate::keys::KeyCache;
use crate::store::{SqliteStore, StoreError};

/// Everything the embedded shape runs on.
pub struct Embedded {
    /// The store behind every port.
    pub store: Arc<SqliteStore>,
    /// Service settings.
    pub config: Arc<ServiceConfig>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
}

impl Embedded {
    /// Opens (or creates) the SQLite file.
    pub fn open(
        path: impl AsRef<Path>,
        config: ServiceConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        Ok(Self {
            store: Arc::new(SqliteStore::open(path)?),
            config: Arc::new(config),
            clock,
        })
    }

    /// Management operations, recorded under `actor`.
    pub fn admin(&self, actor: impl Into<String>) -> Admin {
        Admin {
            clients: self.store.clone(),
            audit: self.store.clone(),
            keys: self.store.clone(),
            public_keys: self.store.clone(),
            config: self.config.clone(),
            clock: self.clock.clone(),
            actor: actor.into(),
        }
    }

    /// The token service over the store.
    pub fn token_service(&self) -> Arc<TokenService> {
        let keys = KeyCache::new(
            self.store.clone(),
            self.clock.clone(),
            self.config.schedule,
            self.config.key_cache,
            self.config.key_max_stale,
        );
        Arc::new(TokenService::new(
            self.config.clone(),
            self.store.clone(),
            self.store.clone(),
            keys,
            self.clock.clone(),
        ))
    }

    /// The discovery documents over the store.
    pub fn discovery(&self) -> Arc<Discovery> {
        let scopes = match &self.config.scopes_supported {
            Some(list) => ScopesSupported::Fixed(list.clone()),
            None => ScopesSupported::FromClients(self.store.clone()),
        };
        Arc::new(Discovery::new(
            self.config.clone(),
            self.store.clone(),
            scopes,
            self.clock.clone(),
        ))
    }

    /// The full router; serve it with `into_make_service_with_connect_info::<SocketAddr>()`
    /// so that the peer address reaches the audit trail.
    pub fn router(&self) -> Router {
        http::router(self.token_service(), self.discovery())
            .layer(middleware::from_fn(peer_context))
    }
}

/// Puts the socket peer's address into the [`RequestContext`] (a client-supplied header such
/// as `X-Forwarded-For` is never trusted).
async fn peer_context(request: Request, next: Next) -> Response {
    let mut request = request;
    let peer = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    request.extensions_mut().insert(RequestContext {
        request_id: None,
        source_ip: peer,
    });
    next.run(request).await
}
