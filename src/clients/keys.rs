//! Public keys a client registers for `private_key_jwt` (RFC 7523 §2.2, OpenID Connect Core
//! §9): read from a JWK or a JWKS, checked (RSA of at least 2048 bits, EC P-256, Ed25519) and
//! named by `kid` (the RFC 7638 thumbprint when the JWK has none).
//!
//! A private or symmetric key handed to us is refused before anything is parsed into a key:
//! its private members are looked for in the raw JSON, since a JWK type would silently drop
//! them.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Most keys a client may hold at once: enough for a rotation (old and new) and a spare.
pub const MAX_CLIENT_KEYS: usize = 3;

/// Smallest accepted RSA modulus, in bits (RFC 7518 §3.3 asks for at least 2048).
pub const MIN_RSA_BITS: usize = 2048;

/// JWK members that only a private or symmetric key has (RFC 7518 §6.2.2, §6.3.2, §6.4;
/// RFC 8037 §2).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// One registered public key of a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientKey {
    /// The key id assertions name in their `kid` header.
    pub kid: String,
    /// The public JWK, its `kid` set.
    pub jwk: Jwk,
    /// When the key was registered.
    #[serde(with = "time::serde::rfc3339")]
    pub added_at: OffsetDateTime,
}

/// Why a key is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyInputError {
    /// The text is not a JWK or a JWKS.
    #[error("not a JWK or JWK set: {0}")]
    NotAJwk(String),
    /// A private or symmetric key was given.
    #[error(
        "this is a private or symmetric key (it has a {0:?} member); register the public key only. Nothing was stored"
    )]
    PrivateKey(String),
    /// A key type or curve we do not accept.
    #[error("unsupported key: {0}; use RSA (2048 bits or more), EC P-256 or Ed25519")]
    Unsupported(String),
    /// An RSA key below the minimum size.
    #[error("RSA key of {0} bits is too small; at least {MIN_RSA_BITS} bits are required")]
    WeakRsa(usize),
    /// The JWK's `alg` or `use` does not fit a signature key of its type.
    #[error("key {0}: {1}")]
    Mismatch(String, &'static str),
    /// The set holds no key.
    #[error("the JWK set holds no key")]
    Empty,
}

/// The algorithms an assertion may be signed with (RFC 7518 §3.1, RFC 8037 §3.1). `none` and
/// the HMAC algorithms are absent on purpose: a public key is not a shared secret.
pub const ASSERTION_ALGORITHMS: [Algorithm; 4] = [
    Algorithm::RS256,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::EdDSA,
];

/// The allowed algorithms a key of this type can verify.
pub fn algorithms_for(jwk: &Jwk) -> &'static [Algorithm] {
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => &[Algorithm::RS256, Algorithm::PS256],
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {
            &[Algorithm::ES256]
        }
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {
            &[Algorithm::EdDSA]
        }
        _ => &[],
    }
}

fn key_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::EdDSA => Algorithm::EdDSA,
        _ => return None,
    })
}

/// Whether `jwk` may verify an assertion signed with `alg`: the key type fits, and the JWK's
/// own `alg`, when it names one, is that algorithm (RFC 7517 §4.4).
pub fn accepts(jwk: &Jwk, alg: Algorithm) -> bool {
    algorithms_for(jwk).contains(&alg)
        && jwk
            .common
            .key_algorithm
            .is_none_or(|a| key_algorithm(a) == Some(alg))
}

/// Reads one JWK or a JWKS (`{"keys": [...]}`) and checks every key; nothing is stored here.
pub fn parse_public_keys(text: &str, now: OffsetDateTime) -> Result<Vec<ClientKey>, KeyInputError> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| KeyInputError::NotAJwk(e.to_string()))?;
    let members = match value.get("keys") {
        Some(serde_json::Value::Array(keys)) => keys.clone(),
        Some(_) => return Err(KeyInputError::NotAJwk("\"keys\" is not an array".into())),
        None => vec![value],
    };
    if members.is_empty() {
        return Err(KeyInputError::Empty);
    }
    members.iter().map(|m| public_key(m, now)).collect()
}

/// Checks one JWK given as JSON and names it.
fn public_key(value: &serde_json::Value, now: OffsetDateTime) -> Result<ClientKey, KeyInputError> {
    let object = value
        .as_object()
        .ok_or_else(|| KeyInputError::NotAJwk("a key is not a JSON object".into()))?;
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| object.contains_key(**m)) {
        return Err(KeyInputError::PrivateKey((*member).to_owned()));
    }
    let mut jwk: Jwk =
        serde_json::from_value(value.clone()).map_err(|e| KeyInputError::NotAJwk(e.to_string()))?;
    check_key_material(&jwk)?;
    let kid = match &jwk.common.key_id {
        Some(kid) if !kid.is_empty() && kid.len() <= 256 => kid.clone(),
        Some(_) => {
            return Err(KeyInputError::NotAJwk(
                "kid must be 1 to 256 characters".into(),
            ));
        }
        None => jwk
            .thumbprint(ThumbprintHash::SHA256)
            .map_err(|e| KeyInputError::NotAJwk(e.to_string()))?,
    };
    if let Some(alg) = jwk.common.key_algorithm
        && !key_algorithm(alg).is_some_and(|a| algorithms_for(&jwk).contains(&a))
    {
        return Err(KeyInputError::Mismatch(
            kid,
            "its alg is not one of RS256, PS256, ES256, EdDSA for its key type",
        ));
    }
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
    {
        return Err(KeyInputError::Mismatch(kid, "its use is not sig"));
    }
    jwk.common.key_id = Some(kid.clone());
    Ok(ClientKey {
        kid,
        jwk,
        added_at: now,
    })
}

/// Key type, curve and size; and that the key material decodes into a verification key.
fn check_key_material(jwk: &Jwk) -> Result<(), KeyInputError> {
    match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = URL_SAFE_NO_PAD
                .decode(&p.n)
                .map_err(|_| KeyInputError::NotAJwk("n is not base64url".into()))?;
            let leading = n.iter().take_while(|b| **b == 0).count();
            let bits = (n.len() - leading) * 8;
            if bits < MIN_RSA_BITS {
                return Err(KeyInputError::WeakRsa(bits));
            }
        }
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {}
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => {}
        AlgorithmParameters::EllipticCurve(p) => {
            return Err(KeyInputError::Unsupported(format!(
                "EC curve {:?}",
                p.curve
            )));
        }
        AlgorithmParameters::OctetKeyPair(p) => {
            return Err(KeyInputError::Unsupported(format!(
                "OKP curve {:?}",
                p.curve
            )));
        }
        _ => return Err(KeyInputError::Unsupported("key type".into())),
    }
    DecodingKey::from_jwk(jwk)
        .map(|_| ())
        .map_err(|e| KeyInputError::NotAJwk(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC: &str = r#"{"kty":"EC","crv":"P-256","x":"NGtiPoNjHZVpYTNDThdNa1MWYp4EsA9-WYAgsCFNffQ","y":"umRhVxz7u9gFwr6AgYn0si9Qsk5exXIArbKHZS7fz3E"}"#;
    const ED: &str =
        r#"{"kty":"OKP","crv":"Ed25519","x":"i5TOBqK74x3fV7S7Yvrte1HO9KH0Jm9UT4SndS8Fu2c"}"#;

    fn now() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH
    }

    fn with(base: &str, member: &str, value: serde_json::Value) -> String {
        let mut v: serde_json::Value = serde_json::from_str(base).unwrap();
        v[member] = value;
        v.to_string()
    }

    #[test]
    fn a_jwk_or_a_jwks_is_read_and_named_by_its_thumbprint() {
        let one = parse_public_keys(EC, now()).unwrap();
        assert_eq!(one.len(), 1);
        let jwk: Jwk = serde_json::from_str(EC).unwrap();
        assert_eq!(one[0].kid, jwk.thumbprint(ThumbprintHash::SHA256).unwrap());
        assert_eq!(
            one[0].jwk.common.key_id.as_deref(),
            Some(one[0].kid.as_str())
        );
        let set = format!(r#"{{"keys":[{EC},{}]}}"#, with(ED, "kid", "mine".into()));
        let two = parse_public_keys(&set, now()).unwrap();
        assert_eq!(two[1].kid, "mine");
        assert_eq!(
            parse_public_keys(r#"{"keys":[]}"#, now()),
            Err(KeyInputError::Empty)
        );
    }

    #[test]
    fn private_and_symmetric_keys_are_refused_by_their_members() {
        for member in ["d", "p", "q", "dp", "dq", "qi", "oth"] {
            let err = parse_public_keys(&with(EC, member, "AQAB".into()), now()).unwrap_err();
            assert_eq!(err, KeyInputError::PrivateKey(member.to_owned()));
        }
        let err = parse_public_keys(r#"{"kty":"oct","k":"c2VjcmV0"}"#, now()).unwrap_err();
        assert_eq!(err, KeyInputError::PrivateKey("k".to_owned()));
        // Inside a set too, and the message says nothing was stored.
        let set = format!(r#"{{"keys":[{EC},{}]}}"#, with(ED, "d", "AQAB".into()));
        let err = parse_public_keys(&set, now()).unwrap_err();
        assert!(err.to_string().contains("Nothing was stored"), "{err}");
    }

    #[test]
    fn weak_or_unsupported_keys_and_mismatched_alg_are_refused() {
        let small = URL_SAFE_NO_PAD.encode([0xc5u8; 128]);
        let rsa = format!(r#"{{"kty":"RSA","e":"AQAB","n":"{small}"}}"#);
        assert_eq!(
            parse_public_keys(&rsa, now()),
            Err(KeyInputError::WeakRsa(1024))
        );
        let p384 = with(EC, "crv", "P-384".into());
        assert!(matches!(
            parse_public_keys(&p384, now()),
            Err(KeyInputError::Unsupported(_) | KeyInputError::NotAJwk(_))
        ));
        for alg in ["RS256", "HS256", "none"] {
            assert!(
                parse_public_keys(&with(EC, "alg", alg.into()), now()).is_err(),
                "{alg}"
            );
        }
        assert!(parse_public_keys(&with(EC, "alg", "ES256".into()), now()).is_ok());
        assert!(parse_public_keys(&with(EC, "use", "enc".into()), now()).is_err());
    }

    #[test]
    fn a_key_accepts_only_the_algorithms_of_its_type() {
        let ec: Jwk = serde_json::from_str(EC).unwrap();
        assert!(accepts(&ec, Algorithm::ES256));
        assert!(!accepts(&ec, Algorithm::RS256));
        assert!(!accepts(&ec, Algorithm::HS256));
        let ed: Jwk = serde_json::from_str(ED).unwrap();
        assert!(accepts(&ed, Algorithm::EdDSA));
        assert!(!accepts(&ed, Algorithm::ES256));
    }
}
