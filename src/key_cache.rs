//! The token endpoint's cached key set: loaded once from the [`KeyStore`], refreshed after a
//! bounded time without holding up requests, and kept serving (bounded, logged) while a
//! refresh fails. Beside `keys/`, which stays free of any store: this is where the two meet.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use aws_lc_rs::rand::SystemRandom;
use time::OffsetDateTime;

use crate::clock::Clock;
use crate::keys::{SigningKeys, KeyTimes as _, Schedule, SigningKey};
use crate::oauth::nonce::NonceKey;
use crate::store::KeyStore;

/// Why no signing key is available.
#[derive(Debug, thiserror::Error)]
pub enum KeyCacheError {
    /// The key store could not be read and no fresh enough cached set exists.
    #[error("key set unavailable: {0}")]
    Unavailable(String),
    /// The key set has no key that may sign now.
    #[error("no signing key is active")]
    NoActiveKey,
    /// The signing key failed to sign.
    #[error("signing failed: {0}")]
    Signing(String),
}

struct Loaded {
    ring: Arc<SigningKeys>,
    loaded_at: OffsetDateTime,
}

/// A key set cache in front of a [`KeyStore`].
pub struct KeyCache {
    store: Arc<dyn KeyStore>,
    clock: Arc<dyn Clock>,
    schedule: Schedule,
    ttl: time::Duration,
    max_stale: time::Duration,
    loaded: RwLock<Option<Loaded>>,
    refreshing: AtomicBool,
}

impl KeyCache {
    /// A cache that refreshes after `ttl` and refuses to sign with a set older than
    /// `max_stale` that it could not refresh.
    pub fn new(
        store: Arc<dyn KeyStore>,
        clock: Arc<dyn Clock>,
        schedule: Schedule,
        ttl: std::time::Duration,
        max_stale: std::time::Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            clock,
            schedule,
            ttl: time::Duration::try_from(ttl).unwrap_or(time::Duration::MAX),
            max_stale: time::Duration::try_from(max_stale).unwrap_or(time::Duration::MAX),
            loaded: RwLock::new(None),
            refreshing: AtomicBool::new(false),
        })
    }

    fn cached(&self) -> Option<(Arc<SigningKeys>, OffsetDateTime)> {
        let guard = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map(|l| (l.ring.clone(), l.loaded_at))
    }

    /// Loads the key set from the store now and caches it.
    pub async fn refresh(&self) -> Result<Arc<SigningKeys>, KeyCacheError> {
        let now = self.clock.now();
        let set = self
            .store
            .load_key_set()
            .await
            .map_err(|e| KeyCacheError::Unavailable(e.to_string()))?;
        let ring =
            Arc::new(SigningKeys::load(&set).map_err(|e| KeyCacheError::Unavailable(e.to_string()))?);
        *self.loaded.write().unwrap_or_else(|e| e.into_inner()) = Some(Loaded {
            ring: ring.clone(),
            loaded_at: now,
        });
        Ok(ring)
    }

    fn refresh_in_background(self: &Arc<Self>) {
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = self.clone();
        tokio::spawn(async move {
            if let Err(e) = this.refresh().await {
                tracing::warn!(error = %e, "key set refresh failed; serving the cached set");
            }
            this.refreshing.store(false, Ordering::Release);
        });
    }

    /// The DPoP nonce key of the key set (loaded if it was not yet; none for a set without a
    /// nonce secret): every instance reading the set shares it. Signing keeps the set fresh.
    pub async fn nonce_key(&self) -> Option<Arc<NonceKey>> {
        let ring = match self.cached() {
            Some((ring, _)) => ring,
            None => self.refresh().await.ok()?,
        };
        ring.nonce_key()
    }

    /// The key that signs now, per the schedule.
    pub async fn signer(self: &Arc<Self>) -> Result<Arc<SigningKey>, KeyCacheError> {
        let now = self.clock.now();
        let ring = match self.cached() {
            Some((ring, at)) if now - at < self.ttl => ring,
            Some((ring, at)) if now - at < self.max_stale => {
                self.refresh_in_background();
                ring
            }
            _ => self.refresh().await?,
        };
        ring.signer(&self.schedule, now)
            .ok_or(KeyCacheError::NoActiveKey)
    }

    /// Signs `claims` (a JSON object) with the key the schedule selects now, its `kid` and
    /// algorithm in the header: the one place a token is signed. Returns the token and the
    /// key's age at `now` in seconds.
    pub async fn sign(
        self: &Arc<Self>,
        claims: &[u8],
        rng: &SystemRandom,
        now: OffsetDateTime,
    ) -> Result<(String, i64), KeyCacheError> {
        let signer = self.signer().await.inspect_err(|e| {
            tracing::error!(error = %e, "no signing key available");
        })?;
        let token = signer.sign_json(claims, rng).map_err(|e| {
            tracing::error!(error = %e, kid = signer.kid(), "signing failed");
            KeyCacheError::Signing(e.to_string())
        })?;
        Ok((token, (now - signer.created_at()).whole_seconds()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::AtomicUsize;

    use async_trait::async_trait;
    use time::macros::datetime;

    use super::*;
    use crate::clock::ManualClock;
    use crate::keys::KeySet;
    use crate::store::StoreError;

    /// A key store that serves its set until told to fail, and counts loads.
    struct Flaky {
        set: KeySet,
        failing: Mutex<bool>,
        loads: AtomicUsize,
    }

    #[async_trait]
    impl KeyStore for Flaky {
        async fn load_key_set(&self) -> Result<KeySet, StoreError> {
            self.loads.fetch_add(1, Ordering::SeqCst);
            if *self.failing.lock().unwrap() {
                return Err(StoreError::Backend("secret unreachable".into()));
            }
            Ok(self.set.clone())
        }
        async fn replace_key_set(&self, _: &KeySet, _: &KeySet) -> Result<(), StoreError> {
            unreachable!("the cache never writes")
        }
    }

    const SCHEDULE: Schedule = Schedule {
        prepublication: time::Duration::hours(1),
        retirement: time::Duration::seconds(3660),
        signer_refresh: time::Duration::minutes(5),
    };

    #[tokio::test]
    async fn a_failing_refresh_keeps_the_cached_set_until_it_is_too_old() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let store = Arc::new(Flaky {
            set: KeySet::default().rotated(t0, &SCHEDULE).unwrap(),
            failing: Mutex::new(false),
            loads: AtomicUsize::new(0),
        });
        let clock = Arc::new(ManualClock::new(t0));
        let cache = KeyCache::new(
            store.clone(),
            clock.clone(),
            SCHEDULE,
            std::time::Duration::from_secs(300),
            std::time::Duration::from_secs(3600),
        );
        let kid = cache.signer().await.unwrap().kid().to_owned();
        assert_eq!(store.loads.load(Ordering::SeqCst), 1);
        // Within the cache lifetime: no load at all.
        clock.advance(time::Duration::seconds(299));
        cache.signer().await.unwrap();
        assert_eq!(store.loads.load(Ordering::SeqCst), 1);

        *store.failing.lock().unwrap() = true;
        clock.advance(time::Duration::minutes(30));
        // Stale: a background refresh is tried, fails, and the cached set keeps signing.
        assert_eq!(cache.signer().await.unwrap().kid(), kid);
        for _ in 0..100 {
            if !cache.refreshing.load(Ordering::Acquire) {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert_eq!(store.loads.load(Ordering::SeqCst), 2);
        assert_eq!(cache.signer().await.unwrap().kid(), kid);

        // Older than the bound: refuse rather than sign with a set that may be outdated.
        clock.advance(time::Duration::minutes(31));
        assert!(matches!(
            cache.signer().await,
            Err(KeyCacheError::Unavailable(_))
        ));
        // Once the store answers again, signing resumes.
        *store.failing.lock().unwrap() = false;
        assert_eq!(cache.signer().await.unwrap().kid(), kid);
    }
}
