//! Command-line arguments (clap): the global options and every command.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use token_service::audit::report;
use token_service::config::{AwsResourceSettings, ServiceSettings};

/// Manage clients, secrets, signing keys and the audit trail of the token service.
#[derive(Debug, Parser)]
#[command(name = "tokenctl", version)]
pub struct Cli {
    /// Storage backend.
    #[arg(long, env = "TOKEN_BACKEND", value_enum, default_value_t = Backend::Sqlite, global = true)]
    pub backend: Backend,
    /// SQLite database file (sqlite backend).
    #[arg(
        long,
        env = "TOKEN_DB",
        default_value = ".data/token-service.db",
        global = true
    )]
    pub db: PathBuf,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Resource names for the aws backend: the stack's outputs.
    #[command(flatten)]
    pub aws: AwsResourceSettings,
    #[command(flatten)]
    pub service: ServiceSettings,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Backend {
    /// The embedded shape's SQLite file.
    Sqlite,
    /// DynamoDB tables and the Secrets Manager secret of a deployed stack (credentials, region
    /// and `AWS_ENDPOINT_URL` from the usual AWS environment and profiles).
    Aws,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, inspect, disable and enable clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Add and revoke client secrets.
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// Create the first signing key, rotate and list keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Show the audit trail, newest first; `audit report` sums it up and flags suspicious use.
    Audit(AuditCommand),
}

impl Command {
    /// The `--wait` of a key rotation (`keys init`, `keys rotate`), which on the aws backend
    /// the stack's rotation function runs.
    pub fn rotation_wait(&self) -> Option<&str> {
        match self {
            Command::Keys(KeysCommand::Init { wait } | KeysCommand::Rotate { wait }) => {
                Some(&wait.text)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum ClientsCommand {
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
        /// How the client authenticates: a generated secret, or JWTs signed with its own
        /// private key (the public key in --jwk).
        #[arg(long, value_enum, default_value_t = AuthArg::ClientSecret)]
        auth: AuthArg,
        /// File with the client's public key: a JWK or a JWK set (RSA >= 2048, EC P-256,
        /// Ed25519). Needs --auth private_key_jwt. A private key is refused.
        #[arg(long)]
        jwk: Option<PathBuf>,
        /// Every token of the client is DPoP-bound (RFC 9449): a request without a DPoP proof
        /// is refused.
        #[arg(long)]
        dpop_bound: bool,
        #[command(flatten)]
        claims: ClaimArgs,
    },
    /// Add, remove and list the public keys of a private_key_jwt client.
    #[command(subcommand)]
    Keys(ClientKeysCommand),
    /// Change a client's scopes, audiences, token lifetime, issuance limit or extra claims.
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
        /// Whether every token of the client must be DPoP-bound (RFC 9449).
        #[arg(long, value_name = "true|false")]
        dpop_bound: Option<bool>,
        #[command(flatten)]
        claims: ClaimArgs,
        /// Remove this extra claim (repeat).
        #[arg(long = "remove-claim", value_name = "NAME")]
        remove_claims: Vec<String>,
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

/// The extra token claims of `clients create` and `clients update` (README "Access tokens":
/// names, sizes and the registered names refused).
#[derive(Debug, clap::Args)]
pub struct ClaimArgs {
    /// Extra token claim with a string value (repeat). On update it sets this name and keeps
    /// the others.
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    pub claims: Vec<String>,
    /// File with the extra claims as a JSON object (values of any JSON type). On update it
    /// replaces the whole set; --claim then adds to it.
    #[arg(long = "claims-json", value_name = "FILE")]
    pub claims_json: Option<PathBuf>,
}

/// `--auth` of `clients create`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthArg {
    /// A secret generated by the service, shown once.
    #[value(name = "client_secret")]
    ClientSecret,
    /// JWT assertions signed with the client's private key (RFC 7523).
    #[value(name = "private_key_jwt")]
    PrivateKeyJwt,
}

#[derive(Debug, Subcommand)]
pub enum ClientKeysCommand {
    /// Add the public key(s) in a JWK or JWK set file; kid defaults to the RFC 7638
    /// thumbprint.
    Add {
        /// Client id.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        /// File with a public JWK or a JWK set.
        #[arg(long)]
        jwk: PathBuf,
    },
    /// Remove one key at once.
    Remove {
        /// Client id.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        /// The key's kid, as `clients keys list` shows it.
        kid: String,
    },
    /// List a client's keys.
    List {
        /// Client id.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
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
    /// Rebuild the secret index (a secret's client by its digest, read by the secret-scanning
    /// endpoints) from the client records: once, after upgrading from a version without it.
    Reindex,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create the first signing key (signing at once) if there is none; safe to repeat.
    Init {
        #[command(flatten)]
        wait: RotationWait,
    },
    /// Add a new signing key (published now, signing after the pre-publication delay) and
    /// drop keys that are no longer published. On the aws backend the stack's rotation
    /// function does it, with the stack's settings (Secrets Manager `RotateSecret`).
    Rotate {
        #[command(flatten)]
        wait: RotationWait,
    },
    /// List the keys with their schedule state.
    List,
}

/// How long `keys init` and `keys rotate` wait for the stack's rotation function.
#[derive(Debug, Clone, clap::Args)]
pub struct RotationWait {
    /// Aws backend: how long to wait for the rotation to finish (e.g. 120s, 5m).
    #[arg(long = "wait", default_value = "120s")]
    pub text: String,
}

/// `audit [OPTIONS]` lists records; `audit report` is a subcommand of its own.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditCommand {
    #[command(subcommand)]
    pub report: Option<AuditSubcommand>,
    #[command(flatten)]
    pub list: AuditArgs,
}

#[derive(Debug, Subcommand)]
pub enum AuditSubcommand {
    /// For each client: tokens, failures and limits in the period; and what looks suspicious
    /// (a new source address, an address failing against several client ids, known or not, a
    /// jump in volume, a disabled client still tried). One audit query per client, and the
    /// period's refusals through the failure index (one query per hour on DynamoDB).
    Report(ReportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The period, ending now (e.g. 1h, 24h, 7d).
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// Baseline length, in periods before the reported one.
    #[arg(long, default_value_t = report::DEFAULT_BASELINE_PERIODS)]
    pub baseline_periods: u32,
    /// A volume jump: requests in the period at least this many times the baseline average...
    #[arg(long, default_value_t = report::DEFAULT_JUMP_FACTOR)]
    pub jump_factor: f64,
    /// ...and at least this many requests.
    #[arg(long, default_value_t = report::DEFAULT_JUMP_MIN)]
    pub jump_min: usize,
    /// Spraying: an address whose failed authentications named at least this many client ids.
    #[arg(long, default_value_t = report::DEFAULT_SPRAY_MIN_CLIENTS)]
    pub spray_min_clients: usize,
    /// No longer needed: ids that are no client are always reported, read through the
    /// failure index. Accepted for old scripts, with a warning, and ignored.
    #[arg(long, hide = true)]
    pub include_unknown: bool,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only this client's records (`-` for requests that named none).
    #[arg(long)]
    pub client: Option<String>,
    /// Only this outcome (`issued`, `invalid_client`, `rate_limited`, `admin`, ...).
    #[arg(long, conflicts_with = "admin")]
    pub outcome: Option<String>,
    /// Only management actions (the same as `--outcome admin`).
    #[arg(long)]
    pub admin: bool,
    /// Only records from this long ago on (e.g. 15m, 24h, 7d).
    #[arg(long)]
    pub since: Option<String>,
    /// Only records older than this long ago (e.g. 1h).
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many records.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
}
