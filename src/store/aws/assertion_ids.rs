//! [`AssertionReplay`] on a DynamoDB table: one item per used assertion id, written by a
//! conditional `PutItem` (atomic: of two concurrent uses, exactly one succeeds), removed by
//! TTL on `expires_at`.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client as DynamoDb;

use super::attrs::{Item, n, s};
use super::conditional_write;
use crate::store::{AssertionReplay, StoreError};

const KEY: &str = "key";
const EXPIRES_AT: &str = "expires_at";

/// Used client assertion ids in a DynamoDB table (partition key `key`, TTL on `expires_at`).
#[derive(Debug, Clone)]
pub struct DynamoDbAssertionReplay {
    db: DynamoDb,
    table: String,
}

impl DynamoDbAssertionReplay {
    /// The replay cache in `table`, through `db`.
    pub fn new(db: DynamoDb, table: impl Into<String>) -> Self {
        Self {
            db,
            table: table.into(),
        }
    }
}

#[async_trait]
impl AssertionReplay for DynamoDbAssertionReplay {
    async fn first_use(&self, key: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        let item = Item::from([
            (KEY.to_owned(), s(key)),
            (EXPIRES_AT.to_owned(), n(expires_at)),
        ]);
        // TTL deletes expired items only eventually (within days), so an expired item counts
        // as absent here.
        let result = self
            .db
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#k) OR #e <= :now")
            .expression_attribute_names("#k", KEY)
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        conditional_write(result, "PutItem", &self.table)
    }
}
