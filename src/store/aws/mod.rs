//! The AWS adapters of the store ports: DynamoDB tables and one Secrets Manager secret.
//!
//! Every adapter takes an SDK client built once per process (from
//! `aws_config::load_defaults(BehaviorVersion::latest())`, so `AWS_ENDPOINT_URL` points them at
//! an emulator) and the name of its own resource. The items hold the same records as the SQLite
//! adapter, laid out as follows (`docs/aws-store.md` has the operator's view):
//!
//! | table / secret | key | attributes |
//! |---|---|---|
//! | clients | `client_id` (S) | `version` (N), `record` (S: the [`Client`](crate::clients::Client) as JSON) |
//! | audit | `client_id` (S, `-` when none), `sk` (S: `<RFC 3339 ms>#<request id>`) | one attribute per [`AuditRecord`](crate::audit::AuditRecord) field, `expires_at` (N, TTL) |
//! | public keys | `kid` (S) | `jwk` (S: JSON), `created_at`, `activates_at` (S: RFC 3339), `stage` (S: `AWSCURRENT` or `AWSPENDING`, the stage of the key's set) |
//! | rate limits | `key` (S: e.g. `issue#<client>#<window>`) | `count` (N), `expires_at` (N, TTL) |
//! | assertion ids | `key` (S: `<client id length>:<client id>:<jti>`) | `expires_at` (N, TTL) |
//! | key secret | — | `SecretString` = [`KeySet::to_json`](crate::keys::KeySet::to_json) |
//!
//! A client is one JSON attribute beside `version` because it is always read and written whole,
//! and the optimistic lock needs only `version` to be a separate attribute.

/// Staging label of the live version of a secret (Secrets Manager).
pub const AWSCURRENT: &str = "AWSCURRENT";
/// Staging label of the version being rotated in.
pub const AWSPENDING: &str = "AWSPENDING";

mod assertion_ids;
mod attrs;
mod audit;
mod clients;
#[cfg(feature = "secrets")]
pub mod protocol;
mod public_keys;
mod rate_limits;
#[cfg(feature = "secrets")]
mod resources;
#[cfg(feature = "secrets")]
mod rotate;
#[cfg(feature = "secrets")]
mod secrets;
#[cfg(feature = "secrets")]
mod versions;

use std::fmt::Display;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::RequestId as _;

use crate::config::ConfigError;

use super::StoreError;

pub use assertion_ids::DynamoDbAssertionReplay;
pub use audit::{DynamoDbAuditLog, FAILURES_INDEX};
pub use clients::DynamoDbClientStore;
pub use public_keys::DynamoDbPublicKeyStore;
pub use rate_limits::DynamoDbRateLimits;
#[cfg(feature = "secrets")]
pub use resources::create_resources;
#[cfg(feature = "secrets")]
pub use rotate::{RotateError, rotate_now};
#[cfg(feature = "secrets")]
pub use secrets::SecretsManagerKeyStore;
#[cfg(feature = "secrets")]
pub use versions::SecretsManagerVersions;

/// Environment variable naming the clients table.
pub const CLIENTS_TABLE_VAR: &str = "TOKEN_CLIENTS_TABLE";
/// Environment variable naming the audit table.
pub const AUDIT_TABLE_VAR: &str = "TOKEN_AUDIT_TABLE";
/// Environment variable naming the public-keys table.
pub const PUBLIC_KEYS_TABLE_VAR: &str = "TOKEN_PUBLIC_KEYS_TABLE";
/// Environment variable naming the rate-limits table.
pub const RATE_LIMITS_TABLE_VAR: &str = "TOKEN_RATE_LIMITS_TABLE";
/// Environment variable naming the table of used client assertion ids.
pub const ASSERTION_IDS_TABLE_VAR: &str = "TOKEN_ASSERTION_IDS_TABLE";
/// Environment variable naming the key set secret (name or ARN).
pub const KEY_SECRET_ID_VAR: &str = "TOKEN_KEY_SECRET_ID";

/// The names of the AWS resources the adapters use (template outputs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsResources {
    /// DynamoDB table of client records.
    pub clients_table: String,
    /// DynamoDB table of audit records (TTL on `expires_at`).
    pub audit_table: String,
    /// DynamoDB table of public key records.
    pub public_keys_table: String,
    /// DynamoDB table of rate-limit counters (TTL on `expires_at`).
    pub rate_limits_table: String,
    /// DynamoDB table of used client assertion ids (TTL on `expires_at`).
    pub assertion_ids_table: String,
    /// Secrets Manager secret holding the private key set (name or ARN).
    pub key_secret_id: String,
}

impl AwsResources {
    /// From `TOKEN_CLIENTS_TABLE`, `TOKEN_AUDIT_TABLE`, `TOKEN_PUBLIC_KEYS_TABLE`,
    /// `TOKEN_RATE_LIMITS_TABLE`, `TOKEN_ASSERTION_IDS_TABLE` and `TOKEN_KEY_SECRET_ID`; a missing or empty variable is an
    /// error naming it.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](Self::from_env), reading the variables through `lookup` (for tests,
    /// which must not change the process environment).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| ConfigError::Invalid(format!("{name} is required (not set)")))
        };
        Ok(Self {
            clients_table: var(CLIENTS_TABLE_VAR)?,
            audit_table: var(AUDIT_TABLE_VAR)?,
            public_keys_table: var(PUBLIC_KEYS_TABLE_VAR)?,
            rate_limits_table: var(RATE_LIMITS_TABLE_VAR)?,
            assertion_ids_table: var(ASSERTION_IDS_TABLE_VAR)?,
            key_secret_id: var(KEY_SECRET_ID_VAR)?,
        })
    }
}

/// A failed SDK call as a backend error: the operation, the resource, and for a service error
/// its code, message and request id; otherwise the error's display chain.
///
/// The raw response is left out on purpose: an error body may echo an item (a failed
/// condition returning the old item) or a secret's value (a response that did not parse).
fn sdk_error<E>(operation: &str, resource: &str, error: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let request_id = error.request_id().unwrap_or("none").to_owned();
    let detail = match &error {
        SdkError::ServiceError(service) => {
            let e = service.err();
            format!(
                "{}: {}",
                e.code().unwrap_or("unknown error"),
                e.message().unwrap_or("no message")
            )
        }
        SdkError::ResponseError(_) => match std::error::Error::source(&error) {
            Some(cause) => format!("unreadable response: {}", display_chain(cause)),
            None => "unreadable response".to_owned(),
        },
        other => DisplayErrorContext(other).to_string(),
    };
    StoreError::Backend(format!(
        "{operation} on {resource}: {detail} (request id {request_id})"
    ))
}

/// The outcome of a conditional write: `Ok(true)` when it was made, `Ok(false)` when its
/// condition did not hold (the expected answer of a full counter or a used id), any other
/// failure as a [`StoreError`].
fn conditional_write<T, E>(
    result: Result<T, SdkError<E>>,
    operation: &str,
    resource: &str,
) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match result {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error().and_then(ProvideErrorMetadata::code)
                == Some("ConditionalCheckFailedException") =>
        {
            Ok(false)
        }
        Err(e) => Err(sdk_error(operation, resource, e)),
    }
}

/// The `Display` texts of an error and its sources, without any `Debug` output.
fn display_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// A stored item that does not have the expected shape. Names the attribute, never its value.
fn malformed(resource: &str, what: impl Display) -> StoreError {
    StoreError::Backend(format!("malformed item in {resource}: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup(missing: &'static str) -> impl Fn(&str) -> Option<String> {
        move |name| (name != missing).then(|| format!("{name}-value"))
    }

    #[test]
    fn resources_come_from_the_six_variables() {
        let r = AwsResources::from_lookup(lookup("")).unwrap();
        assert_eq!(r.clients_table, "TOKEN_CLIENTS_TABLE-value");
        assert_eq!(r.audit_table, "TOKEN_AUDIT_TABLE-value");
        assert_eq!(r.public_keys_table, "TOKEN_PUBLIC_KEYS_TABLE-value");
        assert_eq!(r.rate_limits_table, "TOKEN_RATE_LIMITS_TABLE-value");
        assert_eq!(r.assertion_ids_table, "TOKEN_ASSERTION_IDS_TABLE-value");
        assert_eq!(r.key_secret_id, "TOKEN_KEY_SECRET_ID-value");
    }

    #[test]
    fn a_missing_variable_is_named() {
        for var in [
            CLIENTS_TABLE_VAR,
            AUDIT_TABLE_VAR,
            PUBLIC_KEYS_TABLE_VAR,
            RATE_LIMITS_TABLE_VAR,
            ASSERTION_IDS_TABLE_VAR,
            KEY_SECRET_ID_VAR,
        ] {
            let err = AwsResources::from_lookup(lookup(var)).unwrap_err();
            assert!(err.to_string().contains(var), "{err}");
        }
        let blank = AwsResources::from_lookup(|n| (n != AUDIT_TABLE_VAR).then(String::new));
        assert!(blank.unwrap_err().to_string().contains(CLIENTS_TABLE_VAR));
    }
}
