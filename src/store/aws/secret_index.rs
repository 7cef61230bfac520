//! The secret index on DynamoDB: one item per secret (partition key `secret_hash`, the
//! secret's SHA-256 digest as stored), naming its client and secret id. The client store
//! writes these items in the same transaction as the client record
//! ([`super::DynamoDbClientStore`]); this adapter only reads them.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client as DynamoDb;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use super::attrs::{Item, Reader, s};
use super::sdk_error;
use crate::clients::SecretHash;
use crate::store::{IndexedSecret, SecretIndex, StoreError};

/// The partition key of an index item.
pub(super) const KEY: &str = "secret_hash";
const CLIENT_ID: &str = "client_id";
const SECRET_ID: &str = "secret_id";

fn build_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("cannot build a DynamoDB request: {e}"))
}

/// The item naming `secret_id` of `client_id` under `hash`.
pub(super) fn item(hash: &str, client_id: &str, secret_id: &str) -> Item {
    Item::from([
        (KEY.to_owned(), s(hash)),
        (CLIENT_ID.to_owned(), s(client_id)),
        (SECRET_ID.to_owned(), s(secret_id)),
    ])
}

/// A transaction step that writes the index item of one secret.
pub(super) fn put(
    table: &str,
    hash: &str,
    client_id: &str,
    secret_id: &str,
) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item(hash, client_id, secret_id)))
        .build()
        .map_err(build_error)?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// A transaction step that removes the index item of one secret.
pub(super) fn delete(table: &str, hash: &str) -> Result<TransactWriteItem, StoreError> {
    let delete = Delete::builder()
        .table_name(table)
        .key(KEY, s(hash))
        .build()
        .map_err(build_error)?;
    Ok(TransactWriteItem::builder().delete(delete).build())
}

/// The entry an index item holds.
pub(super) fn entry(item: &Item, table: &str) -> Result<(String, IndexedSecret), StoreError> {
    let r = Reader::new(item, table);
    Ok((
        r.s(KEY)?,
        IndexedSecret {
            client_id: r.s(CLIENT_ID)?,
            secret_id: r.s(SECRET_ID)?,
        },
    ))
}

/// Reads the secret index table (`GetItem` only, as the secret-scanning function's IAM).
#[derive(Debug, Clone)]
pub struct DynamoDbSecretIndex {
    db: DynamoDb,
    table: String,
}

impl DynamoDbSecretIndex {
    /// The index on `table`, through `db`.
    pub fn new(db: DynamoDb, table: impl Into<String>) -> Self {
        Self {
            db,
            table: table.into(),
        }
    }
}

#[async_trait]
impl SecretIndex for DynamoDbSecretIndex {
    async fn find_secret(&self, hash: &SecretHash) -> Result<Option<IndexedSecret>, StoreError> {
        let out = self
            .db
            .get_item()
            .table_name(&self.table)
            .key(KEY, s(hash.as_str()))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", &self.table, e))?;
        out.item()
            .map(|item| entry(item, &self.table).map(|(_, e)| e))
            .transpose()
    }
}
