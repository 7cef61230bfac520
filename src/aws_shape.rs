//! The AWS shape: DynamoDB and Secrets Manager adapters wired into the token service,
//! discovery and management, the counterpart of [`crate::embedded::Embedded`]. The Lambda
//! functions (feature `lambda`) serve its routers; `tokenctl --backend aws` uses its admin.

use std::sync::Arc;

use crate::admin::Admin;
use crate::clock::Clock;
use crate::config::ServiceConfig;
use crate::http::{Discovery, ScopesSupported};
use crate::issue::TokenService;
use crate::keys::KeyCache;
use crate::store::aws::{
    AwsResources, DynamoDbAuditLog, DynamoDbClientStore, DynamoDbPublicKeyStore,
    DynamoDbRateLimits, SecretsManagerKeyStore,
};

/// The SDK clients and resource names every AWS adapter is built from; make it once per
/// process (a Lambda execution environment), outside the handler.
pub struct AwsShape {
    /// Service settings.
    pub config: Arc<ServiceConfig>,
    /// Table and secret names.
    pub resources: AwsResources,
    /// Time source.
    pub clock: Arc<dyn Clock>,
    dynamodb: aws_sdk_dynamodb::Client,
    secrets: aws_sdk_secretsmanager::Client,
}

impl AwsShape {
    /// Builds the SDK clients from one loaded SDK configuration.
    pub fn new(
        sdk: &aws_config::SdkConfig,
        resources: AwsResources,
        config: ServiceConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            config: Arc::new(config),
            resources,
            clock,
            dynamodb: aws_sdk_dynamodb::Client::new(sdk),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
        }
    }

    fn clients(&self) -> Arc<DynamoDbClientStore> {
        Arc::new(DynamoDbClientStore::new(
            self.dynamodb.clone(),
            self.resources.clients_table.clone(),
        ))
    }

    fn audit(&self) -> Arc<DynamoDbAuditLog> {
        Arc::new(DynamoDbAuditLog::new(
            self.dynamodb.clone(),
            self.resources.audit_table.clone(),
        ))
    }

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

    fn private_keys(&self) -> Arc<SecretsManagerKeyStore> {
        Arc::new(SecretsManagerKeyStore::new(
            self.secrets.clone(),
            self.resources.key_secret_id.clone(),
        ))
    }

    /// The token service: clients, audit and rate-limit counters in DynamoDB, the key set
    /// cached from Secrets Manager.
    pub fn token_service(&self) -> Arc<TokenService> {
        let keys = KeyCache::from_config(self.private_keys(), self.clock.clone(), &self.config);
        Arc::new(TokenService::new(
            self.config.clone(),
            self.clients(),
            self.audit(),
            self.rate_limits(),
            keys,
            self.clock.clone(),
        ))
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
