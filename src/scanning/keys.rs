//! A scanning program's public keys document, fetched over HTTPS with a bounded client and
//! cached, and the check of a report's signature: ECDSA P-256 with SHA-256 over the raw body,
//! the DER signature base64 encoded, the key named by its identifier.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use tokio::sync::Mutex;

/// How long a fetched document is used before it is fetched again.
pub const KEYS_CACHE: Duration = Duration::from_secs(30 * 60);
/// The longest one fetch of the document may take, connection included.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(3);
/// The shortest time between two fetches for an unknown key identifier, so that a flood of
/// made-up identifiers cannot make us hammer the program's endpoint.
const REFETCH_PAUSE: Duration = Duration::from_secs(10);
/// The largest keys document read.
const MAX_DOCUMENT: usize = 64 * 1024;

/// Why a signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    /// No key of that identifier, missing headers, or a signature that does not verify.
    Invalid,
    /// The keys document could not be fetched or read.
    KeysUnavailable,
}

#[derive(Deserialize)]
struct Document {
    public_keys: Vec<DocumentKey>,
}

#[derive(Deserialize)]
struct DocumentKey {
    key_identifier: String,
    key: String,
}

/// The SubjectPublicKeyInfo DER inside a PEM `PUBLIC KEY` block.
fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    let body = pem
        .trim()
        .strip_prefix("-----BEGIN PUBLIC KEY-----")?
        .strip_suffix("-----END PUBLIC KEY-----")?;
    let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    STANDARD.decode(b64).ok()
}

struct Cached {
    keys: HashMap<String, Vec<u8>>,
    fetched: Instant,
}

/// One program's keys, fetched from its URL when needed.
pub struct ProgramKeys {
    url: String,
    http: reqwest::Client,
    cache: Mutex<Option<Cached>>,
}

impl ProgramKeys {
    /// The keys served at `url` (checked by the configuration: `https`, or `http` on
    /// loopback).
    pub fn new(url: String) -> Self {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("token-service secret scanning")
            .build()
            .unwrap_or_default();
        Self {
            url,
            http,
            cache: Mutex::new(None),
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Vec<u8>>, SignatureError> {
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::warn!(url = %self.url, error = %e, "scanning keys document not fetched");
            SignatureError::KeysUnavailable
        };
        let fetch = async {
            let response = self
                .http
                .get(&self.url)
                .header("accept", "application/json")
                .send()
                .await
                .map_err(|e| unavailable(&e))?;
            if !response.status().is_success() {
                return Err(unavailable(&response.status()));
            }
            if response
                .content_length()
                .is_some_and(|n| n > MAX_DOCUMENT as u64)
            {
                return Err(unavailable(&"document too large"));
            }
            let bytes = response.bytes().await.map_err(|e| unavailable(&e))?;
            if bytes.len() > MAX_DOCUMENT {
                return Err(unavailable(&"document too large"));
            }
            let document: Document = serde_json::from_slice(&bytes).map_err(|e| unavailable(&e))?;
            Ok(document
                .public_keys
                .into_iter()
                .filter_map(|k| Some((k.key_identifier, pem_to_der(&k.key)?)))
                .collect())
        };
        // The client's timeout covers the request; this covers the whole of it, body included.
        tokio::time::timeout(FETCH_TIMEOUT, fetch)
            .await
            .map_err(|_| unavailable(&"timed out"))?
    }

    /// The DER public key of `id`: from the cache while it is fresh, else (or when the
    /// identifier is unknown, at most once per pause) from a new fetch.
    async fn key(&self, id: &str) -> Result<Vec<u8>, SignatureError> {
        let mut cache = self.cache.lock().await;
        let fresh = cache.as_ref().filter(|c| c.fetched.elapsed() < KEYS_CACHE);
        if let Some(c) = fresh {
            if let Some(key) = c.keys.get(id) {
                return Ok(key.clone());
            }
            if c.fetched.elapsed() < REFETCH_PAUSE {
                return Err(SignatureError::Invalid);
            }
        }
        let keys = self.fetch().await?;
        let found = keys.get(id).cloned();
        *cache = Some(Cached {
            keys,
            fetched: Instant::now(),
        });
        found.ok_or(SignatureError::Invalid)
    }

    /// Checks `signature` (base64 of a DER ECDSA signature) over `body` with the key `id`.
    pub async fn verify(
        &self,
        id: Option<&str>,
        signature: Option<&str>,
        body: &[u8],
    ) -> Result<(), SignatureError> {
        let (Some(id), Some(signature)) = (id, signature) else {
            return Err(SignatureError::Invalid);
        };
        let signature = STANDARD
            .decode(signature.trim())
            .map_err(|_| SignatureError::Invalid)?;
        let key = self.key(id).await?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, key)
            .verify(body, &signature)
            .map_err(|_| SignatureError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_armor_is_stripped_and_the_body_decoded() {
        let pem = "-----BEGIN PUBLIC KEY-----\nAAEC\nAw==\n-----END PUBLIC KEY-----\n";
        assert_eq!(pem_to_der(pem), Some(vec![0, 1, 2, 3]));
        assert_eq!(pem_to_der("AAEC"), None);
        assert_eq!(
            pem_to_der("-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----"),
            None
        );
    }
}
