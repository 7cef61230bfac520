//! Parsed signing keys and the JWS signing of access tokens (RFC 7515 compact serialisation).
//!
//! Keys are parsed once, when a key set is loaded, never per token; signing holds no lock.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair;
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use time::OffsetDateTime;

use super::schedule::{KeyTimes, Schedule};
use super::{KeyError, KeySet, PublicKeyRecord};
use crate::encoding::b64url;

/// One parsed private key, ready to sign.
pub struct SigningKey {
    kid: String,
    created_at: OffsetDateTime,
    activates_at: OffsetDateTime,
    /// `base64url(header) + "."`, fixed per key.
    header_prefix: String,
    pair: KeyPair,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl KeyTimes for Arc<SigningKey> {
    fn kid(&self) -> &str {
        &self.kid
    }
    fn created_at(&self) -> OffsetDateTime {
        self.created_at
    }
    fn activates_at(&self) -> OffsetDateTime {
        self.activates_at
    }
}

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("signing failed")]
pub struct SignError;

impl SigningKey {
    /// The key id placed in the JWS header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Signs `claims` (a JSON object) as an RFC 9068 access token:
    /// header `{"alg":"RS256","typ":"at+jwt","kid":...}`.
    pub fn sign_json(&self, claims: &[u8], rng: &SystemRandom) -> Result<String, SignError> {
        let mut token =
            String::with_capacity(self.header_prefix.len() + claims.len() * 4 / 3 + 350);
        token.push_str(&self.header_prefix);
        token.push_str(&b64url(claims));
        let mut sig = vec![0u8; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, rng, token.as_bytes(), &mut sig)
            .map_err(|_| SignError)?;
        token.push('.');
        token.push_str(&b64url(&sig));
        Ok(token)
    }
}

/// A loaded key set: every key parsed once, plus the public records derived from them.
#[derive(Debug, Default)]
pub struct KeyRing {
    keys: Vec<Arc<SigningKey>>,
    public: Vec<PublicKeyRecord>,
}

impl KeyRing {
    /// Parses every key of the set.
    pub fn load(set: &KeySet) -> Result<Self, KeyError> {
        let mut keys = Vec::with_capacity(set.keys.len());
        for entry in &set.keys {
            let pair = KeyPair::from_pkcs8(&entry.pkcs8()?)
                .map_err(|_| KeyError::Invalid(entry.kid.clone()))?;
            let header = serde_json::json!({"alg": super::ALG, "typ": "at+jwt", "kid": entry.kid});
            keys.push(Arc::new(SigningKey {
                kid: entry.kid.clone(),
                created_at: entry.created_at,
                activates_at: entry.activates_at,
                header_prefix: format!("{}.", b64url(header.to_string())),
                pair,
            }));
        }
        Ok(Self {
            keys,
            public: set.public_records()?,
        })
    }

    /// The key the schedule selects to sign at `now`.
    pub fn signer(&self, schedule: &Schedule, now: OffsetDateTime) -> Option<Arc<SigningKey>> {
        schedule.signing_key(&self.keys, now).cloned()
    }

    /// The key with this id, whatever its schedule state.
    pub fn key(&self, kid: &str) -> Option<Arc<SigningKey>> {
        self.keys.iter().find(|k| k.kid == kid).cloned()
    }

    /// The public records of all keys in the ring.
    pub fn public_records(&self) -> &[PublicKeyRecord] {
        &self.public
    }

    /// Whether the ring holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}
