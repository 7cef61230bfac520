//! [`RateLimits`] on a DynamoDB table: one item per counter, changed only by atomic
//! `UpdateItem` calls (a conditional one for limits), removed by TTL on `expires_at`; several
//! counters read in one consistent `BatchGetItem`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client as DynamoDb;
use aws_sdk_dynamodb::types::KeysAndAttributes;

use super::attrs::{Item, Reader, n, s};
use super::{conditional_write, sdk_error};
use crate::store::{RateLimits, StoreError};

const KEY: &str = "key";
const COUNT: &str = "count";
const EXPIRES_AT: &str = "expires_at";

/// Most keys DynamoDB reads in one `BatchGetItem`.
const BATCH_LIMIT: usize = 100;
/// Calls per batch of keys: the first, and retries of keys DynamoDB left unprocessed (it does
/// under throttling), each after a short pause as DynamoDB advises.
const BATCH_ATTEMPTS: u32 = 3;
const BATCH_PAUSE: Duration = Duration::from_millis(20);

/// Rate-limit counters in a DynamoDB table (partition key `key`).
#[derive(Debug, Clone)]
pub struct DynamoDbRateLimits {
    db: DynamoDb,
    table: String,
}

impl DynamoDbRateLimits {
    /// The counters in `table`, through `db`.
    pub fn new(db: DynamoDb, table: impl Into<String>) -> Self {
        Self {
            db,
            table: table.into(),
        }
    }

    fn add_one(
        &self,
        key: &str,
        expires_at: i64,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.db
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(key))
            .update_expression("ADD #c :one SET #e = if_not_exists(#e, :expires)")
            .expression_attribute_names("#c", COUNT)
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":expires", n(expires_at))
    }

    /// The counters of up to [`BATCH_LIMIT`] distinct keys, found ones only.
    async fn batch(
        &self,
        keys: &[&str],
        found: &mut HashMap<String, u64>,
    ) -> Result<(), StoreError> {
        let mut pending: Vec<Item> = keys
            .iter()
            .map(|k| Item::from([(KEY.to_owned(), s(*k))]))
            .collect();
        for attempt in 0..BATCH_ATTEMPTS {
            if attempt > 0 {
                tokio::time::sleep(BATCH_PAUSE * attempt).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(pending))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Backend(format!("BatchGetItem request: {e}")))?;
            let out = self
                .db
                .batch_get_item()
                .request_items(&self.table, request)
                .send()
                .await
                .map_err(|e| sdk_error("BatchGetItem", &self.table, e))?;
            for item in out
                .responses()
                .and_then(|r| r.get(&self.table))
                .into_iter()
                .flatten()
            {
                let r = Reader::new(item, &self.table);
                found.insert(r.s(KEY)?, r.i64(COUNT)?.max(0) as u64);
            }
            pending = out
                .unprocessed_keys()
                .and_then(|u| u.get(&self.table))
                .map(|k| k.keys().to_vec())
                .unwrap_or_default();
            if pending.is_empty() {
                return Ok(());
            }
        }
        Err(StoreError::Backend(format!(
            "BatchGetItem on {}: {} keys still unprocessed after {BATCH_ATTEMPTS} calls",
            self.table,
            pending.len()
        )))
    }
}

#[async_trait]
impl RateLimits for DynamoDbRateLimits {
    async fn acquire(&self, key: &str, limit: u32, expires_at: i64) -> Result<bool, StoreError> {
        // The condition and the increment are one atomic operation on the item: concurrent
        // callers can never together take more than `limit`.
        let result = self
            .add_one(key, expires_at)
            .condition_expression("attribute_not_exists(#c) OR #c < :limit")
            .expression_attribute_values(":limit", n(limit))
            .send()
            .await;
        conditional_write(result, "UpdateItem", &self.table)
    }

    async fn increment(&self, key: &str, expires_at: i64) -> Result<(), StoreError> {
        self.add_one(key, expires_at)
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem", &self.table, e))?;
        Ok(())
    }

    async fn count(&self, key: &str) -> Result<u64, StoreError> {
        let out = self
            .db
            .get_item()
            .table_name(&self.table)
            .key(KEY, s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", &self.table, e))?;
        match out.item() {
            None => Ok(0),
            Some(item) => Ok(Reader::new(item, &self.table).i64(COUNT)?.max(0) as u64),
        }
    }

    async fn counts(&self, keys: &[String]) -> Result<Vec<u64>, StoreError> {
        // DynamoDB refuses a batch that names a key twice, or an empty key.
        let mut distinct: Vec<&str> = keys
            .iter()
            .map(String::as_str)
            .filter(|k| !k.is_empty())
            .collect();
        distinct.sort_unstable();
        distinct.dedup();
        let mut found = HashMap::new();
        for chunk in distinct.chunks(BATCH_LIMIT) {
            self.batch(chunk, &mut found).await?;
        }
        Ok(keys
            .iter()
            .map(|k| found.get(k).copied().unwrap_or(0))
            .collect())
    }
}
