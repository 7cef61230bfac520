//! Stands in for the CloudFormation stack on a local emulator: creates the DynamoDB tables and
//! the Secrets Manager secret that `template.yaml` declares, as `create_resources` does.
//!
//! Reads the same environment as the Lambda functions (`TOKEN_*` table and secret names,
//! `AWS_ENDPOINT_URL` for the emulator). The first signing key then comes from the rotation
//! function, as after a deployment, and clients from `tokenctl --backend aws`
//! (`infra/local-aws.sh` does both).
//!
//! `aws-seed --first-key` also makes the first signing key: it runs the four rotation steps
//! in-process, with the rotate-keys function's code and settings, playing Secrets Manager's
//! part (moto's `RotateSecret` cannot invoke a function). For tools that need a stack with a
//! key and no Lambda runtime, such as `bench/init_time.sh`.

use std::process::ExitCode;
use std::sync::Arc;

use aws_config::BehaviorVersion;
use token_service::clock::SystemClock;
use token_service::config::FunctionEnvironment;
use token_service::encoding::random_b64url;
use token_service::shapes::aws::AwsShape;
use token_service::store::aws::create_resources;

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aws-seed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let first_key = match std::env::args().nth(1).as_deref() {
        None => false,
        Some("--first-key") => true,
        Some(other) => {
            return Err(
                format!("unknown argument {other:?}; usage: aws-seed [--first-key]").into(),
            );
        }
    };
    let (config, resources) = FunctionEnvironment::from_env().config()?;
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    create_resources(&sdk, &resources).await?;
    eprintln!("aws-seed: tables and secret are there");
    if first_key {
        let shape = AwsShape::new(&sdk, resources, config, Arc::new(SystemClock));
        let rotation = shape.rotation_protocol();
        // Secrets Manager's version ids (ClientRequestToken) are 32 to 64 characters.
        rotation.run_all(&random_b64url(24)).await?;
        eprintln!("aws-seed: the first rotation made the signing key");
    }
    Ok(())
}
