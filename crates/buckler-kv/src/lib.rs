//! The stores behind `kvstores` (SPEC §10): [`MemoryStore`], a bounded LRU private to one
//! gateway, and [`RedisStore`], shared by a fleet and reconnecting by itself. The middleware
//! use them through one small trait, [`KvStore`], or the closed enum [`Store`] built from
//! config.
//!
//! Rate limits are decided by the store in one atomic step (for Redis, one `EVALSHA` round
//! trip) with `buckler-policy`'s sliding-window arithmetic, so a limit is the same whether it
//! is kept in memory or in Redis. Store errors come back within the store's timeout so the
//! caller can fail open (allow the request, answer a cache miss) and count the error.

use std::future::Future;
use std::time::Duration;

use buckler_policy::ratelimit::{RateDecision, SlidingWindow};
use bytes::Bytes;

pub mod coalesce;
pub mod memory;
pub mod redis_store;
#[cfg(feature = "testing")]
pub mod testing;

pub use coalesce::{Coalescer, Turn};
pub use memory::MemoryStore;
pub use redis_store::RedisStore;

/// Why a store could not answer. Every variant means "act as if the store were absent":
/// allow the request, or treat it as a cache miss.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No answer within the store's timeout.
    #[error("store did not answer within {0:?}")]
    Timeout(Duration),
    /// The store cannot be reached (connection refused, dropped, reconnecting).
    #[error("store unreachable: {0}")]
    Unavailable(String),
    /// The store answered with an error or something unexpected.
    #[error("store error: {0}")]
    Backend(String),
    /// The memory store is at its byte bound and could not make room for new rate-limit
    /// state.
    #[error("memory store full")]
    Full,
}

/// What the middleware need from a store.
///
/// Keys are strings the caller namespaces (e.g. `rl:{domain}:{id}:{client}` for a limit,
/// `rc:{cache key}` for a response). Implementations bound every call by their timeout.
pub trait KvStore: Send + Sync {
    /// Decides one request against `window` for `key`, atomically, and counts it if allowed.
    /// `now_ms` is the caller's clock (milliseconds since the Unix epoch); a store may use its
    /// own clock instead so that every instance sharing it agrees ([`RedisStore`] uses the
    /// Redis server's `TIME` unless told otherwise).
    fn rate_limit(
        &self,
        key: &str,
        window: &SlidingWindow,
        now_ms: u64,
    ) -> impl Future<Output = Result<RateDecision, StoreError>> + Send;

    /// The value stored under `key`, if any and not expired.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Bytes>, StoreError>> + Send;

    /// Stores `value` under `key` for `ttl` (at least 1 ms). A value too large for a memory
    /// store's bound is not stored, and that is not an error.
    fn put(
        &self,
        key: &str,
        value: Bytes,
        ttl: Duration,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes `key` (no error when absent).
    fn delete(&self, key: &str) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A store chosen by config: `{"type": "memory", ...}` or `{"type": "redis", ...}`.
#[derive(Debug, Clone)]
pub enum Store {
    /// Private to this gateway.
    Memory(MemoryStore),
    /// Shared through Redis.
    Redis(RedisStore),
}

impl KvStore for Store {
    async fn rate_limit(
        &self,
        key: &str,
        window: &SlidingWindow,
        now_ms: u64,
    ) -> Result<RateDecision, StoreError> {
        match self {
            Store::Memory(store) => store.rate_limit(key, window, now_ms).await,
            Store::Redis(store) => store.rate_limit(key, window, now_ms).await,
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        match self {
            Store::Memory(store) => store.get(key).await,
            Store::Redis(store) => store.get(key).await,
        }
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), StoreError> {
        match self {
            Store::Memory(store) => store.put(key, value, ttl).await,
            Store::Redis(store) => store.put(key, value, ttl).await,
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            Store::Memory(store) => store.delete(key).await,
            Store::Redis(store) => store.delete(key).await,
        }
    }
}

/// Milliseconds since the Unix epoch now: the `now_ms` to pass to [`KvStore::rate_limit`].
pub fn unix_ms_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
