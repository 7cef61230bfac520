//! The token endpoint's cached key set: loaded once, refreshed after a bounded time without
//! holding up requests, and kept serving (bounded, logged) while a refresh fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use time::OffsetDateTime;

use super::ring::{KeyRing, SigningKey};
use super::schedule::Schedule;
use crate::clock::Clock;
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
}

struct Loaded {
    ring: Arc<KeyRing>,
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

    fn cached(&self) -> Option<(Arc<KeyRing>, OffsetDateTime)> {
        let guard = self.loaded.read().unwrap_or_else(|e| e.into_inner());
        guard.as_ref().map(|l| (l.ring.clone(), l.loaded_at))
    }

    /// Loads the key set from the store now and caches it.
    pub async fn refresh(&self) -> Result<Arc<KeyRing>, KeyCacheError> {
        let now = self.clock.now();
        let set = self
            .store
            .load_key_set()
            .await
            .map_err(|e| KeyCacheError::Unavailable(e.to_string()))?;
        let ring =
            Arc::new(KeyRing::load(&set).map_err(|e| KeyCacheError::Unavailable(e.to_string()))?);
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
}
