//! The token flow: read -> authenticate -> check a DPoP proof -> authorize -> limit and sign
//! (at once, a proof's one-time use recorded beside them) -> audit; on DynamoDB three round
//! trips. The rules live beside it, one file per step: the request in
//! [`crate::oauth::request`], the grant rules in [`crate::oauth::grant`] and
//! [`crate::oauth::assertion`], DPoP proofs in [`crate::oauth::dpop`] (the flow's steps that
//! use the stores in `issue/authenticate.rs` and `issue/proof.rs`), windows and counter keys in
//! [`crate::limits`], what a refusal costs its source in [`crate::refusal`], the audit record
//! and its write in [`crate::audit`].
//!
//! Every request that reaches [`TokenService::handle`] or [`TokenService::reject`] leaves
//! exactly one audit record, written before the answer; if that write fails the answer is
//! `temporarily_unavailable` and no token leaves the service. The one exception is a flood
//! past its source's refusal budget ([`crate::refusal`]): answered `429`, counted, not written.
//! Up to that write the flow is bounded by [`DECISION_DEADLINE`]: a stalling store or key set
//! turns into `temporarily_unavailable`, never into a request that outlives the HTTP front.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use time::OffsetDateTime;

pub use crate::audit::RequestContext;
use crate::audit::{self, AuditRecord, TokenFacts};
use crate::clients::Client;
use crate::clock::Clock;
use crate::config::ServiceConfig;
use crate::encoding::random_b64url;
use crate::key_cache::KeyCache;
use crate::limits::{self, Window};
use crate::oauth::claims::Confirmation;
use crate::oauth::dpop::ProofPolicy;
pub use crate::oauth::grant::TokenResponse;
use crate::oauth::nonce::NonceKey;
use crate::oauth::request::{self, RawRequest};
use crate::oauth::{OAuthError, TokenRequest, grant};
use crate::refusal::{Refusal, Refused, SourceLimits, counters_unavailable};
use crate::store::{AssertionReplay, AuditLog, ClientReader, RateLimits};

mod authenticate;
mod proof;
#[cfg(test)]
mod tests;

/// How long a request may wait on the stores and the key set before the answer is decided:
/// authentication, counters and signing. The audit write of the answer comes after it, with
/// its own bound (the SDK's operation timeout on AWS). A deadline that passes while the
/// issue counter is being written may leave that attempt counted, as a refusal would be.
pub const DECISION_DEADLINE: Duration = Duration::from_secs(3);

/// The answer when a store or the key set failed (RFC 6749 §4.1.2.1).
const UNAVAILABLE: OAuthError = OAuthError::TemporarilyUnavailable;

/// An issued token and what its audit record holds.
struct Issued {
    token: TokenResponse,
    client_id: String,
    record: TokenFacts,
    key_age_secs: i64,
}

/// The token endpoint's logic, independent of HTTP.
pub struct TokenService {
    config: Arc<ServiceConfig>,
    clients: Arc<dyn ClientReader>,
    audit: Arc<dyn AuditLog>,
    limits: Arc<dyn RateLimits>,
    keys: Arc<KeyCache>,
    clock: Arc<dyn Clock>,
    rng: SystemRandom,
    /// Used client assertion ids and DPoP proof ids (DESIGN.md "Used ids").
    used_ids: Option<Arc<dyn AssertionReplay>>,
    proof_policy: ProofPolicy,
    nonces: Option<Arc<NonceKey>>,
}

impl TokenService {
    /// A service over the given stores.
    pub fn new(
        config: Arc<ServiceConfig>,
        clients: Arc<dyn ClientReader>,
        audit: Arc<dyn AuditLog>,
        limits: Arc<dyn RateLimits>,
        keys: Arc<KeyCache>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let (rng, used_ids, nonces) = (SystemRandom::new(), None, None);
        let proof_policy = config.proof_policy();
        Self {
            config,
            clients,
            audit,
            limits,
            keys,
            clock,
            rng,
            used_ids,
            proof_policy,
            nonces,
        }
    }

    /// Accepts `private_key_jwt` and DPoP proofs with `replay` as the record of used assertion
    /// and proof ids; without one every client assertion and every proof is refused.
    pub fn with_assertion_replay(mut self, replay: Arc<dyn AssertionReplay>) -> Self {
        self.used_ids = Some(replay);
        self
    }

    /// Makes and checks DPoP nonces with `key` (RFC 9449 §8), when `TOKEN_DPOP_NONCE` requires
    /// them.
    pub fn with_dpop_nonces(mut self, key: Arc<NonceKey>) -> Self {
        self.nonces = Some(key);
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
        meta: &RequestContext,
    ) -> Result<TokenResponse, Refused> {
        let now = self.clock.now();
        let claimed = || request::claimed_client_id(raw);
        let decided = in_time(self.decide(raw, meta, now), meta, claimed).await;
        let issued = match decided {
            Ok(issued) => issued,
            Err(refusal) => return Err(self.answer(refusal, meta, now).await),
        };
        let retention = self.config.audit_retention;
        let record =
            AuditRecord::for_issued(&issued.client_id, issued.record, meta, now, retention);
        let written = audit::record(self.audit.as_ref(), &record).await;
        written.map_err(|_| UNAVAILABLE)?;
        audit::signing_key_age(issued.key_age_secs, now);
        Ok(issued.token)
    }

    /// The answer to a request, every refusal counted, before anything is audited.
    async fn decide(
        &self,
        raw: RawRequest<'_>,
        meta: &RequestContext,
        now: OffsetDateTime,
    ) -> Result<Issued, Refusal> {
        let source = limits::source(meta.source_ip.as_deref());
        let limits = self.source_limits(&source, now);
        // Parsing is pure and cheap: done first, so that all the decision needs from the
        // stores is read at once (the counters while the client record is read). Its answer
        // waits for the source's standing.
        let request = request::parse(raw);
        let claimed = request.as_ref().ok().and_then(|r| r.recordable_client_id());
        let id = claimed.as_deref();
        let (counts, client) = tokio::join!(limits.read(id), self.fetch_client(id));
        let counts = counts?;
        limits.budget.admit(counts.refused).await?;
        let refusal = match (limits.failures_over(&counts, id), request) {
            (Some(refusal), _) => refusal,
            (None, Err(rejection)) => limits.count_failure(rejection.into()).await,
            (None, Ok(request)) => match self.issue(request, client, now).await {
                Ok(issued) => return Ok(issued),
                Err(own @ Refused::RateLimited { .. }) => return Err(Refusal::new(own, claimed)),
                Err(answer) => limits.count_failure(Refusal::new(answer, claimed)).await,
            },
        };
        Err(limits.budget.count(refusal).await)
    }

    /// Authenticate, authorize, then limit and sign together: the steps of a request whose
    /// source is within its limits.
    async fn issue(
        &self,
        request: TokenRequest,
        client: Result<Option<Client>, OAuthError>,
        now: OffsetDateTime,
    ) -> Result<Issued, Refused> {
        let client = self.authenticate(&request, client?, now).await?;
        let proof = self.check_proof(&request, &client, now).await?;
        let (scope, resources) = (request.scope.as_ref(), request.resources.clone());
        let (default_ttl, max_ttl) = (self.config.default_ttl, self.config.max_ttl);
        let grant = grant::authorize(&client, scope, resources, default_ttl, max_ttl)?;
        let jti = random_b64url(16);
        let mut claims = grant::access_token_claims(&self.config.issuer, &client, &grant, now, jti);
        claims.cnf = proof.as_ref().map(|p| Confirmation { jkt: p.jkt.clone() });
        let json = serde_json::to_vec(&claims).map_err(|_| UNAVAILABLE)?;
        // The token is signed while the issue counter's conditional update is in flight: the
        // update is polled first (`biased`), so its request is on its way before signing
        // takes the thread; a DPoP proof's one-time use is recorded beside it. When either
        // refuses, the signed token is dropped right here, never returned nor logged.
        let window = Window::at(now);
        let default_limit = self.config.limits.issue_per_client;
        let limit = client.rate_limit.unwrap_or(default_limit);
        let counters = self.limits.as_ref();
        let (acquired, first_use, signed) = tokio::join!(
            biased;
            limits::acquire_issue(counters, &client.client_id, limit, window),
            self.record_proof(proof.as_ref(), now),
            self.keys.sign(&json, &self.rng, now),
        );
        first_use?;
        if !acquired.map_err(counters_unavailable)? {
            return Err(Refused::limited(window));
        }
        let (access_token, key_age_secs) = signed.map_err(|_| UNAVAILABLE)?;
        Ok(Issued {
            record: TokenFacts::of(&claims, request.credentials.method),
            token: match proof {
                None => TokenResponse::bearer(access_token, grant.lifetime, claims.scope),
                Some(_) => TokenResponse::dpop(access_token, grant.lifetime, claims.scope),
            },
            client_id: claims.client_id,
            key_age_secs,
        })
    }

    /// The limits of a source in the window of `now`.
    fn source_limits<'a>(&'a self, source: &'a str, now: OffsetDateTime) -> SourceLimits<'a> {
        let counters = self.limits.as_ref();
        SourceLimits::new(counters, source, Window::at(now), &self.config.limits)
    }

    /// Records a request the HTTP front turned away before it could be parsed (size, method,
    /// a repeated `Authorization`) with `error`'s code, counted against its source's budget.
    /// `None` when the front's own answer stands; else the answer that replaces it: `429` past
    /// the budget, or `temporarily_unavailable` if the counters or the record failed.
    pub async fn reject(&self, error: OAuthError, meta: &RequestContext) -> Option<Refused> {
        let now = self.clock.now();
        let source = limits::source(meta.source_ip.as_deref());
        let budget = self.source_limits(&source, now).budget;
        let refusal = Refusal::new(error.clone(), None);
        let counted = async {
            budget.judge(budget.check().await)?;
            Err::<Infallible, _>(budget.count(refusal).await)
        };
        let Err(refusal) = in_time(counted, meta, || None).await;
        let answer = self.answer(refusal, meta, now).await;
        (answer != Refused::OAuth(error)).then_some(answer)
    }

    /// Records a refusal unless its source is past the cut-off, and returns the answer: the
    /// refusal's own, or `temporarily_unavailable` if the record could not be written.
    async fn answer(
        &self,
        refusal: Refusal,
        meta: &RequestContext,
        now: OffsetDateTime,
    ) -> Refused {
        if !refusal.is_recorded(meta, self.config.limits.refusal_budget) {
            return refusal.answer;
        }
        let (id, outcome) = (refusal.client_id.as_deref(), refusal.answer.outcome());
        let retention = self.config.audit_retention;
        let record = AuditRecord::for_request(id, outcome, meta, now, retention);
        match audit::record(self.audit.as_ref(), &record).await {
            Ok(()) => refusal.answer,
            Err(_) => UNAVAILABLE.into(),
        }
    }

    /// The client a request names, read fresh from the store (`None` for an id of invalid form).
    async fn fetch_client(&self, client_id: Option<&str>) -> Result<Option<Client>, OAuthError> {
        let Some(id) = client_id else { return Ok(None) };
        self.clients.get_client(id).await.map_err(|e| {
            tracing::error!(error = %e, "client store read failed");
            UNAVAILABLE
        })
    }
}

/// `work`, or `temporarily_unavailable` (with the client id `claimed` names) once
/// [`DECISION_DEADLINE`] has passed.
async fn in_time<T>(
    work: impl Future<Output = Result<T, Refusal>>,
    meta: &RequestContext,
    claimed: impl FnOnce() -> Option<String>,
) -> Result<T, Refusal> {
    let Ok(decided) = tokio::time::timeout(DECISION_DEADLINE, work).await else {
        tracing::error!(
            request_id = %meta.request_id,
            deadline_ms = DECISION_DEADLINE.as_millis() as u64,
            "token request not decided in time; answering temporarily_unavailable"
        );
        return Err(Refusal::new(UNAVAILABLE, claimed()));
    };
    decided
}
