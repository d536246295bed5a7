//! `rate-limit` (SPEC §10): a sliding window per domain, middleware id and `Client-Address`,
//! decided by the store in one atomic step (memory, or one Redis round trip). Over the limit
//! → 429 with `Retry-After`; every response of the route carries `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset`. A store that fails or outlasts the `sla`
//! allows the request and counts it.

use std::sync::Arc;
use std::time::Duration;

use buckler_kv::{KvStore, Store};
use buckler_policy::{RateDecision, SlidingWindow};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::stats::{MiddlewareStats, Outcome};
use crate::error::GatewayError;

static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// One `rate-limit` middleware.
#[derive(Debug)]
pub(crate) struct RateLimit {
    pub(crate) id: Arc<str>,
    sla: Duration,
    window: SlidingWindow,
    /// `rl:{domain}:{id}:` — the client address completes the key.
    key_prefix: String,
    bypass_header: Option<HeaderName>,
    /// `None`: any value of the bypass header bypasses (as in Shield).
    bypass_values: Option<Vec<String>>,
    store: Store,
    pub(crate) stats: Arc<MiddlewareStats>,
}

impl RateLimit {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build(
        domain: &str,
        id: Arc<str>,
        sla: Duration,
        calls_per: u64,
        per_seconds: u64,
        bypass_header: Option<&str>,
        bypass_values: Option<&[String]>,
        store: Store,
        stats: Arc<MiddlewareStats>,
    ) -> Result<RateLimit, String> {
        let window = SlidingWindow::new(calls_per, Duration::from_secs(per_seconds))
            .map_err(|e| e.to_string())?;
        let bypass_header = bypass_header
            .map(|name| {
                HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| format!("bypass-header {name:?} is not a header name"))
            })
            .transpose()?;
        Ok(RateLimit {
            key_prefix: format!("rl:{domain}:{id}:"),
            id,
            sla,
            window,
            bypass_header,
            bypass_values: bypass_values.map(<[String]>::to_vec),
            store,
            stats,
        })
    }

    fn bypassed(&self, headers: &HeaderMap) -> bool {
        let Some(name) = &self.bypass_header else {
            return false;
        };
        let mut values = headers.get_all(name).iter().peekable();
        if values.peek().is_none() {
            return false;
        }
        match &self.bypass_values {
            None => true,
            Some(allowed) => values.any(|value| {
                value
                    .to_str()
                    .is_ok_and(|v| allowed.iter().any(|a| a == v.trim()))
            }),
        }
    }

    /// Decides one request: `Ok(headers)` lets it through with the `RateLimit-*` headers for
    /// its response (none when bypassed or when the store failed); `Err` is the 429.
    pub(crate) async fn decide(
        &self,
        client_address: &str,
        headers: &HeaderMap,
    ) -> Result<HeaderMap, (HeaderMap, GatewayError)> {
        if self.bypassed(headers) {
            self.stats.count(Outcome::RateBypassed);
            return Ok(HeaderMap::new());
        }
        let mut key = String::with_capacity(self.key_prefix.len() + client_address.len());
        key.push_str(&self.key_prefix);
        key.push_str(client_address);
        let now_ms = buckler_kv::unix_ms_now();
        let decision = match &self.store {
            // No timer for the memory store: it answers synchronously.
            Store::Memory(memory) => memory.rate_limit_now(&key, &self.window, now_ms),
            store => {
                match tokio::time::timeout(self.sla, store.rate_limit(&key, &self.window, now_ms))
                    .await
                {
                    Ok(result) => result,
                    Err(_) => {
                        self.stats.count_sla_exceeded();
                        Err(buckler_kv::StoreError::Timeout(self.sla))
                    }
                }
            }
        };
        match decision {
            Ok(decision) if decision.allowed => {
                self.stats.count(Outcome::RateAllowed);
                Ok(decoration(&decision))
            }
            Ok(decision) => {
                self.stats.count(Outcome::RateLimited);
                Err((
                    decoration(&decision),
                    GatewayError::RateLimited {
                        retry_after_seconds: decision.retry_after_secs.max(1),
                    },
                ))
            }
            Err(error) => {
                self.stats.count(Outcome::RateStoreError);
                tracing::debug!(middleware = %self.id, "rate-limit store failed, allowing: {error}");
                Ok(HeaderMap::new())
            }
        }
    }
}

/// The `RateLimit-*` headers of a decision.
fn decoration(decision: &RateDecision) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(RATELIMIT_LIMIT.clone(), HeaderValue::from(decision.limit));
    headers.insert(
        RATELIMIT_REMAINING.clone(),
        HeaderValue::from(decision.remaining),
    );
    headers.insert(
        RATELIMIT_RESET.clone(),
        HeaderValue::from(decision.reset_secs),
    );
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use buckler_kv::MemoryStore;

    fn limit(calls: u64, bypass: Option<&str>, values: Option<&[String]>) -> RateLimit {
        RateLimit::build(
            "d",
            Arc::from("rl"),
            Duration::from_millis(20),
            calls,
            60,
            bypass,
            values,
            Store::Memory(MemoryStore::new(1 << 20)),
            Arc::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn limits_per_client_with_headers_and_retry_after() {
        let rl = limit(2, None, None);
        let h = HeaderMap::new();
        let first = rl.decide("1.1.1.1", &h).await.unwrap();
        assert_eq!(first["ratelimit-limit"], "2");
        assert_eq!(first["ratelimit-remaining"], "1");
        rl.decide("1.1.1.1", &h).await.unwrap();
        let (headers, error) = rl.decide("1.1.1.1", &h).await.unwrap_err();
        assert_eq!(headers["ratelimit-remaining"], "0");
        let GatewayError::RateLimited {
            retry_after_seconds,
        } = error
        else {
            panic!("{error}")
        };
        assert!(retry_after_seconds >= 1);
        // Another client has its own window.
        rl.decide("2.2.2.2", &h).await.unwrap();
        assert_eq!(rl.stats.get(Outcome::RateLimited), 1);
        assert_eq!(rl.stats.get(Outcome::RateAllowed), 3);
    }

    #[tokio::test]
    async fn bypass_needs_a_listed_value_when_values_are_given() {
        let values = vec!["ops".to_owned()];
        let rl = limit(1, Some("x-internal"), Some(&values));
        let mut wrong = HeaderMap::new();
        wrong.insert("x-internal", HeaderValue::from_static("nope"));
        rl.decide("c", &wrong).await.unwrap();
        assert!(
            rl.decide("c", &wrong).await.is_err(),
            "a wrong value is limited"
        );
        let mut right = HeaderMap::new();
        right.insert("x-internal", HeaderValue::from_static("ops"));
        assert!(rl.decide("c", &right).await.unwrap().is_empty());
        let any = limit(1, Some("x-internal"), None);
        any.decide("c", &wrong).await.unwrap();
        any.decide("c", &wrong).await.unwrap();
        assert_eq!(any.stats.get(Outcome::RateBypassed), 2);
    }
}
