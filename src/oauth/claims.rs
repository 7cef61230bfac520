//! Access-token claims (RFC 9068 §2.2, RFC 7519 §4.1).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The `aud` claim: one resource as a string, several as an array (RFC 7519 §4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// A single audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// The audience for a list of resources (never empty).
    pub fn from_list(mut list: Vec<String>) -> Self {
        if list.len() == 1 {
            Self::One(list.remove(0))
        } else {
            Self::Many(list)
        }
    }

    /// The audiences as a space-separated string (for the audit trail).
    pub fn joined(&self) -> String {
        match self {
            Self::One(a) => a.clone(),
            Self::Many(list) => list.join(" "),
        }
    }
}

/// The `cnf` claim of a DPoP-bound token (RFC 7800 §3.1, RFC 9449 §6.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// RFC 7638 SHA-256 thumbprint of the proof key, base64url.
    pub jkt: String,
}

/// The claims of every access token the service issues: the registered ones in this order,
/// then the client's own extra claims, if any, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Issuer: the configured issuer URL.
    pub iss: String,
    /// Subject: the client itself (client credentials grant, RFC 9068 §2.2).
    pub sub: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// The resources the token is meant for.
    pub aud: Audience,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Not before: equal to `iat`.
    pub nbf: i64,
    /// Expiry: `iat` + lifetime.
    pub exp: i64,
    /// Unique token id: 128 random bits, base64url.
    pub jti: String,
    /// Granted scopes, space-delimited.
    pub scope: String,
    /// The key the token is bound to (RFC 9449 §6.1), when the request carried a DPoP proof.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// The client's extra claims, at the top level; empty for most clients, which then get
    /// exactly the claims above.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}
