//! The issuer's signing keys (RFC 7517): fetched within bounds, kept for their
//! `Cache-Control: max-age`, refetched on an unknown `kid` at most once per interval, with one
//! fetch in flight at a time however many requests miss together.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};
use reqwest::{Client, Url};
use serde::Deserialize;
use serde_json::Value;

use crate::config::Config;
use crate::error::Error;
use crate::fetch;

/// One published key and the only algorithm it verifies.
pub(crate) struct Key {
    pub alg: Algorithm,
    pub decoding: DecodingKey,
}

/// What the cache knows at one moment.
#[derive(Default)]
struct Snapshot {
    keys: Arc<HashMap<String, Arc<Key>>>,
    /// End of the freshness lifetime of `keys`; `None` before the first successful fetch.
    expires_at: Option<Instant>,
    last_attempt: Option<Instant>,
    /// Why the last fetch failed, if it did.
    last_error: Option<Error>,
}

enum Decision {
    Hit(Arc<Key>),
    Miss(Error),
    Fetch,
}

/// The bounds of the cache, from [`Config`].
struct Bounds {
    min_refetch_interval: Duration,
    default_cache: Duration,
    max_cache: Duration,
    fetch_timeout: Duration,
    max_bytes: usize,
}

/// The key set of one issuer, shared by every clone of a verifier.
pub(crate) struct KeyCache {
    url: Result<Url, Error>,
    client: Result<Client, Error>,
    bounds: Bounds,
    state: RwLock<Snapshot>,
    /// Single flight: the one fetch in progress; those who wait for it read its result.
    refresh: tokio::sync::Mutex<()>,
}

impl KeyCache {
    pub(crate) fn new(config: &Config, client: Result<Client, Error>) -> Self {
        Self {
            url: fetch::allowed_url(&config.jwks_uri),
            client,
            bounds: Bounds {
                min_refetch_interval: config.min_refetch_interval,
                default_cache: config.default_cache,
                max_cache: config.max_cache,
                fetch_timeout: config.fetch_timeout,
                max_bytes: config.max_jwks_bytes,
            },
            state: RwLock::new(Snapshot::default()),
            refresh: tokio::sync::Mutex::new(()),
        }
    }

    /// The key named `kid`, fetching the set if it is stale or lacks `kid` and no fetch
    /// happened within the refetch interval.
    pub(crate) async fn key(&self, kid: &str) -> Result<Arc<Key>, Error> {
        match self.decide(kid, false) {
            Decision::Hit(key) => return Ok(key),
            Decision::Miss(e) => return Err(e),
            Decision::Fetch => {}
        }
        let _flight = self.refresh.lock().await;
        // Whoever held the lock before us may have fetched already.
        match self.decide(kid, false) {
            Decision::Hit(key) => return Ok(key),
            Decision::Miss(e) => return Err(e),
            Decision::Fetch => {}
        }
        self.fetch_and_store().await;
        match self.decide(kid, true) {
            Decision::Hit(key) => Ok(key),
            Decision::Miss(e) => Err(e),
            Decision::Fetch => Err(Error::UnknownKey),
        }
    }

    /// Fetches the set now (waiting for a fetch already under way first).
    pub(crate) async fn refresh(&self) -> Result<(), Error> {
        let _flight = self.refresh.lock().await;
        self.fetch_and_store().await;
        match &self.read().last_error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Snapshot> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn decide(&self, kid: &str, just_fetched: bool) -> Decision {
        let now = Instant::now();
        let s = self.read();
        let key = s.keys.get(kid);
        let fresh = s.expires_at.is_some_and(|end| now < end);
        let recent = just_fetched
            || s.last_attempt
                .is_some_and(|t| now.duration_since(t) < self.bounds.min_refetch_interval);
        // Keys past their lifetime still verify while a refetch is not allowed yet (it just
        // failed, or max-age is shorter than the refetch interval), up to `max_cache` more.
        let usable_stale = s
            .expires_at
            .is_some_and(|end| now < end + self.bounds.max_cache);
        match key {
            Some(key) if fresh || (recent && usable_stale) => Decision::Hit(key.clone()),
            _ if recent => Decision::Miss(s.last_error.clone().unwrap_or(Error::UnknownKey)),
            _ => Decision::Fetch,
        }
    }

    async fn fetch_and_store(&self) {
        let result = self.fetch().await;
        let now = Instant::now();
        let mut s = self.state.write().unwrap_or_else(PoisonError::into_inner);
        s.last_attempt = Some(now);
        match result {
            Ok((keys, max_age)) => {
                let lifetime = max_age
                    .unwrap_or(self.bounds.default_cache)
                    .min(self.bounds.max_cache);
                s.keys = Arc::new(keys);
                s.expires_at = Some(now + lifetime);
                s.last_error = None;
            }
            Err(e) => s.last_error = Some(e),
        }
    }

    async fn fetch(&self) -> Result<(HashMap<String, Arc<Key>>, Option<Duration>), Error> {
        let url = self.url.as_ref().map_err(Clone::clone)?;
        let client = self.client.as_ref().map_err(Clone::clone)?;
        let fetched = fetch::get(
            client,
            url,
            self.bounds.fetch_timeout,
            self.bounds.max_bytes,
        )
        .await?;
        Ok((parse(&fetched.body)?, fetched.max_age))
    }
}

/// The usable keys of a JWKS document, by `kid`. Keys this crate cannot use (another `use`, an
/// unsupported type or algorithm, no `kid`, private members) are left out rather than failing
/// the set, so an issuer may publish keys for others beside ours.
pub(crate) fn parse(body: &[u8]) -> Result<HashMap<String, Arc<Key>>, Error> {
    #[derive(Deserialize)]
    struct Set {
        keys: Vec<Value>,
    }
    let set: Set = serde_json::from_slice(body)
        .map_err(|_| Error::Jwks("the JWKS is not a JSON key set".into()))?;
    let mut keys = HashMap::new();
    for value in set.keys {
        if let Some((kid, key)) = usable(value) {
            keys.entry(kid).or_insert_with(|| Arc::new(key));
        }
    }
    Ok(keys)
}

/// Members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037).
pub(crate) const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fn usable(value: Value) -> Option<(String, Key)> {
    let object = value.as_object()?;
    if PRIVATE_MEMBERS.iter().any(|m| object.contains_key(*m)) {
        return None;
    }
    if object.get("use").is_some_and(|u| u != "sig") {
        return None;
    }
    let kid = object.get("kid")?.as_str()?.to_owned();
    let derived = derived_alg(object)?;
    // RFC 8725 §3.1: the algorithm comes from the key, never from the token.
    let alg = match object.get("alg") {
        None => derived,
        Some(Value::String(named)) => {
            let named = named_alg(named)?;
            (named == derived).then_some(named)?
        }
        Some(_) => return None,
    };
    let jwk: Jwk = serde_json::from_value(value).ok()?;
    let decoding = DecodingKey::from_jwk(&jwk).ok()?;
    Some((kid, Key { alg, decoding }))
}

/// The one algorithm a key of this type verifies here: RSA -> RS256, EC P-256 -> ES256,
/// OKP Ed25519 -> EdDSA (RFC 7518 §6, RFC 8037 §2).
fn derived_alg(object: &serde_json::Map<String, Value>) -> Option<Algorithm> {
    let crv = object.get("crv").and_then(Value::as_str);
    match (object.get("kty")?.as_str()?, crv) {
        ("RSA", _) => Some(Algorithm::RS256),
        ("EC", Some("P-256")) => Some(Algorithm::ES256),
        ("OKP", Some("Ed25519")) => Some(Algorithm::EdDSA),
        _ => None,
    }
}

/// The access-token algorithms this crate accepts, by their JOSE names.
pub(crate) fn named_alg(name: &str) -> Option<Algorithm> {
    match name {
        "RS256" => Some(Algorithm::RS256),
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    #[test]
    fn keys_are_kept_only_with_a_kid_a_signing_use_and_a_matching_algorithm() {
        let body = json!({"keys": [
            {"kty": "OKP", "crv": "Ed25519", "x": X, "kid": "ok"},
            {"kty": "OKP", "crv": "Ed25519", "x": X, "kid": "named", "alg": "EdDSA", "use": "sig"},
            {"kty": "OKP", "crv": "Ed25519", "x": X},
            {"kty": "OKP", "crv": "Ed25519", "x": X, "kid": "enc", "use": "enc"},
            {"kty": "OKP", "crv": "Ed25519", "x": X, "kid": "rs", "alg": "RS256"},
            {"kty": "OKP", "crv": "Ed25519", "x": X, "kid": "hs", "alg": "HS256"},
            {"kty": "OKP", "crv": "Ed25519", "x": X, "d": X, "kid": "private"},
            {"kty": "oct", "k": X, "kid": "secret"},
        ]});
        let keys = parse(body.to_string().as_bytes()).unwrap();
        let mut kids: Vec<_> = keys.keys().cloned().collect();
        kids.sort();
        assert_eq!(kids, ["named", "ok"]);
        assert_eq!(keys["ok"].alg, Algorithm::EdDSA);
    }

    #[test]
    fn a_document_without_keys_is_refused() {
        assert!(parse(b"{}").is_err());
        assert!(parse(b"<html>").is_err());
    }
}
