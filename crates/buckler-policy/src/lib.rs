//! Pure resilience and middleware arithmetic: circuit breakers, health-check verdicts, the
//! retry budget, sliding-window rate limits, the RFC 9111 cache rules and constant-time API
//! keys. No I/O, no runtime, no clock of its own: every time-dependent call takes `now`, so
//! each transition is unit-tested with an injected clock.
//!
//! State meant to be shared across workers ([`CircuitBreaker`], [`HealthTracker`],
//! [`RetryBudget`]) uses atomics (a small lock only where one writer updates rarely), and lives
//! in upstream handles or domains that survive table swaps.

pub mod apikey;
pub mod breaker;
pub mod cache;
pub mod cache_entry;
pub mod health;
pub mod ratelimit;
pub mod retry;

pub use apikey::{KeyError, KeyMatcher};
pub use breaker::{
    retry_after_secs, Admission, Admitted, BreakerConfig, BreakerState, CircuitBreaker, Refusal,
    Unavailable, UpstreamBreakers,
};
pub use cache::{CacheControl, Freshness, NotStorable, Reuse, Vary};
pub use cache_entry::{CacheEntry, CachedResponse, DecodeError};
pub use health::{HealthChange, HealthThresholds, HealthTracker};
pub use ratelimit::{RateDecision, RateLimitError, SlidingWindow, WindowState};
pub use retry::{
    is_retryable, AttemptFailure, BodyReplay, RequestInFlight, RetryBudget, RetryInFlight,
};
