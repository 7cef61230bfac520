//! The AWS adapters of the store ports: DynamoDB tables and one Secrets Manager secret; and the
//! secret-scanning alarm's SNS topic.
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
//! | secret index | `secret_hash` (S: a secret's SHA-256 digest as stored) | `client_id` (S), `secret_id` (S) |
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
#[cfg(feature = "scanning")]
mod leak_alarm;
#[cfg(feature = "secrets")]
pub mod protocol;
mod public_keys;
mod rate_limits;
#[cfg(feature = "secrets")]
mod resources;
#[cfg(feature = "secrets")]
mod rotate;
mod secret_index;
#[cfg(feature = "secrets")]
mod secrets;
#[cfg(feature = "secrets")]
mod versions;

use std::fmt::Display;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::RequestId as _;

use super::StoreError;

/// The resource names the adapters are built from, declared with the settings.
pub use crate::config::AwsResources;
pub use assertion_ids::DynamoDbAssertionReplay;
pub use audit::{DynamoDbAuditLog, FAILURES_INDEX};
pub use clients::DynamoDbClientStore;
#[cfg(feature = "scanning")]
pub use leak_alarm::{QUIET_AFTER_FAILURE, SnsLeakAlarm};
pub use public_keys::DynamoDbPublicKeyStore;
pub use rate_limits::DynamoDbRateLimits;
#[cfg(feature = "secrets")]
pub use resources::create_resources;
#[cfg(feature = "secrets")]
pub use rotate::{SecretsManagerRotation, StepsRunner};
pub use secret_index::DynamoDbSecretIndex;
#[cfg(feature = "secrets")]
pub use secrets::SecretsManagerKeyStore;
#[cfg(feature = "secrets")]
pub use versions::SecretsManagerVersions;

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
