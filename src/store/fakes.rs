//! In-memory fakes of the store ports for unit tests: plain maps that count their writes and
//! fail when told to. The adapters themselves are tested by the conformance suite.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;

use super::{AuditLog, ClientReader, KeyStore, RateLimits, StoreError};
use crate::audit::{AuditQuery, AuditRecord, Failures};
use crate::clients::Client;
use crate::keys::KeySet;

fn down() -> StoreError {
    StoreError::Backend("the fake was told to fail".to_owned())
}

/// Counters in a map, counting every write.
#[derive(Default)]
pub struct Counters {
    values: Mutex<HashMap<String, u64>>,
    writes: Mutex<u32>,
}

impl Counters {
    /// How many writes (`acquire`, `increment`) were made.
    pub fn writes(&self) -> u32 {
        *self.writes.lock().unwrap()
    }
}

#[async_trait]
impl RateLimits for Counters {
    async fn acquire(&self, key: &str, limit: u32, _: i64) -> Result<bool, StoreError> {
        *self.writes.lock().unwrap() += 1;
        let mut values = self.values.lock().unwrap();
        let value = values.entry(key.to_owned()).or_default();
        let acquired = *value < u64::from(limit);
        *value += u64::from(acquired);
        Ok(acquired)
    }

    async fn increment(&self, key: &str, _: i64) -> Result<(), StoreError> {
        *self.writes.lock().unwrap() += 1;
        *self
            .values
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default() += 1;
        Ok(())
    }

    async fn count(&self, key: &str) -> Result<u64, StoreError> {
        Ok(self.values.lock().unwrap().get(key).copied().unwrap_or(0))
    }
}

/// Client records in a map.
#[derive(Default)]
pub struct Clients(pub Mutex<HashMap<String, Client>>);

#[async_trait]
impl ClientReader for Clients {
    async fn get_client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        Ok(self.0.lock().unwrap().get(client_id).cloned())
    }
}

/// An audit trail in a list, that refuses every write while `failing`.
#[derive(Default)]
pub struct Trail {
    /// The records written, oldest first.
    pub records: Mutex<Vec<AuditRecord>>,
    /// Whether `append` fails.
    pub failing: Mutex<bool>,
}

#[async_trait]
impl AuditLog for Trail {
    async fn append(&self, record: &AuditRecord) -> Result<(), StoreError> {
        if *self.failing.lock().unwrap() {
            return Err(down());
        }
        self.records.lock().unwrap().push(record.clone());
        Ok(())
    }

    async fn query(&self, _: &AuditQuery) -> Result<Vec<AuditRecord>, StoreError> {
        Ok(self.records.lock().unwrap().iter().rev().cloned().collect())
    }

    async fn failures(
        &self,
        since: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Result<Failures, StoreError> {
        let records = self.records.lock().unwrap();
        let within =
            |r: &&AuditRecord| r.is_failure() && since <= r.timestamp && r.timestamp < until;
        let records = records.iter().filter(within).cloned().collect();
        Ok(Failures {
            records,
            queries: 1,
        })
    }
}

/// A key set held in memory.
pub struct Keys(pub Mutex<KeySet>);

#[async_trait]
impl KeyStore for Keys {
    async fn load_key_set(&self) -> Result<KeySet, StoreError> {
        Ok(self.0.lock().unwrap().clone())
    }

    async fn replace_key_set(&self, expected: &KeySet, next: &KeySet) -> Result<(), StoreError> {
        let mut set = self.0.lock().unwrap();
        if *set != *expected {
            return Err(StoreError::Conflict("key set".to_owned()));
        }
        *set = next.clone();
        Ok(())
    }
}
