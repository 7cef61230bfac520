//! Public keys as JWKs (RFC 7517, RFC 7518 §6.3.1) and their RFC 7638 thumbprints.

use jsonwebtoken::jwk::{
    AlgorithmParameters, CommonParameters, Jwk, JwkSet, PublicKeyUse, ThumbprintHash,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::pair::KeyPair;
use super::schedule::{KeyTimes, Schedule};
use super::{KeyEntry, KeyError};

/// The RFC 7638 SHA-256 thumbprint of a public key: its `kid`. The canonical JSON of each key
/// type (RFC 7638 §3.2; RFC 8037 §2 for OKP) is `jsonwebtoken`'s.
pub fn thumbprint(params: &AlgorithmParameters) -> String {
    let bare = Jwk {
        common: CommonParameters::default(),
        algorithm: params.clone(),
    };
    bare.thumbprint(ThumbprintHash::SHA256)
        .expect("RSA, P-256 and Ed25519 JWKs always have a thumbprint")
}

/// The public JWK of a key pair: `kty`, `kid`, `use: sig`, the key's own `alg`, and the public
/// members of its type (`n`, `e`; `crv`, `x`, `y`; `crv`, `x`). Never a private member: it is
/// built from the public key only.
pub fn public_jwk(kid: &str, pair: &KeyPair) -> Jwk {
    Jwk {
        common: CommonParameters {
            public_key_use: Some(PublicKeyUse::Signature),
            key_algorithm: Some(pair.alg().key_algorithm()),
            key_id: Some(kid.to_owned()),
            ..Default::default()
        },
        algorithm: pair.public_params(),
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
    /// Published by a rotation that has not finished (AWS: its key set is `AWSPENDING`, not
    /// `AWSCURRENT`): it does not sign, and no key retires because of it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending: bool,
    /// When the key's set became current, where a rotation recorded it (`finishSecret`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub current_since: Option<OffsetDateTime>,
}

impl PublicKeyRecord {
    /// The public record of a private key entry.
    pub fn from_entry(entry: &KeyEntry) -> Result<Self, KeyError> {
        let pair = entry.key_pair()?;
        Ok(Self {
            kid: entry.kid.clone(),
            jwk: public_jwk(&entry.kid, &pair),
            created_at: entry.created_at,
            activates_at: entry.activates_at,
            pending: false,
            current_since: None,
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
    fn is_pending(&self) -> bool {
        self.pending
    }
    fn current_since(&self) -> Option<OffsetDateTime> {
        self.current_since
    }
}

/// How long the oldest pending key has been waiting for its rotation to finish at `now`
/// (`None` when no rotation is under way): a stuck rotation shows as a growing age.
pub fn oldest_pending_age(records: &[PublicKeyRecord], now: OffsetDateTime) -> Option<i64> {
    records
        .iter()
        .filter(|r| r.pending)
        .map(|r| (now - r.created_at).whole_seconds())
        .max()
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

#[cfg(test)]
mod tests {
    use jsonwebtoken::jwk::{
        EllipticCurve, OctetKeyPairParameters, OctetKeyPairType, RSAKeyParameters, RSAKeyType,
    };

    use super::*;
    use crate::keys::{SIGNING_ALGS, SigningAlg};

    /// RFC 7638 §3.1: the RSA key of RFC 7517 Appendix A.1 and its SHA-256 thumbprint.
    #[test]
    fn rsa_thumbprint_is_the_rfc_7638_example() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let params = AlgorithmParameters::RSA(RSAKeyParameters {
            key_type: RSAKeyType::RSA,
            n: n.into(),
            e: "AQAB".into(),
        });
        assert_eq!(
            thumbprint(&params),
            "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"
        );
    }

    /// RFC 8037 Appendix A.3: the Ed25519 key of A.2 and its SHA-256 thumbprint.
    #[test]
    fn ed25519_thumbprint_is_the_rfc_8037_example() {
        let params = AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
            key_type: OctetKeyPairType::OctetKeyPair,
            curve: EllipticCurve::Ed25519,
            x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo".into(),
        });
        assert_eq!(
            thumbprint(&params),
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
    }

    /// Each key type's JWK has exactly the public members of RFC 7518 §6.2.1 / §6.3.1 and
    /// RFC 8037 §2, its own `alg`, `use: sig`, and its thumbprint as `kid`.
    #[test]
    fn each_key_is_published_with_its_own_alg_and_public_members_only() {
        let now = OffsetDateTime::now_utc();
        let expected: [(SigningAlg, &[&str]); 3] = [
            (SigningAlg::RS256, &["alg", "e", "kid", "kty", "n", "use"]),
            (
                SigningAlg::ES256,
                &["alg", "crv", "kid", "kty", "use", "x", "y"],
            ),
            (SigningAlg::EdDSA, &["alg", "crv", "kid", "kty", "use", "x"]),
        ];
        assert_eq!(expected.map(|(a, _)| a), SIGNING_ALGS);
        for (alg, members) in expected {
            let entry = KeyEntry::generate(alg, now, now).unwrap();
            let record = PublicKeyRecord::from_entry(&entry).unwrap();
            let json = serde_json::to_value(&record.jwk).unwrap();
            let mut names: Vec<&str> = json
                .as_object()
                .unwrap()
                .keys()
                .map(|k| k.as_str())
                .collect();
            names.sort();
            assert_eq!(names, members, "{alg}: {json}");
            assert_eq!(json["alg"], alg.as_str());
            assert_eq!(json["use"], "sig");
            assert_eq!(json["kid"], entry.kid.as_str());
            assert_eq!(thumbprint(&record.jwk.algorithm), entry.kid);
            match alg {
                SigningAlg::RS256 => assert_eq!(json["kty"], "RSA"),
                SigningAlg::ES256 => {
                    assert_eq!(
                        (json["kty"].as_str(), json["crv"].as_str()),
                        (Some("EC"), Some("P-256"))
                    );
                }
                SigningAlg::EdDSA => {
                    assert_eq!(
                        (json["kty"].as_str(), json["crv"].as_str()),
                        (Some("OKP"), Some("Ed25519"))
                    );
                }
            }
        }
    }
}
