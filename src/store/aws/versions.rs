//! [`VersionedSecret`] on Secrets Manager: versions, staging labels, and moving `AWSCURRENT`.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client as SecretsManager;

use super::protocol::{AWSCURRENT, AWSPENDING, VersionedSecret};
use super::sdk_error;
use crate::store::StoreError;

/// The signing-key secret's versions, for the rotation function.
#[derive(Debug, Clone)]
pub struct SecretsManagerVersions {
    sm: SecretsManager,
    secret_id: String,
}

impl SecretsManagerVersions {
    /// The versions of `secret_id` (name or ARN), through `sm`.
    pub fn new(sm: SecretsManager, secret_id: impl Into<String>) -> Self {
        Self {
            sm,
            secret_id: secret_id.into(),
        }
    }

    async fn value(
        &self,
        stage: Option<&str>,
        version_id: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let result = self
            .sm
            .get_secret_value()
            .secret_id(&self.secret_id)
            .set_version_stage(stage.map(str::to_owned))
            .set_version_id(version_id.map(str::to_owned))
            .send()
            .await;
        match result {
            Ok(out) => Ok(out.secret_string().map(str::to_owned)),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(sdk_error("GetSecretValue", &self.secret_id, e)),
        }
    }
}

#[async_trait]
impl VersionedSecret for SecretsManagerVersions {
    async fn versions(&self) -> Result<Vec<(String, Vec<String>)>, StoreError> {
        let out = self
            .sm
            .describe_secret()
            .secret_id(&self.secret_id)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeSecret", &self.secret_id, e))?;
        Ok(out
            .version_ids_to_stages()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default())
    }

    async fn value_at_stage(&self, stage: &str) -> Result<Option<String>, StoreError> {
        self.value(Some(stage), None).await
    }

    async fn value_of_version(&self, version_id: &str) -> Result<Option<String>, StoreError> {
        self.value(None, Some(version_id)).await
    }

    async fn put_pending(&self, version_id: &str, value: &str) -> Result<(), StoreError> {
        self.sm
            .put_secret_value()
            .secret_id(&self.secret_id)
            .client_request_token(version_id)
            .secret_string(value)
            .version_stages(AWSPENDING)
            .send()
            .await
            .map_err(|e| sdk_error("PutSecretValue", &self.secret_id, e))?;
        Ok(())
    }

    async fn promote(&self, version_id: &str, from: Option<&str>) -> Result<(), StoreError> {
        self.sm
            .update_secret_version_stage()
            .secret_id(&self.secret_id)
            .version_stage(AWSCURRENT)
            .move_to_version_id(version_id)
            .set_remove_from_version_id(from.map(str::to_owned))
            .send()
            .await
            .map_err(|e| sdk_error("UpdateSecretVersionStage", &self.secret_id, e))?;
        Ok(())
    }

    async fn clear_pending(&self, version_id: &str) -> Result<(), StoreError> {
        self.sm
            .update_secret_version_stage()
            .secret_id(&self.secret_id)
            .version_stage(AWSPENDING)
            .remove_from_version_id(version_id)
            .send()
            .await
            .map_err(|e| sdk_error("UpdateSecretVersionStage", &self.secret_id, e))?;
        Ok(())
    }
}
