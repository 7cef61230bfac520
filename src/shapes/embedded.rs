//! The embedded shape: every port served by one SQLite file, except the rate-limit counters,
//! which this process keeps in memory (it owns the file, so they are as exact), wired into
//! the shared router.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Version, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};

use crate::admin::Admin;
use crate::clock::Clock;
use crate::config::{ServiceConfig, TrustedProxy};
use crate::http::{self, Discovery, FrontContext, ScopesSupported};
use crate::issue::TokenService;
use crate::key_cache::KeyCache;
use crate::oauth::OAuthError;
use crate::oauth::nonce::NonceKey;
use crate::store::StoreError;
use crate::store::memory::MemoryRateLimits;
use crate::store::rotation::KeySetSwap;
use crate::store::sqlite::SqliteStore;

/// Everything the embedded shape runs on.
pub struct Embedded {
    /// The store behind every port but the rate limits.
    pub store: Arc<SqliteStore>,
    /// The rate-limit counters of the current windows, in this process's memory: no write
    /// transaction per token; a restart forgets them (README "Rate limits on the embedded
    /// shape").
    pub limits: Arc<MemoryRateLimits>,
    /// Service settings.
    pub config: Arc<ServiceConfig>,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    /// Reverse proxies whose `X-Forwarded-For` is believed (none by default).
    pub trusted_proxies: Arc<Vec<TrustedProxy>>,
    /// DPoP nonces, under the secret the SQLite file holds.
    nonces: Arc<NonceKey>,
}

impl Embedded {
    /// Opens (or creates) the SQLite file.
    pub fn open(
        path: impl AsRef<Path>,
        config: ServiceConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StoreError> {
        let store = Arc::new(SqliteStore::open(path)?);
        let nonces = Arc::new(NonceKey::new(&store.dpop_nonce_secret()?));
        Ok(Self {
            store,
            nonces,
            limits: Arc::new(MemoryRateLimits::new(clock.clone())),
            config: Arc::new(config),
            clock,
            trusted_proxies: Arc::new(Vec::new()),
        })
    }

    /// Believes `X-Forwarded-For` on connections from these addresses or ranges only.
    pub fn with_trusted_proxies(mut self, proxies: Vec<TrustedProxy>) -> Self {
        self.trusted_proxies = Arc::new(proxies);
        self
    }

    /// Rotations of the key set by these settings.
    pub fn key_rotation(&self) -> KeySetSwap {
        KeySetSwap::new(
            self.store.clone(),
            self.config.signing_alg,
            self.config.schedule,
            self.clock.clone(),
        )
    }

    /// Management operations, recorded under `actor`.
    pub fn admin(&self, actor: impl Into<String>) -> Admin {
        Admin {
            clients: self.store.clone(),
            audit: self.store.clone(),
            rotation: Arc::new(self.key_rotation()),
            public_keys: self.store.clone(),
            config: self.config.clone(),
            clock: self.clock.clone(),
            actor: actor.into(),
        }
    }

    /// The token service over the store.
    pub fn token_service(&self) -> Arc<TokenService> {
        let (c, clock) = (&self.config, self.clock.clone());
        let keys = KeyCache::new(
            self.store.clone(),
            clock,
            c.schedule,
            c.key_cache,
            c.key_max_stale,
        );
        Arc::new(
            TokenService::new(
                self.config.clone(),
                self.store.clone(),
                self.store.clone(),
                self.limits.clone(),
                keys,
                self.clock.clone(),
            )
            .with_assertion_replay(self.store.clone())
            .with_dpop_nonces(self.nonces.clone()),
        )
    }

    /// The secret-scanning endpoints over the store; a leak's alarm is a log warning.
    pub fn secret_scanning(&self) -> Arc<crate::scanning::SecretScanning> {
        Arc::new(crate::scanning::SecretScanning::new(
            self.config.clone(),
            self.store.clone(),
            self.store.clone(),
            self.store.clone(),
            self.limits.clone(),
            Arc::new(crate::scanning::LogAlarm),
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
    /// so that the peer address reaches the audit trail (and `Host` is checked: requests
    /// without a peer address come from in-process callers, not over HTTP/1.1).
    pub fn router(&self) -> Router {
        http::router_with_scanning(
            self.token_service(),
            self.discovery(),
            self.secret_scanning(),
        )
        .layer(middleware::from_fn_with_state(
            self.trusted_proxies.clone(),
            peer_context,
        ))
        // The token route counts its requests under way, whose audit writes the SQLite writer
        // gathers into one commit.
        .layer(Extension(self.store.expect_writes().clone()))
    }
}

/// The client's address: the socket peer, or, when the peer is a trusted proxy, the nearest
/// address in `X-Forwarded-For` that is not a trusted proxy itself. A client-supplied header is
/// never believed otherwise.
///
/// `forwarded_for` holds every `X-Forwarded-For` line in the order received: repeated lines
/// form one list (RFC 9110 §5.3), so a line a client forged before the proxy appended its own
/// is only the far end of that list. The walk goes from the nearest hop outwards; a hop that
/// is not an address (`unknown`, an obfuscated identifier, bytes that are not ASCII) stops it
/// at the last trusted hop. Each hop is read on its own, from the line's bytes, so a client's
/// unreadable hop never hides the one a trusted proxy appended after it.
/// IPv4-mapped IPv6 addresses are read as the IPv4 address they carry.
pub fn source_address(
    peer: IpAddr,
    forwarded_for: &[impl AsRef<[u8]>],
    trusted: &[TrustedProxy],
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trusted.iter().any(|t| t.contains(ip));
    let mut nearest = peer.to_canonical();
    if !is_trusted(nearest) {
        return nearest;
    }
    let hops: Vec<&[u8]> = forwarded_for
        .iter()
        .flat_map(|line| line.as_ref().split(|&b| b == b','))
        .collect();
    for hop in hops.into_iter().rev() {
        match std::str::from_utf8(hop).ok().and_then(hop_address) {
            Some(ip) if is_trusted(ip) => nearest = ip,
            Some(ip) => return ip,
            None => return nearest,
        }
    }
    nearest
}

/// One `X-Forwarded-For` hop as an address: plain, bracketed IPv6, or with a port
/// (`192.0.2.1:443`, `[2001:db8::1]:443`), as some proxies write it; `None` for anything else.
fn hop_address(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = hop
        .parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .or_else(|| hop.strip_prefix('[')?.strip_suffix(']')?.parse().ok())?;
    Some(ip.to_canonical())
}

/// Whether an HTTP/1.x request lacks the one `Host` line RFC 9112 §3.2 requires (a server
/// MUST answer `400` to an HTTP/1.1 request without one and to any with more than one).
fn host_is_malformed(request: &Request) -> bool {
    let hosts = request.headers().get_all(header::HOST).iter().count();
    match request.version() {
        Version::HTTP_11 => hosts != 1,
        Version::HTTP_10 | Version::HTTP_09 => hosts > 1,
        _ => false,
    }
}

/// For requests that came over a socket (the connection's peer address is known): refuses an
/// HTTP/1.x request whose `Host` is missing or repeated, and puts the client's address into
/// the [`FrontContext`].
async fn peer_context(
    State(trusted): State<Arc<Vec<TrustedProxy>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let Some(peer) = peer {
        if host_is_malformed(&request) {
            return OAuthError::InvalidRequest("the request needs exactly one Host header")
                .into_response();
        }
        let forwarded: Vec<&[u8]> = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        let ip = source_address(peer, &forwarded, &trusted);
        request.extensions_mut().insert(FrontContext {
            request_id: None,
            source_ip: Some(ip.to_string()),
        });
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::source_address;
    use crate::config::TrustedProxy;
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trust(list: &[&str]) -> Vec<TrustedProxy> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let proxy = ip("10.0.0.1");
        let trusted = trust(&["10.0.0.1", "10.0.0.2"]);
        let client = ip("203.0.113.7");
        assert_eq!(source_address(client, &["198.51.100.1"], &trusted), client);
        assert_eq!(
            source_address(proxy, &["198.51.100.1"], &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            source_address(proxy, &["6.6.6.6, 198.51.100.1, 10.0.0.2"], &trusted),
            ip("198.51.100.1"),
            "a client-prepended hop is ignored"
        );
        assert_eq!(source_address(proxy, &["garbage"], &trusted), proxy);
        assert_eq!(source_address(proxy, &[] as &[&str], &trusted), proxy);
        assert_eq!(source_address(client, &["1.2.3.4"], &[]), client);
    }

    #[test]
    fn repeated_header_lines_are_one_list_in_order() {
        let trusted = trust(&["10.0.0.1"]);
        // The client forged the first line; the proxy appended the second.
        assert_eq!(
            source_address(ip("10.0.0.1"), &["6.6.6.6", "198.51.100.1"], &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            source_address(ip("10.0.0.1"), &["6.6.6.6, 7.7.7.7", "10.0.0.1"], &trusted),
            ip("7.7.7.7")
        );
    }

    #[test]
    fn mapped_peers_and_ranges_are_trusted() {
        let trusted = trust(&["10.0.0.1", "192.168.0.0/16"]);
        assert_eq!(
            source_address(ip("::ffff:10.0.0.1"), &["198.51.100.1"], &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            source_address(ip("192.168.7.9"), &["198.51.100.1, 192.168.1.1"], &trusted),
            ip("198.51.100.1")
        );
        // An untrusted mapped peer is reported in its IPv4 form.
        assert_eq!(
            source_address(ip("::ffff:203.0.113.7"), &["1.1.1.1"], &trusted),
            ip("203.0.113.7")
        );
        assert_eq!(
            source_address(ip("10.0.0.1"), &["::ffff:198.51.100.1"], &trusted),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn hops_with_ports_are_addresses_and_unknown_hops_stop_the_walk() {
        let trusted = trust(&["10.0.0.1", "10.0.0.2"]);
        let proxy = ip("10.0.0.1");
        assert_eq!(
            source_address(proxy, &["198.51.100.1:4711"], &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            source_address(proxy, &["[2001:db8::7]:443"], &trusted),
            ip("2001:db8::7")
        );
        assert_eq!(
            source_address(proxy, &["[2001:db8::7]"], &trusted),
            ip("2001:db8::7")
        );
        // `unknown` (RFC 7239 §6) names no address: the walk ends at the last trusted hop.
        assert_eq!(
            source_address(proxy, &["6.6.6.6, unknown, 10.0.0.2"], &trusted),
            ip("10.0.0.2")
        );
        assert_eq!(
            source_address(proxy, &["6.6.6.6, 10.0.0.2:80, ::ffff:10.0.0.1"], &trusted),
            ip("6.6.6.6")
        );
    }
}
