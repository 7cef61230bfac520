//! The AWS shape: DynamoDB and Secrets Manager adapters wired into the token service,
//! discovery and management, the counterpart of [`crate::embedded::Embedded`]. The Lambda
//! functions (feature `lambda`) serve its routers; `tokenctl --backend aws` uses its admin.
//!
//! Every SDK client of the shape is bounded in time ([`bounded_sdk_config`]): a stalled or
//! failing DynamoDB or Secrets Manager turns into `503` with `Retry-After` well within API
//! Gateway's 10 s integration timeout, never into its `504`.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;

#[cfg(feature = "secrets")]
use crate::admin::Admin;
use crate::clock::Clock;
use crate::config::ServiceConfig;
use crate::http::{Discovery, ScopesSupported};
use crate::issue::DECISION_DEADLINE;
#[cfg(feature = "secrets")]
use crate::issue::TokenService;
#[cfg(feature = "secrets")]
use crate::key_cache::KeyCache;
use crate::store::aws::{AwsResources, DynamoDbPublicKeyStore};
#[cfg(feature = "secrets")]
use crate::store::aws::{
    DynamoDbAssertionReplay, DynamoDbAuditLog, DynamoDbClientStore, DynamoDbRateLimits,
    SecretsManagerKeyStore,
};

/// Longest wait for a connection (TCP and TLS) to an AWS endpoint, per attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest one attempt of an SDK call may take, connection included. In-region DynamoDB and
/// Secrets Manager calls answer in tens of milliseconds; an attempt this slow is stalled.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest one SDK call may take, its retry and backoff included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts per SDK call: the first and one retry (a dropped connection, a `500`, a timed-out
/// attempt). More would not fit in [`OPERATION_TIMEOUT`] after a stalled attempt.
pub const MAX_ATTEMPTS: u32 = 2;
/// Longest backoff before the retry (the SDK's standard mode draws it at random below this).
pub const MAX_BACKOFF: Duration = Duration::from_millis(200);

/// The longest the token function waits on its dependencies for one request: the token
/// flow's [`DECISION_DEADLINE`], then one bounded audit write of the answer.
pub const TOKEN_DEPENDENCY_BOUND: Duration = DECISION_DEADLINE.saturating_add(OPERATION_TIMEOUT);
/// The longest the jwks function waits on its dependency: one bounded `Scan`.
pub const JWKS_DEPENDENCY_BOUND: Duration = OPERATION_TIMEOUT;

/// API Gateway's integration timeout and the functions' `Timeout` in `template.yaml`.
const INTEGRATION_TIMEOUT: Duration = Duration::from_secs(10);
// Well below: half of it, leaving room for a cold start and signing.
const _: () = assert!(2 * TOKEN_DEPENDENCY_BOUND.as_millis() <= INTEGRATION_TIMEOUT.as_millis());
const _: () = assert!(ATTEMPT_TIMEOUT.as_millis() < OPERATION_TIMEOUT.as_millis());

/// The per-call timeouts of every SDK client that serves requests.
pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .operation_timeout(OPERATION_TIMEOUT)
        .build()
}

/// Standard-mode retries (with its retry quota, so a failing dependency is not hammered),
/// [`MAX_ATTEMPTS`] per call.
pub fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_max_backoff(MAX_BACKOFF)
}

/// `sdk` with the shape's timeouts and retries, whatever the environment or profile set: the
/// one place they are applied, by [`AwsShape::new`] and by the Lambda functions' start.
pub fn bounded_sdk_config(sdk: &SdkConfig) -> SdkConfig {
    sdk.to_builder()
        .timeout_config(timeout_config())
        .retry_config(retry_config())
        .build()
}

/// The SDK clients and resource names every AWS adapter is built from; make it once per
/// process (a Lambda execution environment), outside the handler.
///
/// Without the feature `secrets` (the jwks function) the shape has no Secrets Manager client
/// and serves discovery only.
pub struct AwsShape {
    /// Service settings.
    pub config: Arc<ServiceConfig>,
    /// Table and secret names.
    pub resources: AwsResources,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    dynamodb: aws_sdk_dynamodb::Client,
    #[cfg(feature = "secrets")]
    secrets: aws_sdk_secretsmanager::Client,
}

impl AwsShape {
    /// Builds the SDK clients from one loaded SDK configuration, bounded in time by
    /// [`bounded_sdk_config`].
    pub fn new(
        sdk: &SdkConfig,
        resources: AwsResources,
        config: ServiceConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let sdk = bounded_sdk_config(sdk);
        Self {
            config: Arc::new(config),
            resources,
            clock,
            dynamodb: aws_sdk_dynamodb::Client::new(&sdk),
            #[cfg(feature = "secrets")]
            secrets: aws_sdk_secretsmanager::Client::new(&sdk),
        }
    }

    /// The shape with its DynamoDB client rebuilt from its own configuration as `customize`
    /// changes it, e.g. with an SDK interceptor (`config::Builder::interceptor`) through which a
    /// test observes every call the adapters make. Call it before building any service: each
    /// service takes its own handle of the client. [`new`](Self::new) alone is what the
    /// functions run.
    pub fn with_dynamodb_config(
        mut self,
        customize: impl FnOnce(aws_sdk_dynamodb::config::Builder) -> aws_sdk_dynamodb::config::Builder,
    ) -> Self {
        let builder = self.dynamodb.config().to_builder();
        self.dynamodb = aws_sdk_dynamodb::Client::from_conf(customize(builder).build());
        self
    }

    #[cfg(feature = "secrets")]
    fn clients(&self) -> Arc<DynamoDbClientStore> {
        Arc::new(DynamoDbClientStore::new(
            self.dynamodb.clone(),
            self.resources.clients_table.clone(),
        ))
    }

    #[cfg(feature = "secrets")]
    fn audit(&self) -> Arc<DynamoDbAuditLog> {
        Arc::new(DynamoDbAuditLog::new(
            self.dynamodb.clone(),
            self.resources.audit_table.clone(),
        ))
    }

    #[cfg(feature = "secrets")]
    fn rate_limits(&self) -> Arc<DynamoDbRateLimits> {
        Arc::new(DynamoDbRateLimits::new(
            self.dynamodb.clone(),
            self.resources.rate_limits_table.clone(),
        ))
    }

    fn public_keys(&self) -> Arc<DynamoDbPublicKeyStore> {
        Arc::new(DynamoDbPublicKeyStore::new(
            self.dynamodb.clone(),
            self.resources.public_keys_table.clone(),
        ))
    }

    #[cfg(feature = "secrets")]
    fn private_keys(&self) -> Arc<SecretsManagerKeyStore> {
        Arc::new(SecretsManagerKeyStore::new(
            self.secrets.clone(),
            self.resources.key_secret_id.clone(),
        ))
    }

    #[cfg(feature = "secrets")]
    /// The token service: clients, audit and rate-limit counters in DynamoDB, the key set
    /// cached from Secrets Manager (loaded by the first request that signs).
    pub fn token_service(&self) -> Arc<TokenService> {
        self.token_service_with(self.key_cache())
    }

    /// The token service with its key set loaded now, during the function's init, so that the
    /// first request does not wait for Secrets Manager. The load is one bounded SDK call
    /// ([`bounded_sdk_config`]); when it fails the init goes on with an empty cache, and the
    /// first request loads the set under the cache's usual rules (`key_cache`).
    #[cfg(feature = "secrets")]
    pub async fn token_service_loaded(&self) -> Arc<TokenService> {
        let keys = self.key_cache();
        if let Err(e) = keys.refresh().await {
            tracing::warn!(error = %e, "key set not loaded during init; the first request loads it");
        }
        self.token_service_with(keys)
    }

    #[cfg(feature = "secrets")]
    fn key_cache(&self) -> Arc<KeyCache> {
        let c = &self.config;
        let clock = self.clock.clone();
        KeyCache::new(
            self.private_keys(),
            clock,
            c.schedule,
            c.key_cache,
            c.key_max_stale,
        )
    }

    #[cfg(feature = "secrets")]
    fn token_service_with(&self, keys: Arc<KeyCache>) -> Arc<TokenService> {
        Arc::new(
            TokenService::new(
                self.config.clone(),
                self.clients(),
                self.audit(),
                self.rate_limits(),
                keys,
                self.clock.clone(),
            )
            .with_assertion_replay(Arc::new(DynamoDbAssertionReplay::new(
                self.dynamodb.clone(),
                self.resources.assertion_ids_table.clone(),
            ))),
        )
    }

    /// The discovery documents over the public-keys table only; `scopes_supported` is the
    /// configured list (empty when unset), since the jwks function may not read clients.
    pub fn discovery(&self) -> Arc<Discovery> {
        let scopes = self.config.scopes_supported.clone().unwrap_or_default();
        Arc::new(Discovery::new(
            self.config.clone(),
            self.public_keys(),
            ScopesSupported::Fixed(scopes),
            self.clock.clone(),
        ))
    }

    #[cfg(feature = "secrets")]
    /// Management operations over the AWS adapters, recorded under `actor` (seeding, CLI).
    pub fn admin(&self, actor: impl Into<String>) -> Admin {
        Admin {
            clients: self.clients(),
            audit: self.audit(),
            keys: self.private_keys(),
            public_keys: self.public_keys(),
            config: self.config.clone(),
            clock: self.clock.clone(),
            actor: actor.into(),
        }
    }
}
