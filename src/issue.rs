//! Issuing access tokens: authenticate the client, check scope and resources, sign, audit.
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

use crate::audit::{self, AuditRecord};
use crate::clients::secret::looks_like_secret;
use crate::clients::{Client, ClientAuthMethod, SecretHash};
use crate::clock::Clock;
use crate::config::ServiceConfig;
use crate::encoding::random_b64url;
use crate::keys::KeyCache;
use crate::keys::schedule::KeyTimes as _;
use crate::limits::{self, RefusalBudget, Standing, Window};
use crate::oauth::assertion::{self, AssertionPolicy};
use crate::oauth::claims::{AccessTokenClaims, Audience};
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

/// Where a request came from, as the HTTP front knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestMeta {
    /// The request id (API Gateway's, or generated).
    pub request_id: String,
    /// The source address.
    pub source_ip: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
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

/// What an issued token is recorded with.
struct Grant {
    client_id: String,
    jti: String,
    scope: String,
    audience: String,
    /// Seconds since the signing key was created: a stalled rotation shows as a growing age.
    key_age_secs: i64,
    method: AuthMethod,
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

    /// Authenticates by the method the request used: a secret, or a client assertion.
    async fn authenticate(
        &self,
        request: &TokenRequest,
        client: Option<Client>,
        now: OffsetDateTime,
    ) -> Result<Client, OAuthError> {
        if request.credentials.method != AuthMethod::PrivateKeyJwt {
            return authenticate(request, client, now);
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
            Ok((token, grant)) => {
                let mut record = self.record(Some(&grant.client_id), audit::ISSUED, meta, now);
                record.jti = Some(grant.jti);
                record.scope = Some(grant.scope);
                record.audience = Some(grant.audience);
                // For a token request, `fields` names the authentication method that succeeded.
                record.fields = vec![grant.method.as_str().to_owned()];
                self.write(record).await?;
                // A histogram, not a gauge: it reaches the metrics document of this request
                // only, next to the `issued` count (same dimensions, no extra document).
                metrics::histogram!("signing_key_age_seconds", "outcome" => audit::ISSUED)
                    .record(grant.key_age_secs as f64);
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
    ) -> Result<(IssuedToken, Grant), Refusal> {
        let window = Window::at(now);
        let source = limits::source(meta.source_ip.as_deref());
        let budget = self.budget(&source, window);
        // Both per-source counters are read at once: one round trip on DynamoDB.
        let (standing, failures) = tokio::join!(
            self.check_budget(&budget),
            self.check_failures(None, &source, window)
        );
        standing?;
        let issued = match failures {
            Ok(()) => self.issue(raw, &source, now).await,
            Err(error) => Err(error.into()),
        };
        let rejection = match issued {
            Ok(issued) => return Ok(issued),
            Err(r) if r.error == OAuthError::InvalidClient => {
                self.count_failure(r, &source, window).await
            }
            Err(r) => r,
        };
        Err(self.charge(rejection, &budget).await)
    }

    /// The refusal budget of a source in a window.
    fn budget<'a>(&'a self, source: &str, window: Window) -> RefusalBudget<'a> {
        let per_source = self.config.limits.refusals_per_ip;
        RefusalBudget::new(self.limits.as_ref(), source, per_source, window)
    }

    /// Refuses a request whose source is over its refusal budget, before the request is read.
    async fn check_budget(&self, budget: &RefusalBudget<'_>) -> Result<(), Refusal> {
        match budget.check().await {
            Ok(Standing::Within) => Ok(()),
            Ok(Standing::Over { audited }) => Err(Refusal::over_budget(
                Rejection::from(budget.limited()),
                audited,
            )),
            Err(e) => Err(Rejection::from(counters_unavailable(e)).into()),
        }
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

    /// The failure counter, and its limit, of a source (`client_id` `None`) or of a
    /// (client id, source) pair.
    fn failure_counter(
        &self,
        client_id: Option<&str>,
        source: &str,
        window: Window,
    ) -> (String, u32) {
        let configured = self.config.limits;
        match client_id {
            None => (
                limits::failures_of_source_key(source, window),
                configured.fail_per_ip,
            ),
            Some(id) => (
                limits::failures_of_client_key(id, source, window),
                configured.fail_per_client_ip,
            ),
        }
    }

    /// Counts a failed authentication per source and per (client id, source), each checked
    /// against its limit and counted in one atomic step. Parallel guesses may all pass the
    /// early [`check_failures`](Self::check_failures) before any is counted; a failure that
    /// finds its counter full is answered `429` instead, so no more of them get
    /// `invalid_client` than the limit allows.
    async fn count_failure(&self, rejection: Rejection, source: &str, window: Window) -> Rejection {
        let mut counters = vec![self.failure_counter(None, source, window)];
        if let Some(id) = &rejection.client_id {
            counters.push(self.failure_counter(Some(id), source, window));
        }
        for (key, limit) in counters {
            let error = match self.limits.acquire(&key, limit, window.expires_at()).await {
                Ok(true) => continue,
                Ok(false) => window.limited(),
                Err(e) => counters_unavailable(e),
            };
            return Rejection { error, ..rejection };
        }
        rejection
    }

    /// Refuses the request, before any secret is checked, when its source (and the client id
    /// it names) failed authentication too often in this window.
    async fn check_failures(
        &self,
        client_id: Option<&str>,
        source: &str,
        window: Window,
    ) -> Result<(), OAuthError> {
        let (key, limit) = self.failure_counter(client_id, source, window);
        let count = self
            .limits
            .count(&key)
            .await
            .map_err(counters_unavailable)?;
        if count >= u64::from(limit) {
            return Err(window.limited());
        }
        Ok(())
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
        let record = self.record(
            rejection.client_id.as_deref(),
            rejection.error.outcome(),
            meta,
            now,
        );
        match self.write(record).await {
            Ok(()) => rejection.error,
            Err(e) => e,
        }
    }

    fn record(
        &self,
        client_id: Option<&str>,
        outcome: &str,
        meta: &RequestMeta,
        now: OffsetDateTime,
    ) -> AuditRecord {
        // A secret sent as the client id is never recorded, whichever path got it here.
        let client_id = client_id.filter(|id| !looks_like_secret(id));
        AuditRecord {
            client_id: client_id.unwrap_or(audit::NO_CLIENT).to_owned(),
            timestamp: now,
            request_id: meta.request_id.clone(),
            outcome: outcome.to_owned(),
            jti: None,
            scope: None,
            audience: None,
            source_ip: meta.source_ip.clone(),
            user_agent: meta.user_agent.as_deref().map(audit::clean_user_agent),
            actor: None,
            action: None,
            fields: Vec::new(),
            expires_at: (now + self.config.audit_retention).unix_timestamp(),
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

    async fn issue(
        &self,
        raw: RawRequest<'_>,
        source: &str,
        now: OffsetDateTime,
    ) -> Result<(IssuedToken, Grant), Rejection> {
        let window = Window::at(now);
        let ip = source;
        let request = request::parse(raw)?;
        let client_id = request.credentials.client_id.clone();
        let claimed = is_recordable_client_id(&client_id).then(|| client_id.clone());
        let reject = |error: OAuthError| Rejection {
            error,
            client_id: claimed.clone(),
        };
        // The client record is fetched while the (client, address) failure count is read: one
        // round trip instead of two on DynamoDB. The secret is only checked after both.
        let (failures, stored) = tokio::join!(
            async {
                match &claimed {
                    Some(id) => self.check_failures(Some(id), ip, window).await,
                    None => Ok(()),
                }
            },
            self.fetch_client(claimed.as_deref()),
        );
        failures.map_err(reject)?;
        let client = self
            .authenticate(&request, stored.map_err(reject)?, now)
            .await
            .map_err(reject)?;
        let scope = granted_scope(&client, request.scope.as_ref()).map_err(reject)?;
        let audience = granted_audience(&client, request.resources).map_err(reject)?;
        let limit = client
            .rate_limit
            .unwrap_or(self.config.limits.issue_per_client);
        let issue_key = limits::issue_key(&client.client_id, window);
        let acquired = self
            .limits
            .acquire(&issue_key, limit, window.expires_at())
            .await
            .map_err(|e| reject(counters_unavailable(e)))?;
        if !acquired {
            return Err(reject(window.limited()));
        }
        let ttl = client
            .token_ttl
            .unwrap_or(self.config.default_ttl)
            .min(self.config.max_ttl);
        let signer = self.keys.signer().await.map_err(|e| {
            tracing::error!(error = %e, "no signing key available");
            reject(OAuthError::TemporarilyUnavailable)
        })?;
        let iat = now.unix_timestamp();
        let claims = AccessTokenClaims {
            iss: self.config.issuer.clone(),
            sub: client.client_id.clone(),
            client_id: client.client_id.clone(),
            aud: audience,
            iat,
            nbf: iat,
            exp: iat + ttl as i64,
            jti: random_b64url(16),
            scope: scope.to_scope_string(),
        };
        let json =
            serde_json::to_vec(&claims).map_err(|_| reject(OAuthError::TemporarilyUnavailable))?;
        let access_token = signer.sign_json(&json, &self.rng).map_err(|e| {
            tracing::error!(error = %e, kid = signer.kid(), "signing failed");
            reject(OAuthError::TemporarilyUnavailable)
        })?;
        let grant = Grant {
            client_id: client.client_id,
            jti: claims.jti,
            scope: claims.scope.clone(),
            audience: claims.aud.joined(),
            key_age_secs: (now - signer.created_at()).whole_seconds(),
            method: request.credentials.method,
        };
        Ok((
            IssuedToken {
                access_token,
                token_type: "Bearer",
                expires_in: ttl,
                scope: claims.scope,
            },
            grant,
        ))
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

/// The well-formed client id a request names, for the audit record of a request that ran out
/// of time before its own flow read it.
fn claimed_client_id(raw: RawRequest<'_>) -> Option<String> {
    let id = request::parse(raw).ok()?.credentials.client_id;
    is_recordable_client_id(&id).then_some(id)
}

/// Client authentication (RFC 6749 §2.3.1): the same answer and about the same work for an
/// unknown client, a wrong or expired secret and a disabled client.
fn authenticate(
    request: &TokenRequest,
    client: Option<Client>,
    now: OffsetDateTime,
) -> Result<Client, OAuthError> {
    let presented = SecretHash::of(&request.credentials.secret);
    let matched = match &client {
        Some(c) => c.secrets.iter().fold(false, |found, s| {
            // No short-circuit: every stored secret is compared.
            found | (s.hash.matches(&presented) & s.is_live(now))
        }),
        None => {
            let _ = SecretHash::decoy().matches(&presented);
            false
        }
    };
    match client {
        Some(c) if matched && c.is_active() && c.auth_method == ClientAuthMethod::ClientSecret => {
            Ok(c)
        }
        _ => Err(OAuthError::InvalidClient),
    }
}

/// The scope to grant (RFC 6749 §3.3): the requested scopes if all are allowed, else
/// `invalid_scope` (never silently narrowed); the client's defaults when none is requested.
fn granted_scope(client: &Client, requested: Option<&ScopeSet>) -> Result<ScopeSet, OAuthError> {
    let scope = match requested {
        Some(s) => s.clone(),
        None => ScopeSet::from_tokens(&client.default_scopes),
    };
    if scope.is_empty() {
        return Err(OAuthError::InvalidScope(
            "no scope was requested and the client has no default scope",
        ));
    }
    if !scope.is_subset_of(&client.scopes) {
        return Err(OAuthError::InvalidScope(
            "a requested scope is not allowed for this client",
        ));
    }
    Ok(scope)
}

/// The audience to grant (RFC 8707 §2): the requested resources if all are allowed, else
/// `invalid_target`; the client's default audience when none is requested.
fn granted_audience(client: &Client, resources: Vec<String>) -> Result<Audience, OAuthError> {
    if resources.is_empty() {
        return Ok(Audience::One(client.default_audience.clone()));
    }
    if !resources.iter().all(|r| client.audiences.contains(r)) {
        return Err(OAuthError::InvalidTarget(
            "a requested resource is not allowed for this client",
        ));
    }
    Ok(Audience::from_list(resources))
}
