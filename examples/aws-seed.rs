//! Stands in for the CloudFormation stack on a local emulator: creates the DynamoDB tables and
//! the Secrets Manager secret that `template.yaml` declares, as `create_resources` does.
//!
//! Reads the same environment as the Lambda functions (`TOKEN_*` table and secret names,
//! `AWS_ENDPOINT_URL` for the emulator). The first signing key then comes from the rotation
//! function, as after a deployment, and clients from `tokenctl --backend aws`
//! (`infra/local-aws.sh` does both).

use std::process::ExitCode;

use aws_config::BehaviorVersion;
use token_service::lambda;
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
    let (_, resources) = lambda::config_from_env()?;
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    create_resources(&sdk, &resources).await?;
    eprintln!("aws-seed: tables and secret are there");
    Ok(())
}
