//! Rate-limit counters in this process's memory: the embedded shape's [`RateLimits`] adapter.
//!
//! One process owns the embedded shape's SQLite file, so a counter kept here is as exact as
//! one kept in a write transaction, and costs no write transaction per token. Each counter
//! is changed under its shard's lock, which makes `acquire` one atomic check-and-add.
//!
//! A counter whose `expires_at` has passed (on the store's clock) counts as absent, and a
//! sweep, at most once a window, drops every such counter: memory holds the counters of the
//! current windows only. A restart forgets those counters; see README "Rate limits on the
//! embedded shape" for why that is acceptable.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{RateLimits, StoreError};
use crate::clock::Clock;
use crate::limits::WINDOW_SECS;

/// Independent locks, so that requests of different clients rarely wait on each other.
const SHARDS: usize = 16;

/// One counter and the instant (epoch seconds) after which it is dropped.
#[derive(Debug, Clone, Copy)]
struct Counter {
    count: u64,
    expires_at: i64,
}

impl Counter {
    fn expired(&self, now: i64) -> bool {
        // The same rule as the SQLite prune (`expires_at < now`).
        self.expires_at < now
    }
}

type Shard = HashMap<String, Counter>;

/// Expiring counters in memory, exact under concurrency within this process.
pub struct MemoryRateLimits {
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    clock: Arc<dyn Clock>,
    /// When the next sweep of expired counters is due (epoch seconds).
    next_sweep: AtomicI64,
}

impl std::fmt::Debug for MemoryRateLimits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryRateLimits")
            .field("counters", &self.len())
            .finish()
    }
}

fn lock(shard: &Mutex<Shard>) -> MutexGuard<'_, Shard> {
    // No code path panics while holding the lock with a counter half-changed.
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

impl MemoryRateLimits {
    /// Empty counters; `clock` decides when a counter has expired.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            hasher: RandomState::new(),
            clock,
            next_sweep: AtomicI64::new(i64::MIN),
        }
    }

    /// How many counters are held (expired ones included until the next sweep).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Whether no counter is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, key: &str) -> &Mutex<Shard> {
        let index = self.hasher.hash_one(key) as usize % SHARDS;
        &self.shards[index]
    }

    /// The current instant, after dropping expired counters if a sweep is due. One caller per
    /// window wins the sweep; the others go on at once.
    fn now(&self) -> i64 {
        let now = self.clock.now().unix_timestamp();
        let due = self.next_sweep.load(Ordering::Relaxed);
        if now >= due
            && self
                .next_sweep
                .compare_exchange(due, now + WINDOW_SECS, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            for shard in self.shards.iter() {
                lock(shard).retain(|_, c| !c.expired(now));
            }
        }
        now
    }

    /// Applies `change` to the live counter of `key` (a fresh one if absent or expired) under
    /// its shard's lock; returns what `change` returns.
    fn update(
        &self,
        key: &str,
        expires_at: i64,
        change: impl FnOnce(&mut Counter) -> bool,
    ) -> bool {
        let now = self.now();
        let mut shard = lock(self.shard(key));
        let fresh = Counter {
            count: 0,
            expires_at,
        };
        // Look up by `&str` first: the key is only copied when a counter is created.
        if let Some(counter) = shard.get_mut(key) {
            if counter.expired(now) {
                *counter = fresh;
            }
            return change(counter);
        }
        let mut counter = fresh;
        let changed = change(&mut counter);
        shard.insert(key.to_owned(), counter);
        changed
    }
}

#[async_trait]
impl RateLimits for MemoryRateLimits {
    async fn acquire(&self, key: &str, limit: u32, expires_at: i64) -> Result<bool, StoreError> {
        Ok(self.update(key, expires_at, |c| {
            let below = c.count < u64::from(limit);
            if below {
                c.count += 1;
            }
            below
        }))
    }

    async fn increment(&self, key: &str, expires_at: i64) -> Result<(), StoreError> {
        self.update(key, expires_at, |c| {
            c.count += 1;
            true
        });
        Ok(())
    }

    async fn count(&self, key: &str) -> Result<u64, StoreError> {
        let now = self.now();
        let shard = lock(self.shard(key));
        Ok(shard
            .get(key)
            .filter(|c| !c.expired(now))
            .map_or(0, |c| c.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use time::macros::datetime;

    fn at_t0() -> (Arc<ManualClock>, Arc<MemoryRateLimits>) {
        let clock = Arc::new(ManualClock::new(datetime!(2026-03-04 05:06:00 UTC)));
        let limits = Arc::new(MemoryRateLimits::new(clock.clone()));
        (clock, limits)
    }

    #[test]
    fn parallel_acquires_grant_exactly_the_limit() {
        let (clock, limits) = at_t0();
        let expires = clock.now().unix_timestamp() + 120;
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let limits = limits.clone();
                std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .unwrap();
                    (0..250)
                        .filter(|_| {
                            runtime
                                .block_on(limits.acquire("issue#c#0", 1000, expires))
                                .unwrap()
                        })
                        .count()
                })
            })
            .collect();
        let granted: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(granted, 1000, "2000 attempts, limit 1000");
        let count = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(limits.count("issue#c#0"));
        assert_eq!(count.unwrap(), 1000);
    }

    #[tokio::test]
    async fn a_window_expires_and_its_counters_are_dropped() {
        let (clock, limits) = at_t0();
        let start = clock.now().unix_timestamp();
        for i in 0..100 {
            limits
                .increment(&format!("fail-ip#10.0.0.{i}#{start}"), start + 120)
                .await
                .unwrap();
        }
        assert!(!limits.acquire("issue#c#0", 0, start + 120).await.unwrap());
        assert!(limits.acquire("issue#c#0", 1, start + 120).await.unwrap());
        assert!(!limits.acquire("issue#c#0", 1, start + 120).await.unwrap());
        assert_eq!(limits.len(), 101);

        // At its expiry instant a counter still counts; after it, it is absent.
        clock.advance(time::Duration::seconds(120));
        assert_eq!(limits.count("issue#c#0").await.unwrap(), 1);
        clock.advance(time::Duration::seconds(1));
        assert_eq!(limits.count("issue#c#0").await.unwrap(), 0);
        // The sweep, due once a window, drops every expired counter.
        clock.advance(time::Duration::seconds(60));
        assert_eq!(limits.count("issue#c#0").await.unwrap(), 0);
        assert_eq!(limits.len(), 0, "expired windows hold no memory");
        assert!(limits.acquire("issue#c#0", 1, start + 300).await.unwrap());
        assert_eq!(limits.count("issue#c#0").await.unwrap(), 1);
        assert_eq!(limits.len(), 1);
    }
}
