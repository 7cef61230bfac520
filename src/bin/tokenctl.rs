//! `tokenctl`: the admin CLI for clients, secrets, signing keys and the audit trail.
//! Every command prints text for people, or with `--json` a stable JSON document for scripts
//! (shapes documented in README). Secrets are printed once, when created; hashes never.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use time::OffsetDateTime;
use token_service::admin::{Admin, AdminError, ClientUpdate, KeyStatus, NewClient, parse_duration};
use token_service::audit::{AuditQuery, AuditRecord};
use token_service::aws_shape::AwsShape;
use token_service::clients::{Client, ClientStatus, StoredSecret};
use token_service::clock::{Clock, SystemClock};
use token_service::config::ServiceSettings;
use token_service::embedded::Embedded;
use token_service::store::aws::{self, AwsResources};

/// Manage clients, secrets, signing keys and the audit trail of the token service.
#[derive(Debug, Parser)]
#[command(name = "tokenctl", version)]
struct Cli {
    /// Storage backend.
    #[arg(long, env = "TOKEN_BACKEND", value_enum, default_value_t = Backend::Sqlite, global = true)]
    backend: Backend,
    /// SQLite database file (sqlite backend).
    #[arg(
        long,
        env = "TOKEN_DB",
        default_value = ".data/token-service.db",
        global = true
    )]
    db: PathBuf,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(flatten)]
    aws: AwsNames,
    #[command(flatten)]
    service: ServiceSettings,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// The embedded shape's SQLite file.
    Sqlite,
    /// DynamoDB tables and the Secrets Manager secret of a deployed stack (credentials, region
    /// and `AWS_ENDPOINT_URL` from the usual AWS environment and profiles).
    Aws,
}

/// Resource names for the aws backend: the stack outputs.
#[derive(Debug, clap::Args)]
struct AwsNames {
    /// DynamoDB clients table (aws backend).
    #[arg(long, env = "TOKEN_CLIENTS_TABLE", global = true)]
    clients_table: Option<String>,
    /// DynamoDB audit table (aws backend).
    #[arg(long, env = "TOKEN_AUDIT_TABLE", global = true)]
    audit_table: Option<String>,
    /// DynamoDB public-keys table (aws backend).
    #[arg(long, env = "TOKEN_PUBLIC_KEYS_TABLE", global = true)]
    public_keys_table: Option<String>,
    /// DynamoDB rate-limits table (aws backend).
    #[arg(long, env = "TOKEN_RATE_LIMITS_TABLE", global = true)]
    rate_limits_table: Option<String>,
    /// Secrets Manager secret holding the signing keys, name or ARN (aws backend).
    #[arg(long, env = "TOKEN_KEY_SECRET_ID", global = true)]
    key_secret_id: Option<String>,
}

impl AwsNames {
    fn resources(&self) -> Result<AwsResources, token_service::config::ConfigError> {
        AwsResources::from_lookup(|var| {
            match var {
                aws::CLIENTS_TABLE_VAR => &self.clients_table,
                aws::AUDIT_TABLE_VAR => &self.audit_table,
                aws::PUBLIC_KEYS_TABLE_VAR => &self.public_keys_table,
                aws::RATE_LIMITS_TABLE_VAR => &self.rate_limits_table,
                aws::KEY_SECRET_ID_VAR => &self.key_secret_id,
                _ => &None,
            }
            .clone()
        })
    }
}

/// The management façade over the deployed stack's resources, acting as the caller's
/// principal (its ARN from STS, so that admin audit records name who did what).
async fn aws_admin(
    names: &AwsNames,
    config: token_service::config::ServiceConfig,
    clock: Arc<dyn Clock>,
) -> Result<Admin, Box<dyn std::error::Error>> {
    let names = names.resources()?;
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

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, inspect, disable and enable clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Add and revoke client secrets.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Create the first signing key, rotate and list keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Show the audit trail, newest first.
    Audit(AuditArgs),
}

#[derive(Debug, Subcommand)]
enum ClientsCommand {
    /// Create a client; prints its id and its first secret (shown once).
    Create {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Client id (printable ASCII, no spaces); generated when omitted.
        #[arg(long)]
        id: Option<String>,
        /// Allowed scope (repeat, or space-separated).
        #[arg(long = "scope", required = true, num_args = 1..)]
        scopes: Vec<String>,
        /// Scope granted when a request names none (repeat); default: every allowed scope.
        #[arg(long = "default-scope", num_args = 1..)]
        default_scopes: Option<Vec<String>>,
        /// Allowed audience, an absolute URI (repeat).
        #[arg(long = "audience", required = true, num_args = 1..)]
        audiences: Vec<String>,
        /// Audience when a request names no resource; default: the first audience.
        #[arg(long)]
        default_audience: Option<String>,
        /// Token lifetime in seconds (capped by the service maximum).
        #[arg(long)]
        ttl: Option<u64>,
        /// Tokens per minute for this client (default: the service's TOKEN_RATE_LIMIT).
        #[arg(long)]
        rate_limit: Option<u32>,
    },
    /// Change a client's scopes, audiences, token lifetime or issuance limit.
    Update {
        /// Client id.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        /// New display name.
        #[arg(long)]
        name: Option<String>,
        /// New allowed scopes (replaces the list; repeat, or space-separated).
        #[arg(long = "scope", num_args = 1..)]
        scopes: Option<Vec<String>>,
        /// New default scopes (replaces the list).
        #[arg(long = "default-scope", num_args = 1..)]
        default_scopes: Option<Vec<String>>,
        /// New allowed audiences (replaces the list).
        #[arg(long = "audience", num_args = 1..)]
        audiences: Option<Vec<String>>,
        /// New default audience.
        #[arg(long)]
        default_audience: Option<String>,
        /// New token lifetime in seconds, or `default`.
        #[arg(long)]
        ttl: Option<String>,
        /// New tokens-per-minute limit, or `default`.
        #[arg(long)]
        rate_limit: Option<String>,
    },
    /// Delete a client (its audit trail stays).
    Delete {
        /// Client id.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    /// Count a client's issued, failed and rate-limited requests in a period.
    Stats {
        /// Client id.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        /// The period, ending now (e.g. 15m, 24h, 7d).
        #[arg(long, default_value = "24h")]
        since: String,
    },
    /// List clients.
    List,
    /// Show one client.
    Show {
        /// Client id.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    /// Disable a client: its next token request fails.
    Disable {
        /// Client id.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
    /// Enable a disabled client.
    Enable {
        /// Client id.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum SecretsCommand {
    /// Add a secret to a client; prints it once.
    Add {
        /// Client id.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        /// Expire the new secret after this long (e.g. 30d, 12h).
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// Add a new secret and let the current ones expire after a grace period.
    Rotate {
        /// Client id.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        /// How long the current secrets keep working (e.g. 24h; 0 cuts them off now).
        #[arg(long, default_value = "24h")]
        grace: String,
    },
    /// Revoke one secret at once.
    Revoke {
        /// Client id.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        /// The secret's id, as `clients show` lists it.
        secret_id: String,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create the first signing key (signing at once) if there is none; safe to repeat.
    Init,
    /// Add a new signing key (published now, signing after the pre-publication delay) and
    /// drop keys that are no longer published.
    Rotate,
    /// List the keys with their schedule state.
    List,
}

#[derive(Debug, clap::Args)]
struct AuditArgs {
    /// Only this client's records (`-` for requests that named none).
    #[arg(long)]
    client: Option<String>,
    /// Only this outcome (`issued`, `invalid_client`, `rate_limited`, `admin`, ...).
    #[arg(long, conflicts_with = "admin")]
    outcome: Option<String>,
    /// Only management actions (the same as `--outcome admin`).
    #[arg(long)]
    admin: bool,
    /// Only records from this long ago on (e.g. 15m, 24h, 7d).
    #[arg(long)]
    since: Option<String>,
    /// Only records older than this long ago (e.g. 1h).
    #[arg(long)]
    until: Option<String>,
    /// At most this many records.
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

/// A client as printed: everything but secret hashes.
#[derive(Debug, Serialize)]
struct ClientView {
    client_id: String,
    name: String,
    status: ClientStatus,
    scopes: Vec<String>,
    default_scopes: Vec<String>,
    audiences: Vec<String>,
    default_audience: String,
    token_ttl: Option<u64>,
    rate_limit: Option<u32>,
    secrets: Vec<SecretView>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: OffsetDateTime,
    version: u64,
}

#[derive(Debug, Serialize)]
struct SecretView {
    secret_id: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

impl From<&StoredSecret> for SecretView {
    fn from(s: &StoredSecret) -> Self {
        Self {
            secret_id: s.secret_id.clone(),
            created_at: s.created_at,
            expires_at: s.expires_at,
        }
    }
}

impl From<&Client> for ClientView {
    fn from(c: &Client) -> Self {
        Self {
            client_id: c.client_id.clone(),
            name: c.name.clone(),
            status: c.status,
            scopes: c.scopes.clone(),
            default_scopes: c.default_scopes.clone(),
            audiences: c.audiences.clone(),
            default_audience: c.default_audience.clone(),
            token_ttl: c.token_ttl,
            rate_limit: c.rate_limit,
            secrets: c.secrets.iter().map(SecretView::from).collect(),
            created_at: c.created_at,
            updated_at: c.updated_at,
            version: c.version,
        }
    }
}

/// A newly created secret: the only output that ever holds one.
#[derive(Debug, Serialize)]
struct NewSecretView {
    client_id: String,
    client_secret: String,
    secret_id: String,
    #[serde(with = "time::serde::rfc3339::option")]
    expires_at: Option<OffsetDateTime>,
}

type CliResult = Result<(), Box<dyn std::error::Error>>;

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

fn ts(at: OffsetDateTime) -> String {
    token_service::encoding::rfc3339_ms(at)
}

fn split_words(values: Vec<String>) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split_whitespace())
        .map(str::to_owned)
        .collect()
}

fn print_json<T: Serialize>(value: &T) -> CliResult {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn print_client(c: &Client) {
    println!("client_id:        {}", c.client_id);
    println!("name:             {}", c.name);
    println!("status:           {}", c.status.as_str());
    println!("scopes:           {}", c.scopes.join(" "));
    println!("default scopes:   {}", c.default_scopes.join(" "));
    println!("audiences:        {}", c.audiences.join(" "));
    println!("default audience: {}", c.default_audience);
    match c.token_ttl {
        Some(t) => println!("token ttl:        {t} s"),
        None => println!("token ttl:        service default"),
    }
    match c.rate_limit {
        Some(n) => println!("rate limit:       {n} tokens/min"),
        None => println!("rate limit:       service default"),
    }
    println!("version:          {}", c.version);
    for s in &c.secrets {
        let expiry = s
            .expires_at
            .map(|e| format!("expires {}", ts(e)))
            .unwrap_or_else(|| "no expiry".to_owned());
        println!(
            "secret:           {} (created {}, {expiry})",
            s.secret_id,
            ts(s.created_at)
        );
    }
}

fn print_new_secret(json: bool, view: &NewSecretView) -> CliResult {
    if json {
        return print_json(view);
    }
    println!("client_id:     {}", view.client_id);
    println!("client_secret: {}", view.client_secret);
    println!("secret_id:     {}", view.secret_id);
    if let Some(e) = view.expires_at {
        println!("expires_at:    {}", ts(e));
    }
    eprintln!("The secret is shown only now; store it safely.");
    Ok(())
}

async fn clients(admin: &Admin, json: bool, cmd: ClientsCommand) -> CliResult {
    match cmd {
        ClientsCommand::Create {
            name,
            id,
            scopes,
            default_scopes,
            audiences,
            default_audience,
            ttl,
            rate_limit,
        } => {
            let spec = NewClient {
                client_id: id,
                name,
                scopes: split_words(scopes),
                default_scopes: default_scopes.map(split_words),
                audiences: split_words(audiences),
                default_audience,
                token_ttl: ttl,
                rate_limit,
            };
            let (client, secret) = admin.create_client(spec).await?;
            let view = NewSecretView {
                client_id: client.client_id.clone(),
                client_secret: secret.expose().to_owned(),
                secret_id: client.secrets[0].secret_id.clone(),
                expires_at: None,
            };
            print_new_secret(json, &view)
        }
        ClientsCommand::Update {
            client_id,
            name,
            scopes,
            default_scopes,
            audiences,
            default_audience,
            ttl,
            rate_limit,
        } => {
            let update = ClientUpdate {
                name,
                scopes: scopes.map(split_words),
                default_scopes: default_scopes.map(split_words),
                audiences: audiences.map(split_words),
                default_audience,
                token_ttl: or_default(ttl, "--ttl")?,
                rate_limit: or_default(rate_limit, "--rate-limit")?,
            };
            if update.field_names().is_empty() {
                return Err("nothing to update: give at least one option".into());
            }
            let c = admin.update_client(&client_id, update).await?;
            if json {
                return print_json(&ClientView::from(&c));
            }
            print_client(&c);
            Ok(())
        }
        ClientsCommand::Delete { client_id } => {
            admin.delete_client(&client_id).await?;
            if json {
                return print_json(&serde_json::json!({ "client_id": client_id, "deleted": true }));
            }
            println!("deleted client {client_id}");
            Ok(())
        }
        ClientsCommand::Stats { client_id, since } => stats(admin, json, client_id, &since).await,
        ClientsCommand::List => {
            let list = admin.list_clients().await?;
            if json {
                return print_json(&list.iter().map(ClientView::from).collect::<Vec<_>>());
            }
            println!("{:<24} {:<9} {:<24} NAME", "CLIENT_ID", "STATUS", "SCOPES");
            for c in &list {
                println!(
                    "{:<24} {:<9} {:<24} {}",
                    c.client_id,
                    c.status.as_str(),
                    c.scopes.join(" "),
                    c.name
                );
            }
            Ok(())
        }
        ClientsCommand::Show { client_id } => {
            let c = admin.client(&client_id).await?;
            if json {
                return print_json(&ClientView::from(&c));
            }
            print_client(&c);
            Ok(())
        }
        ClientsCommand::Disable { client_id } => {
            set_status(admin, json, &client_id, ClientStatus::Disabled).await
        }
        ClientsCommand::Enable { client_id } => {
            set_status(admin, json, &client_id, ClientStatus::Active).await
        }
    }
}

/// Parses `default` as `None`, anything else as a number.
fn or_default<T: std::str::FromStr>(
    text: Option<String>,
    what: &str,
) -> Result<Option<Option<T>>, String> {
    match text.as_deref() {
        None => Ok(None),
        Some("default") => Ok(Some(None)),
        Some(n) => n
            .parse()
            .map(|v| Some(Some(v)))
            .map_err(|_| format!("{what} must be a number or `default`")),
    }
}

fn ago(admin: &Admin, text: &str) -> Result<OffsetDateTime, String> {
    parse_duration(text)
        .map(|d| admin.clock.now() - d)
        .ok_or_else(|| format!("invalid duration {text:?} (use e.g. 15m, 24h, 7d)"))
}

/// `clients stats` output.
#[derive(Debug, Serialize)]
struct Stats {
    client_id: String,
    #[serde(with = "time::serde::rfc3339")]
    since: OffsetDateTime,
    issued: usize,
    failed: usize,
    limited: usize,
    by_outcome: std::collections::BTreeMap<String, usize>,
}

async fn stats(admin: &Admin, json: bool, client_id: String, since: &str) -> CliResult {
    let since = ago(admin, since)?;
    let records = admin
        .audit
        .query(&AuditQuery {
            client_id: Some(client_id.clone()),
            since: Some(since),
            ..Default::default()
        })
        .await?;
    let mut by_outcome = std::collections::BTreeMap::new();
    for r in records.iter().filter(|r| r.action.is_none()) {
        *by_outcome.entry(r.outcome.clone()).or_insert(0) += 1;
    }
    let count = |o: &str| by_outcome.get(o).copied().unwrap_or(0);
    let (issued, limited) = (count("issued"), count("rate_limited"));
    let failed = by_outcome.values().sum::<usize>() - issued - limited;
    let stats = Stats {
        client_id,
        since,
        issued,
        failed,
        limited,
        by_outcome,
    };
    if json {
        return print_json(&stats);
    }
    println!(
        "client {} since {}: {} issued, {} failed, {} rate limited",
        stats.client_id,
        ts(stats.since),
        stats.issued,
        stats.failed,
        stats.limited
    );
    for (outcome, n) in &stats.by_outcome {
        println!("  {outcome:<24} {n}");
    }
    Ok(())
}

async fn set_status(admin: &Admin, json: bool, id: &str, status: ClientStatus) -> CliResult {
    let c = admin.set_status(id, status).await?;
    if json {
        return print_json(&ClientView::from(&c));
    }
    println!("client {} is {}", c.client_id, c.status.as_str());
    Ok(())
}

async fn secrets(admin: &Admin, json: bool, cmd: SecretsCommand) -> CliResult {
    match cmd {
        SecretsCommand::Add {
            client_id,
            expires_in,
        } => {
            let expires_at = match expires_in {
                None => None,
                Some(text) => {
                    let d = parse_duration(&text)
                        .ok_or_else(|| format!("invalid duration {text:?} (use e.g. 30d, 12h)"))?;
                    Some(admin.clock.now() + d)
                }
            };
            let (client, stored, secret) = admin.add_secret(&client_id, expires_at).await?;
            print_new_secret(
                json,
                &NewSecretView {
                    client_id: client.client_id,
                    client_secret: secret.expose().to_owned(),
                    secret_id: stored.secret_id,
                    expires_at: stored.expires_at,
                },
            )
        }
        SecretsCommand::Rotate { client_id, grace } => {
            let grace = parse_duration(&grace)
                .ok_or_else(|| format!("invalid duration {grace:?} (use e.g. 24h, 0)"))?;
            let (client, stored, secret) = admin.rotate_secret(&client_id, grace).await?;
            let view = NewSecretView {
                client_id: client.client_id.clone(),
                client_secret: secret.expose().to_owned(),
                secret_id: stored.secret_id,
                expires_at: None,
            };
            if json {
                return print_json(&serde_json::json!({
                    "client_id": view.client_id,
                    "client_secret": view.client_secret,
                    "secret_id": view.secret_id,
                    "expires_at": null,
                    "secrets": ClientView::from(&client).secrets,
                }));
            }
            print_new_secret(false, &view)?;
            for s in client
                .secrets
                .iter()
                .filter(|s| s.secret_id != view.secret_id)
            {
                let until = s.expires_at.map(ts).unwrap_or_else(|| "-".to_owned());
                println!("old secret {} works until {until}", s.secret_id);
            }
            Ok(())
        }
        SecretsCommand::Revoke {
            client_id,
            secret_id,
        } => {
            let c = admin.revoke_secret(&client_id, &secret_id).await?;
            if json {
                return print_json(&ClientView::from(&c));
            }
            println!("revoked {secret_id} of client {client_id}");
            Ok(())
        }
    }
}

async fn keys(admin: &Admin, json: bool, cmd: KeysCommand) -> CliResult {
    if let KeysCommand::Init = cmd {
        let created = admin.ensure_signing_key().await?;
        if !json {
            match created {
                true => println!("created the first signing key"),
                false => println!("a key set exists already; nothing changed"),
            }
            return Ok(());
        }
    }
    if let KeysCommand::Rotate = cmd {
        let set = admin.rotate_keys().await?;
        let newest = set.keys.last().expect("a rotated set has a key");
        if !json {
            println!(
                "added key {} (signs from {}); {} key(s) in the set",
                newest.kid,
                ts(newest.activates_at),
                set.keys.len()
            );
            return Ok(());
        }
    }
    let status: Vec<KeyStatus> = admin.key_status().await?;
    if json {
        return print_json(&status);
    }
    println!(
        "{:<44} {:<8} {:<10} ACTIVATES_AT",
        "KID", "SIGNING", "PUBLISHED"
    );
    for k in &status {
        println!(
            "{:<44} {:<8} {:<10} {}",
            k.kid,
            k.signing,
            k.published,
            ts(k.activates_at)
        );
    }
    Ok(())
}

async fn audit(admin: &Admin, json: bool, args: AuditArgs) -> CliResult {
    let since = args.since.map(|t| ago(admin, &t)).transpose()?;
    let until = args.until.map(|t| ago(admin, &t)).transpose()?;
    let records: Vec<AuditRecord> = admin
        .audit
        .query(&AuditQuery {
            client_id: args.client,
            since,
            until,
            outcome: if args.admin {
                Some("admin".to_owned())
            } else {
                args.outcome
            },
            limit: args.limit,
        })
        .await?;
    if json {
        return print_json(&records);
    }
    for r in &records {
        let detail = match (&r.action, &r.jti) {
            (Some(action), _) => format!(
                "{action} by {} {}",
                r.actor.as_deref().unwrap_or("-"),
                r.fields.join(",")
            ),
            (None, Some(jti)) => format!(
                "jti={jti} scope={} aud={}",
                r.scope.as_deref().unwrap_or(""),
                r.audience.as_deref().unwrap_or("")
            ),
            (None, None) => String::new(),
        };
        println!(
            "{} {:<20} {:<24} ip={} req={} {detail}",
            ts(r.timestamp),
            r.client_id,
            r.outcome,
            r.source_ip.as_deref().unwrap_or("-"),
            r.request_id
        );
    }
    Ok(())
}

async fn run(cli: Cli) -> CliResult {
    let config = cli.service.validate(Some("http://127.0.0.1:9000"))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let admin = match cli.backend {
        Backend::Sqlite => Embedded::open(&cli.db, config, clock)?.admin(actor()),
        Backend::Aws => aws_admin(&cli.aws, config, clock).await?,
    };
    match cli.command {
        Command::Clients(cmd) => clients(&admin, cli.json, cmd).await,
        Command::Secrets(cmd) => secrets(&admin, cli.json, cmd).await,
        Command::Keys(cmd) => keys(&admin, cli.json, cmd).await,
        Command::Audit(args) => audit(&admin, cli.json, args).await,
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
