//! Public keys as JWKs (RFC 7517, RFC 7518 §6.3.1) and their RFC 7638 thumbprints.

use aws_lc_rs::rsa::{KeyPair, PublicKeyComponents};
use aws_lc_rs::signature::KeyPair as _;
use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, Jwk, JwkSet, KeyAlgorithm, PublicKeyUse,
    RSAKeyParameters, RSAKeyType, ThumbprintHash,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::schedule::{KeyTimes, Schedule};
use super::{KeyEntry, KeyError};
use crate::encoding::b64url;

fn rsa_params(pair: &KeyPair) -> RSAKeyParameters {
    let components: PublicKeyComponents<Vec<u8>> = pair.public_key().into();
    RSAKeyParameters {
        key_type: RSAKeyType::RSA,
        n: b64url(&components.n),
        e: b64url(&components.e),
    }
}

/// The RFC 7638 SHA-256 thumbprint of the key pair's public key: its `kid`.
pub fn thumbprint(pair: &KeyPair) -> String {
    let bare = Jwk {
        common: CommonParameters::default(),
        algorithm: AlgorithmParameters::RSA(rsa_params(pair)),
    };
    bare.thumbprint(ThumbprintHash::SHA256)
        .expect("an RSA JWK always has a thumbprint")
}

/// The public JWK of a key pair: `kty`, `kid`, `use: sig`, `alg: RS256`, `n`, `e`. Never a
/// private member: it is built from the public components only.
pub fn public_jwk(kid: &str, pair: &KeyPair) -> Jwk {
    Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(KeyAlgorithm::RS256),
            key_id: Some(kid.to_owned()),
            ..Default::default()
        },
        algorithm: AlgorithmParameters::RSA(rsa_params(pair)),
    }
}

/// One published key (DESIGN.md "Data model": the public-keys table): the JWK and the
/// timestamps the schedule needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeyRecord {
    /// Key id.
    pub kid: String,
    /// The public JWK.
    pub jwk: Jwk,
    /// When the key was generated.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it may start signing.
    #[serde(with = "time::serde::rfc3339")]
    pub activates_at: OffsetDateTime,
}

impl PublicKeyRecord {
    /// The public record of a private key entry.
    pub fn from_entry(entry: &KeyEntry) -> Result<Self, KeyError> {
        let pair = KeyPair::from_pkcs8(&entry.pkcs8()?)
            .map_err(|_| KeyError::Invalid(entry.kid.clone()))?;
        Ok(Self {
            kid: entry.kid.clone(),
            jwk: public_jwk(&entry.kid, &pair),
            created_at: entry.created_at,
            activates_at: entry.activates_at,
        })
    }
}

impl KeyTimes for PublicKeyRecord {
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

/// The JWKS document at `now`: exactly the keys the schedule publishes.
pub fn jwks(records: &[PublicKeyRecord], schedule: &Schedule, now: OffsetDateTime) -> JwkSet {
    JwkSet {
        keys: schedule
            .published(records, now)
            .into_iter()
            .map(|r| r.jwk.clone())
            .collect(),
    }
}
