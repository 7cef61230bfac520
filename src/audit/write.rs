//! The audit write of a token request, with the metric and the log line that go with it: the
//! one place a token request's answer is counted and logged (DESIGN.md "Audit trail").

use std::sync::atomic::{AtomicI64, Ordering};

use time::OffsetDateTime;

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

/// The minute (Unix time / 60) of the last key age this process recorded.
static KEY_AGE_MINUTE: AtomicI64 = AtomicI64::new(i64::MIN);

/// Records the age of the key that signed an issued token, for the first token of each minute
/// a process issues. A histogram, not a gauge: it reaches the metrics document of that request
/// only, next to the `issued` count (same dimensions, no extra document); a stalled rotation
/// shows as a growing age. The alarm reads the largest age of an hour, so one sample a minute
/// per Lambda execution environment serves it as well as one per token, for 67 bytes less on
/// every other token's line (docs/cost.md).
pub fn signing_key_age(seconds: i64, now: OffsetDateTime) {
    if first_of_its_minute(&KEY_AGE_MINUTE, now) {
        metrics::histogram!("signing_key_age_seconds", "outcome" => ISSUED).record(seconds as f64);
    }
}

/// Whether `now` is the first time of its minute that `last` sees; times of an earlier minute
/// than one already seen are not.
fn first_of_its_minute(last: &AtomicI64, now: OffsetDateTime) -> bool {
    let minute = now.unix_timestamp().div_euclid(60);
    last.fetch_max(minute, Ordering::Relaxed) < minute
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn the_key_age_is_sampled_once_a_minute() {
        let last = AtomicI64::new(i64::MIN);
        let sampled: Vec<bool> = [
            datetime!(2026-12-06 11:59:00 UTC),
            datetime!(2026-12-06 11:59:59.999 UTC),
            datetime!(2026-12-06 12:00:00 UTC),
            datetime!(2026-12-06 11:59:30 UTC),
            datetime!(2026-12-06 12:00:30 UTC),
            datetime!(2026-12-06 12:03:00 UTC),
            datetime!(1969-12-31 23:59:59 UTC),
        ]
        .into_iter()
        .map(|now| first_of_its_minute(&last, now))
        .collect();
        assert_eq!(sampled, [true, false, true, false, false, true, false]);
    }
}
