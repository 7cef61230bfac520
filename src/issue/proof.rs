//! The DPoP step of the flow (RFC 9449 §4.3, §5.2, §8): a request's proof checked by
//! [`crate::oauth::dpop`], its nonce, and its `jti`'s one-time use in the used-ids store, the
//! store of client assertion ids, under [`used_ids::dpop_proof`].

use std::sync::Arc;

use time::OffsetDateTime;

use super::{TokenService, UNAVAILABLE};
use crate::clients::Client;
use crate::oauth::dpop::{self, ProofError, VerifiedProof};
use crate::oauth::nonce::NonceKey;
use crate::oauth::{OAuthError, TokenRequest, used_ids};

impl TokenService {
    /// The request's DPoP proof, checked: `None` when there is none and `client` is not bound
    /// to DPoP. Every refusal is `invalid_dpop_proof`, or `use_dpop_nonce` for a proof without
    /// a current nonce when nonces are required.
    pub(super) async fn check_proof(
        &self,
        request: &TokenRequest,
        client: &Client,
        now: OffsetDateTime,
    ) -> Result<Option<VerifiedProof>, OAuthError> {
        let refused = |reason: ProofError| {
            tracing::info!(client_id = %client.client_id, %reason, "DPoP proof refused");
            OAuthError::InvalidDpopProof
        };
        let header = match &request.dpop {
            None if client.dpop_bound => return Err(refused(ProofError::Missing)),
            None => return Ok(None),
            Some(Err(())) => return Err(refused(ProofError::Repeated)),
            Some(Ok(header)) => header,
        };
        let now = now.unix_timestamp();
        let proof = dpop::verify(header, &self.proof_policy, now).map_err(refused)?;
        if self.config.dpop_nonce_required {
            let Some(nonces) = self.nonce_key().await else {
                tracing::error!("DPoP nonces required but no nonce secret is available");
                return Err(UNAVAILABLE);
            };
            if !proof
                .nonce
                .as_deref()
                .is_some_and(|n| nonces.accepts(n, now))
            {
                tracing::info!(client_id = %client.client_id, "DPoP proof without a current nonce");
                return Err(OAuthError::UseDpopNonce);
            }
        }
        Ok(Some(proof))
    }

    /// Records the one-time use of `proof`'s `jti` (RFC 9449 §11.1) until it would be refused
    /// anyway; `invalid_dpop_proof` if it was used before. Nothing to do without a proof.
    pub(super) async fn record_proof(
        &self,
        proof: Option<&VerifiedProof>,
        now: OffsetDateTime,
    ) -> Result<(), OAuthError> {
        let Some(proof) = proof else { return Ok(()) };
        let Some(replay) = &self.used_ids else {
            tracing::error!("no used-ids store configured; refusing DPoP proofs");
            return Err(UNAVAILABLE);
        };
        let key = used_ids::dpop_proof(&proof.jkt, &proof.jti);
        let (until, at) = (proof.remember_until, now.unix_timestamp());
        let first = replay.first_use(&key, until, at).await.map_err(|e| {
            tracing::error!(error = %e, "used-ids store unavailable");
            UNAVAILABLE
        })?;
        if !first {
            tracing::info!(reason = %ProofError::Replayed, "DPoP proof refused");
            return Err(OAuthError::InvalidDpopProof);
        }
        Ok(())
    }

    /// A current DPoP nonce (RFC 9449 §8) when nonces are required: for the `DPoP-Nonce`
    /// header of every answer that may ask for one.
    pub async fn dpop_nonce(&self) -> Option<String> {
        if !self.config.dpop_nonce_required {
            return None;
        }
        let now = self.clock.now().unix_timestamp();
        self.nonce_key().await.map(|key| key.issue(now))
    }

    /// The nonce key: the shape's own, else that of the key set (shared through the secret
    /// that holds the signing keys).
    async fn nonce_key(&self) -> Option<Arc<NonceKey>> {
        match &self.nonces {
            Some(key) => Some(key.clone()),
            None => self.keys.nonce_key().await,
        }
    }
}
