//! The rotate-keys Lambda function: Secrets Manager invokes it with each step of the rotation
//! protocol for the signing-key secret (`token_service::keys::rotation`).

mod handler;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use aws_config::BehaviorVersion;
use lambda_http::lambda_runtime::{self, service_fn};
use token_service::clock::SystemClock;
use token_service::keys::rotation::KeyRotation;
use token_service::lambda;
use token_service::store::aws::{DynamoDbPublicKeyStore, SecretsManagerVersions};

#[tokio::main]
async fn main() -> ExitCode {
    let started = Instant::now();
    lambda::init_tracing();
    let (config, resources) = match lambda::config_from_env() {
        Ok(loaded) => loaded,
        Err(e) => {
            tracing::error!(error = %e, "rotate-keys function not started; fix its environment");
            return ExitCode::FAILURE;
        }
    };
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let rotation = Arc::new(KeyRotation {
        secret: Arc::new(SecretsManagerVersions::new(
            secrets,
            resources.key_secret_id,
        )),
        public_keys: Arc::new(DynamoDbPublicKeyStore::new(
            dynamodb,
            resources.public_keys_table,
        )),
        schedule: config.schedule,
        clock: Arc::new(SystemClock),
    });
    tracing::info!(
        init_ms = started.elapsed().as_millis() as u64,
        "rotate-keys function initialised"
    );
    let run = lambda_runtime::run(service_fn(move |event| {
        let rotation = rotation.clone();
        async move { handler::handle(&rotation, event).await }
    }));
    match run.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "Lambda runtime stopped");
            ExitCode::FAILURE
        }
    }
}
