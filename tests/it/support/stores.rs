//! Every store port on a fresh backend: SQLite in a temporary file, or DynamoDB and Secrets
//! Manager on the shared moto server under random resource names.

use std::sync::Arc;

use token_service::admin::{Admin, NewClient};
use token_service::clock::Clock;
use token_service::config::ServiceConfig;
use token_service::encoding::random_b64url;
use token_service::issue::TokenService;
use token_service::key_cache::KeyCache;
use token_service::keys::SigningAlg;
use token_service::store::aws::protocol::VersionedSecret;
use token_service::store::aws::{
    AwsResources, DynamoDbAssertionReplay, DynamoDbAuditLog, DynamoDbClientStore,
    DynamoDbPublicKeyStore, DynamoDbRateLimits, DynamoDbSecretIndex, SecretsManagerKeyStore,
    SecretsManagerVersions, create_resources,
};
use token_service::store::memory::MemoryRateLimits;
use token_service::store::rotation::KeySetSwap;
use token_service::store::sqlite::SqliteStore;
use token_service::store::{
    AssertionReplay, AuditLog, ClientAdmin, KeyStore, PublicKeyStore, RateLimits, SecretIndex,
};

use super::moto;
use super::stack::basic_header;

/// The four ports of one backend, plus a second, independent client store on the same data
/// (another connection, or another Lambda instance's SDK client).
pub struct Stores {
    /// Client records.
    pub clients: Arc<dyn ClientAdmin>,
    /// The same client records through another handle.
    pub other_clients: Arc<dyn ClientAdmin>,
    /// The secret index, kept in step by `clients`.
    pub secrets: Arc<dyn SecretIndex>,
    /// The audit trail.
    pub audit: Arc<dyn AuditLog>,
    /// The private key set.
    pub keys: Arc<dyn KeyStore>,
    /// The public keys.
    pub public_keys: Arc<dyn PublicKeyStore>,
    /// Rate-limit counters.
    pub limits: Arc<dyn RateLimits>,
    /// Used client assertion ids.
    pub assertion_ids: Arc<dyn AssertionReplay>,
    /// The key secret's versions, where keys rotate through the Secrets Manager protocol.
    pub versions: Option<Arc<dyn VersionedSecret>>,
    /// How many token requests a concurrency test sends at once: enough to race well past a
    /// limit of ten, and few enough that the backend answers each within the token path's
    /// decision deadline. The emulator answers its calls one at a time, about five per
    /// refused request, so 64 at once on two cores run past the deadline into 503s.
    pub racers: usize,
    /// Keeps the backend's temporary files alive.
    _dir: Option<tempfile::TempDir>,
    /// Keeps a test's own emulator running.
    _emulator: Option<Arc<moto::Dedicated>>,
}

impl Stores {
    /// The token service over these stores, as a shape builds it (no `private_key_jwt`).
    pub fn token_service(&self, config: &ServiceConfig, clock: Arc<dyn Clock>) -> TokenService {
        let (schedule, ttl, stale) = (config.schedule, config.key_cache, config.key_max_stale);
        let keys = KeyCache::new(self.keys.clone(), clock.clone(), schedule, ttl, stale);
        TokenService::new(
            Arc::new(config.clone()),
            self.clients.clone(),
            self.audit.clone(),
            self.limits.clone(),
            keys,
            clock,
        )
    }
}

impl Stores {
    /// The administration API over these stores, acting as `actor`, rotating keys with
    /// `config`'s algorithm and schedule.
    pub fn admin(&self, config: &ServiceConfig, clock: Arc<dyn Clock>, actor: &str) -> Admin {
        Admin {
            clients: self.clients.clone(),
            audit: self.audit.clone(),
            rotation: Arc::new(KeySetSwap::new(
                self.keys.clone(),
                config.signing_alg,
                config.schedule,
                clock.clone(),
            )),
            public_keys: self.public_keys.clone(),
            config: Arc::new(config.clone()),
            clock,
            actor: actor.to_owned(),
        }
    }
}

/// Creates client `svc` (scope `a`, audience `https://api.test/`) and returns its `Basic`
/// authorization header.
pub async fn svc_client(admin: &Admin) -> String {
    let (_, secret) = admin
        .create_client(NewClient {
            client_id: Some("svc".into()),
            name: "svc".into(),
            scopes: vec!["a".into()],
            audiences: vec!["https://api.test/".into()],
            ..Default::default()
        })
        .await
        .expect("create client svc");
    basic_header("svc", secret.expose())
}

/// A fresh SQLite store in a temporary directory.
pub async fn sqlite() -> Stores {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("store.db");
    let store = Arc::new(SqliteStore::open(&path).expect("open SQLite store"));
    let other = Arc::new(SqliteStore::open(&path).expect("reopen SQLite store"));
    Stores {
        clients: store.clone(),
        other_clients: other,
        secrets: store.clone(),
        audit: store.clone(),
        keys: store.clone(),
        public_keys: store.clone(),
        assertion_ids: store.clone(),
        limits: store,
        versions: None,
        racers: 64,
        _dir: Some(dir),
        _emulator: None,
    }
}

/// The embedded shape's ports: SQLite for all but the rate limits, which are kept in memory
/// and expire on `clock`.
pub async fn embedded(clock: Arc<dyn Clock>) -> Stores {
    Stores {
        limits: Arc::new(MemoryRateLimits::new(clock)),
        ..sqlite().await
    }
}

/// Random resource names, so that tests sharing one moto never see each other's data.
pub fn random_resources() -> AwsResources {
    // base64url characters are all valid in table and secret names.
    let run = random_b64url(9);
    AwsResources {
        clients_table: format!("test-{run}-clients"),
        audit_table: format!("test-{run}-audit"),
        public_keys_table: format!("test-{run}-public-keys"),
        rate_limits_table: format!("test-{run}-rate-limits"),
        assertion_ids_table: format!("test-{run}-assertion-ids"),
        secret_index_table: format!("test-{run}-secret-index"),
        key_secret_id: format!("test-{run}-keys"),
    }
}

/// Fresh tables and secret on moto, created by `create_resources`.
pub async fn aws() -> Stores {
    aws_at(moto::endpoint(), None).await
}

/// Like [`aws`], on an emulator of the test's own ([`moto::Dedicated`]): for tests that send
/// many requests at once.
pub async fn aws_alone() -> Stores {
    let emulator = Arc::new(moto::Dedicated::start());
    let url = emulator.url().to_owned();
    aws_at(&url, Some(emulator)).await
}

/// The AWS stores on the emulator at `url`, keeping `emulator` alive with them.
async fn aws_at(url: &str, emulator: Option<Arc<moto::Dedicated>>) -> Stores {
    let sdk = moto::sdk_config_at(url).await;
    let names = random_resources();
    create_resources(&sdk, &names)
        .await
        .expect("create the tables and the secret");
    let db = aws_sdk_dynamodb::Client::new(&sdk);
    // A second SDK client, as another Lambda instance would have.
    let other_db = aws_sdk_dynamodb::Client::new(&moto::sdk_config_at(url).await);
    let sm = aws_sdk_secretsmanager::Client::new(&sdk);
    let sm_versions = sm.clone();
    Stores {
        clients: Arc::new(DynamoDbClientStore::new(
            db.clone(),
            &names.clients_table,
            &names.secret_index_table,
        )),
        other_clients: Arc::new(DynamoDbClientStore::new(
            other_db,
            &names.clients_table,
            &names.secret_index_table,
        )),
        secrets: Arc::new(DynamoDbSecretIndex::new(
            db.clone(),
            &names.secret_index_table,
        )),
        audit: Arc::new(DynamoDbAuditLog::new(db.clone(), &names.audit_table)),
        keys: Arc::new(SecretsManagerKeyStore::new(sm, &names.key_secret_id)),
        public_keys: Arc::new(DynamoDbPublicKeyStore::new(
            db.clone(),
            &names.public_keys_table,
        )),
        assertion_ids: Arc::new(DynamoDbAssertionReplay::new(
            db.clone(),
            &names.assertion_ids_table,
        )),
        limits: Arc::new(DynamoDbRateLimits::new(db, &names.rate_limits_table)),
        versions: Some(Arc::new(SecretsManagerVersions::new(
            sm_versions,
            &names.key_secret_id,
        ))),
        racers: 24,
        _dir: None,
        _emulator: emulator,
    }
}

impl Stores {
    /// One key rotation at `clock`'s time, as the backend's own writer does it: an atomic
    /// replace on SQLite, the four-step rotation protocol on Secrets Manager (where the key
    /// store refuses writes). Returns the new set.
    pub async fn rotate_keys(
        &self,
        schedule: token_service::keys::Schedule,
        clock: Arc<dyn token_service::clock::Clock>,
    ) -> token_service::keys::KeySet {
        self.rotate_keys_to(SigningAlg::default(), schedule, clock)
            .await
    }

    /// [`rotate_keys`](Self::rotate_keys) whose new key signs with `alg`
    /// (`TOKEN_SIGNING_ALG` of the backend's writer).
    pub async fn rotate_keys_to(
        &self,
        alg: SigningAlg,
        schedule: token_service::keys::Schedule,
        clock: Arc<dyn token_service::clock::Clock>,
    ) -> token_service::keys::KeySet {
        use token_service::store::aws::protocol::RotationProtocol;
        let Some(versions) = &self.versions else {
            let current = self.keys.load_key_set().await.unwrap();
            let next = current.rotated_to(alg, clock.now(), &schedule).unwrap();
            self.keys.replace_key_set(&current, &next).await.unwrap();
            return next;
        };
        let rotation = RotationProtocol {
            secret: versions.clone(),
            public_keys: self.public_keys.clone(),
            schedule,
            alg,
            clock,
        };
        // Secrets Manager version ids are 32 to 64 characters.
        let token = random_b64url(24);
        rotation.run_all(&token).await.unwrap();
        self.keys.load_key_set().await.unwrap()
    }
}

/// One run of the rotation protocol on the stack `names` at `clock`'s time, as Secrets
/// Manager runs the rotation function; the first run creates the first key.
pub async fn rotate_keys_on(
    sdk: &aws_config::SdkConfig,
    names: &AwsResources,
    clock: Arc<dyn token_service::clock::Clock>,
) {
    let rotation = token_service::store::aws::protocol::RotationProtocol {
        secret: Arc::new(SecretsManagerVersions::new(
            aws_sdk_secretsmanager::Client::new(sdk),
            &names.key_secret_id,
        )),
        public_keys: Arc::new(DynamoDbPublicKeyStore::new(
            aws_sdk_dynamodb::Client::new(sdk),
            &names.public_keys_table,
        )),
        schedule: token_service::config::ServiceConfig::for_tests().schedule,
        alg: SigningAlg::default(),
        clock,
    };
    rotation
        .run_all(&random_b64url(24))
        .await
        .expect("the rotation protocol runs");
}
