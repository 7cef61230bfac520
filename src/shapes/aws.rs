//! The AWS shape: DynamoDB and Secrets Manager adapters wired into the token service,
//! discovery and management, the counterpart of [`crate::shapes::embedded::Embedded`]. The Lambda
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
#[cfg(feature = "secrets")]
pub use crate::store::aws::protocol::{RotationError, RotationProtocol, Step};
use crate::store::aws::{AwsResources, DynamoDbPublicKeyStore};
#[cfg(feature = "secrets")]
use crate::store::aws::{
    DynamoDbAssertionReplay, SecretsManagerKeyStore, SecretsManagerRotation,
    SecretsManagerVersions, StepsRunner,
};
#[cfg(any(feature = "secrets", feature = "scanning"))]
use crate::store::aws::{DynamoDbAuditLog, DynamoDbClientStore, DynamoDbRateLimits};

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

/// How long a key rotation started from outside the stack (`tokenctl keys rotate`) waits for
/// the rotation function by default.
pub const ROTATION_WAIT: Duration = Duration::from_secs(120);

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
    #[cfg(feature = "secrets")]
    rotation_steps: StepsRunner,
    /// Secrets Manager as the caller configured it, without the shape's bounds: a rotation
    /// started from outside the stack waits for the function up to its own `--wait`, and a
    /// bound made for answering requests would only turn one slow look into a failed rotation.
    #[cfg(feature = "secrets")]
    rotation_secrets: aws_sdk_secretsmanager::Client,
    #[cfg(feature = "cli")]
    sts: aws_sdk_sts::Client,
    #[cfg(feature = "scanning")]
    sns: aws_sdk_sns::Client,
    #[cfg(feature = "scanning")]
    alarm_topic_arn: Option<String>,
}

impl AwsShape {
    /// Builds the SDK clients from one loaded SDK configuration, bounded in time by
    /// [`bounded_sdk_config`]; only an operator's calls outside any request (a key rotation's
    /// wait, the caller's identity) keep the configuration's own timeouts.
    pub fn new(
        sdk: &SdkConfig,
        resources: AwsResources,
        config: ServiceConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let bounded = bounded_sdk_config(sdk);
        Self {
            config: Arc::new(config),
            resources,
            clock,
            dynamodb: aws_sdk_dynamodb::Client::new(&bounded),
            #[cfg(feature = "secrets")]
            secrets: aws_sdk_secretsmanager::Client::new(&bounded),
            #[cfg(feature = "secrets")]
            rotation_steps: StepsRunner::SecretsManager {
                wait: ROTATION_WAIT,
            },
            #[cfg(feature = "secrets")]
            rotation_secrets: aws_sdk_secretsmanager::Client::new(sdk),
            #[cfg(feature = "cli")]
            sts: aws_sdk_sts::Client::new(sdk),
            #[cfg(feature = "scanning")]
            sns: aws_sdk_sns::Client::new(&bounded),
            #[cfg(feature = "scanning")]
            alarm_topic_arn: None,
        }
    }

    /// The shape whose secret-scanning logic ([`secret_scanning`](Self::secret_scanning))
    /// publishes each leak to the SNS topic `topic_arn` (`TOKEN_ALARM_TOPIC_ARN`, the stack's
    /// alarm topic), with the shape's bounds.
    #[cfg(feature = "scanning")]
    pub fn with_alarm_topic(mut self, topic_arn: impl Into<String>) -> Self {
        self.alarm_topic_arn = Some(topic_arn.into());
        self
    }

    /// Whether a leak is published to an alarm topic.
    #[cfg(feature = "scanning")]
    pub fn notifies_leaks(&self) -> bool {
        self.alarm_topic_arn.is_some()
    }

    /// The shape over the SDK configuration of the environment and profiles (credentials,
    /// region, `AWS_ENDPOINT_URL`), loaded once: for `tokenctl --backend aws`.
    pub async fn load(
        resources: AwsResources,
        config: ServiceConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::new(&sdk, resources, config, clock)
    }

    /// The caller's principal ARN (STS `GetCallerIdentity`), the actor of the admin audit
    /// records `tokenctl` writes.
    #[cfg(feature = "cli")]
    pub async fn caller_arn(&self) -> Result<String, String> {
        let identity = self.sts.get_caller_identity().send().await.map_err(|e| {
            format!(
                "cannot identify the AWS caller (check credentials and region): {}",
                aws_sdk_sts::error::DisplayErrorContext(e)
            )
        })?;
        Ok(identity.arn().unwrap_or("unknown").to_owned())
    }

    /// The shape whose key rotations ([`admin`](Self::admin)) wait at most `wait` for the
    /// stack's rotation function (default [`ROTATION_WAIT`]).
    #[cfg(feature = "secrets")]
    pub fn with_rotation_wait(mut self, wait: Duration) -> Self {
        self.rotation_steps = StepsRunner::SecretsManager { wait };
        self
    }

    /// The shape whose key rotations run the rotation function's four steps in this process
    /// ([`rotation_protocol`](Self::rotation_protocol)), playing Secrets Manager's part: for an
    /// emulator that cannot invoke a function (moto). A deployed stack rotates through
    /// `RotateSecret`, as [`new`](Self::new) does.
    #[cfg(feature = "secrets")]
    pub fn with_rotation_in_process(mut self) -> Self {
        self.rotation_steps = StepsRunner::InProcess(Arc::new(self.rotation_protocol()));
        self
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

    #[cfg(any(feature = "secrets", feature = "scanning"))]
    fn clients(&self) -> Arc<DynamoDbClientStore> {
        Arc::new(DynamoDbClientStore::new(
            self.dynamodb.clone(),
            self.resources.clients_table.clone(),
            self.resources.secret_index_table.clone(),
        ))
    }

    #[cfg(any(feature = "secrets", feature = "scanning"))]
    fn audit(&self) -> Arc<DynamoDbAuditLog> {
        Arc::new(DynamoDbAuditLog::new(
            self.dynamodb.clone(),
            self.resources.audit_table.clone(),
        ))
    }

    #[cfg(any(feature = "secrets", feature = "scanning"))]
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

    /// The rotate-keys function's logic over the key secret's versions and the public-keys
    /// table, rotating with the shape's settings (`TOKEN_SIGNING_ALG`, the schedule).
    #[cfg(feature = "secrets")]
    pub fn rotation_protocol(&self) -> RotationProtocol {
        RotationProtocol {
            secret: Arc::new(SecretsManagerVersions::new(
                self.secrets.clone(),
                self.resources.key_secret_id.clone(),
            )),
            public_keys: self.public_keys(),
            schedule: self.config.schedule,
            alg: self.config.signing_alg,
            clock: self.clock.clone(),
        }
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
            rotation: Arc::new(SecretsManagerRotation::new(
                self.rotation_secrets.clone(),
                self.resources.key_secret_id.clone(),
                self.rotation_steps.clone(),
                self.clock.clone(),
            )),
            public_keys: self.public_keys(),
            config: self.config.clone(),
            clock: self.clock.clone(),
            actor: actor.into(),
        }
    }

    /// The secret-scanning function's logic: the secret index, the clients it updates, the
    /// audit trail and the refusal budget in DynamoDB; a leak's alarm is a log warning, the
    /// `leaked_secrets` metric (which the stack's `leaked-secret` alarm watches) and, with an
    /// alarm topic ([`with_alarm_topic`](Self::with_alarm_topic)), one SNS notification.
    #[cfg(feature = "scanning")]
    pub fn secret_scanning(&self) -> Arc<crate::scanning::SecretScanning> {
        let alarm: Arc<dyn crate::scanning::LeakAlarm> = match &self.alarm_topic_arn {
            Some(arn) => Arc::new(crate::store::aws::SnsLeakAlarm::new(
                self.sns.clone(),
                arn.clone(),
            )),
            None => Arc::new(crate::scanning::LogAlarm),
        };
        Arc::new(crate::scanning::SecretScanning::new(
            self.config.clone(),
            Arc::new(crate::store::aws::DynamoDbSecretIndex::new(
                self.dynamodb.clone(),
                self.resources.secret_index_table.clone(),
            )),
            self.clients(),
            self.audit(),
            self.rate_limits(),
            alarm,
            self.clock.clone(),
        ))
    }

    /// The token function's router: `POST /oauth/token`, with the key set loaded before the
    /// first request ([`AwsShape::token_service_loaded`]).
    #[cfg(all(feature = "secrets", feature = "lambda"))]
    pub async fn token_router(&self) -> axum::Router {
        crate::shapes::lambda::token_router(self.token_service_loaded().await)
    }

    /// The jwks function's router: the `/.well-known/` documents.
    #[cfg(feature = "lambda")]
    pub fn discovery_router(&self) -> axum::Router {
        crate::shapes::lambda::discovery_router(self.discovery())
    }
}
