//! `{"type": "redis", "url": "redis://…"}`: a store shared by every gateway using the same
//! Redis. One multiplexed connection (`redis`'s `ConnectionManager`) per store, made lazily
//! and remade by itself after Redis restarts; every call is bounded by the store's timeout, so
//! a Redis that is down or slow costs the request path at most that long (then the caller
//! fails open). After [`BREAKER_FAILURES`] unreachable or timed-out calls in a row, calls
//! fail at once for [`BREAKER_RESET`], then one call tries again (Shield's `breaker` store,
//! built in), so a Redis that swallows packets does not cost every request the full timeout.
//! `rediss://` URLs use rustls with aws-lc-rs and the system's trust store.
//!
//! Rate limits run [`buckler_policy::ratelimit::LUA_SCRIPT`] with `EVALSHA` (loaded again by
//! itself after a Redis restart): one round trip, atomic, and on the Redis server's clock
//! (`TIME`) by default, so instances whose clocks drift still share one window. The script
//! is `buckler-policy`'s arithmetic line by line; a test runs both on the same sequence.

use std::sync::Arc;
use std::time::{Duration, Instant};

use buckler_policy::breaker::{BreakerState, CircuitBreaker};
use buckler_policy::ratelimit::{RateDecision, SlidingWindow, WindowState, LUA_SCRIPT};
use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::RedisError;

use crate::{KvStore, StoreError};

/// Whose clock decides rate-limit windows in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RateClock {
    /// The Redis server's `TIME`: one clock for the whole fleet (the default).
    #[default]
    Server,
    /// The `now_ms` the caller passes (tests that compare with the memory store).
    Caller,
}

/// A Redis-backed store. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct RedisStore {
    manager: ConnectionManager,
    script: Arc<redis::Script>,
    timeout: Duration,
    clock: RateClock,
    breaker: Arc<CircuitBreaker>,
}

/// Consecutive unreachable / timed-out calls after which calls fail at once (a Redis that
/// swallows packets would otherwise cost every request the full timeout).
pub const BREAKER_FAILURES: u32 = 5;
/// How long calls fail at once before one call tries Redis again.
pub const BREAKER_RESET: Duration = Duration::from_secs(1);

impl std::fmt::Debug for RedisStore {
    // The URL may carry a password: it is not kept, and nothing here prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("timeout", &self.timeout)
            .field("clock", &self.clock)
            .finish_non_exhaustive()
    }
}

/// Checks a `redis://` / `rediss://` URL without connecting (for config validation). The
/// error text never repeats the URL.
pub fn validate_url(url: &str) -> Result<(), String> {
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| format!("invalid Redis URL: {:?}", e.kind()))
}

fn map_error(error: RedisError, timeout: Duration) -> StoreError {
    if error.is_timeout() {
        StoreError::Timeout(timeout)
    } else if error.is_io_error()
        || error.is_connection_dropped()
        || error.is_connection_refusal()
        || error.is_unrecoverable_error()
    {
        StoreError::Unavailable(error.to_string())
    } else {
        StoreError::Backend(error.to_string())
    }
}

impl RedisStore {
    /// A store for `url`, each call bounded by `timeout` (connecting included). Connects
    /// lazily: it does not fail when Redis is down now, and it reconnects by itself later.
    /// Must be called inside a Tokio runtime.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::Backend(format!("invalid Redis URL: {:?}", e.kind())))?;
        Self::with_client(client, timeout)
    }

    /// Like [`new`](Self::new) for a `rediss://` URL whose server certificate is verified
    /// against `ca_pem` (PEM certificates) instead of the system's trust store.
    pub fn with_ca(url: &str, timeout: Duration, ca_pem: &[u8]) -> Result<Self, StoreError> {
        let client = redis::Client::build_with_tls(
            url,
            redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca_pem.to_vec()),
            },
        )
        .map_err(|e| StoreError::Backend(format!("invalid Redis TLS setup: {:?}", e.kind())))?;
        Self::with_client(client, timeout)
    }

    fn with_client(client: redis::Client, timeout: Duration) -> Result<Self, StoreError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            // Reconnect attempts are made on demand by later calls; a long retry series
            // would only keep callers waiting on a dead server.
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(10))
            .set_max_delay(timeout);
        let manager = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| map_error(e, timeout))?;
        Ok(RedisStore {
            manager,
            script: Arc::new(redis::Script::new(LUA_SCRIPT)),
            timeout,
            clock: RateClock::Server,
            breaker: Arc::new(CircuitBreaker::new(
                BREAKER_FAILURES,
                BREAKER_RESET,
                Instant::now(),
            )),
        })
    }

    /// The store's own circuit breaker, for `/healthcheck` and metrics: `open` while calls
    /// fail at once because Redis was unreachable.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state(Instant::now())
    }

    /// Uses `clock` for rate-limit windows (default [`RateClock::Server`]).
    pub fn with_clock(mut self, clock: RateClock) -> Self {
        self.clock = clock;
        self
    }

    /// The per-call timeout.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, RedisError>>,
    ) -> Result<T, StoreError> {
        let Ok(admission) = self.breaker.try_acquire(Instant::now()) else {
            return Err(StoreError::Unavailable(
                "failing fast after repeated connection failures".into(),
            ));
        };
        let result = match tokio::time::timeout(self.timeout, call).await {
            Ok(result) => result.map_err(|e| map_error(e, self.timeout)),
            Err(_) => Err(StoreError::Timeout(self.timeout)),
        };
        match &result {
            Err(StoreError::Timeout(_) | StoreError::Unavailable(_)) => {
                self.breaker.record_failure(admission, Instant::now());
            }
            // An answer, even an error reply, means Redis is reachable.
            Ok(_) | Err(StoreError::Backend(_) | StoreError::Full) => {
                self.breaker.record_success(admission);
            }
        }
        result
    }

    /// Sends `PING`: `Ok` when Redis answers within the timeout (for `/healthcheck`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.manager.clone();
        self.bounded(async move { redis::cmd("PING").query_async::<String>(&mut conn).await })
            .await
            .map(|_| ())
    }
}

impl KvStore for RedisStore {
    async fn rate_limit(
        &self,
        key: &str,
        window: &SlidingWindow,
        now_ms: u64,
    ) -> Result<RateDecision, StoreError> {
        let mut conn = self.manager.clone();
        let now_arg = match self.clock {
            RateClock::Server => String::new(),
            RateClock::Caller => now_ms.to_string(),
        };
        let mut invocation = self.script.key(key);
        invocation
            .arg(window.limit())
            .arg(window.window_ms())
            .arg(now_arg);
        let reply: Vec<i64> = self
            .bounded(async { invocation.invoke_async(&mut conn).await })
            .await?;
        let values: Option<Vec<u64>> = reply.iter().map(|&v| u64::try_from(v).ok()).collect();
        match values.as_deref() {
            Some(&[allowed, now, index, previous, current]) => {
                let state = WindowState {
                    window: index,
                    previous,
                    current,
                };
                Ok(window.describe(&state, now, allowed == 1))
            }
            _ => Err(StoreError::Backend(format!(
                "unexpected rate-limit reply {reply:?}"
            ))),
        }
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>, StoreError> {
        let mut conn = self.manager.clone();
        let value: Option<Vec<u8>> = self
            .bounded(async { redis::cmd("GET").arg(key).query_async(&mut conn).await })
            .await?;
        Ok(value.map(Bytes::from))
    }

    async fn put(&self, key: &str, value: Bytes, ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.manager.clone();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.bounded(async {
            redis::cmd("SET")
                .arg(key)
                .arg(&value[..])
                .arg("PX")
                .arg(ttl_ms)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut conn = self.manager.clone();
        self.bounded(async {
            redis::cmd("DEL")
                .arg(key)
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_validation_does_not_repeat_the_url() {
        assert!(validate_url("redis://127.0.0.1:6379").is_ok());
        assert!(validate_url("rediss://cache.example.org:6380/2").is_ok());
        let err = validate_url("http://user:hunter2@host").unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[tokio::test]
    async fn a_store_for_a_dead_port_is_made_and_fails_within_its_timeout() {
        // Bind and drop to find a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = RedisStore::new(
            &format!("redis://127.0.0.1:{port}"),
            Duration::from_millis(200),
        )
        .unwrap();
        let debug = format!("{store:?}");
        assert!(!debug.contains("127.0.0.1"), "{debug}");
        let started = std::time::Instant::now();
        let window = SlidingWindow::new(5, Duration::from_secs(1)).unwrap();
        assert!(store.rate_limit("k", &window, 0).await.is_err());
        assert!(store.get("k").await.is_err());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
