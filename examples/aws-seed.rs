//! Seeds the AWS shape: optionally creates the tables and the secret the template would create
//! (for a local emulator), creates the first signing key when there is none, and a client.
//!
//! Reads the same environment as the Lambda functions (`TOKEN_*` table and secret names,
//! `TOKEN_ISSUER`, `AWS_ENDPOINT_URL` for an emulator). Prints `CLIENT_ID=` and
//! `CLIENT_SECRET=` lines on stdout: the secret is shown only then. A stopgap until
//! `tokenctl --backend aws`.

use std::process::ExitCode;
use std::sync::Arc;

use aws_config::BehaviorVersion;
use clap::Parser;
use token_service::admin::NewClient;
use token_service::clock::SystemClock;
use token_service::lambda::{self, AwsShape};
use token_service::store::aws::create_resources;

/// Creates the first signing key and a client in the AWS stores.
#[derive(Debug, Parser)]
#[command(name = "aws-seed")]
struct Args {
    /// Create the DynamoDB tables and the Secrets Manager secret first (emulators only: a
    /// deployed stack has them from the template).
    #[arg(long)]
    create_resources: bool,
    /// The client id to create.
    #[arg(long, default_value = "demo")]
    client_id: String,
    /// A scope the client may request (repeatable).
    #[arg(long = "scope", default_value = "api.read")]
    scopes: Vec<String>,
    /// An audience the client may request (repeatable; the first is the default).
    #[arg(long = "audience", default_value = "https://api.example.com")]
    audiences: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("aws-seed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (config, resources) = lambda::config_from_env()?;
    let sdk = aws_config::load_defaults(BehaviorVersion::latest()).await;
    if args.create_resources {
        create_resources(&sdk, &resources).await?;
        eprintln!("aws-seed: tables and secret are there");
    }
    let shape = AwsShape::new(&sdk, resources, config, Arc::new(SystemClock));
    let admin = shape.admin("aws-seed");
    if admin.ensure_signing_key().await? {
        eprintln!("aws-seed: created the first signing key");
    }
    let (client, secret) = admin
        .create_client(NewClient {
            client_id: Some(args.client_id),
            name: "Seeded client".to_owned(),
            scopes: args.scopes,
            audiences: args.audiences,
            ..Default::default()
        })
        .await?;
    // stdout only, for the caller to keep (the secret is shown once); never a log line.
    println!("CLIENT_ID={}", client.client_id);
    println!("CLIENT_SECRET={}", secret.expose());
    Ok(())
}
