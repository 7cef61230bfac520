//! What a resource server does with our tokens, for the rotation tests: the JWKS as the
//! discovery route publishes it, and the check of one token against a JWKS at a given time.

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use time::OffsetDateTime;
use token_service::config::ServiceConfig;
use token_service::keys::jwk::jwks;

use super::stack::published_alg;
use super::stores::Stores;

/// The JWKS as the discovery route computes it: the schedule's published keys.
pub async fn published(s: &Stores, config: &ServiceConfig, now: OffsetDateTime) -> JwkSet {
    jwks(
        &s.public_keys.public_keys().await.unwrap(),
        &config.schedule,
        now,
    )
}

/// A resource server's check: the `kid` in `jwks`, the algorithm its JWK publishes (one of the
/// service's three, never the header's choice), the signature, and `exp` against `now` (the
/// simulated clock). Returns the algorithm and `exp`.
pub fn check(jwks: &JwkSet, token: &str, now: OffsetDateTime) -> Result<(Algorithm, i64), String> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| format!("unknown kid {kid}"))?;
    let alg = published_alg(jwk)?;
    let mut v = Validation::new(alg);
    v.validate_exp = false; // checked against the simulated clock below
    v.validate_aud = false;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let data =
        jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).map_err(|e| e.to_string())?;
    let exp = data.claims["exp"].as_i64().ok_or("no exp")?;
    if exp <= now.unix_timestamp() {
        return Err("expired".into());
    }
    Ok((alg, exp))
}
