//! The verifier: created once, shared by every request, verifying access tokens (RFC 9068)
//! and, for DPoP-bound tokens, their proofs (RFC 9449 §7).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::Config;
use crate::discovery;
use crate::dpop::{self, ReplayCache};
use crate::error::{Error, Scheme};
use crate::fetch;
use crate::jwks::{self, KeyCache};
use crate::request::{HttpRequestParts, credentials};
use crate::token::VerifiedToken;

/// The longest token (or proof) read: far above any token the service issues, and small
/// enough that a hostile header costs nothing to refuse.
pub(crate) const MAX_JWT_BYTES: usize = 16 * 1024;

/// Verifies access tokens of one issuer for one API. Create it once (at start-up) and clone it
/// freely: clones share the key cache and the DPoP replay cache.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    keys: KeyCache,
    /// One validation per accepted algorithm, built once.
    validations: [(Algorithm, Validation); 3],
    replay: ReplayCache,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier for `config`. Nothing is fetched until the first token (or
    /// [`Verifier::hydrate`]); a `jwks_uri` that is not `https` (or loopback `http`) makes every
    /// verification fail with [`Error::Jwks`].
    pub fn new(config: Config) -> Verifier {
        let client = fetch::client(config.fetch_timeout);
        Self::with_client(config, client)
    }

    fn with_client(config: Config, client: Result<reqwest::Client, Error>) -> Verifier {
        let validations = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
            .map(|alg| (alg, validation(&config, alg)));
        Verifier {
            inner: Arc::new(Inner {
                keys: KeyCache::new(&config, client),
                replay: ReplayCache::new(config.dpop_replay_capacity),
                validations,
                config,
            }),
        }
    }

    /// A verifier for tokens of `issuer` meant for `audience`, its `jwks_uri` read from the
    /// issuer's metadata: `/.well-known/oauth-authorization-server` (RFC 8414 §3), else
    /// `/.well-known/openid-configuration` (OpenID Connect Discovery 1.0 §4). The document's
    /// `issuer` must equal `issuer` exactly (RFC 8414 §3.3).
    pub async fn discover(issuer: &str, audience: &str) -> Result<Verifier, Error> {
        Self::discover_with(Config::new(issuer, audience, "")).await
    }

    /// [`Verifier::discover`] with other settings: `config.jwks_uri` is replaced by the one
    /// the metadata names.
    pub async fn discover_with(mut config: Config) -> Result<Verifier, Error> {
        let client = fetch::client(config.fetch_timeout)?;
        config.jwks_uri = discovery::jwks_uri(&client, &config).await?;
        Ok(Self::with_client(config, Ok(client)))
    }

    /// The settings this verifier checks against.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Fetches the JWKS now, so the first request does not wait for it (and a wrong
    /// `jwks_uri` shows at start-up).
    pub async fn hydrate(&self) -> Result<(), Error> {
        self.inner.keys.refresh().await
    }

    /// Verifies a token presented as a bearer token (RFC 6750): signature by a published key
    /// with that key's algorithm, `typ: at+jwt`, `iss`, `aud`, `exp`, `nbf`, `jti`,
    /// `client_id`. A DPoP-bound token (with `cnf.jkt`) is refused here
    /// ([`Error::BoundTokenAsBearer`], RFC 9449 §7.2): use [`Verifier::verify_request`].
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, Error> {
        let verified = self.verify_token(token).await?;
        if verified.key_thumbprint.is_some() {
            return Err(Error::BoundTokenAsBearer);
        }
        Ok(verified)
    }

    /// Verifies the token of a request: `Authorization: Bearer <token>` as
    /// [`Verifier::verify`], or `Authorization: DPoP <token>` with exactly one `DPoP` proof
    /// header for this method and URL (RFC 9449 §4.3, §7.1).
    ///
    /// DPoP proof ids are remembered in this process only (RFC 9449 §11.1): a proof replayed
    /// to another instance of the API within its `iat` window is not detected there.
    pub async fn verify_request(&self, req: &HttpRequestParts<'_>) -> Result<VerifiedToken, Error> {
        let header = req.authorization.ok_or(Error::MissingToken)?;
        let (scheme, token) = credentials(header)?;
        if scheme == Scheme::Bearer {
            return self.verify(token).await;
        }
        let verified = self.verify_token(token).await?;
        let jkt = verified
            .key_thumbprint
            .as_deref()
            .ok_or(Error::DpopRequired)?;
        let proof = match req.dpop {
            [one] => *one,
            [] => return Err(Error::InvalidDpopProof("no DPoP header")),
            _ => return Err(Error::InvalidDpopProof("more than one DPoP header")),
        };
        let config = &self.inner.config;
        let expect = dpop::Expected {
            method: req.method,
            url: req.url,
            token,
            jkt,
            now: now(),
            window: config.dpop_iat_window.as_secs() as i64,
            leeway: config.leeway.as_secs() as i64,
        };
        let accepted = dpop::check(proof, &expect)?;
        self.inner.replay.remember(accepted, expect.now)?;
        Ok(verified)
    }

    /// Every check but the binding: what both schemes share.
    async fn verify_token(&self, token: &str) -> Result<VerifiedToken, Error> {
        let header = Header::read(token)?;
        let alg = jwks::named_alg(&header.alg).ok_or(Error::UnsupportedAlgorithm)?;
        if header.crit.is_some() {
            // RFC 7515 §4.1.11: no extension is understood here, so none can be critical.
            return Err(Error::Malformed("crit header"));
        }
        if !header.typ.as_deref().is_some_and(is_access_token_type) {
            return Err(Error::WrongType);
        }
        let kid = header.kid.ok_or(Error::UnknownKey)?;
        let key = self.inner.keys.key(&kid).await?;
        if key.alg != alg {
            return Err(Error::UnsupportedAlgorithm);
        }
        let validation = &self
            .inner
            .validations
            .iter()
            .find(|(a, _)| *a == alg)
            .expect("one validation per accepted algorithm")
            .1;
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.decoding, validation)
            .map_err(|e| refusal(e.into_kind()))?;
        VerifiedToken::from_claims(data.claims)
    }
}

/// `exp` required, `nbf` checked when present, `iss` and `aud` required and matched, with the
/// leeway (RFC 9068 §4, RFC 7519 §4.1).
fn validation(config: &Config, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = config.leeway.as_secs();
    v.validate_exp = true;
    v.validate_nbf = true;
    v.set_issuer(&[&config.issuer]);
    v.set_audience(&config.audiences);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v
}

/// RFC 9068 §4: `typ` is `at+jwt` or its full media type, compared case-insensitively.
fn is_access_token_type(typ: &str) -> bool {
    typ.eq_ignore_ascii_case("at+jwt") || typ.eq_ignore_ascii_case("application/at+jwt")
}

fn refusal(kind: ErrorKind) -> Error {
    match kind {
        ErrorKind::InvalidSignature => Error::BadSignature,
        ErrorKind::ExpiredSignature => Error::Expired,
        ErrorKind::ImmatureSignature => Error::NotYetValid,
        ErrorKind::InvalidIssuer => Error::WrongIssuer,
        ErrorKind::InvalidAudience => Error::WrongAudience,
        ErrorKind::MissingRequiredClaim(c) => Error::MissingClaim(match c.as_str() {
            "exp" => "exp",
            "iss" => "iss",
            _ => "aud",
        }),
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => Error::UnsupportedAlgorithm,
        ErrorKind::InvalidClaimFormat(_) => Error::Malformed("a claim has the wrong type"),
        ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::InvalidToken => Error::Malformed("not a compact JWS with JSON claims"),
        _ => Error::BadSignature,
    }
}

/// The JOSE header members read before choosing a key.
#[derive(Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<Value>,
}

impl Header {
    fn read(token: &str) -> Result<Self, Error> {
        if token.len() > MAX_JWT_BYTES {
            return Err(Error::Malformed("token too long"));
        }
        let mut parts = token.split('.');
        let (Some(header), Some(_), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Error::Malformed("not a compact JWS"));
        };
        let json = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| Error::Malformed("header is not base64url"))?;
        serde_json::from_slice(&json).map_err(|_| Error::Malformed("header is not a JOSE header"))
    }
}

/// Seconds since the epoch.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_token_types() {
        assert!(is_access_token_type("at+jwt"));
        assert!(is_access_token_type("AT+JWT"));
        assert!(is_access_token_type("application/at+jwt"));
        assert!(!is_access_token_type("JWT"));
        assert!(!is_access_token_type("dpop+jwt"));
    }
}
