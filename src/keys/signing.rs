//! Parsed signing keys and the JWS signing of access tokens (RFC 7515 compact serialisation).
//!
//! Keys are parsed once, when a key set is loaded, never per token; signing holds no lock.

use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use time::OffsetDateTime;

use super::schedule::{KeyTimes, Schedule};
use super::{KeyError, KeyPair, KeySet, PublicKeyRecord, SigningAlg};
use crate::encoding::b64url;
use crate::oauth::nonce::NonceKey;

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

    /// The algorithm the key signs with, the `alg` of its JWS header and of its JWK.
    pub fn alg(&self) -> SigningAlg {
        self.pair.alg()
    }

    /// Signs `claims` (a JSON object) as an RFC 9068 access token: header
    /// `{"alg":<the key's own>,"typ":"at+jwt","kid":...}`.
    pub fn sign_json(&self, claims: &[u8], rng: &SystemRandom) -> Result<String, SignError> {
        let mut token =
            String::with_capacity(self.header_prefix.len() + claims.len() * 4 / 3 + 350);
        token.push_str(&self.header_prefix);
        token.push_str(&b64url(claims));
        let sig = self
            .pair
            .sign(token.as_bytes(), rng)
            .map_err(|_| SignError)?;
        token.push('.');
        token.push_str(&b64url(&sig));
        Ok(token)
    }
}

/// A loaded key set: every key parsed once, plus the public records derived from them.
#[derive(Debug, Default)]
pub struct SigningKeys {
    keys: Vec<Arc<SigningKey>>,
    public: Vec<PublicKeyRecord>,
    nonces: Option<Arc<NonceKey>>,
}

impl SigningKeys {
    /// Parses every key of the set.
    pub fn load(set: &KeySet) -> Result<Self, KeyError> {
        let mut keys = Vec::with_capacity(set.keys.len());
        for entry in &set.keys {
            let pair = entry.key_pair()?;
            let header =
                serde_json::json!({"alg": pair.alg().as_str(), "typ": "at+jwt", "kid": entry.kid});
            keys.push(Arc::new(SigningKey {
                kid: entry.kid.clone(),
                created_at: entry.created_at,
                activates_at: entry.activates_at,
                header_prefix: format!("{}.", b64url(header.to_string())),
                pair,
            }));
        }
        let secret = set.dpop_nonce_secret.as_ref();
        Ok(Self {
            keys,
            public: set.public_records()?,
            nonces: secret.map(|s| Arc::new(NonceKey::new(s.as_bytes()))),
        })
    }

    /// The DPoP nonce key of the set's nonce secret, if the set has one.
    pub fn nonce_key(&self) -> Option<Arc<NonceKey>> {
        self.nonces.clone()
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

#[cfg(test)]
mod tests {
    use jsonwebtoken::{DecodingKey, EncodingKey, Header, Validation};
    use time::OffsetDateTime;

    use super::*;
    use crate::keys::{KeyEntry, SIGNING_ALGS};

    fn ring_of(alg: SigningAlg) -> (KeySet, SigningKeys) {
        let now = OffsetDateTime::now_utc();
        let set = KeySet {
            keys: vec![KeyEntry::generate(alg, now, now).unwrap()],
            ..KeySet::default()
        };
        let ring = SigningKeys::load(&set).unwrap();
        (set, ring)
    }

    /// What a resource server does: the algorithm from the published JWK, the key from it.
    fn verify(
        token: &str,
        record: &PublicKeyRecord,
    ) -> jsonwebtoken::errors::Result<serde_json::Value> {
        let alg = match record.jwk.common.key_algorithm {
            Some(a) => a.to_string().parse().expect("a JWS algorithm"),
            None => panic!("the JWK has no alg"),
        };
        let mut v = Validation::new(alg);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        let key = DecodingKey::from_jwk(&record.jwk)?;
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).map(|d| d.claims)
    }

    #[test]
    fn every_algorithm_signs_a_token_that_verifies_against_its_jwk() {
        let rng = SystemRandom::new();
        for alg in SIGNING_ALGS {
            let (_, ring) = ring_of(alg);
            let key = ring.key(ring.public_records()[0].kid.as_str()).unwrap();
            assert_eq!(key.alg(), alg);
            let token = key.sign_json(br#"{"sub":"s","n":1}"#, &rng).unwrap();
            let header = jsonwebtoken::decode_header(&token).unwrap();
            assert_eq!(header.alg, alg.jwt_algorithm());
            assert_eq!(header.typ.as_deref(), Some("at+jwt"));
            assert_eq!(header.kid.as_deref(), Some(key.kid()));
            let claims = verify(&token, &ring.public_records()[0]).unwrap();
            assert_eq!(claims["n"], 1, "{alg}");

            // A changed payload fails, and no key of another type verifies it.
            let (head, rest) = token.split_once('.').unwrap();
            let (_, sig) = rest.split_once('.').unwrap();
            let forged = format!(
                "{head}.{}.{sig}",
                crate::encoding::b64url(br#"{"sub":"x","n":1}"#)
            );
            assert!(verify(&forged, &ring.public_records()[0]).is_err(), "{alg}");
            for other in SIGNING_ALGS.into_iter().filter(|o| *o != alg) {
                let (_, other_ring) = ring_of(other);
                assert!(verify(&token, &other_ring.public_records()[0]).is_err());
            }
        }
    }

    /// The stored EC and Ed25519 PKCS#8 forms are the ones `jsonwebtoken` reads
    /// (`EncodingKey::from_ec_der`, `from_ed_der`); its `from_rsa_der` wants PKCS#1, not the
    /// PKCS#8 stored for RSA keys since the first release.
    #[test]
    fn stored_ec_and_ed25519_keys_are_pkcs8_that_jsonwebtoken_signs_with() {
        for alg in [SigningAlg::ES256, SigningAlg::EdDSA] {
            let (set, ring) = ring_of(alg);
            let der = set.keys[0].pkcs8().unwrap();
            let key = match alg {
                SigningAlg::ES256 => EncodingKey::from_ec_der(&der),
                _ => EncodingKey::from_ed_der(&der),
            };
            let token = jsonwebtoken::encode(
                &Header::new(alg.jwt_algorithm()),
                &serde_json::json!({"sub": "s"}),
                &key,
            )
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
            verify(&token, &ring.public_records()[0]).unwrap();
        }
    }
}
