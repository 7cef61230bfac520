//! What a refused token request costs its source and what of it is audited (DESIGN.md "Abuse
//! protection"): the answer it gets ([`Refused`]), the per-source budget of refusals a minute
//! ([`RefusalBudget`], `TOKEN_REFUSAL_BUDGET`) and the cut-off past it ([`Audit`]).
//!
//! Every refused request (each 4xx answer) counts against its source's budget, except a
//! client's `429` for its own issue limit (the flow does not charge it: one client running
//! past its own limit must not lock out every other client behind the same NAT or /64); the first
//! request over it is answered `429` and audited as the cut-off, and the source's further
//! requests in that window are answered `429` after the counter reads, counted in the
//! `token_requests_unaudited` metric and not written. A flood then costs no audit write per
//! request, and the trail still shows when and from where it was cut off.

use crate::audit::{self, RequestContext};
use crate::config::Limits;
use crate::limits::{FailureLimits, Window, refusals_of_source_key};
use crate::oauth::OAuthError;
use crate::oauth::request::Rejection;
use crate::store::{RateLimits, StoreError};

/// What a refused token request is answered with: an OAuth error, or a rate limit, which no
/// OAuth error code names (the HTTP edge answers it `429`, `http::HttpError`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// An error response of RFC 6749 §5.2 (or a later RFC's code).
    #[error("{0}")]
    OAuth(OAuthError),
    /// Too many requests: try again after `retry_after` seconds (RFC 6585 §4, RFC 9110
    /// §10.2.3).
    #[error("rate limited")]
    RateLimited {
        /// Seconds until the window ends.
        retry_after: u64,
    },
}

impl Refused {
    /// The answer to a request over a limit of `window`, until the window ends.
    pub fn limited(window: Window) -> Self {
        Self::RateLimited {
            retry_after: window.retry_after(),
        }
    }

    /// The outcome recorded in the audit trail: the error code, or `rate_limited`.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::OAuth(error) => error.code(),
            Self::RateLimited { .. } => audit::RATE_LIMITED,
        }
    }

    /// Whether the service, not the request, failed: such answers cost no budget.
    fn is_unavailable(&self) -> bool {
        *self == Self::OAuth(OAuthError::TemporarilyUnavailable)
    }
}

impl From<OAuthError> for Refused {
    fn from(error: OAuthError) -> Self {
        Self::OAuth(error)
    }
}

/// The answer when the rate-limit counters cannot be read or written.
pub fn counters_unavailable(e: StoreError) -> Refused {
    tracing::error!(error = %e, "rate-limit counters unavailable");
    OAuthError::TemporarilyUnavailable.into()
}

/// Whether a refusal is written to the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audit {
    /// Recorded, like every request within its source's budget.
    Write,
    /// Recorded: the first `429` of a source over its budget, the cut-off mark.
    CutOff,
    /// Not recorded: a `429` of a source past its cut-off, counted in a metric only.
    Skip,
}

/// A refused request: its answer, the client id it claimed (only ids that may be recorded),
/// and whether it is audited.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// What the request is answered with.
    pub answer: Refused,
    /// The well-formed client id the request named, if any.
    pub client_id: Option<String>,
    /// Whether the refusal is written to the audit trail.
    pub audit: Audit,
}

impl Refusal {
    /// A refusal within its source's budget, audited.
    pub fn new(answer: impl Into<Refused>, client_id: Option<String>) -> Self {
        Self {
            answer: answer.into(),
            client_id,
            audit: Audit::Write,
        }
    }

    /// Whether the refusal is written to the audit trail. A refusal past the cut-off is only
    /// counted in the `token_requests_unaudited` metric; the cut-off itself is logged once.
    pub fn is_recorded(&self, meta: &RequestContext, budget: u32) -> bool {
        let source_ip = meta.source_ip.as_deref().unwrap_or("-");
        match self.audit {
            Audit::Write => true,
            Audit::CutOff => {
                tracing::warn!(
                    request_id = %meta.request_id,
                    source_ip,
                    budget,
                    "source over its refusal budget; its further refusals this window are not audited"
                );
                true
            }
            Audit::Skip => {
                metrics::counter!("token_requests_unaudited", "outcome" => self.answer.outcome())
                    .increment(1);
                tracing::debug!(
                    request_id = %meta.request_id,
                    source_ip,
                    "refused past the source's budget; not audited"
                );
                false
            }
        }
    }
}

impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Self {
        Self::new(rejection.error, rejection.client_id)
    }
}

impl From<Refused> for Refusal {
    fn from(answer: Refused) -> Self {
        Self::new(answer, None)
    }
}

/// Where a source stands with its budget of refused requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// Under the budget: the request is answered and audited as usual.
    Within,
    /// Over the budget: the request is answered `429`. `audited` is true for exactly one
    /// request per source and window, the one that marks the cut-off in the audit trail.
    Over {
        /// Whether this request's answer is written to the audit trail.
        audited: bool,
    },
}

/// The per-source budget of refused requests in one window.
///
/// The counter runs from 0 to `budget + 1`: each refusal within the budget adds one; the step
/// from `budget` to `budget + 1` is taken by exactly one request (an atomic conditional
/// increment), the audited cut-off. Past it, a request costs one consistent read and no write
/// at all: it is answered `429` and counted in the `token_requests_unaudited` metric only.
pub struct RefusalBudget<'a> {
    counters: &'a dyn RateLimits,
    key: String,
    budget: u32,
    window: Window,
}

impl<'a> RefusalBudget<'a> {
    /// The budget of `source` in `window`.
    pub fn new(counters: &'a dyn RateLimits, source: &str, budget: u32, window: Window) -> Self {
        Self {
            counters,
            key: refusals_of_source_key(source, window),
            budget,
            window,
        }
    }

    /// The budget's counter key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Before a request is looked at: whether its source is already over the budget.
    pub async fn check(&self) -> Result<Standing, StoreError> {
        let count = self.counters.count(&self.key).await?;
        self.standing(count).await
    }

    /// Where the source stands, given its counter's value as just read (consistently). Writes
    /// only for the request that reads the budget exactly spent: it tries to take the cut-off.
    pub async fn standing(&self, count: u64) -> Result<Standing, StoreError> {
        match count.cmp(&u64::from(self.budget)) {
            std::cmp::Ordering::Less => Ok(Standing::Within),
            std::cmp::Ordering::Equal => self.cut_off().await,
            std::cmp::Ordering::Greater => Ok(Standing::Over { audited: false }),
        }
    }

    /// After a request was refused: counts it. `Over` when the budget ran out meanwhile
    /// (parallel requests), so that no more refusals than the budget get their own answer.
    pub async fn charge(&self) -> Result<Standing, StoreError> {
        let expires_at = self.window.expires_at();
        if self
            .counters
            .acquire(&self.key, self.budget, expires_at)
            .await?
        {
            return Ok(Standing::Within);
        }
        self.cut_off().await
    }

    /// The one step past the budget: only the request that takes it is audited.
    async fn cut_off(&self) -> Result<Standing, StoreError> {
        let audited = self
            .counters
            .acquire(
                &self.key,
                self.budget.saturating_add(1),
                self.window.expires_at(),
            )
            .await?;
        Ok(Standing::Over { audited })
    }

    /// The answer to a source's standing: go on, or `429` (audited as the cut-off for exactly
    /// one request), or `temporarily_unavailable` when it could not be read.
    pub fn judge(&self, standing: Result<Standing, StoreError>) -> Result<(), Refusal> {
        match standing {
            Ok(Standing::Within) => Ok(()),
            Ok(Standing::Over { audited }) => Err(self.over(None, audited)),
            Err(e) => Err(counters_unavailable(e).into()),
        }
    }

    /// [`judge`](Self::judge) of the standing that `count`, the counter as just read, gives.
    pub async fn admit(&self, count: u64) -> Result<(), Refusal> {
        self.judge(self.standing(count).await)
    }

    /// Counts `refusal` (any 4xx answer) against the budget. A refusal that finds the budget
    /// spent (parallel requests passed [`check`](Self::check) together) is answered `429`
    /// instead; one the service failed (`temporarily_unavailable`) costs nothing.
    pub async fn count(&self, refusal: Refusal) -> Refusal {
        if refusal.answer.is_unavailable() {
            return refusal;
        }
        match self.charge().await {
            Ok(Standing::Within) => refusal,
            Ok(Standing::Over { audited }) => self.over(refusal.client_id, audited),
            Err(e) => Refusal::new(counters_unavailable(e), refusal.client_id),
        }
    }

    /// The `429` of a request over the budget: audited only as the cut-off.
    fn over(&self, client_id: Option<String>, audited: bool) -> Refusal {
        Refusal {
            answer: Refused::limited(self.window),
            client_id,
            audit: if audited { Audit::CutOff } else { Audit::Skip },
        }
    }
}

/// The counters of a source, read before its request is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// The source's refusal-budget counter.
    pub refused: u64,
    /// The source's failed authentications.
    pub source_failures: u64,
    /// The failed authentications of the (client id, source) pair, when the request named a
    /// recordable client id.
    pub client_failures: Option<u64>,
}

/// The limits of one source in one window: its budget of refusals and its failed
/// authentications (per source, and per client id and source).
pub struct SourceLimits<'a> {
    /// The source's budget of refused requests.
    pub budget: RefusalBudget<'a>,
    failures: FailureLimits<'a>,
    window: Window,
}

impl<'a> SourceLimits<'a> {
    /// The limits of `source` in `window`, as configured.
    pub fn new(
        counters: &'a dyn RateLimits,
        source: &'a str,
        window: Window,
        limits: &Limits,
    ) -> Self {
        Self {
            budget: RefusalBudget::new(counters, source, limits.refusal_budget, window),
            failures: FailureLimits::new(
                counters,
                source,
                window,
                limits.fail_per_ip,
                limits.fail_per_client_ip,
            ),
            window,
        }
    }

    /// Every counter the decision needs, in one round trip where the backend can (DynamoDB:
    /// one consistent `BatchGetItem`): the budget, the source's failures and, for a request
    /// that names a recordable client id, that pair's failures.
    pub async fn read(&self, claimed: Option<&str>) -> Result<Counts, Refused> {
        let mut keys = vec![self.budget.key().to_owned(), self.failures.key(None)];
        keys.extend(claimed.map(|id| self.failures.key(Some(id))));
        let counts = self.budget.counters.counts(&keys).await.and_then(|counts| {
            match counts.len() == keys.len() {
                true => Ok(counts),
                false => Err(StoreError::Backend("a counter read lost a key".to_owned())),
            }
        });
        let counts = counts.map_err(counters_unavailable)?;
        Ok(Counts {
            refused: counts[0],
            source_failures: counts[1],
            client_failures: counts.get(2).copied(),
        })
    }

    /// A refusal before any secret is checked: `429` when the source's failures, or those of
    /// the (client id, source) pair the request names, reached their limit.
    pub fn failures_over(&self, counts: &Counts, claimed: Option<&str>) -> Option<Refusal> {
        if self.failures.is_over(None, counts.source_failures) {
            return Some(Refused::limited(self.window).into());
        }
        let (id, count) = (claimed?, counts.client_failures?);
        let over = self.failures.is_over(Some(id), count);
        over.then(|| Refusal::new(Refused::limited(self.window), Some(id.to_owned())))
    }

    /// Counts a failed authentication (`invalid_client`) against the failure limits
    /// ([`FailureLimits::record`]); `429` instead when a counter was full. Other refusals pass
    /// unchanged.
    pub async fn count_failure(&self, refusal: Refusal) -> Refusal {
        if refusal.answer != Refused::OAuth(OAuthError::InvalidClient) {
            return refusal;
        }
        let answer = match self.failures.record(refusal.client_id.as_deref()).await {
            Ok(true) => return refusal,
            Ok(false) => Refused::limited(self.window),
            Err(e) => counters_unavailable(e),
        };
        Refusal { answer, ..refusal }
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::store::fakes::Counters;

    #[tokio::test]
    async fn a_budget_is_spent_then_cut_off_once_then_costs_no_write() {
        let counters = Counters::default();
        let window = Window::at(OffsetDateTime::from_unix_timestamp(600).unwrap());
        let budget = RefusalBudget::new(&counters, "192.0.2.1", 2, window);
        for _ in 0..2 {
            assert_eq!(budget.check().await.unwrap(), Standing::Within);
            assert_eq!(budget.charge().await.unwrap(), Standing::Within);
        }
        assert_eq!(
            budget.check().await.unwrap(),
            Standing::Over { audited: true }
        );
        let writes = counters.writes();
        for _ in 0..5 {
            assert_eq!(
                budget.check().await.unwrap(),
                Standing::Over { audited: false }
            );
        }
        assert_eq!(counters.writes(), writes, "no write past it");
        let key = refusals_of_source_key("192.0.2.1", window);
        assert_eq!(counters.count(&key).await.unwrap(), 3);
        // Another source, and the next window, have their own budget.
        let other = RefusalBudget::new(&counters, "192.0.2.2", 2, window);
        assert_eq!(other.check().await.unwrap(), Standing::Within);
        let next = Window::at(OffsetDateTime::from_unix_timestamp(660).unwrap());
        let later = RefusalBudget::new(&counters, "192.0.2.1", 2, next);
        assert_eq!(later.check().await.unwrap(), Standing::Within);
    }

    #[tokio::test]
    async fn a_refusal_that_finds_the_budget_spent_is_over_it_and_only_one_is_audited() {
        let counters = Counters::default();
        let window = Window::at(OffsetDateTime::from_unix_timestamp(600).unwrap());
        let budget = RefusalBudget::new(&counters, "192.0.2.1", 1, window);
        // Three parallel requests all passed `check` before any was charged.
        let charged = [
            budget.charge().await.unwrap(),
            budget.charge().await.unwrap(),
            budget.charge().await.unwrap(),
        ];
        assert_eq!(
            charged,
            [
                Standing::Within,
                Standing::Over { audited: true },
                Standing::Over { audited: false }
            ]
        );
    }

    #[tokio::test]
    async fn counted_refusals_keep_their_client_id_and_turn_into_429_past_the_budget() {
        let counters = Counters::default();
        let window = Window::at(OffsetDateTime::from_unix_timestamp(600).unwrap());
        let budget = RefusalBudget::new(&counters, "192.0.2.1", 1, window);
        let refusal = || Refusal::new(OAuthError::InvalidClient, Some("svc".to_owned()));
        assert_eq!(budget.count(refusal()).await, refusal());
        let cut_off = budget.count(refusal()).await;
        assert_eq!(cut_off.answer, Refused::limited(window));
        assert_eq!(cut_off.client_id.as_deref(), Some("svc"));
        assert_eq!(cut_off.audit, Audit::CutOff);
        assert_eq!(budget.count(refusal()).await.audit, Audit::Skip);
        // The service's own failure costs the source nothing.
        let writes = counters.writes();
        let unavailable = Refusal::new(OAuthError::TemporarilyUnavailable, None);
        assert_eq!(budget.count(unavailable.clone()).await, unavailable);
        assert_eq!(counters.writes(), writes);
    }

    #[test]
    fn a_rate_limit_is_recorded_as_rate_limited_and_errors_by_their_code() {
        let window = Window::at(OffsetDateTime::from_unix_timestamp(615).unwrap());
        assert_eq!(
            Refused::limited(window),
            Refused::RateLimited { retry_after: 45 }
        );
        assert_eq!(Refused::limited(window).outcome(), "rate_limited");
        assert_eq!(
            Refused::from(OAuthError::InvalidClient).outcome(),
            "invalid_client"
        );
    }
}
