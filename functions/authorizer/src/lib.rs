//! An API Gateway HTTP API Lambda authorizer (REQUEST, payload format 2.0, simple responses)
//! for the service's access tokens, Bearer (RFC 6750) and DPoP-bound (RFC 9449), verified by
//! `token-verifier` against the issuer's JWKS.

pub mod request;
pub mod response;
pub mod settings;

use token_verifier::{Config, Error as TokenError, HttpRequestParts, VerifiedToken, Verifier};

pub use request::{ApiRequest, Event, EventError};
pub use response::Response;
pub use settings::{Settings, SettingsError};

/// Why a request was refused; [`Refusal::code`] is what the log line says.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The event could not be read.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The token or its proof failed a check, or the keys could not be had.
    #[error(transparent)]
    Token(#[from] TokenError),
}

impl Refusal {
    /// A stable reason code for the log: one per check, never text from the request.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Event(e) => e.code(),
            Self::Token(e) => token_error_code(e),
        }
    }
}

/// The log code of a verifier refusal.
fn token_error_code(e: &TokenError) -> &'static str {
    match e {
        TokenError::MissingToken => "missing_token",
        TokenError::InvalidRequest(_) => "invalid_request",
        TokenError::Malformed(_) => "malformed_token",
        TokenError::UnsupportedAlgorithm => "unsupported_algorithm",
        TokenError::UnknownKey => "unknown_kid",
        TokenError::BadSignature => "bad_signature",
        TokenError::WrongType => "wrong_typ",
        TokenError::WrongIssuer => "wrong_issuer",
        TokenError::WrongAudience => "wrong_audience",
        TokenError::Expired => "expired",
        TokenError::NotYetValid => "not_yet_valid",
        TokenError::MissingClaim(_) => "missing_claim",
        TokenError::InsufficientScope { .. } => "insufficient_scope",
        TokenError::ClaimType { .. } => "claim_type",
        TokenError::Jwks(_) => "jwks_unavailable",
        TokenError::InvalidDpopProof(_) => "invalid_dpop_proof",
        TokenError::BoundTokenAsBearer => "dpop_bound_token_as_bearer",
        TokenError::DpopRequired => "dpop_scheme_without_binding",
        TokenError::ReplayCacheFull => "dpop_replay_cache_full",
        TokenError::Misconfigured(_) => "verifier_misconfigured",
        _ => "refused",
    }
}

/// Why the authorizer could not start. Its `Debug` is its message, which is what the Lambda
/// runtime's init error and `main`'s exit show.
#[derive(thiserror::Error)]
pub enum StartError {
    /// A setting is missing or malformed.
    #[error("authorizer not started: {0}")]
    Settings(#[from] SettingsError),
    /// The issuer's metadata could not be read to find its JWKS.
    #[error("authorizer not started: discovery of the issuer's jwks_uri failed: {0}")]
    Discovery(TokenError),
}

impl std::fmt::Debug for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// The verifier (and its JWKS cache, kept across invocations) and the scopes every request
/// needs. Built once per execution environment, outside the handler.
pub struct Authorizer {
    verifier: Verifier,
    required_scopes: Vec<String>,
}

impl Authorizer {
    /// An authorizer over `verifier` requiring each of `required_scopes`.
    pub fn new(verifier: Verifier, required_scopes: Vec<String>) -> Self {
        Self {
            verifier,
            required_scopes,
        }
    }

    /// The authorizer of the function's environment ([`Settings::from_env`]); a bad setting
    /// or a failed discovery is logged and stops the start.
    pub async fn from_env() -> Result<Self, StartError> {
        let started = async { Self::start(Settings::from_env()?).await }.await;
        if let Err(e) = &started {
            tracing::error!(error = %e, "authorizer not started; fix its environment");
        }
        started
    }

    /// The authorizer of `settings`. Without `jwks_uri`, the issuer's metadata is read now
    /// (once per execution environment) to find it; the keys themselves are fetched by the
    /// first request and then cached per their `Cache-Control`.
    pub async fn start(settings: Settings) -> Result<Self, StartError> {
        let discover = settings.jwks_uri.is_none();
        let first = settings.audiences.first().cloned().unwrap_or_default();
        let jwks_uri = settings.jwks_uri.unwrap_or_default();
        let config =
            Config::new(settings.issuer, first, jwks_uri).with_audiences(settings.audiences);
        let verifier = if discover {
            Verifier::discover_with(config)
                .await
                .map_err(StartError::Discovery)?
        } else {
            Verifier::new(config)
        };
        Ok(Self::new(verifier, settings.required_scopes))
    }

    /// Decides on one request: its token (and proof) verified, then each required scope.
    pub async fn decide(&self, event: &Event) -> Result<VerifiedToken, Refusal> {
        let request = ApiRequest::from_event(event)?;
        let dpop: Vec<&str> = request.dpop.iter().map(String::as_str).collect();
        let token = self
            .verifier
            .verify_request(&HttpRequestParts {
                method: &request.method,
                url: &request.url,
                authorization: request.authorization.as_deref(),
                dpop: &dpop,
            })
            .await?;
        for scope in &self.required_scopes {
            token.require_scope(scope)?;
        }
        Ok(token)
    }

    /// The answer to API Gateway: allowed with the caller's context, or denied with nothing
    /// and a log line giving the reason (never the token).
    pub async fn authorize(&self, event: &Event) -> Response {
        match self.decide(event).await {
            Ok(token) => {
                tracing::debug!(client_id = %token.client_id, "request authorized");
                response::allow(response::context(
                    &token.client_id,
                    &token.scopes,
                    token.extra_claims(),
                ))
            }
            Err(refusal) => {
                tracing::info!(
                    reason = refusal.code(),
                    detail = %refusal,
                    request_id = event.request_context.request_id.as_deref().unwrap_or("-"),
                    "request refused"
                );
                response::deny()
            }
        }
    }
}
