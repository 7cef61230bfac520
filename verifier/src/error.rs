//! Why a token or a request was refused, and how that reads on the wire (RFC 6750 §3,
//! RFC 9449 §7.1).

use std::fmt::Write as _;

/// The DPoP proof algorithms this crate verifies, as sent in `DPoP algs="..."` challenges
/// (RFC 9449 §7.1). `Ed25519` is RFC 9864's fully-specified name for `EdDSA` over Ed25519.
pub const DPOP_ALGS: &str = "ES256 EdDSA Ed25519 RS256 PS256";

/// The HTTP authentication scheme a challenge is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// RFC 6750 bearer tokens.
    Bearer,
    /// RFC 9449 DPoP-bound tokens.
    DPoP,
}

/// A refusal. Every variant carries only this crate's own words or values the API configured,
/// never text taken from the token, so an error can be logged and its challenge sent back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request carries no `Authorization` header (RFC 6750 §3.1: the challenge then names
    /// no error code).
    #[error("no access token in the request")]
    MissingToken,
    /// The `Authorization` header is not `Bearer <token>` or `DPoP <token>`, or is otherwise
    /// unusable (RFC 6750 §3.1 `invalid_request`).
    #[error("malformed request: {0}")]
    InvalidRequest(&'static str),
    /// Not a compact JWS with a JSON header and claims set, or a claim of the wrong JSON type.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm other than RS256, ES256 or EdDSA (`none` and HMAC
    /// included), or one that differs from the algorithm of the key its `kid` names
    /// (RFC 8725 §3.1).
    #[error("unsupported or mismatched signing algorithm")]
    UnsupportedAlgorithm,
    /// No key in the issuer's JWKS has the token's `kid`, even after the refetch allowed.
    #[error("no published key has the token's kid")]
    UnknownKey,
    /// The signature does not verify with the published key.
    #[error("bad signature")]
    BadSignature,
    /// The header's `typ` is not `at+jwt` (RFC 9068 §4).
    #[error("not an access token (typ must be at+jwt)")]
    WrongType,
    /// `iss` is not exactly the configured issuer.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `aud` contains none of the API's configured audiences.
    #[error("wrong audience")]
    WrongAudience,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    #[error("token not yet valid")]
    NotYetValid,
    /// A claim RFC 9068 §2.2 requires is absent.
    #[error("missing claim {0}")]
    MissingClaim(&'static str),
    /// The token lacks a scope the operation requires (RFC 6750 §3.1 `insufficient_scope`).
    #[error("insufficient scope: {required} required")]
    InsufficientScope {
        /// The scope the operation requires.
        required: String,
    },
    /// An extra claim asked for with [`VerifiedToken::claim`](crate::VerifiedToken::claim) is
    /// present but does not have the requested type.
    #[error("claim {name} does not have the expected type")]
    ClaimType {
        /// The claim's name.
        name: String,
    },
    /// The JWKS (or metadata) could not be fetched or read in time: unreachable, slow, too
    /// large, not JSON, or not `https`. Answered `503`: the token may well be valid.
    #[error("key set unavailable: {0}")]
    Jwks(String),
    /// The `DPoP` proof fails a check of RFC 9449 §4.3 (the reason names which).
    #[error("invalid DPoP proof: {0}")]
    InvalidDpopProof(&'static str),
    /// A DPoP-bound token (`cnf.jkt`) was presented as a bearer token (RFC 9449 §7.2).
    #[error("DPoP-bound token presented as a bearer token")]
    BoundTokenAsBearer,
    /// A token without `cnf.jkt` was presented with the `DPoP` scheme (RFC 9449 §7.1).
    #[error("token presented with the DPoP scheme is not DPoP-bound")]
    DpopRequired,
    /// The in-memory DPoP replay cache is full of unexpired proofs; retry shortly.
    #[error("DPoP replay cache full")]
    ReplayCacheFull,
    /// The API's own setup is wrong (for example no external URL configured for DPoP).
    #[error("verifier misconfigured: {0}")]
    Misconfigured(&'static str),
}

impl Error {
    /// The HTTP status to answer with: 400 for a malformed request, 401 for a bad or missing
    /// token or proof, 403 for insufficient scope (RFC 6750 §3.1), 503 when the keys cannot be
    /// had, 500 for the API's own misconfiguration.
    pub fn status(&self) -> u16 {
        match self {
            Self::InvalidRequest(_) => 400,
            Self::InsufficientScope { .. } => 403,
            Self::Jwks(_) | Self::ReplayCacheFull => 503,
            Self::Misconfigured(_) => 500,
            _ => 401,
        }
    }

    /// The error code of RFC 6750 §3.1 (or RFC 9449 §7.1 `invalid_dpop_proof`).
    /// [`Error::MissingToken`] answers `invalid_request` here, but its challenge omits the code
    /// as RFC 6750 §3.1 asks.
    pub fn rfc6750_code(&self) -> &'static str {
        match self {
            Self::MissingToken | Self::InvalidRequest(_) => "invalid_request",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::InvalidDpopProof(_) | Self::ReplayCacheFull => "invalid_dpop_proof",
            _ => "invalid_token",
        }
    }

    /// Whether the failure is about DPoP itself, so the challenge is `DPoP` whatever scheme the
    /// client used (RFC 9449 §7.1, §7.2).
    pub fn is_dpop(&self) -> bool {
        matches!(
            self,
            Self::InvalidDpopProof(_) | Self::BoundTokenAsBearer | Self::ReplayCacheFull
        )
    }

    /// The scheme to challenge with when the client presented `presented` (None: no token).
    pub fn challenge_scheme(&self, presented: Option<Scheme>) -> Scheme {
        if self.is_dpop() || presented == Some(Scheme::DPoP) {
            Scheme::DPoP
        } else {
            Scheme::Bearer
        }
    }

    /// The `WWW-Authenticate` value: `Bearer error="invalid_token"`,
    /// `Bearer error="insufficient_scope", scope="api.read"`, or
    /// `DPoP algs="ES256 EdDSA Ed25519 RS256 PS256", error="invalid_dpop_proof"`; with
    /// `realm="..."` first when given. A missing token gets the bare challenge.
    pub fn www_authenticate(&self, scheme: Scheme, realm: Option<&str>) -> String {
        let mut params: Vec<(&str, String)> = Vec::new();
        if let Some(realm) = realm {
            params.push(("realm", quotable(realm)));
        }
        if scheme == Scheme::DPoP {
            params.push(("algs", DPOP_ALGS.to_owned()));
        }
        if *self != Self::MissingToken {
            params.push(("error", self.rfc6750_code().to_owned()));
        }
        if let Self::InsufficientScope { required } = self {
            params.push(("scope", quotable(required)));
        }
        let mut out = match scheme {
            Scheme::Bearer => String::from("Bearer"),
            Scheme::DPoP => String::from("DPoP"),
        };
        for (i, (name, value)) in params.iter().enumerate() {
            let sep = if i == 0 { " " } else { ", " };
            let _ = write!(out, "{sep}{name}=\"{value}\"");
        }
        out
    }
}

/// A value safe inside a quoted-string: RFC 6750 §3 allows neither `"` nor `\` in these
/// parameters, nor control characters.
fn quotable(value: &str) -> String {
    value
        .chars()
        .filter(|c| *c != '"' && *c != '\\' && !c.is_control())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_read_as_rfc_6750_and_9449_show_them() {
        assert_eq!(
            Error::Expired.www_authenticate(Scheme::Bearer, None),
            r#"Bearer error="invalid_token""#
        );
        assert_eq!(
            Error::InsufficientScope {
                required: "api.read".into()
            }
            .www_authenticate(Scheme::Bearer, Some("api")),
            r#"Bearer realm="api", error="insufficient_scope", scope="api.read""#
        );
        assert_eq!(
            Error::InvalidDpopProof("x").www_authenticate(Scheme::DPoP, None),
            r#"DPoP algs="ES256 EdDSA Ed25519 RS256 PS256", error="invalid_dpop_proof""#
        );
        assert_eq!(
            Error::MissingToken.www_authenticate(Scheme::Bearer, None),
            "Bearer"
        );
    }

    #[test]
    fn statuses_follow_rfc_6750() {
        assert_eq!(Error::Expired.status(), 401);
        assert_eq!(Error::InvalidRequest("x").status(), 400);
        assert_eq!(
            Error::InsufficientScope {
                required: "a".into()
            }
            .status(),
            403
        );
        assert_eq!(Error::Jwks("down".into()).status(), 503);
    }

    #[test]
    fn a_quote_in_a_configured_value_cannot_break_the_header() {
        let e = Error::InsufficientScope {
            required: "a\"b\\c".into(),
        };
        assert!(
            e.www_authenticate(Scheme::Bearer, None)
                .ends_with(r#"scope="abc""#)
        );
    }
}
