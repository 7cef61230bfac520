//! DPoP proofs at the resource server (RFC 9449 §4.3, §7.1): the proof's own checks, its
//! binding to the request and to the access token, and the in-process replay cache.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use aws_lc_rs::digest::{SHA256, digest};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey};
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::Error;
use crate::jwks::PRIVATE_MEMBERS;
use crate::verifier::MAX_JWT_BYTES;

/// What the proof must match: the request, the token, and the clock.
pub(crate) struct Expected<'a> {
    pub method: &'a str,
    pub url: &'a str,
    /// The access token as sent, for `ath`.
    pub token: &'a str,
    /// The token's `cnf.jkt`.
    pub jkt: &'a str,
    pub now: i64,
    /// How old `iat` may be, in seconds, on top of `leeway`.
    pub window: i64,
    pub leeway: i64,
}

/// A proof that passed every check but replay: its id and until when it would be accepted.
pub(crate) struct Accepted {
    id: [u8; 32],
    usable_until: i64,
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: f64,
    ath: Option<String>,
}

/// Checks `proof` against RFC 9449 §4.3 steps 2-12 (the single header is the caller's step 1;
/// replay, step 12's `jti`, is [`ReplayCache::remember`]) and §7.1 (`ath`, `cnf.jkt`).
pub(crate) fn check(proof: &str, expect: &Expected<'_>) -> Result<Accepted, Error> {
    let bad = Error::InvalidDpopProof;
    if proof.len() > MAX_JWT_BYTES {
        return Err(bad("too long"));
    }
    let mut parts = proof.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("not a compact JWS"));
    };
    let header: Map<String, Value> = decode_json(header_b64).ok_or(bad("header is not JSON"))?;

    if !header
        .get("typ")
        .and_then(Value::as_str)
        .is_some_and(|t| t.eq_ignore_ascii_case("dpop+jwt"))
    {
        return Err(bad("typ is not dpop+jwt"));
    }
    if header.contains_key("crit") {
        return Err(bad("crit header"));
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(proof_alg)
        .ok_or(bad("alg is not ES256, EdDSA, Ed25519, RS256 or PS256"))?;
    let jwk_value = header.get("jwk").ok_or(bad("no jwk header"))?;
    let (jwk, key) = public_key(jwk_value, alg)?;

    let message = &proof[..header_b64.len() + 1 + claims_b64.len()];
    let valid = jsonwebtoken::crypto::verify(signature, message.as_bytes(), &key, alg.jose)
        .map_err(|_| bad("signature does not verify"))?;
    if !valid {
        return Err(bad("signature does not verify"));
    }

    let claims: ProofClaims =
        decode_json(claims_b64).ok_or(bad("jti, htm, htu or iat missing or mistyped"))?;
    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err(bad("jti is empty or too long"));
    }
    if claims.htm != expect.method {
        return Err(bad("htm is not the request method"));
    }
    let request_url = normalised_htu(expect.url).ok_or(bad("the request URL is not absolute"))?;
    if normalised_htu(&claims.htu).as_ref() != Some(&request_url) {
        return Err(bad("htu is not the request URL"));
    }
    let iat = claims.iat as i64;
    if !claims.iat.is_finite()
        || iat < expect.now - expect.window - expect.leeway
        || iat > expect.now + expect.leeway
    {
        return Err(bad("iat is outside the accepted window"));
    }
    let ath = URL_SAFE_NO_PAD.encode(digest(&SHA256, expect.token.as_bytes()));
    if claims.ath.as_deref() != Some(ath.as_str()) {
        return Err(bad("ath is not the hash of the access token"));
    }
    let thumbprint = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| bad("jwk has no thumbprint"))?;
    if thumbprint != expect.jkt {
        return Err(bad("the proof key is not the key the token is bound to"));
    }

    // Keyed by the key as well as the id, so one client's ids never collide with another's.
    let mut id_input = Vec::with_capacity(thumbprint.len() + 1 + claims.jti.len());
    id_input.extend_from_slice(thumbprint.as_bytes());
    id_input.push(0);
    id_input.extend_from_slice(claims.jti.as_bytes());
    let mut id = [0u8; 32];
    id.copy_from_slice(digest(&SHA256, &id_input).as_ref());
    Ok(Accepted {
        id,
        usable_until: iat + expect.window + expect.leeway,
    })
}

/// A proof algorithm: its JOSE verification and the key type it needs.
#[derive(Clone, Copy)]
struct ProofAlg {
    jose: Algorithm,
    kty: &'static str,
    crv: Option<&'static str>,
}

/// RFC 9449 §4.3 step 5: asymmetric algorithms only; `Ed25519` is RFC 9864's fully-specified
/// name for EdDSA over Ed25519.
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

/// RFC 9449 §4.3 steps 6-7: a public key of the type `alg` needs, without a private member.
fn public_key(value: &Value, alg: ProofAlg) -> Result<(Jwk, DecodingKey), Error> {
    let bad = Error::InvalidDpopProof;
    let object = value.as_object().ok_or(bad("jwk is not an object"))?;
    if PRIVATE_MEMBERS.iter().any(|m| object.contains_key(*m)) {
        return Err(bad("jwk has a private key member"));
    }
    let kty = object.get("kty").and_then(Value::as_str);
    let crv = object.get("crv").and_then(Value::as_str);
    if kty != Some(alg.kty) || (alg.crv.is_some() && crv != alg.crv) {
        return Err(bad("jwk does not fit alg"));
    }
    let jwk: Jwk = serde_json::from_value(value.clone()).map_err(|_| bad("jwk is not a JWK"))?;
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| bad("jwk is not a usable key"))?;
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
///
/// Two URLs are the same `htu` when their normal forms are equal. The token service compares
/// the `htu` of proofs at its token endpoint in the same form.
pub fn normalised_htu(url: &str) -> Option<String> {
    let mut url = Url::parse(url).ok()?;
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

/// Proof ids seen within their acceptance window, in this process only: another instance of
/// the API does not see them (RFC 9449 §11.1 leaves the scope to the server).
pub(crate) struct ReplayCache {
    capacity: usize,
    seen: Mutex<Seen>,
}

#[derive(Default)]
struct Seen {
    /// Proof id -> the last second its proof is accepted.
    ids: HashMap<[u8; 32], i64>,
    /// Expired ids are swept when the cache is full, at most once a second, so a full cache
    /// costs a request a lookup, not a sweep.
    next_sweep: i64,
}

impl ReplayCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            seen: Mutex::new(Seen::default()),
        }
    }

    /// Records `proof`, or refuses it if its id was seen and is still within its window.
    pub(crate) fn remember(&self, proof: Accepted, now: i64) -> Result<(), Error> {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.ids.get(&proof.id).is_some_and(|until| *until >= now) {
            return Err(Error::InvalidDpopProof("proof replayed"));
        }
        if seen.ids.len() >= self.capacity && now >= seen.next_sweep {
            seen.ids.retain(|_, until| *until >= now);
            seen.next_sweep = now + 1;
        }
        if seen.ids.len() >= self.capacity {
            return Err(Error::ReplayCacheFull);
        }
        seen.ids.insert(proof.id, proof.usable_until);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn htu_ignores_query_fragment_case_and_default_port() {
        let n = |u| normalised_htu(u).unwrap();
        assert_eq!(
            n("HTTPS://API.Example:443/a?x=1#f"),
            "https://api.example/a"
        );
        assert_eq!(n("https://api.example"), "https://api.example/");
        assert_eq!(n("http://api.example:80/a"), "http://api.example/a");
        assert_ne!(n("https://api.example:8443/a"), n("https://api.example/a"));
        assert_ne!(n("https://api.example/A"), n("https://api.example/a"));
        assert!(normalised_htu("ftp://x/").is_none());
    }

    #[test]
    fn replay_cache_refuses_a_seen_id_and_bounds_its_size() {
        let cache = ReplayCache::new(2);
        let proof = |b: u8, until| Accepted {
            id: [b; 32],
            usable_until: until,
        };
        cache.remember(proof(1, 100), 50).unwrap();
        assert_eq!(
            cache.remember(proof(1, 100), 60),
            Err(Error::InvalidDpopProof("proof replayed"))
        );
        cache.remember(proof(2, 70), 50).unwrap();
        assert_eq!(
            cache.remember(proof(3, 100), 60),
            Err(Error::ReplayCacheFull)
        );
        // Once id 2 is past its window it makes room.
        cache.remember(proof(3, 100), 80).unwrap();
    }
}
