//! One invocation: the event's step for the event's secret version, with errors the runtime
//! reports by type.

use aws_lambda_events::event::secretsmanager::SecretsManagerSecretRotationEvent;
use lambda_http::lambda_runtime::{Diagnostic, LambdaEvent};
use token_service::shapes::aws::{RotationError, RotationProtocol, Step};

/// A failed step, as the Lambda runtime reports it: `errorType` is the failure class.
#[derive(Debug)]
pub struct StepFailed(pub RotationError);

impl From<StepFailed> for Diagnostic {
    fn from(StepFailed(e): StepFailed) -> Self {
        Diagnostic {
            error_type: e.kind().to_owned(),
            error_message: e.to_string(),
        }
    }
}

/// Whether the event's `SecretId` (Secrets Manager sends the secret's ARN) is the key secret
/// `configured` by ARN or by name. The ARN of a secret named `n` ends in `:secret:n-` and six
/// random characters; secret names hold no `:`.
pub fn is_key_secret(event_secret_id: &str, configured: &str) -> bool {
    if event_secret_id == configured {
        return true;
    }
    if configured.starts_with("arn:") || !event_secret_id.starts_with("arn:") {
        return false;
    }
    event_secret_id
        .rsplit_once(":secret:")
        .and_then(|(_, name)| name.strip_prefix(configured)?.strip_prefix('-'))
        .is_some_and(|suffix| {
            suffix.len() == 6 && suffix.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// Runs the step named by the event, for the key secret `key_secret_id` only: an event for
/// any other secret fails before anything is read or written (whoever may invoke the function
/// must not make it rotate, or publish keys from, a secret of their choosing).
pub async fn handle(
    rotation: &RotationProtocol,
    key_secret_id: &str,
    event: LambdaEvent<SecretsManagerSecretRotationEvent>,
) -> Result<(), StepFailed> {
    let e = event.payload;
    if !is_key_secret(&e.secret_id, key_secret_id) {
        let err = RotationError::WrongSecret(e.secret_id.clone());
        tracing::error!(secret = %e.secret_id, error = %err, "rotation event refused");
        return Err(StepFailed(err));
    }
    let step: Step = e.step.parse().map_err(StepFailed)?;
    tracing::info!(
        step = %e.step,
        secret = %e.secret_id,
        version = %e.client_request_token,
        request_id = %event.context.request_id,
        "rotation step"
    );
    rotation
        .run(step, &e.client_request_token)
        .await
        .map_err(|err| {
            tracing::error!(step = %e.step, error = %err, "rotation step failed");
            StepFailed(err)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use lambda_http::Context;
    use token_service::clock::SystemClock;
    use token_service::config::ServiceConfig;
    use token_service::store::sqlite::SqliteStore;

    /// The secret the fixture events name.
    const KEY_SECRET: &str =
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:token-service/signing-keys-AbCdEf";

    fn event(name: &str) -> SecretsManagerSecretRotationEvent {
        let text = match name {
            "create" => include_str!("../tests/fixtures/rotation-create-secret.json"),
            _ => include_str!("../tests/fixtures/rotation-unknown-step.json"),
        };
        serde_json::from_str(text).expect("a rotation event")
    }

    /// A rotation whose secret store refuses everything: enough to see how steps are read.
    fn rotation() -> (RotationProtocol, doubles::Dir) {
        let dir = doubles::Dir::new();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        (
            RotationProtocol {
                secret: Arc::new(doubles::NoVersions),
                public_keys: store,
                schedule: ServiceConfig::for_tests().schedule,
                alg: ServiceConfig::for_tests().signing_alg,
                clock: Arc::new(SystemClock),
            },
            dir,
        )
    }

    #[test]
    fn the_fixture_events_parse_into_rotation_steps() {
        let e = event("create");
        assert_eq!(e.step, "createSecret");
        assert!(e.secret_id.starts_with("arn:aws:secretsmanager:"));
        assert_eq!(e.client_request_token.len(), 36);
        assert_eq!(e.step.parse::<Step>().unwrap(), Step::CreateSecret);
    }

    #[tokio::test]
    async fn an_unknown_step_fails_with_its_own_error_type() {
        let (rotation, _dir) = rotation();
        let err = handle(
            &rotation,
            KEY_SECRET,
            LambdaEvent::new(event("unknown"), Context::default()),
        )
        .await
        .unwrap_err();
        let d = Diagnostic::from(err);
        assert_eq!(d.error_type, "UnknownStep");
        assert!(d.error_message.contains("rotateEverything"));
    }

    #[tokio::test]
    async fn an_event_for_another_secret_fails_without_touching_anything() {
        let rotation = RotationProtocol {
            secret: Arc::new(doubles::Untouchable),
            public_keys: Arc::new(doubles::Untouchable),
            schedule: ServiceConfig::for_tests().schedule,
            alg: ServiceConfig::for_tests().signing_alg,
            clock: Arc::new(SystemClock),
        };
        let mut other = event("create");
        other.secret_id =
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:someone-else-XyZ123".into();
        let err = handle(
            &rotation,
            KEY_SECRET,
            LambdaEvent::new(other, Context::default()),
        )
        .await
        .unwrap_err();
        let d = Diagnostic::from(err);
        assert_eq!(d.error_type, "WrongSecret");
        assert!(
            d.error_message.contains("someone-else"),
            "{}",
            d.error_message
        );
    }

    #[test]
    fn the_key_secret_is_matched_by_arn_or_by_name() {
        let arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:svc/signing-keys-AbCdEf";
        assert!(is_key_secret(arn, arn));
        assert!(is_key_secret(arn, "svc/signing-keys"));
        for other in [
            "svc/signing-key",
            "signing-keys",
            "svc/signing-keys-AbCdEf",
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:svc/signing-keys-AbCdEg",
        ] {
            assert!(!is_key_secret(arn, other), "{other}");
        }
        assert!(!is_key_secret(
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:svc/signing-keys-x-AbCdEf",
            "svc/signing-keys"
        ));
        assert!(!is_key_secret("svc/signing-keys", arn));
    }

    #[tokio::test]
    async fn a_store_failure_is_reported_as_a_store_error() {
        let (rotation, _dir) = rotation();
        let err = handle(
            &rotation,
            KEY_SECRET,
            LambdaEvent::new(event("create"), Context::default()),
        )
        .await
        .unwrap_err();
        assert_eq!(Diagnostic::from(err).error_type, "StoreError");
    }

    /// Test doubles kept out of the function's code.
    mod doubles {
        use async_trait::async_trait;
        use token_service::keys::PublicKeyRecord;
        use token_service::store::aws::protocol::VersionedSecret;
        use token_service::store::{PublicKeyStore, StoreError};

        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!(
                    "rotate-keys-test-{}-{}.db",
                    std::process::id(),
                    token_service::encoding::random_b64url(6)
                ));
                Self(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{}{suffix}", self.0.display()));
                }
            }
        }

        /// Fails the test at the first call of any kind.
        pub struct Untouchable;
        #[async_trait]
        impl VersionedSecret for Untouchable {
            async fn versions(&self) -> Result<Vec<(String, Vec<String>)>, StoreError> {
                panic!("the secret was read")
            }
            async fn value_at_stage(&self, _: &str) -> Result<Option<String>, StoreError> {
                panic!("the secret was read")
            }
            async fn value_of_version(&self, _: &str) -> Result<Option<String>, StoreError> {
                panic!("the secret was read")
            }
            async fn put_pending(&self, _: &str, _: &str) -> Result<(), StoreError> {
                panic!("the secret was written")
            }
            async fn promote(&self, _: &str, _: Option<&str>) -> Result<(), StoreError> {
                panic!("the secret was written")
            }
            async fn clear_pending(&self, _: &str) -> Result<(), StoreError> {
                panic!("the secret was written")
            }
        }
        #[async_trait]
        impl PublicKeyStore for Untouchable {
            async fn public_keys(&self) -> Result<Vec<PublicKeyRecord>, StoreError> {
                panic!("the public keys were read")
            }
            async fn replace_public_keys(&self, _: &[PublicKeyRecord]) -> Result<(), StoreError> {
                panic!("the public keys were written")
            }
        }

        pub struct NoVersions;
        #[async_trait]
        impl VersionedSecret for NoVersions {
            async fn versions(&self) -> Result<Vec<(String, Vec<String>)>, StoreError> {
                Err(StoreError::Backend("secrets manager unreachable".into()))
            }
            async fn value_at_stage(&self, _: &str) -> Result<Option<String>, StoreError> {
                unreachable!()
            }
            async fn value_of_version(&self, _: &str) -> Result<Option<String>, StoreError> {
                unreachable!()
            }
            async fn put_pending(&self, _: &str, _: &str) -> Result<(), StoreError> {
                unreachable!()
            }
            async fn promote(&self, _: &str, _: Option<&str>) -> Result<(), StoreError> {
                unreachable!()
            }
            async fn clear_pending(&self, _: &str) -> Result<(), StoreError> {
                unreachable!()
            }
        }
    }
}
