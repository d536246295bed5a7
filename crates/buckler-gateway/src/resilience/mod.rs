//! Resilience state and body wrappers (SPEC §9): the breakers and health verdict each upstream
//! keeps across table swaps, the retry budget each domain keeps, the body timeouts and the
//! connection watch. The pick that applies them is `pipeline::select`; the probes are
//! `health_check`; their metrics `resilience_metrics`.
//!
//! The state machines are `buckler_policy`'s; this module holds their instances where they
//! survive table swaps (the upstream handle, the control plane's domain state) and applies them.

pub(crate) mod bodies;
pub(crate) mod framing;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use buckler_config::{CircuitBreakerConfig, DomainConfig, RetryConfig};
use buckler_policy::retry::{RequestInFlight, RetryInFlight};
use buckler_policy::{BreakerConfig, BreakerState, CircuitBreaker, RetryBudget, UpstreamBreakers};
use tokio::sync::Notify;

/// The breaker settings of a domain's `circuit-breaker`.
pub(crate) fn breaker_config(config: &CircuitBreakerConfig) -> BreakerConfig {
    BreakerConfig {
        max_failures: config.max_failures,
        endpoint_max_failures: config.endpoint_max_failures,
        reset_timeout: config.reset_timeout,
        max_in_flight: config.max_in_flight,
    }
}

/// The resilience state of one upstream, kept in its handle so it survives table swaps.
#[derive(Debug)]
pub(crate) struct UpstreamResilience {
    /// Replaced (closed again) only when the domain's breaker settings change.
    breakers: ArcSwap<UpstreamBreakers>,
    /// The active health check's verdict; true when health checks are off.
    probe_healthy: AtomicBool,
    pub(crate) checks_passed: AtomicU64,
    pub(crate) checks_failed: AtomicU64,
}

impl Default for UpstreamResilience {
    fn default() -> Self {
        UpstreamResilience {
            breakers: ArcSwap::from_pointee(UpstreamBreakers::new(
                BreakerConfig::default(),
                Instant::now(),
            )),
            probe_healthy: AtomicBool::new(true),
            checks_passed: AtomicU64::new(0),
            checks_failed: AtomicU64::new(0),
        }
    }
}

impl UpstreamResilience {
    /// The upstream's breakers now.
    pub(crate) fn breakers(&self) -> Arc<UpstreamBreakers> {
        self.breakers.load_full()
    }

    /// The breakers for `config`: the current ones when their settings match, else new closed
    /// ones (thresholds are part of a breaker's state). Called when a table is built.
    fn breakers_for(&self, config: BreakerConfig) -> Arc<UpstreamBreakers> {
        let current = self.breakers.load_full();
        if current.config() == config {
            return current;
        }
        let fresh = Arc::new(UpstreamBreakers::new(config, Instant::now()));
        self.breakers.store(fresh.clone());
        fresh
    }

    /// Whether the active health check lets the upstream take requests (true when off).
    pub(crate) fn is_probe_healthy(&self) -> bool {
        self.probe_healthy.load(Ordering::Acquire)
    }

    pub(crate) fn set_probe_healthy(&self, healthy: bool) {
        self.probe_healthy.store(healthy, Ordering::Release);
    }

    /// Counts one health-check result.
    pub(crate) fn count_check(&self, passed: bool) {
        let counter = if passed {
            &self.checks_passed
        } else {
            &self.checks_failed
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The upstream breaker's state now.
    pub(crate) fn breaker_state(&self, now: Instant) -> BreakerState {
        self.breakers.load().upstream().state(now)
    }

    /// `healthy` of the admin API: breaker not open, and the health check passing.
    pub(crate) fn is_healthy(&self, now: Instant) -> bool {
        self.breaker_state(now) != BreakerState::Open && self.is_probe_healthy()
    }
}

/// A candidate's breakers: its upstream's and the (upstream, endpoint) one, resolved when the
/// table is built.
#[derive(Debug, Clone)]
pub(crate) struct CandidateBreakers {
    pub(crate) upstream: Arc<UpstreamBreakers>,
    pub(crate) endpoint: Arc<CircuitBreaker>,
}

impl CandidateBreakers {
    /// The breakers of `upstream` for the endpoint `key` (method and canonical template).
    pub(crate) fn resolve(upstream: &UpstreamResilience, config: BreakerConfig, key: &str) -> Self {
        let breakers = upstream.breakers_for(config);
        let endpoint = breakers.endpoint(key);
        CandidateBreakers {
            upstream: breakers,
            endpoint,
        }
    }
}

/// The retry budget and retry counts of one domain, kept by the control plane so they survive
/// table swaps (a ramp publishes a table per step).
#[derive(Debug)]
pub(crate) struct DomainResilience {
    config: RetryConfig,
    pub(crate) budget: Arc<RetryBudget>,
    /// Signalled each time a retry gives its place in the budget back.
    retry_freed: Notify,
    pub(crate) retried: AtomicU64,
    pub(crate) budget_exhausted: AtomicU64,
}

/// How long a retry waits for room in a full budget before the request fails with its
/// first error. A retry to a healthy upstream ends in about a millisecond, so when an
/// upstream dies with many requests on it, their retries take turns within the budget
/// instead of failing; a budget still full after this long means the other upstreams are
/// slow or failing too, and then failing fast is better than holding the client.
pub(crate) const RETRY_SLOT_WAIT: Duration = Duration::from_millis(250);

/// A retry's place in the budget; giving it back wakes one retry waiting for a place.
pub(crate) struct RetrySlot<'a> {
    slot: Option<RetryInFlight>,
    freed: &'a Notify,
    waited: bool,
}

impl RetrySlot<'_> {
    /// Whether the retry had to wait for its place (the upstreams' states may have moved).
    pub(crate) fn waited(&self) -> bool {
        self.waited
    }
}

impl Drop for RetrySlot<'_> {
    fn drop(&mut self) {
        // The place is given back first, so the retry woken below finds it free.
        self.slot.take();
        self.freed.notify_one();
    }
}

impl DomainResilience {
    /// For a domain's settings: `previous` kept when its retry settings are the same, else a
    /// new budget (its counts carried over).
    pub(crate) fn for_settings(
        previous: Option<&Arc<DomainResilience>>,
        settings: &DomainConfig,
    ) -> Arc<DomainResilience> {
        if let Some(previous) = previous {
            if previous.config == settings.retry {
                return previous.clone();
            }
        }
        let carried = |f: fn(&DomainResilience) -> &AtomicU64| {
            previous.map_or(0, |p| f(p).load(Ordering::Relaxed))
        };
        Arc::new(DomainResilience {
            config: settings.retry,
            budget: Arc::new(RetryBudget::new(
                settings.retry.attempts,
                settings.retry.budget_percent,
            )),
            retry_freed: Notify::new(),
            retried: AtomicU64::new(carried(|p| &p.retried)),
            budget_exhausted: AtomicU64::new(carried(|p| &p.budget_exhausted)),
        })
    }

    /// A place in the retry budget for one more retry of `request`: at once when there is
    /// room, else the first place given back within [`RETRY_SLOT_WAIT`]. `None` when the
    /// request has used its `attempts` or no place came free in time.
    pub(crate) async fn retry_slot(&self, request: &mut RequestInFlight) -> Option<RetrySlot<'_>> {
        if request.retries_done() >= self.budget.attempts() {
            return None;
        }
        let deadline = tokio::time::Instant::now() + RETRY_SLOT_WAIT;
        let mut waited = false;
        loop {
            // Registered before looking, so a place given back in between is not missed.
            let freed = self.retry_freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(slot) = request.try_retry() {
                return Some(RetrySlot {
                    slot: Some(slot),
                    freed: &self.retry_freed,
                    waited,
                });
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return None;
            }
            waited = true;
        }
    }

    /// Counts a retry sent (`true`) or refused by the budget (`false`).
    pub(crate) fn count_retry(&self, sent: bool) {
        let counter = if sent {
            &self.retried
        } else {
            &self.budget_exhausted
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
