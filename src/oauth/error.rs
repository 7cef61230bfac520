//! The error responses of the token endpoint, one variant per code (RFC 6749 §5.2, RFC 8707 §2).
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
    /// The body is larger than the endpoint accepts (413, with an `invalid_request` body).
    #[error("payload too large")]
    PayloadTooLarge,
    /// The method is not POST (405, with an `invalid_request` body).
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Too many requests (429 with `Retry-After`).
    #[error("rate limited")]
    RateLimited {
        /// Seconds until the client may try again.
        retry_after: u64,
    },
    /// RFC 6749 §4.1.2.1 `temporarily_unavailable`: a store or the key set failed (503).
    #[error("temporarily_unavailable")]
    TemporarilyUnavailable,
}

impl OAuthError {
    /// The `error` code of the response body (and of the audit record's outcome).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) | Self::PayloadTooLarge | Self::MethodNotAllowed => {
                "invalid_request"
            }
            Self::InvalidClient => "invalid_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::InvalidTarget(_) => "invalid_target",
            // No RFC 6749 code names rate limiting; `temporarily_unavailable` (§4.1.2.1) is the
            // registered code closest to it, and the 429 status tells the two apart.
            Self::RateLimited { .. } | Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }

    /// The outcome recorded in the audit trail: the error code, except `rate_limited`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limited",
            other => other.code(),
        }
    }

    /// The `error_description`: a fixed, human-readable sentence.
    pub fn description(&self) -> &'static str {
        match self {
            Self::InvalidRequest(d) | Self::InvalidScope(d) | Self::InvalidTarget(d) => d,
            Self::InvalidClient => "client authentication failed",
            Self::UnsupportedGrantType => "only the client_credentials grant is supported",
            Self::PayloadTooLarge => "the request body exceeds 8192 bytes",
            Self::MethodNotAllowed => "the token endpoint accepts POST only",
            Self::RateLimited { .. } => "too many requests; retry after the Retry-After delay",
            Self::TemporarilyUnavailable => "the service is temporarily unavailable; retry later",
        }
    }
}
