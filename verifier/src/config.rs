//! What a verifier checks tokens against, and the bounds of its key fetches.

use std::time::Duration;

/// The settings of a [`Verifier`](crate::Verifier). Build with [`Config::new`] and the
/// `with_*` setters; the fields are readable, and new ones may be added.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// The issuer identifier; a token's `iss` must equal it exactly (RFC 9068 §4).
    pub issuer: String,
    /// The API's identifiers; a token's `aud` (string or array) must contain one of them.
    pub audiences: Vec<String>,
    /// Where the issuer publishes its keys (RFC 7517). `https`, or `http` on loopback only.
    pub jwks_uri: String,
    /// Clock skew allowed on `exp`, `nbf` and a DPoP proof's `iat`. Default 30 s.
    pub leeway: Duration,
    /// An unknown `kid` refetches the JWKS at most once per this interval; further misses
    /// within it fail fast as [`Error::UnknownKey`](crate::Error::UnknownKey). Default 60 s.
    pub min_refetch_interval: Duration,
    /// How long a JWKS is kept when its response has no `Cache-Control: max-age`. Default 300 s.
    pub default_cache: Duration,
    /// The longest a JWKS is kept, whatever its `max-age` says. Default 1 h.
    pub max_cache: Duration,
    /// The bound on one fetch, connection to last byte. Default 2 s.
    pub fetch_timeout: Duration,
    /// The largest JWKS (or metadata document) read; a larger body is refused. Default 64 KiB.
    pub max_jwks_bytes: usize,
    /// How old a DPoP proof's `iat` may be, on top of the leeway (RFC 9449 §11.1).
    /// Default 60 s.
    pub dpop_iat_window: Duration,
    /// How many DPoP proof ids the replay cache holds (RFC 9449 §11.1); when it is full of
    /// unexpired ids, DPoP requests are refused with `503` until some expire. Default 100,000.
    pub dpop_replay_capacity: usize,
    /// The base URL clients use to reach this API (scheme, host, port, and any path prefix a
    /// proxy strips), for the `htu` of DPoP proofs in the `axum` integration. Behind a proxy or
    /// a load balancer the `Host` header says what the client asked for, not where the API is,
    /// so it is never trusted: without this setting, DPoP requests are refused there.
    pub external_url: Option<String>,
}

impl Config {
    /// Settings for tokens of `issuer` meant for `audience`, with keys from `jwks_uri`, and
    /// every bound at its default.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        jwks_uri: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audiences: vec![audience.into()],
            jwks_uri: jwks_uri.into(),
            leeway: Duration::from_secs(30),
            min_refetch_interval: Duration::from_secs(60),
            default_cache: Duration::from_secs(300),
            max_cache: Duration::from_secs(3600),
            fetch_timeout: Duration::from_secs(2),
            max_jwks_bytes: 64 * 1024,
            dpop_iat_window: Duration::from_secs(60),
            dpop_replay_capacity: 100_000,
            external_url: None,
        }
    }

    /// Accepts tokens for any of `audiences` (replaces the list).
    pub fn with_audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audiences = audiences.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`Config::leeway`].
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Sets [`Config::min_refetch_interval`].
    pub fn with_min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// Sets [`Config::default_cache`].
    pub fn with_default_cache(mut self, lifetime: Duration) -> Self {
        self.default_cache = lifetime;
        self
    }

    /// Sets [`Config::max_cache`].
    pub fn with_max_cache(mut self, lifetime: Duration) -> Self {
        self.max_cache = lifetime;
        self
    }

    /// Sets [`Config::fetch_timeout`].
    pub fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// Sets [`Config::max_jwks_bytes`].
    pub fn with_max_jwks_bytes(mut self, bytes: usize) -> Self {
        self.max_jwks_bytes = bytes;
        self
    }

    /// Sets [`Config::dpop_iat_window`].
    pub fn with_dpop_iat_window(mut self, window: Duration) -> Self {
        self.dpop_iat_window = window;
        self
    }

    /// Sets [`Config::dpop_replay_capacity`].
    pub fn with_dpop_replay_capacity(mut self, entries: usize) -> Self {
        self.dpop_replay_capacity = entries;
        self
    }

    /// Sets [`Config::external_url`].
    pub fn with_external_url(mut self, url: impl Into<String>) -> Self {
        self.external_url = Some(url.into());
        self
    }
}
