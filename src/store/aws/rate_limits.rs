//! [`RateLimits`] on a DynamoDB table, changed only by atomic `UpdateItem` calls (a conditional
//! one for limits), removed by TTL on `expires_at`; several counters read in one consistent
//! `BatchGetItem`.
//!
//! The counters of one source and window (its refusal budget, its failed authentications, and
//! those of each client id from it: the keys `crate::limits::SourceKey` reads back) share ONE
//! item, `src#<source>#<window>`, one number attribute each, so that the read of all three
//! before a request is one item: one read unit while the item is under 4 KB, where one item per
//! counter cost three. Every other key is an item of its own, its value in `count`.
//!
//! The item stays small: a client id's failures from a source are counted only after the
//! source's own failure counter took one (`FailureLimits::record`), so an item holds at most
//! `TOKEN_FAIL_LIMIT_IP` client attributes; each is named by a 128-bit SHA-256 prefix of the
//! client id (`fail#` and 22 base64url characters, whatever the id's length, up to 128), about
//! 30 bytes with its value. At the default limit of 100 an item stays under about 3.1 KB.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_lc_rs::digest::{SHA256, digest};
use aws_sdk_dynamodb::Client as DynamoDb;
use aws_sdk_dynamodb::types::KeysAndAttributes;

use super::attrs::{Item, Reader, n, s};
use super::{conditional_write, sdk_error};
use crate::encoding::b64url;
use crate::limits::{SourceCounter, SourceKey};
use crate::store::{RateLimits, StoreError};

const KEY: &str = "key";
const COUNT: &str = "count";
const EXPIRES_AT: &str = "expires_at";
/// The attributes of a source's item: its refusals, its failed authentications, and (prefix)
/// those of one client id from it.
const REFUSED: &str = "refused";
const FAILURES: &str = "fail";
const CLIENT_FAILURES: &str = "fail#";
/// Bytes of the SHA-256 of a client id that name its attribute: 128 bits, so that no two ids
/// share one short of a 2^64 search, and one id's attribute is out of reach of anyone's.
const CLIENT_DIGEST_BYTES: usize = 16;

/// Most keys DynamoDB reads in one `BatchGetItem`.
const BATCH_LIMIT: usize = 100;
/// Calls per batch of keys: the first, and retries of keys DynamoDB left unprocessed (it does
/// under throttling), each after a short pause as DynamoDB advises.
const BATCH_ATTEMPTS: u32 = 3;
const BATCH_PAUSE: Duration = Duration::from_millis(20);

/// Where a counter lives: the partition key of its item and the attribute holding its value.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    item: String,
    attribute: String,
}

impl Slot {
    /// The slot of counter `key`. Distinct keys get distinct slots: the attribute names the
    /// kind of counter (and a client id, by its digest), the item the rest of the key, so the
    /// key can be told back from its slot; `count` is never an attribute of a source's item.
    fn of(key: &str) -> Self {
        match SourceKey::parse(key) {
            Some(k) => Self {
                item: format!("src#{}#{}", k.source, k.window),
                attribute: match k.counter {
                    SourceCounter::Refusals => REFUSED.to_owned(),
                    SourceCounter::Failures => FAILURES.to_owned(),
                    SourceCounter::ClientFailures(client) => client_attribute(client),
                },
            },
            None => Self {
                item: key.to_owned(),
                attribute: COUNT.to_owned(),
            },
        }
    }
}

/// The attribute of a client id's failures in its source's item: fixed length, whatever the id.
fn client_attribute(client_id: &str) -> String {
    let d = digest(&SHA256, client_id.as_bytes());
    format!(
        "{CLIENT_FAILURES}{}",
        b64url(&d.as_ref()[..CLIENT_DIGEST_BYTES])
    )
}

/// The value of counter `attribute` in `item`: 0 when absent.
fn value(item: &Item, attribute: &str, table: &str) -> Result<u64, StoreError> {
    match item.contains_key(attribute) {
        false => Ok(0),
        true => Ok(Reader::new(item, table).i64(attribute)?.max(0) as u64),
    }
}

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
        slot: &Slot,
        expires_at: i64,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        // The attribute name goes through ExpressionAttributeNames, never into the expression.
        self.db
            .update_item()
            .table_name(&self.table)
            .key(KEY, s(&slot.item))
            .update_expression("ADD #c :one SET #e = if_not_exists(#e, :expires)")
            .expression_attribute_names("#c", &slot.attribute)
            .expression_attribute_names("#e", EXPIRES_AT)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":expires", n(expires_at))
    }

    /// The items of up to [`BATCH_LIMIT`] distinct partition keys, found ones only.
    async fn batch(
        &self,
        items: &[&str],
        found: &mut HashMap<String, Item>,
    ) -> Result<(), StoreError> {
        let mut pending: Vec<Item> = items
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
                let key = Reader::new(item, &self.table).s(KEY)?;
                found.insert(key, item.clone());
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
        // callers can never together take more than `limit`, whatever else of the item they
        // change.
        let result = self
            .add_one(&Slot::of(key), expires_at)
            .condition_expression("attribute_not_exists(#c) OR #c < :limit")
            .expression_attribute_values(":limit", n(limit))
            .send()
            .await;
        conditional_write(result, "UpdateItem", &self.table)
    }

    async fn increment(&self, key: &str, expires_at: i64) -> Result<(), StoreError> {
        self.add_one(&Slot::of(key), expires_at)
            .send()
            .await
            .map_err(|e| sdk_error("UpdateItem", &self.table, e))?;
        Ok(())
    }

    async fn count(&self, key: &str) -> Result<u64, StoreError> {
        let slot = Slot::of(key);
        let out = self
            .db
            .get_item()
            .table_name(&self.table)
            .key(KEY, s(&slot.item))
            .projection_expression("#c")
            .expression_attribute_names("#c", &slot.attribute)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem", &self.table, e))?;
        match out.item() {
            None => Ok(0),
            Some(item) => value(item, &slot.attribute, &self.table),
        }
    }

    async fn counts(&self, keys: &[String]) -> Result<Vec<u64>, StoreError> {
        let slots: Vec<Slot> = keys.iter().map(|k| Slot::of(k)).collect();
        // DynamoDB refuses a batch that names an item twice, or an empty key: the counters of
        // one source are one item, read once.
        let mut items: Vec<&str> = slots
            .iter()
            .map(|slot| slot.item.as_str())
            .filter(|k| !k.is_empty())
            .collect();
        items.sort_unstable();
        items.dedup();
        let mut found = HashMap::new();
        for chunk in items.chunks(BATCH_LIMIT) {
            self.batch(chunk, &mut found).await?;
        }
        slots
            .iter()
            .map(|slot| match found.get(&slot.item) {
                None => Ok(0),
                Some(item) => value(item, &slot.attribute, &self.table),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(item: &str, attribute: &str) -> Slot {
        Slot {
            item: item.to_owned(),
            attribute: attribute.to_owned(),
        }
    }

    #[test]
    fn the_counters_of_one_source_and_window_share_one_item() {
        let item = "src#192.0.2.1#120";
        assert_eq!(Slot::of("refused#192.0.2.1#120"), slot(item, "refused"));
        assert_eq!(Slot::of("fail-ip#192.0.2.1#120"), slot(item, "fail"));
        let svc = Slot::of("fail#svc#192.0.2.1#120");
        assert_eq!(svc.item, item);
        // `fail#`, then 128 bits of SHA-256("svc") in base64url.
        assert_eq!(svc.attribute, "fail#NIxlhoKuhwHT6dIfGRhySQ");
        let v6 = Slot::of("fail#a#b#2001:db8::/64#60");
        assert_eq!(v6.item, "src#2001:db8::/64#60");
        assert_eq!(v6, slot("src#2001:db8::/64#60", &client_attribute("a#b")));
    }

    #[test]
    fn client_attributes_have_one_length_and_tell_ids_apart() {
        let long = "x".repeat(128);
        let names = [
            client_attribute("a"),
            client_attribute("b"),
            client_attribute(&long),
        ];
        assert!(
            names.iter().all(|a| a.len() == "fail#".len() + 22),
            "{names:?}"
        );
        assert!(names[0] != names[1] && names[1] != names[2] && names[0] != names[2]);
        assert!(
            names
                .iter()
                .all(|a| a != "fail" && a != "refused" && a != "count")
        );
    }

    #[test]
    fn other_keys_keep_an_item_of_their_own() {
        for key in [
            "issue#svc#120",
            "absent",
            "",
            "refused#x",
            "fail-ip#192.0.2.1#now",
            "fail#svc#120",
            "src#192.0.2.1#120",
        ] {
            assert_eq!(Slot::of(key), slot(key, "count"), "{key}");
        }
    }
}
