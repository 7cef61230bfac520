//! Audit records: one for every token request and every management action
//! (DESIGN.md "Audit trail"). Never a secret, a hash or a token.

pub mod report;
pub mod stats;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The client id recorded when a request named none (or none of a valid form).
pub const NO_CLIENT: &str = "-";

/// Longest user agent kept, in bytes.
pub const MAX_USER_AGENT: usize = 256;

/// What happened to a token request: `issued`, or the error code returned.
pub const ISSUED: &str = "issued";

/// The outcome of a request refused by a rate limit.
pub const RATE_LIMITED: &str = "rate_limited";

/// The outcome of a failed client authentication (RFC 6749 §5.2 `invalid_client`).
pub const INVALID_CLIENT: &str = "invalid_client";

/// One entry of the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// The client the request named, or `-`.
    pub client_id: String,
    /// When the request was handled.
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    /// The request id (API Gateway's, or generated locally).
    pub request_id: String,
    /// `issued`, an RFC 6749 error code, `rate_limited`, or for management actions `admin`.
    pub outcome: String,
    /// The issued token's `jti`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The granted scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The granted audience(s), space-separated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Source address of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// User agent, truncated to 256 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Who performed a management action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// The management action (`client.create`, `secret.revoke`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Names of the fields a management action changed; for an issued token, the client
    /// authentication method that succeeded (`client_secret_basic`, `client_secret_post`,
    /// `private_key_jwt`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// When the record may be deleted, seconds since the epoch (DynamoDB TTL).
    pub expires_at: i64,
}

impl AuditRecord {
    /// Whether this records a token request (not a management action).
    pub fn is_token_request(&self) -> bool {
        self.action.is_none()
    }
}

/// Truncates a user agent to [`MAX_USER_AGENT`] bytes on a character boundary, replacing
/// control characters so that a record never carries line breaks into a log.
pub fn clean_user_agent(ua: &str) -> String {
    let mut end = ua.len().min(MAX_USER_AGENT);
    while !ua.is_char_boundary(end) {
        end -= 1;
    }
    ua[..end]
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Which audit records to return, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only this client's records.
    pub client_id: Option<String>,
    /// Only records at or after this instant.
    pub since: Option<OffsetDateTime>,
    /// Only records before this instant.
    pub until: Option<OffsetDateTime>,
    /// Only records with this outcome.
    pub outcome: Option<String>,
    /// At most this many records.
    pub limit: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agent_is_truncated_on_a_char_boundary_without_controls() {
        let long = "é".repeat(200);
        let cut = clean_user_agent(&long);
        assert!(cut.len() <= MAX_USER_AGENT);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(clean_user_agent("a\r\nb"), "a??b");
    }
}
