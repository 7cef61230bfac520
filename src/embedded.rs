//! The embedded shape: every port served by one SQLite file, wired into the shared router.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
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
    /// Reverse proxies whose `X-Forwarded-For` is believed (none by default).
    pub trusted_proxies: Arc<Vec<IpAddr>>,
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
            trusted_proxies: Arc::new(Vec::new()),
        })
    }

    /// Believes `X-Forwarded-For` on connections from these addresses only.
    pub fn with_trusted_proxies(mut self, proxies: Vec<IpAddr>) -> Self {
        self.trusted_proxies = Arc::new(proxies);
        self
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
        let keys = KeyCache::from_config(self.store.clone(), self.clock.clone(), &self.config);
        Arc::new(
            TokenService::new(
                self.config.clone(),
                self.store.clone(),
                self.store.clone(),
                self.store.clone(),
                keys,
                self.clock.clone(),
            )
            .with_assertion_replay(self.store.clone()),
        )
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
        http::router(self.token_service(), self.discovery()).layer(middleware::from_fn_with_state(
            self.trusted_proxies.clone(),
            peer_context,
        ))
    }
}

/// The client's address: the socket peer, or, when the peer is a trusted proxy, the nearest
/// address in `X-Forwarded-For` that is not a trusted proxy itself. A client-supplied header is
/// never believed otherwise.
pub fn source_address(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    if !trusted.contains(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut nearest = peer;
    for hop in header.rsplit(',') {
        match hop.trim().parse::<IpAddr>() {
            Ok(ip) if trusted.contains(&ip) => nearest = ip,
            Ok(ip) => return ip,
            Err(_) => return nearest,
        }
    }
    nearest
}

/// Puts the client's address into the [`RequestContext`] when the connection's peer address is
/// known (requests that already carry a context keep it).
async fn peer_context(
    State(trusted): State<Arc<Vec<IpAddr>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let Some(peer) = peer {
        let forwarded = request
            .headers()
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok());
        let ip = source_address(peer, forwarded, &trusted);
        request.extensions_mut().insert(RequestContext {
            request_id: None,
            source_ip: Some(ip.to_string()),
        });
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::source_address;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy = ip("10.0.0.1");
        let trusted = [proxy, ip("10.0.0.2")];
        let client = ip("203.0.113.7");
        assert_eq!(
            source_address(client, Some("198.51.100.1"), &trusted),
            client
        );
        assert_eq!(
            source_address(proxy, Some("198.51.100.1"), &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            source_address(proxy, Some("6.6.6.6, 198.51.100.1, 10.0.0.2"), &trusted),
            ip("198.51.100.1"),
            "a client-prepended hop is ignored"
        );
        assert_eq!(source_address(proxy, Some("garbage"), &trusted), proxy);
        assert_eq!(source_address(proxy, None, &trusted), proxy);
        assert_eq!(source_address(client, Some("1.2.3.4"), &[]), client);
    }
}
