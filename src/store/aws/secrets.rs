//! [`KeyStore`] on one Secrets Manager secret whose value is the key set's JSON.

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client as SecretsManager;

use super::sdk_error;
use crate::keys::KeySet;
use crate::store::{KeyStore, StoreError};

/// The private key set in a Secrets Manager secret (`SecretString` = [`KeySet::to_json`]).
#[derive(Debug, Clone)]
pub struct SecretsManagerKeyStore {
    sm: SecretsManager,
    secret_id: String,
}

impl SecretsManagerKeyStore {
    /// The store on the secret `secret_id` (name or ARN), through `sm`.
    pub fn new(sm: SecretsManager, secret_id: impl Into<String>) -> Self {
        Self {
            sm,
            secret_id: secret_id.into(),
        }
    }
}

/// Parses the secret's value. serde's messages may quote the text they failed on, so a shape
/// error reports only its position; version and algorithm errors name no key material.
fn parse(text: &str, secret_id: &str) -> Result<KeySet, StoreError> {
    let invalid = |why: String| StoreError::Backend(format!("secret {secret_id}: {why}"));
    if let Err(e) = serde_json::from_str::<KeySet>(text) {
        return Err(invalid(format!(
            "not a key set (JSON line {} column {})",
            e.line(),
            e.column()
        )));
    }
    KeySet::from_json(text).map_err(|e| invalid(e.to_string()))
}

#[async_trait]
impl KeyStore for SecretsManagerKeyStore {
    /// The secret's current value. A secret created without a value (as the template and
    /// [`create_resources`](super::create_resources) create it) holds the empty set.
    ///
    /// Secrets Manager answers `ResourceNotFoundException` both for a secret without a value
    /// and for no secret at all; both read as empty, and a missing secret then fails loudly at
    /// the first rotation.
    async fn load_key_set(&self) -> Result<KeySet, StoreError> {
        let result = self
            .sm
            .get_secret_value()
            .secret_id(&self.secret_id)
            // Named explicitly, though it is the default: the key set is whatever the rotation
            // protocol last labelled current.
            .version_stage(super::protocol::AWSCURRENT)
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Ok(KeySet::default());
            }
            Err(e) => return Err(sdk_error("GetSecretValue", &self.secret_id, e)),
        };
        match out.secret_string() {
            None => Ok(KeySet::default()),
            Some(text) if text.trim().is_empty() => Ok(KeySet::default()),
            Some(text) => parse(text, &self.secret_id),
        }
    }

    /// Refused: the rotation function is the secret's only writer, so that every change runs
    /// the four steps (publish before use, test, then promote). `tokenctl keys rotate` starts
    /// it with `RotateSecret` ([`SecretsManagerRotation`](super::SecretsManagerRotation)).
    async fn replace_key_set(&self, _: &KeySet, _: &KeySet) -> Result<(), StoreError> {
        Err(StoreError::Backend(format!(
            "secret {}: the signing keys change only through its rotation function \
             (RotateSecret, e.g. `tokenctl --backend aws keys rotate`)",
            self.secret_id
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_malformed_value_is_reported_without_its_content() {
        let err = parse(
            r#"{"version":1,"keys":[{"kid":"k","alg":7,"private_key":"MIIsecret"}]}"#,
            "s",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("not a key set"), "{err}");
        assert!(!err.contains("MIIsecret"), "{err}");
        let err = parse(r#"{"version":2,"keys":[]}"#, "s")
            .unwrap_err()
            .to_string();
        assert!(err.contains("version 2"), "{err}");
        assert_eq!(
            parse(&KeySet::default().to_json(), "s").unwrap(),
            KeySet::default()
        );
    }
}
