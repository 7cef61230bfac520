//! Audit records: one for every token request and every management action
//! (DESIGN.md "Audit trail"). Never a secret, a hash or a token.

pub mod report;
pub mod stats;
mod write;

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::clients::secret::looks_like_secret;
use crate::oauth::claims::AccessTokenClaims;
use crate::oauth::request::AuthMethod;

pub use write::{REQUEST_LINE, record, signing_key_age};

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

/// The outcome of every management action (its `action` says which).
pub const ADMIN: &str = "admin";

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
    /// authentication method that succeeded, as [`auth_method`](Self::auth_method) (records
    /// written before that field existed have it here only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// For an issued token, the client authentication method that succeeded
    /// (`client_secret_basic`, `client_secret_post`, `private_key_jwt`, RFC 8414 names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_method: Option<String>,
    /// For an issued DPoP-bound token, the RFC 7638 thumbprint of the key it is bound to (a
    /// public key's name, not a secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_jkt: Option<String>,
    /// When the record may be deleted, seconds since the epoch (DynamoDB TTL).
    pub expires_at: i64,
}

/// Where a request came from, as the HTTP front knows it: what its audit record says besides
/// the outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestContext {
    /// The request id (API Gateway's, or generated).
    pub request_id: String,
    /// The source address.
    pub source_ip: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
}

/// What the record of an issued token holds besides the request (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFacts {
    /// The token's `jti`.
    pub jti: String,
    /// The granted scope, space-delimited.
    pub scope: String,
    /// The granted audience(s), space-separated.
    pub audience: String,
    /// The client authentication method that succeeded, by its RFC 8414 name.
    pub auth_method: &'static str,
    /// The thumbprint of the key a DPoP-bound token is bound to (`cnf.jkt`).
    pub dpop_jkt: Option<String>,
}

impl TokenFacts {
    /// The facts of a token with `claims`, issued to a client that authenticated by `method`.
    pub fn of(claims: &AccessTokenClaims, method: AuthMethod) -> Self {
        Self {
            jti: claims.jti.clone(),
            scope: claims.scope.clone(),
            audience: claims.aud.joined(),
            auth_method: method.as_str(),
            dpop_jkt: claims.cnf.as_ref().map(|c| c.jkt.clone()),
        }
    }
}

impl AuditRecord {
    /// The record of a token request answered with `outcome`, kept for `retention`. The client
    /// id is recorded only when it cannot be a secret (a client that swapped id and secret must
    /// not have its secret in the trail, whichever path got it here); otherwise `-`.
    pub fn for_request(
        client_id: Option<&str>,
        outcome: &str,
        meta: &RequestContext,
        now: OffsetDateTime,
        retention: Duration,
    ) -> Self {
        let client_id = client_id.filter(|id| !looks_like_secret(id));
        Self {
            client_id: client_id.unwrap_or(NO_CLIENT).to_owned(),
            timestamp: now,
            request_id: meta.request_id.clone(),
            outcome: outcome.to_owned(),
            jti: None,
            scope: None,
            audience: None,
            source_ip: meta.source_ip.clone(),
            user_agent: meta.user_agent.as_deref().map(clean_user_agent),
            actor: None,
            action: None,
            fields: Vec::new(),
            auth_method: None,
            dpop_jkt: None,
            expires_at: (now + retention).unix_timestamp(),
        }
    }

    /// The record of a token issued to `client_id`: [`for_request`](Self::for_request) with
    /// outcome `issued`, the token's `jti`, scope and audience, and the authentication method.
    pub fn for_issued(
        client_id: &str,
        issued: TokenFacts,
        meta: &RequestContext,
        now: OffsetDateTime,
        retention: Duration,
    ) -> Self {
        let mut record = Self::for_request(Some(client_id), ISSUED, meta, now, retention);
        record.jti = Some(issued.jti);
        record.scope = Some(issued.scope);
        record.audience = Some(issued.audience);
        record.auth_method = Some(issued.auth_method.to_owned());
        record.dpop_jkt = issued.dpop_jkt;
        // Also where records written before `auth_method` carry it: `tokenctl audit --json`
        // readers of `fields` keep finding it (its JSON shapes only ever gain fields).
        record.fields = vec![issued.auth_method.to_owned()];
        record
    }

    /// The client authentication method of an issued token: [`auth_method`](Self::auth_method),
    /// or for a record written before that field existed, the method its `fields` names.
    pub fn issued_with(&self) -> Option<&str> {
        if let Some(method) = &self.auth_method {
            return Some(method);
        }
        match self.fields.as_slice() {
            [method] if self.outcome == ISSUED && self.is_token_request() => Some(method),
            _ => None,
        }
    }

    /// Whether this records a token request (not a management action).
    pub fn is_token_request(&self) -> bool {
        self.action.is_none()
    }

    /// Whether this records a refused token request: any outcome but `issued` (a rate limit
    /// included), never a management action. Refusals are what the stores index by time
    /// ([`AuditLog::failures`](crate::store::AuditLog::failures)), so that the audit report
    /// finds every address's failures, under any id, without reading the whole trail.
    pub fn is_failure(&self) -> bool {
        self.is_token_request() && self.outcome != ISSUED && self.outcome != ADMIN
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

/// The refused token requests of a time range, read through the stores' failure index, and
/// what reading them took.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Failures {
    /// The records, in no particular order. Read from the index, so on DynamoDB without the
    /// fields it does not project (the user agent).
    pub records: Vec<AuditRecord>,
    /// Requests made to the store: on DynamoDB one `Query` page each (at least one per hour of
    /// the range), on SQLite one indexed `SELECT`.
    pub queries: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> RequestContext {
        RequestContext {
            request_id: "req-1".to_owned(),
            source_ip: Some("192.0.2.7".to_owned()),
            user_agent: Some("curl/8\r\nX: y".to_owned()),
        }
    }

    #[test]
    fn a_request_record_keeps_the_request_and_expires_after_the_retention() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let r = AuditRecord::for_request(
            Some("svc"),
            "invalid_scope",
            &meta(),
            now,
            Duration::days(90),
        );
        assert_eq!(r.client_id, "svc");
        assert_eq!(r.outcome, "invalid_scope");
        assert_eq!(r.request_id, "req-1");
        assert_eq!(r.source_ip.as_deref(), Some("192.0.2.7"));
        assert_eq!(r.user_agent.as_deref(), Some("curl/8??X: y"));
        assert_eq!(r.expires_at, 1_700_000_000 + 90 * 86_400);
        assert!(r.is_token_request());
        assert_eq!((r.jti, r.scope, r.audience), (None, None, None));
        let none =
            AuditRecord::for_request(None, "invalid_request", &meta(), now, Duration::days(1));
        assert_eq!(none.client_id, NO_CLIENT);
    }

    #[test]
    fn a_secret_given_as_the_client_id_is_never_recorded() {
        let secret = crate::clients::ClientSecret::generate();
        let now = OffsetDateTime::now_utc();
        let r = AuditRecord::for_request(
            Some(secret.expose()),
            INVALID_CLIENT,
            &meta(),
            now,
            Duration::days(1),
        );
        assert_eq!(r.client_id, NO_CLIENT);
        let issued = TokenFacts {
            jti: "j".to_owned(),
            scope: "read".to_owned(),
            audience: "https://a.test/".to_owned(),
            auth_method: "client_secret_basic",
            dpop_jkt: None,
        };
        let r = AuditRecord::for_issued(secret.expose(), issued, &meta(), now, Duration::days(1));
        assert_eq!(r.client_id, NO_CLIENT);
    }

    #[test]
    fn an_issued_record_names_the_token_and_the_method() {
        let now = OffsetDateTime::now_utc();
        let issued = TokenFacts {
            jti: "j".to_owned(),
            scope: "read write".to_owned(),
            audience: "https://a.test/ https://b.test/".to_owned(),
            auth_method: "private_key_jwt",
            dpop_jkt: None,
        };
        let r = AuditRecord::for_issued("svc", issued, &meta(), now, Duration::days(1));
        assert_eq!(r.outcome, ISSUED);
        assert_eq!(r.jti.as_deref(), Some("j"));
        assert_eq!(r.scope.as_deref(), Some("read write"));
        assert_eq!(
            r.audience.as_deref(),
            Some("https://a.test/ https://b.test/")
        );
        assert_eq!(r.auth_method.as_deref(), Some("private_key_jwt"));
        assert_eq!(r.fields, ["private_key_jwt"]);
        assert_eq!(r.issued_with(), Some("private_key_jwt"));
    }

    #[test]
    fn a_record_from_before_auth_method_reads_its_method_from_fields() {
        let old = r#"{"client_id":"svc","timestamp":"2026-11-01T10:00:00Z","request_id":"r",
            "outcome":"issued","jti":"j","fields":["client_secret_post"],"expires_at":1}"#;
        let r: AuditRecord = serde_json::from_str(old).unwrap();
        assert_eq!(r.auth_method, None);
        assert_eq!(r.issued_with(), Some("client_secret_post"));
        let refused = AuditRecord::for_request(
            Some("svc"),
            INVALID_CLIENT,
            &meta(),
            r.timestamp,
            Duration::days(1),
        );
        assert_eq!(refused.issued_with(), None);
        let mut admin = refused;
        admin.outcome = ISSUED.to_owned();
        admin.action = Some("client.update".to_owned());
        admin.fields = vec!["status".to_owned()];
        assert_eq!(
            admin.issued_with(),
            None,
            "an admin action's fields are not a method"
        );
    }

    #[test]
    fn user_agent_is_truncated_on_a_char_boundary_without_controls() {
        let long = "é".repeat(200);
        let cut = clean_user_agent(&long);
        assert!(cut.len() <= MAX_USER_AGENT);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(clean_user_agent("a\r\nb"), "a??b");
    }
}
