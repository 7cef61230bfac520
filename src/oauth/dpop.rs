//! DPoP proofs at the token endpoint (RFC 9449 §4.3): checking one proof against the token
//! endpoint's URL and a clock, and the key the issued token is then bound to (`cnf.jkt`, §6.1).
//!
//! Pure functions: [`verify`] returns the proof key's RFC 7638 thumbprint and what must be
//! remembered (the `jti`, until when); the token flow (`crate::issue`) records its one-time use
//! under [`super::used_ids::dpop_proof`] and checks the nonce ([`super::nonce`]). The resource
//! side's checks (`token-verifier`'s `dpop` module) accept the same algorithms and keys; they
//! are not shared because that crate is a client library with its own HTTP stack, which the
//! service must not link, and its checks also bind the proof to an access token (`ath`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The `typ` of a DPoP proof (RFC 9449 §4.2).
pub const PROOF_TYPE: &str = "dpop+jwt";

/// The proof algorithms accepted, by the names a proof's `alg` may carry, as
/// `dpop_signing_alg_values_supported` lists them (RFC 9449 §5.1): asymmetric only; `Ed25519`
/// is RFC 9864's fully-specified name for EdDSA over Ed25519.
pub const PROOF_ALGORITHMS: [&str; 5] = ["ES256", "EdDSA", "Ed25519", "RS256", "PS256"];

/// Longest accepted proof, in bytes (an RSA-4096 key and its signature fit well within it).
pub const MAX_PROOF_BYTES: usize = 4096;

/// Longest accepted `jti`, in bytes.
pub const MAX_JTI_LEN: usize = 256;

/// JWK members that only a private (or symmetric) key has (RFC 7518 §6.2.2, §6.3.2, §6.4.1;
/// RFC 8037 §2): a proof carrying one is refused (RFC 9449 §4.3 step 7).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// What a proof is checked against besides its own content.
#[derive(Debug, Clone)]
pub struct ProofPolicy {
    /// The token endpoint URL as clients reach it, normalised ([`normalised_htu`]).
    pub htu: String,
    /// How old `iat` may be, seconds, on top of `clock_skew`.
    pub window: i64,
    /// Clock skew allowance, seconds, either side of `iat`.
    pub clock_skew: i64,
}

impl ProofPolicy {
    /// The policy for the token endpoint at `endpoint`; `None` if that URL is not absolute.
    pub fn new(endpoint: &str, window: i64, clock_skew: i64) -> Option<Self> {
        Some(Self {
            htu: normalised_htu(endpoint)?,
            window,
            clock_skew,
        })
    }
}

/// Why a proof was refused. For logs only: the client always sees `invalid_dpop_proof`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    /// More than one `DPoP` header (RFC 9449 §4.3 step 1).
    #[error("more than one DPoP header")]
    Repeated,
    /// Not a compact JWS with JSON header and claims, or too long (step 2).
    #[error("not a well-formed JWT")]
    Malformed,
    /// `typ` is not `dpop+jwt` (step 4).
    #[error("typ is not dpop+jwt")]
    Type,
    /// `alg` is not an accepted asymmetric algorithm (step 5).
    #[error("alg is not accepted")]
    Algorithm,
    /// `jwk` missing, not a public key of the type `alg` needs, or private (steps 6-7).
    #[error("jwk is missing, private or does not fit alg")]
    Key,
    /// The signature does not verify with `jwk` (step 6).
    #[error("signature does not verify")]
    Signature,
    /// `jti`, `htm`, `htu` or `iat` missing or mistyped, or `jti` empty or too long (step 3).
    #[error("required claim missing or mistyped")]
    Claims,
    /// `htm` is not `POST` (step 8).
    #[error("htm is not POST")]
    Method,
    /// `htu` is not the token endpoint URL (step 9).
    #[error("htu is not the token endpoint")]
    Url,
    /// `iat` outside the accepted window (step 11).
    #[error("iat outside the accepted window")]
    Time,
    /// The proof's `jti` was used before (step 12); found by the flow's replay cache.
    #[error("proof replayed")]
    Replayed,
    /// The client is registered for DPoP-bound tokens and sent no proof (RFC 9449 §5.2).
    #[error("a DPoP-bound client sent no proof")]
    Missing,
}

/// A proof that passed every check but replay and nonce.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// RFC 7638 SHA-256 thumbprint of the proof key: the token's `cnf.jkt`.
    pub jkt: String,
    /// The proof's `jti`.
    pub jti: String,
    /// Epoch seconds after which the proof would be refused anyway: how long its `jti` must be
    /// remembered.
    pub remember_until: i64,
    /// The proof's `nonce` claim, if any (RFC 9449 §8).
    pub nonce: Option<String>,
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: f64,
    #[serde(default)]
    nonce: Option<String>,
}

/// A proof algorithm: its JOSE verification and the key type it needs.
#[derive(Clone, Copy)]
struct ProofAlg {
    jose: Algorithm,
    kty: &'static str,
    crv: Option<&'static str>,
}

fn proof_alg(name: &str) -> Option<ProofAlg> {
    let (jose, kty, crv) = match name {
        "ES256" => (Algorithm::ES256, "EC", Some("P-256")),
        "EdDSA" | "Ed25519" => (Algorithm::EdDSA, "OKP", Some("Ed25519")),
        "RS256" => (Algorithm::RS256, "RSA", None),
        "PS256" => (Algorithm::PS256, "RSA", None),
        _ => return None,
    };
    Some(ProofAlg { jose, kty, crv })
}

/// Checks the `DPoP` header value of a token request (RFC 9449 §4.3 steps 2-11; the single
/// header, step 1, is read at the HTTP edge; the `jti`'s one-time use, step 12, and the nonce,
/// step 10, are the flow's): a signed JWT of type `dpop+jwt`, an accepted asymmetric `alg`, a
/// public `jwk` that verifies the signature, `htm` = `POST`, `htu` = the token endpoint, `iat`
/// within the window. `now` is in epoch seconds.
pub fn verify(proof: &str, policy: &ProofPolicy, now: i64) -> Result<VerifiedProof, ProofError> {
    if proof.len() > MAX_PROOF_BYTES {
        return Err(ProofError::Malformed);
    }
    let mut parts = proof.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ProofError::Malformed);
    };
    let header: Map<String, Value> = decode_json(header_b64).ok_or(ProofError::Malformed)?;
    // A media type is compared case-insensitively (RFC 9110 §8.3.1).
    let typ = header.get("typ").and_then(Value::as_str);
    if !typ.is_some_and(|t| t.eq_ignore_ascii_case(PROOF_TYPE)) {
        return Err(ProofError::Type);
    }
    // No extension is understood, so none may be critical (RFC 7515 §4.1.11).
    if header.contains_key("crit") {
        return Err(ProofError::Malformed);
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(proof_alg);
    let alg = alg.ok_or(ProofError::Algorithm)?;
    let (jwk, key) = public_key(header.get("jwk").ok_or(ProofError::Key)?, alg)?;
    let message = &proof[..header_b64.len() + 1 + claims_b64.len()];
    let valid = jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, alg.jose);
    if !valid.unwrap_or(false) {
        return Err(ProofError::Signature);
    }
    let claims: ProofClaims = decode_json(claims_b64).ok_or(ProofError::Claims)?;
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(ProofError::Claims);
    }
    if claims.htm != "POST" {
        return Err(ProofError::Method);
    }
    if normalised_htu(&claims.htu).as_deref() != Some(policy.htu.as_str()) {
        return Err(ProofError::Url);
    }
    let iat = claims.iat as i64;
    let oldest = now
        .saturating_sub(policy.window)
        .saturating_sub(policy.clock_skew);
    if !claims.iat.is_finite() || iat < oldest || iat > now.saturating_add(policy.clock_skew) {
        return Err(ProofError::Time);
    }
    let jkt = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| ProofError::Key)?;
    Ok(VerifiedProof {
        jkt,
        jti: claims.jti,
        remember_until: iat + policy.window + policy.clock_skew,
        nonce: claims.nonce,
    })
}

/// RFC 9449 §4.3 steps 6-7: a public key of the type `alg` needs, without a private member.
fn public_key(value: &Value, alg: ProofAlg) -> Result<(Jwk, DecodingKey), ProofError> {
    let object = value.as_object().ok_or(ProofError::Key)?;
    if PRIVATE_MEMBERS.iter().any(|m| object.contains_key(*m)) {
        return Err(ProofError::Key);
    }
    let kty = object.get("kty").and_then(Value::as_str);
    let crv = object.get("crv").and_then(Value::as_str);
    if kty != Some(alg.kty) || (alg.crv.is_some() && crv != alg.crv) {
        return Err(ProofError::Key);
    }
    let jwk: Jwk = serde_json::from_value(value.clone()).map_err(|_| ProofError::Key)?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| ProofError::Key)?;
    Ok((jwk, key))
}

fn decode_json<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// RFC 9449 §4.3 step 9: an absolute `http(s)` URL without query and fragment, normalised per
/// RFC 3986 §6.2.2 and §6.2.3: what the WHATWG URL parser makes of it (scheme and host in lower
/// case, the default port dropped, an empty path as `/`, dot segments removed), then
/// percent-encodings in upper case and those of unreserved characters decoded, which that
/// parser leaves as they are. `None` for anything else (user information included).
/// `token_verifier::normalised_htu` is the same function on the resource side; a test of this
/// crate holds the two to the same cases.
pub fn normalised_htu(url: &str) -> Option<String> {
    let mut url = url::Url::parse(url).ok()?;
    if !matches!(url.scheme(), "https" | "http")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    url.set_query(None);
    url.set_fragment(None);
    let path = normalise_percent(url.path())?;
    url.set_path(&path);
    Some(url.into())
}

/// Percent-encodings in upper case, those of unreserved characters decoded (RFC 3986 §6.2.2.1,
/// §6.2.2.2); `None` for a `%` not followed by two hex digits.
fn normalise_percent(text: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let hex = rest.get(i + 1..i + 3)?;
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let value = u8::from_str_radix(hex, 16).ok()?;
        if value.is_ascii_alphanumeric() || b"-._~".contains(&value) {
            out.push(char::from(value));
        } else {
            out.push_str(&format!("%{value:02X}"));
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htu_is_normalised_as_rfc_3986_says() {
        let n = |u| normalised_htu(u).unwrap();
        let want = "https://issuer.test/oauth/token";
        for url in [
            "https://issuer.test/oauth/token",
            "HTTPS://Issuer.TEST:443/oauth/token?x=1#f",
            "https://issuer.test/oauth/./token",
            "https://issuer.test/a/../oauth/token",
            "https://issuer.test/%6Fauth/token",
            "https://issuer.test/oauth/token#",
        ] {
            assert_eq!(n(url), want, "{url}");
        }
        assert_eq!(n("http://h"), "http://h/");
        assert_eq!(n("http://h:80/"), "http://h/");
        assert_eq!(n("http://127.0.0.1:8080/x"), "http://127.0.0.1:8080/x");
        assert_eq!(n("http://[::1]:8080/x"), "http://[::1]:8080/x");
        assert_eq!(n("http://[::1]/x"), "http://[::1]/x");
        assert_eq!(n("https://h/a%2fb"), "https://h/a%2Fb");
        assert_ne!(n("https://h:8443/a"), n("https://h/a"));
        assert_ne!(n("https://h/A"), n("https://h/a"));
        assert_ne!(n("http://h/a"), n("https://h/a"));
        for bad in [
            "ftp://h/",
            "https://u@h/",
            "h/x",
            "https://h/%zz",
            "https://h/%+1",
        ] {
            assert_eq!(normalised_htu(bad), None, "{bad}");
        }
    }
}
