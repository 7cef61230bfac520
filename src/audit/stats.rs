//! Token requests counted by outcome: `tokenctl clients stats`, and each client's line of the
//! audit report. Management actions are never counted.

use std::collections::BTreeMap;

use serde::Serialize;
use time::OffsetDateTime;

use super::{AuditQuery, AuditRecord, ISSUED, RATE_LIMITED};
use crate::store::{AuditLog, StoreError};

/// Token requests counted by outcome.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    /// Tokens issued.
    pub issued: usize,
    /// Requests refused for any reason but a rate limit.
    pub failed: usize,
    /// Requests refused by a rate limit.
    pub limited: usize,
    /// Every outcome with its count.
    pub by_outcome: BTreeMap<String, usize>,
}

impl OutcomeCounts {
    /// The token requests among `records`, counted.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a AuditRecord>) -> Self {
        let mut counts = Self::default();
        for r in records {
            counts.add(r);
        }
        counts
    }

    /// Counts `record` if it is a token request.
    pub fn add(&mut self, record: &AuditRecord) {
        if !record.is_token_request() {
            return;
        }
        *self.by_outcome.entry(record.outcome.clone()).or_insert(0) += 1;
        match record.outcome.as_str() {
            ISSUED => self.issued += 1,
            RATE_LIMITED => self.limited += 1,
            _ => self.failed += 1,
        }
    }

    /// Every token request counted.
    pub fn requests(&self) -> usize {
        self.issued + self.failed + self.limited
    }
}

/// One client's token requests since an instant (`tokenctl clients stats`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientStats {
    /// The client.
    pub client_id: String,
    /// Start of the period; it ends now.
    #[serde(with = "time::serde::rfc3339")]
    pub since: OffsetDateTime,
    /// The counts.
    #[serde(flatten)]
    pub counts: OutcomeCounts,
}

/// Counts `client_id`'s token requests from `since` on: one query of its audit records (a
/// DynamoDB `Query` on its partition).
pub async fn client_stats(
    audit: &dyn AuditLog,
    client_id: &str,
    since: OffsetDateTime,
) -> Result<ClientStats, StoreError> {
    let records = audit
        .query(&AuditQuery {
            client_id: Some(client_id.to_owned()),
            since: Some(since),
            ..AuditQuery::default()
        })
        .await?;
    Ok(ClientStats {
        client_id: client_id.to_owned(),
        since,
        counts: OutcomeCounts::of(&records),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(outcome: &str, action: Option<&str>) -> AuditRecord {
        AuditRecord {
            client_id: "c".to_owned(),
            timestamp: OffsetDateTime::UNIX_EPOCH,
            request_id: "r".to_owned(),
            outcome: outcome.to_owned(),
            jti: None,
            scope: None,
            audience: None,
            source_ip: None,
            user_agent: None,
            actor: None,
            action: action.map(str::to_owned),
            fields: Vec::new(),
            auth_method: None,
            dpop_jkt: None,
            expires_at: 0,
        }
    }

    #[test]
    fn outcomes_are_counted_and_admin_actions_are_not() {
        let records = [
            record("issued", None),
            record("issued", None),
            record("rate_limited", None),
            record("invalid_client", None),
            record("invalid_scope", None),
            record("admin", Some("client.create")),
        ];
        let counts = OutcomeCounts::of(&records);
        assert_eq!((counts.issued, counts.failed, counts.limited), (2, 2, 1));
        assert_eq!(counts.requests(), 5);
        assert_eq!(counts.by_outcome.get("invalid_scope"), Some(&1));
        assert_eq!(counts.by_outcome.get("admin"), None);
        let json = serde_json::to_string(&ClientStats {
            client_id: "c".to_owned(),
            since: OffsetDateTime::UNIX_EPOCH,
            counts,
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"client_id":"c","since":"1970-01-01T00:00:00Z","issued":2,"failed":2,"limited":1,"by_outcome":{"invalid_client":1,"invalid_scope":1,"issued":2,"rate_limited":1}}"#
        );
    }
}
