//! [`KeyRotation`] on the AWS shape: ask Secrets Manager to run the rotation function
//! (`RotateSecret`), then wait until the new version is `AWSCURRENT`. The function rotates with
//! the stack's own settings (algorithm, lifetimes, skew, pre-publication); the caller brings
//! none, and writes neither the secret nor the public-keys table.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client as SecretsManager;

use super::SecretsManagerKeyStore;
use super::protocol::{AWSCURRENT, AWSPENDING, RotationProtocol};
use super::sdk_error;
use crate::clock::Clock;
use crate::encoding::random_b64url;
use crate::keys::KeySet;
use crate::store::rotation::{Due, KeyRotation, RotateError, Rotated};
use crate::store::{KeyStore, StoreError};

/// How often the version stages are read while waiting.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Who runs the rotation function's four steps once a rotation is due.
#[derive(Clone)]
pub enum StepsRunner {
    /// Secrets Manager, after `RotateSecret`, invoking the stack's rotate-keys function; the
    /// adapter waits at most this long until the new version is current.
    SecretsManager {
        /// The longest wait.
        wait: Duration,
    },
    /// This process, playing Secrets Manager's part with the function's own code: for an
    /// emulator that cannot invoke a function (moto) in tests and local tools.
    InProcess(Arc<RotationProtocol>),
}

/// [`KeyRotation`] of the key secret through its rotation protocol.
pub struct SecretsManagerRotation {
    sm: SecretsManager,
    keys: SecretsManagerKeyStore,
    secret_id: String,
    steps: StepsRunner,
    clock: Arc<dyn Clock>,
}

impl SecretsManagerRotation {
    /// Rotations of the secret `secret_id` (name or ARN) through `sm`, run by `steps`.
    pub fn new(
        sm: SecretsManager,
        secret_id: impl Into<String>,
        steps: StepsRunner,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let secret_id = secret_id.into();
        Self {
            keys: SecretsManagerKeyStore::new(sm.clone(), secret_id.clone()),
            sm,
            secret_id,
            steps,
            clock,
        }
    }
}

#[async_trait]
impl KeyRotation for SecretsManagerRotation {
    async fn current(&self) -> Result<KeySet, StoreError> {
        self.keys.load_key_set().await
    }

    /// `due` is asked once, of the current version: the function, the secret's only writer,
    /// rotates on top of whatever is current when its `createSecret` runs.
    async fn rotate_when(&self, due: &Due<'_>) -> Result<Option<Rotated>, RotateError> {
        let current = self.keys.load_key_set().await?;
        if !due(&current, self.clock.now()) {
            return Ok(None);
        }
        let version = match &self.steps {
            StepsRunner::SecretsManager { wait } => {
                rotate_now(&self.sm, &self.secret_id, *wait).await?
            }
            StepsRunner::InProcess(protocol) => {
                // Secrets Manager's version ids (ClientRequestToken) are 32 to 64 characters.
                let version = random_b64url(24);
                protocol
                    .run_all(&version)
                    .await
                    .map_err(|e| RotateError::Steps(e.to_string()))?;
                version
            }
        };
        Ok(Some(Rotated {
            keys: self.keys.load_key_set().await?,
            version: Some(version),
            written_here: false,
        }))
    }
}

/// Starts a rotation of `secret_id` and waits at most `wait` until it finished; returns the
/// id of the version that is now current.
async fn rotate_now(
    sm: &SecretsManager,
    secret_id: &str,
    wait: Duration,
) -> Result<String, RotateError> {
    let started = sm
        .rotate_secret()
        .secret_id(secret_id)
        .rotate_immediately(true)
        .send()
        .await
        .map_err(|e| sdk_error("RotateSecret", secret_id, e))?;
    let version = started
        .version_id()
        .ok_or_else(|| RotateError::NoVersion(secret_id.to_owned()))?
        .to_owned();
    let deadline = Instant::now() + wait;
    loop {
        let stages = stages_of(sm, secret_id, &version).await?;
        let pending = stages.iter().any(|s| s == AWSPENDING);
        if stages.iter().any(|s| s == AWSCURRENT) && !pending {
            return Ok(version);
        }
        if Instant::now() >= deadline {
            return Err(RotateError::Timeout {
                secret: secret_id.to_owned(),
                version,
                stages,
                waited: wait.as_secs(),
            });
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// The staging labels of `version` (none when Secrets Manager does not list it yet).
async fn stages_of(
    sm: &SecretsManager,
    secret_id: &str,
    version: &str,
) -> Result<Vec<String>, StoreError> {
    let out = sm
        .describe_secret()
        .secret_id(secret_id)
        .send()
        .await
        .map_err(|e| sdk_error("DescribeSecret", secret_id, e))?;
    Ok(out
        .version_ids_to_stages()
        .and_then(|m| m.get(version))
        .cloned()
        .unwrap_or_default())
}
