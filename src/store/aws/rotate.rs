//! Rotating the signing keys from outside the stack (`tokenctl keys rotate`): ask Secrets
//! Manager to run the rotation function (`RotateSecret`), then wait until the new version is
//! `AWSCURRENT`. The function rotates with the stack's own settings (lifetimes, skew,
//! pre-publication); the caller brings none, and writes neither the secret nor the table.

use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::Client as SecretsManager;

use super::protocol::{AWSCURRENT, AWSPENDING};
use super::sdk_error;
use crate::store::StoreError;

/// How often the version stages are read while waiting.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Why a rotation started from outside did not finish.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// Secrets Manager refused to start it, or could not be read while waiting.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Secrets Manager answered `RotateSecret` without the new version's id.
    #[error("RotateSecret on {0} answered without a version id")]
    NoVersion(String),
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

/// Starts a rotation of `secret_id` and waits at most `wait` until it finished; returns the
/// id of the version that is now current.
pub async fn rotate_now(
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
