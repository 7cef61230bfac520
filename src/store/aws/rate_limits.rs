//! [`RateLimits`] on a DynamoDB table: one item per counter, changed only by atomic
//! `UpdateItem` calls (a conditional one for limits), removed by TTL on `expires_at`.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client as DynamoDb;

use super::attrs::{Reader, n, s};
use super::{conditional_write, sdk_error};
use crate::store::{RateLimits, StoreError};

const KEY: &str = "key";
const COUNT: &str = "count";
const EXPIRES_AT: &str = "expires_at";

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
}
