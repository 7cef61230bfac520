//! The Secrets Manager rotation protocol for the signing-key secret (AWS shape): the four steps
//! `createSecret`, `setSecret`, `testSecret` and `finishSecret`, each idempotent and safe to
//! retry, as Secrets Manager requires of a rotation function.
//!
//! - `createSecret` rotates the current key set at now (a new key, minus keys no longer
//!   published), makes the public-keys table exactly that set's public keys, and then stores
//!   it as version `AWSPENDING` with the new key activating the pre-publication delay after
//!   that publication.
//! - `setSecret` makes the public-keys table exactly the pending set's public keys again (which
//!   keeps every key still published and the new one).
//! - `testSecret` signs with every pending key and verifies against the published JWK, with
//!   the algorithm that JWK names.
//! - `finishSecret` moves `AWSCURRENT` to the pending version, then records on every public key
//!   that its set is current.
//!
//! Until `finishSecret`, the keys the rotation adds are published as pending: they neither sign
//! nor retire the key that signs (`keys::schedule`). A rotation stuck after `createSecret` or
//! `setSecret` therefore never unpublishes the key the token function still signs with; the
//! jwks function reports the age of the oldest pending key (`pending_key_age_seconds`) for
//! the alarm on a rotation that stays pending.
//!
//! The new key has the algorithm of `TOKEN_SIGNING_ALG`; the keys already in the set keep
//! theirs, so a change of the setting rolls out through this same schedule.
//!
//! The first rotation after deployment finds no current value and creates a key that signs at
//! once, so a new stack has a signing key without a manual step.

use std::str::FromStr;
use std::sync::Arc;

use async_trait::async_trait;
use aws_lc_rs::rand::SystemRandom;

use crate::clock::Clock;
use crate::keys::{SigningKeys, KeySet, Schedule, SigningAlg};
use crate::store::{PublicKeyStore, StoreError};

pub use super::{AWSCURRENT, AWSPENDING};

/// A secret with versions and staging labels: what the rotation protocol needs of Secrets
/// Manager.
#[async_trait]
pub trait VersionedSecret: Send + Sync {
    /// Every version id with its staging labels.
    async fn versions(&self) -> Result<Vec<(String, Vec<String>)>, StoreError>;
    /// The value of the version carrying `stage`, if there is one with a value.
    async fn value_at_stage(&self, stage: &str) -> Result<Option<String>, StoreError>;
    /// The value of version `version_id`, if it exists with a value.
    async fn value_of_version(&self, version_id: &str) -> Result<Option<String>, StoreError>;
    /// Stores `value` as version `version_id` labelled `AWSPENDING`.
    async fn put_pending(&self, version_id: &str, value: &str) -> Result<(), StoreError>;
    /// Moves `AWSCURRENT` to `version_id`, from `from` if a version has it.
    async fn promote(&self, version_id: &str, from: Option<&str>) -> Result<(), StoreError>;
    /// Removes the `AWSPENDING` label from `version_id`.
    async fn clear_pending(&self, version_id: &str) -> Result<(), StoreError>;
}

/// One step of the protocol, as named in the rotation event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Create the pending version.
    CreateSecret,
    /// Publish the pending public keys.
    SetSecret,
    /// Check the pending keys sign and verify.
    TestSecret,
    /// Make the pending version current.
    FinishSecret,
}

impl FromStr for Step {
    type Err = RotationError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "createSecret" => Ok(Self::CreateSecret),
            "setSecret" => Ok(Self::SetSecret),
            "testSecret" => Ok(Self::TestSecret),
            "finishSecret" => Ok(Self::FinishSecret),
            other => Err(RotationError::UnknownStep(other.to_owned())),
        }
    }
}

/// Why a rotation step failed. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    /// The event named a step this function does not know.
    #[error("unknown rotation step {0:?}")]
    UnknownStep(String),
    /// The event named a secret other than the signing-key secret.
    #[error("secret {0:?} is not the signing-key secret; nothing was done")]
    WrongSecret(String),
    /// The token is a version of the secret that is not being rotated in.
    #[error("version {0} is not pending rotation")]
    NotPending(String),
    /// A step after `createSecret` found no pending value.
    #[error("version {0} has no pending key set; createSecret did not run")]
    NoPendingValue(String),
    /// A stored key set could not be read or a key could not be made.
    #[error("invalid key set: {0}")]
    KeySet(String),
    /// `testSecret` found a key that does not sign or is not published.
    #[error("test failed for key {kid}: {why}")]
    TestFailed {
        /// The failing key.
        kid: String,
        /// What went wrong.
        why: String,
    },
    /// Secrets Manager or DynamoDB failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RotationError {
    /// A short, stable name of the failure class (the Lambda `errorType`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownStep(_) => "UnknownStep",
            Self::WrongSecret(_) => "WrongSecret",
            Self::NotPending(_) => "NotPending",
            Self::NoPendingValue(_) => "NoPendingValue",
            Self::KeySet(_) => "InvalidKeySet",
            Self::TestFailed { .. } => "TestFailed",
            Self::Store(_) => "StoreError",
        }
    }
}

fn parse_set(text: Option<String>) -> Result<KeySet, RotationError> {
    match text {
        None => Ok(KeySet::default()),
        Some(t) if t.trim().is_empty() => Ok(KeySet::default()),
        Some(t) => KeySet::from_json(&t).map_err(|e| RotationError::KeySet(e.to_string())),
    }
}

/// The rotation function's logic.
pub struct RotationProtocol {
    /// The signing-key secret.
    pub secret: Arc<dyn VersionedSecret>,
    /// The public-keys table the JWKS function reads.
    pub public_keys: Arc<dyn PublicKeyStore>,
    /// Rotation timing.
    pub schedule: Schedule,
    /// The algorithm of the key `createSecret` makes (`TOKEN_SIGNING_ALG`).
    pub alg: SigningAlg,
    /// Time source.
    pub clock: Arc<dyn Clock>,
}

impl RotationProtocol {
    /// Runs one step for the version `token` (the event's `ClientRequestToken`).
    pub async fn run(&self, step: Step, token: &str) -> Result<(), RotationError> {
        let versions = self.secret.versions().await?;
        if let Some((_, stages)) = versions.iter().find(|(id, _)| id == token) {
            let pending = stages.iter().any(|s| s == AWSPENDING);
            // The first value of a secret is labelled current and pending at once; a version
            // that is current and no longer pending has finished its rotation.
            if !pending && stages.iter().any(|s| s == AWSCURRENT) {
                tracing::info!(step = ?step, version = token, "version is already current");
                return Ok(());
            }
            if !pending {
                return Err(RotationError::NotPending(token.to_owned()));
            }
        } else if step != Step::CreateSecret {
            return Err(RotationError::NotPending(token.to_owned()));
        }
        match step {
            Step::CreateSecret => self.create(token).await,
            Step::SetSecret => self.set(token).await,
            Step::TestSecret => self.test(token).await,
            Step::FinishSecret => self.finish(token, &versions).await,
        }
    }

    /// Runs the four steps for version `token` in order, as Secrets Manager does after
    /// `RotateSecret`: for tests and local tools that play Secrets Manager's part.
    pub async fn run_all(&self, token: &str) -> Result<(), RotationError> {
        for step in [
            Step::CreateSecret,
            Step::SetSecret,
            Step::TestSecret,
            Step::FinishSecret,
        ] {
            self.run(step, token).await?;
        }
        Ok(())
    }

    async fn pending(&self, token: &str) -> Result<KeySet, RotationError> {
        match self.secret.value_of_version(token).await? {
            None => Err(RotationError::NoPendingValue(token.to_owned())),
            text => parse_set(text),
        }
    }

    /// Generates the pending set, publishes it, and only then fixes the new key's activation
    /// time, counted from that publication: however late a retried step runs, a key never
    /// signs sooner than the pre-publication delay after it appeared in the JWKS.
    async fn create(&self, token: &str) -> Result<(), RotationError> {
        if self.secret.value_of_version(token).await?.is_some() {
            tracing::info!(version = token, "pending key set exists already");
            return Ok(());
        }
        let current = parse_set(self.secret.value_at_stage(AWSCURRENT).await?)?;
        let key_set = |e: crate::keys::KeyError| RotationError::KeySet(e.to_string());
        let mut next = current
            .rotated_to(self.alg, self.clock.now(), &self.schedule)
            .map_err(key_set)?;
        self.publish(&next, Some(&current)).await?;
        if !current.keys.is_empty() {
            let published_at = self.clock.now();
            let new = next.keys.last_mut().expect("a rotated set has a new key");
            new.activates_at = published_at + self.schedule.prepublication;
            self.publish(&next, Some(&current)).await?;
        }
        self.secret.put_pending(token, &next.to_json()).await?;
        let new = next.keys.last().expect("a rotated set has a new key");
        tracing::info!(
            version = token,
            kid = %new.kid,
            activates_at = %new.activates_at,
            keys = next.keys.len(),
            "created and published pending key set"
        );
        Ok(())
    }

    /// Makes the public-keys table exactly `set`'s public keys; with the `current` set of a
    /// rotation under way, the keys not in it are marked pending.
    async fn publish(&self, set: &KeySet, current: Option<&KeySet>) -> Result<(), RotationError> {
        let mut records = set
            .public_records()
            .map_err(|e| RotationError::KeySet(e.to_string()))?;
        if let Some(current) = current {
            for record in &mut records {
                record.pending = !current.keys.iter().any(|k| k.kid == record.kid);
            }
        }
        Ok(self.public_keys.replace_public_keys(&records).await?)
    }

    /// Publishes the set that has just become current: no key is pending any more, and a key
    /// that became current after its activation time records when (the schedule lets it take
    /// over from then, once every signer has loaded the set). A retry keeps the first stamp.
    async fn confirm(&self, set: &KeySet) -> Result<(), RotationError> {
        let now = self.clock.now();
        let before = self.public_keys.public_keys().await?;
        let mut records = set
            .public_records()
            .map_err(|e| RotationError::KeySet(e.to_string()))?;
        for record in &mut records {
            let earlier = before.iter().find(|r| r.kid == record.kid);
            record.current_since = match earlier {
                Some(r) if !r.pending => r.current_since,
                _ if record.activates_at < now => Some(now),
                _ => None,
            };
        }
        Ok(self.public_keys.replace_public_keys(&records).await?)
    }

    /// Publishes the pending set again (`createSecret` did first): the table may have been
    /// restored or written since, and a retry must leave it exactly the pending set.
    async fn set(&self, token: &str) -> Result<(), RotationError> {
        let pending = self.pending(token).await?;
        let current = parse_set(self.secret.value_at_stage(AWSCURRENT).await?)?;
        self.publish(&pending, Some(&current)).await?;
        tracing::info!(
            version = token,
            keys = pending.keys.len(),
            "published pending public keys"
        );
        Ok(())
    }

    async fn test(&self, token: &str) -> Result<(), RotationError> {
        use jsonwebtoken::{DecodingKey, Validation};
        let pending = self.pending(token).await?;
        let ring = SigningKeys::load(&pending).map_err(|e| RotationError::KeySet(e.to_string()))?;
        let published = self.public_keys.public_keys().await?;
        let rng = SystemRandom::new();
        let exp = self.clock.now().unix_timestamp() + 60;
        let claims = serde_json::json!({"sub": "rotation-test", "exp": exp}).to_string();
        for entry in &pending.keys {
            let fail = |why: String| RotationError::TestFailed {
                kid: entry.kid.clone(),
                why,
            };
            let jwk = published
                .iter()
                .find(|r| r.kid == entry.kid)
                .map(|r| r.jwk.clone())
                .ok_or_else(|| fail("not in the public-keys table".to_owned()))?;
            let signer = ring
                .key(&entry.kid)
                .ok_or_else(|| fail("not in the loaded ring".to_owned()))?;
            let token = signer
                .sign_json(claims.as_bytes(), &rng)
                .map_err(|e| fail(e.to_string()))?;
            // The algorithm a verifier takes from the published JWK must be the key's own.
            if jwk.common.key_algorithm != Some(signer.alg().key_algorithm()) {
                return Err(fail(format!("not published as {}", signer.alg())));
            }
            let key = DecodingKey::from_jwk(&jwk).map_err(|e| fail(e.to_string()))?;
            let mut validation = Validation::new(signer.alg().jwt_algorithm());
            validation.validate_exp = false;
            validation.required_spec_claims.clear();
            jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation)
                .map_err(|e| fail(format!("signature does not verify: {e}")))?;
        }
        tracing::info!(
            version = token,
            keys = pending.keys.len(),
            "pending keys sign and verify"
        );
        Ok(())
    }

    async fn finish(
        &self,
        token: &str,
        versions: &[(String, Vec<String>)],
    ) -> Result<(), RotationError> {
        let current = versions
            .iter()
            .find(|(_, stages)| stages.iter().any(|s| s == AWSCURRENT))
            .map(|(id, _)| id.as_str());
        if current != Some(token) {
            self.secret.promote(token, current).await?;
        }
        // Now current: its keys may take over. Before the pending label goes, so that a retry
        // after a failure here runs this step again.
        let finished = self.pending(token).await?;
        self.confirm(&finished).await?;
        self.secret.clear_pending(token).await?;
        tracing::info!(
            version = token,
            previous = current.unwrap_or("none"),
            "rotation finished"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::tests::{LEAKY, MATERIAL};

    #[test]
    fn a_malformed_key_set_is_reported_without_its_content() {
        for text in LEAKY {
            let err = parse_set(Some((*text).to_owned())).unwrap_err();
            assert_eq!(err.kind(), "InvalidKeySet");
            assert!(!err.to_string().contains(MATERIAL), "{err}");
        }
    }
}
