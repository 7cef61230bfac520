//! The audit write of a token request, with the metric and the log line that go with it: the
//! one place a token request's answer is counted and logged (DESIGN.md "Audit trail").

use super::{AuditRecord, ISSUED};
use crate::store::{AuditLog, StoreError};

/// The `tracing` target of the one line per token request (client id, outcome, source address,
/// request id, `jti`). The Lambda front writes its fields into the request's metrics document
/// instead of a line of their own (`shapes::lambda`); elsewhere it is an ordinary log line.
pub const REQUEST_LINE: &str = "token_service::request";

/// Appends the record of a token request to `log`, then counts it by outcome and logs it. A
/// failed write is counted and logged as `temporarily_unavailable`, which is what the client
/// is answered: no token leaves the service unaudited.
pub async fn record(log: &dyn AuditLog, record: &AuditRecord) -> Result<(), StoreError> {
    let source_ip = record.source_ip.as_deref().unwrap_or("-");
    match log.append(record).await {
        Ok(()) => {
            // One counter per outcome: CloudWatch embedded metrics on Lambda (the function
            // installs the recorder), a no-op locally where the log line carries the same.
            metrics::counter!("token_requests", "outcome" => record.outcome.clone()).increment(1);
            // The fields CloudWatch Contributor Insights ranks by (docs/aws.md): client id,
            // outcome and source address. Never a secret or a token.
            tracing::info!(
                target: REQUEST_LINE,
                client_id = %record.client_id,
                outcome = %record.outcome,
                source_ip,
                request_id = %record.request_id,
                jti = record.jti.as_deref().unwrap_or(""),
                "token request"
            );
            Ok(())
        }
        Err(e) => {
            // Counted as what the client gets, so that the 503 alarm sees an audit outage.
            metrics::counter!("token_requests", "outcome" => "temporarily_unavailable")
                .increment(1);
            tracing::error!(
                client_id = %record.client_id,
                outcome = %record.outcome,
                source_ip,
                request_id = %record.request_id,
                error = %e,
                "audit write failed; answering temporarily_unavailable"
            );
            Err(e)
        }
    }
}

/// Records the age of the key that signed an issued token. A histogram, not a gauge: it
/// reaches the metrics document of this request only, next to the `issued` count (same
/// dimensions, no extra document); a stalled rotation shows as a growing age.
pub fn signing_key_age(seconds: i64) {
    metrics::histogram!("signing_key_age_seconds", "outcome" => ISSUED).record(seconds as f64);
}
