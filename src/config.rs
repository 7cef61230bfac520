//! Service settings, read once at start-up (flags or environment) and validated into a
//! [`ServiceConfig`]; a bad value stops the start with a clear message.
//!
//! Each setting is declared once, in `service_settings!` below: its field, type,
//! environment variable and default; the names of the AWS resources likewise, in
//! `aws_resource_settings!`. From that one entry come the Lambda functions' reader of the
//! environment ([`FunctionEnvironment`], the only place a function reads a variable) and, with
//! feature `clap` (the command lines: `token-server`, `tokenctl`), its `--flag` and `env`
//! fallback; the Lambda functions link no argument parser.

use std::net::IpAddr;
use std::str::FromStr;

use time::Duration;

use crate::keys::{Schedule, SigningAlg};
use crate::oauth::assertion::AssertionPolicy;
use crate::oauth::dpop::{ProofPolicy, normalised_htu};

/// Declares [`ServiceSettings`]. Each entry is the field's doc comment (also its `--help`
/// text), `field: Type, env "VARIABLE"` and, for a setting that is never unset,
/// `, default value`; a setting without a default has an `Option` type. The flag is the
/// field name in kebab case (`--default-ttl`).
macro_rules! service_settings {
    ($( $(#[doc = $doc:literal])* $field:ident: $ty:ty, env $env:literal $(, default $default:expr)?; )*) => {
        /// Settings shared by every shape; each is an environment variable and, in the command
        /// lines, a flag.
        #[derive(Debug, Clone, PartialEq, Eq)]
        #[cfg_attr(feature = "clap", derive(clap::Args))]
        pub struct ServiceSettings {
            $(
                $(#[doc = $doc])*
                #[cfg_attr(feature = "clap", arg(long, env = $env $(, default_value_t = $default)?))]
                pub $field: $ty,
            )*
        }

        impl ServiceSettings {
            /// The environment variable of each setting, by field name.
            #[cfg(test)]
            const VARIABLES: &[(&str, &str)] = &[$((stringify!($field), $env)),*];

            /// Reads the settings through `lookup` (a variable's value, if it is set); an unset
            /// variable takes the setting's default.
            pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
                let lookup = or_former(lookup);
                Ok(Self {
                    $( $field: or_default!(read(&lookup, $env)? $(, $default)?), )*
                })
            }
        }
    };
}

/// Settings renamed, as (current variable, former variable): the former name is still read,
/// with a warning, while the current one is unset.
pub const FORMER_VARIABLES: &[(&str, &str)] = &[("TOKEN_REFUSAL_BUDGET", "TOKEN_FAIL_BUDGET_IP")];

/// `lookup`, falling back to a setting's former variable (with a deprecation warning) when its
/// current one is unset.
fn or_former(lookup: impl Fn(&str) -> Option<String>) -> impl Fn(&str) -> Option<String> {
    move |name| {
        lookup(name).or_else(|| {
            let (_, former) = FORMER_VARIABLES
                .iter()
                .find(|(current, _)| *current == name)?;
            let value = lookup(former)?;
            tracing::warn!("{former} is deprecated: set {name} instead");
            Some(value)
        })
    }
}

/// The value read, or the default when there is one (a setting without one stays an
/// `Option`).
macro_rules! or_default {
    ($read:expr) => {
        $read
    };
    ($read:expr, $default:expr) => {
        $read.unwrap_or($default)
    };
}

/// The value of variable `name` through `lookup`, parsed; `None` when it is not set.
fn read<T>(lookup: impl Fn(&str) -> Option<String>, name: &str) -> Result<Option<T>, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    lookup(name)
        .map(|text| {
            text.parse()
                .map_err(|e| invalid(format!("{name}: invalid value {text:?}: {e}")))
        })
        .transpose()
}

service_settings! {
    /// Issuer URL (`iss` claim, RFC 8414 `issuer`); absolute http(s) URL without query or
    /// fragment.
    issuer: Option<String>, env "TOKEN_ISSUER";
    /// Token lifetime in seconds for clients that set none.
    default_ttl: u64, env "TOKEN_DEFAULT_TTL", default 900;
    /// Longest token lifetime in seconds, whatever a client asks for.
    max_ttl: u64, env "TOKEN_MAX_TTL", default 3600;
    /// Clock skew allowance in seconds: how long past the longest token lifetime a retired
    /// key stays published.
    clock_skew: u64, env "TOKEN_CLOCK_SKEW", default 60;
    /// Seconds a new signing key is published before it signs; must exceed the JWKS
    /// `max-age` plus the key cache lifetime.
    key_prepublication: u64, env "TOKEN_KEY_PREPUBLICATION", default 3600;
    /// Seconds the token endpoint keeps a loaded key set before refreshing it.
    key_cache: u64, env "TOKEN_KEY_CACHE", default 300;
    /// `Cache-Control: max-age` of the JWKS and metadata documents, in seconds.
    jwks_max_age: u64, env "TOKEN_JWKS_MAX_AGE", default 300;
    /// Seconds the JWKS goes on serving the last public keys it read while the public-key
    /// store fails (then `503`); with `TOKEN_JWKS_MAX_AGE` and `TOKEN_KEY_CACHE` it must stay
    /// under `TOKEN_KEY_PREPUBLICATION`, so that a new key still reaches every verifier before
    /// it signs. 0 serves nothing stale.
    jwks_max_stale: u64, env "TOKEN_JWKS_MAX_STALE", default 900;
    /// Days an audit record is kept.
    audit_retention_days: u64, env "TOKEN_AUDIT_RETENTION_DAYS", default 90;
    /// Space-separated `scopes_supported` for the metadata document; when unset the embedded
    /// server lists the union of its clients' scopes.
    scopes_supported: Option<String>, env "TOKEN_SCOPES_SUPPORTED";
    /// Tokens a client may obtain per minute, unless the client sets its own limit.
    rate_limit: u32, env "TOKEN_RATE_LIMIT", default 60;
    /// Failed authentications per minute from one source address for one client id, after
    /// which that pair gets `429` until the minute ends.
    fail_limit_client_ip: u32, env "TOKEN_FAIL_LIMIT_CLIENT_IP", default 10;
    /// Failed authentications per minute from one source address, all client ids together.
    fail_limit_ip: u32, env "TOKEN_FAIL_LIMIT_IP", default 100;
    /// Longest time, in seconds, from now to a client assertion's `exp` (`private_key_jwt`).
    /// Client libraries such as Authlib sign with `exp = iat + 3600` by default.
    assertion_max_lifetime: u64, env "TOKEN_ASSERTION_MAX_LIFETIME", default 3600;
    /// What a client assertion's `aud` must be, always one string: `issuer` (the issuer
    /// identifier alone, draft-ietf-oauth-rfc7523bis) or `issuer-or-token-endpoint` (also the
    /// token endpoint URL, for clients not yet updated).
    assertion_audience: String, env "TOKEN_ASSERTION_AUDIENCE", default String::from("issuer");
    /// The refusal budget: refused requests (every 4xx answer but a client's own issue-limit
    /// `429`) per minute from one source address; past it the address gets `429`, and only the
    /// first of those is audited, until the minute ends. Formerly `TOKEN_FAIL_BUDGET_IP`.
    refusal_budget: u32, env "TOKEN_REFUSAL_BUDGET", default 100;
    /// JWS algorithm of the access tokens: `RS256`, `ES256` or `EdDSA`. A change takes effect
    /// with the next key rotation; the keys in use keep their algorithm until they retire.
    signing_alg: String, env "TOKEN_SIGNING_ALG", default String::from("RS256");
    /// Seconds a DPoP proof's `iat` may lie in the past, on top of `TOKEN_CLOCK_SKEW` (RFC 9449
    /// §11.1); its `jti` is remembered that long.
    dpop_proof_window: u64, env "TOKEN_DPOP_PROOF_WINDOW", default 60;
    /// DPoP nonces (RFC 9449 §8): `off`, or `required` (a proof without a current nonce gets
    /// `use_dpop_nonce` and the nonce in a `DPoP-Nonce` header).
    dpop_nonce: String, env "TOKEN_DPOP_NONCE", default String::from("off");
    /// URL of GitHub's secret-scanning public keys document (`https`, or `http` on loopback).
    github_scanning_keys_url: String, env "TOKEN_GITHUB_SCANNING_KEYS_URL", default String::from(GITHUB_SCANNING_KEYS_URL);
    /// URL of GitLab's secret-detection public keys document (`https`, or `http` on
    /// loopback); unset, `POST /secret-scanning/gitlab` answers `404`.
    gitlab_scanning_keys_url: Option<String>, env "TOKEN_GITLAB_SCANNING_KEYS_URL";
    /// What a reported leak of one of our secrets does: `revoke` (that secret), `disable`
    /// (the whole client) or `report` (audit and alarm only).
    leaked_secret_action: String, env "TOKEN_LEAKED_SECRET_ACTION", default String::from("revoke");
}

/// GitHub's documented secret-scanning keys document.
pub const GITHUB_SCANNING_KEYS_URL: &str =
    "https://api.github.com/meta/public_keys/secret_scanning";

/// What a reported leak of one of our secrets does (`TOKEN_LEAKED_SECRET_ACTION`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeakAction {
    /// The leaked secret stops working at once; the client's other secrets keep working.
    Revoke,
    /// The whole client is disabled.
    Disable,
    /// Only the audit record and the alarm.
    Report,
}

impl LeakAction {
    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Revoke => "revoke",
            Self::Disable => "disable",
            Self::Report => "report",
        }
    }
}

/// The secret-scanning endpoints' settings, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanningConfig {
    /// GitHub's keys document.
    pub github_keys_url: String,
    /// GitLab's keys document, if GitLab reports are accepted.
    pub gitlab_keys_url: Option<String>,
    /// What a reported leak does.
    pub action: LeakAction,
}

/// Whether `url` may serve a scanning program's keys: `https`, or `http` on a loopback
/// address (tests and local stand-ins).
fn is_keys_url(url: &str) -> bool {
    let bad = |c: char| c.is_whitespace() || c.is_control();
    if url.chars().any(bad) {
        return false;
    }
    let (rest, loopback_only) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (rest, false),
        (None, Some(rest)) => (rest, true),
        _ => return false,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return false;
    }
    if !loopback_only {
        return true;
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

impl ServiceSettings {
    /// Settings parsed from the command line, with the values of renamed settings taken from
    /// their former variables where neither the flag nor the current variable set them (the
    /// flag parser reads only the current names). A flag given with the default value counts as
    /// not given here.
    pub fn with_former_variables(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let defaults = Self::from_lookup(|_| None)?;
        let former = Self::from_lookup(&lookup)?;
        if lookup("TOKEN_REFUSAL_BUDGET").is_none()
            && self.refusal_budget == defaults.refusal_budget
        {
            self.refusal_budget = former.refusal_budget;
        }
        Ok(self)
    }
}

/// Why the settings were refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// A value is missing, malformed or inconsistent with another.
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

/// The validated service configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceConfig {
    /// The secret-scanning endpoints' settings.
    pub scanning: ScanningConfig,
    /// Issuer URL, verbatim.
    pub issuer: String,
    /// Lifetime for clients without their own, seconds.
    pub default_ttl: u64,
    /// Longest lifetime, seconds.
    pub max_ttl: u64,
    /// Key rotation timing.
    pub schedule: Schedule,
    /// How long a loaded key set is used before a refresh.
    pub key_cache: std::time::Duration,
    /// How long a cached key set may keep serving while refreshes fail.
    pub key_max_stale: std::time::Duration,
    /// JWKS and metadata `max-age`, seconds.
    pub jwks_max_age: u64,
    /// How long the JWKS serves the last public keys it read while their store fails.
    pub jwks_max_stale: Duration,
    /// Audit retention.
    pub audit_retention: Duration,
    /// Configured `scopes_supported`, if any.
    pub scopes_supported: Option<Vec<String>>,
    /// Abuse limits.
    pub limits: Limits,
    /// Clock skew allowance, seconds.
    pub clock_skew: u64,
    /// Longest time from now to a client assertion's `exp`, seconds.
    pub assertion_max_lifetime: u64,
    /// Which audiences a client assertion may name.
    pub assertion_audience: AssertionAudience,
    /// The algorithm of the next signing key made.
    pub signing_alg: SigningAlg,
    /// How old a DPoP proof's `iat` may be, seconds, on top of the clock skew allowance.
    pub dpop_proof_window: u64,
    /// Whether a DPoP proof must carry a current nonce.
    pub dpop_nonce_required: bool,
}

/// Which `aud` a client assertion may carry (`TOKEN_ASSERTION_AUDIENCE`). An array is never
/// accepted, whatever it holds: that is how an assertion made for another server is replayed
/// here (the audience-injection attack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssertionAudience {
    /// The issuer identifier alone (draft-ietf-oauth-rfc7523bis, the default).
    Issuer,
    /// The issuer identifier or the token endpoint URL (RFC 7523 as first published).
    IssuerOrTokenEndpoint,
}

impl FromStr for AssertionAudience {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "issuer" => Ok(Self::Issuer),
            "issuer-or-token-endpoint" => Ok(Self::IssuerOrTokenEndpoint),
            other => Err(invalid(format!(
                "TOKEN_ASSERTION_AUDIENCE: {other:?} is neither issuer nor issuer-or-token-endpoint"
            ))),
        }
    }
}

/// Per-minute limits of the token endpoint (DESIGN.md "Abuse protection").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Tokens per client per minute, unless the client overrides it.
    pub issue_per_client: u32,
    /// Failed authentications per (client id, source address) per minute.
    pub fail_per_client_ip: u32,
    /// Failed authentications per source address per minute.
    pub fail_per_ip: u32,
    /// Refused requests (4xx answers) per source address per minute.
    pub refusal_budget: u32,
}

/// Longest service maximum accepted for token lifetimes (one day).
pub const TTL_CEILING: u64 = 86_400;
/// Longest clock skew allowance, JWKS `max-age` and key cache lifetime (one day each).
pub const SECONDS_CEILING: u64 = 86_400;
/// Longest pre-publication delay of a new signing key (30 days).
pub const PREPUBLICATION_CEILING: u64 = 30 * 86_400;
/// Longest audit retention (ten years). Far larger values would overflow the expiry date of
/// every record, and so fail every request, long after the start.
pub const RETENTION_DAYS_CEILING: u64 = 3_653;
/// Largest per-minute limit or budget: beyond it a limit no longer protects anything, and a
/// typo (an extra digit or two) should stop the start rather than switch a limit off.
pub const LIMIT_CEILING: u32 = 1_000_000;
/// Largest `TOKEN_FAIL_LIMIT_IP`: on DynamoDB a source's failures of every client id in a
/// minute are counted in one item, about 30 bytes per client id it tried (docs/aws-store.md
/// "Rate-limit items"); 10,000 keeps that item well under DynamoDB's 400 KB.
pub const FAIL_LIMIT_IP_CEILING: u32 = 10_000;

/// Longest DPoP proof window, seconds.
pub const DPOP_WINDOW_CEILING: u64 = 3_600;

fn invalid(msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid(msg.into())
}

/// Checks an issuer URL (RFC 8414 §2: no query, no fragment).
pub fn validate_issuer(issuer: &str) -> Result<(), ConfigError> {
    let rest = issuer
        .strip_prefix("https://")
        .or_else(|| issuer.strip_prefix("http://"))
        .ok_or_else(|| invalid("TOKEN_ISSUER must start with https:// or http://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(invalid("TOKEN_ISSUER needs a host"));
    }
    if issuer.contains(['?', '#']) || !issuer.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "TOKEN_ISSUER must have no query, fragment, spaces or control characters",
        ));
    }
    // The URL DPoP proofs name (RFC 9449 §4.3 step 9) must be one they can name.
    if normalised_htu(&format!("{}/oauth/token", issuer.trim_end_matches('/'))).is_none() {
        return Err(invalid(
            "TOKEN_ISSUER must have a host and no user information",
        ));
    }
    Ok(())
}

/// Declares [`AwsResourceSettings`] and [`AwsResources`]: each entry is the field's doc comment
/// (also its `--help` text) and its environment variable. The flag is the field name in kebab
/// case (`--clients-table`).
macro_rules! aws_resource_settings {
    ($( $(#[doc = $doc:literal])* $field:ident, env $env:literal; )*) => {
        /// The names of the AWS resources as set (the stack's outputs): in a function's
        /// environment (the template sets them), or in `tokenctl`'s flags and environment.
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        #[cfg_attr(feature = "clap", derive(clap::Args))]
        pub struct AwsResourceSettings {
            $(
                $(#[doc = $doc])*
                #[cfg_attr(feature = "clap", arg(long, env = $env, global = true))]
                pub $field: Option<String>,
            )*
        }

        /// The names of the AWS resources the adapters use (template outputs), all of them set.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct AwsResources {
            $( $(#[doc = $doc])* pub $field: String, )*
        }

        impl AwsResourceSettings {
            /// Reads the names through `lookup` (a variable's value, if it is set).
            pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
                Self { $( $field: lookup($env), )* }
            }

            /// Every name, or an error naming the first variable that is missing or empty.
            pub fn validate(&self) -> Result<AwsResources, ConfigError> {
                let set = |value: &Option<String>, name: &str| {
                    value
                        .clone()
                        .filter(|v| !v.trim().is_empty())
                        .ok_or_else(|| invalid(format!("{name} is required (not set)")))
                };
                Ok(AwsResources { $( $field: set(&self.$field, $env)?, )* })
            }
        }
    };
}

aws_resource_settings! {
    /// DynamoDB table of client records (aws backend).
    clients_table, env "TOKEN_CLIENTS_TABLE";
    /// DynamoDB table of audit records, TTL on `expires_at` (aws backend).
    audit_table, env "TOKEN_AUDIT_TABLE";
    /// DynamoDB table of public key records (aws backend).
    public_keys_table, env "TOKEN_PUBLIC_KEYS_TABLE";
    /// DynamoDB table of rate-limit counters, TTL on `expires_at` (aws backend).
    rate_limits_table, env "TOKEN_RATE_LIMITS_TABLE";
    /// DynamoDB table of used client assertion ids, TTL on `expires_at` (aws backend).
    assertion_ids_table, env "TOKEN_ASSERTION_IDS_TABLE";
    /// DynamoDB table of the secret index: a secret's client by the secret's digest (aws backend).
    secret_index_table, env "TOKEN_SECRET_INDEX_TABLE";
    /// Secrets Manager secret holding the private key set, name or ARN (aws backend).
    key_secret_id, env "TOKEN_KEY_SECRET_ID";
}

/// Everything a Lambda function takes from its environment, read once at its init: the one
/// place the functions read a variable. The command lines read theirs through clap (flags with
/// an `env` fallback) from the same declarations.
#[derive(Debug, Clone)]
pub struct FunctionEnvironment {
    /// `RUST_LOG`: per-module log directives, when set.
    pub rust_log: Option<String>,
    /// `AWS_LAMBDA_LOG_LEVEL`: the level of the function's `LoggingConfig`.
    pub lambda_log_level: Option<String>,
    /// `AWS_LAMBDA_FUNCTION_NAME`: the deployed function's name.
    pub function_name: Option<String>,
    /// `TOKEN_ALARM_TOPIC_ARN`: the SNS topic the secret-scanning function notifies of each
    /// leaked secret (the stack's alarm topic); unset or empty, the log warning alone.
    pub alarm_topic_arn: Option<String>,
    settings: Result<ServiceSettings, ConfigError>,
    resources: AwsResourceSettings,
}

impl FunctionEnvironment {
    /// Reads the process environment.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| {
            std::env::var_os(name).map(|value| value.to_string_lossy().into_owned())
        })
    }

    /// Reads the variables through `lookup` (for tests and tools that must not change the
    /// process environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        Self {
            rust_log: lookup("RUST_LOG"),
            lambda_log_level: lookup("AWS_LAMBDA_LOG_LEVEL"),
            function_name: lookup("AWS_LAMBDA_FUNCTION_NAME"),
            alarm_topic_arn: lookup("TOKEN_ALARM_TOPIC_ARN")
                .map(|arn| arn.trim().to_owned())
                .filter(|arn| !arn.is_empty()),
            settings: ServiceSettings::from_lookup(&lookup),
            resources: AwsResourceSettings::from_lookup(&lookup),
        }
    }

    /// The validated service settings and resource names (the template sets them all,
    /// `TOKEN_ISSUER` included); an error names the variable at fault.
    pub fn config(&self) -> Result<(ServiceConfig, AwsResources), ConfigError> {
        let config = self.settings.clone()?.validate(None)?;
        Ok((config, self.resources.validate()?))
    }
}

impl ServiceSettings {
    /// Validates the settings; `default_issuer` is used when no issuer is set.
    pub fn validate(&self, default_issuer: Option<&str>) -> Result<ServiceConfig, ConfigError> {
        let issuer = self
            .issuer
            .clone()
            .or_else(|| default_issuer.map(str::to_owned))
            .ok_or_else(|| invalid("TOKEN_ISSUER is required"))?;
        validate_issuer(&issuer)?;
        if self.max_ttl == 0 || self.max_ttl > TTL_CEILING {
            return Err(invalid(format!(
                "TOKEN_MAX_TTL must be between 1 and {TTL_CEILING} seconds"
            )));
        }
        if self.default_ttl == 0 || self.default_ttl > self.max_ttl {
            return Err(invalid(
                "TOKEN_DEFAULT_TTL must be between 1 and TOKEN_MAX_TTL",
            ));
        }
        // Upper bounds first: every sum and date below is then far from overflowing.
        for (name, value, ceiling) in [
            ("TOKEN_CLOCK_SKEW", self.clock_skew, SECONDS_CEILING),
            ("TOKEN_KEY_CACHE", self.key_cache, SECONDS_CEILING),
            ("TOKEN_JWKS_MAX_AGE", self.jwks_max_age, SECONDS_CEILING),
            ("TOKEN_JWKS_MAX_STALE", self.jwks_max_stale, SECONDS_CEILING),
            (
                "TOKEN_KEY_PREPUBLICATION",
                self.key_prepublication,
                PREPUBLICATION_CEILING,
            ),
        ] {
            if value > ceiling {
                return Err(invalid(format!("{name} must be at most {ceiling} seconds")));
            }
        }
        if self.key_cache == 0 {
            return Err(invalid("TOKEN_KEY_CACHE must be at least 1 second"));
        }
        if self.key_prepublication <= self.jwks_max_age + self.key_cache {
            return Err(invalid(
                "TOKEN_KEY_PREPUBLICATION must exceed TOKEN_JWKS_MAX_AGE + TOKEN_KEY_CACHE, \
                 so that verifiers and token signers see a key before it signs",
            ));
        }
        if self.key_prepublication <= self.jwks_max_age + self.key_cache + self.jwks_max_stale {
            return Err(invalid(
                "TOKEN_KEY_PREPUBLICATION must exceed TOKEN_JWKS_MAX_AGE + TOKEN_KEY_CACHE + \
                 TOKEN_JWKS_MAX_STALE, so that a JWKS served stale still shows a key before it signs",
            ));
        }
        for (name, value, ceiling) in [
            ("TOKEN_RATE_LIMIT", self.rate_limit, LIMIT_CEILING),
            (
                "TOKEN_FAIL_LIMIT_CLIENT_IP",
                self.fail_limit_client_ip,
                LIMIT_CEILING,
            ),
            (
                "TOKEN_FAIL_LIMIT_IP",
                self.fail_limit_ip,
                FAIL_LIMIT_IP_CEILING,
            ),
            ("TOKEN_REFUSAL_BUDGET", self.refusal_budget, LIMIT_CEILING),
        ] {
            if value == 0 || value > ceiling {
                return Err(invalid(format!(
                    "{name} must be between 1 and {ceiling} a minute"
                )));
            }
        }
        if self.assertion_max_lifetime == 0 || self.assertion_max_lifetime > TTL_CEILING {
            return Err(invalid(format!(
                "TOKEN_ASSERTION_MAX_LIFETIME must be between 1 and {TTL_CEILING} seconds"
            )));
        }
        if self.audit_retention_days == 0 || self.audit_retention_days > RETENTION_DAYS_CEILING {
            return Err(invalid(format!(
                "TOKEN_AUDIT_RETENTION_DAYS must be between 1 and {RETENTION_DAYS_CEILING}"
            )));
        }
        let signing_alg: SigningAlg = self
            .signing_alg
            .parse()
            .map_err(|e| invalid(format!("TOKEN_SIGNING_ALG: {e}")))?;
        let scopes_supported = match &self.scopes_supported {
            None => None,
            Some(text) => {
                let list: Vec<String> = text.split_whitespace().map(str::to_owned).collect();
                if let Some(bad) = list
                    .iter()
                    .find(|s| crate::values::ScopeToken::parse(s.as_str()).is_err())
                {
                    return Err(invalid(format!(
                        "TOKEN_SCOPES_SUPPORTED: {bad:?} is not a scope token"
                    )));
                }
                Some(list)
            }
        };
        if self.dpop_proof_window == 0 || self.dpop_proof_window > DPOP_WINDOW_CEILING {
            return Err(invalid(format!(
                "TOKEN_DPOP_PROOF_WINDOW must be between 1 and {DPOP_WINDOW_CEILING} seconds"
            )));
        }
        let dpop_nonce_required = match self.dpop_nonce.as_str() {
            "off" => false,
            "required" => true,
            _ => return Err(invalid("TOKEN_DPOP_NONCE must be off or required")),
        };
        let check_url = |name: &str, url: &str| {
            if is_keys_url(url) {
                Ok(url.to_owned())
            } else {
                Err(invalid(format!(
                    "{name} must be an https URL (http only on a loopback address)"
                )))
            }
        };
        let scanning = ScanningConfig {
            github_keys_url: check_url(
                "TOKEN_GITHUB_SCANNING_KEYS_URL",
                &self.github_scanning_keys_url,
            )?,
            // Empty is unset: the template passes an empty parameter as an empty variable.
            gitlab_keys_url: match self.gitlab_scanning_keys_url.as_deref() {
                None | Some("") => None,
                Some(url) => Some(check_url("TOKEN_GITLAB_SCANNING_KEYS_URL", url)?),
            },
            action: match self.leaked_secret_action.as_str() {
                "revoke" => LeakAction::Revoke,
                "disable" => LeakAction::Disable,
                "report" => LeakAction::Report,
                _ => {
                    return Err(invalid(
                        "TOKEN_LEAKED_SECRET_ACTION must be one of revoke, disable, report"
                            .to_owned(),
                    ));
                }
            },
        };
        Ok(ServiceConfig {
            scanning,
            issuer,
            default_ttl: self.default_ttl,
            max_ttl: self.max_ttl,
            schedule: Schedule {
                prepublication: Duration::seconds(self.key_prepublication as i64),
                retirement: Duration::seconds((self.max_ttl + self.clock_skew) as i64),
                signer_refresh: Duration::seconds(self.key_cache as i64),
            },
            key_cache: std::time::Duration::from_secs(self.key_cache),
            // A cached set older than the pre-publication delay could miss a key that has
            // started signing elsewhere; past that, refusing is safer than signing.
            key_max_stale: std::time::Duration::from_secs(self.key_prepublication),
            jwks_max_age: self.jwks_max_age,
            jwks_max_stale: Duration::seconds(self.jwks_max_stale as i64),
            audit_retention: Duration::days(self.audit_retention_days as i64),
            scopes_supported,
            limits: Limits {
                issue_per_client: self.rate_limit,
                fail_per_client_ip: self.fail_limit_client_ip,
                fail_per_ip: self.fail_limit_ip,
                refusal_budget: self.refusal_budget,
            },
            clock_skew: self.clock_skew,
            assertion_max_lifetime: self.assertion_max_lifetime,
            assertion_audience: self.assertion_audience.parse()?,
            signing_alg,
            dpop_proof_window: self.dpop_proof_window,
            dpop_nonce_required,
        })
    }
}

/// A reverse proxy whose `X-Forwarded-For` is believed: one address (`10.0.0.1`) or a CIDR
/// range (`10.0.0.0/8`, `2001:db8::/32`). IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, as
/// a dual-stack listener reports IPv4 peers) are read as the IPv4 address they carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrustedProxy {
    /// The range's first address (every bit past the prefix is zero).
    network: IpAddr,
    prefix: u8,
}

/// `ip` with every bit past the first `prefix` cleared.
fn masked(ip: IpAddr, prefix: u8) -> IpAddr {
    let p = u32::from(prefix);
    match ip {
        IpAddr::V4(a) => {
            IpAddr::V4((u32::from(a) & u32::MAX.checked_shl(32 - p).unwrap_or(0)).into())
        }
        IpAddr::V6(a) => {
            IpAddr::V6((u128::from(a) & u128::MAX.checked_shl(128 - p).unwrap_or(0)).into())
        }
    }
}

impl TrustedProxy {
    /// Whether `ip` is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && masked(ip, self.prefix) == self.network
    }
}

impl From<IpAddr> for TrustedProxy {
    fn from(ip: IpAddr) -> Self {
        let network = ip.to_canonical();
        let prefix = if network.is_ipv4() { 32 } else { 128 };
        Self { network, prefix }
    }
}

impl std::str::FromStr for TrustedProxy {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| invalid(format!("TOKEN_TRUSTED_PROXIES: {s:?} {why}"));
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| bad("is not an address or CIDR range"))?;
        let whole = Self::from(ip);
        let Some(prefix) = prefix else {
            return Ok(whole);
        };
        let prefix = prefix
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= whole.prefix && ip == whole.network)
            .ok_or_else(|| bad("has no valid prefix length"))?;
        // Bits set past the prefix (`10.0.0.1/8`) are most likely a typo: refuse, never guess.
        if masked(ip, prefix) != ip {
            return Err(bad("has bits set past its prefix length"));
        }
        Ok(Self {
            network: ip,
            prefix,
        })
    }
}

impl ServiceConfig {
    /// The URL of the token endpoint under the issuer.
    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth/token", self.issuer.trim_end_matches('/'))
    }

    /// What a client assertion is checked against (RFC 7523 §3): its audience (the issuer,
    /// and the token endpoint URL where configured), the longest lifetime and the clock skew
    /// allowance.
    pub fn assertion_policy(&self) -> AssertionPolicy {
        let audiences = match self.assertion_audience {
            AssertionAudience::Issuer => vec![self.issuer.clone()],
            AssertionAudience::IssuerOrTokenEndpoint => {
                vec![self.issuer.clone(), self.token_endpoint()]
            }
        };
        AssertionPolicy {
            audiences,
            max_lifetime: self.assertion_max_lifetime as i64,
            clock_skew: self.clock_skew as i64,
        }
    }

    /// What a DPoP proof is checked against (RFC 9449 §4.3): the token endpoint URL, the
    /// window of `iat` and the clock skew allowance.
    pub fn proof_policy(&self) -> ProofPolicy {
        let (window, skew) = (self.dpop_proof_window as i64, self.clock_skew as i64);
        ProofPolicy::new(&self.token_endpoint(), window, skew)
            .expect("a validated issuer makes an absolute token endpoint URL")
    }

    /// The URL of the JWKS under the issuer.
    pub fn jwks_uri(&self) -> String {
        format!(
            "{}/.well-known/jwks.json",
            self.issuer.trim_end_matches('/')
        )
    }

    /// A configuration for tests: issuer `https://issuer.test`, defaults otherwise.
    pub fn for_tests() -> Self {
        ServiceSettings::from_lookup(|_| None)
            .expect("defaults parse")
            .validate(Some("https://issuer.test"))
            .expect("defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The environment variable of a setting's flag (`--default-ttl`: `TOKEN_DEFAULT_TTL`).
    fn variable(flag: &str) -> &'static str {
        let field = flag.trim_start_matches("--").replace('-', "_");
        let found = ServiceSettings::VARIABLES.iter().find(|(f, _)| *f == field);
        found.unwrap_or_else(|| panic!("no setting {flag}")).1
    }

    /// The configuration from an environment that sets each flag's variable to its value.
    fn parse(flags_and_values: &[&str]) -> Result<ServiceConfig, ConfigError> {
        let env: Vec<(&str, &str)> = flags_and_values
            .chunks(2)
            .map(|pair| (variable(pair[0]), pair[1]))
            .collect();
        ServiceSettings::from_lookup(|name| {
            env.iter()
                .find(|(variable, _)| *variable == name)
                .map(|(_, value)| value.to_string())
        })?
        .validate(Some("http://127.0.0.1:9000"))
    }

    #[test]
    fn an_unparsable_value_names_its_variable() {
        for (flag, value) in [
            ("--max-ttl", "1h"),
            ("--rate-limit", "-1"),
            ("--key-cache", ""),
            ("--assertion-audience", "token-endpoint"),
        ] {
            let refused = parse(&[flag, value]).expect_err(flag).to_string();
            assert!(refused.contains(variable(flag)), "{refused}");
        }
    }

    /// The command lines read each setting from its flag, else from the same variable and
    /// with the same default as the Lambda functions' reader.
    #[cfg(feature = "clap")]
    #[test]
    fn flags_and_environment_read_the_same_settings() {
        use clap::Parser;

        #[derive(Parser)]
        struct Flags {
            #[command(flatten)]
            settings: ServiceSettings,
        }
        let from_flags =
            |args: &[&str]| Flags::try_parse_from([&["t"], args].concat()).map(|f| f.settings);
        let process_env = |name: &str| std::env::var(name).ok();
        assert_eq!(
            from_flags(&[]).unwrap(),
            ServiceSettings::from_lookup(process_env).unwrap()
        );
        for (field, env) in ServiceSettings::VARIABLES {
            let flag = format!("--{}", field.replace('_', "-"));
            let with_flag = from_flags(&[&flag, "7"]).unwrap();
            let with_variable = ServiceSettings::from_lookup(|name| {
                if name == *env {
                    Some("7".into())
                } else {
                    process_env(name)
                }
            });
            assert_eq!(with_flag, with_variable.unwrap(), "{flag} / {env}");
            assert_ne!(
                with_flag,
                from_flags(&[]).unwrap(),
                "{flag} changed nothing"
            );
        }
    }

    #[test]
    fn defaults_are_valid_and_consistent() {
        let c = parse(&[]).unwrap();
        assert_eq!(c.issuer, "http://127.0.0.1:9000");
        assert_eq!((c.default_ttl, c.max_ttl), (900, 3600));
        assert_eq!(c.schedule.retirement, Duration::seconds(3660));
        assert_eq!(c.token_endpoint(), "http://127.0.0.1:9000/oauth/token");
    }

    #[test]
    fn inconsistent_values_stop_the_start() {
        assert!(parse(&["--default-ttl", "4000"]).is_err());
        assert!(parse(&["--max-ttl", "0"]).is_err());
        assert!(parse(&["--key-prepublication", "600"]).is_err());
        assert!(parse(&["--issuer", "ftp://x"]).is_err());
        assert!(parse(&["--issuer", "https://x/?q=1"]).is_err());
        assert!(parse(&["--scopes-supported", "a \"b"]).is_err());
    }

    #[test]
    fn every_duration_setting_has_an_upper_bound() {
        let huge = u64::MAX.to_string();
        for flag in [
            "--default-ttl",
            "--max-ttl",
            "--clock-skew",
            "--key-prepublication",
            "--key-cache",
            "--jwks-max-age",
            "--audit-retention-days",
        ] {
            for value in [huge.as_str(), "1000000000000"] {
                assert!(
                    parse(&[flag, value]).is_err(),
                    "{flag} {value} was accepted"
                );
            }
        }
        // The largest accepted values still give dates and sums that do not overflow.
        let c = parse(&[
            "--audit-retention-days",
            &RETENTION_DAYS_CEILING.to_string(),
            "--clock-skew",
            &SECONDS_CEILING.to_string(),
            "--max-ttl",
            &TTL_CEILING.to_string(),
        ])
        .unwrap();
        assert!(
            time::OffsetDateTime::now_utc()
                .checked_add(c.audit_retention)
                .is_some()
        );
        assert!(parse(&["--audit-retention-days", "3654"]).is_err());
    }

    #[test]
    fn every_limit_is_between_one_and_its_ceiling() {
        for (flag, ceiling) in [
            ("--rate-limit", LIMIT_CEILING),
            ("--fail-limit-client-ip", LIMIT_CEILING),
            ("--fail-limit-ip", FAIL_LIMIT_IP_CEILING),
            ("--refusal-budget", LIMIT_CEILING),
        ] {
            let (over, top) = ((ceiling + 1).to_string(), ceiling.to_string());
            for value in ["0", over.as_str()] {
                let refused = parse(&[flag, value]).expect_err(flag);
                assert!(refused.to_string().contains("TOKEN_"), "{refused}");
            }
            assert!(parse(&[flag, &top]).is_ok(), "{flag} {top}");
        }
        assert_eq!(parse(&[]).unwrap().limits.refusal_budget, 100);
        assert_eq!(
            parse(&["--refusal-budget", "7"])
                .unwrap()
                .limits
                .refusal_budget,
            7
        );
    }

    /// A renamed setting's former variable is still read while the current one is unset,
    /// by the functions' reader and by the command lines; the current name wins.
    #[test]
    fn the_former_name_of_the_refusal_budget_still_works() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let budget = |s: ServiceSettings| s.refusal_budget;
        let former = env(&[("TOKEN_FAIL_BUDGET_IP", "7")]);
        let both = env(&[("TOKEN_FAIL_BUDGET_IP", "7"), ("TOKEN_REFUSAL_BUDGET", "9")]);
        assert_eq!(budget(ServiceSettings::from_lookup(former).unwrap()), 7);
        assert_eq!(budget(ServiceSettings::from_lookup(both).unwrap()), 9);
        // The command lines' parser reads the current name only; the former one is adopted
        // where neither the flag nor the current variable set the value.
        let parsed = ServiceSettings::from_lookup(|_| None).unwrap();
        assert_eq!(
            budget(parsed.clone().with_former_variables(former).unwrap()),
            7
        );
        let flagged = ServiceSettings {
            refusal_budget: 50,
            ..parsed
        };
        assert_eq!(budget(flagged.with_former_variables(former).unwrap()), 50);
    }

    #[test]
    fn scanning_settings_are_checked() {
        let c = parse(&[]).unwrap().scanning;
        assert_eq!(c.github_keys_url, GITHUB_SCANNING_KEYS_URL);
        assert_eq!((c.gitlab_keys_url, c.action), (None, LeakAction::Revoke));
        let empty = parse(&["--gitlab-scanning-keys-url", ""]).unwrap();
        assert_eq!(empty.scanning.gitlab_keys_url, None, "empty is unset");
        for good in [
            "https://keys.example/x",
            "http://127.0.0.1:8080/keys",
            "http://[::1]:9/k",
            "http://localhost/k",
        ] {
            let c = parse(&["--gitlab-scanning-keys-url", good])
                .unwrap()
                .scanning;
            assert_eq!(c.gitlab_keys_url.as_deref(), Some(good));
        }
        for bad in [
            "http://keys.example/x",
            "http://10.0.0.1/k",
            "ftp://127.0.0.1/k",
            "https://",
            "https://a b/",
            "http://user@127.0.0.1.evil/k",
        ] {
            assert!(
                parse(&["--github-scanning-keys-url", bad]).is_err(),
                "{bad}"
            );
        }
        let c = parse(&["--leaked-secret-action", "disable"])
            .unwrap()
            .scanning;
        assert_eq!(c.action, LeakAction::Disable);
        assert!(parse(&["--leaked-secret-action", "Revoke"]).is_err());
    }

    #[test]
    fn the_signing_algorithm_is_one_of_three_exact_names() {
        assert_eq!(parse(&[]).unwrap().signing_alg, SigningAlg::RS256);
        for alg in crate::keys::SIGNING_ALGS {
            assert_eq!(
                parse(&["--signing-alg", alg.as_str()]).unwrap().signing_alg,
                alg
            );
        }
        for bad in ["es256", "PS256", "HS256", "none", ""] {
            let refused = parse(&["--signing-alg", bad]).expect_err(bad).to_string();
            assert!(
                refused.contains("TOKEN_SIGNING_ALG") && refused.contains("RS256, ES256, EdDSA"),
                "{refused}"
            );
        }
    }

    #[test]
    fn trusted_proxies_are_addresses_or_cidr_ranges() {
        let p = |s: &str| s.parse::<TrustedProxy>();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let one = p("10.0.0.1").unwrap();
        assert!(one.contains(ip("10.0.0.1")));
        assert!(one.contains(ip("::ffff:10.0.0.1")), "IPv4-mapped peer");
        assert!(!one.contains(ip("10.0.0.2")));
        let range = p("10.0.0.0/8").unwrap();
        assert!(range.contains(ip("10.255.1.2")));
        assert!(range.contains(ip("::ffff:10.9.9.9")));
        assert!(!range.contains(ip("11.0.0.1")));
        assert!(
            !range.contains(ip("::a00:1")),
            "an IPv6 address is never in an IPv4 range"
        );
        let v6 = p("2001:db8::/32").unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        assert!(p("0.0.0.0/0").unwrap().contains(ip("192.0.2.1")));
        assert!(p("::ffff:10.0.0.1").unwrap().contains(ip("10.0.0.1")));
        for bad in [
            "10.0.0.1/8",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0.0/x",
            "host",
            "::/129",
            "",
        ] {
            assert!(p(bad).is_err(), "{bad:?} was accepted");
        }
    }

    fn resources(missing: &'static str) -> Result<AwsResources, ConfigError> {
        AwsResourceSettings::from_lookup(|name| (name != missing).then(|| format!("{name}-value")))
            .validate()
    }

    #[test]
    fn resources_come_from_the_seven_variables() {
        let r = resources("").unwrap();
        assert_eq!(r.clients_table, "TOKEN_CLIENTS_TABLE-value");
        assert_eq!(r.audit_table, "TOKEN_AUDIT_TABLE-value");
        assert_eq!(r.public_keys_table, "TOKEN_PUBLIC_KEYS_TABLE-value");
        assert_eq!(r.rate_limits_table, "TOKEN_RATE_LIMITS_TABLE-value");
        assert_eq!(r.assertion_ids_table, "TOKEN_ASSERTION_IDS_TABLE-value");
        assert_eq!(r.secret_index_table, "TOKEN_SECRET_INDEX_TABLE-value");
        assert_eq!(r.key_secret_id, "TOKEN_KEY_SECRET_ID-value");
    }

    #[test]
    fn a_missing_resource_variable_is_named() {
        for var in [
            "TOKEN_CLIENTS_TABLE",
            "TOKEN_AUDIT_TABLE",
            "TOKEN_PUBLIC_KEYS_TABLE",
            "TOKEN_RATE_LIMITS_TABLE",
            "TOKEN_ASSERTION_IDS_TABLE",
            "TOKEN_SECRET_INDEX_TABLE",
            "TOKEN_KEY_SECRET_ID",
        ] {
            let err = resources(var).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
        let blank =
            AwsResourceSettings::from_lookup(|n| (n != "TOKEN_AUDIT_TABLE").then(String::new));
        assert!(
            blank
                .validate()
                .unwrap_err()
                .to_string()
                .contains("TOKEN_CLIENTS_TABLE")
        );
    }

    #[test]
    fn a_function_reads_its_settings_and_names_from_one_environment() {
        let env = [
            ("TOKEN_ISSUER", "https://issuer.example"),
            ("TOKEN_MAX_TTL", "1200"),
            ("AWS_LAMBDA_FUNCTION_NAME", "prod-token"),
            ("AWS_LAMBDA_LOG_LEVEL", "WARN"),
        ];
        let lookup = |name: &str| {
            env.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
                .or_else(|| name.ends_with("_TABLE").then(|| format!("{name}-value")))
                .or_else(|| (name == "TOKEN_KEY_SECRET_ID").then(|| "keys".to_owned()))
        };
        let read = FunctionEnvironment::from_lookup(lookup);
        assert_eq!(read.function_name.as_deref(), Some("prod-token"));
        assert_eq!(read.lambda_log_level.as_deref(), Some("WARN"));
        assert_eq!(read.rust_log, None);
        assert_eq!(read.alarm_topic_arn, None);
        let topic = "arn:aws:sns:eu-west-1:123456789012:prod-alarms";
        let notified = FunctionEnvironment::from_lookup(|n| {
            (n == "TOKEN_ALARM_TOPIC_ARN").then(|| format!(" {topic}\n"))
        });
        assert_eq!(notified.alarm_topic_arn.as_deref(), Some(topic));
        let blank =
            FunctionEnvironment::from_lookup(|n| (n == "TOKEN_ALARM_TOPIC_ARN").then(String::new));
        assert_eq!(blank.alarm_topic_arn, None);
        let (config, names) = read.config().unwrap();
        assert_eq!(
            (config.issuer.as_str(), config.max_ttl),
            ("https://issuer.example", 1200)
        );
        assert_eq!(names.key_secret_id, "keys");
        let unissued = FunctionEnvironment::from_lookup(|n| {
            (n != "TOKEN_ISSUER").then(|| lookup(n)).flatten()
        });
        assert!(
            unissued
                .config()
                .unwrap_err()
                .to_string()
                .contains("TOKEN_ISSUER")
        );
        let bad = FunctionEnvironment::from_lookup(|n| {
            if n == "TOKEN_MAX_TTL" {
                Some("1h".into())
            } else {
                lookup(n)
            }
        });
        assert!(
            bad.config()
                .unwrap_err()
                .to_string()
                .contains("TOKEN_MAX_TTL")
        );
    }
}
