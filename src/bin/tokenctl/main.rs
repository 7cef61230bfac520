//! `tokenctl`: the admin CLI for clients, secrets, signing keys and the audit trail.
//! Every command prints text for people, or with `--json` a stable JSON document for scripts
//! (shapes documented in README). Secrets are printed once, when created; hashes never.

mod args;
mod audit;
mod commands;
mod views;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use token_service::admin::{Admin, AdminError, parse_duration};
use token_service::clock::{Clock, SystemClock};
use token_service::config::ServiceConfig;
use token_service::shapes::aws::AwsShape;
use token_service::shapes::embedded::Embedded;

use args::{Backend, Cli, Command};
use commands::CliResult;

/// The issuer assumed when none is set: the local server's address.
const LOCAL_ISSUER: &str = "http://127.0.0.1:9000";

/// The management façade over the deployed stack's resources, as every command gets it.
/// Changes are recorded under the caller's principal ARN (from STS `GetCallerIdentity`, which
/// no IAM policy can deny). Key rotations go through the stack's rotation function, which
/// writes the keys with the stack's own settings (CloudTrail records who called
/// `RotateSecret`), so `keys init` and `keys rotate` read none of the local settings but
/// `--wait`, and need no more than the rotation permissions on the secret (docs/aws.md
/// "Rotating keys").
async fn aws_admin(cli: &Cli, clock: Arc<dyn Clock>) -> Result<Admin, Box<dyn std::error::Error>> {
    let names = cli.aws.validate()?;
    let config: ServiceConfig = cli.service.validate(Some(LOCAL_ISSUER))?;
    let mut shape = AwsShape::load(names, config, clock).await;
    if let Some(wait) = cli.command.rotation_wait() {
        let wait = parse_duration(wait)
            .filter(|d| d.is_positive())
            .ok_or("--wait must be a duration such as 120s or 5m")?;
        shape = shape.with_rotation_wait(wait.unsigned_abs());
    }
    let actor = shape.caller_arn().await?;
    Ok(shape.admin(actor))
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

async fn run(mut cli: Cli) -> CliResult {
    cli.service = cli
        .service
        .with_former_variables(|name| std::env::var(name).ok())?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let admin = match cli.backend {
        Backend::Sqlite => {
            let config = cli.service.validate(Some(LOCAL_ISSUER))?;
            Embedded::open(&cli.db, config, clock)?.admin(actor())
        }
        Backend::Aws => aws_admin(&cli, clock).await?,
    };
    let versioned = cli.backend == Backend::Aws;
    match cli.command {
        Command::Clients(cmd) => commands::clients(&admin, cli.json, cmd).await,
        Command::Secrets(cmd) => commands::secrets(&admin, cli.json, cmd).await,
        Command::Keys(cmd) => commands::keys(&admin, cli.json, versioned, cmd).await,
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
