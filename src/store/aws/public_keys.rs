//! [`PublicKeyStore`] on a DynamoDB table: one item per key (partition key `kid`), all the JWKS
//! function may read.

use std::collections::HashSet;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client as DynamoDb;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use super::attrs::{self, Item, Reader, s};
use super::{AWSCURRENT, AWSPENDING, sdk_error};
use crate::keys::PublicKeyRecord;
use crate::store::{PublicKeyStore, StoreError};

const KEY: &str = "kid";

/// Most writes one replacement may make: DynamoDB's limit for one transaction.
const MAX_CHANGES: usize = 100;

/// Public key records in a DynamoDB table.
#[derive(Debug, Clone)]
pub struct DynamoDbPublicKeyStore {
    db: DynamoDb,
    table: String,
}

/// The attribute that records the stage of a key's set.
const STAGE: &str = "stage";
/// The attribute that records when a key's set became current, if after its activation.
const CURRENT_SINCE: &str = "current_since";

fn to_item(record: &PublicKeyRecord) -> Result<Item, StoreError> {
    let jwk = serde_json::to_string(&record.jwk)
        .map_err(|e| StoreError::Backend(format!("cannot serialise a JWK: {e}")))?;
    // The Secrets Manager stage of the key's set: a key retires only once its successor's
    // set is current (`store::aws::protocol`).
    let stage = if record.pending {
        AWSPENDING
    } else {
        AWSCURRENT
    };
    let mut item = Item::from([
        (KEY.to_owned(), s(&record.kid)),
        ("jwk".to_owned(), s(jwk)),
        ("created_at".to_owned(), attrs::time(record.created_at)?),
        ("activates_at".to_owned(), attrs::time(record.activates_at)?),
        (STAGE.to_owned(), s(stage)),
    ]);
    if let Some(since) = record.current_since {
        item.insert(CURRENT_SINCE.to_owned(), attrs::time(since)?);
    }
    Ok(item)
}

fn from_item(item: &Item, table: &str) -> Result<PublicKeyRecord, StoreError> {
    let r = Reader::new(item, table);
    // Items written before the stage was recorded were written by finished rotations.
    let stage = item.get(STAGE).and_then(|v| v.as_s().ok());
    Ok(PublicKeyRecord {
        kid: r.s(KEY)?,
        jwk: r.json("jwk")?,
        created_at: r.time("created_at")?,
        activates_at: r.time("activates_at")?,
        pending: stage.map(String::as_str) == Some(AWSPENDING),
        current_since: match item.contains_key(CURRENT_SINCE) {
            true => Some(r.time(CURRENT_SINCE)?),
            false => None,
        },
    })
}

fn build_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("cannot build a DynamoDB request: {e}"))
}

impl DynamoDbPublicKeyStore {
    /// The store on `table`, through `db`.
    pub fn new(db: DynamoDb, table: impl Into<String>) -> Self {
        Self {
            db,
            table: table.into(),
        }
    }

    fn put(&self, record: &PublicKeyRecord) -> Result<TransactWriteItem, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(to_item(record)?))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    fn delete(&self, kid: &str) -> Result<TransactWriteItem, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.table)
            .key(KEY, s(kid))
            .build()
            .map_err(build_error)?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }
}

#[async_trait]
impl PublicKeyStore for DynamoDbPublicKeyStore {
    async fn public_keys(&self) -> Result<Vec<PublicKeyRecord>, StoreError> {
        let mut pages = self
            .db
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut records = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| sdk_error("Scan", &self.table, e))?;
            records.push(from_item(&item, &self.table)?);
        }
        records.sort_by(|a, b| a.kid.cmp(&b.kid));
        Ok(records)
    }

    async fn replace_public_keys(&self, records: &[PublicKeyRecord]) -> Result<(), StoreError> {
        let keep: HashSet<&str> = records.iter().map(|r| r.kid.as_str()).collect();
        let stale: Vec<String> = self
            .public_keys()
            .await?
            .into_iter()
            .map(|r| r.kid)
            .filter(|kid| !keep.contains(kid.as_str()))
            .collect();
        let mut changes = records
            .iter()
            .map(|r| self.put(r))
            .collect::<Result<Vec<_>, _>>()?;
        for kid in &stale {
            changes.push(self.delete(kid)?);
        }
        if changes.is_empty() {
            return Ok(());
        }
        if changes.len() > MAX_CHANGES {
            return Err(StoreError::Backend(format!(
                "replacing the public keys needs {} writes, more than the {MAX_CHANGES} of one \
                 transaction",
                changes.len()
            )));
        }
        // One transaction, like the SQLite adapter's: a reader never sees a half-replaced set.
        self.db
            .transact_write_items()
            .set_transact_items(Some(changes))
            .send()
            .await
            .map_err(|e| sdk_error("TransactWriteItems", &self.table, e))?;
        Ok(())
    }
}
