//! The token flow: read -> authenticate -> authorize -> limit and sign (at once) -> audit. On
//! DynamoDB that is three round trips: every read together, the issue counter while the token
//! is signed, the audit write. The rules it applies live beside it: the grant rules in
//! [`crate::oauth::grant`], the windows, counter keys and limits in [`crate::limits`], the
//! audit record of a request in [`crate::audit`].
//!
//! Every request that reaches [`TokenService::handle`] or [`TokenService::reject`] leaves
//! exactly one audit record, written before the answer; if that write fails the answer is
//! `temporarily_unavailable` and no token leaves the service. The one exception is a flood:
//! every refused request (each 4xx answer) counts against its source's budget
//! ([`RefusalBudget`], `TOKEN_FAIL_BUDGET_IP` a minute); the first request over it is answered
//! `429` and audited as the cut-off, and the source's further requests in that window are
//! answered `429` after the counter reads, counted in the `token_requests_unaudited` metric and
//! not written. A flood then costs no audit write per request, and the trail still shows when
//! and from where it was cut off.
//!
//! The flow up to that audit write is bounded by [`DECISION_DEADLINE`]: a store or key set that
//! stalls turns into `temporarily_unavailable` (audited like any other answer), never into a
//! request that outlives the HTTP front's own timeout.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use time::OffsetDateTime;

pub use crate::audit::RequestMeta;
use crate::audit::{self, AuditRecord, Issuance};
use crate::clients::Client;
use crate::clock::Clock;
use crate::config::ServiceConfig;
use crate::encoding::random_b64url;
use crate::keys::KeyCache;
use crate::keys::schedule::KeyTimes as _;
use crate::limits::{self, FailureLimits, RefusalBudget, Standing, Window};
use crate::oauth::assertion::{self, AssertionPolicy};
use crate::oauth::claims::AccessTokenClaims;
use crate::oauth::grant::{self, Grant};
use crate::oauth::request::AuthMethod;
use crate::oauth::request::{self, RawRequest, Rejection, is_recordable_client_id};
use crate::oauth::scope::ScopeSet;
use crate::oauth::{OAuthError, TokenRequest};
use crate::store::{AssertionReplay, AuditLog, ClientStore, RateLimits, StoreError};

/// How long a request may wait on the stores and the key set before the answer is decided:
/// authentication, counters and signing. The audit write of the answer comes after it, with
/// its own bound (the SDK's operation timeout on AWS). A deadline that passes while the
/// issue counter is being written may leave that attempt counted, as a refusal would be.
pub const DECISION_DEADLINE: Duration = Duration::from_secs(3);

fn counters_unavailable(e: StoreError) -> OAuthError {
    tracing::error!(error = %e, "rate-limit counters unavailable");
    OAuthError::TemporarilyUnavailable
}

/// Whether a refusal is written to the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Audit {
    /// Recorded, like every request within its source's budget.
    Write,
    /// Recorded: the first `429` of a source over its budget, the cut-off mark.
    CutOff,
    /// Not recorded: a `429` of a source past its cut-off, counted in a metric only.
    Skip,
}

/// A refused request: what is answered and whether it is audited.
struct Refusal {
    rejection: Rejection,
    audit: Audit,
}

impl Refusal {
    fn over_budget(rejection: Rejection, audited: bool) -> Self {
        let audit = if audited { Audit::CutOff } else { Audit::Skip };
        Self { rejection, audit }
    }
}

impl From<Rejection> for Refusal {
    fn from(rejection: Rejection) -> Self {
        Self {
            rejection,
            audit: Audit::Write,
        }
    }
}

/// `work`, or `temporarily_unavailable` (with the client id `claimed` names) once
/// [`DECISION_DEADLINE`] has passed.
async fn in_time<T>(
    work: impl Future<Output = Result<T, Refusal>>,
    meta: &RequestMeta,
    claimed: impl FnOnce() -> Option<String>,
) -> Result<T, Refusal> {
    tokio::time::timeout(DECISION_DEADLINE, work)
        .await
        .unwrap_or_else(|_| {
            tracing::error!(
                request_id = %meta.request_id,
                deadline_ms = DECISION_DEADLINE.as_millis() as u64,
                "token request not decided in time; answering temporarily_unavailable"
            );
            Err(Rejection {
                error: OAuthError::TemporarilyUnavailable,
                client_id: claimed(),
            }
            .into())
        })
}

/// A successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct IssuedToken {
    /// The signed JWT.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Lifetime in seconds.
    pub expires_in: u64,
    /// The granted scope.
    pub scope: String,
}

/// What the decision on a request reads from the stores.
struct Read {
    /// The source's refusal-budget counter.
    refused: u64,
    /// The source's failed authentications.
    source_failures: u64,
    /// The failed authentications of the (client id, source) pair, when the request named a
    /// valid client id.
    client_failures: Option<u64>,
    /// The client the request named (`None` when unknown or not named).
    client: Result<Option<Client>, OAuthError>,
}

/// What an issued token is recorded with.
struct Issued {
    client_id: String,
    record: Issuance,
    /// Seconds since the signing key was created: a stalled rotation shows as a growing age.
    key_age_secs: i64,
}

/// The token endpoint's logic, independent of HTTP.
pub struct TokenService {
    config: Arc<ServiceConfig>,
    clients: Arc<dyn ClientStore>,
    audit: Arc<dyn AuditLog>,
    limits: Arc<dyn RateLimits>,
    keys: Arc<KeyCache>,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
    assertion_ids: Option<Arc<dyn AssertionReplay>>,
}

impl TokenService {
    /// A service over the given stores.
    pub fn new(
        config: Arc<ServiceConfig>,
        clients: Arc<dyn ClientStore>,
        audit: Arc<dyn AuditLog>,
        limits: Arc<dyn RateLimits>,
        keys: Arc<KeyCache>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            config,
            clients,
            audit,
            limits,
            keys,
            clock,
            rng: SystemRandom::new(),
            assertion_ids: None,
        }
    }

    /// Accepts `private_key_jwt` with `replay` as the record of used assertion ids; without
    /// one every client assertion is refused.
    pub fn with_assertion_replay(mut self, replay: Arc<dyn AssertionReplay>) -> Self {
        self.assertion_ids = Some(replay);
        self
    }

    /// The service configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.config
    }

    /// Handles one token request end to end, audit included.
    pub async fn handle(
        &self,
        raw: RawRequest<'_>,
        meta: &RequestMeta,
    ) -> Result<IssuedToken, OAuthError> {
        let now = self.clock.now();
        let decided = in_time(self.decide(raw, meta, now), meta, || claimed_client_id(raw)).await;
        match decided {
            Ok((token, issued)) => {
                let retention = self.config.audit_retention;
                let record =
                    AuditRecord::for_issued(&issued.client_id, issued.record, meta, now, retention);
                self.write(record).await?;
                // A histogram, not a gauge: it reaches the metrics document of this request
                // only, next to the `issued` count (same dimensions, no extra document).
                metrics::histogram!("signing_key_age_seconds", "outcome" => audit::ISSUED)
                    .record(issued.key_age_secs as f64);
                Ok(token)
            }
            Err(refusal) => Err(self.answer(refusal, meta, now).await),
        }
    }

    /// The answer to a request, every refusal counted, before anything is audited.
    async fn decide(
        &self,
        raw: RawRequest<'_>,
        meta: &RequestMeta,
        now: OffsetDateTime,
    ) -> Result<(IssuedToken, Issued), Refusal> {
        let window = Window::at(now);
        let source = limits::source(meta.source_ip.as_deref());
        let budget = self.budget(&source, window);
        let failures = self.failures(&source, window);
        // Parsing is pure and cheap: done first, so that all the decision needs from the
        // stores is read at once. Its answer waits for the source's standing.
        let request = request::parse(raw);
        let claimed = request.as_ref().ok().and_then(recordable_client_id);
        let read = self.read(&budget, &failures, claimed.as_deref()).await?;
        judge_budget(&budget, budget.standing(read.refused).await)?;
        let issued = if failures.is_over(None, read.source_failures) {
            Err(window.limited().into())
        } else {
            self.issue(request, claimed, read, &failures, now).await
        };
        let rejection = match issued {
            Ok(issued) => return Ok(issued),
            Err(r) if r.error == OAuthError::InvalidClient => {
                self.count_failure(r, &failures, window).await
            }
            Err(r) => r,
        };
        Err(self.charge(rejection, &budget).await)
    }

    /// All the decision needs from the stores, in one round trip on DynamoDB (one
    /// `BatchGetItem` of the counters while the client record is read): the source's refusal
    /// budget and failures and, for a request that names a valid client id, the (client id,
    /// source) failures and the client.
    async fn read(
        &self,
        budget: &RefusalBudget<'_>,
        failures: &FailureLimits<'_>,
        claimed: Option<&str>,
    ) -> Result<Read, Refusal> {
        let mut keys = vec![budget.key().to_owned(), failures.key(None)];
        keys.extend(claimed.map(|id| failures.key(Some(id))));
        let (counts, client) = tokio::join!(self.limits.counts(&keys), self.fetch_client(claimed));
        let counts = counts
            .and_then(|counts| match counts.len() == keys.len() {
                true => Ok(counts),
                false => Err(StoreError::Backend("a counter read lost a key".to_owned())),
            })
            .map_err(|e| Refusal::from(Rejection::from(counters_unavailable(e))))?;
        Ok(Read {
            refused: counts[0],
            source_failures: counts[1],
            client_failures: counts.get(2).copied(),
            client,
        })
    }

    /// The token flow of a request whose source is within its limits: authenticate,
    /// authorize, then limit and sign together.
    async fn issue(
        &self,
        request: Result<TokenRequest, Rejection>,
        claimed: Option<String>,
        read: Read,
        failures: &FailureLimits<'_>,
        now: OffsetDateTime,
    ) -> Result<(IssuedToken, Issued), Rejection> {
        let window = Window::at(now);
        let request = request?;
        let reject = |error: OAuthError| Rejection {
            error,
            client_id: claimed.clone(),
        };
        // Too many failures of this client id from this source: refused before any secret is
        // checked.
        if let (Some(id), Some(count)) = (claimed.as_deref(), read.client_failures)
            && failures.is_over(Some(id), count)
        {
            return Err(reject(window.limited()));
        }
        let stored = read.client.map_err(reject)?;
        let client = self
            .authenticate(&request, stored, now)
            .await
            .map_err(reject)?;
        let method = request.credentials.method;
        let grant = self
            .authorize(&client, request.scope.as_ref(), request.resources)
            .map_err(reject)?;
        let claims = grant::access_token_claims(
            &self.config.issuer,
            &client,
            &grant,
            now,
            random_b64url(16),
        );
        // The token is signed while the issue counter's conditional update is in flight: the
        // update is polled first (`biased`), so its request is on its way before signing
        // takes the thread. When the counter refuses, the signed token is dropped right here,
        // never returned nor logged.
        let (acquired, signed) = tokio::join!(
            biased;
            self.acquire_issue(&client, window),
            self.sign(&claims, now),
        );
        acquired.map_err(reject)?;
        let (access_token, key_age_secs) = signed.map_err(reject)?;
        Ok(issued(
            claims,
            grant.lifetime,
            method,
            access_token,
            key_age_secs,
        ))
    }

    /// Authenticates by the method the request used: a secret, or a client assertion.
    async fn authenticate(
        &self,
        request: &TokenRequest,
        client: Option<Client>,
        now: OffsetDateTime,
    ) -> Result<Client, OAuthError> {
        if request.credentials.method != AuthMethod::PrivateKeyJwt {
            return grant::authenticate(&request.credentials.secret, client, now);
        }
        let policy = AssertionPolicy {
            audiences: vec![self.config.token_endpoint(), self.config.issuer.clone()],
            max_lifetime: self.config.assertion_max_lifetime as i64,
            clock_skew: self.config.clock_skew as i64,
        };
        let text = String::from_utf8_lossy(&request.credentials.secret);
        assertion::authenticate(
            &text,
            &request.credentials.client_id,
            client,
            &policy,
            self.assertion_ids.as_deref(),
            now,
        )
        .await
    }

    /// What the client may be granted for what it asked: scope, audience and lifetime.
    fn authorize(
        &self,
        client: &Client,
        scope: Option<&ScopeSet>,
        resources: Vec<String>,
    ) -> Result<Grant, OAuthError> {
        Ok(Grant {
            scope: grant::granted_scope(client, scope)?,
            audience: grant::granted_audience(client, resources)?,
            lifetime: grant::token_lifetime(client, self.config.default_ttl, self.config.max_ttl),
        })
    }

    /// Takes one of the client's tokens of this window (its own limit, else the service's),
    /// in one atomic step: `429` when none is left.
    async fn acquire_issue(&self, client: &Client, window: Window) -> Result<(), OAuthError> {
        let limit = client
            .rate_limit
            .unwrap_or(self.config.limits.issue_per_client);
        let key = limits::issue_key(&client.client_id, window);
        match self.limits.acquire(&key, limit, window.expires_at()).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(window.limited()),
            Err(e) => Err(counters_unavailable(e)),
        }
    }

    /// Signs `claims` with the key the schedule selects at `now` (its `kid` and algorithm in
    /// the header): the one place a token is signed. Returns the token and the key's age in
    /// seconds.
    async fn sign(
        &self,
        claims: &AccessTokenClaims,
        now: OffsetDateTime,
    ) -> Result<(String, i64), OAuthError> {
        let signer = self.keys.signer().await.map_err(|e| {
            tracing::error!(error = %e, "no signing key available");
            OAuthError::TemporarilyUnavailable
        })?;
        let json = serde_json::to_vec(claims).map_err(|_| OAuthError::TemporarilyUnavailable)?;
        let token = signer.sign_json(&json, &self.rng).map_err(|e| {
            tracing::error!(error = %e, kid = signer.kid(), "signing failed");
            OAuthError::TemporarilyUnavailable
        })?;
        Ok((token, (now - signer.created_at()).whole_seconds()))
    }

    /// The refusal budget of a source in a window.
    fn budget<'a>(&'a self, source: &str, window: Window) -> RefusalBudget<'a> {
        let per_source = self.config.limits.refusals_per_ip;
        RefusalBudget::new(self.limits.as_ref(), source, per_source, window)
    }

    /// The failure limits of a source in a window.
    fn failures<'a>(&'a self, source: &'a str, window: Window) -> FailureLimits<'a> {
        let configured = self.config.limits;
        FailureLimits::new(
            self.limits.as_ref(),
            source,
            window,
            configured.fail_per_ip,
            configured.fail_per_client_ip,
        )
    }

    /// Refuses a request whose source is over its refusal budget, before the request is read.
    async fn check_budget(&self, budget: &RefusalBudget<'_>) -> Result<(), Refusal> {
        judge_budget(budget, budget.check().await)
    }

    /// Counts a refusal (any 4xx answer) against its source's budget. A refusal that finds
    /// the budget spent (parallel requests passed [`check_budget`](Self::check_budget)
    /// together) is answered `429` instead.
    async fn charge(&self, rejection: Rejection, budget: &RefusalBudget<'_>) -> Refusal {
        if rejection.error == OAuthError::TemporarilyUnavailable {
            return rejection.into();
        }
        match budget.charge().await {
            Ok(Standing::Within) => rejection.into(),
            Ok(Standing::Over { audited }) => {
                let error = budget.limited();
                Refusal::over_budget(Rejection { error, ..rejection }, audited)
            }
            Err(e) => Rejection {
                error: counters_unavailable(e),
                ..rejection
            }
            .into(),
        }
    }

    /// Counts a failed authentication ([`FailureLimits::record`]); `429` instead when a
    /// counter was full.
    async fn count_failure(
        &self,
        rejection: Rejection,
        failures: &FailureLimits<'_>,
        window: Window,
    ) -> Rejection {
        let error = match failures.record(rejection.client_id.as_deref()).await {
            Ok(true) => return rejection,
            Ok(false) => window.limited(),
            Err(e) => counters_unavailable(e),
        };
        Rejection { error, ..rejection }
    }

    /// Refuses a request the HTTP front turned away before it could be parsed (size, method,
    /// a repeated `Authorization`): counted against its source's budget and recorded like any
    /// other refusal. Returns the error to answer with: the original one, `429` past the
    /// budget, or `temporarily_unavailable` if the counters or the record could not be written.
    pub async fn reject(&self, rejection: Rejection, meta: &RequestMeta) -> OAuthError {
        let now = self.clock.now();
        let source = limits::source(meta.source_ip.as_deref());
        let budget = self.budget(&source, Window::at(now));
        let claimed = rejection.client_id.clone();
        let counted = async {
            self.check_budget(&budget).await?;
            Err::<Infallible, _>(self.charge(rejection, &budget).await)
        };
        let Err(refusal) = in_time(counted, meta, || claimed).await;
        self.answer(refusal, meta, now).await
    }

    /// Records a refusal, unless its source is past the cut-off, and returns the error to
    /// answer with: the refusal's own, or `temporarily_unavailable` if the record could not be
    /// written.
    async fn answer(
        &self,
        refusal: Refusal,
        meta: &RequestMeta,
        now: OffsetDateTime,
    ) -> OAuthError {
        let Refusal { rejection, audit } = refusal;
        match audit {
            Audit::Skip => {
                // Counted, not written: see `RefusalBudget`. The metric carries the volume.
                metrics::counter!("token_requests_unaudited", "outcome" => rejection.error.outcome())
                    .increment(1);
                tracing::debug!(
                    request_id = %meta.request_id,
                    source_ip = meta.source_ip.as_deref().unwrap_or("-"),
                    "refused past the source's budget; not audited"
                );
                return rejection.error;
            }
            Audit::CutOff => tracing::warn!(
                request_id = %meta.request_id,
                source_ip = meta.source_ip.as_deref().unwrap_or("-"),
                budget = self.config.limits.refusals_per_ip,
                "source over its refusal budget; its further refusals this window are not audited"
            ),
            Audit::Write => {}
        }
        let record = AuditRecord::for_request(
            rejection.client_id.as_deref(),
            rejection.error.outcome(),
            meta,
            now,
            self.config.audit_retention,
        );
        match self.write(record).await {
            Ok(()) => rejection.error,
            Err(e) => e,
        }
    }

    async fn write(&self, record: AuditRecord) -> Result<(), OAuthError> {
        match self.audit.append(&record).await {
            Ok(()) => {
                // One counter per outcome: CloudWatch embedded metrics on Lambda (the function
                // installs the recorder), a no-op locally where the log line carries the same.
                metrics::counter!("token_requests", "outcome" => record.outcome.clone())
                    .increment(1);
                // The fields CloudWatch Contributor Insights ranks by (docs/aws.md): client id,
                // outcome and source address. Never a secret or a token.
                tracing::info!(
                    client_id = %record.client_id,
                    outcome = %record.outcome,
                    source_ip = record.source_ip.as_deref().unwrap_or("-"),
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
                    source_ip = record.source_ip.as_deref().unwrap_or("-"),
                    request_id = %record.request_id,
                    error = %e,
                    "audit write failed; answering temporarily_unavailable"
                );
                Err(OAuthError::TemporarilyUnavailable)
            }
        }
    }

    /// The client a request names, read fresh from the store (`None` for an id of invalid form).
    async fn fetch_client(&self, client_id: Option<&str>) -> Result<Option<Client>, OAuthError> {
        let Some(id) = client_id else {
            return Ok(None);
        };
        self.clients.get_client(id).await.map_err(|e| {
            tracing::error!(error = %e, "client store read failed");
            OAuthError::TemporarilyUnavailable
        })
    }
}

/// The answer to a source's standing with its refusal budget: on, or `429` (audited as the
/// cut-off for exactly one request), or `temporarily_unavailable` when it could not be read.
fn judge_budget(
    budget: &RefusalBudget<'_>,
    standing: Result<Standing, StoreError>,
) -> Result<(), Refusal> {
    match standing {
        Ok(Standing::Within) => Ok(()),
        Ok(Standing::Over { audited }) => Err(Refusal::over_budget(
            Rejection::from(budget.limited()),
            audited,
        )),
        Err(e) => Err(Rejection::from(counters_unavailable(e)).into()),
    }
}

/// The response and the audit facts of a signed token.
fn issued(
    claims: AccessTokenClaims,
    lifetime: u64,
    method: AuthMethod,
    access_token: String,
    key_age_secs: i64,
) -> (IssuedToken, Issued) {
    let record = Issuance {
        jti: claims.jti,
        scope: claims.scope.clone(),
        audience: claims.aud.joined(),
        auth_method: method.as_str(),
    };
    let token = IssuedToken {
        access_token,
        token_type: "Bearer",
        expires_in: lifetime,
        scope: claims.scope,
    };
    let issued = Issued {
        client_id: claims.client_id,
        record,
        key_age_secs,
    };
    (token, issued)
}

/// The client id a parsed request names, when it may be recorded and counted.
fn recordable_client_id(request: &TokenRequest) -> Option<String> {
    let id = &request.credentials.client_id;
    is_recordable_client_id(id).then(|| id.clone())
}

/// The well-formed client id a request names, for the audit record of a request that ran out
/// of time before its own flow read it.
fn claimed_client_id(raw: RawRequest<'_>) -> Option<String> {
    recordable_client_id(&request::parse(raw).ok()?)
}
