//! `private_key_jwt` client authentication (RFC 7523 §2.2 and §3, RFC 7521 §4.2, OpenID
//! Connect Core §9): checking a client assertion against a client record and a clock.
//!
//! Pure functions: [`verify`] returns what must be remembered (the `jti` and until when); the
//! token flow (`crate::issue`) records its one-time use under
//! [`super::used_ids::client_assertion`] in the replay cache. Every failure is the same
//! `invalid_client` to the client, and every path verifies one signature: a client that does
//! not exist, uses secrets or has no key for the assertion is checked against a fixed key
//! nobody holds, so timing does not tell these cases apart.

use std::sync::OnceLock;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use time::OffsetDateTime;

use crate::clients::keys::{ASSERTION_ALGORITHMS, accepts};
use crate::clients::{Client, ClientAuthMethod};

/// The `client_assertion_type` of a JWT client assertion (RFC 7523 §2.2).
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Longest accepted `jti`, in bytes: it becomes part of a stored key.
pub const MAX_JTI_LEN: usize = 256;

/// What an assertion is checked against besides the client record.
#[derive(Debug, Clone)]
pub struct AssertionPolicy {
    /// Accepted audiences (RFC 7523 §3 item 3), each as the one string `aud` holds: the
    /// issuer, and the token endpoint URL where configured.
    pub audiences: Vec<String>,
    /// Longest accepted time from now to `exp`, seconds.
    pub max_lifetime: i64,
    /// Clock skew allowance, seconds, applied to `exp`, `nbf` and `iat`.
    pub clock_skew: i64,
}

/// Why an assertion was refused. For logs only: the client always sees `invalid_client`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    /// Not a JWS, or its `alg` is not allowed (`none`, HMAC, anything else).
    #[error("malformed assertion or disallowed algorithm")]
    Malformed,
    /// No such client, not a `private_key_jwt` client, disabled, or no key for `kid`/`alg`.
    #[error("no usable key")]
    NoKey,
    /// Signature, `iss`, `sub` or `aud` did not verify, or `aud` is not one string.
    #[error("signature or claims did not verify")]
    Invalid,
    /// `exp` passed, too far ahead, or `nbf`/`iat` in the future.
    #[error("outside its validity period")]
    Time,
    /// `jti` missing, empty or too long.
    #[error("jti missing or too long")]
    Jti,
}

/// A verified assertion: what its one-time use is recorded under, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    /// The assertion's `jti`.
    pub jti: String,
    /// Epoch seconds after which it would be refused anyway (`exp` plus the skew allowance):
    /// how long its `jti` must be remembered.
    pub remember_until: i64,
}

#[derive(Deserialize)]
struct AssertionClaims {
    /// One string, never an array (draft-ietf-oauth-rfc7523bis): the library checks that it
    /// is an accepted audience, this that it is alone.
    aud: serde_json::Value,
    exp: i64,
    #[serde(default)]
    nbf: Option<i64>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
}

#[derive(Deserialize)]
struct Subject {
    sub: Option<String>,
}

/// The `sub` an assertion claims, read without verifying anything: which client to look up
/// (RFC 7523 §3 item 2 makes it the client id) when the request names none.
pub fn claimed_subject(assertion: &str) -> Option<String> {
    jsonwebtoken::dangerous::insecure_decode::<Subject>(assertion)
        .ok()?
        .claims
        .sub
}

/// Public keys of key pairs whose private halves were thrown away at generation: what an
/// assertion is verified against when the client has no usable key, one per key family.
const DECOY_KEYS: &str = r#"{"keys":[
 {"kty":"RSA","e":"AQAB","n":"yZ930N3mo6NkPViiVvNF_5TW2fpqIPD-k5hBKrm8BdB9aVlx8Uly5yYSTKvL9b8itu6rIzmALlws_xbjhpcOlR2s9ay3kycxBXuOptzarUmSALfwELi4ylKd7w0TKiD5o_fOhmf6veq3EDRFCpviXvfuf3Runb4AfzgjXz3OdKU8LoKPSiPcf0ROud2uHzjOgGZD5gVmh_ruhyXQA8gZLsPsAqfn-EN1EU8xM0LIh5vAq62aM7X2PZhmDj1wbfqh1_ij5Ay3CwcUWhEEVx3puCSxnvriLirzUwhlQWubNT6uKrgP5XFPj9f6ohzRkp7_tDKqvGIGcgofDWl7UVGpPw"},
 {"kty":"EC","crv":"P-256","x":"NGtiPoNjHZVpYTNDThdNa1MWYp4EsA9-WYAgsCFNffQ","y":"umRhVxz7u9gFwr6AgYn0si9Qsk5exXIArbKHZS7fz3E"},
 {"kty":"OKP","crv":"Ed25519","x":"i5TOBqK74x3fV7S7Yvrte1HO9KH0Jm9UT4SndS8Fu2c"}
]}"#;

fn decoy_key(alg: Algorithm) -> &'static Jwk {
    static KEYS: OnceLock<Vec<Jwk>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let set: jsonwebtoken::jwk::JwkSet =
            serde_json::from_str(DECOY_KEYS).expect("the decoy keys are valid JWKs");
        set.keys
    });
    keys.iter()
        .find(|k| accepts(k, alg))
        .expect("a decoy key for every allowed algorithm")
}

/// The client's key for an assertion signed with `alg` under `kid`: the key with that `kid`,
/// or the only key when the assertion names none.
fn client_key<'c>(
    client: Option<&'c Client>,
    kid: Option<&str>,
    alg: Algorithm,
) -> Option<&'c Jwk> {
    let client =
        client.filter(|c| c.is_active() && c.auth_method == ClientAuthMethod::PrivateKeyJwt)?;
    let key = match kid {
        Some(kid) => client.keys.iter().find(|k| k.kid == kid)?,
        None if client.keys.len() == 1 => &client.keys[0],
        None => return None,
    };
    accepts(&key.jwk, alg).then_some(&key.jwk)
}

/// Checks a client assertion for `client_id` (RFC 7523 §3): algorithm, signature by one of the
/// client's keys, `iss` = `sub` = the client id, `aud`, `exp`, `nbf`, `iat` and `jti`.
/// `client` is the stored record of `client_id`, if there is one.
pub fn verify(
    assertion: &str,
    client_id: &str,
    client: Option<&Client>,
    policy: &AssertionPolicy,
    now: OffsetDateTime,
) -> Result<VerifiedAssertion, AssertionError> {
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| AssertionError::Malformed)?;
    if !ASSERTION_ALGORITHMS.contains(&header.alg) {
        return Err(AssertionError::Malformed);
    }
    let found = client_key(client, header.kid.as_deref(), header.alg);
    let jwk = found.unwrap_or_else(|| decoy_key(header.alg));
    let key = DecodingKey::from_jwk(jwk).map_err(|_| AssertionError::NoKey)?;
    let mut validation = Validation::new(header.alg);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.set_issuer(&[client_id]);
    validation.sub = Some(client_id.to_owned());
    validation.set_audience(&policy.audiences);
    // Times are checked below against the service's clock, not the library's.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    let verified = jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation);
    if found.is_none() {
        return Err(AssertionError::NoKey);
    }
    let claims = verified.map_err(|_| AssertionError::Invalid)?.claims;
    if !claims.aud.is_string() {
        return Err(AssertionError::Invalid);
    }
    check_times(&claims, policy, now.unix_timestamp())?;
    let jti = claims
        .jti
        .filter(|j| !j.is_empty() && j.len() <= MAX_JTI_LEN)
        .ok_or(AssertionError::Jti)?;
    Ok(VerifiedAssertion {
        jti,
        remember_until: claims.exp + policy.clock_skew,
    })
}

/// `exp` not passed and at most `max_lifetime` ahead; `nbf` and `iat` not in the future
/// (RFC 7523 §3 items 4 to 6), each within the skew allowance.
fn check_times(
    claims: &AssertionClaims,
    policy: &AssertionPolicy,
    now: i64,
) -> Result<(), AssertionError> {
    let skew = policy.clock_skew;
    let expired = claims.exp.saturating_add(skew) <= now;
    let too_far = claims.exp > now.saturating_add(policy.max_lifetime).saturating_add(skew);
    let early = |t: Option<i64>| t.is_some_and(|t| t > now.saturating_add(skew));
    if expired || too_far || early(claims.nbf) || early(claims.iat) {
        return Err(AssertionError::Time);
    }
    Ok(())
}
