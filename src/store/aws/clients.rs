//! [`ClientReader`] and [`ClientAdmin`] on a DynamoDB table: one item per client, written with conditions so that
//! creation never overwrites and updates are optimistically locked on `version`.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client as DynamoDb;
use aws_sdk_dynamodb::types::ReturnValuesOnConditionCheckFailure;

use super::attrs::{Item, Reader, n, s};
use super::sdk_error;
use crate::clients::Client;
use crate::store::{ClientAdmin, ClientReader, StoreError};

const KEY: &str = "client_id";
const VERSION: &str = "version";
const RECORD: &str = "record";

/// Client records in a DynamoDB table (partition key `client_id`).
#[derive(Debug, Clone)]
pub struct DynamoDbClientStore {
    db: DynamoDb,
    table: String,
}

impl DynamoDbClientStore {
    /// The store on `table`, through `db`.
    pub fn new(db: DynamoDb, table: impl Into<String>) -> Self {
        Self {
            db,
            table: table.into(),
        }
    }

    fn item(&self, client: &Client) -> Result<Item, StoreError> {
        let record = serde_json::to_string(client)
            .map_err(|e| StoreError::Backend(format!("cannot serialise a client: {e}")))?;
        Ok(Item::from([
            (KEY.to_owned(), s(&client.client_id)),
            (VERSION.to_owned(), n(client.version)),
            (RECORD.to_owned(), s(record)),
        ]))
    }

    fn client(&self, item: &Item) -> Result<Client, StoreError> {
        Reader::new(item, &self.table).json(RECORD)
    }
}

fn what(client_id: &str) -> String {
    format!("client {client_id}")
}

/// A failed version condition. The call returns the stored item in the same response, which
/// tells a conflict (the client exists at another version) from a missing client with no
/// second, racy read.
fn version_mismatch(
    stored: Option<&std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>>,
    client_id: &str,
) -> StoreError {
    if stored.is_some_and(|item| !item.is_empty()) {
        StoreError::Conflict(what(client_id))
    } else {
        StoreError::NotFound(what(client_id))
    }
}

#[async_trait]
impl ClientReader for DynamoDbClientStore {
    async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        // DynamoDB rejects an empty key value; no client can have one, as in SQLite.
        if client_id.is_empty() {
            return Ok(None);
        }
        // Strongly consistent: a client disabled a moment ago must fail its next request.
        let out = self
            .db
            .get_item()
            .table_name(&self.table)
            .key(KEY, s(client_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", &self.table, e))?;
        out.item().map(|item| self.client(item)).transpose()
    }
}

#[async_trait]
impl ClientAdmin for DynamoDbClientStore {
    async fn create_client(&self, client: &Client) -> Result<(), StoreError> {
        let result = self
            .db
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(client)?))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", KEY)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Err(StoreError::AlreadyExists(what(&client.client_id)))
            }
            Err(e) => Err(sdk_error("PutItem", &self.table, e)),
        }
    }

    async fn update_client(&self, client: &Client) -> Result<(), StoreError> {
        if client.client_id.is_empty() {
            return Err(StoreError::NotFound(what("")));
        }
        // The failed condition returns the stored item (if any) in the same call, so telling a
        // conflict from a missing client needs no second, racy read.
        let previous = i128::from(client.version) - 1;
        let result = self
            .db
            .put_item()
            .table_name(&self.table)
            .set_item(Some(self.item(client)?))
            .condition_expression("#v = :previous")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":previous", n(previous))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        match error.as_service_error() {
            Some(aws_sdk_dynamodb::operation::put_item::PutItemError::ConditionalCheckFailedException(failed)) => {
                Err(version_mismatch(failed.item(), &client.client_id))
            }
            _ => Err(sdk_error("PutItem", &self.table, error)),
        }
    }

    async fn delete_client(&self, client_id: &str, version: u64) -> Result<(), StoreError> {
        if client_id.is_empty() {
            return Err(StoreError::NotFound(what("")));
        }
        let result = self
            .db
            .delete_item()
            .table_name(&self.table)
            .key(KEY, s(client_id))
            .condition_expression("#v = :version")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":version", n(version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        match error.as_service_error() {
            Some(aws_sdk_dynamodb::operation::delete_item::DeleteItemError::ConditionalCheckFailedException(failed)) => {
                Err(version_mismatch(failed.item(), client_id))
            }
            _ => Err(sdk_error("DeleteItem", &self.table, error)),
        }
    }

    async fn list_clients(&self) -> Result<Vec<Client>, StoreError> {
        let mut pages = self
            .db
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut clients = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| sdk_error("Scan", &self.table, e))?;
            clients.push(self.client(&item)?);
        }
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(clients)
    }
}
