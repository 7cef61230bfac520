//! Storage ports, one small trait per capability, and their implementations.
//!
//! Handlers depend on these traits only; each shape (embedded, AWS) chooses its adapters at
//! start-up. Every adapter must pass the same conformance tests (`tests/it/store_conformance.rs`).

pub mod aws;
mod expected;
#[cfg(test)]
pub(crate) mod fakes;
#[cfg(feature = "embedded")]
pub mod memory;
pub mod rotation;
#[cfg(feature = "embedded")]
pub mod sqlite;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::{AuditQuery, AuditRecord, Failures};
use crate::clients::{Client, SecretHash};
use crate::keys::{KeySet, PublicKeyRecord};

pub use expected::{Expected, ExpectedGuard};
pub use rotation::KeyRotation;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A record with this key exists already (creation never overwrites).
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The record is not there.
    #[error("{0} not found")]
    NotFound(String),
    /// The record changed since it was read (optimistic locking on `version`).
    #[error("{0} was changed by someone else; read it again and retry")]
    Conflict(String),
    /// The backend failed; the text is for logs and operators, never for API clients.
    #[error("storage backend error: {0}")]
    Backend(String),
}

/// Reading client records: all the token path may do with them, as its IAM policy allows
/// (DynamoDB `GetItem` on the clients table).
#[async_trait]
pub trait ClientReader: Send + Sync {
    /// The client, read fresh from the backend (never cached: disabling acts at once).
    async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError>;
}

/// Managing client records: `tokenctl`, first start, and the embedded shape's scope listing.
/// Reads too, since every change starts from the stored record.
#[async_trait]
pub trait ClientAdmin: ClientReader {
    /// Stores a new client; `AlreadyExists` if the id is taken.
    async fn create_client(&self, client: &Client) -> Result<(), StoreError>;
    /// Replaces the client if its stored `version` is `client.version - 1`; else `Conflict`
    /// (or `NotFound`).
    async fn update_client(&self, client: &Client) -> Result<(), StoreError>;
    /// Every client, ordered by id.
    async fn list_clients(&self) -> Result<Vec<Client>, StoreError>;
    /// Deletes the client if its stored `version` is `version`; else `Conflict` (or
    /// `NotFound`). Its audit records stay.
    async fn delete_client(&self, client_id: &str, version: u64) -> Result<(), StoreError>;
    /// Rebuilds the secret index from the client records (for secrets stored before the
    /// index existed); returns how many secrets it now names. Idempotent.
    async fn reindex_secrets(&self) -> Result<usize, StoreError>;
}

/// Where a secret is, found by its digest: one entry of the secret index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedSecret {
    /// The client holding the secret.
    pub client_id: String,
    /// The secret's public handle in that client's record.
    pub secret_id: String,
}

/// The secret index (DESIGN.md "Data model"): a secret's client and id by its digest, so a
/// leaked secret is found without a scan. Every client write keeps it in step with the
/// record (create, update, delete), in the same transaction.
#[async_trait]
pub trait SecretIndex: Send + Sync {
    /// The secret with this digest, if a client holds one.
    async fn find_secret(&self, hash: &SecretHash) -> Result<Option<IndexedSecret>, StoreError>;
}

/// The audit trail.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends one record; the caller does not answer before this succeeded.
    async fn append(&self, record: &AuditRecord) -> Result<(), StoreError>;
    /// Records matching the query, newest first.
    async fn query(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError>;
    /// The refused token requests ([`AuditRecord::is_failure`]) in `[since, until)`, under any
    /// client id or none, read through an index of refusals by time: the cost follows the
    /// number of refusals, never the size of the trail (DynamoDB: a sparse global secondary
    /// index, one `Query` per hour; SQLite: a partial index).
    async fn failures(
        &self,
        since: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Failures, StoreError>;
}

/// The private key set (Secrets Manager secret, or a table of the SQLite file).
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// The current key set (empty when none was created yet).
    async fn load_key_set(&self) -> Result<KeySet, StoreError>;
    /// Replaces the key set by `next` and makes the published keys exactly `next`'s public
    /// keys, in one atomic step, if the stored set is still `expected` (the set `next` was
    /// computed from); otherwise `Conflict`, and nothing is written. Two rotations that read
    /// the same set therefore never both succeed: neither key is lost, and the JWKS never
    /// misses a key of the private set.
    ///
    /// On AWS the signing-key secret has one writer, the rotation function (Secrets Manager's
    /// four-step protocol, `store::aws::protocol`); its adapter refuses this call. Rotations go
    /// through the [`KeyRotation`] port on both backends.
    async fn replace_key_set(&self, expected: &KeySet, next: &KeySet) -> Result<(), StoreError>;
}

/// Expiring counters for rate limits (DESIGN.md "Abuse protection"). Keys carry their window,
/// e.g. `issue#<client>#<window start>`; `expires_at` (epoch seconds) lets the backend drop them.
#[async_trait]
pub trait RateLimits: Send + Sync {
    /// Atomically adds one to `key` unless it already reached `limit`; whether it was added.
    async fn acquire(&self, key: &str, limit: u32, expires_at: i64) -> Result<bool, StoreError>;
    /// Atomically adds one to `key`.
    async fn increment(&self, key: &str, expires_at: i64) -> Result<(), StoreError>;
    /// The counter's value (0 when absent).
    async fn count(&self, key: &str) -> Result<u64, StoreError>;
    /// The values of several counters, in the order of `keys` (0 for an absent one), read
    /// consistently in one round trip where the backend can (DynamoDB: one `BatchGetItem`).
    async fn counts(&self, keys: &[String]) -> Result<Vec<u64>, StoreError> {
        let mut values = Vec::with_capacity(keys.len());
        for key in keys {
            values.push(self.count(key).await?);
        }
        Ok(values)
    }
}

/// The public keys (the public-keys table): all the JWKS function may read.
#[async_trait]
pub trait PublicKeyStore: Send + Sync {
    /// Every stored public key record.
    async fn public_keys(&self) -> Result<Vec<PublicKeyRecord>, StoreError>;
    /// Makes the stored records exactly `records` (adds new ones, removes the others).
    async fn replace_public_keys(&self, records: &[PublicKeyRecord]) -> Result<(), StoreError>;
}

/// One-time use of client assertion ids (RFC 7523 §3 item 7): the replay cache.
#[async_trait]
pub trait AssertionReplay: Send + Sync {
    /// Atomically records `key` until `expires_at` (epoch seconds) unless a record of it that
    /// has not expired at `now` exists; whether this call recorded it (its first use).
    async fn first_use(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError>;
}
