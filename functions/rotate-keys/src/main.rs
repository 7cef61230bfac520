//! The rotate-keys Lambda function: Secrets Manager invokes it with each step of the rotation
//! protocol for the signing-key secret (`token_service::store::aws::protocol`).

mod handler;

use std::process::ExitCode;
use std::sync::Arc;

use lambda_http::lambda_runtime::{self, service_fn};
use token_service::clock::SystemClock;
use token_service::shapes::lambda;
use token_service::store::aws::protocol::KeyRotation;
use token_service::store::aws::{DynamoDbPublicKeyStore, SecretsManagerVersions};

#[tokio::main]
async fn main() -> ExitCode {
    let Some(s) = lambda::start("rotate-keys").await else {
        return ExitCode::FAILURE;
    };
    let secrets = aws_sdk_secretsmanager::Client::new(&s.sdk);
    let key_secret_id: Arc<str> = s.resources.key_secret_id.as_str().into();
    let dynamodb = aws_sdk_dynamodb::Client::new(&s.sdk);
    let rotation = Arc::new(KeyRotation {
        secret: Arc::new(SecretsManagerVersions::new(
            secrets,
            s.resources.key_secret_id.clone(),
        )),
        public_keys: Arc::new(DynamoDbPublicKeyStore::new(
            dynamodb,
            s.resources.public_keys_table.clone(),
        )),
        schedule: s.config.schedule,
        alg: s.config.signing_alg,
        clock: Arc::new(SystemClock),
    });
    s.initialised();
    lambda::exit(
        lambda_runtime::run(service_fn(move |event| {
            let (rotation, key_secret_id) = (rotation.clone(), key_secret_id.clone());
            async move { handler::handle(&rotation, &key_secret_id, event).await }
        }))
        .await,
    )
}
