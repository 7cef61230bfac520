//! The error responses of the token endpoint, one variant per code: RFC 6749 §5.2, and the
//! codes later RFCs define (`temporarily_unavailable` RFC 6749 §4.1.2.1, `invalid_target`
//! RFC 8707 §2, `invalid_dpop_proof` and `use_dpop_nonce` RFC 9449 §5 and §8). Statuses that only HTTP knows (405, 413, 429) are `http::HttpError`'s.
//!
//! Descriptions are fixed texts: nothing a client sent is echoed back. The mapping to status,
//! headers and body lives in one place, `http::error`.

/// An error returned by the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OAuthError {
    /// "The request is missing a required parameter, includes an unsupported parameter value
    /// (other than grant type), repeats a parameter, includes multiple credentials, utilizes
    /// more than one mechanism for authenticating the client, or is otherwise malformed."
    #[error("invalid_request: {0}")]
    InvalidRequest(&'static str),
    /// "Client authentication failed (e.g., unknown client, no client authentication included,
    /// or unsupported authentication method)." Always the same description, whatever the cause.
    #[error("invalid_client")]
    InvalidClient,
    /// "The authorization grant type is not supported by the authorization server."
    #[error("unsupported_grant_type")]
    UnsupportedGrantType,
    /// "The requested scope is invalid, unknown, malformed, or exceeds the scope granted by the
    /// resource owner."
    #[error("invalid_scope: {0}")]
    InvalidScope(&'static str),
    /// RFC 8707 §2: "The requested resource is invalid, missing, unknown, or malformed."
    #[error("invalid_target: {0}")]
    InvalidTarget(&'static str),
    /// RFC 9449 §5 `invalid_dpop_proof`: "The DPoP proof JWT is invalid." Also the answer to
    /// a client registered for DPoP-bound tokens that sent no proof (§5.2).
    #[error("invalid_dpop_proof")]
    InvalidDpopProof,
    /// RFC 9449 §8 `use_dpop_nonce`: "Authorization server requires nonce in DPoP proof." The
    /// HTTP edge adds the current nonce in a `DPoP-Nonce` header.
    #[error("use_dpop_nonce")]
    UseDpopNonce,
    /// RFC 6749 §4.1.2.1 `temporarily_unavailable`: a store or the key set failed (503).
    #[error("temporarily_unavailable")]
    TemporarilyUnavailable,
}

impl OAuthError {
    /// The `error` code of the response body (and of the audit record's outcome).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidTarget(_) => "invalid_target",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The `error_description`: a fixed, human-readable sentence.
    pub fn description(&self) -> &'static str {
        match self {
            Self::InvalidRequest(d) | Self::InvalidScope(d) | Self::InvalidTarget(d) => d,
            Self::InvalidClient => "client authentication failed",
            Self::UnsupportedGrantType => "only the client_credentials grant is supported",
            Self::InvalidDpopProof => "the DPoP proof is missing or invalid",
            Self::UseDpopNonce => "a DPoP proof must carry the nonce of the DPoP-Nonce header",
            Self::TemporarilyUnavailable => "the service is temporarily unavailable; retry later",
        }
    }
}
