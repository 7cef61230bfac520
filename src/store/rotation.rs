//! The key-rotation port: the one way the signing-key set changes (DESIGN.md "Keys and
//! rotation"), so that [`Admin::rotate_keys`](crate::admin::Admin::rotate_keys) reads the same
//! on both backends.
//!
//! - [`KeySetSwap`] (embedded shape): this process makes the new key and stores the set with a
//!   compare-and-swap ([`KeyStore::replace_key_set`]), retrying on top of a rotation that won.
//! - `store::aws::SecretsManagerRotation` (AWS shape): Secrets Manager runs the stack's
//!   rotation function (`RotateSecret`), the secret's only writer, and the adapter waits until
//!   the new version is current.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{KeyStore, StoreError};
use crate::clock::Clock;
use crate::keys::{KeyError, KeySet, KeyTiming, Schedule, SigningAlg};

/// Whether a rotation is due for the key set in use at `now`.
pub type Due<'a> = dyn Fn(&KeySet, OffsetDateTime) -> bool + Send + Sync + 'a;

/// Most attempts of one key rotation while other rotations keep changing the set first.
const ROTATION_ATTEMPTS: u32 = 10;

/// Longest pause before another rotation attempt, drawn at random so that two rotations that
/// keep meeting (each generates a key, ~90 ms for RSA-2048, before its compare) fall apart.
const ROTATION_BACKOFF_MS: u64 = 200;

/// A rotation that happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The key set in use once it finished.
    pub keys: KeySet,
    /// The secret version the rotation made current, where the backend versions the set
    /// (Secrets Manager); `None` on SQLite.
    pub version: Option<String>,
    /// Whether this process wrote the new set, so that its caller records the change in the
    /// audit trail; `false` when the backend's own writer did (AWS: the rotation function,
    /// whose `RotateSecret` call CloudTrail records with the caller).
    pub written_here: bool,
}

/// Why a rotation did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// The store refused or failed (`Conflict` after every attempt lost a race).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A key could not be made.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// Secrets Manager answered `RotateSecret` without the new version's id.
    #[error("RotateSecret on {0} answered without a version id")]
    NoVersion(String),
    /// The set records another timing than this process's settings (embedded shape): a
    /// rotation by these settings could drop a key that still verifies live tokens, or make
    /// one sign before every verifier has it.
    #[error(
        "the key set follows the server's timing ({stored}), not these settings' ({own}): \
         run this with the server's settings"
    )]
    OtherTiming {
        /// What the set records.
        stored: KeyTiming,
        /// What this process's settings say.
        own: KeyTiming,
    },
    /// The rotation function's steps failed, run in this process (tests, local tools).
    #[error("the rotation steps failed: {0}")]
    Steps(String),
    /// The new version was not current within the wait.
    #[error(
        "the rotation of {secret} did not finish within {waited}s: version {version} has \
         stages {stages:?}. The rotate-keys function's log says why; the keys in use are \
         unchanged, and the next rotation resumes this one"
    )]
    Timeout {
        /// The secret.
        secret: String,
        /// The version being rotated in.
        version: String,
        /// Its staging labels at the last look.
        stages: Vec<String>,
        /// Seconds waited.
        waited: u64,
    },
}

/// Changes the signing-key set.
#[async_trait]
pub trait KeyRotation: Send + Sync {
    /// The key set in use.
    async fn current(&self) -> Result<KeySet, StoreError>;
    /// Rotates the set now if `due` holds for the set in use (asked again on every attempt,
    /// because the set another rotation stored first may already satisfy it); the rotation
    /// made, or `None` when none was due.
    async fn rotate_when(&self, due: &Due<'_>) -> Result<Option<Rotated>, RotateError>;
}

/// [`KeyRotation`] as a compare-and-swap of the whole set: load, decide, generate and store
/// as one atomic step. The new key has `alg`; `schedule` says which keys are still published.
pub struct KeySetSwap {
    keys: Arc<dyn KeyStore>,
    alg: SigningAlg,
    schedule: Schedule,
    clock: Arc<dyn Clock>,
}

impl KeySetSwap {
    /// Makes the set record this process's timing (the server's settings, at its start), so
    /// that a rotation by other settings is refused. Nothing is written to an empty set (its
    /// first key records the timing) or one that records it already.
    pub async fn record_timing(&self) -> Result<(), StoreError> {
        let own = KeyTiming::from(&self.schedule);
        let recorded = self.swap(|current, _| {
            let unrecorded = !current.keys.is_empty() && current.timing != Some(own);
            Ok::<_, StoreError>(unrecorded.then(|| KeySet {
                timing: Some(own),
                ..current.clone()
            }))
        });
        recorded.await.map(drop)
    }

    /// Loads the set, asks `change` for its successor at the time of the load (`None`: leave
    /// the set as it is) and stores it if the set is still the one loaded; after a conflict
    /// (another writer came first), again from the load, up to [`ROTATION_ATTEMPTS`] times.
    async fn swap<E: From<StoreError>>(
        &self,
        change: impl Fn(&KeySet, OffsetDateTime) -> Result<Option<KeySet>, E>,
    ) -> Result<Option<KeySet>, E> {
        let mut attempt = 1;
        loop {
            let now = self.clock.now();
            let current = self.keys.load_key_set().await?;
            let Some(next) = change(&current, now)? else {
                return Ok(None);
            };
            match self.keys.replace_key_set(&current, &next).await {
                Ok(()) => return Ok(Some(next)),
                Err(StoreError::Conflict(what)) if attempt < ROTATION_ATTEMPTS => {
                    tracing::info!(attempt, "{what} changed meanwhile; reading it again");
                    attempt += 1;
                    tokio::time::sleep(random_backoff()).await;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Rotations of the set in `keys` with the service's signing algorithm and schedule.
    pub fn new(
        keys: Arc<dyn KeyStore>,
        alg: SigningAlg,
        schedule: Schedule,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            keys,
            alg,
            schedule,
            clock,
        }
    }
}

#[async_trait]
impl KeyRotation for KeySetSwap {
    async fn current(&self) -> Result<KeySet, StoreError> {
        self.keys.load_key_set().await
    }

    /// A rotation that lost a race to another reads again and rotates on top of the winner's
    /// set, so no key is lost; after `ROTATION_ATTEMPTS` lost races, `Conflict`.
    async fn rotate_when(&self, due: &Due<'_>) -> Result<Option<Rotated>, RotateError> {
        let own = KeyTiming::from(&self.schedule);
        let next = self.swap(|current, now| {
            if !due(current, now) {
                return Ok(None);
            }
            if let Some(stored) = current.timing.filter(|t| *t != own) {
                return Err(RotateError::OtherTiming { stored, own });
            }
            Ok(Some(current.rotated_to(self.alg, now, &self.schedule)?))
        });
        Ok(next.await?.map(|keys| Rotated {
            keys,
            version: None,
            written_here: true,
        }))
    }
}

/// A random pause below [`ROTATION_BACKOFF_MS`].
fn random_backoff() -> Duration {
    let mut bytes = [0u8; 2];
    // Without randomness the pause is the longest one: still a pause, never a failure.
    let drawn = aws_lc_rs::rand::fill(&mut bytes).map_or(u16::MAX, |()| u16::from_le_bytes(bytes));
    Duration::from_millis(u64::from(drawn) % ROTATION_BACKOFF_MS)
}
