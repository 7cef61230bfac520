//! [`ClientReader`] and [`ClientAdmin`] on a DynamoDB table: one item per client, written with conditions so that
//! creation never overwrites and updates are optimistically locked on `version`. Each write
//! changes the client's items in the secret index table in the same transaction
//! (`TransactWriteItems`), so the index never names a secret the records do not hold.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client as DynamoDb;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    Delete, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
};

use super::attrs::{Item, Reader, n, s};
use super::{sdk_error, secret_index};
use crate::clients::Client;
use crate::clients::StoredSecret;
use crate::store::{ClientAdmin, ClientReader, StoreError};

const KEY: &str = "client_id";
const VERSION: &str = "version";
const RECORD: &str = "record";

/// Client records in a DynamoDB table (partition key `client_id`), with their secrets in the
/// secret index table.
#[derive(Debug, Clone)]
pub struct DynamoDbClientStore {
    db: DynamoDb,
    table: String,
    index_table: String,
}

fn build_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("cannot build a DynamoDB request: {e}"))
}

impl DynamoDbClientStore {
    /// The store on `table`, keeping the secret index on `index_table` in step, through `db`.
    pub fn new(db: DynamoDb, table: impl Into<String>, index_table: impl Into<String>) -> Self {
        Self {
            db,
            table: table.into(),
            index_table: index_table.into(),
        }
    }

    /// The stored record, which must be at `version`: else `NotFound` or `Conflict`.
    async fn stored(&self, client_id: &str, version: Option<u64>) -> Result<Client, StoreError> {
        let stored = self
            .get_client(client_id)
            .await?
            .ok_or_else(|| StoreError::NotFound(what(client_id)))?;
        if Some(stored.version) != version {
            return Err(StoreError::Conflict(what(client_id)));
        }
        Ok(stored)
    }

    /// The index steps that take the client's index items from `before` to its secrets now.
    fn index_changes(
        &self,
        client: &Client,
        before: &[StoredSecret],
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let now: std::collections::BTreeMap<&str, &str> = client
            .secrets
            .iter()
            .map(|s| (s.hash.as_str(), s.secret_id.as_str()))
            .collect();
        let mut steps = Vec::new();
        for (hash, secret_id) in &now {
            let unchanged = before
                .iter()
                .any(|b| b.hash.as_str() == *hash && b.secret_id == *secret_id);
            if !unchanged {
                steps.push(secret_index::put(
                    &self.index_table,
                    hash,
                    &client.client_id,
                    secret_id,
                )?);
            }
        }
        for gone in before.iter().filter(|b| !now.contains_key(b.hash.as_str())) {
            steps.push(secret_index::delete(&self.index_table, gone.hash.as_str())?);
        }
        Ok(steps)
    }

    /// Runs `steps` in one transaction, the client item's step first. `Ok(None)` when it was
    /// written; `Ok(Some(stored))` when the client item's condition failed (with the stored
    /// item, if any, or when another transaction on it came first).
    async fn transact(
        &self,
        client_id: &str,
        steps: Vec<TransactWriteItem>,
    ) -> Result<Option<Option<Item>>, StoreError> {
        let result = self
            .db
            .transact_write_items()
            .set_transact_items(Some(steps))
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(None),
            Err(e) => e,
        };
        if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
            error.as_service_error()
        {
            let first = cancelled.cancellation_reasons().first();
            match first.and_then(|r| r.code()) {
                Some("ConditionalCheckFailed") => {
                    return Ok(Some(first.and_then(|r| r.item()).cloned()));
                }
                Some("TransactionConflict") => return Err(StoreError::Conflict(what(client_id))),
                _ => {}
            }
        }
        Err(sdk_error("TransactWriteItems", &self.table, error))
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
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.item(client)?))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", KEY)
            .build()
            .map_err(build_error)?;
        let mut steps = vec![TransactWriteItem::builder().put(put).build()];
        steps.extend(self.index_changes(client, &[])?);
        match self.transact(&client.client_id, steps).await? {
            None => Ok(()),
            Some(_) => Err(StoreError::AlreadyExists(what(&client.client_id))),
        }
    }

    async fn update_client(&self, client: &Client) -> Result<(), StoreError> {
        if client.client_id.is_empty() {
            return Err(StoreError::NotFound(what("")));
        }
        // The stored record names the secrets whose index items go; the version condition
        // below makes sure it is still the record being replaced.
        let previous = client.version.checked_sub(1);
        let stored = self.stored(&client.client_id, previous).await?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(self.item(client)?))
            .condition_expression("#v = :previous")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":previous", n(i128::from(client.version) - 1))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let mut steps = vec![TransactWriteItem::builder().put(put).build()];
        steps.extend(self.index_changes(client, &stored.secrets)?);
        match self.transact(&client.client_id, steps).await? {
            None => Ok(()),
            Some(found) => Err(version_mismatch(found.as_ref(), &client.client_id)),
        }
    }

    async fn delete_client(&self, client_id: &str, version: u64) -> Result<(), StoreError> {
        if client_id.is_empty() {
            return Err(StoreError::NotFound(what("")));
        }
        let stored = self.stored(client_id, Some(version)).await?;
        let delete = Delete::builder()
            .table_name(&self.table)
            .key(KEY, s(client_id))
            .condition_expression("#v = :version")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":version", n(version))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(build_error)?;
        let mut steps = vec![TransactWriteItem::builder().delete(delete).build()];
        for secret in &stored.secrets {
            steps.push(secret_index::delete(
                &self.index_table,
                secret.hash.as_str(),
            )?);
        }
        match self.transact(client_id, steps).await? {
            None => Ok(()),
            Some(found) => Err(version_mismatch(found.as_ref(), client_id)),
        }
    }

    async fn reindex_secrets(&self) -> Result<usize, StoreError> {
        let clients = self.list_clients().await?;
        let mut wanted = std::collections::HashMap::new();
        for c in &clients {
            for secret in &c.secrets {
                wanted.insert(
                    secret.hash.as_str().to_owned(),
                    secret_index::item(secret.hash.as_str(), &c.client_id, &secret.secret_id),
                );
            }
        }
        let mut pages = self
            .db
            .scan()
            .table_name(&self.index_table)
            .consistent_read(true)
            .into_paginator()
            .items()
            .send();
        let mut stale = Vec::new();
        while let Some(item) = pages.next().await {
            let item = item.map_err(|e| sdk_error("Scan", &self.index_table, e))?;
            let (hash, _) = secret_index::entry(&item, &self.index_table)?;
            if !wanted.contains_key(&hash) {
                stale.push(hash);
            }
        }
        for hash in stale {
            self.db
                .delete_item()
                .table_name(&self.index_table)
                .key(secret_index::KEY, s(hash))
                .send()
                .await
                .map_err(|e| sdk_error("DeleteItem", &self.index_table, e))?;
        }
        let indexed = wanted.len();
        for item in wanted.into_values() {
            self.db
                .put_item()
                .table_name(&self.index_table)
                .set_item(Some(item))
                .send()
                .await
                .map_err(|e| sdk_error("PutItem", &self.index_table, e))?;
        }
        Ok(indexed)
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
