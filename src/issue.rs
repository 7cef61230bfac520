//! Issuing access tokens: authenticate the client, check scope and resources, sign, audit.
//!
//! Every request that reaches [`TokenService::handle`] leaves exactly one audit record, written
//! before the answer; if that write fails the answer is `temporarily_unavailable` and no token
//! leaves the service.
//!
//! The flow up to that audit write is bounded by [`DECISION_DEADLINE`]: a store or key set that
//! stalls turns into `temporarily_unavailable` (audited like any other answer), never into a
//! request that outlives the HTTP front's own timeout.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use time::OffsetDateTime;

use crate::audit::{self, AuditRecord};
use crate::clients::secret::looks_like_secret;
use crate::clients::{Client, SecretHash, validate_client_id};
use crate::clock::Clock;
use crate::config::ServiceConfig;
use crate::encoding::random_b64url;
use crate::keys::KeyCache;
use crate::oauth::claims::{AccessTokenClaims, Audience};
use crate::oauth::request::{self, RawRequest, Rejection, is_recordable_client_id};
use crate::oauth::scope::ScopeSet;
use crate::oauth::{OAuthError, TokenRequest};
use crate::store::{AuditLog, ClientStore, RateLimits, StoreError};

/// How long a request may wait on the stores and the key set before the answer is decided:
/// authentication, counters and signing. The audit write of the answer comes after it, with
/// its own bound (the SDK's operation timeout on AWS). A deadline that passes while the
/// issue counter is being written may leave that attempt counted, as a refusal would be.
pub const DECISION_DEADLINE: Duration = Duration::from_secs(3);

/// Length of a rate-limit window, seconds.
const WINDOW_SECS: i64 = 60;

/// The fixed one-minute window an instant falls in.
#[derive(Debug, Clone, Copy)]
struct Window {
    start: i64,
    retry_after: u64,
}

impl Window {
    fn at(now: OffsetDateTime) -> Self {
        let ts = now.unix_timestamp();
        let start = ts - ts.rem_euclid(WINDOW_SECS);
        Self {
            start,
            retry_after: (start + WINDOW_SECS - ts).max(1) as u64,
        }
    }

    /// Counters outlive their window a little, then the backend drops them.
    fn expires_at(self) -> i64 {
        self.start + 2 * WINDOW_SECS
    }

    fn limited(self) -> OAuthError {
        OAuthError::RateLimited {
            retry_after: self.retry_after,
        }
    }
}

/// The source a failed authentication is counted against: the address itself, or for IPv6 its
/// /64. One host is routinely given a whole /64 (RFC 4291 §2.5.4 interface identifiers,
/// RFC 8981 temporary addresses) and could otherwise take a fresh address for every attempt.
fn failure_source(ip: &str) -> String {
    match ip.parse::<IpAddr>().map(|a| a.to_canonical()) {
        Ok(IpAddr::V6(v6)) => {
            let network = Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64));
            format!("{network}/64")
        }
        Ok(v4) => v4.to_string(),
        Err(_) => ip.to_owned(),
    }
}

fn counters_unavailable(e: StoreError) -> OAuthError {
    tracing::error!(error = %e, "rate-limit counters unavailable");
    OAuthError::TemporarilyUnavailable
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
        }
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
        let decided = tokio::time::timeout(DECISION_DEADLINE, self.decide(raw, meta, now)).await;
        let decided = decided.unwrap_or_else(|_| {
            tracing::error!(
                request_id = %meta.request_id,
                deadline_ms = DECISION_DEADLINE.as_millis() as u64,
                "token request not decided in time; answering temporarily_unavailable"
            );
            Err(Rejection {
                error: OAuthError::TemporarilyUnavailable,
                client_id: claimed_client_id(raw),
            })
        });
        match decided {
            Ok((token, grant)) => {
                let mut record = self.record(Some(&grant.client_id), audit::ISSUED, meta, now);
                record.jti = Some(grant.jti);
                record.scope = Some(grant.scope);
                record.audience = Some(grant.audience);
                self.write(record).await?;
                Ok(token)
            }
            Err(rejection) => Err(self.reject(rejection, meta).await),
        }
    }

    /// The answer to a request, failed authentications counted, before anything is audited.
    async fn decide(
        &self,
        raw: RawRequest<'_>,
        meta: &RequestMeta,
        now: OffsetDateTime,
    ) -> Result<(IssuedToken, Grant), Rejection> {
        match self.issue(raw, meta, now).await {
            Err(rejection) if rejection.error == OAuthError::InvalidClient => {
                Err(self.count_failure(rejection, meta, now).await)
            }
            other => other,
        }
    }

    /// The failure counter, and its limit, of a source address (`client_id` `None`) or of a
    /// (client id, address) pair.
    fn failure_counter(&self, client_id: Option<&str>, ip: &str, window: Window) -> (String, u32) {
        let limits = self.config.limits;
        match client_id {
            None => (format!("fail-ip#{ip}#{}", window.start), limits.fail_per_ip),
            Some(id) => (
                format!("fail#{id}#{ip}#{}", window.start),
                limits.fail_per_client_ip,
            ),
        }
    }

    /// Counts a failed authentication per source address and per (client id, address), each
    /// checked against its limit and counted in one atomic step. Parallel guesses may all pass
    /// the early [`check_failures`](Self::check_failures) before any is counted; a failure that
    /// finds its counter full is answered `429` instead, so no more of them get
    /// `invalid_client` than the limit allows.
    async fn count_failure(
        &self,
        rejection: Rejection,
        meta: &RequestMeta,
        now: OffsetDateTime,
    ) -> Rejection {
        let window = Window::at(now);
        let ip = failure_source(meta.source_ip.as_deref().unwrap_or("-"));
        let mut counters = vec![self.failure_counter(None, &ip, window)];
        if let Some(id) = &rejection.client_id {
            counters.push(self.failure_counter(Some(id), &ip, window));
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

    /// Refuses the request, before any secret is checked, when its source address (and the
    /// client id it names) failed authentication too often in this window.
    async fn check_failures(
        &self,
        client_id: Option<&str>,
        ip: &str,
        window: Window,
    ) -> Result<(), OAuthError> {
        let (key, limit) = self.failure_counter(client_id, ip, window);
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

    /// Records a request refused before it could be parsed (size, method) or after, and returns
    /// the error to answer with: the original one, or `temporarily_unavailable` if the record
    /// could not be written.
    pub async fn reject(&self, rejection: Rejection, meta: &RequestMeta) -> OAuthError {
        let now = self.clock.now();
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
                tracing::info!(
                    client_id = %record.client_id,
                    outcome = %record.outcome,
                    request_id = %record.request_id,
                    jti = record.jti.as_deref().unwrap_or(""),
                    "token request"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    client_id = %record.client_id,
                    outcome = %record.outcome,
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
        meta: &RequestMeta,
        now: OffsetDateTime,
    ) -> Result<(IssuedToken, Grant), Rejection> {
        let window = Window::at(now);
        let source = failure_source(meta.source_ip.as_deref().unwrap_or("-"));
        let ip = source.as_str();
        self.check_failures(None, ip, window).await?;
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
        let client = authenticate(&request, stored.map_err(reject)?, now).map_err(reject)?;
        let scope = granted_scope(&client, request.scope.as_ref()).map_err(reject)?;
        let audience = granted_audience(&client, request.resources).map_err(reject)?;
        let limit = client
            .rate_limit
            .unwrap_or(self.config.limits.issue_per_client);
        let issue_key = format!("issue#{}#{}", client.client_id, window.start);
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
    validate_client_id(&id).ok().map(|()| id)
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
        Some(c) if matched && c.is_active() => Ok(c),
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
