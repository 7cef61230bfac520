//! Client records: who may ask for tokens, with which scopes, audiences and secrets.

pub mod claims;
pub mod keys;
pub mod secret;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use claims::{ClaimError, ExtraClaims};
pub use keys::ClientKey;
pub use secret::{ClientSecret, SecretHash};

pub use crate::values::MAX_CLIENT_ID_LEN;
use crate::values::{ClientId, ResourceUri, ScopeToken};

/// Whether a client may currently obtain tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientStatus {
    /// The client authenticates and receives tokens.
    Active,
    /// Every request of the client fails with `invalid_client`.
    Disabled,
}

impl ClientStatus {
    /// The status as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Disabled => "disabled",
        }
    }
}

/// How a client authenticates at the token endpoint, named as RFC 8414
/// `token_endpoint_auth_methods_supported` names them (secrets by either transport).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthMethod {
    /// A shared secret, by HTTP Basic or in the body (RFC 6749 §2.3.1). Records written before
    /// the field existed are read as this.
    #[default]
    ClientSecret,
    /// A JWT signed with a registered private key (RFC 7523 §2.2, OpenID Connect Core §9).
    PrivateKeyJwt,
}

impl ClientAuthMethod {
    /// The method as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecret => "client_secret",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// One secret of a client, as stored: never the secret itself, only its digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSecret {
    /// Public handle of the secret, used to revoke it.
    pub secret_id: String,
    /// SHA-256 digest of the secret.
    pub hash: SecretHash,
    /// When the secret was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// After this instant the secret no longer authenticates.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub expires_at: Option<OffsetDateTime>,
}

impl StoredSecret {
    /// Whether the secret still authenticates at `now`.
    pub fn is_live(&self, now: OffsetDateTime) -> bool {
        self.expires_at.is_none_or(|at| now < at)
    }
}

/// A registered API client (DESIGN.md "Clients and secrets").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Client {
    /// The `client_id` (RFC 6749 §2.2).
    pub client_id: String,
    /// Human-readable name.
    pub name: String,
    /// Active or disabled.
    pub status: ClientStatus,
    /// Scopes the client may request.
    pub scopes: Vec<String>,
    /// Scopes granted when a request names none.
    pub default_scopes: Vec<String>,
    /// Audiences (RFC 8707 resources) the client may request.
    pub audiences: Vec<String>,
    /// Audience of tokens when a request names no `resource`.
    pub default_audience: String,
    /// Token lifetime in seconds for this client; capped by the service maximum.
    #[serde(default)]
    pub token_ttl: Option<u64>,
    /// Tokens per minute for this client; the service default when `None`.
    #[serde(default)]
    pub rate_limit: Option<u32>,
    /// The client's secrets, each with an optional expiry.
    pub secrets: Vec<StoredSecret>,
    /// How the client authenticates; `client_secret` for records that predate the field.
    #[serde(default)]
    pub auth_method: ClientAuthMethod,
    /// The public keys of a `private_key_jwt` client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<ClientKey>,
    /// Extra claims put at the top level of every token of the client (never a registered
    /// name, see [`claims::RESERVED_CLAIMS`]). Absent from records without any, so those
    /// read and write as before.
    #[serde(default, skip_serializing_if = "ExtraClaims::is_empty")]
    pub claims: ExtraClaims,
    /// Every token of the client is DPoP-bound (RFC 9449 §5.2 `dpop_bound_access_tokens`): a
    /// request without a proof is refused. Absent from records of clients without it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dpop_bound: bool,
    /// When the client was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the record last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Incremented by every update: the optimistic-locking token.
    pub version: u64,
}

impl Client {
    /// Whether the client may currently obtain tokens.
    pub fn is_active(&self) -> bool {
        self.status == ClientStatus::Active
    }
}

/// Why a client definition is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClientSpecError {
    /// The id breaks RFC 6749 Appendix A or the length bound.
    #[error("client id must be 1 to {MAX_CLIENT_ID_LEN} printable ASCII characters without spaces")]
    InvalidId,
    /// The id has the shape of one of our secrets: it would be treated as a leaked secret
    /// (never recorded, never looked up), so the client could never authenticate.
    #[error("client id must not look like a client secret (tks_...)")]
    SecretShapedId,
    /// A scope is not an RFC 6749 §3.3 scope-token.
    #[error("scope {0:?} is not a valid scope token (RFC 6749 section 3.3)")]
    InvalidScope(String),
    /// A default scope is not among the allowed scopes.
    #[error("default scope {0:?} is not among the client's scopes")]
    DefaultScopeNotAllowed(String),
    /// No audience was given.
    #[error("a client needs at least one audience")]
    NoAudience,
    /// An audience is not an absolute URI without fragment.
    #[error("audience {0:?} must be an absolute URI without a fragment (RFC 8707)")]
    InvalidAudience(String),
    /// The default audience is not among the allowed audiences.
    #[error("default audience {0:?} is not among the client's audiences")]
    DefaultAudienceNotAllowed(String),
    /// The issuance limit is zero.
    #[error("rate limit must be at least 1 token per minute")]
    InvalidRateLimit,
    /// The lifetime is zero or longer than the service maximum.
    #[error("token lifetime must be between 1 and {0} seconds")]
    InvalidTtl(u64),
    /// Credentials of the other authentication method are present.
    #[error("a {0} client holds only credentials of that method")]
    MixedCredentials(&'static str),
    /// Too many keys, or two with one `kid`.
    #[error(
        "a client holds at most {} keys, each with its own kid",
        keys::MAX_CLIENT_KEYS
    )]
    InvalidKeys,
    /// An extra claim is refused.
    #[error(transparent)]
    Claims(#[from] ClaimError),
    /// One public key under two `kid`s: removing one would leave the key trusted.
    #[error("key {0:?} is registered already as {1:?}: a client holds each key once")]
    DuplicateKey(String, String),
}

/// Checks a client id against RFC 6749 Appendix A (`VSCHAR`, here without space) and our bound.
pub fn validate_client_id(id: &str) -> Result<(), ClientSpecError> {
    ClientId::parse(id)
        .map(drop)
        .map_err(|_| ClientSpecError::InvalidId)
}

/// Checks the policy fields of a client record; used on every create and update.
pub fn validate_policy(client: &Client, max_ttl: u64) -> Result<(), ClientSpecError> {
    validate_client_id(&client.client_id)?;
    if secret::looks_like_secret(&client.client_id) {
        return Err(ClientSpecError::SecretShapedId);
    }
    if let Some(bad) = client
        .scopes
        .iter()
        .find(|s| ScopeToken::parse(s.as_str()).is_err())
    {
        return Err(ClientSpecError::InvalidScope(bad.clone()));
    }
    if let Some(s) = client
        .default_scopes
        .iter()
        .find(|s| !client.scopes.contains(s))
    {
        return Err(ClientSpecError::DefaultScopeNotAllowed(s.clone()));
    }
    if client.audiences.is_empty() {
        return Err(ClientSpecError::NoAudience);
    }
    if let Some(a) = client
        .audiences
        .iter()
        .find(|a| ResourceUri::parse(a.as_str()).is_err())
    {
        return Err(ClientSpecError::InvalidAudience(a.clone()));
    }
    if !client.audiences.contains(&client.default_audience) {
        return Err(ClientSpecError::DefaultAudienceNotAllowed(
            client.default_audience.clone(),
        ));
    }
    if client.rate_limit == Some(0) {
        return Err(ClientSpecError::InvalidRateLimit);
    }
    if client.token_ttl.is_some_and(|t| t == 0 || t > max_ttl) {
        return Err(ClientSpecError::InvalidTtl(max_ttl));
    }
    claims::validate(&client.claims)?;
    validate_credentials(client)
}

/// A client holds the credentials of its own method only, within the bound on keys.
fn validate_credentials(client: &Client) -> Result<(), ClientSpecError> {
    let method = client.auth_method;
    let mixed = match method {
        ClientAuthMethod::ClientSecret => !client.keys.is_empty(),
        ClientAuthMethod::PrivateKeyJwt => !client.secrets.is_empty(),
    };
    if mixed {
        return Err(ClientSpecError::MixedCredentials(method.as_str()));
    }
    let mut kids: Vec<&str> = client.keys.iter().map(|k| k.kid.as_str()).collect();
    kids.sort_unstable();
    kids.dedup();
    if client.keys.len() > keys::MAX_CLIENT_KEYS || kids.len() != client.keys.len() {
        return Err(ClientSpecError::InvalidKeys);
    }
    // The key material itself, by its RFC 7638 thumbprint: the kid is only a name.
    let mut seen: Vec<(String, &str)> = Vec::with_capacity(client.keys.len());
    for key in &client.keys {
        let thumbprint = key
            .jwk
            .thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
            .map_err(|_| ClientSpecError::InvalidKeys)?;
        if let Some((_, first)) = seen.iter().find(|(t, _)| *t == thumbprint) {
            return Err(ClientSpecError::DuplicateKey(
                key.kid.clone(),
                (*first).to_owned(),
            ));
        }
        seen.push((thumbprint, &key.kid));
    }
    Ok(())
}

/// A fresh client id: 120 random bits, base64url (20 characters), starting with a letter or a
/// digit, so that it never reads as an option on a command line.
pub fn generate_client_id() -> String {
    loop {
        let id = crate::encoding::random_b64url(15);
        if id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_follow_rfc6749_appendix_a() {
        assert!(validate_client_id("demo").is_ok());
        assert!(validate_client_id("a-b_c.d~e!").is_ok());
        for _ in 0..1000 {
            let id = generate_client_id();
            assert!(validate_client_id(&id).is_ok());
            assert!(id.starts_with(|c: char| c.is_ascii_alphanumeric()), "{id}");
        }
        assert!(validate_client_id("").is_err());
        assert!(validate_client_id("has space").is_err());
        assert!(validate_client_id("tab\t").is_err());
        assert!(validate_client_id("é").is_err());
        assert!(validate_client_id(&"x".repeat(MAX_CLIENT_ID_LEN + 1)).is_err());
    }
}
