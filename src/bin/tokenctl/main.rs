//! `tokenctl`: the admin CLI for clients, secrets, signing keys and the audit trail.
//! Every command prints text for people, or with `--json` a stable JSON document for scripts
//! (shapes documented in README). Secrets are printed once, when created; hashes never.

mod args;
mod audit;
mod aws_keys;
mod commands;
mod views;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use token_service::admin::{Admin, AdminError};
use token_service::clock::{Clock, SystemClock};
use token_service::shapes::aws::AwsShape;
use token_service::shapes::embedded::Embedded;

use args::{Backend, Cli, Command, KeysCommand};
use commands::CliResult;
use token_service::config::AwsResourceSettings;

/// The management façade over the deployed stack's resources, acting as the caller's
/// principal (its ARN from STS, so that admin audit records name who did what).
async fn aws_admin(
    names: &AwsResourceSettings,
    config: token_service::config::ServiceConfig,
    clock: Arc<dyn Clock>,
) -> Result<Admin, Box<dyn std::error::Error>> {
    let names = names.validate()?;
    let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let identity = aws_sdk_sts::Client::new(&sdk)
        .get_caller_identity()
        .send()
        .await
        .map_err(|e| {
            format!(
                "cannot identify the AWS caller (check credentials and region): {}",
                aws_sdk_sts::error::DisplayErrorContext(e)
            )
        })?;
    let actor = identity.arn().unwrap_or("unknown").to_owned();
    Ok(AwsShape::new(&sdk, names, config, clock).admin(actor))
}

/// The acting identity recorded in admin audit records: the OS user.
fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| {
            let out = std::process::Command::new("id").arg("-un").output().ok()?;
            let name = String::from_utf8(out.stdout).ok()?.trim().to_owned();
            (!name.is_empty()).then_some(name)
        })
        .unwrap_or_else(|| "unknown".to_owned());
    format!("local:{user}")
}

async fn run(cli: Cli) -> CliResult {
    // On AWS the stack's rotation function changes the keys, with the stack's settings: these
    // commands read no local setting at all.
    if cli.backend == Backend::Aws {
        match &cli.command {
            Command::Keys(KeysCommand::Init { wait }) => {
                return aws_keys::rotate(&cli.aws, cli.json, true, &wait.text).await;
            }
            Command::Keys(KeysCommand::Rotate { wait }) => {
                return aws_keys::rotate(&cli.aws, cli.json, false, &wait.text).await;
            }
            _ => {}
        }
    }
    let config = cli.service.validate(Some("http://127.0.0.1:9000"))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let admin = match cli.backend {
        Backend::Sqlite => Embedded::open(&cli.db, config, clock)?.admin(actor()),
        Backend::Aws => aws_admin(&cli.aws, config, clock).await?,
    };
    match cli.command {
        Command::Clients(cmd) => commands::clients(&admin, cli.json, cmd).await,
        Command::Secrets(cmd) => commands::secrets(&admin, cli.json, cmd).await,
        Command::Keys(cmd) => commands::keys(&admin, cli.json, cmd).await,
        Command::Audit(cmd) => audit::audit(&admin, cli.json, cmd).await,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tokenctl: {e}");
            if e.downcast_ref::<AdminError>().is_some_and(|e| {
                matches!(
                    e,
                    AdminError::Store(token_service::store::StoreError::Conflict(_))
                )
            }) {
                return ExitCode::from(3);
            }
            ExitCode::FAILURE
        }
    }
}
